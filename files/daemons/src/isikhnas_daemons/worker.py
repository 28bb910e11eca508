"""The SQS consumer loop shared by every daemon.

Guarantees, in order of importance:

* A message is deleted only after its handler returned, i.e. after the work was committed. A crash at any
  point means redelivery, so handlers are idempotent on the message's own id.
* Long jobs keep their messages invisible: a heartbeat thread extends the visibility timeout of every
  message still held (the one in progress and the rest of its batch) every third of the timeout.
* Failures back off exponentially (the message's visibility is set to the delay). After the queue's
  ``maxReceiveCount`` receives the worker logs and lets the redrive policy move it to the dead-letter
  queue; ``PermanentError`` (a malformed message) skips the backoff and goes there at once.
* A dependency outage (``Unavailable``) pauses receiving until a health check passes, so an outage does not
  burn through receive counts and push healthy messages into the dead-letter queue.
* ``stop`` (set by SIGTERM) ends receiving; the message in progress is finished and the rest of the batch
  released at once (visibility 0) for another instance; ``run`` then returns 0.
* systemd's watchdog is pinged from the heartbeat thread only while the loop makes progress: a job
  running longer than ``job_timeout_seconds`` stops both the pings and the visibility extension, so a hung
  daemon is restarted and its message redelivered.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from isikhnas_daemons.config import WorkerSettings
from isikhnas_daemons.queues import resolve_queue_url
from isikhnas_daemons.sdnotify import Notifier

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef, MessageTypeDef

_SQS_BATCH = 10


class PermanentError(Exception):
    """Retrying cannot help (malformed input): release at once; the redrive policy moves it to the DLQ."""


class Unavailable(Exception):
    """A dependency (database, downstream API) is down: pause receiving until the health check passes."""


@dataclass(frozen=True)
class Received:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_timestamp_ms: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_sqs(cls, message: MessageTypeDef) -> Received:
        system = message.get("Attributes", {})
        sent = system.get("SentTimestamp")
        attributes = {
            name: value["StringValue"]
            for name, value in message.get("MessageAttributes", {}).items()
            if "StringValue" in value
        }
        return cls(
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message.get("Body", ""),
            receive_count=int(system.get("ApproximateReceiveCount", "1")),
            sent_timestamp_ms=int(sent) if sent else None,
            attributes=attributes,
        )

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or ``PermanentError``."""
        try:
            value = json.loads(self.body)
        except ValueError as exc:
            raise PermanentError(f"body is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise PermanentError("body is not a JSON object")
        return value


Handler = Callable[[Received], None]


@dataclass(frozen=True)
class Periodic:
    """A housekeeping action run from the loop (same thread as handlers) every ``interval`` seconds."""

    name: str
    interval: float
    action: Callable[[], object]


@dataclass
class _Held:
    message_id: str


class Worker:
    def __init__(
        self,
        *,
        sqs: SQSClient,
        settings: WorkerSettings,
        handler: Handler,
        log: logging.Logger,
        stop: threading.Event,
        notifier: Notifier | None = None,
        periodic: Sequence[Periodic] = (),
        health_check: Callable[[], None] | None = None,
    ) -> None:
        self._sqs = sqs
        self._settings = settings
        self._handler = handler
        self._log = log
        self._stop = stop
        self._notifier = notifier
        self._health_check = health_check
        self._periodic = list(periodic)
        self._periodic_due = [time.monotonic() + p.interval for p in self._periodic]
        self._lock = threading.Lock()
        self._visibility_lock = threading.Lock()  # orders heartbeat extensions against releases
        self._held: dict[str, _Held] = {}
        self._progress_at = time.monotonic()
        self._heartbeat: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()
        self._receive_failures = 0
        # SQS ids of messages that failed permanently here: not handled again while they cycle to the DLQ.
        self._poison: OrderedDict[str, None] = OrderedDict()
        self.queue_url = ""
        self.max_receives = settings.max_receives
        self.dead_letter_arn: str | None = None
        self.processed = 0
        self.failed = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Resolve the queue, read its redrive policy and start the heartbeat thread."""
        self.queue_url = resolve_queue_url(self._sqs, self._settings.queue)
        self._read_redrive_policy()
        self._touch()
        self._heartbeat_stop.clear()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="sqs-heartbeat", daemon=True)
        self._heartbeat.start()

    def close(self) -> None:
        self._heartbeat_stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)
            self._heartbeat = None

    def run(self) -> int:
        """Loop until ``stop`` is set; return the exit status (0 after a graceful drain)."""
        self.start()
        try:
            if self._notifier is not None:
                self._notifier.ready(f"polling {self.queue_url}")
            self._log.info("worker started", extra={"queue_url": self.queue_url, "max_receives": self.max_receives})
            while not self._stop.is_set():
                self.poll_once()
            self._log.info("stop requested; drained", extra={"processed": self.processed, "failed": self.failed})
            if self._notifier is not None:
                self._notifier.stopping("drained")
        finally:
            self.close()
        return 0

    # -- the loop ----------------------------------------------------------------------------------

    def poll_once(self) -> int:
        """One receive and the processing of its batch; returns the number of messages received."""
        self._touch()
        try:
            response = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self._settings.batch_size,
                WaitTimeSeconds=self._settings.wait_time_seconds,
                VisibilityTimeout=self._settings.visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                MessageAttributeNames=["All"],
            )
        except (BotoCoreError, ClientError) as exc:
            self._receive_failures += 1
            delay = min(30.0, 2.0**self._receive_failures, self._settings.job_timeout_seconds / 2)
            self._log.warning("receive failed; retrying", extra={"error": str(exc), "delay_s": delay})
            self._stop.wait(delay)
            return 0
        self._receive_failures = 0
        batch = [Received.from_sqs(m) for m in response.get("Messages", [])]
        with self._lock:
            for message in batch:
                self._held[message.receipt_handle] = _Held(message.message_id)
        for index, message in enumerate(batch):
            if self._stop.is_set():
                self._release(batch[index:], delay=0, reason="stopping")
                break
            if not self._process(message):
                # A dependency is down: hand the rest back and wait for it before receiving again.
                self._release(batch[index + 1 :], delay=0, reason="dependency unavailable")
                self._wait_for_health()
                break
        self._run_periodic()
        return len(batch)

    def _process(self, message: Received) -> bool:
        """Handle one message; False when a dependency is unavailable."""
        self._touch()
        context = {"sqs_message_id": message.message_id, "receive_count": message.receive_count}
        started = time.monotonic()
        healthy = True
        try:
            if message.message_id in self._poison:
                raise PermanentError("failed permanently before; not handled again")
            self._handler(message)
        except PermanentError as exc:
            self.failed += 1
            self._log.error("permanent failure", extra={**context, "error": str(exc)})
            self._poison[message.message_id] = None
            while len(self._poison) > 1000:
                self._poison.popitem(last=False)
            self._give_up(message, context)
        except Unavailable as exc:
            self.failed += 1
            healthy = False
            self._log.warning("dependency unavailable; pausing", extra={**context, "error": str(exc)})
            self._set_visibility([message], self._backoff(1))
        except Exception as exc:  # noqa: BLE001 - any other failure: back off and retry
            self.failed += 1
            self._log.exception("handler failed", extra={**context, "error": repr(exc)})
            if message.receive_count >= self.max_receives:
                self._give_up(message, context)
            else:
                self._set_visibility([message], self._backoff(message.receive_count))
        else:
            self.processed += 1
            self._delete(message)
            self._log.info("message done", extra={**context, "duration_ms": round((time.monotonic() - started) * 1000)})
        finally:
            self._forget([message])
            self._touch()
        return healthy

    def _give_up(self, message: Received, context: dict[str, Any]) -> None:
        if self.dead_letter_arn is not None:
            # Visible again at once: the next receive (by anyone) past maxReceiveCount moves it to the DLQ.
            self._log.error(
                "poison message left for the dead-letter queue",
                extra={**context, "dead_letter_arn": self.dead_letter_arn, "max_receives": self.max_receives},
            )
            self._set_visibility([message], 0)
        else:
            self._log.error(
                "poison message and no redrive policy: it is kept and retried at the maximum backoff",
                extra=context,
            )
            self._set_visibility([message], self._settings.retry_max_seconds)

    def _backoff(self, receive_count: int) -> int:
        base = self._settings.retry_base_seconds * 2 ** max(0, receive_count - 1)
        return int(min(self._settings.retry_max_seconds, base, 43200))

    def _wait_for_health(self) -> None:
        if self._health_check is None:
            self._stop.wait(min(30.0, max(1.0, self._settings.retry_base_seconds)))
            return
        delay = min(max(self._settings.retry_base_seconds, 0.05), 1.0)
        while not self._stop.is_set():
            self._touch()
            try:
                self._health_check()
            except Exception as exc:  # noqa: BLE001 - any failure of the check means not yet
                self._log.warning("still unavailable", extra={"error": str(exc), "delay_s": delay})
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0, self._settings.job_timeout_seconds / 2)
            else:
                self._log.info("dependency available again; resuming")
                return

    def _run_periodic(self) -> None:
        now = time.monotonic()
        for index, task in enumerate(self._periodic):
            if now < self._periodic_due[index] or self._stop.is_set():
                continue
            self._periodic_due[index] = now + task.interval
            self._touch()
            try:
                task.action()
            except Exception as exc:  # noqa: BLE001 - housekeeping must not stop the loop
                self._log.exception("periodic task failed", extra={"task": task.name, "error": repr(exc)})

    # -- SQS calls ---------------------------------------------------------------------------------

    def _delete(self, message: Received) -> None:
        try:
            with self._visibility_lock:
                self._forget([message])
                self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message.receipt_handle)
        except (BotoCoreError, ClientError) as exc:
            # The work is committed; redelivery is harmless because handlers are idempotent.
            self._log.error(
                "delete failed; the message will be redelivered and de-duplicated",
                extra={"sqs_message_id": message.message_id, "error": str(exc)},
            )

    def _release(self, messages: Sequence[Received], *, delay: int, reason: str) -> None:
        if not messages:
            return
        self._log.info("releasing unprocessed messages", extra={"count": len(messages), "reason": reason})
        self._set_visibility(messages, delay)

    def _set_visibility(self, messages: Sequence[Received], timeout: int) -> None:
        """Stop holding the messages and give them ``timeout`` seconds of invisibility.

        Under the visibility lock, so the heartbeat cannot re-extend a message released a moment ago."""
        with self._visibility_lock:
            self._forget(messages)
            self._change_visibility([(m.receipt_handle, m.message_id) for m in messages], timeout)

    def _change_visibility(self, handles: Sequence[tuple[str, str]], timeout: int) -> None:
        for start in range(0, len(handles), _SQS_BATCH):
            chunk = handles[start : start + _SQS_BATCH]
            entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": timeout}
                for i, (handle, _) in enumerate(chunk)
            ]
            try:
                result = self._sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                self._log.warning("change visibility failed", extra={"error": str(exc), "count": len(chunk)})
                continue
            for failure in result.get("Failed", []):
                self._log.log(
                    logging.DEBUG if failure.get("Code") == "ReceiptHandleIsInvalid" else logging.WARNING,
                    "change visibility failed for a message",
                    extra={
                        "sqs_message_id": chunk[int(failure["Id"])][1],
                        "error": failure.get("Message", ""),
                    },
                )

    # -- heartbeat ---------------------------------------------------------------------------------

    def _touch(self) -> None:
        with self._lock:
            self._progress_at = time.monotonic()

    def _forget(self, messages: Sequence[Received]) -> None:
        with self._lock:
            for message in messages:
                self._held.pop(message.receipt_handle, None)

    def healthy(self) -> bool:
        with self._lock:
            return time.monotonic() - self._progress_at < self._settings.job_timeout_seconds

    def _heartbeat_loop(self) -> None:
        extend_every = max(self._settings.visibility_timeout / 3, 0.2)
        watchdog = self._notifier.watchdog_interval if self._notifier is not None else None
        tick = min(extend_every, watchdog) if watchdog else extend_every
        next_extend = time.monotonic() + extend_every
        while not self._heartbeat_stop.wait(tick):
            try:
                healthy = self.healthy()
                if healthy and self._notifier is not None and watchdog:
                    self._notifier.watchdog()
                if time.monotonic() >= next_extend:
                    next_extend = time.monotonic() + extend_every
                    if not healthy:
                        self._log.error("job exceeded ISIKHNAS_JOB_TIMEOUT_SECONDS; no longer extending")
                        continue
                    with self._visibility_lock:
                        with self._lock:
                            held = [(handle, h.message_id) for handle, h in self._held.items()]
                        if held:
                            self._change_visibility(held, self._settings.visibility_timeout)
            except Exception as exc:  # noqa: BLE001 - never let the heartbeat die silently
                self._log.exception("heartbeat error", extra={"error": repr(exc)})

    # -- queue attributes --------------------------------------------------------------------------

    def _read_redrive_policy(self) -> None:
        try:
            attributes = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]).get(
                "Attributes", {}
            )
        except (BotoCoreError, ClientError) as exc:
            self._log.warning(
                "cannot read the queue's redrive policy; using ISIKHNAS_MAX_RECEIVES",
                extra={"error": str(exc), "max_receives": self.max_receives},
            )
            return
        raw = attributes.get("RedrivePolicy")
        if not raw:
            self._log.warning(
                "queue has no redrive policy: poison messages cannot reach a dead-letter queue",
                extra={"queue_url": self.queue_url},
            )
            return
        policy = json.loads(raw)
        self.dead_letter_arn = str(policy.get("deadLetterTargetArn") or "") or None
        self.max_receives = int(policy.get("maxReceiveCount", self.max_receives))
