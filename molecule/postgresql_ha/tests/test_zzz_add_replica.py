"""playbooks/db_add_replica.yml (runs near the end): the cluster's initial primary, ha-db1, is replaced by an empty
host of the same name (PostgreSQL, repmgr and every byte of data gone, its registration and slot removed as
docs/database.md says) while ha-db2 is the primary, and the playbook runs with `--limit ha-db1`. It must clone the
host from ha-db2 and register it, never taking the empty host for the primary (the role once fell back to
repmgr_initial_primary when the primary was outside --limit, and registered an empty node as a second primary,
the db-primary record following it), and the host must never accept writes, nor answer as a primary, before it
is a standby (the postgresql role once started it and created the application's objects on it). A second run,
over the whole group, changes nothing on any host.

The playbook's first play (tag baseline: roles common, sshd and pki, as site.yml) is skipped here, and so is the
pki certificate of the database play: the scenario's hosts have no SSH CA or internal CA (those roles have their
own scenarios), and its PostgreSQL uses the snakeoil pair."""

from __future__ import annotations

import re
import threading
import time
import uuid

import psycopg2
from cluster import ADDRESSES, CLIENT, changed_tasks, dns_primary, node, playbook, primaries, sender, sql, wait_for

SKIP = ("--skip-tags", "baseline,pki")
NEW, PRIMARY = "ha-db1", "ha-db2"


class Watcher(threading.Thread):
    """Asks the new host, about 5 times a second, whether it answers and whether it is a primary."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        self.name_ = name
        self.answers: dict[str, int] = {}
        self.primaries: list[float] = []
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                dsn = f"host={ADDRESSES[self.name_]} sslmode=require connect_timeout=1 {CLIENT}"
                with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery()")
                    state = "standby" if cur.fetchone()[0] else "primary"
                conn.close()
            except psycopg2.OperationalError as error:
                text = str(error)
                state = "refused" if "refused" in text else "starting" if "starting up" in text else text[:60]
            self.answers[state] = self.answers.get(state, 0) + 1
            if state == "primary":
                self.primaries.append(time.monotonic())
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self.join(30)


def test_db_add_replica_limited_to_a_replaced_initial_primary_clones_it() -> None:
    wait_for(lambda: primaries() if len(primaries()) == 1 else None, "one primary", 60)
    playbook("db_switchover.yml", "-e", f"repmgr_switchover_to={PRIMARY}")
    assert primaries() == [PRIMARY]
    node_id = list(ADDRESSES).index(NEW) + 1
    # repmgr cannot unregister a node that is still some record's upstream: the switchover left none, the
    # witness's included (db_switchover.yml registers it again against the new primary).
    followers = f"SELECT coalesce(string_agg(node_name, ','), '') FROM repmgr.nodes WHERE upstream_node_id = {node_id}"
    assert sql(PRIMARY, followers, "repmgr") == "", f"records still naming {NEW} as their upstream"
    host = node(NEW)
    version = host.check_output("ls /etc/postgresql")
    host.check_output(
        "systemctl stop isikhnas-repmgrd isikhnas-pg-isolation-guard postgresql@*-main && "
        f"DEBIAN_FRONTEND=noninteractive apt-get purge -y -q postgresql-{version} postgresql-{version}-repmgr "
        f"postgresql-{version}-postgis-3 >/dev/null && "
        "rm -rf /var/lib/postgresql /etc/postgresql /etc/repmgr.conf /etc/systemd/system/isikhnas-* "
        "/etc/systemd/system/postgresql@.service.d /etc/isikhnas/pg-guard.json && systemctl daemon-reload"
    )
    node(PRIMARY).check_output(
        f"runuser -u postgres -- repmgr -f /etc/repmgr.conf standby unregister --node-id={node_id}"
    )
    sql(PRIMARY, f"SELECT pg_drop_replication_slot('repmgr_slot_{node_id}')")
    assert host.run("test -e /var/lib/postgresql").rc != 0

    watcher = Watcher(NEW)
    watcher.start()
    try:
        output = playbook("db_add_replica.yml", "--limit", NEW, *SKIP)
    finally:
        watcher.stop()
    print(f"{NEW} during db_add_replica.yml --limit {NEW}: {watcher.answers}")
    assert NEW in output
    assert watcher.primaries == [], f"{NEW} answered as a primary before it was a standby: {watcher.answers}"
    assert primaries() == [PRIMARY]
    assert dns_primary() == ADDRESSES[PRIMARY]

    assert wait_for(lambda: sender(NEW) == ADDRESSES[PRIMARY], f"{NEW} to stream from {PRIMARY}", 60)
    assert host.service("isikhnas-repmgrd").is_running
    assert host.service("isikhnas-pg-isolation-guard").is_running
    show = node(PRIMARY).check_output("runuser -u postgres -- repmgr -f /etc/repmgr.conf cluster show --compact")
    assert re.search(rf"\|\s*{NEW}\s*\|\s*standby\s*\|\s*running", show), show
    marker = str(uuid.uuid4())
    probe = "add_replica_probe"
    sql(
        PRIMARY,
        f"CREATE TABLE IF NOT EXISTS {probe} (marker text); INSERT INTO {probe} VALUES ('{marker}')",
        "isikhnas",
    )
    count = f"SELECT count(*) FROM {probe} WHERE marker = '{marker}'"
    wait_for(lambda: sql(NEW, count, "isikhnas") == "1", f"the row on {NEW}", 30)

    # A run over the whole group changes nothing: not on the new host (the limited run is idempotent) nor on the
    # hosts outside --limit (it left nothing undone there).
    again = playbook("db_add_replica.yml", *SKIP)
    changed = {host: int(n) for host, n in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", again, re.MULTILINE)}
    assert NEW in changed, again[-3000:]
    assert set(changed.values()) == {0}, f"a second run over the whole group changed: {changed_tasks(again)}"
