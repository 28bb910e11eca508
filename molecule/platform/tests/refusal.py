"""The check every bad-variable case shares: the play failed on every host, named the variable, changed nothing."""

from __future__ import annotations

import re
import subprocess

RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", re.MULTILINE)


def assert_refused_before_any_change(case: str, variable: str, run: subprocess.CompletedProcess[str]) -> None:
    output = run.stdout + run.stderr
    assert run.returncode != 0, f"{case}: the play should fail\n{output}"
    assert variable in output, f"{case}: the message should name {variable}\n{output}"
    recaps = RECAP.findall(output)
    assert recaps, output
    for name, changed, failed in recaps:
        assert changed == "0", f"{case}: {name} changed something before the failure\n{output}"
        assert failed == "1", f"{case}: {name} did not fail\n{output}"
