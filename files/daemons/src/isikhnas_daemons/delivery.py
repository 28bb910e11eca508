"""Delivery log for the consumers that talk to the outside world (email-sender, im-gateway).

With a database configured, a ``dedup_id`` already delivered is skipped, so a redelivered queue message
(or a repeated outbox relay on a standard queue) does not reach the person twice. The window left is a
crash between the provider accepting the message and the row being committed: at-least-once, narrowed.
Without a database the log is a no-op and delivery is plain at-least-once.
"""

from __future__ import annotations

from typing import Protocol

from isikhnas_daemons.db import Cursor, Database


class DeliveryLog(Protocol):
    def delivered(self, dedup_id: str) -> bool: ...

    def record(self, dedup_id: str, channel: str, provider_id: str | None) -> None: ...


class NoDeliveryLog:
    def delivered(self, dedup_id: str) -> bool:
        return False

    def record(self, dedup_id: str, channel: str, provider_id: str | None) -> None:
        return None


class DbDeliveryLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def delivered(self, dedup_id: str) -> bool:
        def work(cur: Cursor) -> bool:
            cur.execute("SELECT 1 FROM pipeline.delivery WHERE dedup_id = %s", (dedup_id,))
            return cur.fetchone() is not None

        return self._db.transaction(work)

    def record(self, dedup_id: str, channel: str, provider_id: str | None) -> None:
        def work(cur: Cursor) -> None:
            cur.execute(
                "INSERT INTO pipeline.delivery (dedup_id, channel, provider_id) VALUES (%s, %s, %s) "
                "ON CONFLICT (dedup_id) DO NOTHING",
                (dedup_id, channel, provider_id),
            )

        self._db.transaction(work)
