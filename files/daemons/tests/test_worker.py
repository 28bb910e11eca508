from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from helpers import count_messages, drain, fast_settings, make_queue
from isikhnas_daemons.runtime import install_signal_handlers
from isikhnas_daemons.sdnotify import Notifier
from isikhnas_daemons.worker import PermanentError, Received, Unavailable, Worker

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def send(sqs: SQSClient, url: str, *bodies: dict[str, object]) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))


def test_success_deletes_after_the_handler_returns(sqs: SQSClient, log: logging.Logger) -> None:
    queue = make_queue(sqs, "work")
    send(sqs, queue.url, {"n": 1}, {"n": 2})
    seen: list[int] = []

    def handler(message: Received) -> None:
        seen.append(message.json()["n"])
        # while the handler runs, its message is still on the queue (in flight), not deleted
        assert count_messages(sqs, queue.url) >= 1

    worker = Worker(sqs=sqs, settings=fast_settings(queue.url), handler=handler, log=log, stop=threading.Event())
    worker.start()
    try:
        assert worker.poll_once() == 2
    finally:
        worker.close()
    assert sorted(seen) == [1, 2]
    assert count_messages(sqs, queue.url) == 0
    assert worker.max_receives == 3
    assert worker.dead_letter_arn is not None
    assert worker.dead_letter_arn.endswith(":work-dlq")


def test_queue_name_is_resolved(sqs: SQSClient, log: logging.Logger) -> None:
    queue = make_queue(sqs, "named")
    worker = Worker(sqs=sqs, settings=fast_settings("named"), handler=lambda m: None, log=log, stop=threading.Event())
    worker.start()
    worker.close()
    assert worker.queue_url == queue.url


def test_transient_failures_are_retried_then_succeed(sqs: SQSClient, log: logging.Logger) -> None:
    queue = make_queue(sqs, "retry", max_receives=5)
    send(sqs, queue.url, {"n": 1})
    counts: list[int] = []

    def flaky(message: Received) -> None:
        counts.append(message.receive_count)
        if len(counts) < 3:
            raise ConnectionError("downstream hiccup")

    worker = Worker(sqs=sqs, settings=fast_settings(queue.url), handler=flaky, log=log, stop=threading.Event())
    worker.start()
    try:
        for _ in range(5):
            worker.poll_once()
    finally:
        worker.close()
    assert counts == [1, 2, 3]
    assert count_messages(sqs, queue.url) == 0
    assert count_messages(sqs, queue.dlq_url) == 0


def test_backoff_sets_the_visibility_delay(sqs: SQSClient, log: logging.Logger) -> None:
    queue = make_queue(sqs, "backoff", max_receives=5)
    send(sqs, queue.url, {"n": 1})

    def failing(message: Received) -> None:
        raise RuntimeError("try later")

    settings = fast_settings(queue.url, retry_base_seconds=30, retry_max_seconds=600)
    worker = Worker(sqs=sqs, settings=settings, handler=failing, log=log, stop=threading.Event())
    worker.start()
    try:
        assert worker.poll_once() == 1
        assert worker.poll_once() == 0  # hidden for 30 s by the backoff
    finally:
        worker.close()
    assert count_messages(sqs, queue.url) == 1


def test_poison_message_lands_in_the_dead_letter_queue(sqs: SQSClient, log: logging.Logger) -> None:
    queue = make_queue(sqs, "poison", max_receives=3)
    send(sqs, queue.url, {"poison": True})
    calls: list[int] = []

    def always_fails(message: Received) -> None:
        calls.append(message.receive_count)
        raise ValueError("cannot ever work")

    worker = Worker(sqs=sqs, settings=fast_settings(queue.url), handler=always_fails, log=log, stop=threading.Event())
    worker.start()
    try:
        for _ in range(6):
            worker.poll_once()
    finally:
        worker.close()
    assert calls == [1, 2, 3]
    assert count_messages(sqs, queue.url) == 0
    assert drain(sqs, queue.dlq_url) == [{"poison": True}]


def test_permanent_error_is_not_retried_and_reaches_the_dlq(sqs: SQSClient, log: logging.Logger) -> None:
    queue = make_queue(sqs, "permanent", max_receives=3)
    sqs.send_message(QueueUrl=queue.url, MessageBody="this is not json")
    calls: list[int] = []

    def handler(message: Received) -> None:
        calls.append(message.receive_count)
        message.json()

    worker = Worker(sqs=sqs, settings=fast_settings(queue.url), handler=handler, log=log, stop=threading.Event())
    worker.start()
    try:
        for _ in range(5):
            worker.poll_once()
    finally:
        worker.close()
    assert calls == [1]  # handled once; the later receives only cycle it to the DLQ
    messages = sqs.receive_message(QueueUrl=queue.dlq_url).get("Messages", [])
    assert [m["Body"] for m in messages] == ["this is not json"]


def test_without_redrive_policy_a_poison_message_is_kept(sqs: SQSClient, log: logging.Logger) -> None:
    url = sqs.create_queue(QueueName="no-dlq")["QueueUrl"]
    send(sqs, url, {"n": 1})

    def fails(message: Received) -> None:
        raise PermanentError("bad")

    settings = fast_settings(url, retry_max_seconds=300)
    worker = Worker(sqs=sqs, settings=settings, handler=fails, log=log, stop=threading.Event())
    worker.start()
    try:
        worker.poll_once()
    finally:
        worker.close()
    assert worker.dead_letter_arn is None
    assert count_messages(sqs, url) == 1  # never dropped


