"""The witness (ha-wit, zone b): registered with the cluster, repmgrd running against its own small PostgreSQL,
no application data, never fenced or guarded itself, and one more voice in every data node's isolation guard."""

from __future__ import annotations

from cluster import ADDRESSES, node, sql

WITNESS = "ha-wit"


def test_witness_is_registered_and_running() -> None:
    show = node("ha-db1").check_output("runuser -u postgres -- repmgr -f /etc/repmgr.conf cluster show")
    rows = [[cell.strip() for cell in line.split("|")] for line in show.splitlines() if "|" in line]
    witness = [row for row in rows if row[1] == WITNESS]
    assert witness, show
    assert witness[0][2] == "witness", show
    assert "running" in witness[0][3], show
    assert node(WITNESS).service("isikhnas-repmgrd").is_running
    # the witness's own copy of the node records
    records = sql(WITNESS, "SELECT node_id || ':' || type FROM repmgr.nodes ORDER BY node_id", "repmgr").split()
    assert [r.split(":")[0] for r in records] == ["1", "2", "3", "101"]
    assert sorted(r.split(":")[1] for r in records) == ["primary", "standby", "standby", "witness"]
    assert records[-1] == "101:witness"


def test_witness_holds_no_data_and_is_not_fenced() -> None:
    witness = node(WITNESS)
    assert sql(WITNESS, "SELECT pg_is_in_recovery()") == "f"  # its own small database
    assert sql(WITNESS, "SELECT count(*) FROM pg_database WHERE datname = 'isikhnas'") == "0"
    assert not witness.package("postgresql-15-postgis-3").is_installed
    assert not witness.package("postgresql-17-postgis-3").is_installed
    assert not witness.file("/etc/systemd/system/postgresql@.service.d/isikhnas-fence.conf").exists
    assert not witness.service("isikhnas-pg-isolation-guard").is_running
    assert sql(WITNESS, "SHOW synchronous_standby_names") == ""


def test_every_guard_counts_the_witness() -> None:
    for name in ADDRESSES:
        journal = node(name).check_output("journalctl -t isikhnas-pg-isolation-guard --no-pager")
        assert "ha-wit (172.31.8.14:5432, witness)" in journal, name
        assert "majority of 4" in journal, name
    assert "armed: " in node("ha-db1").check_output("journalctl -t isikhnas-pg-isolation-guard --no-pager")
