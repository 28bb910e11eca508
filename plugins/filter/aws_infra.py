"""Filters used by the aws_* roles to validate addressing and to render the security-group matrix.

They exist because the usual ansible.utils ipaddr filters need the ``netaddr`` library, which is not part of the
controller stack, and because turning the security-group matrix (data) into ec2_security_group rules is clearer
in Python than in Jinja.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ansible.errors import AnsibleFilterError

# Sources of a security-group rule that are CIDR lists rather than other groups of the matrix.
CIDR_SOURCES = ("admin_cidrs", "internet", "private_subnets")


def aws_cidr_valid(value: Any) -> bool:
    """True when ``value`` is an IPv4 network in CIDR notation with no host bits set (``10.0.0.0/16``)."""
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        return False
    return True


def aws_cidr_invalid(values: Any) -> list[Any]:
    """The entries of ``values`` (a CIDR or a list of them) that are not valid IPv4 CIDRs; empty when all are."""
    items = values if isinstance(values, list) else [values]
    return [v for v in items if not aws_cidr_valid(v)]


def aws_cidr_within(inner: str, outer: str) -> bool:
    """True when network ``inner`` lies entirely inside network ``outer``."""
    return ipaddress.IPv4Network(inner).subnet_of(ipaddress.IPv4Network(outer))


def aws_cidr_overlaps(cidrs: dict[str, str] | list[str]) -> list[str]:
    """Describe every overlapping pair among ``cidrs``: a list of CIDRs or a dict label -> CIDR.

    Returns an empty list when no two networks overlap, else strings like ``"zone_a.app 10.0.1.0/24 overlaps
    zone_b.app 10.0.1.0/25"`` (labels are the dict keys, or the CIDRs themselves for a list).
    """
    items = [f"{k} {v}" for k, v in cidrs.items()] if isinstance(cidrs, dict) else list(cidrs)
    networks = [ipaddress.IPv4Network(c) for c in (cidrs.values() if isinstance(cidrs, dict) else cidrs)]
    found = []
    for i, net_a in enumerate(networks):
        for j in range(i + 1, len(networks)):
            if net_a.overlaps(networks[j]):
                found.append(f"{items[i]} overlaps {items[j]}")
    return found


def aws_zone_subnets(zones: list[dict[str, Any]], tiers: tuple[str, ...] = ("public", "app", "db")) -> dict[str, str]:
    """Map ``<zone>.<tier>`` to the CIDR of that subnet, from aws_common_zones (keys ``<tier>_cidr``)."""
    return {f"{zone['name']}.{tier}": zone[f"{tier}_cidr"] for zone in zones for tier in tiers}


def aws_sg_order(matrix: dict[str, Any]) -> list[str]:
    """Order the groups of the matrix so that every group comes after the groups its rules reference.

    Creating groups in this order lets each rule name its source group; deleting them in the reverse order never
    deletes a group another group still references. A cycle between two different groups is an error.
    """
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise AnsibleFilterError(f"security-group matrix has a cycle: {' -> '.join((*path, name))}")
        if name not in matrix:
            raise AnsibleFilterError(f"security-group matrix references unknown group {name!r} (from {path[-1]!r})")
        visiting.add(name)
        for rule in matrix[name].get("ingress", []):
            for source in _sources(rule):
                if source not in CIDR_SOURCES and source != name:
                    visit(source, (*path, name))
        visiting.discard(name)
        ordered.append(name)

    for group in matrix:
        visit(group, ())
    return ordered


def aws_sg_rules(matrix: dict[str, Any], group: str, cidr_sources: dict[str, list[str]], name_prefix: str) -> list:
    """Render the ingress rules of ``group`` into the ``rules`` list of amazon.aws.ec2_security_group.

    ``cidr_sources`` maps the special sources (admin_cidrs, internet, private_subnets) to lists of CIDRs; any other
    source is a group of the matrix, referenced by its AWS name ``<name_prefix>-<group>``.
    """
    rules = []
    for rule in matrix[group].get("ingress", []):
        ports = [int(p) for p in rule["ports"]]
        description = rule.get("description", "")
        for source in _sources(rule):
            base: dict[str, Any] = {"proto": rule.get("proto", "tcp")}
            if source in CIDR_SOURCES:
                cidrs = cidr_sources.get(source)
                if not cidrs:
                    raise AnsibleFilterError(f"security group {group!r}: source {source!r} has no CIDR")
                base["cidr_ip"] = list(cidrs)
            else:
                if source not in matrix:
                    raise AnsibleFilterError(f"security group {group!r}: unknown source group {source!r}")
                base["group_name"] = [f"{name_prefix}-{source}"]
            for port in ports:
                entry = dict(base, from_port=port, to_port=port)
                if description:
                    entry["rule_desc"] = description
                rules.append(entry)
    return rules


def aws_asg_tags(tags: dict[str, str], propagate_at_launch: bool = True) -> list[dict[str, Any]]:
    """Turn a tag dict into amazon.aws.autoscaling_group ``tags``, sorted by key (the order AWS returns them in)."""
    return [{key: tags[key], "propagate_at_launch": propagate_at_launch} for key in sorted(tags)]


def aws_dns_record(
    name: str, rtype: str, value: str, alias_zone: str | None = None, private: bool = False
) -> dict[str, Any]:
    """One record for the aws_dns records loop; ``alias_zone`` makes it an alias to that hosted zone."""
    record: dict[str, Any] = {"record": name, "type": rtype, "value": value, "private": private}
    if alias_zone:
        record["alias_zone"] = alias_zone
    return record


def aws_dns_host_records(instances: list[dict[str, Any]], domain: str) -> list[dict[str, Any]]:
    """A private A record ``<tag Hostname>.<domain>`` -> private address for each EC2 instance (ec2_instance facts)."""
    records = []
    for instance in instances:
        hostname = (instance.get("tags") or {}).get("Hostname")
        if not hostname:
            raise AnsibleFilterError(f"instance {instance.get('instance_id')} has no Hostname tag")
        records.append(aws_dns_record(f"{hostname}.{domain}", "A", instance["private_ip_address"], private=True))
    return records


def aws_expand(values: list[Any], key: str, base: dict[str, Any]) -> list[dict[str, Any]]:
    """One copy of ``base`` per value, with ``key`` set to that value (e.g. a cache behaviour per path pattern)."""
    return [dict(base, **{key: value}) for value in values]


def _sources(rule: dict[str, Any]) -> list[str]:
    source = rule.get("from")
    if isinstance(source, str):
        return [source]
    if isinstance(source, list) and source and all(isinstance(s, str) for s in source):
        return list(source)
    raise AnsibleFilterError(f"security-group rule needs 'from' (a name or a list of names): {rule!r}")


class FilterModule:
    """AWS addressing and security-group matrix filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "aws_cidr_valid": aws_cidr_valid,
            "aws_cidr_invalid": aws_cidr_invalid,
            "aws_cidr_within": aws_cidr_within,
            "aws_cidr_overlaps": aws_cidr_overlaps,
            "aws_zone_subnets": aws_zone_subnets,
            "aws_sg_order": aws_sg_order,
            "aws_sg_rules": aws_sg_rules,
            "aws_asg_tags": aws_asg_tags,
            "aws_dns_record": aws_dns_record,
            "aws_expand": aws_expand,
            "aws_dns_host_records": aws_dns_host_records,
        }
