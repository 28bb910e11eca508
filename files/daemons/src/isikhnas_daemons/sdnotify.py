"""The systemd notification protocol (``sd_notify(3)``) in a few lines, without libsystemd.

A datagram ``KEY=VALUE\\n...`` goes to the ``AF_UNIX`` socket named in ``NOTIFY_SOCKET``; a leading
``@`` denotes the abstract namespace. Outside systemd every call is a silent no-op, and a send never
blocks longer than ``timeout`` (returning False instead).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str], *, timeout: float = 2.0) -> None:
        self._timeout = timeout
        address = environ.get("NOTIFY_SOCKET", "")
        self._address: str | None = None
        if address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address.startswith("/"):
            self._address = address
        self._watchdog_usec = 0
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID, when set, names the process that must ping; ignore it in children.
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self._watchdog_usec = int(usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half the configured WatchdogSec), or None when not watched."""
        if self._watchdog_usec <= 0:
            return None
        return self._watchdog_usec / 2_000_000

    def notify(self, *assignments: str) -> bool:
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # A receiver that does not read (its queue is full) must never block the daemon:
                # a dropped WATCHDOG ping is repeated at the next tick anyway.
                sock.settimeout(self._timeout)
                sock.connect(self._address)
                sock.sendall(payload)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))
