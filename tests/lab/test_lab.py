"""The whole lab, as its users see it: the status application on both web servers and the wiki over HTTPS (lab
CA, published loopback ports, talking to the lab database cluster), an email through the messaging pipeline to
a row, a reply and a report, and a database switchover in the middle of a stream of emails that loses and
duplicates nothing."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import threading
import time
from typing import Any

import pytest
from lab import Pipeline, https, playbook, wait_for

WEB_PORTS = {"web1": 8443, "web2": 8444}
WIKI_PORT = 8445


@pytest.fixture(scope="module")
def pipeline(inventory: dict[str, Any]) -> Pipeline:
    pipe = Pipeline(inventory)
    pipe.ensure_reporter()
    return pipe


def db_addresses(inventory: dict[str, Any]) -> set[str]:
    return {inventory["_meta"]["hostvars"][h]["lab_address"] for h in inventory["db"]["hosts"]}


@pytest.mark.parametrize("web", sorted(WEB_PORTS))
def test_status_app_is_served_over_tls_from_the_cluster(inventory: dict[str, Any], web: str) -> None:
    status, headers, body = https(WEB_PORTS[web], "/")
    assert status == 200, body[:2000]
    assert headers["strict-transport-security"].startswith("max-age=")
    node = re.search(r"Node that answered</th><td>([^<]+)<", body)
    assert node, body[:3000]
    assert node.group(1) in db_addresses(inventory)
    assert re.search(r">primary<", body), "the writer DSN reached the primary"
    assert re.search(r"PostGIS</th><td>3\.", body), body[:3000]


@pytest.mark.parametrize("web", sorted(WEB_PORTS))
def test_health_reports_the_primary(web: str) -> None:
    status, _, body = https(WEB_PORTS[web], "/health")
    assert status == 200, body
    assert json.loads(body)["database_role"] == "primary"


def test_standbys_stream_over_tls_verified_against_the_lab_ca(inventory: dict[str, Any]) -> None:
    """Every standby streams from the primary with sslmode=verify-full and the CA of the lab (a certificate that
    did not name the primary's address, or came from another CA, would stop the stream)."""
    streams = {}
    for host in sorted(inventory["db"]["hosts"]):
        query = "SELECT status || ' ' || conninfo FROM pg_stat_wal_receiver"
        found = subprocess.run(
            ["docker", "exec", host, "runuser", "-u", "postgres", "--", "psql", "-Atc", query],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert found.returncode == 0, found.stderr
        if found.stdout.strip():
            streams[host] = found.stdout.strip()
    assert len(streams) == len(inventory["db"]["hosts"]) - 1, streams
    for host, stream in streams.items():
        assert stream.startswith("streaming "), (host, stream)
        assert "sslmode=verify-full" in stream, (host, stream)
        assert "sslrootcert=/etc/isikhnas/pki/ca.crt" in stream, (host, stream)


def test_wiki_main_page_is_served_over_tls() -> None:
    status, _, body = https(WIKI_PORT, "/wiki/Main_Page")
    assert status == 200, body[:2000]
    assert "<title>iSIKHNAS Wiki (lab)</title>" in body
    assert 'href="/wiki/' in body
    status, _, body = https(WIKI_PORT, "/health")
    assert status == 200, body
    assert json.loads(body)["database_role"] == "primary"


def test_email_becomes_a_row_a_reply_and_a_report(pipeline: Pipeline) -> None:
    ses_id = pipeline.send_email("DIS @-8.65,115.22 AI CHI=20/5 DUC=3 RPT:50\n", subject="Laporan lab")
    message_id = f"email:{ses_id}"
    wait_for(
        lambda: pipeline.scalar("SELECT count(*) FROM pipeline.field_report WHERE message_id = %s", (message_id,)),
        "the report row",
    )
    replies = wait_for(
        lambda: [t for h, t in pipeline.sent_texts() if h.get("in-reply-to") == f"<{ses_id}@example.org>"],
        "the confirmation email",
    )
    assert "report accepted" in replies[0]
    request_id = f"{message_id}:report"
    keys = wait_for(
        lambda: pipeline.scalar(
            "SELECT json_build_array(csv_key, chart_key) FROM pipeline.report_run WHERE request_id = %s", (request_id,)
        ),
        "the report run",
    )
    body = pipeline.s3.get_object(Bucket=pipeline.reports_bucket, Key=keys[0])["Body"].read().decode()
    assert any(row.get("disease") == "AI" for row in csv.DictReader(io.StringIO(body)))
    chart = pipeline.s3.get_object(Bucket=pipeline.reports_bucket, Key=keys[1])["Body"].read().decode()
    assert "</svg>" in chart


def primary(pipeline: Pipeline) -> str | None:
    return pipeline.scalar("SELECT host(inet_server_addr())")


def test_switchover_mid_stream_loses_and_duplicates_nothing(inventory: dict[str, Any], pipeline: Pipeline) -> None:
    """60 emails, and a planned switchover to the next node while the processors store them: every report is
    stored exactly once and confirmed once, whichever node took it. The primary is switched back afterwards."""
    hostvars = inventory["_meta"]["hostvars"]
    by_address = {hostvars[h]["lab_address"]: h for h in inventory["db"]["hosts"]}
    first = by_address[wait_for(lambda: primary(pipeline), "the primary")]
    target = next(h for h in sorted(by_address.values()) if h != first)
    batch = f"mid-stream {time.strftime('%H%M%S')}"
    ids: list[str] = []

    def send() -> None:
        for n in range(60):
            ids.append(pipeline.send_email(f"DIS @-8.{n:02d},115.20 HS CAT={n + 1}/0\n", subject=f"{batch} {n}"))
            time.sleep(0.1)

    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: len(ids) >= 15, "the first emails")
    try:
        playbook("db_switchover.yml", "-e", f"repmgr_switchover_to={target}")
        sender.join()
        assert by_address[wait_for(lambda: primary(pipeline), "the new primary")] == target
        message_ids = [f"email:{i}" for i in ids]

        def stored() -> Any:
            return pipeline.scalar(
                "SELECT json_build_array(count(*), count(DISTINCT message_id)) FROM pipeline.field_report"
                " WHERE message_id = ANY(%s)",
                (message_ids,),
            )

        wait_for(lambda: (stored() or [0])[0] >= 60, "all 60 reports", timeout=300)
        time.sleep(3)  # a duplicate would show up now
        assert stored() == [60, 60]
        confirmations = wait_for(
            lambda: (
                (c := [t for h, t in pipeline.sent_texts() if batch in h.get("subject", "")]) and len(c) >= 60 and c
            ),
            "60 confirmations",
            timeout=300,
        )
        assert len(confirmations) == 60
    finally:
        sender.join()
        playbook("db_switchover.yml", "-e", f"repmgr_switchover_to={first}")
    assert by_address[wait_for(lambda: primary(pipeline), "the primary back")] == first
