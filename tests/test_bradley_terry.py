"""Bradley-Terry ratings from blind votes: recovery of known strengths, ties, the prior, order
independence (where Elo is not), bootstrap intervals, and the columns on the leaderboard."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from adapters.types import Task
from services.comparisons import bradley_terry as bt
from services.comparisons import leaderboard

C = Task.COMPLETION
TRUE = {"a": 1200.0, "b": 1100.0, "c": 1000.0, "d": 900.0, "e": 800.0}  # mean 1000, as fitted ratings are


@pytest.fixture(autouse=True)
def db(tmp_path, monkeypatch):
    path = tmp_path / "leaderboard.sqlite3"
    monkeypatch.setenv("FMG_LEADERBOARD", str(path))
    return path


def simulate(n: int, seed: int, true: dict[str, float] = TRUE) -> list[bt.Vote]:
    """`n` two-target votes drawn from a Bradley-Terry model with Elo-scale strengths `true`."""
    rng = np.random.default_rng(seed)
    names = list(true)
    votes: list[bt.Vote] = []
    for _ in range(n):
        i, j = rng.choice(len(names), size=2, replace=False)
        a, b = names[i], names[j]
        p_a = 1.0 / (1.0 + 10.0 ** ((true[b] - true[a]) / 400.0))
        votes.append(([a, b], a if rng.random() < p_a else b))
    return votes


def test_recovers_known_strengths_from_simulated_votes():
    fitted = bt.fit_votes(simulate(4000, seed=1))
    assert list(fitted) == ["a", "b", "c", "d", "e"]  # best first, in the true order
    assert sum(fitted.values()) / len(fitted) == pytest.approx(1000.0)
    for name, rating in fitted.items():
        assert rating == pytest.approx(TRUE[name], abs=30.0), name  # about 3 standard errors at 4,000 votes


def test_the_scale_and_the_prior_of_one_virtual_draw():
    # a beats b n times. By symmetry a sits at +t logits and b at -t, where t maximises
    # n log s(2t) + log s(t) + log s(-t) (each has half a win and half a loss against the reference at 0):
    # n s(-2t) = s(t) - 1/2. Solved here by bisection; the rating gap is 2t * 400 / ln 10.
    n = 5

    def excess(t: float) -> float:
        return n / (1 + math.exp(2 * t)) - (1 / (1 + math.exp(-t)) - 0.5)

    lo, hi = 0.0, 20.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    fitted = bt.fit_votes([(["a", "b"], "a")] * n)
    assert fitted["a"] == pytest.approx(1000 + lo * 400 / math.log(10), abs=1e-6)
    assert fitted["b"] == pytest.approx(1000 - lo * 400 / math.log(10), abs=1e-6)


def test_a_target_with_only_wins_or_only_losses_gets_a_finite_rating():
    votes = [(["champ", "x", "y"], "champ")] * 30 + [(["x", "y"], "x"), (["x", "y"], "y")] * 5
    votes += [(["dud", "x"], "x")] * 10
    fitted = bt.fit_votes(votes)
    assert all(math.isfinite(r) for r in fitted.values())
    ranked = list(fitted)
    assert ranked[0] == "champ" and ranked[-1] == "dud"
    assert fitted["champ"] - fitted["x"] < 1500  # held back by the prior, not run off to infinity
    intervals = bt.bootstrap(votes, resamples=50)
    assert all(math.isfinite(v) for pair in intervals.values() for v in pair)


def test_a_win_beats_every_other_target_and_says_nothing_about_the_losers():
    fitted = bt.fit_votes([(["a", "b", "c"], "a")])
    assert fitted == bt.fit([("a", "b", 1.0), ("a", "c", 1.0)])
    assert fitted["b"] == pytest.approx(fitted["c"]) and fitted["a"] > fitted["b"]
    with pytest.raises(ValueError, match="not one of"):
        bt.expand((["a", "b"], "z"))


def test_a_tie_is_half_a_win_each_way_between_every_pair():
    assert bt.expand((["a", "b", "c"], None)) == [("a", "b", 0.5), ("a", "c", 0.5), ("b", "c", 0.5)]
    assert bt.fit_votes([(["a", "b", "c"], None)]) == pytest.approx({"a": 1000.0, "b": 1000.0, "c": 1000.0})
    # one win each way is the same evidence as two draws
    split = bt.fit_votes([(["a", "b"], "a"), (["a", "b"], "b"), (["a", "c"], "a")])
    drawn = bt.fit_votes([(["a", "b"], None), (["a", "b"], None), (["a", "c"], "a")])
    assert drawn == pytest.approx(split, abs=1e-9)
    # draws pull a clear winner back toward its opponent
    wins = [(["a", "b"], "a")] * 4
    gap = bt.fit_votes(wins)
    narrower = bt.fit_votes([*wins, (["a", "b"], None), (["a", "b"], None)])
    assert 0 < narrower["a"] - narrower["b"] < gap["a"] - gap["b"]


def test_the_fit_and_its_intervals_do_not_depend_on_the_order_of_the_votes():
    votes = simulate(300, seed=2) + [(["a", "b", "c"], None)] * 5 + [(["c", "d", "e"], "e")] * 5
    shuffled = list(votes)
    random.Random(3).shuffle(shuffled)
    assert shuffled != votes
    assert bt.fit_votes(shuffled) == pytest.approx(bt.fit_votes(votes), abs=1e-9)
    assert bt.bootstrap(shuffled, resamples=50) == bt.bootstrap(votes, resamples=50)


def test_intervals_contain_the_estimate_and_narrow_with_more_votes():
    few, many = simulate(200, seed=4), simulate(3000, seed=5)
    widths = []
    for votes in (few, many):
        fitted, intervals = bt.fit_votes(votes), bt.bootstrap(votes, resamples=200, seed=0)
        assert set(intervals) == set(fitted)
        for name, (low, high) in intervals.items():
            assert low < fitted[name] < high, name
        widths.append({name: high - low for name, (low, high) in intervals.items()})
    for name in TRUE:
        assert widths[1][name] < 0.6 * widths[0][name], name  # 15x the votes: about 1/sqrt(15) = 0.26 as wide


def test_interval_width_matches_the_sampling_error_of_all_the_votes():
    """Each resample draws as many votes as there are: one that drew half of them would give
    intervals sqrt(2) too wide, which the relative checks above (narrowing, containment) miss."""
    n, wins = 400, 240
    votes: list[bt.Vote] = [(["a", "b"], "a")] * wins + [(["a", "b"], "b")] * (n - wins)
    low, high = bt.bootstrap(votes, resamples=1000, seed=1)["a"]
    p = wins / n
    # a's rating is half the fitted gap; the gap's standard error is 1 / sqrt(n p (1 - p)) logits
    expected = 2 * 1.96 * bt.SCALE * (1 / math.sqrt(n * p * (1 - p))) / 2
    assert (high - low) / expected == pytest.approx(1.0, abs=0.15)


def test_bootstrap_is_seeded():
    votes = simulate(100, seed=6)
    assert bt.bootstrap(votes, resamples=40, seed=1) == bt.bootstrap(votes, resamples=40, seed=1)
    assert bt.bootstrap(votes, resamples=40, seed=1) != bt.bootstrap(votes, resamples=40, seed=2)
    assert bt.bootstrap([]) == {} and bt.fit([]) == {}


def test_shuffling_the_stored_votes_changes_elo_but_not_bradley_terry(tmp_path, monkeypatch):
    votes = simulate(60, seed=7) + [(["a", "e"], None)] * 3
    shuffled = list(votes)
    random.Random(8).shuffle(shuffled)
    boards = []
    for name, order in (("in-order", votes), ("shuffled", shuffled)):
        monkeypatch.setenv("FMG_LEADERBOARD", str(tmp_path / f"{name}.sqlite3"))
        for n, (targets, winner) in enumerate(order):
            leaderboard.record_vote(C, f"{name}-{n}", targets, winner)
        boards.append({s.target: s for s in leaderboard.standings(C)})
    first, second = boards
    assert max(abs(first[t].rating - second[t].rating) for t in TRUE) > 1.0  # Elo remembers the order
    for target in TRUE:
        one, two = first[target].bt, second[target].bt
        assert one is not None and two is not None
        assert one.rating == pytest.approx(two.rating, abs=1e-9)
        assert (one.low, one.high) == pytest.approx((two.low, two.high), abs=1e-9)
        assert (first[target].wins, first[target].losses) == (second[target].wins, second[target].losses)


def test_bt_standings_come_from_the_votes_table_and_follow_new_votes():
    assert leaderboard.bt_standings(C) == {}
    leaderboard.record_vote(C, "v1", ["a", "b", "c"], "a")
    leaderboard.record_vote(C, "v2", ["b", "c"], None)
    first = leaderboard.bt_standings(C)
    assert next(iter(first)) == "a"
    assert first["a"].rating == pytest.approx(bt.fit_votes([(["a", "b", "c"], "a"), (["b", "c"], None)])["a"])
    leaderboard.record_vote(C, "v3", ["a", "c"], "c")
    leaderboard.record_vote(C, "v4", ["a", "c"], "c")
    second = leaderboard.bt_standings(C)
    assert second["c"].rating > first["c"].rating and second["a"].rating < first["a"].rating
    assert leaderboard.bt_standings(Task.CAPTIONING) == {}


def test_leaderboard_rows_and_api_carry_the_bt_columns():
    from demos import compare  # imports Gradio

    for n, (targets, winner) in enumerate(simulate(40, seed=9)):
        leaderboard.record_vote(C, f"r{n}", targets, winner)
    table = leaderboard.standings(C)
    strengths = leaderboard.bt_standings(C)
    assert leaderboard.COLUMNS[:7] == ["rank", "target", "rating", "votes", "wins", "ties", "losses"]
    assert leaderboard.COLUMNS[7:] == ["bt rating", "bt 95% low", "bt 95% high"]
    for row, standing in zip(leaderboard.rows(table), table, strict=True):
        assert len(row) == len(leaderboard.COLUMNS)
        record = dict(zip(leaderboard.COLUMNS, row, strict=True))
        assert record["rating"] == round(standing.rating, 1)  # Elo, as before
        bt_fit = strengths[standing.target]
        assert (record["bt rating"], record["bt 95% low"], record["bt 95% high"]) == (
            round(bt_fit.rating, 1),
            round(bt_fit.low, 1),
            round(bt_fit.high, 1),
        )
        assert record["bt 95% low"] <= record["bt rating"] <= record["bt 95% high"]
    api = compare.leaderboard_api("completion")
    assert [row["target"] for row in api] == [s.target for s in table]  # still best Elo first
    assert all(set(row) == set(leaderboard.COLUMNS) for row in api)
    assert {row["target"]: row["bt rating"] for row in api} == {
        name: round(s.rating, 1) for name, s in strengths.items()
    }
