"""Failover under continuous writes through the writer DSN (runs after the other tests): kill -9 of the
primary's postmaster, `docker kill` of the primary's container, and the primary cut off from the network
(`docker network disconnect`). Each must end with exactly one writable primary among the reachable nodes that
holds every acknowledged write, the other standby following it, the db-primary record naming it, and the old
primary fenced (PostgreSQL refuses to start) until playbooks/db_rejoin.yml brings it back as a standby, with no
replication slot left behind on any node. The isolated primary must moreover have been stopped by the isolation
guard (isikhnas-pg-isolation-guard) while still cut off, its marker written. Then a planned switchover back to
ha-db1 through playbooks/db_switchover.yml, with no acknowledged write lost, and playbooks/db_status.yml.

Failure-to-first-write limits here are loose (CI shares two cores with other scenarios); bench/failover
measures the medians."""

from __future__ import annotations

import subprocess
import time

from cluster import (
    ADDRESSES,
    NETWORK,
    Writer,
    dns_primary,
    node,
    pg_unit,
    playbook,
    primaries,
    sender,
    sql,
    streams_from,
    try_sql,
    wait_for,
)

LIMIT = {"crash": 30.0, "node death": 60.0, "network isolation": 60.0}
MARKER = "/var/lib/postgresql/isikhnas-fenced"
# The isolation guard fences after repmgr_isolation_timeout (5 s) of probes (1 s each); loose for CI's load.
FENCE_LIMIT = 30.0


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True)


def current_primary() -> str:
    found = wait_for(lambda: primaries() if len(primaries()) == 1 else None, "exactly one primary", 30)
    return found[0]


def diagnostics() -> str:
    """The recent repmgrd and isolation guard logs of every node, for a failed takeover."""
    logs = []
    for name in ADDRESSES:
        for unit in ("-u isikhnas-repmgrd", "-t isikhnas-pg-isolation-guard"):
            out = node(name).run(f"journalctl {unit} --no-pager -n 40").stdout
            logs.append(f"--- {name} journalctl {unit}\n{out}")
    return "\n".join(logs)


def fail_and_check(kind: str, table: str, inject, restore=None) -> tuple[str, str]:
    """Inject a failure of the primary under writes; check the takeover. Returns (old, new) primary."""
    old = current_primary()
    writer = Writer(table)
    writer.start()
    wait_for(lambda: len(writer.acked) >= 20, "writes before the failure", 20)
    started = time.monotonic()
    inject(old)
    try:
        first = wait_for(lambda: writer.first_ack_after(started, old), f"a write acknowledged after {kind}", 90, 0.1)
        time.sleep(2)  # keep writing on the new primary for a moment
    except AssertionError as error:
        raise AssertionError(f"{error}\n{diagnostics()}") from None
    finally:
        writer.stop()
    seconds, new = first
    print(f"\n{kind}: first acknowledged write {seconds:.1f} s after the failure, on {new} (was {old})")
    assert new != old
    assert seconds <= LIMIT[kind], f"{kind}: {seconds:.1f} s to the first write, over {LIMIT[kind]} s"

    # exactly one writable primary, holding every acknowledged write; the other standby follows it
    assert [p for p in primaries() if p != old] == [new]
    lost = writer.lost_on(new)
    assert lost == [], f"{kind}: {len(lost)} acknowledged writes lost: {lost[:20]}"
    other = next(n for n in ADDRESSES if n not in (old, new))
    wait_for(lambda: sender(other) == ADDRESSES[new], f"{other} to follow {new}", 60)
    wait_for(lambda: dns_primary() == ADDRESSES[new], f"db-primary to name {new}", 30)
    new_id = str(list(ADDRESSES).index(new) + 1)
    witness_upstream = "SELECT upstream_node_id FROM repmgr.nodes WHERE type = 'witness'"
    wait_for(lambda: sql(new, witness_upstream, "repmgr") == new_id, f"the witness to follow {new}", 60)
    print(
        f"{kind}: {len(writer.acked)} writes acknowledged, none lost; "
        f"{other} and the witness follow; db-primary -> {new}"
    )

    if restore:
        restore(old)
    # fenced: the old primary does not come back read-write on its own
    unit = pg_unit(old)
    start = node(old).run(f"systemctl start {unit}")
    assert start.rc != 0, f"{kind}: the old primary {old} started on its own"
    journal = node(old).check_output(f"journalctl -u {unit} --no-pager -n 50")
    assert "isikhnas-pg-fence: refusing to start" in journal
    assert old not in primaries()
    return old, new


def inactive_slots() -> dict[str, str]:
    """Replication slots nothing streams from, per node (they keep WAL on that node until dropped)."""
    query = "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots WHERE NOT active"
    return {name: found for name in ADDRESSES if (found := sql(name, query))}


def rejoin(old: str, new: str, again: bool = False) -> None:
    playbook("db_rejoin.yml", "--limit", old)
    assert sender(old) == ADDRESSES[new]
    assert node(old).service("isikhnas-repmgrd").is_running
    # The old primary kept the slots of the standbys that followed the new primary while it was down.
    try:
        wait_for(lambda: not inactive_slots(), "every replication slot in use", 30)
    except AssertionError as error:
        raise AssertionError(f"{error}: {inactive_slots()}") from None
    if again:  # a second run has nothing to do
        assert "changed=0" in playbook("db_rejoin.yml", "--limit", old)


