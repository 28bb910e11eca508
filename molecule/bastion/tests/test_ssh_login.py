"""Who gets in, over real SSH from the test runner, through the bastion to the private host.

Only a certificate from the user CA whose principal is listed for the account logs in; plain keys, the wrong
principal, an expired certificate, passwords and root are refused. Hosts are verified by their host
certificates alone: the known_hosts file holds one @cert-authority line and nothing else.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import APP, BASTION, CA_DIR, CONTAINERS, SSH, Identity, docker_exec, new_identity, sign

REFUSED = "Permission denied (publickey)"


def test_known_hosts_holds_only_the_host_ca() -> None:
    lines = [line for line in (CA_DIR / "known_hosts").read_text().splitlines() if not line.startswith("#")]
    host_ca = (CA_DIR / "host_ca.pub").read_text().split()[:2]
    assert len(lines) == 1
    assert lines[0].split()[:4] == ["@cert-authority", "*", *host_ca]


@pytest.mark.parametrize(("address", "name"), [(BASTION, "bastion-nat1"), (APP, "bastion-app1")])
def test_valid_certificate_logs_in(ssh: SSH, admin: Identity, address: str, name: str) -> None:
    run = ssh.run(address, admin)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ayu", name]


def test_host_certificate_names_the_addresses_used() -> None:
    listing = docker_exec(CONTAINERS["app"], "ssh-keygen -L -f /etc/ssh/ssh_host_ed25519_key-cert.pub").stdout
    assert "host certificate" in listing
    for principal in ("bastion-app1", "bastion-app1.bastion.isikhnas.internal", APP):
        assert f"\n                {principal}\n" in listing, listing


def test_host_signed_by_another_ca_is_refused(ssh: SSH, admin: Identity, tmp_path: Path) -> None:
    impostor = new_identity(tmp_path, "impostor_ca")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"@cert-authority * {impostor.public.read_text()}")
    run = ssh.run(BASTION, admin, known_hosts=known_hosts)
    assert run.returncode == 255
    assert "Host key verification failed" in run.stderr


@pytest.fixture(scope="module")
def plain_key(keys: Path) -> Iterator[Identity]:
    """A key without certificate, put in ayu's authorized_keys on both hosts (and removed afterwards)."""
    identity = new_identity(keys, "plain")
    public = identity.public.read_text().strip()
    for container in (CONTAINERS["bastion"], CONTAINERS["app"]):
        docker_exec(
            container,
            f"install -d -o ayu -g ayu -m 0700 ~ayu/.ssh && echo '{public}' > ~ayu/.ssh/authorized_keys"
            " && chown ayu:ayu ~ayu/.ssh/authorized_keys && chmod 0600 ~ayu/.ssh/authorized_keys",
        )
    yield identity
    for container in (CONTAINERS["bastion"], CONTAINERS["app"]):
        docker_exec(container, "rm -rf ~ayu/.ssh")


@pytest.mark.parametrize("address", [BASTION, APP])
def test_plain_key_is_refused_even_when_authorized(ssh: SSH, plain_key: Identity, address: str) -> None:
    assert not plain_key.certificate.exists()
    run = ssh.run(address, plain_key)
    assert run.returncode == 255
    assert REFUSED in run.stderr


@pytest.fixture(scope="module")
def wrong_principal(keys: Path) -> Identity:
    identity = new_identity(keys, "budi")
    sign(identity, ["budi", "root"])
    return identity


@pytest.mark.parametrize("address", [BASTION, APP])
def test_certificate_with_another_principal_is_refused(ssh: SSH, wrong_principal: Identity, address: str) -> None:
    run = ssh.run(address, wrong_principal)
    assert run.returncode == 255
    assert REFUSED in run.stderr


@pytest.mark.parametrize("address", [BASTION, APP])
def test_root_is_refused_even_with_a_root_principal(ssh: SSH, wrong_principal: Identity, address: str) -> None:
    run = ssh.run(address, wrong_principal, user="root")
    assert run.returncode == 255
    assert REFUSED in run.stderr


@pytest.fixture(scope="module")
def expired(keys: Path) -> Identity:
    identity = new_identity(keys, "expired")
    sign(identity, ["ayu"], valid_from="-2d", valid_to="-1d")
    return identity


@pytest.mark.parametrize("address", [BASTION, APP])
def test_expired_certificate_is_refused(ssh: SSH, expired: Identity, address: str) -> None:
    listing = subprocess.run(["ssh-keygen", "-L", "-f", str(expired.certificate)], capture_output=True, text=True)
    assert "Principals: \n                ayu" in listing.stdout
    run = ssh.run(address, expired)
    assert run.returncode == 255
    assert REFUSED in run.stderr


@pytest.mark.parametrize("address", [BASTION, APP])
def test_password_is_refused_and_not_even_offered(
    ssh: SSH, scratch_user: tuple[str, str], address: str, tmp_path: Path
) -> None:
    """The account exists with this very password; ssh is made to type it (SSH_ASKPASS)."""
    user, password = scratch_user
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
    askpass.chmod(0o700)
    run = ssh.run(
        address,
        None,
        user=user,
        target_options={
            "BatchMode": "no",
            "PubkeyAuthentication": "no",
            "PasswordAuthentication": "yes",
            "KbdInteractiveAuthentication": "yes",
            "PreferredAuthentications": "keyboard-interactive,password",
            "NumberOfPasswordPrompts": "1",
        },
        env={"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": os.environ.get("DISPLAY", ":0")},
        verbose=True,
    )
    assert run.returncode == 255
    assert REFUSED in run.stderr
    offered = [line for line in run.stderr.splitlines() if "Authentications that can continue" in line]
    assert offered, run.stderr
    assert all(line.rstrip().endswith("continue: publickey") for line in offered), offered


@pytest.mark.parametrize("container", [CONTAINERS["bastion"], CONTAINERS["app"]])
def test_effective_sshd_policy(container: str) -> None:
    effective = docker_exec(container, "sshd -T").stdout.lower().splitlines()
    for setting in (
        "permitrootlogin no",
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "authenticationmethods publickey",
        "authorizedkeysfile none",
        "trustedusercakeys /etc/ssh/trusted_user_ca_keys",
        "authorizedprincipalsfile /etc/ssh/auth_principals/%u",
        "hostcertificate /etc/ssh/ssh_host_ed25519_key-cert.pub",
        "allowagentforwarding no",
        "x11forwarding no",
    ):
        assert setting in effective, setting
    forwarding = "allowtcpforwarding local" if container == CONTAINERS["bastion"] else "allowtcpforwarding no"
    assert forwarding in effective
