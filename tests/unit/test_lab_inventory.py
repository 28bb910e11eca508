"""The lab inventory describes the fleet the way the design needs it."""

from __future__ import annotations

import ipaddress
from typing import Any

TIERS = ("nat", "db", "web", "messaging", "processing", "reporting", "wiki")
ZONES = ("zone_a", "zone_b")


def hosts(inventory: dict[str, Any], group: str) -> set[str]:
    """Hosts of a group, its children's included."""
    entry = inventory.get(group, {})
    found = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        found |= hosts(inventory, child)
    return found


def test_every_fleet_host_has_one_tier_and_one_zone(lab_inventory: dict[str, Any]) -> None:
    fleet = hosts(lab_inventory, "fleet")
    assert fleet
    for host in fleet:
        tiers = [t for t in TIERS if host in hosts(lab_inventory, t)]
        zones = [z for z in ZONES if host in hosts(lab_inventory, z)]
        assert len(tiers) == 1, f"{host} is in tiers {tiers}"
        assert len(zones) == 1, f"{host} is in zones {zones}"


def test_one_nat_and_replicated_tiers_span_both_zones(lab_inventory: dict[str, Any]) -> None:
    assert len(hosts(lab_inventory, "nat")) == 1
    for tier in ("db", "web"):
        members = hosts(lab_inventory, tier)
        for zone in ZONES:
            assert members & hosts(lab_inventory, zone), f"{tier} has no host in {zone}"
    assert len(hosts(lab_inventory, "db")) >= 3


def test_addresses_are_unique_and_match_the_zone_subnet(lab_inventory: dict[str, Any]) -> None:
    hostvars = lab_inventory["_meta"]["hostvars"]
    subnets = {"zone_a": ipaddress.ip_network("172.30.1.0/24"), "zone_b": ipaddress.ip_network("172.30.2.0/24")}
    seen: dict[str, str] = {}
    for host in hosts(lab_inventory, "fleet"):
        address = ipaddress.ip_address(hostvars[host]["lab_address"])
        assert str(address) not in seen, f"{host} and {seen.get(str(address))} share {address}"
        seen[str(address)] = host
        zone = next(z for z in ZONES if host in hosts(lab_inventory, z))
        assert address in subnets[zone], f"{host} ({address}) is not in {zone}'s subnet"


def test_lab_hosts_are_reached_with_docker(lab_inventory: dict[str, Any]) -> None:
    hostvars = lab_inventory["_meta"]["hostvars"]
    for host in hosts(lab_inventory, "fleet"):
        assert hostvars[host]["ansible_connection"] == "docker"
