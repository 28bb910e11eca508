"""pg_hba.conf as role `postgresql` renders it for the lab's database nodes: every consumer of the lab reaches its
own database as its own user from its tier's hosts, the replication user comes only from the database nodes, and
the role refuses a client entry that names the replication user or a database or user it does not manage."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT, ansible_env

BIN = Path(sys.executable).parent
TEMPLATE = PROJECT / "roles/postgresql/templates/etc/postgresql/version/cluster/pg_hba.conf.j2"
PLAYBOOK = """
- name: Render pg_hba.conf as role postgresql does, on the controller
  hosts: db1
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: Validate the role's variables (and load its defaults)
      ansible.builtin.include_role:
        name: postgresql
        tasks_from: validate.yml
        public: true
    - name: Render
      ansible.builtin.copy:
        content: "{{{{ lookup('ansible.builtin.template', '{template}') }}}}"
        dest: "{dest}"
        mode: "0600"
"""

# Who connects to the lab's cluster (inventories/lab/group_vars): tier hosts, database, user.
LAB_CONSUMERS = [
    (["web1", "web2"], "isikhnas", "isikhnas_app"),  # web.yml: webapp_db_*, apache_health_db_dsn
    (["wiki1"], "isikhnas_wiki", "isikhnas_wiki"),  # wiki.yml: mediawiki_db_*, apache_health_db_dsn
    (["messaging1", "processing1", "processing2", "reporting1"], "isikhnas_pipeline", "pipeline"),  # pipeline.yml
]
CONTROLLER = "172.30.0.1"  # postgresql_hba_extra: bench/ and tests/lab read the pipeline's database


def run_playbook(tmp: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    dest = tmp / "pg_hba.conf"
    playbook = tmp / "render.yml"
    playbook.write_text(PLAYBOOK.format(template=TEMPLATE, dest=dest))
    run = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(PROJECT / "inventories/lab"),
            "-e",
            "ansible_connection=local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"lab_security_dir={tmp / 'lab'}",  # throwaway lab secrets
            *extra,
            str(playbook),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT,
        env=ansible_env(tmp),
    )
    return run, dest


def names(field: str) -> list[str]:
    return [name.strip('"') for name in field.split(",")]


def first_match(hba: str, database: str, user: str, address: str, replication: bool = False) -> str | None:
    """The method of the first line matching a TLS connection (None: no line), as PostgreSQL reads the file."""
    for line in hba.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields or fields[0] not in ("host", "hostssl"):
            continue
        _kind, databases, users, network, method = fields
        if ipaddress.ip_address(address) not in ipaddress.ip_network(network):
            continue
        wanted = names(databases)
        if replication and "replication" not in wanted:
            continue
        if not replication and "all" not in wanted and database not in wanted:
            continue
        if "all" not in names(users) and user not in names(users):
            continue
        return method
    return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, lab_inventory: dict) -> tuple[str, dict]:
    run, dest = run_playbook(tmp_path_factory.mktemp("hba"))
    assert run.returncode == 0, run.stdout + run.stderr
    return dest.read_text(), lab_inventory["_meta"]["hostvars"]


def test_every_lab_consumer_reaches_its_database(lab: tuple[str, dict]) -> None:
    hba, hostvars = lab
    for hosts, database, user in LAB_CONSUMERS:
        for host in hosts:
            assert first_match(hba, database, user, hostvars[host]["lab_address"]) == "scram-sha-256", (host, user)
    assert first_match(hba, "isikhnas_pipeline", "pipeline", CONTROLLER) == "scram-sha-256"


def test_replication_user_only_from_the_database_nodes(lab: tuple[str, dict]) -> None:
    hba, hostvars = lab
    for node in ("db1", "db2", "db3"):
        address = hostvars[node]["lab_address"]
        assert first_match(hba, "repmgr", "repmgr", address) == "scram-sha-256"
        assert first_match(hba, "", "repmgr", address, replication=True) == "scram-sha-256"
    clients = [host for hosts, _, _ in LAB_CONSUMERS for host in hosts]
    for address in [hostvars[host]["lab_address"] for host in clients] + [CONTROLLER, "10.1.2.3"]:
        for database in ("isikhnas", "repmgr", "postgres"):
            assert first_match(hba, database, "repmgr", address) == "reject", (address, database)
        assert first_match(hba, "", "repmgr", address, replication=True) == "reject", address


def test_client_lines_name_only_application_databases_and_users(lab: tuple[str, dict]) -> None:
    hba, hostvars = lab
    web1 = hostvars["web1"]["lab_address"]
    for database in ("postgres", "template1", "repmgr"):
        assert first_match(hba, database, "isikhnas_app", web1) is None, database
    assert first_match(hba, "isikhnas", "postgres", web1) is None


@pytest.mark.parametrize(
    ("access", "message"),
    [
        ([{"databases": ["isikhnas"], "users": ["repmgr"]}], "names the replication user repmgr, never allowed here"),
        ([{"databases": ["isikhnas"], "users": ["nobody"]}], "names unknown users: nobody"),
        ([{"databases": ["nothing"], "users": ["pipeline"]}], "names unknown databases: nothing"),
    ],
)
def test_client_entry_naming_replication_user_or_unknown_names_is_refused(
    tmp_path: Path, access: list, message: str
) -> None:
    run, _ = run_playbook(tmp_path, "-e", json.dumps({"postgresql_client_access": access}))
    assert run.returncode != 0
    assert "postgresql_client_access" in run.stdout
    assert message in run.stdout
