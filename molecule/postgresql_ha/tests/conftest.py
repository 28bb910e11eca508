"""The scenario's host-parametrised tests run on the database nodes only (ha-aws is the moto container)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skipped = [item for item in items if "ha-aws" in item.nodeid]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if "ha-aws" not in item.nodeid]
