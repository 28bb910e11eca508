"""Bad variables stop role `python_daemons` with a message naming the variable, before it changes anything.

All cases run in one ansible-playbook run on the scenario's (already converged) hosts (molecule/shared/refusal.py),
one play per case: the role with one wrong value, inside a block whose rescue reports the failed task and its
message. Every case must
fail in the role's argument spec or in tasks/validate.yml, with a message naming the variable, and the run must
report changed=0 on both hosts. One case also runs as an operator would (converge.yml with -e), failing the
host with changed=0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import INVENTORY, converge
from refusal import refuse_all

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


def test_bad_values_fail_before_any_change(tmp_path: Path) -> None:
    cases = {name: ([host], {variable: value}, variable + key) for name, (host, variable, value, key) in CASES.items()}
    problems = refuse_all(str(INVENTORY), "python_daemons", cases, tmp_path)
    assert {case: problem for case, problem in problems.items() if problem} == {}


def test_bad_value_fails_the_converge_with_no_change(tmp_path: Path) -> None:
    vars_file = tmp_path / "bad.json"
    vars_file.write_text(json.dumps({"python_daemons_db_dsn": ""}))
    recap, output = converge("--limit", "daemons-worker", "-e", f"@{vars_file}")
    assert "python_daemons_db_dsn is required" in output, output
    assert recap == {"daemons-worker": (0, 1)}, output
