"""Bad variables stop playbooks/aws_infrastructure.yml in validation, before any AWS call.

Every case runs the whole playbook (no --tags) against a dead endpoint (the discard port of loopback): any AWS
call would fail with a connection error instead. Each case must fail in a validation task (tasks/validate.yml),
with a message naming the variable, and the first AWS task (the account lookup) must never have started for it.
The teardown playbook likewise stops before any AWS call unless the estate's name is given as confirmation.

One ansible-playbook run covers all the cases of a playbook: each case is a host of a generated inventory, with
the case's variables as its host variables, in a group named localhost, the hosts of the playbooks' play (a group
matches before the implicit localhost does). Ansible keeps going on the other hosts when one fails, so every case
is judged on its own: its failure report, its PLAY RECAP line, its absence from the account lookup. The three runs
(bad variables, teardown confirmations, the --tags validate control) start with the session, concurrently.
"""

from __future__ import annotations

import copy
import sys

import pytest
import yaml
from aws_helpers import ADMIN_CIDRS, Ansible, Run, Started

PLAYBOOK = "playbooks/aws_infrastructure.yml"
TEARDOWN = "playbooks/aws_teardown.yml"
CONFIRM_TASK = "Require the estate's name as confirmation"

DEAD_ENDPOINT = "http://127.0.0.1:9"
VALID = {
    "aws_common_endpoint_url": DEAD_ENDPOINT,
    "aws_common_admin_cidrs": ADMIN_CIDRS,
    "aws_compute_alb_certificate_arn": "arn:aws:acm:ap-southeast-3:123456789012:certificate/0000-valid",
    "aws_cdn_certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/0000-valid",
}
ZONES = [
    {
        "name": "zone_a",
        "availability_zone": "ap-southeast-3a",
        "public_cidr": "10.40.0.0/24",
        "app_cidr": "10.40.10.0/24",
        "db_cidr": "10.40.20.0/24",
    },
    {
        "name": "zone_b",
        "availability_zone": "ap-southeast-3b",
        "public_cidr": "10.40.1.0/24",
        "app_cidr": "10.40.11.0/24",
        "db_cidr": "10.40.21.0/24",
    },
]


def overlapping_zones() -> list[dict]:
    zones = copy.deepcopy(ZONES)
    zones[1]["app_cidr"] = "10.40.10.128/25"  # inside zone_a's application subnet
    return zones


def groups(**processing) -> dict:
    return {
        "web": {"instance_type": "t3.small", "min_size": 2, "max_size": 6, "cpu_target": 60},
        "processing": {
            "instance_type": "t3.small",
            "queue": "processing",
            "scale_out_messages": 100,
            "scale_in_messages": 10,
            **processing,
        },
        "reporting": {
            "instance_type": "t3.medium",
            "min_size": 1,
            "max_size": 3,
            "queue": "reporting",
            "scale_out_messages": 20,
            "scale_in_messages": 0,
        },
    }


# case id -> (variables overriding VALID, words the failure message must contain)
BAD = {
    "overlapping-cidrs": (
        {"aws_common_zones": overlapping_zones()},
        ["aws_common_zones", "overlap", "10.40.10.128/25"],
    ),
    "single-availability-zone": ({"aws_common_zones": ZONES[:1]}, ["aws_common_zones", "at least two"]),
    "empty-admin-cidrs": ({"aws_common_admin_cidrs": []}, ["aws_common_admin_cidrs"]),
    "asg-min-above-max": (
        {"aws_compute_groups": groups(min_size=5, max_size=2)},
        ["aws_compute_groups.processing", "min_size (5)", "max_size (2)"],
    ),
    "subnet-outside-the-vpc": ({"aws_common_vpc_cidr": "10.50.0.0/16"}, ["aws_common_zones", "aws_common_vpc_cidr"]),
    "world-open-admin-cidr": ({"aws_common_admin_cidrs": ["0.0.0.0/0"]}, ["aws_common_admin_cidrs", "/0"]),
    "cdn-certificate-outside-us-east-1": (
        {"aws_cdn_certificate_arn": "arn:aws:acm:ap-southeast-3:123456789012:certificate/x"},
        ["aws_cdn_certificate_arn", "us-east-1"],
    ),
}


# teardown case -> the confirmation it is given (none, or not the estate's name isikhnas-production)
TEARDOWN_CONFIRMATIONS = {
    "unconfirmed": {},
    "wrong-confirmation": {"aws_teardown_confirm": "isikhnas-staging"},
}


