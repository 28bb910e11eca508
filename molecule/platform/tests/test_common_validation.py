"""Bad variables stop role `common` with a clear message before it changes anything.

All cases run in one ansible-playbook run on the scenario's (already converged) hosts (refusal.refuse_all): on
every host each must fail in the role's argument spec or tasks/validate.yml with a message naming the variable,
and the run must report changed=0. One case also runs as an operator would: converge.yml with -e fails every
host with changed=0.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from refusal import assert_refused_before_any_change, inventory_hosts, refuse_all

CONVERGE = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"

CASES = {
    "unknown time zone": ({"common_timezone": "Mars/Olympus_Mons"}, "common_timezone"),
    "time zone with spaces": ({"common_timezone": "Asia/ Jakarta"}, "common_timezone"),
    "port is not a number": ({"common_firewall_rules": [{"port": "http"}]}, "port"),
    "port out of range": ({"common_firewall_rules": [{"port": 70000}]}, "common_firewall_rules"),
    "bad protocol": ({"common_firewall_rules": [{"port": 53, "proto": "icmp"}]}, "proto"),
    "source not a CIDR": (
        {"common_firewall_rules_web": [{"port": 443, "sources": ["everyone"]}]},
        "common_firewall_rules_web",
    ),
    "no admin network": ({"common_firewall_admin_cidrs": []}, "common_firewall_admin_cidrs"),
    "ssh port as a word": ({"common_firewall_ssh_port": "twenty-two"}, "common_firewall_ssh_port"),
    "bad user name": ({"common_admin_users": [{"name": "Root User"}]}, "common_admin_users"),
}


@pytest.fixture(scope="module")
def problems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("common-cases")
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    hosts = inventory_hosts(inventory, "fleet")
    cases = {name: (hosts, extra, variable) for name, (extra, variable) in CASES.items()}
    return refuse_all(inventory, "common", cases, work)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_fails_before_any_change(case: str, problems: dict[str, str]) -> None:
    assert problems[case] == ""


def test_bad_value_fails_the_converge_with_no_change(tmp_path: Path) -> None:
    extra, variable = CASES["unknown time zone"]
    vars_file = tmp_path / "bad.json"
    vars_file.write_text(json.dumps(extra))
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-e", f"@{vars_file}", str(CONVERGE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert_refused_before_any_change("unknown time zone", variable, run)
