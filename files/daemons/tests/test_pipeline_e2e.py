"""The whole pipeline as real processes (the console entry points) against moto in server mode and the
throwaway PostgreSQL: email and an instant message in, each report stored exactly once, replies and a
report out. The processor is killed with SIGKILL while messages flow and started again (systemd's job in
production); nothing is lost and nothing is duplicated, down to the emails SES is asked to send."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any

import boto3
import psycopg2.extensions
import pytest
from moto.ses.models import ses_backends

from helpers import (
    MOTO_ACCOUNT,
    FakeImProvider,
    NotifyListener,
    base_env,
    count_messages,
    make_queue,
    scalar,
    script,
)
from isikhnas_daemons.daemons.im_gateway import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from pgcluster import free_port

SECRET = "e2e-webhook-secret-0123456789"
QUEUES = {
    "ISIKHNAS_INBOUND_EMAIL_QUEUE": "e2e-inbound-email",
    "ISIKHNAS_PROCESSING_QUEUE": "e2e-processing",
    "ISIKHNAS_OUTGOING_EMAIL_QUEUE": "e2e-outgoing-email",
    "ISIKHNAS_OUTGOING_IM_QUEUE": "e2e-outgoing-im",
    "ISIKHNAS_REPORTING_QUEUE": "e2e-reporting",
}
EMAILS = 10


class Daemon:
    """One console entry point as a process with its own notify socket and log file."""

    def __init__(self, name: str, env: dict[str, str], tmp: Path) -> None:
        self.name = name
        self.notify = NotifyListener(tmp / f"{name}-{time.monotonic_ns()}.sock")
        self.log_path = tmp / f"{name}.log"
        self._log: IO[str] = self.log_path.open("a")
        self.process = subprocess.Popen(
            [script(f"isikhnas-{name}")],
            env=env | {"NOTIFY_SOCKET": self.notify.path, "PYTHONFAULTHANDLER": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> None:
        self.notify.wait_for(b"READY=1")

    def send(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, sig: int | None = signal.SIGTERM) -> int:
        """Send ``sig`` (None: it was sent already; a second SIGTERM could hit interpreter shutdown)."""
        if sig is not None:
            self.send(sig)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: tracebacks into the log
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()  # never leave a daemon behind
                self.process.wait()
            return -999
        finally:
            self.notify.close()
            self._log.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ses_notification(ses_id: str, key: str) -> dict[str, Any]:
    inner = {
        "notificationType": "Received",
        "mail": {"timestamp": "2030-01-01T00:00:00.000Z", "source": "vet@example.org", "messageId": ses_id},
        "receipt": {
            "spfVerdict": {"status": "PASS"},
            "dkimVerdict": {"status": "PASS"},
            "spamVerdict": {"status": "PASS"},
            "virusVerdict": {"status": "PASS"},
            "action": {"type": "S3", "bucketName": "e2e-inbound", "objectKey": key},
        },
    }
    return {"Type": "Notification", "Message": json.dumps(inner)}


@pytest.fixture
def provider() -> Iterator[FakeImProvider]:
    server = FakeImProvider()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_pipeline_end_to_end_with_a_processor_crash(
    moto_server: str,
    pipeline_dsn: str,
    pg: psycopg2.extensions.connection,
    provider: FakeImProvider,
    tmp_path: Path,
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_server)
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server).verify_email_identity(
        EmailAddress="reports@isikhnas.example"
    )
    for bucket in ("e2e-inbound", "e2e-reports"):
        s3.create_bucket(Bucket=bucket)
    urls = {name: make_queue(sqs, name, max_receives=5, visibility=5) for name in QUEUES.values()}
    webhook_port = free_port()
    env = base_env(moto_server, "") | QUEUES
    env |= {
        "ISIKHNAS_DB_DSN": pipeline_dsn,
        "ISIKHNAS_VISIBILITY_TIMEOUT": "4",
        "ISIKHNAS_RETRY_BASE_SECONDS": "1",
        "ISIKHNAS_OUTBOX_SWEEP_SECONDS": "2",
        "ISIKHNAS_EMAIL_FROM": "iSIKHNAS <reports@isikhnas.example>",
        "ISIKHNAS_REPORTS_BUCKET": "e2e-reports",
        "ISIKHNAS_IM_PROVIDER": "wa",
        "ISIKHNAS_IM_WEBHOOK_SECRET": SECRET,
        "ISIKHNAS_IM_SEND_URL": provider.url,
        "ISIKHNAS_IM_LISTEN_PORT": str(webhook_port),
    }
    names = ("inbound-email", "processor", "reporter", "email-sender", "im-gateway")
    daemons: dict[str, Daemon] = {}
    try:
        for name in names:
            daemons[name] = Daemon(name, env, tmp_path)
        for daemon in daemons.values():
            daemon.ready()

        for n in range(EMAILS):
            msg = EmailMessage()
            msg["From"] = "District Vet <vet@example.org>"
            msg["Subject"] = f"report {n}"
            msg["Message-ID"] = f"<e2e-{n}@example.org>"
            msg.set_content(f"DIS @-8.{n:02d},115.2 HS CAT={n + 1}/1" + (" RPT:100" if n == 0 else ""))
            s3.put_object(Bucket="e2e-inbound", Key=f"incoming/e2e-{n}", Body=msg.as_bytes())
            sqs.send_message(
                QueueUrl=urls["e2e-inbound-email"].url,
                MessageBody=json.dumps(ses_notification(f"e2e-{n}", f"incoming/e2e-{n}")),
            )
        body = json.dumps({"id": "im-1", "from": "+6281234567890", "text": "VAC BALI-0412 ANTHRAX CAT=40"}).encode()
        stamp = str(int(time.time()))
        request = urllib.request.Request(
            f"http://127.0.0.1:{webhook_port}/webhook",
            data=body,
            method="POST",
            headers={TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(SECRET.encode(), stamp, body)},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202

        # kill -9 the processor while the stream is flowing, then "systemd" starts it again
        wait_for(lambda: scalar(pg, "SELECT count(*) FROM pipeline.field_report") >= 3, "first reports")
        assert daemons["processor"].stop(signal.SIGKILL) == -signal.SIGKILL
        daemons["processor"] = Daemon("processor", env, tmp_path)
        daemons["processor"].ready()

        total = EMAILS + 1
        backend = ses_backends[MOTO_ACCOUNT]["us-east-1"]
        wait_for(lambda: scalar(pg, "SELECT count(*) FROM pipeline.field_report") == total, "all reports stored")
        # one reply per email plus the report notification; the IM reply goes to the provider
        wait_for(lambda: len(backend.sent_messages) >= EMAILS + 1, "all emails sent")
        wait_for(lambda: len(provider.requests) >= 1, "the IM reply")
        wait_for(lambda: s3.list_objects_v2(Bucket="e2e-reports").get("KeyCount", 0) == 2, "report artefacts")

        # every queue drained, including a message the killed processor held (redelivered after its
        # visibility timeout and recognised as already processed)
        def drained(url: str) -> Callable[[], bool]:
            return lambda: count_messages(sqs, url) == 0

        for name, pair in urls.items():
            wait_for(drained(pair.url), f"{name} to drain")
        time.sleep(1.0)  # let any duplicate that would slip through arrive

        assert scalar(pg, "SELECT count(*) FROM pipeline.field_report") == total
        assert scalar(pg, "SELECT count(*) FROM pipeline.inbound_message WHERE status <> 'accepted'") == 0
        assert scalar(pg, "SELECT count(*) FROM pipeline.outbox WHERE sent_at IS NULL") == 0
        sent = [m.raw_data for m in backend.sent_messages]
        assert len(sent) == EMAILS + 1
        assert sum("report accepted" in raw for raw in sent) == EMAILS
        assert sum("NEARBY report" in raw and "CSV: " in raw for raw in sent) == 1
        assert len(provider.requests) == 1
        assert b"report accepted" in provider.requests[0][1]
        for pair in urls.values():
            assert count_messages(sqs, pair.dlq_url) == 0
    finally:
        for daemon in daemons.values():
            daemon.send(signal.SIGTERM)  # all at once: they drain in parallel
        statuses = {name: daemon.stop(None) for name, daemon in daemons.items()}
    assert statuses == dict.fromkeys(names, 0), {n: daemons[n].log_path.read_text()[-2000:] for n in names}
