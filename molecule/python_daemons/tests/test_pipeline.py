"""The pipeline end to end through the daemons as the role runs them under systemd: email in, row in PostgreSQL,
reply out through SES, a report request producing a CSV and a chart in S3; a malformed email answered with a
rejection and stored nowhere; a poison message in the dead-letter queue; an instant message in and answered."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import time
import urllib.request
import uuid
from typing import Any

import pytest
import testinfra
from helpers import PREFIX, REPORTER_PHONE, Aws, Db, Sent, wait_for

WEBHOOK = "http://172.31.7.11:8080/webhook"
WEBHOOK_SECRET = "molecule-webhook-secret-0123456789"
PROVIDER_LOG = "/run/fake-im-provider/requests.jsonl"
# A stand-in for the IM provider's send API on the messaging host (python_daemons_im_send_url points at it).
PROVIDER = f"""
import http.server, json, os
os.makedirs(os.path.dirname({PROVIDER_LOG!r}), exist_ok=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open({PROVIDER_LOG!r}, "a") as log:
            log.write(json.dumps({{"headers": dict(self.headers), "body": body.decode()}}) + "\\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", 8099), Handler).serve_forever()
"""
WAIT_FOR_PORT = """
import socket, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", 8099), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("the fake IM provider did not start")
"""


@pytest.fixture(scope="module")
def accepted(aws: Aws, db: Db) -> dict[str, Any]:
    """A valid report by email that also asks for the NEARBY report, once processed."""
    ses_id = aws.send_email("DIS @-8.65,115.22 AI CHI=20/5 DUC=3 RPT:50\n", subject="Laporan flu burung")
    message_id = f"email:{ses_id}"
    wait_for(lambda: db.count("field_report", "message_id", [message_id]) == 1, "the report row")
    return {"ses_id": ses_id, "message_id": message_id}


def test_email_becomes_a_row_in_postgresql(accepted: dict[str, Any], db: Db) -> None:
    message_id = accepted["message_id"]
    assert db.scalar("SELECT status FROM pipeline.inbound_message WHERE message_id = %s", (message_id,)) == "accepted"
    row = db.scalar(
        "SELECT json_build_object('kind', kind, 'disease', disease, 'lat', ST_Y(geom), 'lon', ST_X(geom)) "
        "FROM pipeline.field_report WHERE message_id = %s",
        (message_id,),
    )
    assert row == {"kind": "DIS", "disease": "AI", "lat": -8.65, "lon": 115.22}
    counts = db.scalar(
        "SELECT json_object_agg(species || ':' || measure, n) FROM pipeline.field_report_count c "
        "JOIN pipeline.field_report r ON r.id = c.report_id WHERE r.message_id = %s",
        (message_id,),
    )
    assert counts == {"CHI:sick": 20, "CHI:dead": 5, "DUC:sick": 3, "DUC:dead": 0}


def test_daemons_reach_postgresql_over_tls(accepted: dict[str, Any], db: Db) -> None:
    """The daemons' sessions (processor and reporter on the worker, the delivery log on the messaging host) all
    use TLS, as the libpq DSN asks; the server (role postgresql) would refuse anything else."""

    def sessions() -> dict[str, bool]:
        return (
            db.scalar(
                "SELECT json_object_agg(addr, tls) FROM (SELECT host(a.client_addr) AS addr, bool_and(s.ssl) AS tls "
                "FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'pipeline' "
                "AND a.pid <> pg_backend_pid() AND a.client_addr IS NOT NULL GROUP BY 1) t"
            )
            or {}
        )

    wanted = {"172.31.7.11": True, "172.31.7.12": True}
    wait_for(lambda: sessions() == wanted, "TLS sessions from both hosts")


def test_reply_is_sent_through_ses(accepted: dict[str, Any], aws: Aws) -> None:
    in_reply_to = f"<{accepted['ses_id']}@example.org>"

    def replies() -> list[Sent]:
        sent = aws.sent_emails()
        return [m for m in sent if m.headers.get("in-reply-to") == in_reply_to and "report accepted" in m.text]

    wait_for(replies, "the confirmation email")
    time.sleep(2)  # a duplicate would show up now
    sent = replies()
    assert len(sent) == 1
    assert sent[0].headers["subject"] == "Re: Laporan flu burung"
    assert sent[0].headers["to"] == "vet@example.org"
    assert sent[0].headers["from"] == "iSIKHNAS <reports@isikhnas.example>"
    assert "reference R" in sent[0].text


def test_report_request_produces_csv_and_chart(accepted: dict[str, Any], aws: Aws, db: Db) -> None:
    request_id = f"{accepted['message_id']}:report"
    wait_for(lambda: db.count("report_run", "request_id", [request_id]) == 1, "the report run")
    csv_key = db.scalar("SELECT csv_key FROM pipeline.report_run WHERE request_id = %s", (request_id,))
    chart_key = db.scalar("SELECT chart_key FROM pipeline.report_run WHERE request_id = %s", (request_id,))
    bucket = f"{PREFIX}-reports"
    rows = list(csv.DictReader(io.StringIO(aws.s3.get_object(Bucket=bucket, Key=csv_key)["Body"].read().decode())))
    assert any(row.get("disease") == "AI" for row in rows), rows
    chart = aws.s3.get_object(Bucket=bucket, Key=chart_key)["Body"].read().decode()
    assert chart.lstrip().startswith(("<svg", "<?xml")), chart[:200]
    assert "</svg>" in chart
    # ... and the link to it is mailed to the reporter
    notices = wait_for(
        lambda: [m for m in aws.sent_emails() if "NEARBY report" in m.text and f"/{csv_key}?" in m.text],
        "the report notification",
    )
    assert len(notices) == 1
    assert f"/{chart_key}?" in notices[0].text


def test_malformed_email_gets_a_rejection_and_lands_in_no_table(aws: Aws, db: Db) -> None:
    def rejections() -> int:
        return sum("could not read your message" in m.text for m in aws.sent_emails())

    before = rejections()
    ses_id = aws.send_email(None, subject="foto", attachment=b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    wait_for(lambda: rejections() > before, "the rejection email")
    kept = aws.s3.head_object(Bucket=f"{PREFIX}-inbound", Key=f"rejected/{ses_id}.eml")
    assert kept["ContentLength"] > 0
    time.sleep(3)  # let anything that would still reach the processor arrive
    assert rejections() == before + 1
    message_id = f"email:{ses_id}"
    assert db.count("inbound_message", "message_id", [message_id]) == 0
    assert db.count("field_report", "message_id", [message_id]) == 0
    assert db.count("outbox", "source_id", [message_id]) == 0


def test_poison_message_ends_in_the_dead_letter_queue(aws: Aws, worker: testinfra.host.Host) -> None:
    marker = f"poison-{uuid.uuid4().hex}"
    aws.sqs.send_message(QueueUrl=aws.queue_url("processing"), MessageBody=f"this is not JSON {marker}")
    dlq = aws.queue_url("processing-dlq")

    def in_dlq() -> bool:
        messages = aws.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return any(marker in m["Body"] for m in messages.get("Messages", []))

    wait_for(in_dlq, "the poison message in the dead-letter queue", timeout=120, interval=1)
    journal = worker.check_output("journalctl -u isikhnas-processor.service --no-pager -o cat -n 200")
    assert "permanent failure" in journal
    assert wait_for(lambda: aws.depth("processing") == 0, "the processing queue to drain")


def test_instant_message_is_stored_and_answered(messaging: testinfra.host.Host, db: Db) -> None:
    messaging.run("systemctl stop fake-im-provider.service")
    messaging.check_output("systemd-run --unit=fake-im-provider --collect python3 -c %s", PROVIDER)
    messaging.check_output("python3 -c %s", WAIT_FOR_PORT)
    try:
        im_id = uuid.uuid4().hex[:12]
        body = json.dumps({"id": im_id, "from": REPORTER_PHONE, "text": "VAC BALI-0412 ANTHRAX CAT=40"}).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            WEBHOOK,
            data=body,
            method="POST",
            headers={"X-Isikhnas-Timestamp": stamp, "X-Isikhnas-Signature": f"sha256={signature}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        message_id = f"im:wa:{im_id}"
        wait_for(lambda: db.count("field_report", "message_id", [message_id]) == 1, "the IM report row")
        # The reply's id is the sha256 of its dedup_id; it reaches the provider once.
        reply_id = hashlib.sha256(f"{message_id}:reply".encode()).hexdigest()

        def replies() -> list[dict[str, Any]]:
            lines = messaging.run("cat %s", PROVIDER_LOG).stdout.splitlines()
            bodies = [json.loads(json.loads(line)["body"]) for line in lines if line.strip()]
            return [b for b in bodies if b.get("id") == reply_id]

        reply = wait_for(replies, "the IM reply at the provider")
        time.sleep(2)
        assert len(replies()) == 1
        assert reply[0]["to"] == REPORTER_PHONE
        assert "report accepted" in reply[0]["text"]
    finally:
        messaging.run("systemctl stop fake-im-provider.service")
