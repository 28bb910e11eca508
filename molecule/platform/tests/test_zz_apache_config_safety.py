"""A bad variable is refused before any change; a configuration failing configtest never reaches the server.
Driven from the test runner: each case converges every host once and checks them all."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
from pathlib import Path

from hosts import ADDRESSES

CONVERGE = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
NAME = "www.apache.isikhnas.internal"
RELOADS = "grep -c 'resuming normal operations' /var/log/apache2/error.log || true"
SITE_FILE = "/etc/apache2/sites-available/isikhnas-www.conf"
SITE = {"name": "www", "server_name": NAME, "server_aliases": ["{{ inventory_hostname }}"], "document_root": "/srv/www"}


def converge(extra: dict[str, object]) -> tuple[int, str]:
    """The scenario's converge, apache role only (tag), with extra variables: (rc, output on one line)."""
    run = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(CONVERGE), "--tags", "apache", "-e", json.dumps(extra)],
        capture_output=True,
        text=True,
        check=False,
    )
    return run.returncode, " ".join((run.stdout + run.stderr).split())


def https_get(address: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(address, 443, timeout=15, context=ssl._create_unverified_context())
    conn.request("GET", path, headers={"Host": NAME})
    response = conn.getresponse()
    status, body = response.status, response.read()
    conn.close()
    return status, body


def on(name: str, command: str) -> str:
    return subprocess.run(
        ["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True, check=True
    ).stdout.strip()


def state(name: str) -> str:
    return on(
        name,
        "sha256sum /etc/apache2/sites-available/*.conf /etc/apache2/conf-available/isikhnas.conf; "
        "ls -l /etc/apache2/sites-enabled /etc/apache2/conf-enabled | sed 1d",
    )


def states() -> dict[str, str]:
    return {name: state(name) for name in ADDRESSES}


def test_bad_vhost_variable_is_refused_before_any_change() -> None:
    before = states()
    bad = {**SITE, "server_name": "www apache;evil"}
    rc, out = converge({"apache_sites": [bad, {"name": "Bad Name", "server_name": "x", "document_root": "rel/path"}]})
    assert rc != 0
    assert "apache_sites[0] (www): name must be" in out, out[-3000:]
    assert "apache_sites[1] (Bad Name): name must be" in out
    assert out.count("changed=0") == len(ADDRESSES)
    assert states() == before


def test_config_failing_configtest_leaves_the_server_untouched() -> None:
    before = states()
    pids = {name: on(name, "cat /run/apache2/apache2.pid") for name in ADDRESSES}
    reloads = {name: on(name, RELOADS) for name in ADDRESSES}
    # A valid variable (a list of lines) whose content Apache refuses: only configtest can tell.
    broken = {
        **SITE,
        "extra_config": ["Header always set X-Canary broken-config", "ThisDirectiveDoesNotExist on"],
    }
    new_site = {"name": "other", "server_name": "other.apache.isikhnas.internal", "document_root": "/srv/www"}
    rc, out = converge({"apache_sites": [broken, new_site]})
    assert rc != 0
    assert "failed `apache2ctl configtest`, so it was not applied" in out, out[-3000:]
    assert "Invalid command 'ThisDirectiveDoesNotExist'" in out
    # The files are the previous ones (the new site's file and link are gone) and no backup is left behind.
    assert states() == before
    backups = "ls /etc/apache2/sites-available /etc/apache2/conf-available | grep -c '~$' || true"
    for name, address in ADDRESSES.items():
        assert on(name, "test -e /etc/apache2/sites-available/isikhnas-other.conf && echo yes || echo no") == "no"
        assert on(name, backups) == "0"
        # The server never reloaded: same master process, no graceful restart logged, old configuration served.
        assert on(name, "cat /run/apache2/apache2.pid") == pids[name]
        assert on(name, RELOADS) == reloads[name]
        status, body = https_get(address, "/")
        assert status == 200
        assert b"molecule apache site" in body
        on(name, "apache2ctl configtest")
    # And the next correct run changes nothing.
    rc, out = converge({})
    assert rc == 0, out[-3000:]
    assert out.count("changed=0") == len(ADDRESSES)
