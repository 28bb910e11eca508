"""The console entry points as real processes: configuration from the environment, sd_notify, JSON logs,
SIGTERM drain with exit 0, and EX_CONFIG on a bad environment. AWS is moto in server mode (in a thread)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from moto.ses.models import ses_backends

from helpers import MOTO_ACCOUNT, NotifyListener, base_env, json_lines, script


def test_email_sender_process_sends_and_drains_on_sigterm(moto_server: str, tmp_path: Path) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_server)
    ses = boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server)
    ses.verify_email_identity(EmailAddress="reports@isikhnas.example")
    url = sqs.create_queue(QueueName="e2e-outgoing-email")["QueueUrl"]
    listener = NotifyListener(tmp_path / "notify.sock")
    env = base_env(moto_server, listener.path) | {
        "ISIKHNAS_OUTGOING_EMAIL_QUEUE": "e2e-outgoing-email",  # a name, resolved at start
        "ISIKHNAS_EMAIL_FROM": "iSIKHNAS <reports@isikhnas.example>",
    }
    process = subprocess.Popen(
        [script("isikhnas-email-sender")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        listener.wait_for(b"READY=1")
        body = {"version": 1, "dedup_id": "e2e:1", "to": ["vet@example.org"], "subject": "s", "text": "hello"}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
        backend = ses_backends[MOTO_ACCOUNT]["us-east-1"]
        deadline = time.monotonic() + 15
        while not backend.sent_messages and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(backend.sent_messages) == 1
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    listener.wait_for(b"STOPPING=1", timeout=5)
    listener.close()
    assert process.returncode == 0, stderr
    messages = [entry["msg"] for entry in json_lines(stdout)]
    assert "email sent" in messages
    assert "stop requested; drained" in messages
    assert all(entry["daemon"] == "email-sender" for entry in json_lines(stdout))
    assert b"WATCHDOG=1" in listener.datagrams


@pytest.mark.parametrize(
    ("daemon", "missing"),
    [
        # every entry point's wiring also runs in test_pipeline_e2e.py
        ("isikhnas-processor", "ISIKHNAS_PROCESSING_QUEUE is required"),
        ("isikhnas-im-gateway", "ISIKHNAS_IM_WEBHOOK_SECRET (or ISIKHNAS_IM_WEBHOOK_SECRET_FILE) is required"),
        ("isikhnas-migrate", "ISIKHNAS_DB_DSN is required"),
        ("isikhnas-processor LOUD", "ISIKHNAS_LOG_LEVEL must be one of debug, info, warning, error"),
    ],
)
def test_bad_configuration_exits_78(daemon: str, missing: str) -> None:
    name, _, level = daemon.partition(" ")
    result = subprocess.run(
        [script(name)],
        env={"PATH": os.environ.get("PATH", ""), "ISIKHNAS_AWS_REGION": "us-east-1"}
        | ({"ISIKHNAS_LOG_LEVEL": level} if level else {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 78
    [entry] = json_lines(result.stdout or result.stderr)  # migrate logs to stderr
    assert entry["msg"] == "configuration error"
    assert missing in entry["error"]
