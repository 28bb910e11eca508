"""Bad variables stop role `python_daemons` with a message naming the variable, before it changes anything.

All cases run in one ansible-playbook run on the scenario's (already converged) hosts, one play per case: the
role with one wrong value, inside a block whose rescue reports the failed task and its message. Every case must
fail in the role's argument spec or in tasks/validate.yml, with a message naming the variable, and the run must
report changed=0 on both hosts. One case also runs as an operator would (converge.yml with -e), failing the
host with changed=0.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from helpers import INVENTORY, converge

VALIDATE = Path(__file__).resolve().parents[3] / "roles" / "python_daemons" / "tasks" / "validate.yml"

QUEUES = {
    "inbound_email": "isikhnas-molecule-incoming-email",
    "processing": "isikhnas-molecule-processing",
    "outgoing_email": "isikhnas-molecule-outgoing-email",
    "outgoing_im": "isikhnas-molecule-outgoing-im",
    "reporting": "isikhnas-molecule-reporting",
}
MESSAGING, WORKER = "daemons-messaging", "daemons-worker"

# case: host, the variable, its wrong value, and what the failure must name (the variable, or one of its keys)
Case = tuple[str, str, Any, str]
CASES: dict[str, Case] = {
    "daemon not in the known list": (WORKER, "python_daemons_daemons", ["processor", "mailman"], ""),
    "group map names an unknown daemon": (
        MESSAGING, "python_daemons_group_map", {"messaging": ["inbound-email", "smtpd"]}, ".messaging"
    ),
    "empty queue": (WORKER, "python_daemons_queues", QUEUES | {"processing": ""}, ".processing"),
    "queue neither name nor URL": (WORKER, "python_daemons_queues", QUEUES | {"reporting": "a b"}, ".reporting"),
    "listen port out of range": (MESSAGING, "python_daemons_im_listen_port", 70000, ""),
    "listen port not a number": (MESSAGING, "python_daemons_im_listen_port", "http", ""),
    "webhook secret too short": (MESSAGING, "python_daemons_im_webhook_secret", "short", ""),
    "no database for the processor": (WORKER, "python_daemons_db_dsn", "", ""),
    "endpoint not a URL": (WORKER, "python_daemons_aws_endpoint_url", "moto:5000", ""),
    "unknown email transport": (MESSAGING, "python_daemons_email_transport", "pigeon", ""),
    "sender without an address": (MESSAGING, "python_daemons_email_from", "iSIKHNAS", ""),
    "environment value on two lines": (WORKER, "python_daemons_environment", {"ISIKHNAS_BATCH_SIZE": "5\nEVIL=1"}, ""),
    "environment for an unknown daemon": (WORKER, "python_daemons_daemon_environment", {"mailman": {"X": "1"}}, ""),
    "watchdog too short": (WORKER, "python_daemons_watchdog_sec", 3, ""),
}  # fmt: skip


def case_plays(cases: dict[str, Case]) -> list[dict[str, Any]]:
    """A facts play, then one play per case: the role with the case's variables, rescued and reported."""
    plays: list[dict[str, Any]] = [{"name": "Facts", "hosts": "daemons", "gather_subset": ["min"], "tasks": []}]
    for name, (host, variable, value, _) in sorted(cases.items()):
        # a loop's failure says "One or more items failed": its failed items' messages
        messages = (
            "{{ [ansible_failed_result.msg] + (ansible_failed_result.results | default([])"
            " | selectattr('failed', 'defined') | selectattr('failed') | map(attribute='msg') | list) }}"
        )
        report = {"case": name, "task": "{{ ansible_failed_task.name }}", "msg": messages}
        plays.append(
            {
                "name": name,
                "hosts": host,
                "gather_facts": False,
                "vars": {variable: value},
                "tasks": [
                    {
                        "name": "The role with the case's variables",
                        "block": [{"name": "Run the role", "ansible.builtin.include_role": {"name": "python_daemons"}}],
                        "rescue": [{"name": "Rejected", "ansible.builtin.debug": {"msg": report}}],
                    }
                ],
            }
        )
    return plays


def test_bad_values_fail_before_any_change(tmp_path: Path) -> None:
    playbook = tmp_path / "cases.yml"
    playbook.write_text(yaml.safe_dump(case_plays(CASES), sort_keys=False))
    run = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(playbook)],
        capture_output=True,
        text=True,
        check=False,
        # JSON on stdout and nothing else (profile_tasks, enabled for the scenario, would print after it)
        env=os.environ | dict.fromkeys(("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_CALLBACKS_ENABLED"), "ansible.posix.json"),
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    result = json.loads(run.stdout)
    reports = {
        host_result["msg"]["case"]: host_result["msg"]
        for play in result["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Rejected"
        for host_result in task["hosts"].values()
    }
    validate_tasks = {task["name"] for task in yaml.safe_load(VALIDATE.read_text())}
    for case, (_, variable, _, key) in CASES.items():
        assert case in reports, f"{case}: not rejected"
        report = reports[case]
        task = report["task"]
        assert task.startswith("Validating arguments against arg spec") or task in validate_tasks, (case, report)
        assert any(variable + key in message for message in report["msg"]), (case, report)
    # nothing changed anywhere: each case stopped before its first change
    stats = result["stats"]
    assert {host: stats[host]["changed"] for host in stats} == {"daemons-messaging": 0, "daemons-worker": 0}
    assert all(stats[host]["failures"] == 0 for host in stats), stats


def test_bad_value_fails_the_converge_with_no_change(tmp_path: Path) -> None:
    vars_file = tmp_path / "bad.json"
    vars_file.write_text(json.dumps({"python_daemons_db_dsn": ""}))
    recap, output = converge("--limit", "daemons-worker", "-e", f"@{vars_file}")
    assert "python_daemons_db_dsn is required" in output, output
    assert recap == {"daemons-worker": (0, 1)}, output
