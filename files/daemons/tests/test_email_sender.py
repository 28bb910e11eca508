from __future__ import annotations

import email
import logging
import smtplib
from email import policy
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg2.extensions
import pytest
from moto.ses.models import ses_backends

from helpers import MOTO_ACCOUNT, received, scalar
from isikhnas_daemons.daemons.email_sender import (
    EmailSender,
    SesTransport,
    SmtpSettings,
    SmtpTransport,
    build_mime,
    message_id_for,
)
from isikhnas_daemons.db import Database
from isikhnas_daemons.delivery import DbDeliveryLog, NoDeliveryLog
from isikhnas_daemons.messages import OutgoingEmail
from isikhnas_daemons.worker import PermanentError, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient

FROM = "iSIKHNAS <reports@isikhnas.example>"


def mail(dedup_id: str = "email:ses-1:reply", **kw: Any) -> dict[str, Any]:
    return OutgoingEmail(
        dedup_id=dedup_id,
        to=("vet@example.org",),
        subject=kw.pop("subject", "Re: report"),
        text=kw.pop("text", "iSIKHNAS: report accepted, reference R1."),
        **kw,
    ).to_json()


def sent_messages() -> list[Any]:
    return list(ses_backends[MOTO_ACCOUNT]["us-east-1"].sent_messages)


def test_mime_is_threaded_deterministic_and_marked_automatic() -> None:
    raw = build_mime(OutgoingEmail.decode(mail(in_reply_to="<orig@example.org>", html="<p>hi</p>")), FROM)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Message-ID"] == message_id_for("email:ses-1:reply", FROM)
    assert parsed["Message-ID"].endswith("@isikhnas.example>")
    assert parsed["In-Reply-To"] == "<orig@example.org>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed.get_content_type() == "multipart/alternative"
    assert b"\r\n" in raw


def test_sends_through_ses(ses: SESClient, log: logging.Logger) -> None:
    ses.verify_email_identity(EmailAddress="reports@isikhnas.example")
    sender = EmailSender(SesTransport(ses), NoDeliveryLog(), FROM, log)
    sender.handle(received(mail()))
    [message] = sent_messages()
    assert message.source == "reports@isikhnas.example"
    assert "vet@example.org" in message.destinations
    assert "reference R1" in message.raw_data


def test_ses_rejection_is_permanent(ses: SESClient, log: logging.Logger) -> None:
    sender = EmailSender(SesTransport(ses), NoDeliveryLog(), FROM, log)  # identity not verified
    with pytest.raises(PermanentError, match="MessageRejected"):
        sender.handle(received(mail()))


def test_duplicate_dedup_id_is_sent_once_with_a_delivery_log(
    ses: SESClient, log: logging.Logger, database: Database, pg: psycopg2.extensions.connection
) -> None:
    ses.verify_email_identity(EmailAddress="reports@isikhnas.example")
    sender = EmailSender(SesTransport(ses), DbDeliveryLog(database), FROM, log)
    sender.handle(received(mail(), message_id="sqs-1"))
    sender.handle(received(mail(), message_id="sqs-2"))  # the outbox relayed it twice
    assert len(sent_messages()) == 1
    assert scalar(pg, "SELECT provider_id IS NOT NULL FROM pipeline.delivery") is True


@pytest.mark.parametrize(
    "body",
    [{"version": 1, "dedup_id": "x", "to": "vet@example.org", "subject": "s", "text": "t"}, {"version": 1}],
)
def test_malformed_email_jobs_are_permanent(body: dict[str, Any], log: logging.Logger) -> None:
    sender = EmailSender(SesTransport(None), NoDeliveryLog(), FROM, log)  # type: ignore[arg-type]
    with pytest.raises(PermanentError):
        sender.handle(received(body))


class FakeSmtp:
    instances: ClassVar[list[FakeSmtp]] = []
    fail_connect: ClassVar[bool] = False
    refuse: ClassVar[Exception | None] = None

    def __init__(self, host: str, port: int, timeout: float) -> None:
        if FakeSmtp.fail_connect:
            raise ConnectionRefusedError("connection refused")
        self.calls: list[tuple[Any, ...]] = [("connect", host, port)]
        FakeSmtp.instances.append(self)

    def starttls(self, context: Any) -> None:
        self.calls.append(("starttls",))

    def login(self, user: str, password: str) -> None:
        self.calls.append(("login", user, password))

    def sendmail(self, sender: str, recipients: list[str], raw: bytes) -> dict[str, Any]:
        if FakeSmtp.refuse is not None:
            raise FakeSmtp.refuse
        self.calls.append(("sendmail", sender, recipients))
        return {}

    def quit(self) -> None:
        self.calls.append(("quit",))

    def close(self) -> None:
        self.calls.append(("close",))


@pytest.fixture
def fake_smtp(monkeypatch: pytest.MonkeyPatch) -> type[FakeSmtp]:
    FakeSmtp.instances = []
    FakeSmtp.fail_connect = False
    FakeSmtp.refuse = None
    monkeypatch.setattr(smtplib, "SMTP", FakeSmtp)
    return FakeSmtp


def test_smtp_transport(fake_smtp: type[FakeSmtp], log: logging.Logger) -> None:
    transport = SmtpTransport(SmtpSettings(host="smtp.example", username="u", password="p"))
    EmailSender(transport, NoDeliveryLog(), FROM, log).handle(received(mail()))
    assert fake_smtp.instances[0].calls == [
        ("connect", "smtp.example", 587),
        ("starttls",),
        ("login", "u", "p"),
        ("sendmail", "reports@isikhnas.example", ["vet@example.org"]),
        ("quit",),
    ]


def test_smtp_errors_are_classified(fake_smtp: type[FakeSmtp], log: logging.Logger) -> None:
    sender = EmailSender(SmtpTransport(SmtpSettings(host="smtp.example")), NoDeliveryLog(), FROM, log)
    fake_smtp.refuse = smtplib.SMTPRecipientsRefused({"vet@example.org": (550, b"no such user")})
    with pytest.raises(PermanentError, match="recipients refused"):
        sender.handle(received(mail()))
    fake_smtp.refuse = smtplib.SMTPDataError(451, b"try again later")
    with pytest.raises(smtplib.SMTPDataError):
        sender.handle(received(mail()))
    fake_smtp.fail_connect = True
    with pytest.raises(Unavailable, match="SMTP server unreachable"):
        sender.handle(received(mail()))
