"""A converge while a standby is down (runs last). Its slot on the primary is then inactive, and `repmgr node
status` on the primary warns and exits non-zero: the role once took that for "not registered", ran `primary
register` again on the initial primary and, on any other primary, stopped it and cloned a standby over it. The
database play must change nothing on the primary and keep the down standby's slot."""

from __future__ import annotations

import re

from cluster import ADDRESSES, node, pg_unit, playbook, primaries, sender, sql, wait_for


def test_converge_with_a_standby_down_leaves_the_primary_alone() -> None:
    primary = wait_for(lambda: primaries() if len(primaries()) == 1 else None, "one primary", 60)[0]
    down = next(name for name in ("ha-db3", "ha-db2") if name != primary)
    slot = f"repmgr_slot_{list(ADDRESSES).index(down) + 1}"
    active = f"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"
    unit = pg_unit(down)
    node(down).check_output(f"systemctl stop isikhnas-repmgrd {unit}")
    try:
        wait_for(lambda: sql(primary, active) == "f", f"{slot} inactive on {primary}", 30)
        status = node(primary).run("runuser -u postgres -- repmgr -f /etc/repmgr.conf node status --csv")
        assert status.rc != 0, "repmgr node status no longer warns about an inactive slot"
        up = ",".join(name for name in [*ADDRESSES, "ha-wit"] if name != down)
        out = playbook("database.yml", "--limit", up, "--skip-tags", "pki")
        recap = out[out.rfind("PLAY RECAP") :]
        print(recap)
        assert re.search(rf"^{primary}\s+: ok=\d+\s+changed=0\s", recap, re.MULTILINE), recap
        assert sql(primary, active) == "f", f"the slot of {down}, which is only down, was dropped"
        assert primaries() == [primary]
    finally:
        node(down).check_output(f"systemctl start {unit} isikhnas-repmgrd")
    wait_for(lambda: sender(down) == ADDRESSES[primary], f"{down} to stream again", 60)
