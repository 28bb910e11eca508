"""playbooks/db_switchover.yml to a standby that does not stream (its PostgreSQL stopped: fenced, cut off or down)
fails before anything changes, on every node: the primary keeps running and stays the only one. The target's
check once failed on the target alone while the other nodes went on and stopped the primary, which left the
cluster without a primary."""

from __future__ import annotations

from cluster import ADDRESSES, node, pg_unit, playbook, primaries, sender, wait_for


def test_a_switchover_to_a_standby_that_does_not_stream_changes_nothing() -> None:
    primary = wait_for(lambda: primaries() if len(primaries()) == 1 else None, "one primary", 60)[0]
    target = next(name for name in ADDRESSES if name != primary)
    unit = pg_unit(target)
    node(target).check_output(f"systemctl stop {unit}")
    try:
        out = playbook("db_switchover.yml", "-e", f"repmgr_switchover_to={target}", expect_failure=True)
        assert "Check the target streams from the primary" in out
        assert primaries() == [primary], "the switchover stopped the primary"
        for name in ADDRESSES:
            assert node(name).service("isikhnas-repmgrd").is_running, f"repmgrd left stopped on {name}"
    finally:
        node(target).check_output(f"systemctl start {unit}")
    wait_for(lambda: sender(target) == ADDRESSES[primary], f"{target} to stream again", 60)
