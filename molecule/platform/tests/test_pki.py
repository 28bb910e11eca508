"""Role `pki` on a converged host: CA trusted, certificates verify, keys private to their service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import testinfra
from hosts import ADDRESSES

PKI = "/etc/isikhnas/pki"
DOMAIN = "pki.isikhnas.internal"


@pytest.fixture
def name(host: testinfra.host.Host) -> str:
    return host.backend.get_hostname()


def text(host: testinfra.host.Host, certificate: str) -> str:
    return host.check_output(f"openssl x509 -noout -text -in {PKI}/{certificate}.crt")


def subject(host: testinfra.host.Host, certificate: str) -> str:
    """The subject in RFC 2253 form (OpenSSL 3.0 and 3.5 print -text subjects differently)."""
    return host.check_output(f"openssl x509 -noout -subject -nameopt RFC2253 -in {PKI}/{certificate}.crt")


def test_ca_installed_and_trusted(host: testinfra.host.Host) -> None:
    ca = host.file(f"{PKI}/ca.crt")
    assert ca.mode == 0o644
    assert "CA:TRUE" in host.check_output(f"openssl x509 -noout -text -in {PKI}/ca.crt")
    # In the system trust store: verifies with the default bundle, no CA file named.
    bundle = host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    assert ca.content_string.strip().splitlines()[1] in bundle
    assert host.run(f"openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt {PKI}/web.crt").rc == 0


@pytest.mark.parametrize("certificate", ["web", "postgresql", "replication", "app"])
def test_openssl_verify_accepts_each_certificate(host: testinfra.host.Host, certificate: str) -> None:
    out = host.check_output(f"openssl verify -CAfile {PKI}/ca.crt {PKI}/{certificate}.crt")
    assert out.endswith(": OK")


def test_server_certificate_names_the_host(host: testinfra.host.Host, name: str) -> None:
    assert f"CN={name}.{DOMAIN}," in subject(host, "web")
    details = text(host, "web")
    for san in (f"DNS:{name}", f"DNS:{name}.{DOMAIN}", f"IP Address:{ADDRESSES[name]}"):
        assert san in details, san
    assert "TLS Web Server Authentication" in details
    assert "CA:FALSE" in details


def test_extra_names_are_added(host: testinfra.host.Host) -> None:
    assert f"DNS:db-primary.{DOMAIN}" in text(host, "postgresql")


def test_client_certificate_for_mutual_tls(host: testinfra.host.Host) -> None:
    assert "CN=replicator," in subject(host, "replication")
    details = text(host, "replication")
    assert "TLS Web Client Authentication" in details
    assert "TLS Web Server Authentication" not in details
    assert "Subject Alternative Name" not in details
    verify = f"openssl verify -purpose sslclient -CAfile {PKI}/ca.crt {PKI}/replication.crt"
    assert host.run(verify).rc == 0


@pytest.mark.parametrize(
    ("certificate", "owner"), [("web", "root"), ("postgresql", "svcdb"), ("replication", "svcdb"), ("app", "svcapp")]
)
def test_private_keys_are_0600_and_owned_by_the_service(
    host: testinfra.host.Host, certificate: str, owner: str
) -> None:
    key = host.file(f"{PKI}/{certificate}.key")
    assert key.mode == 0o600
    assert key.user == owner
    assert key.group == owner
    assert host.file(f"{PKI}/{certificate}.crt").user == owner
    # The key belongs to the certificate.
    cert_pub = host.check_output(f"openssl x509 -noout -pubkey -in {PKI}/{certificate}.crt")
    key_pub = host.check_output(f"openssl pkey -pubout -in {PKI}/{certificate}.key")
    assert cert_pub == key_pub


def test_issued_certificates_are_reported(host: testinfra.host.Host) -> None:
    """The converge writes the paths from the pki_issued fact (main and `certificate` entry points)."""
    lines = host.file("/root/pki_issued.txt").content_string.splitlines()
    assert f"app {PKI}/app.crt {PKI}/app.key {PKI}/ca.crt" in lines
    assert f"postgresql {PKI}/postgresql.crt {PKI}/postgresql.key {PKI}/ca.crt" in lines


@contextmanager
def tls_server(host: testinfra.host.Host, port: int) -> Iterator[None]:
    """A one-shot TLS server with the PostgreSQL certificate that demands a client certificate from the CA."""
    unit = f"tls-probe-{port}"
    host.run(
        f"systemd-run --unit={unit} --collect openssl s_server -accept {port} -cert {PKI}/postgresql.crt"
        f" -key {PKI}/postgresql.key -CAfile {PKI}/ca.crt -Verify 1 -verify_return_error -naccept 1 -quiet"
    )
    try:
        host.run(f"timeout 10 sh -c 'until ss -Hltn sport = :{port} | grep -q .; do sleep 0.2; done'")
        yield
    finally:
        host.run(f"systemctl stop {unit}")


def test_mutual_tls_handshake(host: testinfra.host.Host, name: str) -> None:
    """A server that demands a client certificate, and a client that checks the server's name and address."""
    with tls_server(host, 8443):
        client = (
            f"echo ping | openssl s_client -connect {ADDRESSES[name]}:8443 -CAfile {PKI}/ca.crt -verify_return_error"
            f" -verify_hostname db-primary.{DOMAIN} -verify_ip {ADDRESSES[name]}"
            f" -cert {PKI}/replication.crt -key {PKI}/replication.key -brief"
        )
        run = host.run(client)
        assert run.rc == 0, run.stderr
        assert "Verification: OK" in run.stderr


def test_handshake_without_client_certificate_is_refused(host: testinfra.host.Host, name: str) -> None:
    with tls_server(host, 8444):
        # With TLS 1.3 the server's alert comes after the client's handshake: keep reading long enough to see it.
        run = host.run(
            f"(echo ping; sleep 2) | openssl s_client -connect {ADDRESSES[name]}:8444 -CAfile {PKI}/ca.crt -brief"
            " -verify_return_error"
        )
        assert run.rc != 0, run.stdout + run.stderr
        assert "certificate required" in run.stderr or "handshake failure" in run.stderr, run.stderr
