"""Bad variables stop role `common` with a clear message before it changes anything.

Each case converges the scenario's (already converged) hosts with one wrong value: every host must fail,
the message must name the variable, and every host's recap must say changed=0. Runs once for all hosts.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from refusal import assert_refused_before_any_change

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


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_fails_before_any_change(case: str, tmp_path: Path) -> None:
    extra, variable = CASES[case]
    vars_file = tmp_path / "bad.json"
    vars_file.write_text(json.dumps(extra))
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-e", f"@{vars_file}", str(CONVERGE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert_refused_before_any_change(case, variable, run)
