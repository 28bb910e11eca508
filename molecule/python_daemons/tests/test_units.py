"""The units as the role writes them: the right daemons on the right hosts (from their inventory groups),
Type=notify with a watchdog and automatic restart, a tight sandbox, environment files readable by root only."""

from __future__ import annotations

import pytest
import testinfra
from helpers import DAEMONS

KNOWN = ("inbound-email", "im-gateway", "processor", "reporter", "email-sender")
CASES = [(name, daemon) for name, daemons in DAEMONS.items() for daemon in daemons]


@pytest.mark.parametrize(("name", "daemon"), CASES)
def test_daemon_runs_under_systemd(hosts: dict[str, testinfra.host.Host], name: str, daemon: str) -> None:
    host = hosts[name]
    service = host.service(f"isikhnas-{daemon}.service")
    assert service.is_running
    assert service.is_enabled
    show = host.check_output(
        f"systemctl show isikhnas-{daemon}.service -p Type -p Restart -p RestartUSec -p WatchdogUSec "
        "-p DynamicUser -p ProtectSystem -p PrivateTmp -p NoNewPrivileges -p CapabilityBoundingSet "
        "-p ProtectHome -p RestrictNamespaces -p MemoryDenyWriteExecute -p StatusText"
    )
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert props["Type"] == "notify"
    assert props["Restart"] == "always"
    assert props["RestartUSec"] == "2s"
    assert props["WatchdogUSec"] == "1min"
    assert props["DynamicUser"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == "yes"
    assert props["NoNewPrivileges"] == "yes"
    assert props["CapabilityBoundingSet"] == ""
    assert props["ProtectHome"] == "yes"
    assert props["MemoryDenyWriteExecute"] == "yes"
    assert props["StatusText"].startswith("polling "), "the daemon reported READY through sd_notify"
    # the process really is unprivileged
    pid = host.check_output(f"systemctl show -p MainPID --value isikhnas-{daemon}.service")
    status = host.file(f"/proc/{pid}/status").content_string
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid) >= 61184, "DynamicUser allocates from 61184-65519"
    cap_bnd = next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:"))
    assert int(cap_bnd, 16) == 0


@pytest.mark.parametrize(("name", "daemon"), CASES)
def test_environment_file_is_private(hosts: dict[str, testinfra.host.Host], name: str, daemon: str) -> None:
    env = hosts[name].file(f"/etc/isikhnas/{daemon}.env")
    assert env.user == "root"
    assert env.group == "root"
    assert env.mode == 0o600
    assert 'ISIKHNAS_AWS_ENDPOINT_URL="http://172.31.7.5:5000"' in env.content_string


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_only_the_hosts_daemons_are_installed(hosts: dict[str, testinfra.host.Host], name: str) -> None:
    host = hosts[name]
    for daemon in KNOWN:
        present = daemon in DAEMONS[name]
        assert host.file(f"/etc/systemd/system/isikhnas-{daemon}.service").exists == present, daemon
        assert host.file(f"/etc/isikhnas/{daemon}.env").exists == present, daemon


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_release_is_a_virtualenv_behind_the_current_link(hosts: dict[str, testinfra.host.Host], name: str) -> None:
    host = hosts[name]
    current = host.file("/opt/isikhnas/current")
    assert current.is_symlink
    release = current.linked_to
    assert release.startswith("/opt/isikhnas/releases/0.1.0-")
    assert host.file(f"{release}/.installed").exists
    version = host.check_output(
        f"{release}/venv/bin/python -c 'import isikhnas_daemons; print(isikhnas_daemons.__version__)'"
    )
    assert version == "0.1.0"
    # installed offline from the release's own wheels
    assert host.file(f"{release}/wheels").is_directory


def test_sandbox_exposure_is_low(worker: testinfra.host.Host) -> None:
    score = worker.check_output("systemd-analyze security isikhnas-processor.service | tail -n 1")
    level = float(score.split("level for isikhnas-processor.service:")[1].split()[0])
    assert level < 2.0, score


def test_schema_is_applied_and_a_second_run_changes_nothing(worker: testinfra.host.Host) -> None:
    """isikhnas-migrate as the role runs it: nothing pending, and --dry-run reports no change."""
    out = worker.check_output(
        "set -a; . /etc/isikhnas/processor.env; /opt/isikhnas/current/venv/bin/isikhnas-migrate --dry-run 2>/dev/null"
    )
    assert '"changed": false' in out
    assert '"pending": []' in out
    assert '"current_version": 1' in out
