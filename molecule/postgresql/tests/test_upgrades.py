"""Unattended upgrades hold PostgreSQL, PostGIS, libpq and repmgr back on a database host (role `postgresql`)."""

from __future__ import annotations

import testinfra

HELD = ["^postgresql", "^postgis", "^libpq", "^repmgr"]
KEY = "Unattended-Upgrade::Package-Blacklist::"


def test_apt_configuration_blacklists_the_database_packages(host: testinfra.host.Host) -> None:
    dump = host.check_output("apt-config dump")
    listed = [
        line.split(" ", 1)[1].strip().rstrip(";").strip('"') for line in dump.splitlines() if line.startswith(f"{KEY} ")
    ]
    for pattern in HELD:
        assert pattern in listed, f"{pattern} not under Unattended-Upgrade::Package-Blacklist: {listed}"


def test_unattended_upgrade_dry_run_holds_them_back(host: testinfra.host.Host) -> None:
    """unattended-upgrade itself (installed in converge.yml, as role common does in production) reads the list."""
    run = host.run("unattended-upgrade --dry-run --debug")
    assert run.rc == 0, run.stderr
    log = run.stdout + run.stderr
    blacklist = next((line for line in log.splitlines() if "Initial blacklist" in line), "")
    for pattern in HELD:
        assert pattern in blacklist.split(), f"{pattern} not in unattended-upgrade's blacklist: {blacklist!r}"
