"""Never two primaries (issue 13). Runs after the replication tests and before the failover tests.

- One link cut between the primary and one standby, both still reaching the third node: to each standby once
  idle and once under a continuous write load, then one asymmetric cut (one direction dropped) and one flapping
  link, both under load.
  At every sampled moment at most one node accepts writes (answers pg_is_in_recovery() = f), writes are
  acknowledged again within 10 s (median), and no acknowledged write is lost.
- A second primary made by hand (a standby promoted behind repmgr's back): the guard fences the one the others
  do not follow; db_status.yml and db_rejoin.yml name both primaries; db_resolve_split.yml keeps the followed one,
  saves the other's diverged WAL with its LSN and rewinds it.
- The start check fails closed: a cleanly stopped primary that reaches no majority does not start as a primary.

A cut is a blackhole route inside the containers (the controller still reaches every node)."""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections.abc import Iterator

import psycopg2
import pytest
from cluster import ADDRESSES, CLIENT, Writer, lsn, node, pg_unit, playbook, primaries, sender, sql, wait_for

WITNESS = "172.31.8.14"
MARKER = "/var/lib/postgresql/isikhnas-fenced"
RESUME_LIMIT = 10.0  # median seconds without an acknowledged write after a cut


class Sampler(threading.Thread):
    """Asks every node, about 4 times a second, whether it accepts writes; records the moments when more than
    one did."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples = 0
        self.double: list[tuple[float, list[str]]] = []
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._conns: dict[str, psycopg2.extensions.connection | None] = dict.fromkeys(ADDRESSES)

    def writable(self, name: str) -> bool:
        try:
            conn = self._conns[name]
            if conn is None:
                conn = psycopg2.connect(f"host={ADDRESSES[name]} sslmode=require connect_timeout=1 {CLIENT}")
                conn.autocommit = True
                self._conns[name] = conn
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = 1000; SELECT pg_is_in_recovery()")
                return cur.fetchone()[0] is False
        except psycopg2.Error:
            if self._conns[name] is not None:
                self._conns[name].close()
            self._conns[name] = None
            return False

    def run(self) -> None:
        while not self._stop.is_set():
            writers = [name for name in ADDRESSES if self.writable(name)]
            self.samples += 1
            self.seen.update(writers)
            if len(writers) > 1:
                self.double.append((time.monotonic(), writers))
            time.sleep(0.25)
        for conn in self._conns.values():
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.join(30)


def route(name: str, action: str, *addresses: str) -> None:
    for address in addresses:
        node(name).run(f"ip route {action} blackhole {address}/32")


def cut(a: str, b: str, both: bool = True) -> None:
    route(a, "replace", ADDRESSES[b])
    if both:
        route(b, "replace", ADDRESSES[a])


def heal(*names: str) -> None:
    for name in names:
        for address in [*ADDRESSES.values(), WITNESS]:
            node(name).run(f"ip route del blackhole {address}/32 2>/dev/null")


def one_primary_and_followers() -> str | None:
    found = primaries()
    if len(found) != 1:
        return None
    others = [name for name in ADDRESSES if name != found[0]]
    return found[0] if all(sender(name) == ADDRESSES[found[0]] for name in others) else None


def settle() -> str:
    """Wait for one primary and both standbys streaming from it; rejoin a node fenced meanwhile."""
    try:
        return wait_for(one_primary_and_followers, "one primary and two streaming standbys", 45, 1)
    except AssertionError:
        pass
    fenced = [name for name in ADDRESSES if node(name).file(MARKER).exists]
    playbook("db_rejoin.yml", *(["--limit", ",".join(fenced)] if fenced else []))
    return wait_for(one_primary_and_followers, "one primary and two streaming standbys after a rejoin", 60, 1)


@pytest.fixture
def healed() -> Iterator[None]:
    """Afterwards, whatever happened: links healed, services running, a split left by a failure resolved, so that
    the next tests find one cluster."""
    yield
    heal(*ADDRESSES)
    for name in ADDRESSES:
        node(name).run("systemctl start isikhnas-repmgrd isikhnas-pg-isolation-guard")
    if len(primaries()) > 1:
        playbook("db_resolve_split.yml")


def max_gap(writer: Writer, since: float, until: float) -> float:
    """The longest stretch in [since, until] without an acknowledged write."""
    times = [since] + [at for _, at, _ in writer.acked if since < at < until] + [until]
    return max(b - a for a, b in itertools.pairwise(times))


def one_cut(index: int, load: bool, kind: str) -> tuple[float | None, list[tuple[float, list[str]]], int]:
    primary = settle()
    standby = [name for name in ADDRESSES if name != primary][index % 2]
    writer = Writer(f"probe_cut_{index}") if load else None
    sampler = Sampler()
    sampler.start()
    if writer:
        writer.start()
        wait_for(lambda: len(writer.acked) >= 20, "writes before the cut", 20)
    started = time.monotonic()
    try:
        if kind == "flapping":
            for _ in range(6):
                cut(primary, standby)
                time.sleep(2)
                heal(primary, standby)
                time.sleep(1.5)
        else:
            cut(primary, standby, both=kind != "asymmetric")
            time.sleep(20)
            # the cut took effect: the standby no longer streams from the primary
            assert sender(standby) != ADDRESSES[primary], f"cut {index}: {standby} still streams from {primary}"
        ended = time.monotonic()
        heal(primary, standby)
        time.sleep(3)
    finally:
        heal(primary, standby)
        if writer:
            writer.stop()
        sampler.stop()
    gap = max_gap(writer, started, ended) if writer else None
    after = settle()
    lost = writer.lost_on(after) if writer else []
    print(
        f"\ncut {index} ({kind}, {'load' if load else 'idle'}) {primary}<->{standby}: {sampler.samples} samples, "
        f"writable: {sorted(sampler.seen)}, two at once: {len(sampler.double)}, "
        + (f"longest stretch without an acknowledged write {gap:.1f} s, {len(writer.acked)} acked, " if writer else "")
        + f"primary after: {after}"
    )
    assert lost == [], f"cut {index}: {len(lost)} acknowledged writes lost: {lost[:20]}"
    return gap, sampler.double, sampler.samples


def test_one_link_cuts_never_make_two_primaries(healed: None) -> None:
    # Every shape once per standby where it matters: a symmetric cut to each standby idle and under load, then one
    # asymmetric and one flapping cut under load. (The repeated runs that measure the spread are bench/failover's.)
    runs = [(i, False, "symmetric") for i in range(2)]
    runs += [(2 + i, True, "symmetric") for i in range(2)]
    runs += [(4, True, "asymmetric"), (5, True, "flapping")]
    gaps, doubles, samples = [], [], 0
    for index, load, kind in runs:
        gap, double, count = one_cut(index, load, kind)
        samples += count
        doubles += double
        if gap is not None:
            gaps.append(gap)
    print(
        f"\none-link cuts: {len(runs)} runs, {samples} samples, two writable nodes at {len(doubles)} of them; "
        f"stretches without an acknowledged write under load: {', '.join(f'{g:.1f}' for g in gaps)} s, median "
        f"{statistics.median(gaps):.1f} s"
    )
    assert doubles == [], f"two nodes accepted writes at once: {doubles[:10]}"
    assert statistics.median(gaps) <= RESUME_LIMIT


def test_a_second_primary_is_fenced_by_the_guard_and_resolved(healed: None) -> None:
    """A standby promoted by hand beside the primary: nobody follows it, so its guard fences it within seconds;
    the status and rejoin playbooks name two primaries while both run; db_resolve_split.yml keeps the followed
    one and rewinds the other, saving its WAL."""
    primary = settle()
    rogue = [name for name in ADDRESSES if name != primary][-1]
    unit = pg_unit(rogue)
    data = f"/var/lib/postgresql/{unit.split('@')[1].split('-')[0]}/main"

    # 1. the guard steps the outranked primary down
    node(rogue).check_output("systemctl stop isikhnas-repmgrd")
    started = time.monotonic()
    node(rogue).check_output(f"runuser -u postgres -- /usr/lib/postgresql/*/bin/pg_ctl -D {data} promote -w")
    wait_for(lambda: node(rogue).file(MARKER).exists, f"the guard to fence {rogue}", 30)
    fenced_after = time.monotonic() - started
    wait_for(lambda: primaries() == [primary], f"{primary} as the only primary", 30)
    marker = node(rogue).file(MARKER).content_string
    print(f"\nsecond primary {rogue}: fenced {fenced_after:.1f} s after its promotion: {marker.splitlines()[0]}")
    assert "two primaries" in marker
    assert primary in marker
    start = node(rogue).run(f"systemctl start {unit}")
    assert start.rc != 0, "a fenced primary started on its own"
    playbook("db_rejoin.yml", "--limit", rogue)
    assert sender(rogue) == ADDRESSES[primary]
    assert not node(rogue).file(MARKER).exists

    # 2. without its guard, the split stays: the playbooks name it, db_resolve_split.yml resolves it
    node(rogue).check_output("systemctl stop isikhnas-repmgrd isikhnas-pg-isolation-guard")
    node(rogue).check_output("rm -rf /var/lib/postgresql/isikhnas-diverged")
    node(rogue).check_output(f"runuser -u postgres -- /usr/lib/postgresql/*/bin/pg_ctl -D {data} promote -w")
    wait_for(lambda: sorted(primaries()) == sorted([primary, rogue]), "two primaries", 30)
    # committed locally only (nothing streams from it, quorum commit would wait for ever)
    sql(
        rogue,
        "SET synchronous_commit = local; CREATE TABLE diverged (id int); INSERT INTO diverged VALUES (1)",
        "isikhnas",
    )
    written = lsn(sql(rogue, "SELECT pg_current_wal_lsn()"))
    status = playbook("db_status.yml")
    assert "TWO PRIMARIES" in status
    for name in (primary, rogue):
        assert f"{name} primary timeline" in status
    rejoin = playbook("db_rejoin.yml", expect_failure=True)
    assert "TWO PRIMARIES" in rejoin
    assert "db_resolve_split.yml" in rejoin
    out = playbook("db_resolve_split.yml")
    assert primaries() == [primary]
    wait_for(lambda: sender(rogue) == ADDRESSES[primary], f"{rogue} to stream from {primary}", 60)
    saved = node(rogue).check_output("cat /var/lib/postgresql/isikhnas-diverged/*/STEPPED-DOWN")
    assert f"node: {rogue}" in saved
    assert f"kept primary: {primary}" in saved
    recorded = next(line.split(": ", 1)[1] for line in saved.splitlines() if line.startswith("lsn: "))
    assert lsn(recorded) >= written, saved
    assert node(rogue).run("ls /var/lib/postgresql/isikhnas-diverged/*/pg_wal | grep -c '^0000'").stdout.strip() != "0"
    assert sql(rogue, "SELECT to_regclass('diverged') IS NULL", "isikhnas") == "t", "the diverged write survived"
    assert node(rogue).service("isikhnas-pg-isolation-guard").is_running
    assert "changed=0" in playbook("db_resolve_split.yml")
    print(f"resolved: {rogue} rewound onto {primary}; saved:\n{saved}\n{out[-300:]}")


def test_the_start_check_fails_closed_without_a_majority(healed: None) -> None:
    """A cleanly stopped primary whose peers are all unreachable must not start as a primary (it cannot know that
    no standby took over); once they answer, it may."""
    primary = settle()
    for name in ADDRESSES:
        node(name).check_output("systemctl stop isikhnas-repmgrd")
    unit = pg_unit(primary)
    try:
        node(primary).check_output(f"systemctl stop {unit}")
        route(primary, "replace", *[a for n, a in ADDRESSES.items() if n != primary], WITNESS)
        config = json.loads(node(primary).check_output("cat /etc/isikhnas/pg-guard.json"))
        config["start_wait"] = 3
        node(primary).check_output(
            f"echo '{json.dumps(config)}' > /tmp/guard-short.json && chmod 644 /tmp/guard-short.json"
        )
        check = node(primary).run(
            "runuser -u postgres -- /usr/local/sbin/isikhnas-pg-guard check --config /tmp/guard-short.json"
        )
        print(f"\nstart check, cut off: rc={check.rc} {check.stderr.strip()}")
        assert check.rc == 1
        assert "only 1 of 4 members reachable" in check.stderr
        heal(primary)
        node(primary).check_output(f"systemctl start {unit}")
        journal = node(primary).check_output(f"journalctl -u {unit} --no-pager -n 20")
        assert "starting as the primary (shut down)" in journal
    finally:
        heal(primary)
        node(primary).run(f"systemctl start {unit}")
        for name in ADDRESSES:
            node(name).run("systemctl start isikhnas-repmgrd")
    assert settle() == primary
