from __future__ import annotations

import logging

import psycopg2
import psycopg2.extensions
import pytest

from helpers import scalar
from isikhnas_daemons.config import DbSettings
from isikhnas_daemons.db import Cursor, Database, full_dsn
from isikhnas_daemons.worker import Unavailable
from pgcluster import PgCluster, free_port


def test_full_dsn_adds_defaults_but_never_overrides() -> None:
    dsn = full_dsn(DbSettings(dsn="host=a,b dbname=x keepalives_idle=5", password="pw", application_name="app"))
    parsed = psycopg2.extensions.parse_dsn(dsn)
    assert parsed["target_session_attrs"] == "read-write"
    assert parsed["keepalives_idle"] == "5"
    assert parsed["application_name"] == "app"
    assert parsed["password"] == "pw"
    assert parsed["host"] == "a,b"


def test_multi_host_dsn_skips_a_dead_host(pg_cluster: PgCluster, pg: psycopg2.extensions.connection) -> None:
    dead = free_port()
    dsn = f"host=127.0.0.1,127.0.0.1 port={dead},{pg_cluster.port} user=postgres dbname=isikhnas connect_timeout=2"
    db = Database(DbSettings(dsn=dsn), logging.getLogger("t"))

    def select_one(cur: Cursor) -> object:
        cur.execute("SELECT 1")
        return cur.fetchone()

    assert db.transaction(select_one) == (1,)
    assert db.connection().info.port == pg_cluster.port
    db.close()


def test_unreachable_database_is_unavailable() -> None:
    db = Database(
        DbSettings(dsn=f"host=127.0.0.1 port={free_port()} dbname=x connect_timeout=1"),
        logging.getLogger("t"),
        attempts=2,
        backoff_seconds=0,
    )
    with pytest.raises(Unavailable, match="database unreachable"):
        db.transaction(lambda cur: None)
    with pytest.raises(Unavailable):
        db.ping()


def test_connection_killed_mid_transaction_is_retried_exactly_once(
    database: Database, pg: psycopg2.extensions.connection
) -> None:
    """A failover/restart kills the session mid-transaction: reconnect, redo the unit of work, no duplicate."""
    database.ping()
    attempts: list[int] = []

    def work(cur: Cursor) -> None:
        attempts.append(1)
        cur.execute("INSERT INTO pipeline.delivery (dedup_id, channel) VALUES ('d1', 'email') ON CONFLICT DO NOTHING")
        if len(attempts) == 1:
            # Another session terminates ours, as a failover would; the next statement fails.
            with pg.cursor() as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'isikhnas-test'"
                )
            cur.execute("SELECT 1")

    database.transaction(work)
    assert len(attempts) == 2
    assert database.reconnects == 1
    assert scalar(pg, "SELECT count(*) FROM pipeline.delivery") == 1


def test_application_errors_roll_back_and_propagate(database: Database, pg: psycopg2.extensions.connection) -> None:
    def work(cur: Cursor) -> None:
        cur.execute("INSERT INTO pipeline.delivery (dedup_id, channel) VALUES ('d2', 'email')")
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        database.transaction(work)
    assert scalar(pg, "SELECT count(*) FROM pipeline.delivery") == 0
    database.ping()  # the connection is still usable
