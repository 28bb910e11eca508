"""Helpers of the offline AWS tests: constants, boto3 clients on moto, and ansible subprocess runs.

Also a command for running the AWS playbooks by hand (or in the lab) against a moto server:

    .state/venv/bin/python tests/aws/aws_helpers.py http://127.0.0.1:4566 > .state/moto-vars.yml
    ansible-playbook playbooks/aws_infrastructure.yml -e @.state/moto-vars.yml
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
REGION = "ap-southeast-3"
BACKUP_REGION = "ap-southeast-1"
PREFIX = "isikhnas-production"
ADMIN_CIDRS = ["203.0.113.0/24", "198.51.100.7/32"]
# "<run>: <seconds>s (rc=<code>)" of every ansible run of the session, in the order they were collected.
TIMINGS: list[str] = []
CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0d2cvk0m8bWqY3zRk6tOfrJkW0sXxj4hR1aX0y7S3D isikhnas-user-ca"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server (from the venv) on a free 127.0.0.1 port; yields its URL and stops it afterwards."""
    port = free_port()
    log_dir = ROOT / ".state" / "moto"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"moto-{port}.log", "w")  # noqa: SIM115 - closed below
    env = {
        **os.environ,
        # AWS managed policies (the AWS Backup service role attaches two) only exist in moto when loaded.
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    }
    server = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                log.close()
                raise RuntimeError(f"moto_server did not start, see {log.name}") from None
            time.sleep(0.3)
    try:
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@dataclass
class Run:
    """One ansible run: its command line, exit code, output and wall time."""

    args: list[str]
    rc: int
    output: str
    seconds: float

    @property
    def recap(self) -> dict[str, int]:
        return self.host_recap("localhost")

    def host_recap(self, host: str) -> dict[str, int]:
        """The PLAY RECAP counters (ok, changed, failed, ...) of one host."""
        match = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", self.output, re.MULTILINE)
        assert match, f"no PLAY RECAP of {host} in the output of {' '.join(self.args)}:\n{self.output[-3000:]}"
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}

    def host_failure(self, host: str) -> str:
        """The first failure report of one host: the ``[ERROR]: Task failed`` block Ansible prints just before the
        host's ``fatal: [host]: FAILED!`` line (``failed: [host] (item=...)`` in a loop), that line and its indented
        result; empty if the host did not fail."""
        lines = self.output.splitlines()
        result = re.compile(r"^(ok|changed|skipping|failed|fatal): \[|^TASK \[")
        own = re.compile(rf"^(fatal: \[{re.escape(host)}\]: FAILED!|failed: \[{re.escape(host)}\] \(item=)")
        failed = next((i for i, line in enumerate(lines) if own.match(line)), None)
        if failed is None:
            return ""
        start = failed
        while start > 0 and not result.match(lines[start - 1]):
            start -= 1
            if lines[start].startswith("[ERROR]: Task failed"):
                break
        else:
            start = failed  # no [ERROR] block of its own: the result line alone
        end = failed + 1
        while end < len(lines) and lines[end].startswith(" "):
            end += 1
        return "\n".join(lines[start:end])

    def task_results(self, task: str) -> list[str]:
        """Result lines (ok/changed/skipping/failed) printed under the task whose name contains ``task``."""
        lines, inside = [], False
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                inside = task in line
            elif inside and re.match(r"^(ok|changed|skipping|failed|fatal):", line):
                lines.append(line)
        return lines

    def explain(self) -> str:
        return f"{' '.join(self.args)} -> rc={self.rc}\n{self.output[-6000:]}"


@dataclass
class Started:
    """A running ansible command. A thread drains its output as it comes (a full pipe would stall a run that is
    started early and collected late) and notes when it ends, so the reported time is the run's own."""

    command: list[str]
    process: subprocess.Popen
    began: float
    ended: float = 0.0
    output: str = ""

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        self.output = self.process.stdout.read()
        self.process.wait()
        self.ended = time.monotonic()


class Ansible:
    """Runs ansible-playbook / ansible-inventory from the project root with a per-session ANSIBLE_HOME."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def start(self, *args: str, env: dict[str, str] | None = None) -> Started:
        command = [str(VENV_BIN / args[0]), *args[1:]]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return Started(command, process, time.monotonic())

    def finish(self, started: Started, label: str = "") -> Run:
        started.reader.join(timeout=1800)
        run = Run(started.command, started.process.returncode, started.output, started.ended - started.began)
        shown = label or " ".join(Path(a).name if a.startswith("/") else a for a in started.command[1:4])
        # The whole output is kept next to the run's ANSIBLE_HOME, for reading after the session.
        (Path(self.env["ANSIBLE_HOME"]) / f"{re.sub(r'[^a-z0-9]+', '-', shown.lower())}.log").write_text(run.output)
        # Timing of every run: listed at the end of the session (conftest), and printed here for pytest -s.
        TIMINGS.append(f"{shown}: {run.seconds:.1f}s (rc={run.rc})")
        print(f"[aws tests] {TIMINGS[-1]}", file=sys.stderr, flush=True)
        return run

    def run(self, *args: str, env: dict[str, str] | None = None, label: str = "") -> Run:
        return self.finish(self.start(*args, env=env), label)


def client(moto_url: str, service: str, region: str = REGION):
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def moto_prerequisites(url: str, admin_cidrs: list[str], ca_key: str) -> dict:
    """Create in a moto server what a deployment has before its first run; return the extra vars to run with.

    Prerequisites of a real deployment too: the ACM certificates (the load balancer's region, and us-east-1 for
    CloudFront) and a Debian image (here registered under the moto account). Three moto differences need a hand,
    each asserted in test_moto_limitations.py:
    - the backup vaults are created here: amazon.aws.backup_vault looks a vault up first and only copes with
      AWS's AccessDeniedException for a missing vault, while moto answers ResourceNotFoundException;
    - moto has no backup selections, so aws_backup_assign_resources is false;
    - moto does not return the load balancer's drop-invalid-header attribute, so that setting is left alone.
    """
    certificates = {}
    for region, variable in ((REGION, "aws_compute_alb_certificate_arn"), ("us-east-1", "aws_cdn_certificate_arn")):
        certificates[variable] = client(url, "acm", region).request_certificate(
            DomainName="isikhnas.example.org",
            SubjectAlternativeNames=["*.isikhnas.example.org"],
            ValidationMethod="DNS",
        )["CertificateArn"]
    client(url, "ec2").register_image(
        Name="debian-12-amd64-20261101-1234",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
        VirtualizationType="hvm",
    )
    client(url, "backup").create_backup_vault(BackupVaultName=PREFIX)
    client(url, "backup", BACKUP_REGION).create_backup_vault(BackupVaultName=f"{PREFIX}-copy")
    return {
        "aws_common_endpoint_url": url,
        "aws_common_admin_cidrs": admin_cidrs,
        "aws_common_ami_owner": "123456789012",
        "aws_common_ssh_ca_public_key": ca_key,
        "aws_backup_assign_resources": False,
        "aws_compute_alb_drop_invalid_headers": False,
        "aws_teardown_confirm": PREFIX,
        **certificates,
    }


if __name__ == "__main__":
    import yaml

    print(yaml.safe_dump(moto_prerequisites(sys.argv[1], ADMIN_CIDRS, CA_KEY)), end="")
