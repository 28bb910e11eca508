"""Shared fixtures for the controller-side unit tests."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def load_script(path: Path, name: str) -> ModuleType:
    """A Python script of the project without a .py suffix (a role's program, a test tool), imported as `name`."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def project() -> Path:
    return PROJECT


def ansible_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ANSIBLE_HOME", str(tmp / "ansible-home"))
    env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
    return env


@pytest.fixture(scope="session")
def lab_inventory(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The lab inventory as `ansible-inventory --list` sees it."""
    out = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(PROJECT / "inventories/lab"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT,
        env=ansible_env(tmp_path_factory.mktemp("inv")),
    )
    return json.loads(out.stdout)
