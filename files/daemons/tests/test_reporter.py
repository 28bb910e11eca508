from __future__ import annotations

import csv
import io
import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import psycopg2.extensions
import pytest

from helpers import drain, make_queue, received, scalar
from isikhnas_daemons import outbox
from isikhnas_daemons.daemons.reporter import Reporter
from isikhnas_daemons.db import Database
from isikhnas_daemons.messages import ReplyTo, ReportJob, utc_now
from isikhnas_daemons.outbox import Relay
from isikhnas_daemons.queues import Producer
from isikhnas_daemons.render import Row, bar_chart
from isikhnas_daemons.worker import PermanentError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

BUCKET = "isikhnas-reports"


def seed(pg: psycopg2.extensions.connection) -> None:
    """Two AI reports in Bali about 6 km apart, one far away in Jakarta, one FMD, one too old."""
    rows = [
        ("m1", "AI", 115.22, -8.65, "now()", [("CHI", "sick", 20), ("CHI", "dead", 5)]),
        ("m2", "AI", 115.25, -8.70, "now()", [("CHI", "sick", 4), ("DUC", "sick", 2), ("DUC", "dead", 1)]),
        ("m3", "AI", 106.80, -6.20, "now()", [("CHI", "sick", 100)]),
        ("m4", "FMD", 115.20, -8.60, "now()", [("CAT", "sick", 3)]),
        ("m5", "AI", 115.22, -8.65, "now() - interval '90 days'", [("CHI", "sick", 999)]),
    ]
    with pg.cursor() as cur:
        for message_id, disease, lon, lat, when, counts in rows:
            cur.execute(
                "INSERT INTO pipeline.inbound_message (message_id, channel, sender_address, received_at, status, body) "
                "VALUES (%s, 'email', 'vet@example.org', now(), 'accepted', 'x')",
                (message_id,),
            )
            cur.execute(
                "INSERT INTO pipeline.field_report (message_id, reporter_id, kind, disease, geom, reported_at) "
                f"VALUES (%s, 1, 'DIS', %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326), {when}) RETURNING id",
                (message_id, disease, lon, lat),
            )
            row = cur.fetchone()
            assert row is not None
            cur.executemany(
                "INSERT INTO pipeline.field_report_count (report_id, species, measure, n) VALUES (%s, %s, %s, %s)",
                [(row[0], *count) for count in counts],
            )


@pytest.fixture
def reporter(
    sqs: SQSClient, s3: S3Client, database: Database, log: logging.Logger, pg: psycopg2.extensions.connection
) -> tuple[Reporter, dict[str, str]]:
    s3.create_bucket(Bucket=BUCKET)
    queues = {name: make_queue(sqs, name).url for name in (outbox.OUTGOING_EMAIL, outbox.OUTGOING_IM)}
    relay = Relay(database, {name: Producer(sqs, url) for name, url in queues.items()}, log)
    seed(pg)
    return (
        Reporter(db=database, s3=s3, relay=relay, log=log, bucket=BUCKET, prefix="reports/", link_ttl_seconds=7200),
        queues,
    )


def job(report: str, **kw: Any) -> dict[str, Any]:
    return ReportJob(
        request_id=kw.pop("request_id", "email:r1:report"),
        report=report,
        days=kw.pop("days", 30),
        reply=kw.pop("reply", ReplyTo("email", "vet@example.org", "Re: RPT", "<x@example.org>")),
        requested_at=utc_now(),
        **kw,
    ).to_json()


def read_csv(s3: S3Client, key: str) -> list[dict[str, str]]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_nearby_report_uses_the_spatial_filter(
    reporter: tuple[Reporter, dict[str, str]], sqs: SQSClient, s3: S3Client, pg: psycopg2.extensions.connection
) -> None:
    handler, queues = reporter
    handler.handle(received(job("nearby", point={"lat": -8.66, "lon": 115.23}, radius_km=25.0)))
    csv_key = scalar(pg, "SELECT csv_key FROM pipeline.report_run")
    rows = read_csv(s3, csv_key)
    assert [(r["disease"], r["reports"], r["sick"], r["dead"]) for r in rows] == [
        ("AI", "2", "26", "6"),  # Jakarta (far) and the 90-day-old report are excluded
        ("FMD", "1", "3", "0"),
    ]
    ai = rows[0]
    assert -8.70 < float(ai["centroid_lat"]) < -8.65
    assert float(ai["hull_area_km2"]) == 0.0  # two points: a degenerate hull
    chart = s3.get_object(Bucket=BUCKET, Key=scalar(pg, "SELECT chart_key FROM pipeline.report_run"))
    assert chart["ContentType"] == "image/svg+xml"
    ET.fromstring(chart["Body"].read())  # well-formed SVG
    [mail] = drain(sqs, queues[outbox.OUTGOING_EMAIL])
    assert mail["dedup_id"] == "email:r1:report:notify"
    assert mail["to"] == ["vet@example.org"]
    assert "AI: 2 reports, sick 26, dead 6" in mail["text"]
    link = next(line for line in mail["text"].splitlines() if line.startswith("CSV: "))[5:]
    query = parse_qs(urlparse(link).query)
    assert query["X-Amz-Expires"] == ["7200"]
    assert "The links expire in 2 hours." in mail["text"]


def test_summary_report_covers_everything_recent(
    reporter: tuple[Reporter, dict[str, str]], sqs: SQSClient, s3: S3Client, pg: psycopg2.extensions.connection
) -> None:
    handler, queues = reporter
    handler.handle(received(job("summary", reply=ReplyTo("im", "+6281234567890"))))
    rows = read_csv(s3, scalar(pg, "SELECT csv_key FROM pipeline.report_run"))
    ai = rows[0]
    assert (ai["reports"], ai["sick"]) == ("3", "126")
    assert float(ai["hull_area_km2"]) > 0  # a real triangle Bali-Bali-Jakarta
    [im] = drain(sqs, queues[outbox.OUTGOING_IM])
    assert im["to"] == "+6281234567890"
    assert "SUMMARY" in im["text"]


def test_redelivered_request_sends_one_notification(
    reporter: tuple[Reporter, dict[str, str]], sqs: SQSClient, pg: psycopg2.extensions.connection
) -> None:
    handler, queues = reporter
    body = job("summary")
    handler.handle(received(body))
    handler.handle(received(body, receive_count=2))
    assert scalar(pg, "SELECT count(*) FROM pipeline.report_run") == 1
    assert len(drain(sqs, queues[outbox.OUTGOING_EMAIL])) == 1


def test_nearby_without_point_is_permanent(reporter: tuple[Reporter, dict[str, str]]) -> None:
    handler, _ = reporter
    with pytest.raises(PermanentError, match=r"report\.point must be an object"):
        handler.handle(received(job("nearby")))


def test_chart_escapes_and_handles_empty_data() -> None:
    svg = bar_chart([], "<script>alert(1)</script> & more").decode()
    root = ET.fromstring(svg)
    assert "No reports in this period." in svg
    assert "<script>" not in svg
    assert root.tag.endswith("svg")
    svg = bar_chart([Row("AI", "avian influenza", 1, 5, 0, 0, None, None, None)], "t").decode()
    ET.fromstring(svg)
