"""``isikhnas-migrate``: apply the SQL migrations in ``migrations/`` once each, in order.

* Idempotent: applied versions are recorded in ``pipeline.schema_migration`` with a checksum; a changed
  applied file is an error (write a new migration instead).
* Concurrency-safe: a session advisory lock serialises runners (two hosts converging at once).
* Each migration runs in its own transaction together with its version row.
* Output is one JSON object on stdout, ``{"changed": ..., "applied": [...], "pending": [...], ...}``, so an
  Ansible task can use ``changed_when: (result.stdout | from_json).changed``; ``--dry-run`` changes nothing
  (for check mode) and reports what would be applied.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg2
import psycopg2.extensions

from isikhnas_daemons import logs
from isikhnas_daemons.config import EX_CONFIG, ConfigError, DbSettings, Env
from isikhnas_daemons.db import full_dsn

# pg_advisory_lock key: the bytes "iSKHmigr" read as a signed 64-bit integer.
LOCK_KEY = int.from_bytes(b"iSKHmigr", "big", signed=True)
_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE SCHEMA IF NOT EXISTS pipeline;
CREATE TABLE IF NOT EXISTS pipeline.schema_migration (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


class MigrationError(RuntimeError):
    def __init__(self, message: str, result: Result | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass
class Result:
    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    current_version: int = 0
    unknown: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied)

    def to_json(self, dry_run: bool) -> dict[str, object]:
        return {
            "changed": bool(self.pending) if dry_run else self.changed,
            "dry_run": dry_run,
            "applied": self.applied,
            "pending": self.pending,
            "current_version": self.current_version,
            "unknown_versions": self.unknown,
        }


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """The package's migrations (or those in ``directory``), ordered by version."""
    found: dict[int, Migration] = {}
    source = directory if directory is not None else resources.files("isikhnas_daemons").joinpath("migrations")
    for entry in source.iterdir():
        match = _FILENAME.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version:04d}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def _applied(cur: psycopg2.extensions.cursor) -> dict[int, tuple[str, str]] | None:
    cur.execute("SELECT to_regclass('pipeline.schema_migration') IS NOT NULL")
    row = cur.fetchone()
    if row is None or not row[0]:
        return None
    cur.execute("SELECT version, name, checksum FROM pipeline.schema_migration ORDER BY version")
    return {int(v): (str(n), str(c)) for v, n, c in cur.fetchall()}


def migrate(
    conn: psycopg2.extensions.connection,
    migrations: Sequence[Migration],
    log: logging.Logger,
    *,
    dry_run: bool = False,
    lock_timeout_seconds: int = 300,
) -> Result:
    conn.autocommit = True
    result = Result()
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{lock_timeout_seconds}s",))
        cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            applied = _applied(cur)
            if applied is None and not dry_run:
                cur.execute(_CREATE_TABLE)
                applied = {}
            applied = applied or {}
            known = {m.version: m for m in migrations}
            for version, (name, checksum) in applied.items():
                migration = known.get(version)
                if migration is None:
                    result.unknown.append(version)
                    log.warning("database has a migration this package does not know", extra={"version": version})
                elif migration.checksum != checksum:
                    raise MigrationError(
                        f"migration {migration.label} was changed after it was applied "
                        f"(recorded as {name}); add a new migration instead"
                    )
            result.current_version = max(applied, default=0)
            pending = [m for m in migrations if m.version not in applied]
            if dry_run:
                result.pending = [m.label for m in pending]
                return result
            for migration in pending:
                conn.autocommit = False
                try:
                    cur.execute(migration.sql)
                    cur.execute(
                        "INSERT INTO pipeline.schema_migration (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                    conn.commit()
                except psycopg2.Error as exc:
                    conn.rollback()
                    raise MigrationError(f"{migration.label}: {str(exc).strip()}", result) from exc
                finally:
                    conn.autocommit = True
                log.info("migration applied", extra={"migration": migration.label})
                result.applied.append(migration.label)
                result.current_version = max(result.current_version, migration.version)
        finally:
            if not conn.closed:
                conn.autocommit = True
                cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="isikhnas-migrate", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dsn", help="libpq connection string (default: $ISIKHNAS_DB_DSN)")
    parser.add_argument("--dry-run", action="store_true", help="report pending migrations, change nothing")
    parser.add_argument("--lock-timeout", type=int, default=300, help="seconds to wait for another runner")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.dsn:
        environ["ISIKHNAS_DB_DSN"] = args.dsn
    env = Env(environ)
    # Logs go to stderr: stdout carries the JSON result only.
    level, level_error = logs.level_from(env)
    log = logs.setup("migrate", level, stream=sys.stderr)
    try:
        if level_error is not None:
            raise level_error
        settings = DbSettings.from_env(env, "isikhnas-migrate")
    except ConfigError as exc:
        log.error("configuration error", extra={"error": str(exc)})
        return EX_CONFIG
    try:
        migrations = load_migrations()
        conn = psycopg2.connect(full_dsn(settings))
        try:
            result = migrate(conn, migrations, log, dry_run=args.dry_run, lock_timeout_seconds=args.lock_timeout)
        finally:
            conn.close()
    except (MigrationError, psycopg2.Error) as exc:
        partial = exc.result if isinstance(exc, MigrationError) else None
        log.error("migration failed", extra={"error": str(exc).strip()})
        applied = partial.applied if partial is not None else []
        print(json.dumps({"changed": bool(applied), "applied": applied, "error": str(exc).strip()}))
        return 1
    print(json.dumps(result.to_json(args.dry_run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
