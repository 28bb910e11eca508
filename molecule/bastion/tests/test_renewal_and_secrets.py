"""CA material stays secret, and host certificates are renewed when due.

The CA private keys are ansible-vault encrypted at rest. A converge with a renewal window wider than the
certificate's remaining life re-signs it, with the CA keys and host keys nowhere in its (very verbose) log.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta

from ansible.parsing.vault import VaultLib, VaultSecret
from conftest import APP, CA_DIR, CONTAINERS, PROJECT, SSH, VAULT_PASSWORD, Identity, ansible_playbook, docker_exec

CONVERGE = PROJECT / "molecule/bastion/converge.yml"
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", re.MULTILINE)
VALID_TO = re.compile(r"Valid: (?:from \S+ to|before) (\S+)")


def secret_lines(private_key: str) -> list[str]:
    """The base64 lines of an OpenSSH private key, less any that could be part of its public key."""
    public = subprocess.run(
        ["ssh-keygen", "-y", "-f", "/dev/stdin"], input=private_key, capture_output=True, text=True, check=True
    ).stdout.split()[1]
    return [line for line in private_key.splitlines() if line and not line.startswith("-----") and line not in public]


def host_certificate_expiry() -> datetime:
    listing = docker_exec(CONTAINERS["app"], "TZ=UTC ssh-keygen -L -f /etc/ssh/ssh_host_ed25519_key-cert.pub").stdout
    match = VALID_TO.search(listing)
    assert match, listing
    return datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)


def test_ca_private_keys_are_vault_encrypted_at_rest() -> None:
    vault = VaultLib([("sshd_ca", VaultSecret(VAULT_PASSWORD.encode()))])
    for name in ("user_ca", "host_ca"):
        path = CA_DIR / name
        assert path.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;sshd_ca\n")
        assert path.stat().st_mode & 0o777 == 0o600
        assert "BEGIN OPENSSH PRIVATE KEY" in vault.decrypt(path.read_bytes()).decode()


def test_host_key_is_private_to_root() -> None:
    assert docker_exec(CONTAINERS["app"], "stat -c '%a %U' /etc/ssh/ssh_host_ed25519_key").stdout.split() == [
        "600",
        "root",
    ]


def test_certificate_due_for_renewal_is_renewed_without_leaking_keys(ssh: SSH, admin: Identity) -> None:
    vault = VaultLib([("sshd_ca", VaultSecret(VAULT_PASSWORD.encode()))])
    secrets = [
        line
        for name in ("user_ca", "host_ca")
        for line in secret_lines(vault.decrypt((CA_DIR / name).read_bytes()).decode())
    ]
    secrets += secret_lines(docker_exec(CONTAINERS["app"], "cat /etc/ssh/ssh_host_ed25519_key").stdout)
    assert secrets
    before = host_certificate_expiry()

    # A 366-day renewal window covers the current certificate's remaining life: it is re-signed, for 400 days.
    renew = ansible_playbook(
        CONVERGE,
        {"sshd_host_certificate_validity_days": 400, "sshd_host_certificate_renew_days": 366},
        "--tags",
        "host_certificate",
        "--limit",
        "bastion-app1",
        "-vvv",
    )
    output = renew.stdout + renew.stderr
    assert renew.returncode == 0, output
    assert dict(RECAP.findall(output))["bastion-app1"] != "0", output
    after = host_certificate_expiry()
    assert after > before
    assert abs(after - (datetime.now(UTC) + timedelta(days=400))) < timedelta(hours=1)
    leaked = [line for line in secrets if line in output]
    assert not leaked, "private key material in the log"
    assert "PRIVATE KEY-----" not in output

    # The renewed certificate is accepted. (That the next ordinary run changes nothing is the scenario's final
    # check: converge --check on the converged hosts must report no change.)
    login = ssh.run(APP, admin, command="true")
    assert login.returncode == 0, login.stderr


def test_signing_an_admin_key_does_not_log_the_user_ca(admin_signing: tuple[Identity, str]) -> None:
    keys_log = admin_signing[1]
    vault = VaultLib([("sshd_ca", VaultSecret(VAULT_PASSWORD.encode()))])
    secrets = secret_lines(vault.decrypt((CA_DIR / "user_ca").read_bytes()).decode())
    assert not [line for line in secrets if line in keys_log]
    assert "PRIVATE KEY-----" not in keys_log


def test_admin_certificate_is_short_lived(admin: Identity) -> None:
    listing = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(admin.certificate)], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Valid: from (\S+) to (\S+)", listing)
    assert match, listing
    start, end = (datetime.fromisoformat(value) for value in match.groups())
    assert timedelta(hours=8) <= end - start <= timedelta(hours=8, minutes=6)
