"""``isikhnas-email-sender``: outgoing-email queue -> SES (raw MIME) or SMTP.

The Message-ID is derived from the message's ``dedup_id``, so even a duplicate that slips through
looks identical to mail clients. With ``ISIKHNAS_DB_DSN`` set, delivered ids are recorded in
``pipeline.delivery`` and redeliveries are skipped.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from isikhnas_daemons.config import ConfigError, DbSettings, Env, WorkerSettings
from isikhnas_daemons.db import Database
from isikhnas_daemons.delivery import DbDeliveryLog, DeliveryLog, NoDeliveryLog
from isikhnas_daemons.messages import OutgoingEmail
from isikhnas_daemons.runtime import App, Context, run
from isikhnas_daemons.worker import PermanentError, Received, Unavailable, Worker

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient

DAEMON = "email-sender"
_PERMANENT_SES = frozenset({"MessageRejected", "MailFromDomainNotVerified", "InvalidParameterValue"})


class Transport(Protocol):
    def send(self, sender: str, recipients: Sequence[str], raw: bytes) -> str:
        """Hand the message over; return the provider's id. Raise PermanentError / Unavailable."""
        ...


class SesTransport:
    def __init__(self, ses: SESClient, configuration_set: str | None = None) -> None:
        self._ses = ses
        self._configuration_set = configuration_set

    def send(self, sender: str, recipients: Sequence[str], raw: bytes) -> str:
        params: dict[str, Any] = {"Source": sender, "Destinations": list(recipients), "RawMessage": {"Data": raw}}
        if self._configuration_set:
            params["ConfigurationSetName"] = self._configuration_set
        try:
            response = self._ses.send_raw_email(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _PERMANENT_SES:
                raise PermanentError(f"SES rejected the message: {code}: {exc}") from exc
            raise
        return response["MessageId"]


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: str = "starttls"  # starttls | tls | none
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_env(cls, env: Env) -> SmtpSettings:
        security = env.choice("ISIKHNAS_SMTP_SECURITY", "starttls", ("starttls", "tls", "none"))
        settings = cls(
            host=env.required("ISIKHNAS_SMTP_HOST"),
            port=env.integer("ISIKHNAS_SMTP_PORT", 465 if security == "tls" else 587, minimum=1, maximum=65535),
            security=security,
            username=env.optional("ISIKHNAS_SMTP_USERNAME"),
            password=env.secret("ISIKHNAS_SMTP_PASSWORD"),
            timeout=env.number("ISIKHNAS_SMTP_TIMEOUT_SECONDS", 30.0, minimum=1, maximum=600),
        )
        if (settings.username is None) != (settings.password is None):
            raise ConfigError("ISIKHNAS_SMTP_USERNAME and ISIKHNAS_SMTP_PASSWORD go together")
        return settings


class SmtpTransport:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    def _connect(self) -> smtplib.SMTP:
        s = self._settings
        context = ssl.create_default_context()
        if s.security == "tls":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        if s.security == "starttls":
            client.starttls(context=context)
        return client

    def send(self, sender: str, recipients: Sequence[str], raw: bytes) -> str:
        try:
            client = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            raise Unavailable(f"SMTP server unreachable: {exc}") from exc
        try:
            if self._settings.username and self._settings.password:
                client.login(self._settings.username, self._settings.password)
            client.sendmail(sender, list(recipients), raw)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"all recipients refused: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:
                raise PermanentError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            raise
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
        return ""


def message_id_for(dedup_id: str, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "isikhnas.invalid"
    return f"<{hashlib.sha256(dedup_id.encode()).hexdigest()[:40]}@{domain}>"


def build_mime(mail: OutgoingEmail, sender: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(mail.to)
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id_for(mail.dedup_id, sender)
    # RFC 3834: marks our mail as automatic, so well-behaved auto-responders do not answer (no loops).
    msg["Auto-Submitted"] = "auto-replied" if mail.in_reply_to else "auto-generated"
    if mail.in_reply_to:
        msg["In-Reply-To"] = mail.in_reply_to
        msg["References"] = mail.in_reply_to
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    return msg.as_bytes(policy=policy.SMTP)


class EmailSender:
    def __init__(self, transport: Transport, deliveries: DeliveryLog, sender: str, log: logging.Logger) -> None:
        self._transport = transport
        self._deliveries = deliveries
        self._sender = sender
        self._log = log

    def handle(self, message: Received) -> None:
        mail = OutgoingEmail.decode(message.json())
        if self._deliveries.delivered(mail.dedup_id):
            self._log.info("already delivered; skipping", extra={"dedup_id": mail.dedup_id})
            return
        envelope_from = parseaddr(self._sender)[1]
        provider_id = self._transport.send(envelope_from, mail.to, build_mime(mail, self._sender))
        self._deliveries.record(mail.dedup_id, "email", provider_id or None)
        self._log.info("email sent", extra={"dedup_id": mail.dedup_id, "provider_id": provider_id, "to": list(mail.to)})


def build(context: Context) -> App:
    env = context.env
    worker_settings = WorkerSettings.from_env(env, "ISIKHNAS_OUTGOING_EMAIL_QUEUE")
    sender = env.required("ISIKHNAS_EMAIL_FROM")
    if "@" not in parseaddr(sender)[1]:
        raise ConfigError(f"ISIKHNAS_EMAIL_FROM must contain an address, got {sender!r}")
    transport: Transport
    if env.choice("ISIKHNAS_EMAIL_TRANSPORT", "ses", ("ses", "smtp")) == "ses":
        transport = SesTransport(context.aws.ses(), env.optional("ISIKHNAS_SES_CONFIGURATION_SET"))
    else:
        transport = SmtpTransport(SmtpSettings.from_env(env))
    db_settings = DbSettings.optional_from_env(env, "isikhnas-email-sender")
    db = Database(db_settings, context.log) if db_settings is not None else None
    deliveries: DeliveryLog = DbDeliveryLog(db) if db is not None else NoDeliveryLog()
    worker = Worker(
        sqs=context.aws.sqs(read_timeout=worker_settings.wait_time_seconds + 20),
        settings=worker_settings,
        handler=EmailSender(transport, deliveries, sender, context.log).handle,
        log=context.log,
        stop=context.stop,
        notifier=context.notifier,
        health_check=db.ping if db is not None else None,
    )
    return App(worker=worker, closers=[db.close] if db is not None else [])


def main() -> int:
    return run(DAEMON, build)
