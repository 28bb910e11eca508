"""Helpers of the lab tests: HTTPS against the lab CA, the pipeline database, the lab's moto, playbooks."""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import closing
from email.message import EmailMessage
from typing import Any

import boto3
import psycopg2
from conftest import ROOT, STATE, ansible_env

REPORTER = "vet@example.org"


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120, interval: float = 0.5) -> Any:
    """Poll until ``condition()`` is truthy and return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def https(port: int, path: str) -> tuple[int, dict[str, str], str]:
    """GET over TLS from loopback, the server's certificate verified against the lab CA (name 127.0.0.1)."""
    context = ssl.create_default_context(cafile=str(STATE / "pki" / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def playbook(name: str, *args: str) -> str:
    command = ["ansible-playbook", "-i", str(ROOT / "inventories" / "lab"), str(ROOT / "playbooks" / name), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT, env=ansible_env())
    assert result.returncode == 0, f"{name} {args} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    return result.stdout


class Pipeline:
    """The lab's pipeline: its queues and buckets on moto, its database on the cluster (writer DSN)."""

    def __init__(self, inventory: dict[str, Any]) -> None:
        hostvars = inventory["_meta"]["hostvars"]
        db = sorted(inventory["db"]["hosts"])
        anyhost = hostvars[db[0]]
        self.endpoint = f"http://127.0.0.1:{anyhost['lab_aws']['published_port']}"
        self.prefix = f"isikhnas-{anyhost['lab_aws_environment']}"
        account = anyhost["lab_aws_account_id"]
        self.inbound_bucket = f"{self.prefix}-{account}-inbound-mail"
        self.reports_bucket = f"{self.prefix}-{account}-reports"
        password = (STATE / "secrets" / "db-pipeline").read_text().split()[0]
        self.dsn = (
            f"host={','.join(hostvars[h]['lab_address'] for h in db)} port={','.join(['5432'] * len(db))}"
            f" dbname=isikhnas_pipeline user=pipeline password={password} sslmode=require connect_timeout=2"
            " target_session_attrs=read-write"
        )
        options: dict[str, Any] = {
            "region_name": anyhost["lab_aws_region"],
            "endpoint_url": self.endpoint,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        self.sqs = boto3.client("sqs", **options)
        self.s3 = boto3.client("s3", **options)

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """One value, on whichever node is the primary now (a failed connection counts as no answer yet)."""
        try:
            with closing(psycopg2.connect(self.dsn)) as conn, conn, conn.cursor() as cur:
                cur.execute(sql, params)
                row = cur.fetchone()
        except psycopg2.OperationalError:
            return None
        return row[0] if row else None

    def ensure_reporter(self) -> None:
        with closing(psycopg2.connect(self.dsn)) as conn, conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO pipeline.reporter (channel, address, name) SELECT 'email', %s, 'lab vet'"
                " WHERE NOT EXISTS (SELECT 1 FROM pipeline.reporter WHERE channel = 'email' AND address = %s)",
                (REPORTER, REPORTER),
            )

    def send_email(self, text: str, subject: str = "Laporan") -> str:
        """Store an email in the inbound bucket and queue SES's notification of it, as SES does; its id."""
        ses_id = f"lab-{uuid.uuid4().hex[:16]}"
        msg = EmailMessage()
        msg["From"] = f"District Vet <{REPORTER}>"
        msg["To"] = "lapor@isikhnas.example.org"
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{ses_id}@example.org>"
        msg.set_content(text)
        key = f"inbound/{ses_id}"
        self.s3.put_object(Bucket=self.inbound_bucket, Key=key, Body=msg.as_bytes())
        verdict = {"status": "PASS"}
        inner = {
            "notificationType": "Received",
            "mail": {"timestamp": "2030-01-01T00:00:00.000Z", "source": REPORTER, "messageId": ses_id},
            "receipt": {
                "spfVerdict": verdict,
                "dkimVerdict": verdict,
                "spamVerdict": verdict,
                "virusVerdict": verdict,
                "action": {"type": "S3", "bucketName": self.inbound_bucket, "objectKey": key},
            },
        }
        url = self.sqs.get_queue_url(QueueName=f"{self.prefix}-incoming-email")["QueueUrl"]
        self.sqs.send_message(
            QueueUrl=url, MessageBody=json.dumps({"Type": "Notification", "Message": json.dumps(inner)})
        )
        return ses_id

    def sent_texts(self) -> list[tuple[dict[str, str], str]]:
        """Every email SES was asked to send (headers, plain text), read through moto's model API."""

        def data() -> Any:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=30) as response:
                    return json.load(response)
            except urllib.error.HTTPError as error:  # moto answers 500 now and then while it changes
                if error.code < 500:
                    raise
                return None

        sent = []
        for raw in wait_for(data, "moto's state").get("ses", {}).get("RawMessage", []):
            msg = email.message_from_string(str(raw.get("raw_data", "")), policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            body = msg.get_body(preferencelist=("plain",))
            sent.append(({k.lower(): str(v) for k, v in msg.items()}, body.get_content() if body else ""))
        return sent
