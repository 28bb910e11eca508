from __future__ import annotations

import base64
import json
import logging
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import pytest

from helpers import count_messages, drain, fast_settings, make_queue, received
from isikhnas_daemons.daemons.inbound_email import InboundEmail, InboundSettings
from isikhnas_daemons.messages import ProcessingJob
from isikhnas_daemons.queues import Producer
from isikhnas_daemons.worker import PermanentError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

BUCKET = "isikhnas-inbound"


@pytest.fixture
def inbound(sqs: SQSClient, s3: S3Client, log: logging.Logger) -> tuple[InboundEmail, str, str]:
    s3.create_bucket(Bucket=BUCKET)
    processing = make_queue(sqs, "processing").url
    outgoing = make_queue(sqs, "outgoing-email").url
    settings = InboundSettings(
        worker=fast_settings("inbound"),
        processing_queue=processing,
        outgoing_email_queue=outgoing,
        max_email_bytes=50_000,
    )
    handler = InboundEmail(
        s3=s3,
        processing=Producer(sqs, processing),
        outgoing_email=Producer(sqs, outgoing),
        settings=settings,
        log=log,
    )
    return handler, processing, outgoing


def notification(
    key: str, *, ses_id: str = "ses-0001", source: str = "vet@example.org", **verdicts: str
) -> dict[str, Any]:
    def verdict(name: str) -> dict[str, str]:
        return {"status": verdicts.get(name, "PASS")}

    return {
        "notificationType": "Received",
        "mail": {
            "timestamp": "2024-05-01T10:00:00.000Z",
            "source": source,
            "messageId": ses_id,
            "destination": ["reports@isikhnas.example"],
        },
        "receipt": {
            "recipients": ["reports@isikhnas.example"],
            "spamVerdict": verdict("spam"),
            "virusVerdict": verdict("virus"),
            "spfVerdict": verdict("spf"),
            "dkimVerdict": verdict("dkim"),
            "action": {"type": "S3", "bucketName": BUCKET, "objectKey": key},
        },
    }


def sns(inner: dict[str, Any]) -> dict[str, Any]:
    return {"Type": "Notification", "MessageId": "sns-1", "Message": json.dumps(inner)}


def store(s3: S3Client, key: str, raw: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=raw)


def report_mail(**headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "District Vet <vet@example.org>")
    msg["To"] = "reports@isikhnas.example"
    msg["Subject"] = "Laporan"
    msg["Message-ID"] = "<m1@example.org>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("DIS @-8.65,115.22 AI CHI=20/5\n")
    return msg.as_bytes()


def test_good_mail_becomes_a_processing_job(
    inbound: tuple[InboundEmail, str, str], sqs: SQSClient, s3: S3Client
) -> None:
    handler, processing, outgoing = inbound
    msg = EmailMessage()
    msg["From"] = "District Vet <vet@example.org>"
    msg["Reply-To"] = "office@example.org"
    msg["Subject"] = "Laporan"
    msg["Message-ID"] = "<m1@example.org>"
    msg.set_content("DIS @-8.65,115.22 AI CHI=20/5\n")
    msg.add_attachment(b"photo", maintype="image", subtype="jpeg", filename="sick hen.jpg")
    store(s3, "incoming/ses-0001", msg.as_bytes())
    handler.handle(received(sns(notification("incoming/ses-0001"))))

    [body] = drain(sqs, processing)
    job = ProcessingJob.decode(body)
    assert job.message_id == "email:ses-0001"
    assert job.sender.address == "vet@example.org"
    assert job.sender.verified
    assert job.text.strip() == "DIS @-8.65,115.22 AI CHI=20/5"
    assert job.reply is not None
    assert (job.reply.address, job.reply.subject, job.reply.in_reply_to) == (
        "office@example.org",
        "Re: Laporan",
        "<m1@example.org>",
    )
    assert job.original is not None
    assert job.original.key == "incoming/ses-0001"
    [attachment] = job.attachments
    assert attachment.key == "attachments/ses-0001/01-sick_hen.jpg"
    assert s3.get_object(Bucket=BUCKET, Key=attachment.key)["Body"].read() == b"photo"
    assert count_messages(sqs, outgoing) == 0


def test_raw_delivery_and_failed_spf_dkim(inbound: tuple[InboundEmail, str, str], sqs: SQSClient, s3: S3Client) -> None:
    handler, processing, _ = inbound
    store(s3, "incoming/ses-0002", report_mail())
    handler.handle(received(notification("incoming/ses-0002", ses_id="ses-0002", spf="FAIL", dkim="GRAY")))
    [body] = drain(sqs, processing)
    assert body["sender"]["verified"] is False


