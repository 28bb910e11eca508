"""``isikhnas-im-gateway``: instant messages in through a signed webhook, replies out to the provider.

Inbound: ``POST /webhook`` with a JSON body ``{"id", "from", "text"[, "name", "timestamp"]}`` and headers
``X-Isikhnas-Timestamp: <unix seconds>`` and ``X-Isikhnas-Signature: sha256=<hex>`` where the hex is
HMAC-SHA256(secret, "<timestamp>." + raw body). Stale timestamps (replays) are refused. An accepted
message is archived to S3 (if a bucket is set) and queued like email with ``message_id im:<provider>:<id>``;
the answer is ``202``. ``GET /healthz`` answers ``200`` while the worker loop is healthy.

Outbound: the worker loop reads the outgoing-IM queue and POSTs ``{"id", "to", "text"}`` to the provider,
signed the same way and with an ``Idempotency-Key`` header derived from the ``dedup_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from isikhnas_daemons.config import ConfigError, DbSettings, Env, WorkerSettings
from isikhnas_daemons.db import Database
from isikhnas_daemons.delivery import DbDeliveryLog, DeliveryLog, NoDeliveryLog
from isikhnas_daemons.messages import OutgoingIm, ProcessingJob, ReplyTo, Sender, StoredObject, utc_now
from isikhnas_daemons.queues import Producer, dedup_token, producer
from isikhnas_daemons.runtime import App, Context, run
from isikhnas_daemons.worker import PermanentError, Received, Unavailable, Worker

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DAEMON = "im-gateway"
SIGNATURE_HEADER = "X-Isikhnas-Signature"
TIMESTAMP_HEADER = "X-Isikhnas-Timestamp"
MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4096


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Verifier:
    secret: bytes
    max_skew_seconds: int = 300
    clock: Callable[[], float] = time.time

    def verify(self, timestamp: str | None, signature: str | None, body: bytes) -> bool:
        if not timestamp or not signature or not timestamp.isdigit():
            return False
        if abs(self.clock() - int(timestamp)) > self.max_skew_seconds:
            return False
        return hmac.compare_digest(sign(self.secret, timestamp, body), signature)


@dataclass(frozen=True)
class ImSettings:
    worker: WorkerSettings
    processing_queue: str
    provider: str
    listen_host: str
    listen_port: int
    webhook_secret: str
    send_url: str
    send_secret: str
    max_skew_seconds: int
    send_timeout_seconds: float
    archive_bucket: str | None
    archive_prefix: str

    @classmethod
    def from_env(cls, env: Env) -> ImSettings:
        webhook_secret = env.required_secret("ISIKHNAS_IM_WEBHOOK_SECRET")
        if len(webhook_secret) < 16:
            raise ConfigError("ISIKHNAS_IM_WEBHOOK_SECRET must be at least 16 characters")
        send_url = env.required("ISIKHNAS_IM_SEND_URL")
        if not send_url.startswith(("http://", "https://")):
            raise ConfigError(f"ISIKHNAS_IM_SEND_URL must be an http(s) URL, got {send_url!r}")
        provider = env.string("ISIKHNAS_IM_PROVIDER", "generic")
        if not provider.replace("-", "").isalnum():
            raise ConfigError("ISIKHNAS_IM_PROVIDER must be letters, digits and dashes")
        return cls(
            worker=WorkerSettings.from_env(env, "ISIKHNAS_OUTGOING_IM_QUEUE"),
            processing_queue=env.required("ISIKHNAS_PROCESSING_QUEUE"),
            provider=provider,
            listen_host=env.string("ISIKHNAS_IM_LISTEN_HOST", "127.0.0.1"),
            listen_port=env.integer("ISIKHNAS_IM_LISTEN_PORT", 8080, minimum=0, maximum=65535),
            webhook_secret=webhook_secret,
            send_url=send_url,
            send_secret=env.secret("ISIKHNAS_IM_SEND_SECRET") or webhook_secret,
            max_skew_seconds=env.integer("ISIKHNAS_IM_MAX_SKEW_SECONDS", 300, minimum=10, maximum=3600),
            send_timeout_seconds=env.number("ISIKHNAS_IM_SEND_TIMEOUT_SECONDS", 15.0, minimum=1, maximum=120),
            archive_bucket=env.optional("ISIKHNAS_IM_ARCHIVE_BUCKET"),
            archive_prefix=env.string("ISIKHNAS_IM_ARCHIVE_PREFIX", "im/"),
        )


class BadRequest(ValueError):
    pass


class Ingest:
    """Validates a webhook body and queues it for processing (no HTTP here, so tests call it directly)."""

    def __init__(
        self,
        *,
        processing: Producer,
        provider: str,
        log: logging.Logger,
        s3: S3Client | None = None,
        archive_bucket: str | None = None,
        archive_prefix: str = "im/",
    ) -> None:
        self._processing = processing
        self._provider = provider
        self._log = log
        self._s3 = s3
        self._bucket = archive_bucket
        self._prefix = archive_prefix

    def accept(self, body: bytes) -> str:
        try:
            doc = json.loads(body)
        except ValueError:
            raise BadRequest("body is not JSON") from None
        if not isinstance(doc, dict):
            raise BadRequest("body is not a JSON object")
        fields: dict[str, str] = {}
        for key in ("id", "from", "text"):
            value = doc.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and key == "id":
                value = str(value)
            if not isinstance(value, str) or not value.strip():
                raise BadRequest(f"{key} must be a non-empty string")
            fields[key] = value.strip()
        if len(fields["text"]) > MAX_TEXT_CHARS:
            raise BadRequest(f"text longer than {MAX_TEXT_CHARS} characters")
        name = doc.get("name") if isinstance(doc.get("name"), str) else None
        message_id = f"im:{self._provider}:{fields['id']}"
        original = None
        if self._s3 is not None and self._bucket is not None:
            key = f"{self._prefix}{self._provider}/{dedup_token(message_id)}.json"
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")
            original = StoredObject(bucket=self._bucket, key=key)
        address = fields["from"].lower()
        job = ProcessingJob(
            message_id=message_id,
            channel="im",
            received_at=utc_now(),
            # The webhook signature authenticates the provider, which vouches for the sender.
            sender=Sender(address=address, name=name, verified=True),
            text=fields["text"],
            reply=ReplyTo(channel="im", address=address),
            original=original,
        )
        self._processing.send(job.to_json(), dedup_id=message_id, group_id=address)
        self._log.info("instant message queued", extra={"message_id": message_id, "sender": address})
        return message_id


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        ingest: Ingest,
        verifier: Verifier,
        log: logging.Logger,
        healthy: Callable[[], bool],
    ) -> None:
        self.ingest = ingest
        self.verifier = verifier
        self.log = log
        self.healthy = healthy
        super().__init__(address, _WebhookHandler)


class _WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log.debug("http " + format % args)

    def _answer(self, status: HTTPStatus, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path != "/healthz":
            self._answer(HTTPStatus.NOT_FOUND, {"error": "not found"})
        elif self.server.healthy():
            self._answer(HTTPStatus.OK, {"status": "ok"})
        else:
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "stalled"})

    def do_POST(self) -> None:
        if self.path != "/webhook":
            self._answer(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        length_header = self.headers.get("Content-Length", "")
        if not length_header.isdigit():
            self._answer(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
            return
        body = self.rfile.read(length)
        if not self.server.verifier.verify(
            self.headers.get(TIMESTAMP_HEADER), self.headers.get(SIGNATURE_HEADER), body
        ):
            self.server.log.warning("webhook signature rejected", extra={"client": self.client_address[0]})
            self._answer(HTTPStatus.UNAUTHORIZED, {"error": "bad or stale signature"})
            return
        try:
            message_id = self.server.ingest.accept(body)
        except BadRequest as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except (BotoCoreError, ClientError) as exc:
            # Not queued: the provider must retry (it will, on 5xx); same id, so no duplicate later.
            self.server.log.error("could not queue instant message", extra={"error": str(exc)})
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "temporarily unavailable"})
        else:
            self._answer(HTTPStatus.ACCEPTED, {"status": "queued", "message_id": message_id})


class ImSender:
    """Delivers outgoing-IM messages to the provider's HTTP API."""

    def __init__(
        self,
        *,
        send_url: str,
        secret: bytes,
        deliveries: DeliveryLog,
        log: logging.Logger,
        timeout: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = send_url
        self._secret = secret
        self._deliveries = deliveries
        self._log = log
        self._timeout = timeout
        self._clock = clock

    def handle(self, message: Received) -> None:
        im = OutgoingIm.decode(message.json())
        if self._deliveries.delivered(im.dedup_id):
            self._log.info("already delivered; skipping", extra={"dedup_id": im.dedup_id})
            return
        token = dedup_token(im.dedup_id)
        body = json.dumps({"id": token, "to": im.to, "text": im.text}).encode()
        timestamp = str(int(self._clock()))
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in ImSettings
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                "Idempotency-Key": token,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                provider_id = response.headers.get("X-Message-Id")
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise PermanentError(f"provider refused the message: HTTP {exc.code}") from exc
            raise RuntimeError(f"provider error HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise Unavailable(f"provider unreachable: {exc}") from exc
        self._deliveries.record(im.dedup_id, "im", provider_id)
        self._log.info("instant message sent", extra={"dedup_id": im.dedup_id, "to": im.to})


def build(context: Context) -> App:
    settings = ImSettings.from_env(context.env)
    sqs = context.aws.sqs(read_timeout=settings.worker.wait_time_seconds + 20)
    db_settings = DbSettings.optional_from_env(context.env, "isikhnas-im-gateway")
    db = Database(db_settings, context.log) if db_settings is not None else None
    sender = ImSender(
        send_url=settings.send_url,
        secret=settings.send_secret.encode(),
        deliveries=DbDeliveryLog(db) if db is not None else NoDeliveryLog(),
        log=context.log,
        timeout=settings.send_timeout_seconds,
    )
    worker = Worker(
        sqs=sqs,
        settings=settings.worker,
        handler=sender.handle,
        log=context.log,
        stop=context.stop,
        notifier=context.notifier,
        health_check=db.ping if db is not None else None,
    )
    ingest = Ingest(
        processing=producer(sqs, settings.processing_queue),
        provider=settings.provider,
        log=context.log,
        s3=context.aws.s3() if settings.archive_bucket else None,
        archive_bucket=settings.archive_bucket,
        archive_prefix=settings.archive_prefix,
    )
    server = WebhookServer(
        (settings.listen_host, settings.listen_port),
        ingest=ingest,
        verifier=Verifier(settings.webhook_secret.encode(), settings.max_skew_seconds),
        log=context.log,
        healthy=worker.healthy,
    )
    thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
    thread.start()
    context.log.info("webhook listening", extra={"host": settings.listen_host, "port": server.server_address[1]})

    def close_server() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    closers: list[Callable[[], None]] = [close_server]
    if db is not None:
        closers.append(db.close)
    return App(worker=worker, closers=closers)


def main() -> int:
    return run(DAEMON, build)
