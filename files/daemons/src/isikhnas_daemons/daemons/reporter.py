"""``isikhnas-reporter``: reporting queue -> spatial SQL -> CSV + SVG chart in S3 -> link by email or IM.

Idempotent on the request id: the artefacts have deterministic keys (re-upload overwrites the same
bytes), ``pipeline.report_run`` records the run, and the notification goes through the outbox, so a
redelivered request sends one notification.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg2.extras import Json

from isikhnas_daemons import outbox
from isikhnas_daemons.config import DbSettings, Env, WorkerSettings
from isikhnas_daemons.db import Cursor, Database
from isikhnas_daemons.messages import OutgoingEmail, OutgoingIm, ReportJob
from isikhnas_daemons.outbox import OutboxMessage, Relay
from isikhnas_daemons.queues import producer
from isikhnas_daemons.render import Row, bar_chart, to_csv
from isikhnas_daemons.report_syntax import DISEASES
from isikhnas_daemons.runtime import App, Context, run
from isikhnas_daemons.worker import Periodic, Received, Worker

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DAEMON = "reporter"
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9._-]+")

# Per report first (its point and summed counts), then per disease: counts, the centroid of the
# reports and the area of their convex hull on the spheroid (geography), in km².
REPORT_SQL = """
WITH per_report AS (
    SELECT r.id, r.disease, r.geom,
           coalesce(sum(c.n) FILTER (WHERE c.measure = 'sick'), 0) AS sick,
           coalesce(sum(c.n) FILTER (WHERE c.measure = 'dead'), 0) AS dead,
           coalesce(sum(c.n) FILTER (WHERE c.measure = 'vaccinated'), 0) AS vaccinated
    FROM pipeline.field_report AS r
    JOIN pipeline.field_report_count AS c ON c.report_id = r.id
    WHERE r.reported_at >= %(since)s {where}
    GROUP BY r.id
)
SELECT disease,
       count(*)::integer AS reports,
       sum(sick)::bigint, sum(dead)::bigint, sum(vaccinated)::bigint,
       ST_Y(ST_Centroid(ST_Collect(geom))) AS centroid_lat,
       ST_X(ST_Centroid(ST_Collect(geom))) AS centroid_lon,
       ST_Area(ST_ConvexHull(ST_Collect(geom))::geography) / 1e6 AS hull_area_km2
