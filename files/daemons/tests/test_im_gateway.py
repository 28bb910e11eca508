from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from helpers import FakeImProvider, count_messages, drain, make_queue, received
from isikhnas_daemons.daemons.im_gateway import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ImSender,
    Ingest,
    Verifier,
    WebhookServer,
    sign,
)
from isikhnas_daemons.delivery import NoDeliveryLog
from isikhnas_daemons.messages import OutgoingIm
from isikhnas_daemons.queues import Producer
from isikhnas_daemons.worker import PermanentError, Unavailable
from pgcluster import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

SECRET = b"0123456789abcdef-test-secret"


def test_verifier() -> None:
    verifier = Verifier(SECRET, max_skew_seconds=300, clock=lambda: 1_700_000_000)
    body = b'{"id": "1"}'
    good = sign(SECRET, "1700000000", body)
    assert verifier.verify("1700000000", good, body)
    assert not verifier.verify("1700000000", good, body + b" ")  # body tampered
    assert not verifier.verify("1700000001", good, body)  # timestamp tampered
    assert not verifier.verify("1699999000", sign(SECRET, "1699999000", body), body)  # stale: replay
    assert not verifier.verify(None, good, body)
    assert not verifier.verify("1700000000", sign(b"other-secret-xxxxxxxx", "1700000000", body), body)


@pytest.fixture
def webhook(sqs: SQSClient, s3: S3Client, log: logging.Logger) -> Iterator[tuple[str, str, S3Client]]:
    s3.create_bucket(Bucket="archive")
    processing = make_queue(sqs, "processing").url
    ingest = Ingest(processing=Producer(sqs, processing), provider="wa", log=log, s3=s3, archive_bucket="archive")
    server = WebhookServer(("127.0.0.1", 0), ingest=ingest, verifier=Verifier(SECRET), log=log, healthy=lambda: True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", processing, s3
    finally:
        server.shutdown()
        server.server_close()


def post(url: str, body: bytes, *, timestamp: str | None = None, signature: str | None = None) -> tuple[int, Any]:
    timestamp = timestamp or str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature or sign(SECRET, timestamp, body),
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_signed_message_is_queued_and_archived(webhook: tuple[str, str, S3Client], sqs: SQSClient) -> None:
    base, processing, s3 = webhook
    body = json.dumps({"id": 42, "from": "+6281234567890", "text": "DIS BALI-0412 AI CHI=2", "name": "Wayan"})
    status, answer = post(base + "/webhook", body.encode())
    assert (status, answer) == (202, {"status": "queued", "message_id": "im:wa:42"})
    [job] = drain(sqs, processing)
    assert job["message_id"] == "im:wa:42"
    assert job["channel"] == "im"
    assert job["sender"] == {"address": "+6281234567890", "name": "Wayan", "verified": True}
    assert job["reply"]["channel"] == "im"
    archived = s3.get_object(Bucket="archive", Key=job["original"]["key"])["Body"].read()
    assert archived == body.encode()


@pytest.mark.parametrize(
    ("body", "kwargs", "status", "error"),
    [
        (b'{"id": "1", "from": "+62", "text": "x"}', {"signature": "sha256=00"}, 401, "bad or stale signature"),
        (b'{"id": "1", "from": "+62", "text": "x"}', {"timestamp": "1000"}, 401, "bad or stale signature"),
        (b"not json", {}, 400, "body is not JSON"),
        (b'{"id": "1", "from": "+62", "text": ""}', {}, 400, "text must be a non-empty string"),
        (b'["list"]', {}, 400, "not a JSON object"),
    ],
)
def test_bad_requests_are_refused(
    webhook: tuple[str, str, S3Client],
    sqs: SQSClient,
    body: bytes,
    kwargs: dict[str, str],
    status: int,
    error: str,
) -> None:
    base, processing, _ = webhook
    got_status, answer = post(base + "/webhook", body, **kwargs)
    assert got_status == status
    assert error in answer["error"]
    assert count_messages(sqs, processing) == 0


def test_too_large_and_unknown_paths(webhook: tuple[str, str, S3Client]) -> None:
    base, _, _ = webhook
    assert post(base + "/webhook", b"x" * (70 * 1024))[0] == 413
    assert post(base + "/other", b"{}")[0] == 404
    with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
        assert response.status == 200


@pytest.fixture
def provider() -> Iterator[FakeImProvider]:
    server = FakeImProvider()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class MemoryDeliveries:
    def __init__(self) -> None:
        self.done: dict[str, str | None] = {}

    def delivered(self, dedup_id: str) -> bool:
        return dedup_id in self.done

    def record(self, dedup_id: str, channel: str, provider_id: str | None) -> None:
        self.done[dedup_id] = provider_id


def im(dedup_id: str = "im:wa:42:reply") -> dict[str, Any]:
    return OutgoingIm(dedup_id=dedup_id, to="+6281234567890", text="iSIKHNAS: report accepted").to_json()


def test_reply_is_posted_signed_and_deduplicated(provider: FakeImProvider, log: logging.Logger) -> None:
    deliveries = MemoryDeliveries()
    url = provider.url
    sender = ImSender(send_url=url, secret=SECRET, deliveries=deliveries, log=log)
    sender.handle(received(im()))
    sender.handle(received(im()))  # redelivered: skipped
    [(headers, body)] = provider.requests
    assert Verifier(SECRET).verify(headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body)
    assert json.loads(body)["to"] == "+6281234567890"
    assert headers["Idempotency-Key"] == json.loads(body)["id"]
    assert deliveries.done == {"im:wa:42:reply": "provider-1"}


def test_provider_errors_are_classified(provider: FakeImProvider, log: logging.Logger) -> None:
    url = provider.url
    sender = ImSender(send_url=url, secret=SECRET, deliveries=NoDeliveryLog(), log=log)
    provider.statuses = [400, 503, 429]
    with pytest.raises(PermanentError, match="HTTP 400"):
        sender.handle(received(im()))
    with pytest.raises(RuntimeError, match="HTTP 503"):
        sender.handle(received(im()))
    with pytest.raises(RuntimeError, match="HTTP 429"):
        sender.handle(received(im()))
    dead = ImSender(
        send_url=f"http://127.0.0.1:{free_port()}/send", secret=SECRET, deliveries=NoDeliveryLog(), log=log, timeout=2
    )
    with pytest.raises(Unavailable, match="provider unreachable"):
        dead.handle(received(im()))
