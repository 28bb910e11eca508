"""Producing to SQS: queue resolution, JSON bodies, and deterministic de-duplication ids.

Every message a daemon produces carries a ``dedup_id`` that is a pure function of its cause (for example
``email:<ses-id>:reply``). On a FIFO queue it becomes the ``MessageDeduplicationId`` (SQS drops repeats
within five minutes); on a standard queue consumers de-duplicate on it themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def resolve_queue_url(sqs: SQSClient, queue: str) -> str:
    """``queue`` is a URL (used as is) or a queue name (looked up once, at start)."""
    if queue.startswith(("https://", "http://")):
        return queue
    return sqs.get_queue_url(QueueName=queue)["QueueUrl"]


def dedup_token(dedup_id: str) -> str:
    """A 64-character hex token valid as ``MessageDeduplicationId`` whatever ``dedup_id`` contains."""
    return hashlib.sha256(dedup_id.encode()).hexdigest()


def encode(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Producer:
    """Sends JSON messages to one queue."""

    sqs: SQSClient
    url: str

    @property
    def fifo(self) -> bool:
        return self.url.endswith(".fifo")

    def send(self, body: Mapping[str, Any], *, dedup_id: str, group_id: str = "default") -> str:
        params: dict[str, Any] = {
            "QueueUrl": self.url,
            "MessageBody": encode(body),
            "MessageAttributes": {"dedup_id": {"DataType": "String", "StringValue": dedup_id}},
        }
        if self.fifo:
            params["MessageDeduplicationId"] = dedup_token(dedup_id)
            params["MessageGroupId"] = dedup_token(group_id)[:64]
        return self.sqs.send_message(**params)["MessageId"]


def producer(sqs: SQSClient, queue: str) -> Producer:
    return Producer(sqs=sqs, url=resolve_queue_url(sqs, queue))
