"""The bastion itself: only SSH is open, only to the admin network and at a limited rate; sshd passes
ssh-audit without a warning; every login and every jump is in the persistent journal."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import APP, BASTION, CONTAINERS, SSH, Identity, docker_exec

# Ports from the runner's side: everything below 1025 and the usual service ports above it.
PORTS = [*range(1, 1025), 2222, 3306, 5000, 5432, 6379, 8000, 8080, 8443, 9000, 9090, 11211]


def knock(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_only_sshd_listens() -> None:
    """Every listening socket is sshd's on port 22 (127.0.0.11 is the container engine's DNS, not on EC2)."""
    listeners = docker_exec(CONTAINERS["bastion"], "ss -Hltunp").stdout.splitlines()
    assert listeners
    for line in listeners:
        local = line.split()[4]
        if local.startswith("127.0.0.11:"):
            continue
        assert local.rsplit(":", 1)[1] == "22", line
        assert '"sshd"' in line, line


def test_no_port_but_ssh_answers_from_outside() -> None:
    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(lambda port: knock(BASTION, port, 0.5), PORTS))
    open_ports = [port for port, up in zip(PORTS, answers, strict=True) if up]
    assert open_ports == [22]


def test_ssh_only_from_admin_networks() -> None:
    """The runner (172.31.3.1) is the admin network; another host on the same network is dropped."""
    assert knock(BASTION, 22)
    assert docker_exec(CONTAINERS["outside"], f"nc -z -w 3 {BASTION} 22", check=False).returncode != 0
    # The private host takes SSH from the bastion only: the runner sits on its network too, and is dropped.
    assert not knock(APP, 22, 3)
    assert docker_exec(CONTAINERS["bastion"], f"nc -z -w 3 {APP} 22", check=False).returncode == 0


def test_ssh_audit_reports_no_failure_and_no_warning() -> None:
    tool = shutil.which("ssh-audit") or str(Path(sys.executable).with_name("ssh-audit"))
    run = subprocess.run([tool, "--level=warn", BASTION], capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "(fail)" not in run.stdout, run.stdout
    assert "(warn)" not in run.stdout, run.stdout


def test_forwarding_is_filtered_and_ssh_rate_limited() -> None:
    ruleset = docker_exec(CONTAINERS["bastion"], "nft list table inet isikhnas_nat").stdout
    assert "hook forward priority filter - 5; policy drop;" in ruleset
    assert "limit rate over 30/minute burst 20 packets" in ruleset
    nat = docker_exec(CONTAINERS["bastion"], "nft list table ip isikhnas_nat").stdout
    assert "ip saddr 172.31.4.0/24 ip daddr != 172.31.4.0/24" in nat
    assert "masquerade" in nat


def test_new_ssh_connections_over_the_rate_are_dropped() -> None:
    flush = "nft flush set inet isikhnas_nat ssh_rate_v4"
    docker_exec(CONTAINERS["bastion"], flush)
    try:
        results = []
        for _ in range(60):
            results.append(knock(BASTION, 22, 1.0))
            if results.count(False) >= 3:
                break
        assert all(results[:20]), f"the burst of 20 is allowed: {results}"
        assert results.count(False) >= 3, f"then new connections are dropped: {results}"
        rule = next(
            line
            for line in docker_exec(CONTAINERS["bastion"], "nft list chain inet isikhnas_nat input").stdout.splitlines()
            if "@ssh_rate_v4" in line
        )
        assert int(rule.split("counter packets ")[1].split()[0]) > 0, rule
    finally:
        docker_exec(CONTAINERS["bastion"], flush)
    time.sleep(1)
    assert knock(BASTION, 22), "the limit is per source and lifted once the set is flushed"


def test_logins_and_jumps_are_in_the_journal(ssh: SSH, admin: Identity) -> None:
    run = ssh.run(APP, admin, command="true")
    assert run.returncode == 0, run.stderr
    serial = (
        subprocess.run(["ssh-keygen", "-L", "-f", str(admin.certificate)], capture_output=True, text=True, check=True)
        .stdout.split("Serial: ")[1]
        .split()[0]
    )
    journal = ""
    for _ in range(10):
        journal = docker_exec(CONTAINERS["bastion"], "journalctl --no-pager -o cat --since '-10min'").stdout
        if f"target {APP} port 22" in journal:
            break
        time.sleep(1)
    accepted = [line for line in journal.splitlines() if line.startswith("Accepted publickey for ayu from 172.31.3.1")]
    assert any("ID ayu@" in line and f"(serial {serial}) CA ED25519" in line for line in accepted), accepted
    assert f"target {APP} port 22" in journal
    assert docker_exec(CONTAINERS["bastion"], "test -d /var/log/journal").returncode == 0
