"""Unit tests of plugins/filter/aws_infra.py (addressing checks and the security-group matrix)."""

from __future__ import annotations

import importlib.util

import pytest
from ansible.errors import AnsibleFilterError
from aws_helpers import ROOT

spec = importlib.util.spec_from_file_location("aws_infra", ROOT / "plugins" / "filter" / "aws_infra.py")
aws_infra = importlib.util.module_from_spec(spec)
spec.loader.exec_module(aws_infra)

MATRIX = {
    "nat": {"description": "bastion", "ingress": [{"from": "admin_cidrs", "ports": [22]}]},
    "db": {
        "description": "database",
        "ingress": [
            {"from": ["web", "db"], "ports": [5432], "description": "to PostgreSQL"},
            {"from": "nat", "ports": [22]},
        ],
    },
    "web": {"description": "web", "ingress": [{"from": "alb", "ports": [80]}, {"from": "nat", "ports": [22]}]},
    "alb": {"description": "lb", "ingress": [{"from": "internet", "ports": [443, 80]}]},
}


def test_cidr_validity() -> None:
    assert aws_infra.aws_cidr_valid("10.40.0.0/16")
    assert not aws_infra.aws_cidr_valid("10.40.0.1/16")  # host bits set
    assert not aws_infra.aws_cidr_valid("10.40.0.0")
    assert not aws_infra.aws_cidr_valid(None)
    assert aws_infra.aws_cidr_invalid(["10.0.0.0/8", "nope", "10.0.0.0/33"]) == ["nope", "10.0.0.0/33"]
    assert aws_infra.aws_cidr_invalid("10.0.0.0/8") == []


def test_cidr_within_and_overlaps() -> None:
    assert aws_infra.aws_cidr_within("10.40.1.0/24", "10.40.0.0/16")
    assert not aws_infra.aws_cidr_within("10.41.1.0/24", "10.40.0.0/16")
    assert aws_infra.aws_cidr_overlaps({"a": "10.0.0.0/24", "b": "10.0.1.0/24"}) == []
    assert aws_infra.aws_cidr_overlaps({"a": "10.0.0.0/24", "b": "10.0.0.128/25", "c": "10.0.2.0/24"}) == [
        "a 10.0.0.0/24 overlaps b 10.0.0.128/25"
    ]
    assert aws_infra.aws_cidr_overlaps(["10.0.0.0/16", "10.0.5.0/24"]) == ["10.0.0.0/16 overlaps 10.0.5.0/24"]


def test_zone_subnets() -> None:
    zones = [{"name": "zone_a", "public_cidr": "p", "app_cidr": "a", "db_cidr": "d"}]
    assert aws_infra.aws_zone_subnets(zones) == {"zone_a.public": "p", "zone_a.app": "a", "zone_a.db": "d"}


def test_security_groups_are_ordered_after_their_sources() -> None:
    order = aws_infra.aws_sg_order(MATRIX)
    assert sorted(order) == sorted(MATRIX)
    for group, spec in MATRIX.items():
        for rule in spec["ingress"]:
            sources = rule["from"] if isinstance(rule["from"], list) else [rule["from"]]
            for source in sources:
                if source in MATRIX and source != group:
                    assert order.index(source) < order.index(group), (source, group)


def test_security_group_cycles_and_unknown_groups_are_errors() -> None:
    cycle = {"a": {"ingress": [{"from": "b", "ports": [1]}]}, "b": {"ingress": [{"from": "a", "ports": [1]}]}}
    with pytest.raises(AnsibleFilterError, match="cycle"):
        aws_infra.aws_sg_order(cycle)
    with pytest.raises(AnsibleFilterError, match="unknown group 'x'"):
        aws_infra.aws_sg_order({"a": {"ingress": [{"from": "x", "ports": [1]}]}})
    with pytest.raises(AnsibleFilterError, match="needs 'from'"):
        aws_infra.aws_sg_order({"a": {"ingress": [{"ports": [1]}]}})


def test_security_group_rules_rendering() -> None:
    sources = {"admin_cidrs": ["203.0.113.0/24"], "internet": ["0.0.0.0/0"], "private_subnets": ["10.0.0.0/24"]}
    assert aws_infra.aws_sg_rules(MATRIX, "db", sources, "p") == [
        {"proto": "tcp", "group_name": ["p-web"], "from_port": 5432, "to_port": 5432, "rule_desc": "to PostgreSQL"},
        {"proto": "tcp", "group_name": ["p-db"], "from_port": 5432, "to_port": 5432, "rule_desc": "to PostgreSQL"},
        {"proto": "tcp", "group_name": ["p-nat"], "from_port": 22, "to_port": 22},
    ]
    assert aws_infra.aws_sg_rules(MATRIX, "alb", sources, "p") == [
        {"proto": "tcp", "cidr_ip": ["0.0.0.0/0"], "from_port": 443, "to_port": 443},
        {"proto": "tcp", "cidr_ip": ["0.0.0.0/0"], "from_port": 80, "to_port": 80},
    ]
    with pytest.raises(AnsibleFilterError, match="has no CIDR"):
        aws_infra.aws_sg_rules(MATRIX, "nat", {**sources, "admin_cidrs": []}, "p")


def test_asg_tags_dns_records_and_expand() -> None:
    assert aws_infra.aws_asg_tags({"b": "2", "a": "1"}) == [
        {"a": "1", "propagate_at_launch": True},
        {"b": "2", "propagate_at_launch": True},
    ]
    assert aws_infra.aws_dns_record("x.example.org", "A", "d.cloudfront.net", "Z2") == {
        "record": "x.example.org",
        "type": "A",
        "value": "d.cloudfront.net",
        "private": False,
        "alias_zone": "Z2",
    }
    hosts = [{"tags": {"Hostname": "db1"}, "private_ip_address": "10.0.0.5", "instance_id": "i-1"}]
    assert aws_infra.aws_dns_host_records(hosts, "p.internal") == [
        {"record": "db1.p.internal", "type": "A", "value": "10.0.0.5", "private": True}
    ]
    with pytest.raises(AnsibleFilterError, match="no Hostname tag"):
        aws_infra.aws_dns_host_records([{"tags": {}, "instance_id": "i-2"}], "p.internal")
    assert aws_infra.aws_expand(["/a/*", "/b/*"], "path_pattern", {"x": 1}) == [
        {"x": 1, "path_pattern": "/a/*"},
        {"x": 1, "path_pattern": "/b/*"},
    ]


def test_filter_plugin_exports_every_filter() -> None:
    exported = aws_infra.FilterModule().filters()
    assert {name for name in dir(aws_infra) if name.startswith("aws_")} == set(exported)
