from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import psycopg2
import psycopg2.extensions
import pytest
from botocore.config import Config
from moto import mock_aws
from moto.server import ThreadedMotoServer

from helpers import REGION, create_database
from isikhnas_daemons.config import DbSettings
from isikhnas_daemons.db import Database
from isikhnas_daemons.migrate import load_migrations, migrate
from pgcluster import PgCluster, PgUnavailable, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sqs import SQSClient

TABLES = (
    "pipeline.delivery, pipeline.report_run, pipeline.outbox, pipeline.field_report_count, "
    "pipeline.field_report, pipeline.inbound_message, pipeline.location, pipeline.reporter"
)


@pytest.fixture
def log() -> logging.Logger:
    return logging.getLogger("isikhnas.test")


# -- AWS (moto, in-process) -------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "ISIKHNAS_AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def sqs(aws: None) -> SQSClient:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def s3(aws: None) -> S3Client:
    return boto3.client("s3", region_name=REGION, config=Config(signature_version="s3v4"))


@pytest.fixture
def ses(aws: None) -> SESClient:
    return boto3.client("ses", region_name=REGION)


# -- PostgreSQL ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    if os.environ.get("ISIKHNAS_SKIP_PG") == "1":
        pytest.skip("ISIKHNAS_SKIP_PG=1: PostgreSQL-backed tests skipped on request")
    try:
        cluster = PgCluster.start()
    except PgUnavailable as exc:
        pytest.fail(f"{exc} (or set ISIKHNAS_SKIP_PG=1 to skip the PostgreSQL tests)", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pipeline_dsn(pg_cluster: PgCluster) -> str:
    """A database with every migration applied, shared by the session (tables truncated per test)."""
    dsn = create_database(pg_cluster, "isikhnas")
    conn = psycopg2.connect(dsn)
    try:
        migrate(conn, load_migrations(), logging.getLogger("isikhnas.test"))
    finally:
        conn.close()
    return dsn


@pytest.fixture
def pg(pipeline_dsn: str) -> Iterator[psycopg2.extensions.connection]:
    """An autocommit connection to a clean pipeline database, with two reporters and a location."""
    conn = psycopg2.connect(pipeline_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        cur.execute(
            "INSERT INTO pipeline.reporter (channel, address, name) VALUES "
            "('email', 'vet@example.org', 'District vet'), ('im', '+6281234567890', 'Field officer')"
        )
        cur.execute(
            "INSERT INTO pipeline.location (code, name, geom) VALUES "
            "('BALI-0412', 'Desa Contoh', ST_SetSRID(ST_MakePoint(115.2167, -8.65), 4326))"
        )
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def database(pipeline_dsn: str, pg: psycopg2.extensions.connection, log: logging.Logger) -> Iterator[Database]:
    db = Database(DbSettings(dsn=pipeline_dsn, application_name="isikhnas-test"), log, backoff_seconds=0.01)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto in server mode on a free port, in a thread of this process (its backends are inspectable)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        yield endpoint
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=5)
        server.stop()
