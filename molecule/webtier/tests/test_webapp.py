"""Role `webapp`: the status application over HTTPS, deployed v1 (git), v2 (tarball), rolled back to v1."""

from __future__ import annotations

import http.client
import io
import json
import os
import ssl
import subprocess
import tarfile
from pathlib import Path

import testinfra

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
WEB = "172.31.10.11"
DB = "172.31.10.21"
NAME = "app.webapp.isikhnas.internal"
ROOT = "/srv/isikhnas/app"
# The host fixture is the web server only (the database server is reached through the page).
testinfra_hosts = ["ansible://webtier-web1"]


def status() -> dict:
    conn = http.client.HTTPSConnection(WEB, 443, timeout=20, context=ssl._create_unverified_context())
    conn.request("GET", "/?format=json", headers={"Host": NAME})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200, body
    return json.loads(body)


def playbook(name: str, *extra: str) -> str:
    run = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(PROJECT / "playbooks" / name), *extra],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(PROJECT / "roles")},
    )
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 0, out[-4000:]
    return out


def release_tarball(tmp: Path, version: str) -> Path:
    """files/status_app as a release tarball with one top-level directory and VERSION set."""
    path = tmp / f"status_app-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(PROJECT / "files" / "status_app", arcname=f"status_app-{version}")
        data = f"{version}\n".encode()
        info = tarfile.TarInfo(f"status_app-{version}/VERSION")
        info.size = len(data)
        info.mtime = int((PROJECT / "files" / "status_app" / "VERSION").stat().st_mtime)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return path


def test_v1_from_git_queries_the_primary_over_https() -> None:
    page = status()
    assert page["release"] == "v1"
    for name in ("writer", "reader"):
        db = page[name]
        assert db["ok"] is True, db
        assert db["node"] == DB
        assert db["role"] == "primary"
        assert db["postgis"].startswith("3.")
    assert page["writer"]["standbys"] == []


def test_html_page_and_health() -> None:
    conn = http.client.HTTPSConnection(WEB, 443, timeout=20, context=ssl._create_unverified_context())
    conn.request("GET", "/", headers={"Host": NAME})
    body = conn.getresponse().read().decode()
    assert '<strong id="release">v1</strong>' in body
    assert f"<td>{DB}</td>" in body
    conn.request("GET", "/health", headers={"Host": NAME})
    health = conn.getresponse()
    assert health.status == 200
    assert json.loads(health.read())["database_role"] == "primary"


def test_layout_links_and_secrets(host: testinfra.host.Host) -> None:
    assert host.file(f"{ROOT}/current").linked_to == f"{ROOT}/releases/v1"
    for shared in ("runtime", "uploads", "config/db.php"):
        assert host.file(f"{ROOT}/releases/v1/{shared}").linked_to == f"{ROOT}/shared/{shared}"
    config = host.file(f"{ROOT}/shared/config/db.php")
    assert (config.user, config.group, config.mode) == ("root", "www-data", 0o640)
    assert "target_session_attrs=read-write" in config.content_string
    assert "target_session_attrs=prefer-standby" in config.content_string
    assert host.file(f"{ROOT}/shared/uploads").user == "www-data"
    # composer.json in the release: composer install ran (offline: no requirements, only the autoloader).
    assert host.file(f"{ROOT}/releases/v1/vendor/autoload.php").exists
    assert not host.file(f"{ROOT}/releases/v1/.git").exists


def test_zz_deploy_v2_from_tarball_then_roll_back(host: testinfra.host.Host, tmp_path: Path) -> None:
    tarball = release_tarball(tmp_path, "v2")
    out = playbook(
        "web_deploy.yml",
        "-e",
        json.dumps({"webapp_version": "v2", "webapp_source": "archive", "webapp_archive": str(tarball)}),
    )
    assert "current -> releases/v2" in out
    assert status()["release"] == "v2"
    assert status()["writer"]["role"] == "primary"
    assert host.file(f"{ROOT}/releases/v2/uploads").linked_to == f"{ROOT}/shared/uploads"

    out = playbook("web_rollback.yml")
    assert "current -> releases/v1" in out
    assert status()["release"] == "v1"
    assert host.file(f"{ROOT}/current").linked_to == f"{ROOT}/releases/v1"
    assert host.file(f"{ROOT}/history").content_string.split() == ["v1", "v2", "v1"]
    # Both releases are kept (keep_releases 5) and the shared upload survives every switch.
    assert host.file(f"{ROOT}/releases/v2/.isikhnas-release").exists
