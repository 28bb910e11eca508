"""Role `mediawiki`: the wiki over HTTPS, an edit through the API stored in PostgreSQL and shown on the page."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import testinfra

ADDRESS = "172.31.10.12"
NAME = "wiki.mediawiki.isikhnas.internal"
DB_CONTAINER = "webtier-db1"
DB_NAME = "isikhnas_wiki"
SCHEMA = "mediawiki"
ADMIN = ("Admin", "molecule-only-admin-password")
# The scenario's throwaway CA (role pki made it in the ephemeral directory, next to the inventory).
CA = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki" / "ca.crt"
TITLE = "Molecule_API_edit"
# The host fixture is the wiki server only (the database is queried with docker exec).
testinfra_hosts = ["ansible://webtier-wiki1"]


class _VerifiedConnection(http.client.HTTPSConnection):
    """HTTPS to the wiki's address, with the certificate checked against the CA for the wiki's name."""

    def connect(self) -> None:
        sock = socket.create_connection((ADDRESS, 443), self.timeout)
        self.sock = ssl.create_default_context(cafile=str(CA)).wrap_socket(sock, server_hostname=NAME)


class Wiki:
    """A minimal MediaWiki client: one session (cookies kept across requests), everything over verified HTTPS."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        conn = _VerifiedConnection(NAME, 443, timeout=60)
        headers = {"Host": NAME, "User-Agent": "molecule-mediawiki-test"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        for raw in response.headers.get_all("Set-Cookie") or []:
            for key, morsel in SimpleCookie(raw).items():
                self.cookies[key] = morsel.value
        result = response.status, {k.lower(): v for k, v in response.getheaders()}, data
        conn.close()
        return result

    def api(self, params: dict[str, str], *, post: bool = False) -> dict:
        params = {**params, "format": "json", "formatversion": "2"}
        if post:
            status, _, body = self.request("POST", "/api.php", params)
        else:
            status, _, body = self.request("GET", "/api.php?" + urllib.parse.urlencode(params))
        assert status == 200, body[:2000]
        answer = json.loads(body)
        assert "error" not in answer, answer
        return answer

    def token(self, kind: str) -> str:
        return self.api({"action": "query", "meta": "tokens", "type": kind})["query"]["tokens"][f"{kind}token"]


def psql(query: str) -> str:
    run = subprocess.run(
        ["docker", "exec", "-u", "postgres", DB_CONTAINER, "psql", "-X", "-A", "-t", "-d", DB_NAME, "-c", query],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


@pytest.fixture(scope="module")
def edit() -> str:
    """Log in as the administrator install.php created, take a CSRF token and edit a page through the API."""
    marker = f"Molecule edit {time.time_ns()} through the MediaWiki API"
    wiki = Wiki()
    login = wiki.api(
        {
            "action": "clientlogin",
            "username": ADMIN[0],
            "password": ADMIN[1],
            "loginreturnurl": f"https://{NAME}/",
            "logintoken": wiki.token("login"),
        },
        post=True,
    )
    assert login["clientlogin"]["status"] == "PASS", login
    result = wiki.api(
        {
            "action": "edit",
            "title": TITLE,
            "text": f"'''{marker}'''\n\n[[Main Page]]",
            "summary": "molecule verify",
            "assert": "user",
            "token": wiki.token("csrf"),
        },
        post=True,
    )
    assert result["edit"]["result"] == "Success", result
    return marker


def test_main_page_over_https_verified_against_the_scenario_ca() -> None:
    status, headers, body = Wiki().request("GET", "/wiki/Main_Page")
    assert status == 200, body[:2000]
    page = body.decode()
    # The main page's <title> is the site name alone (message pagetitle-view-mainpage); the installer wrote it.
    assert "<title>Molecule Wiki</title>" in page
    assert "MediaWiki has been installed" in page
    # Short URLs: links go to /wiki/<Page>, scripts are at the root.
    assert 'href="/wiki/' in page
    assert "/load.php?" in page
    assert headers["strict-transport-security"].startswith("max-age=")


def test_http_redirects_to_https() -> None:
    conn = http.client.HTTPConnection(ADDRESS, 80, timeout=20)
    conn.request("GET", "/wiki/Main_Page", headers={"Host": NAME})
    response = conn.getresponse()
    conn.close()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{NAME}/wiki/Main_Page"


def test_health_reports_the_wiki_database() -> None:
    status, _, body = Wiki().request("GET", "/health")
    assert status == 200, body
    assert json.loads(body)["database_role"] == "primary"


def test_api_edit_is_stored_in_postgresql(edit: str) -> None:
    stored = psql(
        f"SELECT t.old_text FROM {SCHEMA}.page p"
        f" JOIN {SCHEMA}.slots s ON s.slot_revision_id = p.page_latest"
        f" JOIN {SCHEMA}.content c ON c.content_id = s.slot_content_id"
        f" JOIN {SCHEMA}.text t ON c.content_address = 'tt:' || t.old_id"
        f" WHERE p.page_namespace = 0 AND p.page_title = '{TITLE}'"
    )
    assert edit in stored
    assert (
        psql(
            f"SELECT count(*) FROM {SCHEMA}.revision r JOIN {SCHEMA}.page p ON r.rev_page = p.page_id"
            f" WHERE p.page_title = '{TITLE}'"
        )
        != "0"
    )


def test_api_edit_is_shown_on_the_page(edit: str) -> None:
    status, _, body = Wiki().request("GET", f"/wiki/{TITLE}")
    assert status == 200, body[:2000]
    assert f"<b>{edit}</b>" in body.decode()


def test_installer_code_and_upload_scripts_are_refused(host: testinfra.host.Host) -> None:
    wiki = Wiki()
    for path in ("/mw-config/", "/maintenance/update.php", "/includes/Setup.php", "/images/deleted/"):
        assert wiki.request("GET", path)[0] == 403, path
    host.run("install -o www-data -g www-data -m 0644 /dev/null /var/lib/mediawiki/images/molecule.php")
    try:
        assert wiki.request("GET", "/images/molecule.php")[0] == 403
    finally:
        host.run("rm -f /var/lib/mediawiki/images/molecule.php")


def test_files_modes_and_schema_state(host: testinfra.host.Host) -> None:
    settings = host.file("/etc/mediawiki/LocalSettings.php")
    assert (settings.user, settings.group, settings.mode) == ("root", "www-data", 0o640)
    assert "$wgArticlePath = '/wiki/$1';" in settings.content_string
    assert host.file("/var/lib/mediawiki/LocalSettings.php").linked_to == "/etc/mediawiki/LocalSettings.php"
    pgpass = host.file("/etc/mediawiki/isikhnas.pgpass")
    assert (pgpass.user, pgpass.mode) == ("root", 0o600)
    uploads = host.file("/var/lib/mediawiki/images")
    assert (uploads.user, uploads.mode) == ("www-data", 0o700)
    # The package's /mediawiki alias is off; the wiki is the virtual host's root.
    assert not host.file("/etc/apache2/conf-enabled/mediawiki.conf").exists
    version = host.check_output("dpkg-query --show --showformat='${Version}' mediawiki")
    state = host.file("/var/lib/isikhnas/mediawiki/schema-state").content_string
    assert state.strip() == f"{version} extensions=Cite,ParserFunctions"
    # No installer leftovers (its LocalSettings.php and password files live in a temporary directory).
    assert host.run("ls -d /tmp/*.mediawiki-install 2>/dev/null").stdout == ""
