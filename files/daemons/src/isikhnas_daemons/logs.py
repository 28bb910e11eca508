"""JSON-lines logging to stdout; journald stores each line as the entry's MESSAGE.

Extra fields passed with ``log.info("...", extra={"message_id": m})`` become JSON keys, so the
journal can be searched with ``journalctl -u isikhnas-processor | jq 'select(.message_id == ...)'``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import IO, Any

from isikhnas_daemons.config import ConfigError, Env

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# syslog priorities, so a journald-aware reader can map levels without parsing names.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JsonFormatter(logging.Formatter):
    def __init__(self, daemon: str) -> None:
        super().__init__()
        self._daemon = daemon

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "priority": _PRIORITY.get(record.levelno, 6),
            "daemon": self._daemon,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


LEVELS = ("debug", "info", "warning", "error")


def level_from(env: Env) -> tuple[str, ConfigError | None]:
    """``ISIKHNAS_LOG_LEVEL``, or INFO and the error to report once logging works."""
    try:
        return env.choice("ISIKHNAS_LOG_LEVEL", "info", LEVELS), None
    except ConfigError as exc:
        return "info", exc


def setup(daemon: str, level: str = "INFO", stream: IO[str] | None = None) -> logging.Logger:
    """Route the root logger to one JSON handler and return the daemon's logger."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter(daemon))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # boto's debug logs would print request signatures; keep third parties at WARNING.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(f"isikhnas.{daemon}")
