"""Restarts: systemd brings a killed daemon back and nothing is processed twice; the role restarts exactly the
daemons that changed (one for one environment file, for a new release those whose code changed, none on a host
without changes)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import testinfra
from helpers import DAEMONS, Aws, Db, converge, invocations, unit_state, wait_for

EMAILS = 20
PACKAGE = Path(__file__).resolve().parents[3] / "files" / "daemons"


def test_kill_9_mid_message_is_restarted_and_processed_exactly_once(
    aws: Aws, db: Db, worker: testinfra.host.Host
) -> None:
    worker.check_output("systemctl stop isikhnas-processor.service")
    try:
        ses_ids = [
            aws.send_email(f"DIS @-8.{n:02d},115.3 HS CAT={n + 1}/1\n", subject=f"kill {n}") for n in range(EMAILS)
        ]
        # inbound-email turns them into jobs; they wait for the processor
        wait_for(lambda: aws.depth("processing") >= EMAILS, "the jobs on the processing queue")
    finally:
        worker.check_output("systemctl start isikhnas-processor.service")
    message_ids = [f"email:{s}" for s in ses_ids]
    before = unit_state(worker, "processor")

    wait_for(lambda: db.count("field_report", "message_id", message_ids) >= 1, "the first rows", interval=0.05)
    worker.check_output("systemctl kill --kill-whom=main --signal=SIGKILL isikhnas-processor.service")
    at_kill = db.count("field_report", "message_id", message_ids)
    assert at_kill < EMAILS, "the processor was killed after the last message: nothing in flight"

    # systemd restarts it (Restart=always, RestartSec=2): a new process, one more restart counted
    after = wait_for(
        lambda: (
            (s := unit_state(worker, "processor"))["ActiveState"] == "active"
            and s["MainPID"] != before["MainPID"]
            and s
        ),
        "systemd to restart the processor",
        timeout=30,
    )
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert "status=9/KILL" in worker.check_output("journalctl -u isikhnas-processor.service --no-pager -n 200")

    # the messages the killed process held come back after their visibility timeout (10 s) and are processed
    # once: one report, one inbound message, one confirmation each
    wait_for(lambda: db.count("field_report", "message_id", message_ids) == EMAILS, "every report", timeout=120)
    wait_for(lambda: aws.depth("processing") == 0, "the processing queue to drain", timeout=60)
    time.sleep(3)
    assert db.count("field_report", "message_id", message_ids) == EMAILS
    assert db.count("inbound_message", "message_id", message_ids) == EMAILS

    wanted = {f"<{s}@example.org>" for s in ses_ids}

    def confirmations() -> list[str]:
        return [
            m.headers["in-reply-to"]
            for m in aws.sent_emails()
            if m.headers.get("in-reply-to") in wanted and "report accepted" in m.text
        ]

    wait_for(lambda: len(confirmations()) >= EMAILS, "every confirmation email", timeout=120)
    time.sleep(3)
    sent = confirmations()
    assert len(sent) == EMAILS
    assert set(sent) == wanted


def test_converges_restart_only_what_changed(hosts: dict[str, testinfra.host.Host], tmp_path: Path) -> None:
    """Three converges, each checked for which daemons got a new InvocationID (a converge without changes,
    restarting nothing, is step 3's messaging host and the lab's second converge):

    1. one daemon's environment changes: only that daemon restarts; the other host reports changed=0;
    2. a new build of the package (same version) whose only change is in the reporter's module reaches the worker
       (--limit): a new release, and the reporter restarts, not the processor (its code is the same);
    3. converging the original settings and source again: back to the original release, the reporter restarts
       once (new code and environment), the processor not at all; the messaging host reports changed=0 and
       restarts nothing.
    """
    extra = tmp_path / "debug.json"
    extra.write_text(json.dumps({"python_daemons_daemon_environment": {"reporter": {"ISIKHNAS_LOG_LEVEL": "debug"}}}))
    source = tmp_path / "daemons"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", ".*_cache", "build"))
    module = source / "src" / "isikhnas_daemons" / "daemons" / "reporter.py"
    module.write_text(module.read_text() + "# a new build of the reporter for the molecule test\n")
    worker = hosts["daemons-worker"]
    original = worker.file("/opt/isikhnas/current").linked_to

    def restarted(before: dict[str, str]) -> list[str]:
        after = invocations(hosts)
        return sorted(d for d in before if before[d] != after[d])

    try:
        # 1. the reporter's environment
        before = invocations(hosts)
        recap, output = converge("-e", f"@{extra}")
        assert recap["daemons-worker"] == (2, 0), output  # the environment file and the restart
        assert recap["daemons-messaging"] == (0, 0), output
        assert restarted(before) == ["reporter"]
        assert 'ISIKHNAS_LOG_LEVEL="debug"' in worker.file("/etc/isikhnas/reporter.env").content_string

        # 2. a new release on the worker
        before = invocations(hosts)
        recap, output = converge(
            "--limit", "daemons-worker", "-e", f"@{extra}", "-e", f"python_daemons_source_dir={source}"
        )
        assert recap["daemons-worker"][1] == 0, output
        new = worker.file("/opt/isikhnas/current").linked_to
        assert new != original
        assert restarted(before) == ["reporter"]
        for daemon in DAEMONS["daemons-worker"]:
            assert unit_state(worker, daemon)["ActiveState"] == "active"
        # the processor still runs from the release it started in, which is kept
        assert original in worker.check_output("ps -eo args | grep [i]sikhnas-processor")
    finally:
        # 3. back to the original settings and release
        before = invocations(hosts)
        recap, output = converge()
    assert recap["daemons-messaging"] == (0, 0), output
    assert recap["daemons-worker"][1] == 0, output
    assert worker.file("/opt/isikhnas/current").linked_to == original
    assert restarted(before) == ["reporter"]
    assert 'ISIKHNAS_LOG_LEVEL="info"' in worker.file("/etc/isikhnas/reporter.env").content_string
    # both releases are kept (python_daemons_keep_releases: 3)
    assert worker.file(new).is_directory
