"""Behaviour of role `postgresql`: TLS and scram enforced from the network, PostGIS, objects, tuning."""

from __future__ import annotations

import psycopg2
import pytest
import testinfra

ADDRESSES = {"postgresql-bookworm": "172.31.6.11", "postgresql-trixie": "172.31.6.12"}
VERSIONS = {"postgresql-bookworm": "15", "postgresql-trixie": "17"}
PASSWORD = "molecule-only-app-password"


@pytest.fixture
def address(host: testinfra.host.Host) -> str:
    return ADDRESSES[host.backend.get_hostname()]


def connect(address: str, sslmode: str, user: str = "isikhnas_app", password: str = PASSWORD):
    return psycopg2.connect(
        host=address, dbname="isikhnas", user=user, password=password, sslmode=sslmode, connect_timeout=5
    )


def test_distribution_version_runs(host: testinfra.host.Host) -> None:
    version = VERSIONS[host.backend.get_hostname()]
    out = host.check_output("sudo -u postgres psql -XAtc 'SHOW server_version_num'")
    assert out.startswith(version)
    assert host.service(f"postgresql@{version}-main").is_running


def test_tls_login_with_scram_works_and_is_encrypted(host: testinfra.host.Host, address: str) -> None:
    with connect(address, "require") as conn, conn.cursor() as cur:
        cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        ssl, version = cur.fetchone()
        assert ssl is True
        assert version in ("TLSv1.2", "TLSv1.3")
    stored = "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'isikhnas_app'"
    assert host.check_output(f'sudo -u postgres psql -XAtc "{stored}"') == "t"


def test_plain_tcp_is_refused(address: str) -> None:
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        connect(address, "disable")


def test_wrong_password_is_refused(address: str) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        connect(address, "require", password="not-the-password")


def test_md5_password_cannot_log_in(host: testinfra.host.Host, address: str) -> None:
    """A role whose password was stored as md5 cannot pass scram-sha-256 authentication."""
    host.check_output(
        "sudo -u postgres psql -XAtc \"SET password_encryption = 'md5'; "
        "DROP ROLE IF EXISTS legacy_md5; CREATE ROLE legacy_md5 LOGIN PASSWORD 'legacy-pass'\""
    )
    try:
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            connect(address, "require", user="legacy_md5", password="legacy-pass")
    finally:
        host.check_output("sudo -u postgres psql -XAtc 'DROP ROLE legacy_md5'")


def test_postgis_answers_a_spatial_query(address: str) -> None:
    with connect(address, "require") as conn, conn.cursor() as cur:
        # Jakarta to Bogor, about 42 km.
        cur.execute(
            "SELECT ST_Distance(ST_GeogFromText('POINT(106.8456 -6.2088)'), ST_GeogFromText('POINT(106.7890 -6.5971)'))"
        )
        meters = cur.fetchone()[0]
        assert 40_000 < meters < 45_000
        cur.execute("SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'postgis'")
        assert cur.fetchone() is not None


def test_app_user_owns_its_database(address: str) -> None:
    with connect(address, "require") as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
        assert cur.fetchone()[0] == "isikhnas_app"


def test_memory_tuning_and_wal_settings(host: testinfra.host.Host) -> None:
    def show(name: str) -> str:
        return host.check_output(f"sudo -u postgres psql -XAtc 'SHOW {name}'")

    assert show("shared_buffers") == "256MB"  # 25 % of postgresql_memory_mb=1024
    assert show("effective_cache_size") == "768MB"
    assert show("wal_level") == "replica"
    assert show("wal_log_hints") == "on"
    assert show("max_slot_wal_keep_size") == "10GB"  # a forgotten slot cannot fill the disk
    assert show("password_encryption") == "scram-sha-256"
    pending = "SELECT count(*) FROM pg_settings WHERE pending_restart"
    assert host.check_output(f"sudo -u postgres psql -XAtc '{pending}'") == "0"
