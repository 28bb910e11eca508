from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg2.extensions
import pytest

from helpers import count_messages, drain, fast_settings, make_queue, received, scalar
from isikhnas_daemons import outbox
from isikhnas_daemons.daemons.processor import Processor
from isikhnas_daemons.db import Database
from isikhnas_daemons.messages import ProcessingJob, ReplyTo, Sender, utc_now
from isikhnas_daemons.outbox import Relay
from isikhnas_daemons.queues import Producer, encode
from isikhnas_daemons.worker import PermanentError, Worker

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@dataclass
class Bed:
    processor: Processor
    relay: Relay
    producers: dict[str, Producer]
    queues: dict[str, str]


@pytest.fixture
def bed(sqs: SQSClient, database: Database, log: logging.Logger) -> Bed:
    queues = {name: make_queue(sqs, name).url for name in (outbox.OUTGOING_EMAIL, outbox.OUTGOING_IM, outbox.REPORTING)}
    producers = {name: Producer(sqs, url) for name, url in queues.items()}
    relay = Relay(database, producers, log)
    return Bed(Processor(database, relay, log), relay, producers, queues)


def email_job(text: str, message_id: str = "email:ses-1", *, verified: bool = True, **kw: Any) -> dict[str, Any]:
    return ProcessingJob(
        message_id=message_id,
        channel="email",
        received_at=utc_now(),
        sender=Sender(address=kw.pop("address", "vet@example.org"), verified=verified),
        text=text,
        reply=ReplyTo("email", kw.pop("reply_address", "vet@example.org"), "Re: report", "<orig@example.org>"),
        subject="report",
        **kw,
    ).to_json()


def im_job(text: str, message_id: str = "im:generic:42") -> dict[str, Any]:
    return ProcessingJob(
        message_id=message_id,
        channel="im",
        received_at=utc_now(),
        sender=Sender(address="+6281234567890", verified=True),
        text=text,
        reply=ReplyTo("im", "+6281234567890"),
    ).to_json()


def test_good_report_is_stored_with_a_point_and_confirmed(
    bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection
) -> None:
    bed.processor.handle(received(email_job("Hi\nDIS @-8.65,115.22 AI CHI=20/5 DUC=3\nthanks")))
    with pg.cursor() as cur:
        cur.execute(
            "SELECT kind, disease, ST_Y(geom), ST_X(geom), ST_SRID(geom) FROM pipeline.field_report "
            "WHERE message_id = 'email:ses-1'"
        )
        assert cur.fetchone() == ("DIS", "AI", -8.65, 115.22, 4326)
        cur.execute("SELECT species, measure, n FROM pipeline.field_report_count ORDER BY 1, 2")
        assert cur.fetchall() == [("CHI", "dead", 5), ("CHI", "sick", 20), ("DUC", "dead", 0), ("DUC", "sick", 3)]
    assert scalar(pg, "SELECT status FROM pipeline.inbound_message") == "accepted"
    [reply] = drain(sqs, bed.queues[outbox.OUTGOING_EMAIL])
    assert reply["dedup_id"] == "email:ses-1:reply"
    assert reply["to"] == ["vet@example.org"]
    assert reply["in_reply_to"] == "<orig@example.org>"
    assert reply["text"].startswith("iSIKHNAS: report accepted, reference R1.")
    assert count_messages(sqs, bed.queues[outbox.REPORTING]) == 0
    assert scalar(pg, "SELECT count(*) FROM pipeline.outbox WHERE sent_at IS NULL") == 0


def test_report_with_location_code_and_report_request(
    bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection
) -> None:
    bed.processor.handle(received(im_job("vac bali-0412 anthrax cat=40 rpt:10")))
    assert scalar(pg, "SELECT location_code FROM pipeline.field_report") == "BALI-0412"
    [reply] = drain(sqs, bed.queues[outbox.OUTGOING_IM])
    assert reply["to"] == "+6281234567890"
    assert "NEARBY report (10 km, last 30 days) will follow" in reply["text"]
    [request] = drain(sqs, bed.queues[outbox.REPORTING])
    assert request["request_id"] == "im:generic:42:report"
    assert request["report"] == "nearby"
    assert request["point"] == {"lat": pytest.approx(-8.65), "lon": pytest.approx(115.2167)}
    assert request["reply"]["channel"] == "im"


