"""The JSON documents on each queue (version 1), with strict decoding.

A document that does not decode is a ``PermanentError``: retrying cannot fix it, so it goes to the
dead-letter queue after being logged. README.md shows one example of each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from isikhnas_daemons.worker import PermanentError

VERSION = 1
CHANNELS = ("email", "im")


def _plain(value: Any) -> Any:
    """JSON-native structure: tuples become lists, so to_json() equals what a consumer decodes."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PermanentError(f"{where} must be an object")
    return value


def _str(doc: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> str | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not optional and not value):
        raise PermanentError(f"{where}.{key} must be a non-empty string")
    return value


def _req(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise PermanentError(f"{where}.{key} must be a non-empty string")
    return value


def _timestamp(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = _req(doc, key, where)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise PermanentError(f"{where}.{key} must be an ISO 8601 timestamp, got {value!r}") from None
    if parsed.tzinfo is None:
        raise PermanentError(f"{where}.{key} must include a time zone, got {value!r}")
    return value


def utc_now() -> str:
    return dt.datetime.now(tz=dt.UTC).isoformat(timespec="seconds")


def _version(doc: Mapping[str, Any], where: str) -> None:
    if doc.get("version") != VERSION:
        raise PermanentError(f"{where}.version must be {VERSION}, got {doc.get('version')!r}")


def _channel(doc: Mapping[str, Any], where: str) -> str:
    channel = _req(doc, "channel", where)
    if channel not in CHANNELS:
        raise PermanentError(f"{where}.channel must be one of {CHANNELS}, got {channel!r}")
    return channel


@dataclass(frozen=True)
class Sender:
    address: str
    name: str | None = None
    verified: bool = False


@dataclass(frozen=True)
class ReplyTo:
    """Where and how to answer: an email address (with threading headers) or an IM handle."""

    channel: str
    address: str
    subject: str | None = None
    in_reply_to: str | None = None

    @classmethod
    def decode(cls, value: Any, where: str) -> ReplyTo:
        doc = _obj(value, where)
        return cls(
            channel=_channel(doc, where),
            address=_req(doc, "address", where),
            subject=_str(doc, "subject", where, optional=True),
            in_reply_to=_str(doc, "in_reply_to", where, optional=True),
        )


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ProcessingJob:
    """inbound-email / im-gateway -> processing queue."""

    message_id: str
    channel: str
    received_at: str
    sender: Sender
    text: str
    reply: ReplyTo | None = None
    subject: str | None = None
    attachments: tuple[StoredObject, ...] = ()
    original: StoredObject | None = None
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(asdict(self))
        return plain

    @classmethod
    def decode(cls, doc: Mapping[str, Any]) -> ProcessingJob:
        where = "job"
        _version(doc, where)
        sender = _obj(doc.get("sender"), f"{where}.sender")
        attachments = doc.get("attachments") or []
        if not isinstance(attachments, list):
            raise PermanentError(f"{where}.attachments must be a list")
        original = doc.get("original")
        text = doc.get("text")
        if not isinstance(text, str):
            raise PermanentError(f"{where}.text must be a string")
        return cls(
            message_id=_req(doc, "message_id", where),
            channel=_channel(doc, where),
            received_at=_timestamp(doc, "received_at", where),
            sender=Sender(
                address=_req(sender, "address", f"{where}.sender"),
                name=_str(sender, "name", f"{where}.sender", optional=True),
                verified=bool(sender.get("verified", False)),
            ),
            text=text,
            reply=None if doc.get("reply") is None else ReplyTo.decode(doc["reply"], f"{where}.reply"),
            subject=_str(doc, "subject", where, optional=True),
            attachments=tuple(StoredObject(**_obj(a, f"{where}.attachments[]")) for a in attachments),
            original=None if original is None else StoredObject(**_obj(original, f"{where}.original")),
        )


@dataclass(frozen=True)
class OutgoingEmail:
    """processor / reporter / inbound-email -> outgoing-email queue."""

    dedup_id: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    in_reply_to: str | None = None
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(asdict(self))
        return plain

    @classmethod
    def decode(cls, doc: Mapping[str, Any]) -> OutgoingEmail:
        where = "email"
        _version(doc, where)
        to = doc.get("to")
        if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
            raise PermanentError(f"{where}.to must be a non-empty list of addresses")
        text = doc.get("text")
        if not isinstance(text, str):
            raise PermanentError(f"{where}.text must be a string")
        return cls(
            dedup_id=_req(doc, "dedup_id", where),
            to=tuple(to),
            subject=_req(doc, "subject", where),
            text=text,
            html=_str(doc, "html", where, optional=True),
            in_reply_to=_str(doc, "in_reply_to", where, optional=True),
        )


@dataclass(frozen=True)
class OutgoingIm:
    """processor / reporter -> outgoing-im queue."""

    dedup_id: str
    to: str
    text: str
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(asdict(self))
        return plain

    @classmethod
    def decode(cls, doc: Mapping[str, Any]) -> OutgoingIm:
        where = "im"
        _version(doc, where)
        return cls(dedup_id=_req(doc, "dedup_id", where), to=_req(doc, "to", where), text=_req(doc, "text", where))


@dataclass(frozen=True)
class ReportJob:
    """processor -> reporting queue."""

    request_id: str
    report: str
    days: int
    reply: ReplyTo
    requested_at: str
    point: dict[str, float] | None = None
    radius_km: float | None = None
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(asdict(self))
        return plain

    @classmethod
    def decode(cls, doc: Mapping[str, Any]) -> ReportJob:
        where = "report"
        _version(doc, where)
        report = _req(doc, "report", where)
        if report not in ("summary", "nearby"):
            raise PermanentError(f"{where}.report must be summary or nearby, got {report!r}")
        days = doc.get("days")
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
            raise PermanentError(f"{where}.days must be an integer between 1 and 3650")
        point = doc.get("point")
        radius = doc.get("radius_km")
        if report == "nearby":
            point_doc = _obj(point, f"{where}.point")
            try:
                point = {"lat": float(point_doc["lat"]), "lon": float(point_doc["lon"])}
                radius = float(radius)  # type: ignore[arg-type]
            except (KeyError, TypeError, ValueError):
                raise PermanentError(f"{where}: nearby needs point.lat, point.lon and radius_km") from None
        return cls(
            request_id=_req(doc, "request_id", where),
            report=report,
            days=days,
            reply=ReplyTo.decode(doc.get("reply"), f"{where}.reply"),
            requested_at=_timestamp(doc, "requested_at", where),
            point=point if report == "nearby" else None,
            radius_km=radius if report == "nearby" else None,
        )
