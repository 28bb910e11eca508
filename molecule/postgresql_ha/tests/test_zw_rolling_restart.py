"""A setting that needs a restart is applied by a converge one node at a time, the primary with repmgrd paused: no
failover (same primary, same timeline), never two nodes down at once, no acknowledged write lost; repmgrd
watches again afterwards. Raised max_connections: standbys first. Lowered: the primary first, and each standby
after it has replayed the primary's new value (else it refuses to start below what the primary had)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg2
import pytest
from cluster import ADDRESSES, CLIENT, Writer, node, playbook, primaries, sql, wait_for

CONVERGE = "molecule/postgresql_ha/converge.yml"
START = "SELECT extract(epoch FROM pg_postmaster_start_time())"
# What a sysadmin runs to change a setting (docs/database.md): the roles' validation, configuration and the rolling
# restart, not the packages and the cluster's membership.
TAGS = "validate,configure,service,restart"
# role postgresql's postgresql_max_connections (the scenario keeps it), where the test ends
ROLE_DEFAULT = "200"


class Availability(threading.Thread):
    """Counts, about 4 times a second, the nodes that answer a query; keeps the smallest count seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.fewest = len(ADDRESSES)
        self.samples = 0
        self._stop = threading.Event()

    def answers(self, name: str) -> bool:
        """Down means refused or starting/shutting down (what a restart shows); a connection that only times out
        is an overloaded host, not a restarted one, and counts as up."""
        try:
            with psycopg2.connect(f"host={ADDRESSES[name]} sslmode=require connect_timeout=3 {CLIENT}") as conn:
                conn.cursor().execute("SELECT 1")
            conn.close()
            return True
        except psycopg2.Error as error:
            return "timeout expired" in str(error)

    def run(self) -> None:
        while not self._stop.is_set():
            up = sum(1 for name in ADDRESSES if self.answers(name))
            self.fewest = min(self.fewest, up)
            self.samples += 1
            time.sleep(0.25)

    def stop(self) -> None:
        self._stop.set()
        self.join(30)


def timeline(name: str) -> str:
    return sql(name, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")


def restart_with(connections: int, primary_first: bool) -> None:
    primary = wait_for(lambda: primaries() if len(primaries()) == 1 else None, "one primary", 60)[0]
    before = {name: float(sql(name, START)) for name in ADDRESSES}
    line = timeline(primary)
    writer, availability = Writer(f"probe_restart_{connections}"), Availability()
    writer.start()
    availability.start()
    try:
        playbook(CONVERGE, "--tags", TAGS, "-e", f"postgresql_max_connections={connections}")
        time.sleep(1)
    finally:
        availability.stop()
        writer.stop()
    after = {name: float(sql(name, START)) for name in ADDRESSES}
    print(
        f"\nmax_connections={connections}: restarted {sorted(after, key=after.get)}, primary {primary}; "
        f"fewest nodes answering {availability.fewest} of {len(ADDRESSES)} ({availability.samples} samples); "
        f"{len(writer.acked)} writes acknowledged, {writer.errors} failed attempts"
    )
    assert primaries() == [primary], "a restart became a failover"
    assert timeline(primary) == line
    assert all(after[name] > before[name] for name in ADDRESSES), "a node was not restarted"
    standbys = [name for name in ADDRESSES if name != primary]
    if primary_first:  # a lowered max_connections: standbys must not restart below what the primary had
        assert all(after[primary] < after[name] for name in standbys), "a standby went before the primary"
    else:
        assert all(after[name] < after[primary] for name in standbys), "the primary went before a standby"
    assert availability.fewest >= len(ADDRESSES) - 1, "two nodes were down at once"
    assert {sql(name, "SHOW max_connections") for name in ADDRESSES} == {str(connections)}
    assert writer.lost_on(primary) == []
    status = node(primary).check_output("runuser -u postgres -- repmgr -f /etc/repmgr.conf service status")
    assert "yes" not in [line.split("|")[7].strip() for line in status.splitlines()[2:] if line.count("|") >= 5]


@pytest.fixture
def restored() -> Iterator[None]:
    """Afterwards, whatever happened: every node back on the inventory's max_connections, so that a failure here
    leaves no node with a setting the later tests (a new standby cloned from the primary) do not expect."""
    yield
    if {sql(name, "SHOW max_connections") for name in ADDRESSES} != {ROLE_DEFAULT}:
        playbook(CONVERGE)


def test_a_setting_that_needs_a_restart_rolls_without_a_failover(restored: None) -> None:
    restart_with(210, primary_first=False)
    restart_with(int(ROLE_DEFAULT), primary_first=True)
