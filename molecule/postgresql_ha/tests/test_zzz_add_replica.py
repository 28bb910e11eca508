"""playbooks/db_add_replica.yml (runs last): ha-db3 is replaced by an empty host of the same name (PostgreSQL,
repmgr and every byte of data gone, its registration and slot removed as docs/database.md says), and the
playbook clones it from the primary, registers it and starts repmgrd; a second run changes nothing.

The playbook's first play (tag baseline: roles common, sshd and pki, as site.yml) is skipped here, and so is the
pki certificate of the database play: the scenario's hosts have no SSH CA or internal CA (those roles have their
own scenarios), and its PostgreSQL uses the snakeoil pair."""

from __future__ import annotations

import re
import uuid

from cluster import ADDRESSES, node, playbook, primaries, sender, sql, wait_for

SKIP = ("--skip-tags", "baseline,pki")


def test_db_add_replica_clones_and_registers_a_replaced_host() -> None:
    primary = wait_for(lambda: primaries() if len(primaries()) == 1 else None, "one primary", 60)[0]
    new = next(name for name in ("ha-db3", "ha-db2") if name != primary)
    node_id = list(ADDRESSES).index(new) + 1
    # repmgr cannot unregister a node that is still some record's upstream: after the switchover the witness's
    # repmgrd moves its record to the new primary within seconds.
    followers = f"SELECT coalesce(string_agg(node_name, ','), '') FROM repmgr.nodes WHERE upstream_node_id = {node_id}"
    print(f"\nrecords naming {new} as their upstream: {sql(primary, followers, 'repmgr') or 'none'}")
    wait_for(lambda: sql(primary, followers, "repmgr") == "", f"no record to name {new} as its upstream", 60)
    host = node(new)
    version = host.check_output("ls /etc/postgresql")
    host.check_output(
        "systemctl stop isikhnas-repmgrd isikhnas-pg-isolation-guard postgresql@*-main && "
        f"DEBIAN_FRONTEND=noninteractive apt-get purge -y -q postgresql-{version} postgresql-{version}-repmgr "
        f"postgresql-{version}-postgis-3 >/dev/null && "
        "rm -rf /var/lib/postgresql /etc/postgresql /etc/repmgr.conf /etc/systemd/system/isikhnas-* "
        "/etc/systemd/system/postgresql@.service.d && systemctl daemon-reload"
    )
    node(primary).check_output(
        f"runuser -u postgres -- repmgr -f /etc/repmgr.conf standby unregister --node-id={node_id}"
    )
    sql(primary, f"SELECT pg_drop_replication_slot('repmgr_slot_{node_id}')")
    assert host.run("test -e /var/lib/postgresql").rc != 0

    output = playbook("db_add_replica.yml", *SKIP)
    assert f"{new}" in output

    assert wait_for(lambda: sender(new) == ADDRESSES[primary], f"{new} to stream from {primary}", 60)
    assert host.service("isikhnas-repmgrd").is_running
    show = node(primary).check_output("runuser -u postgres -- repmgr -f /etc/repmgr.conf cluster show --compact")
    assert re.search(rf"\|\s*{new}\s*\|\s*standby\s*\|\s*running", show), show
    marker = str(uuid.uuid4())
    probe = "add_replica_probe"
    sql(
        primary,
        f"CREATE TABLE IF NOT EXISTS {probe} (marker text); INSERT INTO {probe} VALUES ('{marker}')",
        "isikhnas",
    )
    count = f"SELECT count(*) FROM {probe} WHERE marker = '{marker}'"
    wait_for(lambda: sql(new, count, "isikhnas") == "1", f"the row on {new}", 30)

    again = playbook("db_add_replica.yml", *SKIP)
    changed = {host: int(n) for host, n in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", again, re.MULTILINE)}
    assert changed, again[-3000:]
    assert set(changed.values()) == {0}, f"a second run changed something: {changed}"
