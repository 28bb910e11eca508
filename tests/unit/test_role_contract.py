"""Every role keeps the project's contract: prefixed variables, each described in its argument specs, a README."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "roles").iterdir() if p.is_dir())


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_readme_meta_and_specs(role: Path) -> None:
    for name in ("README.md", "meta/main.yml", "meta/argument_specs.yml", "defaults/main.yml", "tasks/main.yml"):
        assert (role / name).is_file(), f"{role.name} lacks {name}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_are_prefixed_and_specified(role: Path) -> None:
    defaults = _load(role / "defaults/main.yml")
    specs = _load(role / "meta/argument_specs.yml")["argument_specs"]["main"]
    options = specs.get("options", {})
    assert specs.get("short_description"), f"{role.name}: argument spec needs a short_description"
    for name in defaults:
        assert name.startswith(f"{role.name}_"), f"{role.name}: default {name} lacks the role prefix"
        assert name in options, f"{role.name}: default {name} is not in meta/argument_specs.yml"
    for name, option in options.items():
        assert name.startswith(f"{role.name}_"), f"{role.name}: option {name} lacks the role prefix"
        assert option.get("description"), f"{role.name}: option {name} has no description"
        assert option.get("type"), f"{role.name}: option {name} has no type"


def _tasks(node: object) -> list[dict]:
    """Every task of a task file, blocks' (block, rescue, always) included."""
    found: list[dict] = []
    for task in node if isinstance(node, list) else []:
        if isinstance(task, dict):
            found.append(task)
            for key in ("block", "rescue", "always"):
                found.extend(_tasks(task.get(key)))
    return found


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_apt_waits_for_the_daily_timers(role: Path) -> None:
    """A converge on a fresh host can meet apt's own daily run (apt-daily, unattended-upgrades) holding the dpkg
    lock for minutes (the lab once failed so, after apt's default 60 s): every apt task waits up to 10 minutes."""
    for path in sorted((role / "tasks").glob("*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text())):
            apt = task.get("ansible.builtin.apt")
            if apt is not None:
                assert apt.get("lock_timeout", 0) >= 600, f"{path.relative_to(role.parent)}: {task.get('name')}"
