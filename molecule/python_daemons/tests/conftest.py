"""Fixtures of the python_daemons scenario: the hosts (testinfra's docker backend, fast), the moto server and
the pipeline database with the test reporters registered."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra
from helpers import REPORTER_EMAIL, REPORTER_PHONE, Aws, Db

# The bad-variable checks the scenarios share (molecule/shared/refusal.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def hosts() -> dict[str, testinfra.host.Host]:
    names = ("daemons-messaging", "daemons-worker")
    return {name: testinfra.get_host(f"docker://{name}") for name in names}


@pytest.fixture(scope="session")
def messaging(hosts: dict[str, testinfra.host.Host]) -> testinfra.host.Host:
    return hosts["daemons-messaging"]


@pytest.fixture(scope="session")
def worker(hosts: dict[str, testinfra.host.Host]) -> testinfra.host.Host:
    return hosts["daemons-worker"]


@pytest.fixture(scope="session")
def aws() -> Aws:
    return Aws()


@pytest.fixture(scope="session")
def db() -> Iterator[Db]:
    """The pipeline database with the test's reporters and a location registered."""
    database = Db()
    database.scalar(
        "INSERT INTO pipeline.reporter (channel, address, name) VALUES "
        "('email', %s, 'District vet'), ('im', %s, 'Field officer') ON CONFLICT DO NOTHING RETURNING 1",
        (REPORTER_EMAIL, REPORTER_PHONE),
    )
    database.scalar(
        "INSERT INTO pipeline.location (code, name, geom) VALUES "
        "('BALI-0412', 'Desa Contoh', ST_SetSRID(ST_MakePoint(115.2167, -8.65), 4326)) "
        "ON CONFLICT DO NOTHING RETURNING 1"
    )
    try:
        yield database
    finally:
        database.conn.close()
