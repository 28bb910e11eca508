from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path

import psycopg2
import pytest

from helpers import create_database, scalar
from isikhnas_daemons.migrate import Migration, MigrationError, Result, load_migrations, main, migrate
from pgcluster import PgCluster


@pytest.fixture
def fresh_dsn(pg_cluster: PgCluster) -> str:
    return create_database(pg_cluster, f"mig_{uuid.uuid4().hex[:12]}")


def run(dsn: str, log: logging.Logger, migrations: list[Migration] | None = None, dry_run: bool = False) -> Result:
    conn = psycopg2.connect(dsn)
    try:
        return migrate(conn, migrations if migrations is not None else load_migrations(), log, dry_run=dry_run)
    finally:
        conn.close()


def test_package_migrations_are_found_in_order() -> None:
    migrations = load_migrations()
    assert [m.label for m in migrations][:1] == ["0001_pipeline_schema"]
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)


def test_apply_then_nothing_to_do(fresh_dsn: str, log: logging.Logger) -> None:
    first = run(fresh_dsn, log)
    second = run(fresh_dsn, log)
    assert first.applied == [m.label for m in load_migrations()]
    assert first.changed
    assert second.applied == []
    assert not second.changed
    conn = psycopg2.connect(fresh_dsn)
    assert scalar(conn, "SELECT count(*) FROM pipeline.schema_migration") == len(load_migrations())
    assert scalar(conn, "SELECT to_regclass('pipeline.field_report') IS NOT NULL") is True
    conn.close()


def test_dry_run_changes_nothing(fresh_dsn: str, log: logging.Logger) -> None:
    result = run(fresh_dsn, log, dry_run=True)
    assert result.pending == [m.label for m in load_migrations()]
    conn = psycopg2.connect(fresh_dsn)
    assert scalar(conn, "SELECT to_regclass('pipeline.schema_migration')") is None
    conn.close()


def test_concurrent_runners_apply_each_migration_once(fresh_dsn: str, log: logging.Logger) -> None:
    results: list[Result] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def runner() -> None:
        try:
            barrier.wait(5)
            results.append(run(fresh_dsn, log))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    applied = [r.applied for r in results]
    assert sorted(len(a) for a in applied) == [0, 0, len(load_migrations())]


def test_changed_applied_migration_is_an_error(fresh_dsn: str, log: logging.Logger) -> None:
    run(fresh_dsn, log)
    tampered = [Migration(m.version, m.name, m.sql + "\n-- edited") for m in load_migrations()]
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        run(fresh_dsn, log, tampered)


def test_failed_migration_rolls_back_and_stays_pending(fresh_dsn: str, log: logging.Logger, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE public.ok (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE public.half (id int); SELECT no_such_function();")
    (tmp_path / "README.txt").write_text("ignored")
    migrations = load_migrations(tmp_path)
    with pytest.raises(MigrationError, match="0002_broken") as caught:
        run(fresh_dsn, log, migrations)
    assert caught.value.result is not None
    assert caught.value.result.applied == ["0001_ok"]
    conn = psycopg2.connect(fresh_dsn)
    assert scalar(conn, "SELECT to_regclass('public.half')") is None  # rolled back as a whole
    conn.close()
    assert run(fresh_dsn, log, migrations, dry_run=True).pending == ["0002_broken"]


def test_cli_prints_json(fresh_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dsn", fresh_dsn, "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["changed"] is True
    assert dry["dry_run"] is True
    assert main(["--dsn", fresh_dsn]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["changed"] is True
    assert applied["pending"] == []
    assert main(["--dsn", fresh_dsn]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again == {
        "changed": False,
        "dry_run": False,
        "applied": [],
        "pending": [],
        "current_version": load_migrations()[-1].version,
        "unknown_versions": [],
    }
    logging.getLogger().handlers.clear()


def test_cli_reports_config_and_connection_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ISIKHNAS_DB_DSN", raising=False)
    assert main([]) == 78
    assert main(["--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=1"]) == 1
    assert json.loads(capsys.readouterr().out)["changed"] is False
    logging.getLogger().handlers.clear()
