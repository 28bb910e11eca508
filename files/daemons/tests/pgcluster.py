"""A throwaway PostgreSQL + PostGIS cluster for the tests (initdb in a temp dir, free port, no fsync)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "install them with: apt-get install -y postgresql postgis (Debian 12: postgresql-15-postgis-3)"


class PgUnavailable(RuntimeError):
    """PostgreSQL or PostGIS is not installed: the message says what to install."""


def find_bindir() -> Path:
    override = os.environ.get("ISIKHNAS_PG_BINDIR")
    candidates = [Path(override)] if override else sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    where = override or "/usr/lib/postgresql/*/bin"
    raise PgUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found in {where}; {INSTALL_HINT}")


def check_postgis(bindir: Path) -> None:
    sharedir = subprocess.run(
        [str(bindir / "pg_config"), "--sharedir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    if not (Path(sharedir) / "extension" / "postgis.control").exists():
        raise PgUnavailable(f"PostGIS is not installed for {bindir.parent.name} ({sharedir}); {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    bindir: Path
    base: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    @property
    def _as_owner(self) -> list[str]:
        # initdb refuses to run as root: run the server as the "postgres" system user then.
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_owner, *args], check=True, capture_output=True, text=True, cwd=self.base)

    @classmethod
    def start(cls) -> PgCluster:
        bindir = find_bindir()
        check_postgis(bindir)
        base = Path(tempfile.mkdtemp(prefix="isikhnas-pg-"))
        cluster = cls(bindir=bindir, base=base, port=free_port())
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(base, ignore_errors=True)
                raise PgUnavailable(f"running as root needs a 'postgres' system user; {INSTALL_HINT}") from None
            os.chown(base, owner.pw_uid, owner.pw_gid)
        options = (
            f"-p {cluster.port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        try:
            cluster._run(str(bindir / "initdb"), "-D", str(base / "data"), "-U", "postgres", "-A", "trust",
                         "-E", "UTF8", "--no-sync", "--no-instructions")  # fmt: skip
            cluster._run(str(bindir / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "server.log"),
                         "-o", options, "-w", "-t", "60", "start")  # fmt: skip
        except subprocess.CalledProcessError as exc:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"could not start PostgreSQL: {exc.stderr}\n{log}") from exc
        return cluster

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
