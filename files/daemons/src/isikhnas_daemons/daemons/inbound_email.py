"""``isikhnas-inbound-email``: SES receipt notifications -> parsed, normalised job on the processing queue.

SES stores the raw message in the inbound bucket (S3 action) and notifies through SNS to an SQS queue.
This daemon fetches the raw message, parses the MIME, stores attachments in S3, identifies the sender
(From, Reply-To, SES's SPF/DKIM verdicts) and queues a ``ProcessingJob`` whose ``message_id`` is
``email:<SES messageId>`` so the processor de-duplicates. Mail that cannot be used is copied to the
rejected prefix (kept, whatever the bucket's lifecycle does to incoming mail) and answered with a
rejection, except when answering would be backscatter (virus, spam, automatic senders).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from isikhnas_daemons import mime
from isikhnas_daemons.config import Env, WorkerSettings
from isikhnas_daemons.messages import OutgoingEmail, ProcessingJob, ReplyTo, Sender, StoredObject, utc_now
from isikhnas_daemons.queues import Producer, producer
from isikhnas_daemons.runtime import App, Context, run
from isikhnas_daemons.worker import PermanentError, Received, Worker

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DAEMON = "inbound-email"
_HEADERS_BYTES = 64 * 1024


@dataclass(frozen=True)
class InboundSettings:
    worker: WorkerSettings
    processing_queue: str
    outgoing_email_queue: str
    attachment_bucket: str | None = None
    attachment_prefix: str = "attachments/"
    rejected_prefix: str = "rejected/"
    max_email_bytes: int = 10 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Env) -> InboundSettings:
        return cls(
            worker=WorkerSettings.from_env(env, "ISIKHNAS_INBOUND_EMAIL_QUEUE"),
            processing_queue=env.required("ISIKHNAS_PROCESSING_QUEUE"),
            outgoing_email_queue=env.required("ISIKHNAS_OUTGOING_EMAIL_QUEUE"),
            attachment_bucket=env.optional("ISIKHNAS_ATTACHMENT_BUCKET"),
            attachment_prefix=env.string("ISIKHNAS_ATTACHMENT_PREFIX", "attachments/"),
            rejected_prefix=env.string("ISIKHNAS_REJECTED_PREFIX", "rejected/"),
            max_email_bytes=env.integer(
                "ISIKHNAS_MAX_EMAIL_BYTES", 10 * 1024 * 1024, minimum=1024, maximum=40 * 1024 * 1024
            ),
        )


def unwrap_notification(doc: dict[str, Any]) -> dict[str, Any]:
    """The SES notification, from an SNS envelope or as delivered raw."""
    if doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        try:
            inner = json.loads(doc["Message"])
        except ValueError:
            raise PermanentError("SNS Message is not JSON") from None
        if not isinstance(inner, dict):
            raise PermanentError("SNS Message is not a JSON object")
        return inner
    return doc


def _verdict(receipt: dict[str, Any], name: str) -> str:
    value = receipt.get(name)
    return str(value.get("status", "")).upper() if isinstance(value, dict) else ""


@dataclass(frozen=True)
class _Raw:
    data: bytes  # the whole message, or only its beginning when it is larger than the limit
    bucket: str | None
    key: str | None
    size: int


class InboundEmail:
    def __init__(
        self,
        *,
        s3: S3Client,
        processing: Producer,
        outgoing_email: Producer,
        settings: InboundSettings,
        log: logging.Logger,
    ) -> None:
        self._s3 = s3
        self._processing = processing
        self._outgoing = outgoing_email
        self._settings = settings
        self._log = log

    def handle(self, message: Received) -> None:
        notification = unwrap_notification(message.json())
        kind = notification.get("notificationType") or notification.get("eventType")
        if kind != "Received":
            # e.g. SES's AMAZON_SES_SETUP_NOTIFICATION: nothing to do, acknowledge.
            self._log.info("ignoring notification", extra={"notification_type": kind})
            return
        mail = notification.get("mail")
        receipt = notification.get("receipt")
        if not isinstance(mail, dict) or not isinstance(receipt, dict) or not mail.get("messageId"):
            raise PermanentError("SES notification without mail.messageId / receipt")
        ses_id = str(mail["messageId"])
        message_id = f"email:{ses_id}"
        raw = self._raw(notification, receipt)
        envelope_from = str(mail.get("source") or "")
        context = {"message_id": message_id, "raw_key": raw.key}

        if _verdict(receipt, "virusVerdict") == "FAIL":
            self._reject(message_id, ses_id, raw, "virus detected", context, reply_to=None)
            return
        if _verdict(receipt, "spamVerdict") == "FAIL":
            self._reject(message_id, ses_id, raw, "classified as spam", context, reply_to=None)
            return
        envelope_address = mime.address_of(envelope_from)
        # Only SPF/DKIM-verified senders are told their mail was unusable: no backscatter to forged ones.
        verified = "PASS" in (_verdict(receipt, "spfVerdict"), _verdict(receipt, "dkimVerdict"))
        if raw.size > self._settings.max_email_bytes:
            limit = self._settings.max_email_bytes // (1024 * 1024)
            reply_to = self._rejection_address(raw.data, envelope_address) if verified else None
            self._reject(message_id, ses_id, raw, f"the message is larger than {limit} MB", context, reply_to=reply_to)
            return
        try:
            parsed = mime.parse(raw.data)
        except mime.UnparseableEmail as exc:
            reply_to = self._rejection_address(raw.data, envelope_address) if verified else None
            self._reject(message_id, ses_id, raw, str(exc), context, reply_to=reply_to)
            return

        sender = parsed.from_address or envelope_address
        if sender is None:
            self._reject(message_id, ses_id, raw, "no sender address", context, reply_to=None)
            return
        automatic = parsed.auto_submitted or envelope_address is None
        reply = None
        if not automatic:
            reply = ReplyTo(
                channel="email",
                address=parsed.reply_to or sender,
                subject=_reply_subject(parsed.subject),
                in_reply_to=parsed.message_id,
            )
        job = ProcessingJob(
            message_id=message_id,
            channel="email",
            received_at=str(mail.get("timestamp") or utc_now()),
            sender=Sender(address=sender, name=parsed.from_name, verified=verified),
            text=parsed.text,
            reply=reply,
            subject=parsed.subject or None,
            attachments=self._store_attachments(ses_id, parsed, raw),
            original=StoredObject(bucket=raw.bucket, key=raw.key) if raw.bucket and raw.key else None,
        )
        self._processing.send(job.to_json(), dedup_id=message_id, group_id=sender)
        self._log.info(
            "email queued for processing",
            extra={
                **context,
                "sender": sender,
                "verified": verified,
                "attachments": len(job.attachments),
                "defects": list(parsed.defects),
            },
        )

    def _raw(self, notification: dict[str, Any], receipt: dict[str, Any]) -> _Raw:
        found = receipt.get("action")
        action: dict[str, Any] = found if isinstance(found, dict) else {}
        if action.get("type") == "S3":
            bucket, key = str(action["bucketName"]), str(action["objectKey"])
            response = self._s3.get_object(Bucket=bucket, Key=key)
            size = int(response.get("ContentLength", 0))
            if size > self._settings.max_email_bytes:
                # Too large to process: read just enough for the headers (the sender to answer).
                head = response["Body"].read(_HEADERS_BYTES)
                response["Body"].close()
                return _Raw(head, bucket, key, size)
            body = response["Body"].read()
            return _Raw(body, bucket, key, len(body))
        content = notification.get("content")
        if isinstance(content, str):
            # SNS action: the message is in the notification (encoding UTF8 or BASE64).
            if str(action.get("encoding", "UTF8")).upper() == "BASE64":
                try:
                    data = base64.b64decode(content)
                except binascii.Error:
                    raise PermanentError("notification content is not valid base64") from None
            else:
                data = content.encode("utf-8", errors="surrogateescape")
            return _Raw(data, None, None, len(data))
        raise PermanentError("notification has neither an S3 action nor inline content")

    def _attachment_bucket(self, raw: _Raw) -> str | None:
        return self._settings.attachment_bucket or raw.bucket

    def _store_attachments(self, ses_id: str, parsed: mime.ParsedEmail, raw: _Raw) -> tuple[StoredObject, ...]:
        bucket = self._attachment_bucket(raw)
        if bucket is None or not parsed.attachments:
            return ()
        stored: list[StoredObject] = []
        for index, attachment in enumerate(parsed.attachments, start=1):
            key = f"{self._settings.attachment_prefix}{ses_id}/{index:02d}-{attachment.filename}"
            self._s3.put_object(Bucket=bucket, Key=key, Body=attachment.data, ContentType=attachment.content_type)
            stored.append(
                StoredObject(
                    bucket=bucket,
                    key=key,
                    filename=attachment.filename,
                    content_type=attachment.content_type,
                    size=len(attachment.data),
                )
            )
        return tuple(stored)

    @staticmethod
    def _rejection_address(raw: bytes, envelope_address: str | None) -> str | None:
        """Whom to tell that their mail was unreadable; None for bounces and automatic senders."""
        if envelope_address is None:
            return None
        header_address, automatic = mime.header_sender(raw)
        return None if automatic else (header_address or envelope_address)

    def _reject(
        self,
        message_id: str,
        ses_id: str,
        raw: _Raw,
        reason: str,
        context: dict[str, Any],
        *,
        reply_to: str | None,
    ) -> None:
        """Keep the original under the rejected prefix and, when safe, tell the sender why."""
        bucket = self._attachment_bucket(raw)
        kept = None
        if bucket is not None:
            kept = f"{self._settings.rejected_prefix}{ses_id}.eml"
            if raw.bucket is not None and raw.key is not None:
                self._s3.copy_object(Bucket=bucket, Key=kept, CopySource={"Bucket": raw.bucket, "Key": raw.key})
            else:
                self._s3.put_object(Bucket=bucket, Key=kept, Body=raw.data, ContentType="message/rfc822")
        else:
            self._log.error("no bucket to keep the rejected message in", extra=context)
        if reply_to is not None:
            text = (
                f"iSIKHNAS could not read your message: {reason}.\n\n"
                "Please send your report as plain text in the body of an email, for example:\n"
                "DIS @-8.65,115.22 AI CHI=20/5\n"
            )
            mail = OutgoingEmail(
                dedup_id=f"{message_id}:rejection",
                to=(reply_to,),
                subject="iSIKHNAS: message not readable",
                text=text,
            )
            self._outgoing.send(mail.to_json(), dedup_id=mail.dedup_id, group_id=reply_to)
        self._log.warning(
            "email rejected", extra={**context, "reason": reason, "kept_key": kept, "answered_to": reply_to}
        )


def _reply_subject(subject: str) -> str:
    if not subject:
        return "Re: your iSIKHNAS report"
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def build(context: Context) -> App:
    settings = InboundSettings.from_env(context.env)
    sqs = context.aws.sqs(read_timeout=settings.worker.wait_time_seconds + 20)
    handler = InboundEmail(
        s3=context.aws.s3(),
        processing=producer(sqs, settings.processing_queue),
        outgoing_email=producer(sqs, settings.outgoing_email_queue),
        settings=settings,
        log=context.log,
    )
    worker = Worker(
        sqs=sqs,
        settings=settings.worker,
        handler=handler.handle,
        log=context.log,
        stop=context.stop,
        notifier=context.notifier,
    )
    return App(worker=worker)


def main() -> int:
    return run(DAEMON, build)
