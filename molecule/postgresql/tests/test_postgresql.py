"""Behaviour of role `postgresql`: TLS and scram enforced from the network, PostGIS, objects, tuning.

The tests connect from the Docker network's gateway, a host of the web tier in this scenario (converge.yml), which
postgresql_client_access (molecule.yml) allows database isikhnas as user isikhnas_app, and nothing else.
"""

from __future__ import annotations

import psycopg2
import pytest
import testinfra

ADDRESSES = {"postgresql-bookworm": "172.31.6.11", "postgresql-trixie": "172.31.6.12"}
VERSIONS = {"postgresql-bookworm": "15", "postgresql-trixie": "17"}
PASSWORD = "molecule-only-app-password"
# What PostgreSQL says when no pg_hba.conf line matches, and when a reject line does.
NO_ENTRY = r"no pg_hba\.conf entry"
REJECTED = r"pg_hba\.conf rejects connection"
REJECTED_REPLICATION = r"pg_hba\.conf rejects replication connection"


@pytest.fixture
def address(host: testinfra.host.Host) -> str:
    return ADDRESSES[host.backend.get_hostname()]


def connect(address: str, sslmode: str, user: str = "isikhnas_app", password: str = PASSWORD, dbname: str = "isikhnas"):
    return psycopg2.connect(
        host=address, dbname=dbname, user=user, password=password, sslmode=sslmode, connect_timeout=5
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


def psql_as(host: testinfra.host.Host, sql: str) -> str:
    return host.check_output(f'sudo -u postgres psql -XAtc "{sql}"')


def test_client_tier_reaches_only_its_database_as_its_user(host: testinfra.host.Host, address: str) -> None:
    """pg_hba.conf names the tier's databases and users: isikhnas_app may open isikhnas, nothing else."""
    with connect(address, "require") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database(), current_user")
        assert cur.fetchone() == ("isikhnas", "isikhnas_app")
    # Another application database (the wiki tier's) and the maintenance database: no line for them.
    for dbname in ("isikhnas_wiki", "postgres"):
        with pytest.raises(psycopg2.OperationalError, match=NO_ENTRY):
            connect(address, "require", dbname=dbname)
    # Another application user, with its right password, from the web tier: no line either.
    with pytest.raises(psycopg2.OperationalError, match=NO_ENTRY):
        connect(
            address, "require", user="isikhnas_wiki", password="molecule-only-wiki-password", dbname="isikhnas_wiki"
        )
    # The superuser from a client address, to the application database.
    with pytest.raises(psycopg2.OperationalError, match=NO_ENTRY):
        connect(address, "require", user="postgres", password="any")


def test_replication_user_only_from_replication_peers(host: testinfra.host.Host, address: str) -> None:
    """The replication user (repmgr) is refused from a client address, also with the right password, for both
    ordinary and replication connections; from a replication peer's address (the node's own) it logs in."""
    password = "molecule-only-repmgr-password"
    psql_as(host, f"DROP ROLE IF EXISTS repmgr; CREATE ROLE repmgr LOGIN SUPERUSER REPLICATION PASSWORD '{password}'")
    try:
        for dbname in ("isikhnas", "postgres"):
            with pytest.raises(psycopg2.OperationalError, match=REJECTED):
                connect(address, "require", user="repmgr", password=password, dbname=dbname)
        with pytest.raises(psycopg2.OperationalError, match=REJECTED_REPLICATION):
            psycopg2.connect(
                host=address,
                user="repmgr",
                dbname="replication",
                replication="true",
                sslmode="require",
                password=password,
                connect_timeout=5,
            )
        # From the node itself (group db, the replication group): allowed, over TLS.
        login = host.run(
            f"PGPASSWORD={password} psql 'host={address} dbname=postgres user=repmgr sslmode=require' -XAtc 'SELECT 1'"
        )
        assert login.rc == 0, login.stderr
        # ... where the application user has no line (the node is no client).
        app = host.run(
            f"PGPASSWORD={PASSWORD} psql 'host={address} dbname=isikhnas user=isikhnas_app sslmode=require'"
            " -XAtc 'SELECT 1'"
        )
        assert app.rc != 0
        assert "no pg_hba.conf entry" in app.stderr
    finally:
        psql_as(host, "DROP ROLE repmgr")
