from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isikhnas_daemons import logs
from isikhnas_daemons.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path


def test_notify_sends_datagrams(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert notifier.enabled
    assert notifier.watchdog_interval == 2.0
    assert notifier.ready("polling")
    assert sock.recv(4096) == b"READY=1\nSTATUS=polling"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_socket() -> None:
    name = f"isikhnas-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert sock.recv(4096) == b"STATUS=hello"


def test_without_systemd_everything_is_a_noop() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False
    # WATCHDOG_PID naming another process: not ours to ping.
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None


def test_a_full_receiver_never_blocks_the_daemon(notify_socket: tuple[socket.socket, str]) -> None:
    _, path = notify_socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        filler.setblocking(False)
        filler.connect(path)
        with contextlib.suppress(BlockingIOError):
            while True:  # fill the receiver's datagram queue; nobody reads it
                filler.send(b"WATCHDOG=1")
    started = time.monotonic()
    assert Notifier({"NOTIFY_SOCKET": path}, timeout=0.2).watchdog() is False
    assert time.monotonic() - started < 1.5


def test_notify_to_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).ready() is False


def test_json_logs_carry_extra_fields_and_exceptions() -> None:
    stream = io.StringIO()
    log = logs.setup("processor", "DEBUG", stream=stream)
    log.info("job processed", extra={"message_id": "email:1", "rows": 2})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "job processed"
    assert first["message_id"] == "email:1"
    assert first["rows"] == 2
    assert first["daemon"] == "processor"
    assert first["priority"] == 6
    assert second["level"] == "error"
    assert "ValueError: boom" in second["exc"]
    logging.getLogger().handlers.clear()
