"""The production inventory's SSH settings (inventories/production/group_vars/all/ssh.yml), for real.

Ansible connects over SSH with the admin's certificate, checks hosts against the @cert-authority known_hosts
only, and reaches the private host through the bastion. The scenario's two hosts stand in for the fleet: an
inventory in the production layout, with the production group_vars, pointed at them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import APP, BASTION, CA_DIR, PROJECT, Identity


def test_production_ssh_settings_reach_every_host_through_the_bastion(admin: Identity, tmp_path: Path) -> None:
    inventory = tmp_path / "production"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(PROJECT / "inventories/production/group_vars")
    hosts = {
        "all": {
            "children": {
                "fleet": {
                    "children": {
                        "nat": {"hosts": {"bastion-nat1": {"ansible_host": BASTION, "public_ip_address": BASTION}}},
                        "app": {"hosts": {"bastion-app1": {"ansible_host": APP, "private_ip_address": APP}}},
                    }
                }
            }
        }
    }
    (inventory / "hosts.yml").write_text(json.dumps(hosts))
    extra = {
        "production_ssh_user": "ayu",
        "production_ssh_key": str(admin.key),
        "production_bastion_host": BASTION,
        "production_ssh_known_hosts": str(CA_DIR / "known_hosts"),
    }
    run = subprocess.run(
        [
            "ansible",
            "-i",
            str(inventory),
            "fleet",
            "-m",
            "ansible.builtin.command",
            "-a",
            "id -un",
            "-e",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        check=False,
        # Molecule's own configuration turns host key checking off; production keeps it on.
        env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_SSH_PIPELINING": "True"},
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    for name in ("bastion-nat1", "bastion-app1"):
        assert f"{name} | CHANGED | rc=0 >>\nayu" in output, output
