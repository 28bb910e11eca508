"""tests/run-stages names the slowest Ansible tasks and tests of each stage from its log: profile_tasks' recaps
and pytest's --durations, a task repeated across recaps counted once with its longest time."""

from __future__ import annotations

from conftest import PROJECT, load_script

LOG = """\
TASKS RECAP ********************************************************************
Thursday 03 December 2026  13:16:24 +0000 (0:00:01.744)       0:03:12.250 *****
===============================================================================
postgresql : Install the server, PostGIS and the Python driver Ansible uses -- 63.04s
repmgr : Install boto3 for the promotion hook -------------------------- 16.49s
Gathering Facts --------------------------------------------------------- 2.26s
TASKS RECAP ********************************************************************
postgresql : Install the server, PostGIS and the Python driver Ansible uses -- 5.00s
============================= slowest 10 durations =============================
212.40s call     tests/test_zy_split_brain.py::test_one_link_cut[ha-db1-ha-db2]
3.10s setup    tests/test_replication.py::test_standbys_refuse_writes
ok: [ha-db1] => some task output --- 99s of it is not a recap line
"""


def test_slowest_reads_task_recaps_and_test_durations() -> None:
    found = load_script(PROJECT / "tests" / "run-stages", "run_stages").slowest(LOG, 3)
    assert found == [
        (212.4, "tests/test_zy_split_brain.py::test_one_link_cut[ha-db1-ha-db2]"),
        (63.04, "postgresql : Install the server, PostGIS and the Python driver Ansible uses"),
        (16.49, "repmgr : Install boto3 for the promotion hook"),
    ]


def test_slowest_of_a_log_without_timings_is_empty() -> None:
    assert load_script(PROJECT / "tests" / "run-stages", "run_stages").slowest("PLAY RECAP\nok: [x]\n") == []


FAILED_LOG = """\
TASK [Check the target streams] ****
fatal: [ha-db2]: FAILED! => {"changed": false, "msg": "not streaming"}
FAILED tests/test_zz_failover.py::test_isolation - AssertionError: the witness did not follow in 30 s
FAILED tests/test_zz_failover.py::test_isolation - AssertionError: the witness did not follow in 30 s
ERROR    Verifier failed: 1
ok: [ha-db1]
"""


def test_reasons_name_failed_tests_and_tasks_once_each_in_log_order() -> None:
    found = load_script(PROJECT / "tests" / "run-stages", "run_stages").reasons(FAILED_LOG)
    assert found == [
        'fatal: [ha-db2]: FAILED! => {"changed": false, "msg": "not streaming"}',
        "FAILED tests/test_zz_failover.py::test_isolation - AssertionError: the witness did not follow in 30 s",
        "ERROR    Verifier failed: 1",
    ]


def test_reasons_keep_the_last_lines_cut_to_width() -> None:
    run_stages = load_script(PROJECT / "tests" / "run-stages", "run_stages")
    log = "\n".join(f"fatal: [h{n}]: " + "x" * 400 for n in range(20))
    found = run_stages.reasons(log)
    assert len(found) == run_stages.REASONS
    assert found[-1].startswith("fatal: [h19]")
    assert all(len(line) == run_stages.REASON_WIDTH for line in found)