def test_visibility_is_extended_for_long_jobs(sqs: SQSClient, log: logging.Logger) -> None:
    queue = make_queue(sqs, "long", visibility=2)
    send(sqs, queue.url, {"n": 1})
    stolen: list[int] = []

    def slow(message: Received) -> None:
        time.sleep(2.6)  # longer than the 2 s visibility timeout
        stolen.append(len(sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=0).get("Messages", [])))

    settings = fast_settings(queue.url, visibility_timeout=2)
    worker = Worker(sqs=sqs, settings=settings, handler=slow, log=log, stop=threading.Event())
    worker.start()
    try:
        worker.poll_once()
    finally:
        worker.close()
    assert stolen == [0]  # nobody else could receive it meanwhile
    assert count_messages(sqs, queue.url) == 0


def test_dependency_outage_pauses_receiving(sqs: SQSClient, log: logging.Logger) -> None:
    queue = make_queue(sqs, "outage", max_receives=3)
    send(sqs, queue.url, {"n": 1}, {"n": 2})
    state = {"db_up": False, "checks": 0}
    done: list[int] = []

    def handler(message: Received) -> None:
        if not state["db_up"]:
            raise Unavailable("database unreachable")
        done.append(message.json()["n"])

    def health_check() -> None:
        state["checks"] += 1
        if state["checks"] >= 3:
            state["db_up"] = True
            return
        raise Unavailable("still down")

    worker = Worker(
        sqs=sqs,
        settings=fast_settings(queue.url),
        handler=handler,
        log=log,
        stop=threading.Event(),
        health_check=health_check,
    )
    worker.start()
    try:
        worker.poll_once()  # fails once, releases the batch, waits until the check passes
        assert state["checks"] == 3
        worker.poll_once()
    finally:
        worker.close()
    assert sorted(done) == [1, 2]
    assert count_messages(sqs, queue.dlq_url) == 0


def test_sigterm_drains_finishes_in_flight_and_releases_the_rest(
    sqs: SQSClient, log: logging.Logger, tmp_path: Path
) -> None:
    queue = make_queue(sqs, "drain")
    send(sqs, queue.url, {"n": 1}, {"n": 2}, {"n": 3})
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(2)
    started = threading.Event()
    finished: list[int] = []

    def slow(message: Received) -> None:
        started.set()
        time.sleep(0.6)
        finished.append(message.json()["n"])

    stop = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    install_signal_handlers(stop, log)

    def terminate() -> None:
        started.wait(5)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    worker = Worker(
        sqs=sqs,
        settings=fast_settings(queue.url, wait_time_seconds=1),
        handler=slow,
        log=log,
        stop=stop,
        notifier=Notifier({"NOTIFY_SOCKET": notify_path}),
    )
    try:
        status = worker.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        killer.join(5)
    notifications = [listener.recv(4096) for _ in range(2)]
    listener.close()
    assert status == 0
    assert len(finished) == 1  # the in-flight message was finished, nothing else started
    assert stop.is_set()
    # the two unstarted messages were released at once and are receivable right away
    remaining = sorted(body["n"] for body in drain(sqs, queue.url))
    assert remaining == sorted({1, 2, 3} - set(finished))
    assert notifications[0].startswith(b"READY=1")
    assert notifications[1].startswith(b"STOPPING=1")


def test_watchdog_pings_stop_when_a_job_hangs(sqs: SQSClient, log: logging.Logger, tmp_path: Path) -> None:
    queue = make_queue(sqs, "hang")
    send(sqs, queue.url, {"n": 1})
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.setblocking(False)
    health: list[bool] = []

    def hangs(message: Received) -> None:
        time.sleep(0.3)
        health.append(worker.healthy())
        time.sleep(0.9)
        health.append(worker.healthy())

    worker = Worker(
        sqs=sqs,
        settings=fast_settings(queue.url, job_timeout_seconds=0.8, visibility_timeout=30),
        handler=hangs,
        log=log,
        stop=threading.Event(),
        notifier=Notifier({"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "200000"}),
    )
    worker.start()
    try:
        worker.poll_once()
    finally:
        worker.close()
    pings = []
    while True:
        try:
            pings.append(listener.recv(64))
        except BlockingIOError:
            break
    listener.close()
    assert health == [True, False]
    assert pings
    assert set(pings) == {b"WATCHDOG=1"}
    # 0.1 s interval: about 8 pings in the healthy 0.8 s, none in the 0.4 s after; generous bounds
    assert len(pings) <= 11


@pytest.mark.parametrize("attributes", [{}, {"dedup_id": "x:reply"}])
def test_received_from_sqs(attributes: dict[str, str]) -> None:
    message = Received.from_sqs(
        {
            "MessageId": "m1",
            "ReceiptHandle": "r1",
            "Body": "[1]",
            "Attributes": {"ApproximateReceiveCount": "4", "SentTimestamp": "1700000000000"},
            "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        }
    )
    assert message.receive_count == 4
    assert message.sent_timestamp_ms == 1700000000000
    assert message.attributes == attributes
    with pytest.raises(PermanentError, match="not a JSON object"):
        message.json()
