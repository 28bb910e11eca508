"""The private host reaches the outside only through the bastion, which masquerades it behind its own address.

"outside" (172.31.3.30, beyond the bastion) answers each connection with the address it sees. Each negative
case takes one piece away (the route, forwarding, the masquerade) and puts it back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import BASTION, BASTION_PRIVATE, CONTAINERS, OUTSIDE, docker_exec

ASK_OUTSIDE = f"nc -w 5 {OUTSIDE} 8080"


def peer_seen_by_outside() -> str | None:
    run = docker_exec(CONTAINERS["app"], ASK_OUTSIDE, check=False)
    return run.stdout.strip() or None if run.returncode == 0 else None


def masquerade_packets() -> int:
    table = docker_exec(CONTAINERS["bastion"], "nft list table ip isikhnas_nat").stdout
    rule = next(line for line in table.splitlines() if "masquerade" in line)
    return int(rule.split("counter packets ")[1].split()[0])


def test_private_host_routes_through_the_bastion() -> None:
    route = docker_exec(CONTAINERS["app"], "ip route show default").stdout
    assert f"via {BASTION_PRIVATE} " in route


def test_outside_sees_the_bastions_public_address() -> None:
    before = masquerade_packets()
    assert peer_seen_by_outside() == BASTION
    assert masquerade_packets() > before


@pytest.fixture
def no_default_route() -> Iterator[None]:
    docker_exec(CONTAINERS["app"], "ip route del default")
    yield
    docker_exec(CONTAINERS["app"], f"ip route replace default via {BASTION_PRIVATE}")


def test_without_the_route_through_the_bastion_outside_is_unreachable(no_default_route: None) -> None:
    assert peer_seen_by_outside() is None


@pytest.fixture
def forwarding_off() -> Iterator[None]:
    """A container's /proc/sys is read-only; remount it for the test and put everything back."""
    docker_exec(CONTAINERS["bastion"], "mount -o remount,bind,rw /proc/sys && sysctl -qw net.ipv4.ip_forward=0")
    yield
    docker_exec(CONTAINERS["bastion"], "sysctl -qw net.ipv4.ip_forward=1 && mount -o remount,bind,ro /proc/sys")


def test_without_forwarding_on_the_bastion_outside_is_unreachable(forwarding_off: None) -> None:
    assert peer_seen_by_outside() is None


@pytest.fixture
def masquerade_off() -> Iterator[None]:
    docker_exec(CONTAINERS["bastion"], "nft delete table ip isikhnas_nat")
    yield
    docker_exec(CONTAINERS["bastion"], "nft -f /etc/nftables.d/isikhnas-nat.nft")


def test_without_masquerade_the_private_address_would_leak(masquerade_off: None) -> None:
    """Unmasqueraded, the packet leaves with 172.31.4.20, which the outside cannot answer (or would see)."""
    assert peer_seen_by_outside() != BASTION


def test_forwarding_is_on_and_persisted() -> None:
    assert docker_exec(CONTAINERS["bastion"], "sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"
    conf = docker_exec(CONTAINERS["bastion"], "cat /etc/sysctl.d/60-isikhnas-nat.conf").stdout
    assert "net.ipv4.ip_forward=1" in conf.replace(" ", "")
