"""Offline AWS tests: a moto server on a free loopback port stands in for AWS.

The playbooks run unchanged, as ansible-playbook subprocesses; only the endpoint differs (the variable
aws_common_endpoint_url, passed to every module through module_defaults). boto3 then asserts what they built.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aws_helpers import (
    ADMIN_CIDRS,
    CA_KEY,
    REGION,
    ROOT,
    TIMINGS,
    Ansible,
    client,
    moto_prerequisites,
    moto_server,
)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """The moto server of the playbook runs, for the whole session."""
    with moto_server() as url:
        yield url


def pytest_terminal_summary(terminalreporter) -> None:
    """The wall time of every ansible run (early ones ran concurrently with the quick tests)."""
    if TIMINGS:
        terminalreporter.section("aws: ansible runs")
        for line in TIMINGS:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that wait for the long playbook runs last: those runs start with the session (early), so
    the quick tests run meanwhile. The order within each module is kept."""
    items.sort(key=lambda item: getattr(item.module, "start_early", None) is not None)


@pytest.fixture(scope="session", autouse=True)
def early(request: pytest.FixtureRequest) -> dict[str, object]:
    """Start the long subprocesses of the selected test modules together, at the start of the session.

    A test module may define start_early(request) -> handle; its tests find the handle under the module name.
    On 2 cores the playbook runs leave CPU idle (they mostly wait on one process at a time): this fills it.
    """
    modules = {item.module.__name__: item.module for item in request.session.items}
    return {
        name: module.start_early(request) for name, module in sorted(modules.items()) if hasattr(module, "start_early")
    }


@pytest.fixture(scope="session")
def aws_env() -> dict[str, str]:
    """Environment of the ansible runs: fake credentials, no AWS config of the user, a fresh ANSIBLE_HOME."""
    ansible_home = ROOT / ".state" / "ansible" / f"aws-tests-{os.getpid()}"
    shutil.rmtree(ansible_home, ignore_errors=True)
    ansible_home.mkdir(parents=True)
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        ANSIBLE_HOME=str(ansible_home),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_LOCAL_TEMP=str(ansible_home / "tmp"),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(ansible_home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(ansible_home / "no-aws-credentials"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@pytest.fixture(scope="session")
def ansible(aws_env: dict[str, str]) -> Ansible:
    return Ansible(aws_env)


@pytest.fixture(scope="session")
def aws(moto_url: str):
    """aws('ec2') -> boto3 client on the moto server (home region unless given)."""

    def make(service: str, region: str = REGION):
        return client(moto_url, service, region)

    return make


@pytest.fixture(scope="session")
def test_vars(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extra-vars file of the offline runs, once the prerequisites exist in moto (see moto_prerequisites)."""
    path = tmp_path_factory.mktemp("aws") / "moto-vars.yml"
    path.write_text(yaml.safe_dump(moto_prerequisites(moto_url, ADMIN_CIDRS, CA_KEY)))
    return path