def test_standalone_report_request(bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection) -> None:
    bed.processor.handle(received(email_job("RPT SUMMARY 7")))
    assert scalar(pg, "SELECT status FROM pipeline.inbound_message") == "request"
    assert scalar(pg, "SELECT count(*) FROM pipeline.field_report") == 0
    [request] = drain(sqs, bed.queues[outbox.REPORTING])
    assert (request["report"], request["days"], request["point"]) == ("summary", 7, None)


@pytest.mark.parametrize(
    ("job", "error"),
    [
        (email_job("DIS @-8.65,115.22 AI CHI=2x"), "word 4 'CHI=2X': sick count must be a whole number"),
        (email_job("hello, how are you?"), "no report found"),
        (email_job("DIS NOWHERE-1 AI CHI=2"), "location code NOWHERE-1 is not registered"),
        (email_job("DIS @1,1 AI CHI=2", address="stranger@example.net"), "is not registered as an iSIKHNAS reporter"),
    ],
)
def test_rejections_are_recorded_and_answered_precisely(
    bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection, job: dict[str, Any], error: str
) -> None:
    bed.processor.handle(received(job))
    assert scalar(pg, "SELECT status FROM pipeline.inbound_message") == "rejected"
    assert error in scalar(pg, "SELECT error FROM pipeline.inbound_message")
    assert scalar(pg, "SELECT body FROM pipeline.inbound_message") == job["text"]  # the original is kept
    assert scalar(pg, "SELECT count(*) FROM pipeline.field_report") == 0
    [reply] = drain(sqs, bed.queues[outbox.OUTGOING_EMAIL])
    assert reply["text"].startswith("iSIKHNAS: report NOT accepted:")
    assert error in reply["text"]


def test_unverified_email_sender_is_recorded_but_not_answered(
    bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection
) -> None:
    bed.processor.handle(received(email_job("DIS @-8.65,115.22 AI CHI=2", verified=False)))
    assert "could not be verified" in scalar(pg, "SELECT error FROM pipeline.inbound_message")
    assert count_messages(sqs, bed.queues[outbox.OUTGOING_EMAIL]) == 0


def test_automatic_mail_without_reply_address_gets_no_answer(
    bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection
) -> None:
    job = email_job("DIS @-8.65,115.22 AI CHI=2")
    job["reply"] = None
    bed.processor.handle(received(job))
    assert scalar(pg, "SELECT count(*) FROM pipeline.field_report") == 1
    assert count_messages(sqs, bed.queues[outbox.OUTGOING_EMAIL]) == 0


def test_redelivery_duplicates_neither_row_nor_reply(
    bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection
) -> None:
    job = email_job("DIS @-8.65,115.22 AI CHI=2 RPT")
    bed.processor.handle(received(job, message_id="sqs-a"))
    bed.processor.handle(received(job, message_id="sqs-a", receive_count=2))  # SQS redelivery
    bed.processor.handle(received(job, message_id="sqs-b"))  # producer sent the same mail twice
    assert scalar(pg, "SELECT count(*) FROM pipeline.field_report") == 1
    assert scalar(pg, "SELECT count(*) FROM pipeline.inbound_message") == 1
    assert len(drain(sqs, bed.queues[outbox.OUTGOING_EMAIL])) == 1
    assert len(drain(sqs, bed.queues[outbox.REPORTING])) == 1


