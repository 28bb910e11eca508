"""The lab's behaviour, checked from the controller (make lab-test; the lab must be up: make lab).

Everything is reached as a user would: HTTPS on the published loopback ports verified against the lab CA, the
lab's moto container on 127.0.0.1:4566, the database cluster over TLS from the Docker network's gateway."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".state" / "lab"


def ansible_env() -> dict[str, str]:
    return os.environ | {"ANSIBLE_HOME": str(ROOT / ".state" / "ansible" / f"lab-tests-{os.getpid()}")}


@pytest.fixture(scope="session")
def inventory() -> dict[str, Any]:
    """The lab inventory as Ansible resolves it."""
    found = subprocess.run(
        ["ansible-inventory", "-i", str(ROOT / "inventories" / "lab"), "--list"],
        capture_output=True, text=True, check=False, cwd=ROOT, env=ansible_env(),
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    data: dict[str, Any] = json.loads(found.stdout)
    missing = [h for h in data["_meta"]["hostvars"] if subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", h], capture_output=True, text=True, check=False
    ).stdout.strip() != "true"]  # fmt: skip
    if missing:
        pytest.exit(f"the lab is not up ({', '.join(sorted(missing))} not running): run make lab first", 2)
    return data
