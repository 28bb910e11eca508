"""Failover (runs after the replication tests): kill -9 the primary's postmaster, a standby takes over within
seconds, the other follows it, and the old primary is fenced: its PostgreSQL refuses to start read-write."""

from __future__ import annotations

import os
import time

import psycopg2
import testinfra

ADDRESSES = {"ha-db1": "172.31.8.11", "ha-db2": "172.31.8.12", "ha-db3": "172.31.8.13"}
WRITER_DSN = (
    "host=172.31.8.11,172.31.8.12,172.31.8.13 dbname=isikhnas user=isikhnas_app "
    "password=molecule-only-app-password sslmode=require connect_timeout=1 target_session_attrs=read-write"
)


def node(name: str) -> testinfra.host.Host:
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


def sql(name: str, query: str) -> str:
    return node(name).check_output(f'sudo -u postgres psql -XAtc "{query}"')


def first_acknowledged_write(deadline_s: float) -> tuple[float, str]:
    """Seconds until a write through the multi-host writer DSN commits, and the node that took it."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        try:
            with psycopg2.connect(WRITER_DSN) as conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS failover_probe (id serial PRIMARY KEY, at timestamptz)")
                cur.execute("INSERT INTO failover_probe (at) VALUES (now())")
                cur.execute("SELECT host(inet_server_addr())")
                address = cur.fetchone()[0]
            names = [n for n, a in ADDRESSES.items() if a == address]
            assert names, f"the writer answered from an unknown address {address!r}"
            return time.monotonic() - start, names[0]
        except psycopg2.Error:
            time.sleep(0.2)
    raise AssertionError(f"no write was acknowledged within {deadline_s} s")


def test_kill_9_of_the_primary_promotes_a_standby_and_fences_the_old_primary() -> None:
    assert sql("ha-db1", "SELECT pg_is_in_recovery()") == "f"
    first_acknowledged_write(5)  # the cluster takes writes before the failure

    node("ha-db1").check_output("kill -9 $(head -n 1 /var/lib/postgresql/*/main/postmaster.pid)")
    seconds, new_primary = first_acknowledged_write(60)
    print(f"postmaster kill -9: first acknowledged write after {seconds:.1f} s, on {new_primary}")
    assert new_primary in ("ha-db2", "ha-db3")

    other = "ha-db3" if new_primary == "ha-db2" else "ha-db2"
    assert sql(new_primary, "SELECT pg_is_in_recovery()") == "f"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sender = sql(other, "SELECT coalesce((SELECT sender_host FROM pg_stat_wal_receiver), '')")
        if sender == ADDRESSES[new_primary]:
            break
        time.sleep(0.5)
    assert sender == ADDRESSES[new_primary], f"{other} does not follow {new_primary} (streams from {sender!r})"
    assert sql(other, "SELECT pg_is_in_recovery()") == "t"

    old = node("ha-db1")
    version = old.check_output("ls /etc/postgresql")
    start = old.run(f"systemctl start postgresql@{version}-main")
    assert start.rc != 0, "the old primary came back on its own"
    journal = old.check_output(f"journalctl -u postgresql@{version}-main --no-pager -n 30")
    assert "isikhnas-pg-fence: refusing to start" in journal
    assert "db_rejoin.yml" in journal
