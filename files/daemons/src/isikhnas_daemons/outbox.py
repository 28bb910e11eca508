"""Transactional outbox: queue messages are written with the data, then relayed to SQS.

The handler inserts outbox rows in the same transaction as its data (so a reply exists if and only if the
data was committed), then ``Relay.relay_source`` sends the rows and marks them sent before the SQS input
message is deleted. A crash anywhere is repaired by redelivery (the handler sees its data exists and only
relays) or by the periodic ``Relay.sweep``. Repeated sends carry the same ``dedup_id``; FIFO queues drop
them and the external-facing consumers check ``pipeline.delivery``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg2.extras import Json

from isikhnas_daemons.db import Cursor, Database
from isikhnas_daemons.queues import Producer

OUTGOING_EMAIL = "outgoing_email"
OUTGOING_IM = "outgoing_im"
REPORTING = "reporting"


@dataclass(frozen=True)
class OutboxMessage:
    dedup_id: str
    queue: str
    body: Mapping[str, Any]
    group_id: str = "default"


def add(cur: Cursor, source_id: str, message: OutboxMessage) -> None:
    cur.execute(
        "INSERT INTO pipeline.outbox (dedup_id, source_id, queue, body, group_id) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (dedup_id) DO NOTHING",
        (message.dedup_id, source_id, message.queue, Json(dict(message.body)), message.group_id),
    )


class Relay:
    def __init__(self, db: Database, producers: Mapping[str, Producer], log: logging.Logger) -> None:
        self._db = db
        self._producers = producers
        self._log = log

    def _send_rows(self, cur: Cursor) -> int:
        rows = cur.fetchall()
        for dedup_id, queue, body, group_id in rows:
            producer = self._producers.get(queue)
            if producer is None:
                raise RuntimeError(f"outbox row {dedup_id} targets queue {queue!r}, which is not configured")
            sqs_id = producer.send(body, dedup_id=dedup_id, group_id=group_id)
            cur.execute("UPDATE pipeline.outbox SET sent_at = now() WHERE dedup_id = %s", (dedup_id,))
            self._log.info("outbox relayed", extra={"dedup_id": dedup_id, "queue": queue, "sqs_message_id": sqs_id})
        return len(rows)

    def relay_source(self, source_id: str) -> int:
        """Send the unsent rows written for one input message."""

        def work(cur: Cursor) -> int:
            cur.execute(
                "SELECT dedup_id, queue, body, group_id FROM pipeline.outbox "
                "WHERE source_id = %s AND sent_at IS NULL ORDER BY created_at, dedup_id FOR UPDATE SKIP LOCKED",
                (source_id,),
            )
            return self._send_rows(cur)

        return self._db.transaction(work)

    def sweep(self, older_than_seconds: float = 60.0, limit: int = 100) -> int:
        """Send rows left unsent by a crash (the input message may already be in the DLQ)."""

        def work(cur: Cursor) -> int:
            cur.execute(
                "SELECT dedup_id, queue, body, group_id FROM pipeline.outbox "
                "WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => %s) "
                "ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (older_than_seconds, limit),
            )
            return self._send_rows(cur)

        sent = self._db.transaction(work)
        if sent:
            self._log.warning("outbox sweep relayed orphaned rows", extra={"count": sent})
        return sent
