"""The endpoints the role publishes: the writer DSN reaches the primary and writes, the reader DSN a standby,
every node has the same libpq services, and the private Route 53 record db-primary names the primary."""

from __future__ import annotations

import psycopg2
from cluster import ADDRESSES, CLIENT, NAMES, dns_primary, node, service, sql, writer_dsn


def test_every_node_publishes_the_same_endpoints() -> None:
    services = {name: node(name).file("/etc/postgresql-common/pg_service.conf").content_string for name in ADDRESSES}
    assert len(set(services.values())) == 1
    writer = service("ha-db1", "isikhnas-writer")
    assert "host=172.31.8.11,172.31.8.12,172.31.8.13" in writer
    assert "target_session_attrs=read-write" in writer
    assert "sslmode=require" in writer
    assert "target_session_attrs=prefer-standby" in service("ha-db1", "isikhnas-reader")


def test_writer_dsn_writes_on_the_primary() -> None:
    with psycopg2.connect(writer_dsn()) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS endpoint_probe (id serial PRIMARY KEY)")
        cur.execute("INSERT INTO endpoint_probe DEFAULT VALUES")
        cur.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()")
        assert cur.fetchone() == (ADDRESSES["ha-db1"], False)
    conn.close()


def test_reader_dsn_prefers_a_standby() -> None:
    with psycopg2.connect(f"{service('ha-db1', 'isikhnas-reader')} {CLIENT}") as conn, conn.cursor() as cur:
        cur.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()")
        address, in_recovery = cur.fetchone()
    conn.close()
    assert in_recovery, f"the reader DSN reached the primary {NAMES[address]}"


def test_db_primary_record_names_the_primary() -> None:
    assert dns_primary() == ADDRESSES["ha-db1"]


def test_hook_is_wired_into_repmgr() -> None:
    conf = node("ha-db2").file("/etc/repmgr.conf").content_string
    hooks = next(line for line in conf.splitlines() if line.startswith("event_notification_command="))
    assert "/usr/local/sbin/isikhnas-witness-upstream %n %s repmgr " in hooks
    assert "/usr/local/sbin/isikhnas-db-primary-dns --event %e --success %s " in hooks
    # a standby moves neither the witness's record nor the DNS record, whatever event it is told about
    witness_upstream = "SELECT upstream_node_id FROM repmgr.nodes WHERE type = 'witness'"
    node("ha-db2").check_output("runuser -u postgres -- /usr/local/sbin/isikhnas-witness-upstream 2 1 repmgr")
    assert sql("ha-db1", witness_upstream, "repmgr") == "1"
    out = node("ha-db2").check_output(
        "runuser -u postgres -- /usr/local/sbin/isikhnas-db-primary-dns --event standby_promote --success 1"
    )
    assert out == "skipped: this node is not the primary"
    assert dns_primary() == ADDRESSES["ha-db1"]
