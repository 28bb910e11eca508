"""Bad variables stop playbooks/aws_infrastructure.yml in validation, before any AWS call.

Every case runs the whole playbook (no --tags) against a dead endpoint (the discard port of loopback): any AWS
call would fail with a connection error instead. Each case must fail in a validation task (tasks/validate.yml),
with a message naming the variable, and the first AWS task (the account lookup) must never have started.
The teardown playbook likewise stops before any AWS call unless the estate's name is given as confirmation.
The cases run concurrently: they are small and independent.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from aws_helpers import ADMIN_CIDRS, Ansible, Run

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


def start_early(request: pytest.FixtureRequest) -> dict:
    """Every case starts with the session (see conftest.early): they need no AWS, only some CPU."""
    ansible = request.getfixturevalue("ansible")
    folder = request.getfixturevalue("tmp_path_factory").mktemp("validation")
    cases = {name: {**VALID, **override} for name, (override, _) in BAD.items()}
    cases["valid-variables"] = dict(VALID)
    # The teardown deletes nothing unless the estate's name is given as confirmation.
    cases.update({f"teardown-{name}": {**VALID, **confirm} for name, confirm in TEARDOWN_CONFIRMATIONS.items()})
    started = {}
    for name, values in cases.items():
        path = folder / f"{name}.yml"
        path.write_text(yaml.safe_dump(values))
        playbook = "playbooks/aws_teardown.yml" if name.startswith("teardown-") else "playbooks/aws_infrastructure.yml"
        args = ["ansible-playbook", playbook, "-e", f"@{path}"]
        if name == "valid-variables":
            args += ["--tags", "validate"]
        started[name] = ansible.start(*args)
    return started


@pytest.fixture(scope="module")
def validation_runs(ansible: Ansible, early: dict) -> dict[str, Run]:
    return {name: ansible.finish(process, f"validation {name}") for name, process in early[__name__].items()}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_variables_fail_in_validation_before_any_aws_call(validation_runs: dict[str, Run], case: str) -> None:
    run = validation_runs[case]
    assert run.rc != 0, run.explain()
    marker = "[ERROR]: Task failed"
    assert marker in run.output, run.explain()
    failed = run.output[run.output.index(marker) :]
    # The failed task is an assertion of a role's tasks/validate.yml ...
    origin = failed.splitlines()[1]
    assert origin.startswith("Origin: "), failed[:1500]
    assert "/tasks/validate.yml:" in origin, failed[:1500]
    # ... whose message names the variable (the YAML callback may wrap long messages: compare words),
    message = " ".join(failed.split())
    for word in BAD[case][1]:
        assert word in message, (word, message[:2000])
    # ... and nothing reached AWS: the first AWS task never started.
    assert "Read the account the credentials belong to" not in run.output


def test_valid_variables_pass_validation_only(validation_runs: dict[str, Run]) -> None:
    """Control case: --tags validate with good variables succeeds without touching the (dead) endpoint."""
    run = validation_runs["valid-variables"]
    assert run.rc == 0, run.explain()
    assert run.recap["failed"] == 0
    assert run.recap["changed"] == 0
    assert "Read the account the credentials belong to" not in run.output


@pytest.mark.parametrize("case", sorted(TEARDOWN_CONFIRMATIONS))
def test_teardown_needs_the_estate_name_as_confirmation(validation_runs: dict[str, Run], case: str) -> None:
    run = validation_runs[f"teardown-{case}"]
    assert run.rc != 0, run.explain()
    message = " ".join(run.output.split())
    assert "Require the estate's name as confirmation" in message, run.explain()
    assert "-e aws_teardown_confirm=isikhnas-production to confirm" in message, run.explain()
    assert run.recap["changed"] == 0
    # Nothing reached AWS: the account lookup, the teardown's first AWS task, never started.
    assert "Read the account the credentials belong to" not in run.output
