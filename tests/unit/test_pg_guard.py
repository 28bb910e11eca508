"""The single-primary guard's decisions (roles/repmgr/files/usr/local/sbin/isikhnas-pg-guard), without a cluster:
which node steps down when two act as primaries, when isolation fences, when a node may start as a primary, and
that the guard fails closed (an unreadable local state of a running primary is not "not a primary")."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, load_script

GUARD = PROJECT / "roles/repmgr/files/usr/local/sbin/isikhnas-pg-guard"


g = load_script(GUARD, "isikhnas_pg_guard")
ADDR = {"db1": "10.0.1.11", "db2": "10.0.1.12", "db3": "10.0.2.13", "wit": "10.0.3.14"}


def config(node: str, tmp: Path, witness: bool = True, **extra: Any) -> Any:
    names = [n for n in ("db1", "db2", "db3") if n != node]
    peers = [g.Peer(n, ADDR[n], 5432) for n in names]
    if witness:
        peers.append(g.Peer("wit", ADDR["wit"], 5432, witness=True))
    fields: dict[str, Any] = {
        "node": node,
        "address": ADDR[node],
        "port": 5432,
        "peers": tuple(peers),
        "order": ("db1", "db2", "db3"),
        "marker": str(tmp / "fenced"),
        "data_dir": str(tmp / "data"),
        "bin_dir": "/usr/lib/postgresql/15/bin",
        "unit": "postgresql@15-main",
        "socket_dir": "/var/run/postgresql",
        "peer_conninfo": "user=repmgr dbname=repmgr sslmode=verify-full",
        "start_wait": 0.0,
    }
    fields.update(extra)
    return g.Config(**fields)


def primary(name: str, followers: int = 0, timeline: int = 1) -> Any:
    return g.NodeState(name, True, "answered", answered=True, primary=True, timeline=timeline, followers=followers)


def standby(name: str, upstream: str = "", timeline: int = 1) -> Any:
    return g.NodeState(name, True, "answered", answered=True, timeline=timeline, upstream=ADDR.get(upstream, ""))


def lost(name: str) -> Any:
    return g.NodeState(name, False, "timed out")


def up(name: str) -> Any:
    return g.NodeState(name, True, "witness, connected" if name == "wit" else "refused (host up, PostgreSQL down)")


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    cfg = config("db1", tmp_path)
    raw = {
        **{k: v for k, v in cfg.__dict__.items() if k not in ("peers", "order")},
        "peers": [p.__dict__ for p in cfg.peers],
        "order": list(cfg.order),
    }
    path = tmp_path / "guard.json"
    path.write_text(json.dumps(raw))
    assert g.Config.load(str(path)) == cfg
    assert cfg.members == 4


def test_parse_state_reads_psql_output() -> None:
    assert g.parse_state("db2", "f|3|2|\n") == primary("db2", followers=2, timeline=3)
    assert g.parse_state("db3", "t|3|0|10.0.1.12\n").upstream == "10.0.1.12"
    assert not g.parse_state("db3", "garbage").answered


def test_state_query_filters_receivers_by_age_only_when_asked() -> None:
    guard = g.state_query(5)
    assert "last_msg_receipt_time > now() - make_interval(secs => 5.0)" in guard
    validation = g.state_query(None)
    assert "last_msg_receipt_time" not in validation
    assert "status = 'streaming'" in validation
    # the same four columns either way, so parse_state reads both
    assert guard.count(",") == validation.count(",")


# -- two primaries: who steps down -------------------------------------------------------------------------------


def test_a_primary_promoted_beside_a_followed_one_steps_down(tmp_path: Path) -> None:
    """The one-link cut: db1 promoted itself (timeline 2, nobody follows) while db3 still streams from db2, which
    db1 cannot reach. db1 must step down; db2, seeing only its follower, must not."""
    me = primary("db1", followers=0, timeline=2)
    winner = g.outranked_by(config("db1", tmp_path), me, [lost("db2"), standby("db3", "db2"), up("wit")])
    assert winner is not None
    assert (winner.name, winner.followers, winner.how) == ("db2", 1, "streamed from by db3")
    db2 = primary("db2", followers=1, timeline=1)
    assert g.outranked_by(config("db2", tmp_path), db2, [lost("db1"), standby("db3", "db2"), up("wit")]) is None


def test_of_two_primaries_that_see_each_other_the_followed_one_stays(tmp_path: Path) -> None:
    db1, db2 = primary("db1", 0, timeline=2), primary("db2", 1, timeline=1)
    assert g.outranked_by(config("db1", tmp_path), db1, [db2, standby("db3", "db2")]).name == "db2"
    assert g.outranked_by(config("db2", tmp_path), db2, [db1, standby("db3", "db2")]) is None


def test_equal_followers_later_timeline_wins_then_the_node_order(tmp_path: Path) -> None:
    db1, db3 = primary("db1", 0, timeline=2), primary("db3", 0, timeline=3)
    assert g.outranked_by(config("db1", tmp_path), db1, [db3, up("db2")]).name == "db3"
    assert g.outranked_by(config("db3", tmp_path), db3, [db1, up("db2")]) is None
    # same timeline (both promoted from the same one): exactly one of them stays, the earlier in the order
    a, b = primary("db1", 0, 2), primary("db3", 0, 2)
    assert g.outranked_by(config("db1", tmp_path), a, [b, up("db2")]) is None
    assert g.outranked_by(config("db3", tmp_path), b, [a, up("db2")]).name == "db1"


def test_followers_of_this_node_and_a_witness_are_no_rival(tmp_path: Path) -> None:
    me = primary("db2", followers=2, timeline=4)
    peers = [standby("db1", "db2", 4), standby("db3", "db2", 4), g.NodeState("wit", True, "witness, connected")]
    assert g.claims(config("db2", tmp_path), me, peers) == [g.Claim("db2", 2, 4, "this node")]


def test_a_standby_with_a_stale_or_no_receiver_is_no_evidence(tmp_path: Path) -> None:
    """Right after a failover the other standby has no fresh receiver yet (the query only reports a sender heard
    from within the replication timeout): the new primary is not fenced for it."""
    me = primary("db1", followers=0, timeline=2)
    assert g.outranked_by(config("db1", tmp_path), me, [lost("db2"), standby("db3", ""), up("wit")]) is None


# -- the watch loop ----------------------------------------------------------------------------------------------


def test_isolation_fences_after_the_timeout_only_when_armed(tmp_path: Path) -> None:
    cfg = config("db2", tmp_path, isolation_timeout=5.0)
    me = primary("db2", followers=0)
    cut = [lost("db1"), lost("db3"), lost("wit")]
    alone = g.Watch(cfg)
    for now in range(10):  # no standby ever registered or streamed: a lone node is never fenced for it
        assert alone.step(me, True, lambda: cut, float(now), lambda: False) == ""
    watch = g.Watch(cfg)
    assert watch.step(me, True, lambda: cut, 0.0) == ""
    assert watch.step(me, True, lambda: cut, 4.0) == ""
    assert "cut off from the majority" in watch.step(me, True, lambda: cut, 5.0)
    # one peer host answering (db1's PostgreSQL down, its host up) and the witness: a majority, no fencing
    healthy = g.Watch(cfg)
    for now in range(10):
        assert healthy.step(me, True, lambda: [up("db1"), lost("db3"), up("wit")], float(now)) == ""


def test_two_primaries_fence_the_outranked_one_after_the_split_timeout(tmp_path: Path) -> None:
    watch = g.Watch(config("db1", tmp_path, split_timeout=2.0))
    me = primary("db1", 0, timeline=2)
    peers = [lost("db2"), standby("db3", "db2"), up("wit")]
    assert watch.step(me, True, lambda: peers, 0.0) == ""
    assert watch.step(me, True, lambda: peers, 1.0) == ""
    reason = watch.step(me, True, lambda: peers, 2.0)
    assert "two primaries" in reason
    assert "db2" in reason


def test_a_rival_that_goes_away_resets_the_clock(tmp_path: Path) -> None:
    watch = g.Watch(config("db1", tmp_path, split_timeout=2.0))
    me = primary("db1", 0, timeline=2)
    rival = [lost("db2"), standby("db3", "db2"), up("wit")]
    following = [lost("db2"), standby("db3", "db1", 2), up("wit")]
    assert watch.step(me, True, lambda: rival, 0.0) == ""
    assert watch.step(me, True, lambda: following, 1.5) == ""
    assert watch.step(me, True, lambda: rival, 2.5) == ""
    assert watch.step(me, True, lambda: rival, 4.0) == ""
    assert watch.step(me, True, lambda: rival, 4.5) != ""


def test_an_unreadable_local_state_of_a_running_primary_fails_closed(tmp_path: Path) -> None:
    """A saturated primary whose own psql times out is still treated as a primary while its postmaster runs."""
    watch = g.Watch(config("db2", tmp_path, isolation_timeout=5.0))
    cut = [lost("db1"), lost("db3"), lost("wit")]
    assert watch.step(primary("db2", 1), True, lambda: cut, 0.0) == ""
    assert watch.step(None, True, lambda: cut, 3.0) == ""
    assert "cut off" in watch.step(None, True, lambda: cut, 6.0)
    stopped = g.Watch(config("db2", tmp_path))
    stopped.step(primary("db2", 1), True, lambda: cut, 0.0)
    for now in (6.0, 12.0):  # the postmaster is gone: nothing to fence
        assert stopped.step(None, False, lambda: cut, now) == ""


def test_a_standby_is_never_fenced(tmp_path: Path) -> None:
    watch = g.Watch(config("db3", tmp_path))
    for now in range(10):
        assert watch.step(standby("db3"), True, lambda: [lost("db1"), lost("db2"), lost("wit")], float(now)) == ""


def test_fence_stops_postgresql_even_when_the_marker_cannot_be_written(tmp_path: Path) -> None:
    cfg = config("db2", tmp_path, marker=str(tmp_path / "missing-dir" / "fenced"))
    calls: list[list[str]] = []

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    g.fence(cfg, "test", run=run)
    assert calls[0][-1] == "stop"
    assert "immediate" in calls[0]
    assert calls[1][-2:] == ["stop", "postgresql@15-main"]
    ok = config("db2", tmp_path)
    g.fence(ok, "primary cut off", run=run)
    assert "primary cut off" in Path(ok.marker).read_text()


# -- may this node start as a primary? ---------------------------------------------------------------------------


def test_start_refused_when_another_node_is_primary_or_ahead(tmp_path: Path) -> None:
    cfg = config("db2", tmp_path)
    verdict, final = g.start_verdict(cfg, 1, [primary("db1", 1, 2), standby("db3", "db1", 2), up("wit")])
    assert final
    assert "db1 is a primary now" in verdict
    verdict, final = g.start_verdict(cfg, 1, [standby("db1", "", 2), standby("db3", "", 1), up("wit")])
    assert final
    assert "timeline 2" in verdict


def test_start_fails_closed_without_a_majority_and_waits_for_silent_peers(tmp_path: Path) -> None:
    cfg = config("db2", tmp_path)
    verdict, final = g.start_verdict(cfg, 1, [lost("db1"), lost("db3"), up("wit")])
    assert not final
    assert "only 2 of 4 members reachable" in verdict
    # up, but its answer cannot be read (the password file was not found: the old check took that for "no primary")
    silent = g.NodeState("db3", True, "host up, no answer: fe_sendauth: no password supplied")
    verdict, _ = g.start_verdict(cfg, 1, [standby("db1"), silent, up("wit")])
    assert "db3 is up but does not say" in verdict


def test_start_allowed_when_a_majority_knows_no_other_primary(tmp_path: Path) -> None:
    """A cleanly stopped (or crashed) primary whose standbys did not promote may come back: nothing else took
    over, so refusing would leave the cluster without a primary."""
    cfg = config("db2", tmp_path)
    assert g.start_verdict(cfg, 3, [standby("db1", "", 3), lost("db3"), up("wit")]) == ("", False)


def write_control(tmp: Path, state: str, timeline: int = 1) -> Any:
    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        out = f"Database cluster state:               {state}\nLatest checkpoint's TimeLineID:       {timeline}\n"
        return subprocess.CompletedProcess(argv, 0, out, "")

    return run


def test_check_allows_a_standby_and_refuses_a_marker_or_an_unreadable_control_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config("db2", tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setattr(g, "probe_peers", lambda _: [standby("db1"), standby("db3"), up("wit")])
    (data / "standby.signal").touch()
    Path(cfg.marker).write_text("2026-01-01T00:00:00Z db2: primary cut off\n")
    assert g.check(cfg) == 0, "a standby may always start (db_rejoin.yml needs that while the marker stays)"
    (data / "standby.signal").unlink()
    assert g.check(cfg) == 1
    assert "fenced by the isolation guard" in capsys.readouterr().err
    Path(cfg.marker).unlink()

    def broken(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "pg_controldata: could not open file")

    monkeypatch.setattr(g.subprocess, "run", broken)
    assert g.check(cfg) == 1
    assert "cannot read this node's control file" in capsys.readouterr().err
    monkeypatch.setattr(g.subprocess, "run", write_control(tmp_path, "in production", 1))
    assert g.check(cfg) == 0
    assert "after an unclean stop" in capsys.readouterr().err
    monkeypatch.setattr(g, "probe_peers", lambda _: [primary("db1", 1, 2), standby("db3", "db1", 2), up("wit")])
    assert g.check(cfg) == 1
    err = capsys.readouterr().err
    assert "db1 is a primary now" in err
    assert "db_rejoin.yml --limit db2" in err


def test_check_waits_for_a_majority_before_refusing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config("db2", tmp_path, start_wait=30.0)
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(g.subprocess, "run", write_control(tmp_path, "shut down", 1))
    rounds = iter([[lost("db1"), lost("db3"), lost("wit")]] * 2 + [[standby("db1"), lost("db3"), up("wit")]])
    monkeypatch.setattr(g, "probe_peers", lambda _: next(rounds))
    slept: list[float] = []
    assert g.check(cfg, sleep=slept.append) == 0
    assert len(slept) == 2


# -- may this standby be promoted (failover validation)? ---------------------------------------------------------


def test_validation_refuses_while_a_peer_still_reaches_the_primary(tmp_path: Path) -> None:
    """The one-link cut: db1 cannot reach db2 (the primary), db3 streams from it and reaches it now."""
    cfg = config("db1", tmp_path)
    peers = [lost("db2"), standby("db3", "db2"), up("wit")]
    verdict = g.validation_verdict(cfg, peers, lambda peer: peer.name == "db3")
    assert "db3 still streams from 10.0.1.12" in verdict
    # the same picture, but db3's receiver is a leftover: db3 cannot reach db2 either (db2 died)
    assert g.validation_verdict(cfg, peers, lambda _: False) == ""
    # db3 could not be asked (overloaded, or cut off since the probe): no promotion, the election is rerun
    assert "could not ask db3" in g.validation_verdict(cfg, peers, lambda _: None)


def test_validation_asks_every_receiver_at_once(tmp_path: Path) -> None:
    """Two receivers (db3 and db4 of a five-node cluster): both are asked, concurrently, not one after the other."""
    cfg = config("db1", tmp_path)
    cfg = dataclasses.replace(
        cfg, peers=(*cfg.peers, g.Peer("db4", "10.0.1.14", 5432, False)), order=(*cfg.order, "db4")
    )
    peers = [lost("db2"), standby("db3", "db2"), standby("db4", "db2"), up("wit")]
    barrier = threading.Barrier(2, timeout=5)

    def reaches(peer: Any) -> bool:
        barrier.wait()  # breaks (and fails the test) unless both questions are asked at the same time
        return False

    assert g.validation_verdict(cfg, peers, reaches) == ""


def test_reaches_upstream_reads_dblinks_answer_and_fails_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config("db1", tmp_path)
    peer = standby("db3", "db2")
    answers = {
        (True, "f\n"): True,
        (True, "t\n"): False,
        (False, 'DETAIL:  connection to server at "10.0.1.12", port 5432 failed: timeout expired'): False,
        (False, 'psql: error: connection to server at "10.0.1.13", port 5432 failed: timeout expired'): None,
        (False, "query timed out"): None,
        (False, "HINT:  No function matches the given name and argument types."): None,
    }
    for reply, expected in answers.items():
        monkeypatch.setattr(g, "psql", lambda *_, reply=reply, **__: reply)
        assert g.reaches_upstream(cfg, peer) is expected, reply


def test_validation_passes_after_a_crash_and_refuses_a_minority_or_a_live_primary(tmp_path: Path) -> None:
    cfg = config("db1", tmp_path)
    never = lambda _: False  # noqa: E731
    assert g.validation_verdict(cfg, [up("db2"), standby("db3"), up("wit")], never) == ""
    assert "only 1 of 4" in g.validation_verdict(cfg, [lost("db2"), lost("db3"), lost("wit")], never)
    assert "db2 answers as a primary" in g.validation_verdict(
        cfg, [primary("db2", 1), standby("db3"), up("wit")], never
    )
