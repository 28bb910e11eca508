"""The replicated cluster: one primary, two streaming standbys over TLS with quorum commit, PostGIS on all."""

from __future__ import annotations

import time
import uuid

import psycopg2
import pytest
import testinfra

ADDRESSES = {"ha-db1": "172.31.8.11", "ha-db2": "172.31.8.12", "ha-db3": "172.31.8.13"}
DSN_ALL = "host=172.31.8.11,172.31.8.12,172.31.8.13 dbname=isikhnas user=isikhnas_app sslmode=require connect_timeout=3"
PASSWORD = "molecule-only-app-password"


def connect(address: str, sslmode: str = "require", user: str = "isikhnas_app", password: str = PASSWORD):
    return psycopg2.connect(
        host=address, dbname="isikhnas", user=user, password=password, sslmode=sslmode, connect_timeout=5
    )


def sql(host: testinfra.host.Host, query: str) -> str:
    return host.check_output(f'sudo -u postgres psql -XAtc "{query}"')


def test_one_primary_two_standbys(host: testinfra.host.Host) -> None:
    name = host.backend.get_hostname()
    in_recovery = sql(host, "SELECT pg_is_in_recovery()")
    assert in_recovery == ("f" if name == "ha-db1" else "t")
    status = host.check_output("sudo -u postgres repmgr -f /etc/repmgr.conf cluster show --csv")
    rows = [line.split(",") for line in status.splitlines()]
    assert len(rows) == 4  # three nodes and the witness
    assert host.service("isikhnas-repmgrd").is_running
    assert not host.service("repmgrd").is_running


def test_location_follows_the_zone(host: testinfra.host.Host) -> None:
    name = host.backend.get_hostname()
    conf = host.file("/etc/repmgr.conf").content_string
    assert f"location='{'zone_b' if name == 'ha-db3' else 'zone_a'}'" in conf


def test_standbys_stream_over_tls_with_quorum_commit(host: testinfra.host.Host) -> None:
    if host.backend.get_hostname() != "ha-db1":
        assert sql(host, "SHOW synchronous_standby_names") == 'ANY 1 ("ha-db1", "ha-db2", "ha-db3")'
        return
    rows = sql(
        host,
        "SELECT r.application_name || ':' || r.sync_state || ':' || s.ssl FROM pg_stat_replication r "
        "JOIN pg_stat_ssl s USING (pid) ORDER BY 1",
    ).splitlines()
    assert rows == ["ha-db2:quorum:true", "ha-db3:quorum:true"]


def test_row_written_on_primary_is_read_on_every_standby() -> None:
    marker = str(uuid.uuid4())
    with connect(ADDRESSES["ha-db1"]) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS replication_probe (marker text PRIMARY KEY, at geography)")
        cur.execute("INSERT INTO replication_probe VALUES (%s, ST_GeogFromText('POINT(106.8456 -6.2088)'))", (marker,))
    for standby in ("ha-db2", "ha-db3"):
        deadline = time.monotonic() + 10
        while True:
            with connect(ADDRESSES[standby]) as conn, conn.cursor() as cur:
                cur.execute("SELECT ST_AsText(at::geometry) FROM replication_probe WHERE marker = %s", (marker,))
                row = cur.fetchone()
            if row or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert row == ("POINT(106.8456 -6.2088)",), f"{standby} did not replicate the row"


def test_standbys_refuse_writes() -> None:
    with connect(ADDRESSES["ha-db3"]) as conn, conn.cursor() as cur:
        try:
            cur.execute("CREATE TABLE must_fail (id int)")
        except psycopg2.errors.ReadOnlySqlTransaction:
            return
    raise AssertionError("a standby accepted a write")


def test_every_node_refuses_plain_tcp_and_md5_passwords() -> None:
    """TLS and scram-sha-256 on every node: a connection without TLS is refused (application and replication
    alike), and a role whose password is stored as md5 (created on the primary, replicated) cannot log in."""
    primary = testinfra.get_host("docker://ha-db1")
    primary.check_output(
        "sudo -u postgres psql -XAtc \"SET password_encryption = 'md5'; "
        "DROP ROLE IF EXISTS legacy_md5; CREATE ROLE legacy_md5 LOGIN PASSWORD 'legacy-pass'\""
    )
    try:
        for name, address in ADDRESSES.items():
            with pytest.raises(psycopg2.OperationalError, match="no encryption"):
                connect(address, sslmode="disable")
            with pytest.raises(psycopg2.OperationalError, match="no encryption"):
                psycopg2.connect(
                    host=address,
                    user="repmgr",
                    dbname="replication",
                    replication="true",
                    sslmode="disable",
                    password="molecule-only-repmgr-password",
                    connect_timeout=5,
                )
            deadline = time.monotonic() + 10
            while (
                "t"
                not in testinfra.get_host(f"docker://{name}")
                .run("sudo -u postgres psql -XAtc \"SELECT true FROM pg_roles WHERE rolname = 'legacy_md5'\"")
                .stdout
            ):
                assert time.monotonic() < deadline, f"{name}: the md5 role did not replicate"
                time.sleep(0.2)
            with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
                connect(address, user="legacy_md5", password="legacy-pass")
    finally:
        primary.check_output("sudo -u postgres psql -XAtc 'DROP ROLE legacy_md5'")
