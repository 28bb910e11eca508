"""Helpers of the python_daemons scenario's tests: the moto server, the pipeline database, systemd state,
ansible-playbook runs, waiting."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import psycopg2.extensions
import testinfra
import yaml

INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"])
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
CONVERGE = SCENARIO / "converge.yml"
GROUP_VARS = yaml.safe_load((INVENTORY.parent / "group_vars" / "all").read_text())
MOTO = GROUP_VARS["molecule_aws_endpoint_url"]
REGION = GROUP_VARS["molecule_aws_region"]
PREFIX = GROUP_VARS["molecule_prefix"]
# The worker is also the db host; TLS required, as for the daemons (pg_hba.conf accepts nothing else).
DB_DSN = (
    "host=172.31.7.12 port=5432 dbname=isikhnas user=pipeline sslmode=require "
    f"password={GROUP_VARS['molecule_db_password']}"
)
REPORTER_EMAIL = "vet@example.org"
REPORTER_PHONE = "+6281234567890"
DAEMONS = {
    "daemons-messaging": ("inbound-email", "im-gateway", "email-sender"),
    "daemons-worker": ("processor", "reporter"),
}
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 90, interval: float = 0.5) -> Any:
    """Poll until ``condition()`` is truthy and return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- AWS (the scenario's moto server) --------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """An email as SES received it: headers and the decoded text."""

    headers: dict[str, str]
    text: str

    @classmethod
    def parse(cls, raw: str) -> Sent:
        msg = email.message_from_string(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        return cls(headers={k.lower(): str(v) for k, v in msg.items()}, text=text)


class Aws:
    def __init__(self) -> None:
        options: dict[str, Any] = {
            "region_name": REGION,
            "endpoint_url": MOTO,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        self.sqs = boto3.client("sqs", **options)
        self.s3 = boto3.client("s3", **options)

    def queue_url(self, purpose: str) -> str:
        return self.sqs.get_queue_url(QueueName=f"{PREFIX}-{purpose}")["QueueUrl"]

    def depth(self, purpose: str) -> int:
        """Messages on a queue, visible or in flight."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url(purpose), AttributeNames=names)
        return sum(int(attributes["Attributes"][n]) for n in names)

    @staticmethod
    def sent_emails() -> list[Sent]:
        """Every email SES was asked to send (moto keeps them; read through its model API), decoded."""

        def data_json() -> Any:
            # moto serialises its whole state for this; while the daemons change it, it sometimes answers 500
            try:
                with urllib.request.urlopen(f"{MOTO}/moto-api/data.json", timeout=30) as response:
                    return json.load(response)
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    raise
                return None

        data = wait_for(data_json, "moto's state (moto-api/data.json)", timeout=60)
        return [Sent.parse(str(m.get("raw_data", ""))) for m in data.get("ses", {}).get("RawMessage", [])]

    def send_email(self, text: str | None, *, subject: str = "Laporan", attachment: bytes | None = None) -> str:
        """Store an email in the inbound bucket and queue SES's notification for it; its SES message id."""
        ses_id = f"mol-{uuid.uuid4().hex[:16]}"
        msg = EmailMessage()
        msg["From"] = f"District Vet <{REPORTER_EMAIL}>"
        msg["To"] = "lapor@isikhnas.example"
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{ses_id}@example.org>"
        if text is not None:
            msg.set_content(text)
        if attachment is not None:
            msg.add_attachment(attachment, maintype="image", subtype="png", filename="photo.png")
        key = f"incoming/{ses_id}"
        self.s3.put_object(Bucket=f"{PREFIX}-inbound", Key=key, Body=msg.as_bytes())
        verdict = {"status": "PASS"}
        notification = {
            "notificationType": "Received",
            "mail": {"timestamp": "2030-01-01T00:00:00.000Z", "source": REPORTER_EMAIL, "messageId": ses_id},
            "receipt": {
                "spfVerdict": verdict,
                "dkimVerdict": verdict,
                "spamVerdict": verdict,
                "virusVerdict": verdict,
                "action": {"type": "S3", "bucketName": f"{PREFIX}-inbound", "objectKey": key},
            },
        }
        envelope = {"Type": "Notification", "Message": json.dumps(notification)}
        self.sqs.send_message(QueueUrl=self.queue_url("incoming-email"), MessageBody=json.dumps(envelope))
        return ses_id


# -- PostgreSQL (the db host; the controller reaches it on the scenario's network) ------------------


class Db:
    def __init__(self) -> None:
        self.conn = psycopg2.connect(DB_DSN)
        self.conn.autocommit = True

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
        return None if row is None else row[0]

    def count(self, table: str, column: str, values: list[str]) -> int:
        return int(self.scalar(f"SELECT count(*) FROM pipeline.{table} WHERE {column} = ANY(%s)", (values,)))


# -- systemd and ansible-playbook ------------------------------------------------------------------


def unit_state(host: testinfra.host.Host, daemon: str) -> dict[str, str]:
    out = host.check_output(
        f"systemctl show isikhnas-{daemon}.service -p ActiveState -p MainPID -p InvocationID -p NRestarts"
    )
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def invocations(hosts: dict[str, testinfra.host.Host]) -> dict[str, str]:
    """Every daemon's InvocationID: a new one means the unit was (re)started."""
    return {
        daemon: unit_state(hosts[name], daemon)["InvocationID"]
        for name, daemons in DAEMONS.items()
        for daemon in daemons
    }


def converge(*args: str) -> tuple[dict[str, tuple[int, int]], str]:
    """Run the scenario's converge playbook; per host (changed, failed) from the recap, and the output."""
    run = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), *args, str(CONVERGE)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = run.stdout + run.stderr
    recap = {name: (int(changed), int(failed)) for name, changed, _, failed in RECAP.findall(output)}
    assert recap, output
    return recap, output