# The playbooks' first AWS task: no case may reach it.
ACCOUNT_TASK = "Read the account the credentials belong to"


def inventory(cases: dict[str, dict]) -> str:
    """An inventory whose group localhost (the hosts of the AWS playbooks) has one host per case, with the case's
    variables; the playbooks' connection is local, the interpreter the one of these tests."""
    hosts = {name: {**values, "ansible_python_interpreter": sys.executable} for name, values in cases.items()}
    return yaml.safe_dump({"localhost": {"hosts": hosts}})


def start_early(request: pytest.FixtureRequest) -> dict[str, Started]:
    """The three runs start with the session (see conftest.early): they need no AWS, only some CPU."""
    ansible = request.getfixturevalue("ansible")
    folder = request.getfixturevalue("tmp_path_factory").mktemp("validation")
    bad = {name: {**VALID, **override} for name, (override, _) in BAD.items()}
    # The teardown deletes nothing unless the estate's name is given as confirmation.
    teardown = {name: {**VALID, **confirm} for name, confirm in TEARDOWN_CONFIRMATIONS.items()}
    (folder / "bad.yml").write_text(inventory(bad))
    (folder / "teardown.yml").write_text(inventory(teardown))
    (folder / "valid.yml").write_text(yaml.safe_dump(VALID))
    return {
        "bad-variables": ansible.start("ansible-playbook", "-i", str(folder / "bad.yml"), PLAYBOOK),
        "teardown": ansible.start("ansible-playbook", "-i", str(folder / "teardown.yml"), TEARDOWN),
        "valid-variables": ansible.start(
            "ansible-playbook", PLAYBOOK, "-e", f"@{folder / 'valid.yml'}", "--tags", "validate"
        ),
    }


@pytest.fixture(scope="module")
def validation_runs(ansible: Ansible, early: dict) -> dict[str, Run]:
    return {name: ansible.finish(process, f"validation {name}") for name, process in early[__name__].items()}


def reached_aws(run: Run, host: str) -> bool:
    """Did the account lookup, the first AWS task, start for this host?"""
    return any(f"[{host}]" in line for line in run.task_results(ACCOUNT_TASK))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_variables_fail_in_validation_before_any_aws_call(validation_runs: dict[str, Run], case: str) -> None:
    run = validation_runs["bad-variables"]
    assert run.rc != 0, run.explain()
    assert run.host_recap(case)["failed"] == 1, run.explain()
    assert run.host_recap(case)["changed"] == 0, run.explain()
    failed = run.host_failure(case)
    assert failed.startswith("[ERROR]: Task failed"), (case, failed, run.explain())
    # The failed task is an assertion of a role's tasks/validate.yml ...
    origin = failed.splitlines()[1]
    assert origin.startswith("Origin: "), failed[:1500]
    assert "/tasks/validate.yml:" in origin, failed[:1500]
    # ... whose message names the variable (the YAML callback may wrap long messages: compare words),
    message = " ".join(failed.split())
    for word in BAD[case][1]:
        assert word in message, (word, message[:2000])
    # ... and nothing reached AWS: the first AWS task never started for this case.
    assert not reached_aws(run, case), run.explain()


def test_valid_variables_pass_validation_only(validation_runs: dict[str, Run]) -> None:
    """Control case: --tags validate with good variables succeeds without touching the (dead) endpoint."""
    run = validation_runs["valid-variables"]
    assert run.rc == 0, run.explain()
    assert run.recap["failed"] == 0
    assert run.recap["changed"] == 0
    assert ACCOUNT_TASK not in run.output


@pytest.mark.parametrize("case", sorted(TEARDOWN_CONFIRMATIONS))
def test_teardown_needs_the_estate_name_as_confirmation(validation_runs: dict[str, Run], case: str) -> None:
    run = validation_runs["teardown"]
    assert run.rc != 0, run.explain()
    # The case fails in the confirmation task, with the message that says what to pass.
    assert any(line.startswith(f"fatal: [{case}]: FAILED!") for line in run.task_results(CONFIRM_TASK)), run.explain()
    message = " ".join(run.host_failure(case).split())
    assert "-e aws_teardown_confirm=isikhnas-production to confirm" in message, run.explain()
    assert run.host_recap(case)["changed"] == 0
    # Nothing reached AWS: the account lookup, the teardown's first AWS task, never started for this case.
    assert not reached_aws(run, case), run.explain()
