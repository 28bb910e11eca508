"""The scenario's host-parametrised tests run on the database nodes only (ha-aws is the moto container, ha-wit
the witness, tested in test_witness.py)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def elsewhere(item: pytest.Item) -> bool:
        return "ha-aws" in item.nodeid or "ha-wit" in item.nodeid

    skipped = [item for item in items if elsewhere(item)]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not elsewhere(item)]
