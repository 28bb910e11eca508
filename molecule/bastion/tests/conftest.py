"""Helpers for the bastion scenario: the test runner is the Docker host and speaks real SSH to the hosts.

Keys are made here with ssh-keygen; certificates are signed with the project's own playbooks/ssh_ca.yml
against the scenario's throwaway CAs (created by the converge, vault-encrypted, in the ephemeral directory).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = EPHEMERAL / "inventory"
CA_DIR = EPHEMERAL / "ssh_ca"
VAULT_PASSWORD = "molecule-bastion-throwaway"

BASTION = "172.31.3.10"  # public leg, reached by the runner (172.31.3.1)
BASTION_PRIVATE = "172.31.4.10"
APP = "172.31.4.20"  # private host, only through the bastion
OUTSIDE = "172.31.3.30"  # beyond the bastion: answers with the peer address it sees
CONTAINERS = {"bastion": "bastion-nat1", "app": "bastion-app1", "outside": "bastion-outside"}


def docker_exec(container: str, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        ["docker", "exec", container, "sh", "-c", command], capture_output=True, text=True, check=False, timeout=120
    )
    if check:
        assert run.returncode == 0, f"{container}: {command}\n{run.stdout}{run.stderr}"
    return run


def ansible_playbook(playbook: Path, extra: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(playbook), "-e", json.dumps(extra), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT,
    )


@dataclass(frozen=True)
class Identity:
    """A key pair on the runner, with the certificate ssh picks up next to it (if signed)."""

    key: Path

    @property
    def public(self) -> Path:
        return self.key.with_name(self.key.name + ".pub")

    @property
    def certificate(self) -> Path:
        return self.key.with_name(self.key.name + "-cert.pub")


def new_identity(directory: Path, name: str) -> Identity:
    identity = Identity(directory / name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(identity.key)], check=True)
    return identity


def sign(
    identity: Identity, principals: list[str], valid_from: str = "-5m", valid_to: str = "+8h", *args: str
) -> subprocess.CompletedProcess[str]:
    """Sign with playbooks/ssh_ca.yml, as an operator would."""
    run = ansible_playbook(
        PROJECT / "playbooks/ssh_ca.yml",
        {
            "ssh_ca_public_key": str(identity.public),
            "ssh_ca_principals": principals,
            "ssh_ca_valid_from": valid_from,
            "ssh_ca_valid_to": valid_to,
            "ssh_ca_sign_hosts": False,
        },
        *args,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert identity.certificate.is_file()
    return run


@dataclass(frozen=True)
class SSH:
    """Writes an ssh_config for one attempt and runs ssh with it (ProxyJump gets the same file)."""

    directory: Path
    jump: Identity

    def run(
        self,
        address: str,
        identity: Identity | None,
        *,
        user: str = "ayu",
        known_hosts: Path = CA_DIR / "known_hosts",
        target_options: dict[str, str] | None = None,
        command: str = "id -un; hostname",
        env: dict[str, str] | None = None,
        verbose: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        lines = ["Host bastion", f"  HostName {BASTION}", "  User ayu", f"  IdentityFile {self.jump.key}"]
        lines += [f"  CertificateFile {self.jump.certificate}", "Host target", f"  HostName {address}"]
        lines.append(f"  User {user}")
        lines.append(f"  IdentityFile {identity.key if identity else 'none'}")
        if address.startswith("172.31.4."):
            lines.append("  ProxyJump bastion")
        lines += [f"  {key} {value}" for key, value in (target_options or {}).items()]
        lines += [
            "Host *",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  PasswordAuthentication no",
            "  KbdInteractiveAuthentication no",
            "  ConnectTimeout 15",
            "  ControlMaster no",
            "  ControlPath none",
        ]
        config = self.directory / "ssh_config"
        config.write_text("\n".join(lines) + "\n")
        argv = ["ssh", "-F", str(config), *(["-v"] if verbose else []), "target", command]
        return subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=60, env={**os.environ, **(env or {})}
        )


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def admin_signing(keys: Path) -> tuple[Identity, str]:
    """Ayu's key with a valid certificate for principal ayu, and the (very verbose) log of signing it."""
    identity = new_identity(keys, "ayu")
    run = sign(identity, ["ayu"], "-5m", "+8h", "-vvv")
    return identity, run.stdout + run.stderr


@pytest.fixture(scope="session")
def admin(admin_signing: tuple[Identity, str]) -> Identity:
    return admin_signing[0]


@pytest.fixture
def ssh(tmp_path: Path, admin: Identity) -> SSH:
    return SSH(tmp_path, admin)


@pytest.fixture
def scratch_user() -> Iterator[tuple[str, str]]:
    """An account with a known password on both hosts (removed afterwards)."""
    user, password = "pwtest", "Correct-Horse-Battery-9"
    for container in (CONTAINERS["bastion"], CONTAINERS["app"]):
        docker_exec(container, f"useradd -m {user} && echo '{user}:{password}' | chpasswd")
    yield user, password
    for container in (CONTAINERS["bastion"], CONTAINERS["app"]):
        docker_exec(container, f"userdel -r {user}", check=False)