def test_inline_content_from_an_sns_action(inbound: tuple[InboundEmail, str, str], sqs: SQSClient) -> None:
    handler, processing, _ = inbound
    doc = notification("unused")
    doc["receipt"]["action"] = {"type": "SNS", "encoding": "BASE64"}
    doc["content"] = base64.b64encode(report_mail()).decode()
    handler.handle(received(sns(doc)))
    [body] = drain(sqs, processing)
    assert body["original"] is None
    assert body["text"].startswith("DIS")


def test_unparseable_mail_is_kept_and_answered(
    inbound: tuple[InboundEmail, str, str], sqs: SQSClient, s3: S3Client
) -> None:
    handler, processing, outgoing = inbound
    msg = EmailMessage()
    msg["From"] = "vet@example.org"
    msg.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="report.pdf")
    store(s3, "incoming/ses-bad", msg.as_bytes())
    handler.handle(received(notification("incoming/ses-bad", ses_id="ses-bad")))

    assert count_messages(sqs, processing) == 0
    kept = s3.get_object(Bucket=BUCKET, Key="rejected/ses-bad.eml")["Body"].read()
    assert kept == msg.as_bytes()
    [answer] = drain(sqs, outgoing)
    assert answer["to"] == ["vet@example.org"]
    assert answer["dedup_id"] == "email:ses-bad:rejection"
    assert "no text part" in answer["text"]


def test_oversized_mail_is_kept_and_answered(
    inbound: tuple[InboundEmail, str, str], sqs: SQSClient, s3: S3Client
) -> None:
    handler, _, outgoing = inbound
    store(s3, "incoming/big", report_mail() + b"x" * 60_000)
    handler.handle(received(notification("incoming/big", ses_id="big")))
    assert s3.head_object(Bucket=BUCKET, Key="rejected/big.eml")["ContentLength"] > 60_000
    assert "larger than" in drain(sqs, outgoing)[0]["text"]


@pytest.mark.parametrize(
    ("verdicts", "source", "headers"),
    [
        ({"virus": "FAIL"}, "vet@example.org", {}),
        ({"spf": "FAIL", "dkim": "FAIL"}, "vet@example.org", {}),  # possibly forged sender
        ({"spam": "FAIL"}, "vet@example.org", {}),
        ({}, "<>", {}),  # a bounce
        ({}, "vet@example.org", {"Auto-Submitted": "auto-replied"}),
    ],
)
def test_no_backscatter(
    inbound: tuple[InboundEmail, str, str],
    sqs: SQSClient,
    s3: S3Client,
    verdicts: dict[str, str],
    source: str,
    headers: dict[str, str],
) -> None:
    """Virus, spam, forged senders, bounces and auto-replies: never answered; the mail is kept."""
    handler, processing, outgoing = inbound
    msg = EmailMessage()
    msg["From"] = "vet@example.org"
    for name, value in headers.items():
        msg[name] = value
    msg.add_attachment(b"MZ", maintype="application", subtype="octet-stream", filename="x.exe")
    store(s3, "incoming/x", msg.as_bytes())
    handler.handle(received(notification("incoming/x", ses_id="x", source=source, **verdicts)))
    assert count_messages(sqs, outgoing) == 0
    assert count_messages(sqs, processing) == 0
    assert s3.head_object(Bucket=BUCKET, Key="rejected/x.eml")


def test_automatic_but_readable_mail_is_processed_without_reply_address(
    inbound: tuple[InboundEmail, str, str], sqs: SQSClient, s3: S3Client
) -> None:
    handler, processing, _ = inbound
    store(s3, "incoming/auto", report_mail(Precedence="bulk"))
    handler.handle(received(notification("incoming/auto", ses_id="auto")))
    assert drain(sqs, processing)[0]["reply"] is None


def test_setup_notification_is_acknowledged(inbound: tuple[InboundEmail, str, str], sqs: SQSClient) -> None:
    handler, processing, _ = inbound
    handler.handle(received({"notificationType": "AMAZON_SES_SETUP_NOTIFICATION"}))
    assert count_messages(sqs, processing) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"Type": "Notification", "Message": "not json"},
        {"notificationType": "Received", "mail": {}, "receipt": {}},
        {"notificationType": "Received", "mail": {"messageId": "m"}, "receipt": {"action": {"type": "Lambda"}}},
    ],
)
def test_malformed_notifications_are_permanent(inbound: tuple[InboundEmail, str, str], body: dict[str, Any]) -> None:
    handler, _, _ = inbound
    with pytest.raises(PermanentError):
        handler.handle(received(body))
