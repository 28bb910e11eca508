"""Helpers of the postgresql_ha tests: the nodes, the published endpoints (libpq services written by the role),
the db-primary record in moto, a continuous writer that records every acknowledged write, operator playbooks."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import testinfra

ADDRESSES = {"ha-db1": "172.31.8.11", "ha-db2": "172.31.8.12", "ha-db3": "172.31.8.13"}
NAMES = {address: name for name, address in ADDRESSES.items()}
NETWORK = "molecule-pgha"
CLIENT = "dbname=isikhnas user=isikhnas_app password=molecule-only-app-password"
ZONE = "pgha.isikhnas.internal"
RECORD = f"db-primary.{ZONE}."
MOTO = "http://172.31.8.5:5000"
PROJECT = Path(__file__).resolve().parents[3]


def node(name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"docker://{name}")


def sql(name: str, query: str, database: str = "postgres") -> str:
    return node(name).check_output(f'runuser -u postgres -- psql -XAtc "{query}" {database}')


def try_sql(name: str, query: str) -> str | None:
    result = node(name).run(f'runuser -u postgres -- psql -XAtc "{query}"')
    return result.stdout.strip() if result.rc == 0 else None


def service(name: str, section: str) -> str:
    """The libpq service `section` as the role wrote it on `name`, as one conninfo string."""
    text = node(name).file("/etc/postgresql-common/pg_service.conf").content_string
    pairs, current = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line and not line.startswith("#"):
            pairs.append(line)
    assert pairs, f"no [{section}] in pg_service.conf on {name}"
    return " ".join(pairs)


def writer_dsn() -> str:
    return f"{service('ha-db2', 'isikhnas-writer')} {CLIENT}"


def primaries() -> list[str]:
    return [name for name in ADDRESSES if try_sql(name, "SELECT pg_is_in_recovery()") == "f"]


def sender(name: str) -> str:
    return try_sql(name, "SELECT coalesce((SELECT sender_host FROM pg_stat_wal_receiver), '')") or ""


def streams_from(name: str) -> str:
    """The address this standby streams from, only while its WAL receiver's status is 'streaming'."""
    query = "SELECT coalesce((SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'), '')"
    return try_sql(name, query) or ""


def pg_unit(name: str) -> str:
    return "postgresql@" + node(name).check_output("ls /etc/postgresql") + "-main"


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def dns_primary() -> str | None:
    route53 = boto3.client(
        "route53", endpoint_url=MOTO, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    zones = [z for z in route53.list_hosted_zones()["HostedZones"] if z["Name"] == f"{ZONE}."]
    assert len(zones) == 1, f"zone {ZONE} not in moto"
    records = route53.list_resource_record_sets(HostedZoneId=zones[0]["Id"])["ResourceRecordSets"]
    values = [r["ResourceRecords"][0]["Value"] for r in records if r["Name"] == RECORD and r["Type"] == "A"]
    return values[0] if values else None


def playbook(name: str, *args: str, expect_failure: bool = False) -> str:
    """Run an operator playbook (or a path relative to the project) against the scenario's inventory; returns its
    output, stdout then stderr (results as JSON). With `expect_failure`, the playbook must fail."""
    path = PROJECT / name if "/" in name else PROJECT / "playbooks" / name
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(path)]
    env = {**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    result = subprocess.run([*command, *args], capture_output=True, text=True, check=False, env=env)
    failed = result.returncode != 0
    assert failed == expect_failure, (
        f"{name} {args} {'passed' if expect_failure else 'failed'}:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
    # failed tasks may be shown on stderr (display_failed_stderr in molecule's configuration)
    return f"{result.stdout}\n{result.stderr}"


def changed_tasks(output: str) -> dict[str, list[str]]:
    """The tasks a playbook run reported changed, by host (from its TASK headers and `changed: [host]` lines)."""
    found: dict[str, list[str]] = {}
    task = ""
    for line in output.splitlines():
        header = re.match(r"^TASK \[(.*)\]", line)
        if header:
            task = header.group(1)
            continue
        result = re.match(r"^changed: \[([^\]]+)\]", line)
        if result:
            found.setdefault(result.group(1).split(" -> ")[0], []).append(task)
    return found


def lsn(text: str) -> int:
    """A PostgreSQL LSN ('16/B374D848') as a number."""
    high, low = text.strip().split("/")
    return (int(high, 16) << 32) | int(low, 16)


class Writer(threading.Thread):
    """Writes 1, 2, 3 ... through the writer DSN into `table`, reconnecting after any error, and records each
    acknowledged id with the time and the server that acknowledged it."""

    def __init__(self, table: str) -> None:
        super().__init__(daemon=True)
        self.table = table
        self.dsn = writer_dsn()
        self.acked: list[tuple[int, float, str]] = []
        self.errors = 0
        self._stop = threading.Event()
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        conn.close()

    def run(self) -> None:
        n, conn, server = 0, None, ""
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(self.dsn)
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute("SELECT host(inet_server_addr())")
                        server = NAMES.get(cur.fetchone()[0], "?")
                n += 1
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (n,))
                self.acked.append((n, time.monotonic(), server))
                time.sleep(0.02)
            except psycopg2.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.1)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.join(30)

    def first_ack_after(self, since: float, not_on: str) -> tuple[float, str] | None:
        """Seconds from `since` to the first write acknowledged by a node other than `not_on`."""
        for _, at, server in list(self.acked):
            if at > since and server != not_on:
                return at - since, server
        return None

    def lost_on(self, name: str) -> list[int]:
        """Acknowledged ids missing on node `name`."""
        stored = {int(i) for i in sql(name, f"SELECT id FROM {self.table}", "isikhnas").split()}
        return sorted(i for i, _, _ in self.acked if i not in stored)
