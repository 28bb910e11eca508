"""Bad-variable checks the scenarios share (each scenario's tests/conftest.py puts molecule/shared on sys.path):
the role failed on every host, in its argument spec or its tasks/validate.yml, with a message naming the
variable, and changed nothing.

Two ways in. `refuse_all` runs all cases of a role in one ansible-playbook run (one play per case, the role
inside a block whose rescue reports the failed task and its message): one process start and one fact gathering
for all of them. `assert_refused_before_any_change` checks one case run as an operator would (the scenario's
converge.yml with -e), which must fail the host with changed=0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", re.MULTILINE)
ROLES = Path(__file__).resolve().parents[2] / "roles"
# The failure reported by a case's rescue: its name, the failed task, and the messages (a loop's failure says
# "One or more items failed": its failed items' messages too).
MESSAGES = (
    "{{ [ansible_failed_result.msg | default('')] + (ansible_failed_result.results | default([])"
    " | selectattr('failed', 'defined') | selectattr('failed') | map(attribute='msg') | list) }}"
)


def assert_refused_before_any_change(case: str, variable: str, run: subprocess.CompletedProcess[str]) -> None:
    output = run.stdout + run.stderr
    assert run.returncode != 0, f"{case}: the play should fail\n{output}"
    assert variable in output, f"{case}: the message should name {variable}\n{output}"
    recaps = RECAP.findall(output)
    assert recaps, output
    for name, changed, failed in recaps:
        assert changed == "0", f"{case}: {name} changed something before the failure\n{output}"
        assert failed == "1", f"{case}: {name} did not fail\n{output}"


def inventory_hosts(inventory: str, group: str) -> list[str]:
    out = subprocess.run(["ansible-inventory", "-i", inventory, "--list"], capture_output=True, text=True, check=True)
    return sorted(json.loads(out.stdout)[group]["hosts"])


def case_plays(role: str, cases: dict[str, tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """A facts play, then one play per case (name: hosts pattern, variables): the role with the case's variables,
    rescued and reported."""
    every = sorted({hosts for hosts, _ in cases.values()})
    plays: list[dict[str, Any]] = [{"name": "Facts", "hosts": ",".join(every), "tasks": []}]
    for name, (hosts, extra) in sorted(cases.items()):
        report = {"case": name, "task": "{{ ansible_failed_task.name }}", "msg": MESSAGES}
        plays.append(
            {
                "name": name,
                "hosts": hosts,
                "gather_facts": False,
                "vars": extra,
                "tasks": [
                    {
                        "name": "The role with the case's variables",
                        "block": [{"name": "Run the role", "ansible.builtin.include_role": {"name": role}}],
                        "rescue": [{"name": "Rejected", "ansible.builtin.debug": {"msg": report}}],
                    }
                ],
            }
        )
    return plays


def refuse_all(
    inventory: str, role: str, cases: dict[str, tuple[list[str], dict[str, Any], str]], work: Path
) -> dict[str, str]:
    """Runs every case (name: hosts, variables, what the message must name) in one playbook; returns each case's
    problem ('' when it was refused on each of its hosts, in the role's validation, by a message naming what it
    must). Asserts that the run changed nothing on any host."""
    playbook = work / f"{role}-cases.yml"
    plays = case_plays(role, {name: (",".join(hosts), extra) for name, (hosts, extra, _) in cases.items()})
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    run = subprocess.run(
        ["ansible-playbook", "-i", inventory, str(playbook)],
        capture_output=True,
        text=True,
        check=False,
        # JSON on stdout and nothing else (profile_tasks, enabled for the scenario, would print after it)
        env=os.environ | dict.fromkeys(("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_CALLBACKS_ENABLED"), "ansible.posix.json"),
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    result = json.loads(run.stdout)
    stats = result["stats"]
    assert {host: stats[host]["changed"] for host in stats} == dict.fromkeys(stats, 0), stats
    assert all(stats[host]["failures"] == 0 for host in stats), stats
    reports: dict[str, dict[str, Any]] = {}
    for play in result["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == "Rejected":
                for host, host_result in task["hosts"].items():
                    reports.setdefault(host_result["msg"]["case"], {})[host] = host_result["msg"]
    validate_tasks = {task["name"] for task in yaml.safe_load((ROLES / role / "tasks" / "validate.yml").read_text())}
    problems = {}
    for case, (hosts, _, named) in cases.items():
        by_host = reports.get(case, {})
        problem = ""
        if sorted(by_host) != sorted(hosts):
            problem = f"not refused on {sorted(set(hosts) - set(by_host))}"
        for host, report in by_host.items():
            task = report["task"]
            if not (task.startswith("Validating arguments against arg spec") or task in validate_tasks):
                problem = f"{host} failed in task {task!r}, not in the role's validation: {report['msg']}"
            elif not any(named in message for message in report["msg"]):
                problem = f"{host}: the message does not name {named}: {report['msg']}"
        problems[case] = problem
    return problems
