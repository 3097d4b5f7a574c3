"""The blind-vote leaderboard: Elo arithmetic on a known sequence, ties, one vote per comparison,
per-task tables, and persistence across a restart; each test on SQLite and on PostgreSQL (`db_url`)."""

from __future__ import annotations

import importlib
import sqlite3
import threading

import pytest

from adapters.errors import BadInput
from adapters.types import Task
from services.comparisons import leaderboard

C = Task.COMPLETION


@pytest.fixture(autouse=True)
def db(tmp_path, monkeypatch, db_url):
    path = tmp_path / "votes" / "leaderboard.sqlite3"  # used only when db_url is None (SQLite)
    monkeypatch.setenv("FMG_LEADERBOARD", str(path))
    return path


def ratings(task: Task = C) -> dict[str, float]:
    return {s.target: s.rating for s in leaderboard.standings(task)}


def test_elo_on_a_known_vote_sequence():
    # 1. a beats b and c, all at 1000: each pair expects 0.5, so a gains 32 * 0.5 twice, b and c lose 16 each.
    leaderboard.record_vote(C, "v1", ["a", "b", "c"], "a")
    assert ratings() == {"a": 1032.0, "b": 984.0, "c": 984.0}

    # 2. b beats a (1032 vs 984). b's expected score is 1 / (1 + 10^(48/400)) = 1 / (1 + 1.318257) = 0.431359,
    #    so b gains 32 * (1 - 0.431359) = 18.1965 and a loses as much. c is not in this comparison.
    leaderboard.record_vote(C, "v2", ["a", "b"], "b")
    r = ratings()
    assert r["b"] == pytest.approx(984 + 18.1965, abs=1e-3)
    assert r["a"] == pytest.approx(1032 - 18.1965, abs=1e-3)
    assert r["c"] == 984.0

    # 3. c beats a and b: the a-b pair is not scored (two losers). Against c (984):
    #    a at 1013.8035 expects 1 / (1 + 10^(-29.8035/400)) = 0.542786, so a loses 32 * 0.542784 = 17.3691;
    #    b at 1002.1965 expects 1 / (1 + 10^(-18.1965/400)) = 0.526163, so b loses 32 * 0.526163 = 16.8372;
    #    c gains both: 984 + 17.3691 + 16.8372 = 1018.2064.
    leaderboard.record_vote(C, "v3", ["a", "b", "c"], "c")
    r = ratings()
    assert r["a"] == pytest.approx(1013.8035 - 17.3691, abs=1e-3)
    assert r["b"] == pytest.approx(1002.1965 - 16.8372, abs=1e-3)
    assert r["c"] == pytest.approx(1018.2064, abs=1e-3)
    assert sum(r.values()) == pytest.approx(3000)  # Elo moves points, never makes them

    table = {s.target: (s.votes, s.wins, s.ties, s.losses) for s in leaderboard.standings(C)}
    assert table == {"a": (3, 1, 0, 2), "b": (3, 1, 0, 2), "c": (2, 1, 0, 1)}
    assert [s.target for s in leaderboard.standings(C)] == ["c", "a", "b"]  # best first


def test_ties_are_draws_between_every_pair():
    leaderboard.record_vote(C, "t1", ["a", "b", "c"], None)
    assert ratings() == {"a": 1000.0, "b": 1000.0, "c": 1000.0}  # equal ratings: a draw changes nothing
    assert {s.target: s.ties for s in leaderboard.standings(C)} == {"a": 1, "b": 1, "c": 1}

    leaderboard.record_vote(C, "t2", ["a", "d"], "a")  # a 1016, d 984
    leaderboard.record_vote(C, "t3", ["a", "d"], None)
    # a (1016) expected 1 / (1 + 10^(-32/400)) = 0.545922 against d: a draw costs a 32 * 0.045922 = 1.4695.
    r = ratings()
    assert r["a"] == pytest.approx(1016 - 1.4695, abs=1e-3)
    assert r["d"] == pytest.approx(984 + 1.4695, abs=1e-3)


def test_elo_update_is_pure_and_checks_the_winner():
    before = {"x": 1100.0, "y": 900.0}
    after = leaderboard.elo_update(before, "y")
    assert before == {"x": 1100.0, "y": 900.0}
    assert after["y"] - 900 == pytest.approx(32 * (1 - 1 / (1 + 10 ** (200 / 400))))
    with pytest.raises(BadInput, match="not one of"):
        leaderboard.elo_update(before, "z")


def test_one_vote_per_comparison_and_at_least_two_targets():
    leaderboard.record_vote(C, "once", ["a", "b"], "a")
    with pytest.raises(BadInput, match="already has a vote"):
        leaderboard.record_vote(C, "once", ["a", "b"], "b")
    assert ratings() == {"a": 1016.0, "b": 984.0}
    with pytest.raises(BadInput, match="at least two"):
        leaderboard.record_vote(C, "solo", ["a"], "a")


def test_each_task_has_its_own_table():
    leaderboard.record_vote(C, "c1", ["a", "b"], "a")
    leaderboard.record_vote(Task.CAPTIONING, "k1", ["a", "b"], "b")
    assert ratings(C) == {"a": 1016.0, "b": 984.0}
    assert ratings(Task.CAPTIONING) == {"b": 1016.0, "a": 984.0}
    assert leaderboard.standings(Task.EMBEDDINGS) == []


def test_it_survives_a_restart(db, db_url):
    leaderboard.record_vote(C, "r1", ["local:smol", "openai:gpt-4o-mini"], "openai:gpt-4o-mini")
    importlib.reload(leaderboard)  # a new process would start from the file alone
    assert ratings() == {"openai:gpt-4o-mini": 1016.0, "local:smol": 984.0}
    if db_url is not None:
        return  # the SQLite file's own checks below
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT task, comparison_id, winner FROM votes").fetchall() == [
        ("completion", "r1", "openai:gpt-4o-mini")
    ]
    conn.close()
    leaderboard.record_vote(C, "r2", ["local:smol", "openai:gpt-4o-mini"], None)
    assert {s.target: s.votes for s in leaderboard.standings(C)} == {"openai:gpt-4o-mini": 2, "local:smol": 2}


def test_reading_an_empty_leaderboard_creates_no_file(db):
    assert leaderboard.standings(C) == [] and leaderboard.bt_standings(C) == {} and not db.exists()


def test_concurrent_voters_all_count():
    def cast(n: int) -> None:
        leaderboard.record_vote(C, f"c{n}", ["a", "b", "c"], "abc"[n % 3])

    threads = [threading.Thread(target=cast, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    table = leaderboard.standings(C)
    assert sum(s.wins for s in table) == 24 and all(s.votes == 24 for s in table)
    assert sum(s.rating for s in table) == pytest.approx(3000)
