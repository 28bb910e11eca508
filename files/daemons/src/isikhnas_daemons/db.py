"""PostgreSQL access through a libpq multi-host DSN, with reconnect and transaction retry.

Failover model: the DSN lists every node (``host=db1,db2 ... target_session_attrs=read-write``), so a new
connection always lands on the current primary. When a connection breaks mid-transaction (failover,
restart, network), the transaction is rolled back by the server; ``Database.transaction`` discards the
connection, reconnects and runs the *whole* unit of work again. That is only correct because every unit of
work is idempotent (keyed by a message id with ``ON CONFLICT DO NOTHING``), which also covers the one
ambiguous case: the connection dropping while ``COMMIT`` was in flight.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from isikhnas_daemons.config import DbSettings
from isikhnas_daemons.worker import Unavailable

T = TypeVar("T")

Cursor = psycopg2.extensions.cursor

# Errors after which the connection cannot be trusted: reconnect (maybe to another host) and retry.
_RECONNECT: tuple[type[Exception], ...] = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    psycopg2.errors.ReadOnlySqlTransaction,  # connected to a node that was demoted to standby
)
# Errors that only need the transaction retried on the same connection.
_RETRY: tuple[type[Exception], ...] = (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected)

_DEFAULTS = {
    "target_session_attrs": "read-write",
    # Detect a dead primary in about a minute instead of the kernel's two hours.
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


def full_dsn(settings: DbSettings) -> str:
    """The DSN with defaults for what it leaves unset (it wins on anything it sets) and the password."""
    given = psycopg2.extensions.parse_dsn(settings.dsn)
    extra = {key: value for key, value in _DEFAULTS.items() if key not in given}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = str(settings.connect_timeout)
    if "application_name" not in given:
        extra["application_name"] = settings.application_name
    if settings.password is not None:
        extra["password"] = settings.password
    return psycopg2.extensions.make_dsn(settings.dsn, **extra)


class Database:
    def __init__(
        self,
        settings: DbSettings,
        log: logging.Logger,
        *,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._log = log
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._conn: psycopg2.extensions.connection | None = None
        self.reconnects = 0

    def _connect_once(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(full_dsn(self._settings))
        conn.autocommit = False
        self._log.info(
            "connected to database",
            extra={"db_host": conn.info.host, "db_port": conn.info.port, "db_name": conn.info.dbname},
        )
        return conn

    def connection(self) -> psycopg2.extensions.connection:
        """The open connection, (re)connecting with backoff; ``Unavailable`` when every attempt failed."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        last: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                self._conn = self._connect_once()
            except psycopg2.OperationalError as exc:
                last = exc
                self._log.warning("database connect failed", extra={"attempt": attempt, "error": str(exc).strip()})
                if attempt < self._attempts:
                    self._sleep(self._backoff * 2 ** (attempt - 1))
            else:
                return self._conn
        raise Unavailable(f"database unreachable: {str(last).strip()}")

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None
            self.reconnects += 1

    def _rollback(self, conn: psycopg2.extensions.connection) -> None:
        try:
            conn.rollback()
        except _RECONNECT:
            self._discard()

    def transaction(self, work: Callable[[Cursor], T]) -> T:
        """Run ``work`` in one transaction and commit; retried whole on connection loss (see module doc)."""
        last: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            conn = self.connection()
            try:
                with conn.cursor() as cur:
                    result = work(cur)
                conn.commit()
            except _RETRY as exc:
                self._rollback(conn)
                self._log.warning("transaction conflict; retrying", extra={"error": str(exc).strip()})
                last = exc
            except _RECONNECT as exc:
                self._discard()
                self._log.warning(
                    "database connection lost; reconnecting and retrying the transaction",
                    extra={"attempt": attempt, "error": str(exc).strip()},
                )
                last = exc
            except BaseException:
                self._rollback(conn)
                raise
            else:
                return result
            if attempt < self._attempts:
                self._sleep(self._backoff * 2 ** (attempt - 1))
        raise Unavailable(f"database transaction failed {self._attempts} times: {str(last).strip()}")

    def ping(self) -> None:
        """Health check for ``Worker``: one connection attempt and ``SELECT 1``."""
        try:
            conn = self._conn if self._conn is not None and not self._conn.closed else self._connect_once()
            self._conn = conn
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            conn.rollback()
        except _RECONNECT as exc:
            self._discard()
            raise Unavailable(str(exc).strip()) from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
