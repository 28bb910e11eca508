"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extensions
import pytest

from isikhnas_daemons.config import WorkerSettings
from isikhnas_daemons.worker import Received
from pgcluster import PgCluster

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"
MOTO_ACCOUNT = "123456789012"  # moto's default account id


@dataclass(frozen=True)
class QueuePair:
    url: str
    dlq_url: str


def make_queue(sqs: SQSClient, name: str, *, max_receives: int = 3, visibility: int = 30) -> QueuePair:
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
        },
    )["QueueUrl"]
    return QueuePair(url, dlq_url)


def drain(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    """Receive and delete everything on a queue; the JSON bodies."""
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def count_messages(sqs: SQSClient, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def fast_settings(queue: str, **overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "queue": queue,
        "wait_time_seconds": 0,
        "batch_size": 10,
        "visibility_timeout": 30,
        "max_receives": 3,
        "retry_base_seconds": 0,
        "retry_max_seconds": 0,
        "job_timeout_seconds": 30,
    }
    values.update(overrides)
    return WorkerSettings(**values)


def received(body: dict[str, Any], message_id: str | None = None, receive_count: int = 1) -> Received:
    return Received(
        message_id=message_id or str(uuid.uuid4()),
        receipt_handle="receipt",
        body=json.dumps(body),
        receive_count=receive_count,
    )


def create_database(cluster: PgCluster, name: str) -> str:
    admin = psycopg2.connect(cluster.dsn())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
        admin.close()
    return cluster.dsn(name)


def scalar(conn: psycopg2.extensions.connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    return None if row is None else row[0]


# -- processes -----------------------------------------------------------------------------------

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} missing: install the package first (pip install -e files/daemons[dev])")
    return str(path)


def base_env(endpoint: str, notify: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "ISIKHNAS_AWS_REGION": "us-east-1",
        "ISIKHNAS_AWS_ENDPOINT_URL": endpoint,
        "ISIKHNAS_WAIT_TIME_SECONDS": "1",
        "NOTIFY_SOCKET": notify,
        "WATCHDOG_USEC": "400000",
    }


class NotifyListener:
    """A stand-in for systemd's notification socket: reads every datagram (as systemd does, so the
    daemon's queue never fills) and lets the test wait for one."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.datagrams: list[bytes] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.1)
        self._closed = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._changed:
                self.datagrams.append(data)
                self._changed.notify_all()

    def wait_for(self, prefix: bytes, timeout: float = 30) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: any(d.startswith(prefix) for d in self.datagrams), timeout):
                raise AssertionError(f"no {prefix!r} within {timeout}s; got {self.datagrams[-5:]}")

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self._sock.close()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class _Provider(BaseHTTPRequestHandler):
    server: FakeImProvider

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers), body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("X-Message-Id", f"provider-{len(self.server.requests)}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeImProvider(ThreadingHTTPServer):
    """An IM provider API: records the requests, answers with the queued statuses (then 200)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Provider)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/send"