def test_kill_9_of_the_postmaster() -> None:
    def inject(name: str) -> None:
        node(name).check_output("kill -9 $(head -n 1 /var/lib/postgresql/*/main/postmaster.pid)")

    old, new = fail_and_check("crash", "probe_crash", inject)
    rejoin(old, new, again=True)


def test_docker_kill_of_the_primary_node() -> None:
    def inject(name: str) -> None:
        docker("kill", name)

    def restore(name: str) -> None:
        docker("start", name)
        wait_for(
            lambda: node(name).run("systemctl is-system-running").stdout.strip() in ("running", "degraded"),
            f"{name} to boot",
            90,
        )

    old, new = fail_and_check("node death", "probe_node", inject, restore)
    rejoin(old, new)


def test_network_isolation_of_the_primary() -> None:
    injected: dict[str, float] = {}

    def inject(name: str) -> None:
        injected["at"] = time.time()  # wall clock: compared with the guard's journal timestamps
        docker("network", "disconnect", NETWORK, name)

    def restore(name: str) -> None:
        # still cut off (docker exec does not need the network): the guard has stopped PostgreSQL, marker written
        unit = pg_unit(name)
        wait_for(
            lambda: (
                try_sql(name, "SELECT 1") is None
                and node(name).run(f"systemctl is-active {unit}").stdout.strip() != "active"
            ),
            f"the isolation guard to stop PostgreSQL on {name}",
            FENCE_LIMIT,
        )
        assert node(name).file(MARKER).exists, f"no fence marker {MARKER} on {name}"
        guard = node(name).check_output("journalctl -t isikhnas-pg-isolation-guard --no-pager -n 50 -o short-unix")
        fenced = [float(line.split()[0]) for line in guard.splitlines() if "FENCED" in line]
        assert fenced, f"the isolation guard did not log its fencing:\n{guard}"
        seconds = fenced[-1] - injected["at"]
        print(f"network isolation: the guard stopped PostgreSQL on {name} {seconds:.1f} s after the cut")
        assert 0 < seconds <= FENCE_LIMIT, f"{name} fenced {seconds:.1f} s after the cut, over {FENCE_LIMIT} s"
        docker("network", "connect", "--ip", ADDRESSES[name], NETWORK, name)
        peer = next(address for other, address in ADDRESSES.items() if other != name)
        wait_for(
            lambda: node(name).run(f"timeout 3 bash -c '</dev/tcp/{peer}/5432'").rc == 0,
            f"{name} back on the network",
            30,
        )

    try:
        old, new = fail_and_check("network isolation", "probe_isolation", inject, restore)
    finally:  # on a failure, put the node back so that the next tests find the whole cluster
        for name, address in ADDRESSES.items():
            networks = subprocess.run(
                ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", name],
                capture_output=True,
                text=True,
                check=False,
            )
            if NETWORK not in networks.stdout:
                docker("network", "connect", "--ip", address, NETWORK, name)
    journal = node(old).check_output(f"journalctl -u {pg_unit(old)} --no-pager -n 50")
    assert "fenced by the isolation guard" in journal
    assert "db_rejoin.yml" in journal
    rejoin(old, new, again=True)
    assert not node(old).file(MARKER).exists, "db_rejoin.yml left the fence marker"
    assert node(old).service("isikhnas-pg-isolation-guard").is_running


def test_switchover_back_to_ha_db1_loses_nothing() -> None:
    writer = Writer("probe_switchover")
    writer.start()
    wait_for(lambda: len(writer.acked) >= 20, "writes before the switchover", 20)
    try:
        playbook("db_switchover.yml", "-e", "repmgr_switchover_to=ha-db1")
        wait_for(lambda: writer.first_ack_after(time.monotonic() - 0.5, "") is not None, "writes after", 30)
        time.sleep(1)
    finally:
        writer.stop()
    assert primaries() == ["ha-db1"]
    assert writer.lost_on("ha-db1") == []
    for standby in ("ha-db2", "ha-db3"):
        wait_for(lambda s=standby: sender(s) == ADDRESSES["ha-db1"], f"{standby} to follow ha-db1", 60)
    wait_for(lambda: dns_primary() == ADDRESSES["ha-db1"], "db-primary to name ha-db1", 30)
    # The witness follows at once (db_switchover.yml registers it again; its repmgrd hears of no switchover).
    witness_upstream = "SELECT upstream_node_id FROM repmgr.nodes WHERE type = 'witness'"
    assert sql("ha-db1", witness_upstream, "repmgr") == "1"
    print(f"\nswitchover: {len(writer.acked)} writes acknowledged, none lost, {writer.errors} failed attempts")
    assert "changed=0" in playbook("db_switchover.yml", "-e", "repmgr_switchover_to=ha-db1")


def test_status_playbook_shows_the_whole_cluster() -> None:
    for standby in ("ha-db2", "ha-db3"):
        wait_for(lambda s=standby: streams_from(s) == ADDRESSES["ha-db1"], f"{standby} streaming from ha-db1", 60)
    out = playbook("db_status.yml")
    assert out.count("role: primary") == 1, out
    assert out.count("role: standby") == 2, out
    assert out.count("streams from 172.31.8.11 (streaming)") == 2, out
    for standby in ("ha-db2", "ha-db3"):
        assert f"standby {standby} | 172.31.8." in out
