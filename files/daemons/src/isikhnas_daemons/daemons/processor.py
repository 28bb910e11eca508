"""``isikhnas-processor``: processing queue -> PostgreSQL, reply and report request via the outbox.

One transaction per message, keyed by the job's ``message_id`` (``email:<ses-id>`` or ``im:<provider>:<id>``):
the inbound message row, the field report with its PostGIS point and counts, and the outbox rows for the
reply and the optional report request. A redelivered job finds its row and only relays what is unsent, so
neither the report nor the reply is duplicated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from isikhnas_daemons import outbox
from isikhnas_daemons.config import DbSettings, Env, WorkerSettings
from isikhnas_daemons.db import Cursor, Database
from isikhnas_daemons.messages import OutgoingEmail, OutgoingIm, ProcessingJob, ReplyTo, ReportJob, utc_now
from isikhnas_daemons.outbox import OutboxMessage, Relay
from isikhnas_daemons.queues import producer
from isikhnas_daemons.report_syntax import (
    SYNTAX_HELP,
    FieldReport,
    Location,
    Parsed,
    Point,
    ReportError,
    ReportRequest,
    find_report,
)
from isikhnas_daemons.runtime import App, Context, run
from isikhnas_daemons.worker import Periodic, Received, Worker

DAEMON = "processor"


class Rejection(Exception):
    """The message is understood but not acceptable; the text goes back to the sender."""


@dataclass(frozen=True)
class ProcessorSettings:
    worker: WorkerSettings
    db: DbSettings
    outgoing_email_queue: str
    outgoing_im_queue: str
    reporting_queue: str
    require_verified_email: bool = True
    outbox_sweep_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Env) -> ProcessorSettings:
        return cls(
            worker=WorkerSettings.from_env(env, "ISIKHNAS_PROCESSING_QUEUE"),
            db=DbSettings.from_env(env, "isikhnas-processor"),
            outgoing_email_queue=env.required("ISIKHNAS_OUTGOING_EMAIL_QUEUE"),
            outgoing_im_queue=env.required("ISIKHNAS_OUTGOING_IM_QUEUE"),
            reporting_queue=env.required("ISIKHNAS_REPORTING_QUEUE"),
            require_verified_email=env.boolean("ISIKHNAS_REQUIRE_VERIFIED_EMAIL", True),
            outbox_sweep_seconds=env.number("ISIKHNAS_OUTBOX_SWEEP_SECONDS", 60.0, minimum=1, maximum=86400),
        )


@dataclass(frozen=True)
class Outcome:
    status: str  # accepted | rejected | request | duplicate
    report_id: int | None = None
    error: str | None = None


def reply_message(job: ProcessingJob, reply: ReplyTo, text: str) -> OutboxMessage:
    dedup_id = f"{job.message_id}:reply"
    if reply.channel == "email":
        subject = reply.subject or "iSIKHNAS report"
        body: dict[str, Any] = OutgoingEmail(
            dedup_id=dedup_id, to=(reply.address,), subject=subject, text=text, in_reply_to=reply.in_reply_to
        ).to_json()
        return OutboxMessage(dedup_id, outbox.OUTGOING_EMAIL, body, group_id=reply.address)
    body = OutgoingIm(dedup_id=dedup_id, to=reply.address, text=text).to_json()
    return OutboxMessage(dedup_id, outbox.OUTGOING_IM, body, group_id=reply.address)


def describe_request(request: ReportRequest) -> str:
    if request.report == "summary":
        return f"SUMMARY report (last {request.days} days)"
    return f"NEARBY report ({request.radius_km:g} km, last {request.days} days)"


class Processor:
    def __init__(self, db: Database, relay: Relay, log: logging.Logger, *, require_verified_email: bool = True) -> None:
        self._db = db
        self._relay = relay
        self._log = log
        self._require_verified_email = require_verified_email

    def handle(self, message: Received) -> None:
        job = ProcessingJob.decode(message.json())
        outcome = self._db.transaction(lambda cur: self.record(cur, job))
        relayed = self._relay.relay_source(job.message_id)
        self._log.info(
            "job processed",
            extra={
                "message_id": job.message_id,
                "status": outcome.status,
                "report_id": outcome.report_id,
                "error": outcome.error,
                "relayed": relayed,
            },
        )

    # -- the transaction ---------------------------------------------------------------------------

    def record(self, cur: Cursor, job: ProcessingJob) -> Outcome:
        cur.execute(
            "INSERT INTO pipeline.inbound_message (message_id, channel, sender_address, received_at, status, "
            "subject, body, original_bucket, original_key) VALUES (%s, %s, %s, %s, 'rejected', %s, %s, %s, %s) "
            "ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            (
                job.message_id,
                job.channel,
                job.sender.address,
                job.received_at,
                job.subject,
                job.text,
                job.original.bucket if job.original else None,
                job.original.key if job.original else None,
            ),
        )
        if cur.fetchone() is None:
            return Outcome("duplicate")

        reporter_id = self._reporter(cur, job)
        unverified = job.channel == "email" and self._require_verified_email and not job.sender.verified
        # A possibly forged sender must not receive mail from us (backscatter): record, do not answer.
        reply = None if unverified else job.reply
        try:
            if unverified:
                raise Rejection("the sender could not be verified (SPF and DKIM both failed)")
            if reporter_id is None:
                raise Rejection(f"{job.sender.address} is not registered as an iSIKHNAS reporter")
            parsed = find_report(job.text, job.subject)
            status, report_id, text, request = self._store(cur, job, reporter_id, parsed)
        except (Rejection, ReportError) as exc:
            error = str(exc)
            cur.execute(
                "UPDATE pipeline.inbound_message SET status = 'rejected', error = %s, reporter_id = %s "
                "WHERE message_id = %s",
                (error, reporter_id, job.message_id),
            )
            if reply is not None:
                quoted = job.text.strip().splitlines()[0][:200] if job.text.strip() else ""
                help_text = f"\n\n{SYNTAX_HELP}" if isinstance(exc, ReportError) else ""
                text = f"iSIKHNAS: report NOT accepted: {error}.{help_text}\n\nYour message: {quoted}"
                outbox.add(cur, job.message_id, reply_message(job, reply, text))
            return Outcome("rejected", error=error)

        cur.execute(
            "UPDATE pipeline.inbound_message SET status = %s, error = NULL, reporter_id = %s WHERE message_id = %s",
            (status, reporter_id, job.message_id),
        )
        if reply is not None:
            outbox.add(cur, job.message_id, reply_message(job, reply, text))
            if request is not None:
                outbox.add(cur, job.message_id, self._report_job(job, reply, request))
        return Outcome(status, report_id=report_id)

    def _reporter(self, cur: Cursor, job: ProcessingJob) -> int | None:
        cur.execute(
            "SELECT id FROM pipeline.reporter WHERE channel = %s AND address = %s AND active",
            (job.channel, job.sender.address.lower()),
        )
        row = cur.fetchone()
        return int(row[0]) if row else None

    def _resolve(self, cur: Cursor, location: Location) -> Location:
        """The location with its point set; a code must be registered."""
        if location.point is not None:
            return location
        cur.execute("SELECT ST_Y(geom), ST_X(geom) FROM pipeline.location WHERE code = %s", (location.code,))
        row = cur.fetchone()
        if row is None:
            raise Rejection(f"location code {location.code} is not registered")
        return replace(location, point=Point(lat=float(row[0]), lon=float(row[1])))

    def _store(
        self, cur: Cursor, job: ProcessingJob, reporter_id: int, parsed: Parsed
    ) -> tuple[str, int | None, str, ReportRequest | None]:
        if isinstance(parsed, ReportRequest):
            asked = parsed
            if asked.location is not None:
                asked = replace(asked, location=self._resolve(cur, asked.location))
            text = f"iSIKHNAS: your {describe_request(asked)} is being prepared and will be sent shortly."
            return "request", None, text, asked
        report: FieldReport = parsed
        location = self._resolve(cur, report.location)
        point = location.point or Point(0.0, 0.0)  # _resolve always sets it
        lon, lat = point.lon, point.lat
        cur.execute(
            "INSERT INTO pipeline.field_report (message_id, reporter_id, kind, disease, location_code, geom, "
            "reported_at) VALUES (%s, %s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s) RETURNING id",
            (
                job.message_id,
                reporter_id,
                report.kind,
                report.disease,
                report.location.code,
                lon,
                lat,
                job.received_at,
            ),
        )
        row = cur.fetchone()
        if row is None:
            raise RuntimeError("INSERT ... RETURNING returned no row")
        report_id = int(row[0])
        cur.executemany(
            "INSERT INTO pipeline.field_report_count (report_id, species, measure, n) VALUES (%s, %s, %s, %s)",
            [(report_id, c.species, c.measure, c.n) for c in report.counts],
        )
        text = f"iSIKHNAS: report accepted, reference R{report_id}. {report.describe()}."
        request: ReportRequest | None = None
        if report.request is not None:
            request = replace(report.request, location=location)
            text += f" Your {describe_request(request)} will follow."
        return "accepted", report_id, text, request

    def _report_job(self, job: ProcessingJob, reply: ReplyTo, request: ReportRequest) -> OutboxMessage:
        request_id = f"{job.message_id}:report"
        point = None
        if request.location is not None and request.location.point is not None:
            point = {"lat": request.location.point.lat, "lon": request.location.point.lon}
        body = ReportJob(
            request_id=request_id,
            report=request.report,
            days=request.days,
            reply=reply,
            requested_at=utc_now(),
            point=point,
            radius_km=request.radius_km,
        ).to_json()
        return OutboxMessage(request_id, outbox.REPORTING, body, group_id=reply.address)


def build(context: Context) -> App:
    settings = ProcessorSettings.from_env(context.env)
    sqs = context.aws.sqs(read_timeout=settings.worker.wait_time_seconds + 20)
    db = Database(settings.db, context.log)
    producers = {
        outbox.OUTGOING_EMAIL: producer(sqs, settings.outgoing_email_queue),
        outbox.OUTGOING_IM: producer(sqs, settings.outgoing_im_queue),
        outbox.REPORTING: producer(sqs, settings.reporting_queue),
    }
    relay = Relay(db, producers, context.log)
    processor = Processor(db, relay, context.log, require_verified_email=settings.require_verified_email)
    worker = Worker(
        sqs=sqs,
        settings=settings.worker,
        handler=processor.handle,
        log=context.log,
        stop=context.stop,
        notifier=context.notifier,
        periodic=[Periodic("outbox-sweep", settings.outbox_sweep_seconds, relay.sweep)],
        health_check=db.ping,
    )
    return App(worker=worker, closers=[db.close])


def main() -> int:
    return run(DAEMON, build)