def test_crash_between_commit_and_relay_is_repaired_by_redelivery(
    bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = email_job("DIS @-8.65,115.22 AI CHI=2")
    real_send = Producer.send

    def broken_send(self: Producer, body: Any, *, dedup_id: str, group_id: str = "default") -> str:
        raise ConnectionError("SQS endpoint unreachable")

    monkeypatch.setattr(Producer, "send", broken_send)
    with pytest.raises(ConnectionError):
        bed.processor.handle(received(job))
    assert scalar(pg, "SELECT count(*) FROM pipeline.field_report") == 1  # committed
    assert scalar(pg, "SELECT count(*) FROM pipeline.outbox WHERE sent_at IS NULL") == 1
    monkeypatch.setattr(Producer, "send", real_send)
    bed.processor.handle(received(job, receive_count=2))
    assert scalar(pg, "SELECT count(*) FROM pipeline.field_report") == 1
    assert len(drain(sqs, bed.queues[outbox.OUTGOING_EMAIL])) == 1
    assert scalar(pg, "SELECT count(*) FROM pipeline.outbox WHERE sent_at IS NULL") == 0


def test_sweep_relays_orphaned_outbox_rows(bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection) -> None:
    with pg.cursor() as cur:
        cur.execute(
            "INSERT INTO pipeline.outbox (dedup_id, source_id, queue, body, created_at) "
            "VALUES ('orphan:reply', 'orphan', %s, %s, now() - interval '10 minutes')",
            (outbox.OUTGOING_IM, encode({"version": 1, "dedup_id": "orphan:reply", "to": "+62", "text": "hi"})),
        )
    assert bed.relay.sweep(older_than_seconds=60) == 1
    assert bed.relay.sweep(older_than_seconds=60) == 0
    assert drain(sqs, bed.queues[outbox.OUTGOING_IM])[0]["dedup_id"] == "orphan:reply"


@pytest.mark.parametrize(
    "body",
    [
        {"version": 2},
        {"version": 1, "message_id": "x", "channel": "fax"},
        {**email_job("x"), "received_at": "yesterday"},
        {**email_job("x"), "received_at": "2024-05-01T10:00:00"},
        {**email_job("x"), "sender": "vet@example.org"},
    ],
)
def test_malformed_jobs_are_permanent_errors(bed: Bed, body: dict[str, Any]) -> None:
    with pytest.raises(PermanentError):
        bed.processor.handle(received(body))


def test_database_failover_mid_stream_loses_and_duplicates_nothing(
    bed: Bed, sqs: SQSClient, pg: psycopg2.extensions.connection, database: Database, log: logging.Logger
) -> None:
    """The worker loop over a real queue; the DB sessions are killed while messages are flowing."""
    queue = make_queue(sqs, "processing")
    total = 12
    for n in range(total):
        sqs.send_message(
            QueueUrl=queue.url, MessageBody=encode(email_job(f"DIS @-8.{n},115.2 HS CAT={n + 1}", f"email:m{n}"))
        )
    handled: list[int] = []

    def handler(message: Any) -> None:
        bed.processor.handle(message)
        handled.append(1)
        if len(handled) in (3, 7):
            with pg.cursor() as cur:  # "failover": every pipeline session dies
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'isikhnas-test'"
                )

    worker = Worker(
        sqs=sqs,
        settings=fast_settings(queue.url, batch_size=4),
        handler=handler,
        log=log,
        stop=threading.Event(),
        health_check=database.ping,
    )
    worker.start()
    try:
        for _ in range(10):
            if worker.poll_once() == 0 and count_messages(sqs, queue.url) == 0:
                break
    finally:
        worker.close()
    assert database.reconnects >= 2
    assert scalar(pg, "SELECT count(*) FROM pipeline.field_report") == total
    assert scalar(pg, "SELECT count(DISTINCT message_id) FROM pipeline.field_report") == total
    replies = drain(sqs, bed.queues[outbox.OUTGOING_EMAIL])
    assert sorted(r["dedup_id"] for r in replies) == sorted(f"email:m{n}:reply" for n in range(total))
