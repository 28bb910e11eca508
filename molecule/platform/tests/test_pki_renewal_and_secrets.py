"""Renewal, secrecy and validation of role `pki`, driven from the test runner (runs once for all hosts).

A converge whose renewal window covers a certificate's remaining life re-issues it (same key, later expiry)
without the CA key or any host key in its very verbose log. Bad values stop the role before any change.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret
from cryptography.hazmat.primitives import serialization
from refusal import RECAP, assert_refused_before_any_change, inventory_hosts, refuse_all

CONVERGE = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
CA_DIR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki"
VAULT_PASSWORD = "molecule-platform-throwaway"


def hosts() -> list[str]:
    return inventory_hosts(str(INVENTORY), "fleet")


def on(host: str, command: str) -> str:
    return subprocess.run(
        ["docker", "exec", host, "sh", "-c", command], capture_output=True, text=True, check=True
    ).stdout


def converge(extra: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    """The scenario's converge, role pki only (its tag), with extra variables."""
    return subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(CONVERGE), "--tags", "pki", "-e", json.dumps(extra), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def ca_public() -> str:
    return (
        serialization.load_pem_private_key(ca_key().encode(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def ca_key() -> str:
    vault = VaultLib([("pki_ca", VaultSecret(VAULT_PASSWORD.encode()))])
    return vault.decrypt((CA_DIR / "ca.key").read_bytes()).decode()


def key_lines(private_pem: str, public_pem: str) -> list[str]:
    """The private key's base64 lines, less those that only carry public data (an EC key's last line holds its
    public point, which the log may show as the public key)."""
    public = "".join(public_pem.split())
    return [line for line in private_pem.splitlines() if line and not line.startswith("-----") and line not in public]


def test_ca_key_is_vault_encrypted_on_the_controller() -> None:
    path = CA_DIR / "ca.key"
    assert path.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;pki_ca\n")
    assert path.stat().st_mode & 0o777 == 0o600
    assert "BEGIN PRIVATE KEY" in ca_key() or "BEGIN EC PRIVATE KEY" in ca_key()


def test_certificate_in_the_renewal_window_is_renewed_without_logging_keys() -> None:
    names = hosts()
    expiry = "openssl x509 -noout -enddate -in /etc/isikhnas/pki/web.crt | cut -d= -f2"
    pubkey = "openssl x509 -noout -pubkey -in /etc/isikhnas/pki/web.crt"
    before = {h: (on(h, expiry), on(h, pubkey)) for h in names}
    secrets = key_lines(ca_key(), ca_public())
    for h in names:
        for name in ("web", "postgresql", "replication", "app", "apache"):
            key = f"/etc/isikhnas/pki/{name}.key"
            secrets += key_lines(on(h, f"cat {key}"), on(h, f"openssl pkey -pubout -in {key}"))
    assert len(secrets) > 10

    # A renewal window one day longer than what is left of the longest-lived certificate covers them all: each
    # is re-issued, with a validity one day longer still.
    left = max(
        datetime.strptime(before[h][0].strip(), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC) - datetime.now(UTC)
        for h in names
    )
    window = left.days + 2
    run = converge({"pki_certificate_validity_days": window + 1, "pki_renew_days_before_expiry": window}, "-vvv")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    for h, changed, _failed in RECAP.findall(output):
        assert int(changed) >= 5, f"{h}: five certificates to renew"

    for h in names:
        end, key = on(h, expiry), on(h, pubkey)
        assert key == before[h][1], "renewal keeps the key"
        assert end != before[h][0]
        new_end = datetime.strptime(end.strip(), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
        assert abs(new_end - (datetime.now(UTC) + timedelta(days=window + 1))) < timedelta(hours=1)
        assert on(h, "openssl verify -CAfile /etc/isikhnas/pki/ca.crt /etc/isikhnas/pki/web.crt").strip().endswith("OK")
    assert not [line for line in secrets if line in output], "private key material in the log"
    assert "PRIVATE KEY-----" not in output


CASES = {
    "renewal window not shorter than validity": (
        {"pki_certificate_validity_days": 30, "pki_renew_days_before_expiry": 30},
        "pki_renew_days_before_expiry",
    ),
    "key owner does not exist": ({"pki_certificates": [{"name": "x", "owner": "nobody-here"}]}, "pki_certificates"),
    "client without common name": (
        {"pki_certificates_test": [{"name": "c", "type": "client"}]},
        "pki_certificates_test",
    ),
    "bad subject alternative name": (
        {"pki_certificates": [{"name": "x", "subject_alt_names": ["db.example"]}]},
        "pki_certificates",
    ),
    "duplicate name": ({"pki_certificates": [{"name": "postgresql"}]}, "pki_certificates"),
}


@pytest.fixture(scope="module")
def problems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """All cases in one run (refusal.refuse_all): each must fail on every host in the role's validation."""
    cases = {name: (hosts(), extra, variable) for name, (extra, variable) in CASES.items()}
    return refuse_all(str(INVENTORY), "pki", cases, tmp_path_factory.mktemp("pki-cases"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_fails_before_any_change(case: str, problems: dict[str, str]) -> None:
    assert problems[case] == ""


def test_bad_value_fails_the_converge_with_no_change() -> None:
    """One case as an operator would run it: the scenario's converge (tag pki) with -e."""
    extra, variable = CASES["duplicate name"]
    assert_refused_before_any_change("duplicate name", variable, converge(extra))
