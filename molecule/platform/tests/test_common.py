"""Behaviour of role `common` on a converged host (run by molecule's testinfra verifier)."""

from __future__ import annotations

import socket

import pytest
import testinfra
from hosts import ADDRESSES


@pytest.fixture
def name(host: testinfra.host.Host) -> str:
    return host.backend.get_hostname()


def _knock(address: str, port: int) -> bool:
    """TCP connect from the test runner, which sits on the Docker network's gateway (inside 172.16.0.0/12)."""
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def test_time_zone_is_jakarta(host: testinfra.host.Host) -> None:
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Asia/Jakarta"
    assert host.check_output("date +%Z") == "WIB"
    assert host.file("/etc/timezone").content_string == "Asia/Jakarta\n"


def test_time_sync_configured_and_enabled(host: testinfra.host.Host) -> None:
    conf = host.file("/etc/systemd/timesyncd.conf.d/isikhnas.conf")
    assert "NTP=169.254.169.123" in conf.content_string
    assert host.service("systemd-timesyncd").is_enabled


def test_locale_generated_and_default(host: testinfra.host.Host) -> None:
    assert "en_US.utf8" in host.check_output("locale -a").split()
    assert "LANG=en_US.UTF-8" in host.file("/etc/default/locale").content_string


def test_unattended_upgrades_take_security_updates_only(
    host: testinfra.host.Host,
) -> None:
    dump = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    origins = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    assert "Debian-Security" in origins
    assert "codename=${distro_codename}-updates" not in origins
    assert host.service("apt-daily-upgrade.timer").is_enabled


def test_journal_is_persistent(host: testinfra.host.Host) -> None:
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert host.file(f"/var/log/journal/{machine_id}/system.journal").exists
    assert "SystemMaxUse=1G" in host.file("/etc/systemd/journald.conf.d/50-isikhnas.conf").content_string


def test_admin_account_has_sudo_and_no_password(host: testinfra.host.Host) -> None:
    user = host.user("ayu")
    assert "isikhnas-admin" in user.groups
    assert host.check_output("getent shadow ayu").split(":")[1].startswith("!")
    rights = host.check_output("sudo -l -U ayu")
    assert "(ALL : ALL) NOPASSWD: ALL" in rights


def test_sysctl_baseline_written(host: testinfra.host.Host) -> None:
    conf = host.file("/etc/sysctl.d/60-isikhnas.conf").content_string
    assert "net.ipv4.tcp_syncookies = 1" in conf
    assert "kernel.kptr_restrict = 2" in conf


def test_fleet_listed_in_hosts(host: testinfra.host.Host) -> None:
    fleet = host.ansible.get_variables()["groups"]["fleet"]
    assert fleet
    for peer in fleet:
        address = ADDRESSES[peer]
        resolved = host.check_output(f"getent hosts {peer}.lab.isikhnas.internal").split()
        assert resolved[0] == address


def test_firewall_ruleset_loaded_and_enabled(host: testinfra.host.Host) -> None:
    ruleset = host.check_output("nft list table inet isikhnas_filter")
    assert "policy drop" in ruleset
    assert "common_firewall_rules_probe: only from TEST-NET-1" in ruleset
    assert host.service("nftables").is_enabled


def test_firewall_drops_what_is_not_allowed(host: testinfra.host.Host, name: str) -> None:
    """Listen on three ports, then knock from outside: SSH and 8081 open, 8082 and 8083 (wrong source) dropped."""
    ports = (8081, 8082, 8083)
    for port in ports:
        host.run(f"systemd-run --unit=probe-{port} --collect python3 -m http.server {port} --bind 0.0.0.0")
    try:
        for port in ports:
            host.run(f"timeout 10 sh -c 'until nc -z 127.0.0.1 {port}; do sleep 0.2; done'")
        address = ADDRESSES[name]
        assert _knock(address, 22), "SSH must be open to the admin networks"
        assert _knock(address, 8081), "common_firewall_rules opens 8081"
        assert not _knock(address, 8082), "8082 is in no rule: dropped"
        assert not _knock(address, 8083), "8083 is open only to 192.0.2.0/24"
        # The listeners were up: inside the host, every port answers.
        for port in ports:
            assert host.run(f"nc -z -w 2 127.0.0.1 {port}").rc == 0
    finally:
        for port in ports:
            host.run(f"systemctl stop probe-{port}")
