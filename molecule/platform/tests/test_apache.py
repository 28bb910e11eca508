"""Behaviour of role `apache` on each host (Debian 12 and 13), seen from the test runner: TLS (sslyze), redirects,
headers, PHP-FPM, health."""

from __future__ import annotations

import gzip
import http.client
import re
import ssl

import pytest
import testinfra
from hosts import ADDRESSES
from sslyze import (
    ScanCommand,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)

NAME = "www.apache.isikhnas.internal"
# Mozilla "intermediate" TLS 1.2 suites (IANA names as sslyze reports them); TLS 1.3 suites are all AEAD.
INTERMEDIATE_TLS12 = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}


@pytest.fixture
def address(host: testinfra.host.Host) -> str:
    """The host's address, where the test runner (on the Docker network's gateway) reaches it."""
    return ADDRESSES[host.backend.get_hostname()]


def get(
    address: str, path: str, *, tls: bool = True, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    if tls:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            address, 443, timeout=15, context=ssl._create_unverified_context()
        )
    else:
        conn = http.client.HTTPConnection(address, 80, timeout=15)
    conn.request("GET", path, headers={"Host": NAME, **(headers or {})})
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


@pytest.fixture(scope="module")
def sslyze_scans() -> dict[str, object]:
    """sslyze's results per address, each scanned once for the tests that read it."""
    return {}


@pytest.fixture
def sslyze_result(sslyze_scans: dict[str, object], address: str):
    if address not in sslyze_scans:
        sslyze_scans[address] = scan(address)
    return sslyze_scans[address]


def scan(address: str):
    scanner = Scanner()
    scanner.queue_scans(
        [
            ServerScanRequest(
                server_location=ServerNetworkLocation(hostname=NAME, port=443, ip_address=address),
                scan_commands={
                    ScanCommand.SSL_2_0_CIPHER_SUITES,
                    ScanCommand.SSL_3_0_CIPHER_SUITES,
                    ScanCommand.TLS_1_0_CIPHER_SUITES,
                    ScanCommand.TLS_1_1_CIPHER_SUITES,
                    ScanCommand.TLS_1_2_CIPHER_SUITES,
                    ScanCommand.TLS_1_3_CIPHER_SUITES,
                    ScanCommand.HTTP_HEADERS,
                },
            )
        ]
    )
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    return result.scan_result


def test_sslyze_only_tls12_and_tls13(sslyze_result) -> None:
    for old in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
        attempt = getattr(sslyze_result, old)
        assert attempt.result is not None, f"{old}: {attempt.error_trace}"
        assert attempt.result.accepted_cipher_suites == [], f"{old} accepted"
    assert sslyze_result.tls_1_2_cipher_suites.result.accepted_cipher_suites
    assert sslyze_result.tls_1_3_cipher_suites.result.accepted_cipher_suites


def test_sslyze_no_weak_cipher(sslyze_result) -> None:
    tls12 = {s.cipher_suite.name for s in sslyze_result.tls_1_2_cipher_suites.result.accepted_cipher_suites}
    assert tls12 <= INTERMEDIATE_TLS12, tls12 - INTERMEDIATE_TLS12
    for suite in sslyze_result.tls_1_3_cipher_suites.result.accepted_cipher_suites:
        assert suite.cipher_suite.key_size >= 128
        assert "GCM" in suite.cipher_suite.name or "CHACHA20" in suite.cipher_suite.name


def test_sslyze_sees_hsts(sslyze_result) -> None:
    headers = sslyze_result.http_headers.result
    assert headers is not None, sslyze_result.http_headers.error_trace
    assert headers.strict_transport_security_header is not None
    assert headers.strict_transport_security_header.max_age >= 31536000


def test_http_redirects_to_https_but_health(address: str) -> None:
    response = get(address, "/some/page?x=1", tls=False)
    assert response.status == 301
    assert response.getheader("Location") == f"https://{NAME}/some/page?x=1"
    assert get(address, "/health", tls=False).status in (200, 503)


def test_security_headers_and_server_tokens(address: str) -> None:
    response = get(address, "/")
    assert response.status == 200
    assert b"molecule apache site" in response.body  # type: ignore[attr-defined]
    assert response.getheader("Server") == "Apache"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("X-Frame-Options") == "SAMEORIGIN"
    assert response.getheader("Referrer-Policy") == "strict-origin-when-cross-origin"
    assert response.getheader("Strict-Transport-Security") == "max-age=63072000"


def test_compression_and_static_caching(address: str) -> None:
    response = get(address, "/style.css", headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.getheader("Content-Encoding") == "gzip"
    assert b"font-family" in gzip.decompress(response.body)  # type: ignore[attr-defined]
    assert response.getheader("Cache-Control") == "public, max-age=2592000"
    assert response.getheader("Expires")


def distribution_php(host: testinfra.host.Host) -> str:
    """The distribution's PHP (8.2 on Debian 12, 8.4 on Debian 13), from the host's php-fpm metapackage."""
    depends = host.check_output("apt-cache depends php-fpm")
    match = re.search(r"Depends: php(\d+\.\d+)-fpm", depends)
    assert match, depends
    return match.group(1)


def test_php_runs_through_fpm_with_event_mpm(host: testinfra.host.Host, address: str) -> None:
    body = get(address, "/info.php").body  # type: ignore[attr-defined]
    assert body.decode() == f"php {distribution_php(host)} fpm-fcgi\n"
    assert "X-Powered-By" not in str(get(address, "/info.php").headers)
    modules = host.check_output("apache2ctl -M 2>/dev/null")
    assert "mpm_event_module" in modules
    assert "php" not in modules.replace("proxy_fcgi", "")


def test_server_status_only_from_localhost(host: testinfra.host.Host, address: str) -> None:
    assert get(address, "/server-status").status == 403
    local = host.check_output(
        'python3 -c "import ssl, urllib.request; print(urllib.request.urlopen('
        "'https://localhost/server-status?auto', context=ssl._create_unverified_context()).read().decode())\""
    )
    assert "ServerMPM: event" in local


def test_health_reports_database_unreachable(address: str) -> None:
    response = get(address, "/health")
    assert response.status == 503
    assert b'"database":"unreachable"' in response.body  # type: ignore[attr-defined]
    assert response.getheader("Cache-Control") == "no-store"


def test_health_config_is_secret(host: testinfra.host.Host) -> None:
    config = host.file("/etc/isikhnas/health.php")
    assert (config.user, config.group, config.mode) == ("root", "www-data", 0o640)


def test_dotfiles_and_listings_refused(host: testinfra.host.Host, address: str) -> None:
    host.check_output("mkdir -p /srv/www/.git /srv/www/empty && echo secret > /srv/www/.git/config")
    assert get(address, "/.git/config").status == 403
    assert get(address, "/empty/").status in (403, 404)


def test_firewall_opens_80_and_443(host: testinfra.host.Host) -> None:
    ruleset = host.check_output("nft list table inet isikhnas_filter")
    assert "dport 80" in ruleset
    assert "dport 443" in ruleset
    assert "common_firewall_rules_apache" in ruleset


def test_logs_rotate(host: testinfra.host.Host) -> None:
    rotate = host.file("/etc/logrotate.d/apache2").content_string
    assert "rotate 14" in rotate
    assert "/var/log/apache2/*.log" in rotate
    host.check_output("logrotate --debug /etc/logrotate.d/apache2")