FROM per_report
GROUP BY disease
ORDER BY disease
"""
NEARBY = "AND ST_DWithin(r.geom::geography, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography, %(radius_m)s)"


@dataclass(frozen=True)
class ReporterSettings:
    worker: WorkerSettings
    db: DbSettings
    bucket: str
    prefix: str
    link_ttl_seconds: int
    outgoing_email_queue: str
    outgoing_im_queue: str
    outbox_sweep_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Env) -> ReporterSettings:
        return cls(
            worker=WorkerSettings.from_env(env, "ISIKHNAS_REPORTING_QUEUE"),
            db=DbSettings.from_env(env, "isikhnas-reporter"),
            bucket=env.required("ISIKHNAS_REPORTS_BUCKET"),
            prefix=env.string("ISIKHNAS_REPORTS_PREFIX", "reports/"),
            # SigV4 presigned URLs live at most 7 days (and no longer than the signing credentials).
            link_ttl_seconds=env.integer("ISIKHNAS_REPORT_LINK_TTL_SECONDS", 86400, minimum=60, maximum=604800),
            outgoing_email_queue=env.required("ISIKHNAS_OUTGOING_EMAIL_QUEUE"),
            outgoing_im_queue=env.required("ISIKHNAS_OUTGOING_IM_QUEUE"),
            outbox_sweep_seconds=env.number("ISIKHNAS_OUTBOX_SWEEP_SECONDS", 60.0, minimum=1, maximum=86400),
        )


def query(cur: Cursor, job: ReportJob, now: dt.datetime) -> list[Row]:
    params: dict[str, object] = {"since": now - dt.timedelta(days=job.days)}
    where = ""
    if job.report == "nearby" and job.point is not None and job.radius_km is not None:
        where = NEARBY
        params |= {"lat": job.point["lat"], "lon": job.point["lon"], "radius_m": job.radius_km * 1000}
    cur.execute(REPORT_SQL.format(where=where), params)
    return [
        Row(
            disease=str(d),
            disease_name=DISEASES.get(str(d), str(d)),
            reports=int(n),
            sick=int(s),
            dead=int(k),
            vaccinated=int(v),
            centroid_lat=None if lat is None else float(lat),
            centroid_lon=None if lon is None else float(lon),
            hull_area_km2=None if area is None else round(float(area), 3),
        )
        for d, n, s, k, v, lat, lon, area in cur.fetchall()
    ]


def title_of(job: ReportJob) -> str:
    if job.report == "nearby" and job.point is not None:
        return (
            f"iSIKHNAS NEARBY report: {job.radius_km:g} km around "
            f"{job.point['lat']:.4f},{job.point['lon']:.4f}, last {job.days} days"
        )
    return f"iSIKHNAS SUMMARY report: last {job.days} days"


class Reporter:
    def __init__(
        self,
        *,
        db: Database,
        s3: S3Client,
        relay: Relay,
        log: logging.Logger,
        bucket: str,
        prefix: str,
        link_ttl_seconds: int,
    ) -> None:
        self._db = db
        self._s3 = s3
        self._relay = relay
        self._log = log
        self._bucket = bucket
        self._prefix = prefix
        self._ttl = link_ttl_seconds

    def handle(self, message: Received) -> None:
        job = ReportJob.decode(message.json())
        if self._db.transaction(lambda cur: self._done(cur, job.request_id)):
            self._log.info("report already produced; relaying only", extra={"request_id": job.request_id})
            self._relay.relay_source(job.request_id)
            return
        requested = dt.datetime.fromisoformat(job.requested_at)
        rows = self._db.transaction(lambda cur: query(cur, job, requested))
        base = f"{self._prefix}{requested:%Y/%m/%d}/{_UNSAFE_KEY.sub('_', job.request_id)}"
        csv_key, chart_key = f"{base}/report.csv", f"{base}/chart.svg"
        self._put(csv_key, to_csv(rows), "text/csv; charset=utf-8", "report.csv")
        self._put(chart_key, bar_chart(rows, title_of(job)), "image/svg+xml", "chart.svg")
        links = {name: self._link(key) for name, key in (("csv", csv_key), ("chart", chart_key))}
        notification = self._notification(job, rows, links)
        self._db.transaction(lambda cur: self._record(cur, job, len(rows), csv_key, chart_key, notification))
        self._relay.relay_source(job.request_id)
        self._log.info("report produced", extra={"request_id": job.request_id, "rows": len(rows), "csv_key": csv_key})

    def _done(self, cur: Cursor, request_id: str) -> bool:
        cur.execute("SELECT 1 FROM pipeline.report_run WHERE request_id = %s", (request_id,))
        return cur.fetchone() is not None

    def _put(self, key: str, body: bytes, content_type: str, filename: str) -> None:
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ContentDisposition=f'attachment; filename="{filename}"',
        )

    def _link(self, key: str) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._ttl
        )

    def _notification(self, job: ReportJob, rows: list[Row], links: dict[str, str]) -> OutboxMessage:
        hours = self._ttl // 3600
        lines = [f"{title_of(job)}.", ""]
        lines += [f"{r.disease}: {r.reports} reports, sick {r.sick}, dead {r.dead}" for r in rows] or ["No reports."]
        lines += [
            "",
            f"CSV: {links['csv']}",
            f"Chart: {links['chart']}",
            "",
            f"The links expire in {hours} hours.",
        ]
        text = "\n".join(lines)
        dedup_id = f"{job.request_id}:notify"
        reply = job.reply
        if reply.channel == "email":
            subject = reply.subject or title_of(job)
            body = OutgoingEmail(
                dedup_id=dedup_id,
                to=(reply.address,),
                subject=subject,
                text=text,
                in_reply_to=reply.in_reply_to,
            ).to_json()
            return OutboxMessage(dedup_id, outbox.OUTGOING_EMAIL, body, group_id=reply.address)
        body = OutgoingIm(dedup_id=dedup_id, to=reply.address, text=text).to_json()
        return OutboxMessage(dedup_id, outbox.OUTGOING_IM, body, group_id=reply.address)

    def _record(
        self,
        cur: Cursor,
        job: ReportJob,
        row_count: int,
        csv_key: str,
        chart_key: str,
        notification: OutboxMessage,
    ) -> None:
        cur.execute(
            "INSERT INTO pipeline.report_run (request_id, report, params, row_count, csv_key, chart_key) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
            (
                job.request_id,
                job.report,
                Json({"days": job.days, "point": job.point, "radius_km": job.radius_km}),
                row_count,
                csv_key,
                chart_key,
            ),
        )
        if cur.fetchone() is not None:
            outbox.add(cur, job.request_id, notification)


def build(context: Context) -> App:
    settings = ReporterSettings.from_env(context.env)
    sqs = context.aws.sqs(read_timeout=settings.worker.wait_time_seconds + 20)
    db = Database(settings.db, context.log)
    relay = Relay(
        db,
        {
            outbox.OUTGOING_EMAIL: producer(sqs, settings.outgoing_email_queue),
            outbox.OUTGOING_IM: producer(sqs, settings.outgoing_im_queue),
        },
        context.log,
    )
    reporter = Reporter(
        db=db,
        s3=context.aws.s3(),
        relay=relay,
        log=context.log,
        bucket=settings.bucket,
        prefix=settings.prefix,
        link_ttl_seconds=settings.link_ttl_seconds,
    )
    worker = Worker(
        sqs=sqs,
        settings=settings.worker,
        handler=reporter.handle,
        log=context.log,
        stop=context.stop,
        notifier=context.notifier,
        periodic=[Periodic("outbox-sweep", settings.outbox_sweep_seconds, relay.sweep)],
        health_check=db.ping,
    )
    return App(worker=worker, closers=[db.close])


def main() -> int:
    return run(DAEMON, build)
