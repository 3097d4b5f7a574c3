"""The scorer's time budget (services/evaluation/scoring/budget.py): one cell's patterns and schema
steps together, and one evaluation's cells together, cached runs included. Each bound is checked
on the seconds the meter was charged, against what the same work costs without a budget."""

from __future__ import annotations

import json

import pytest

from adapters import registry
from services import quotas
from services.evaluation import datasets, scoring, store
from services.evaluation.engine import Evaluation, Spec, Target
from services.evaluation.scoring import budget
from tests.fakes import providers as fake

SLOW = "(a|aa)*$"  # backtracks for ever on a run of a's that ends in b: each search stops at its timeout
RUN = "a" * 60 + "b"
EVIL_SCHEMA = {"type": "string", "allOf": [{"pattern": SLOW}] * 20}  # 20 timeouts, 5 s, without a budget


def test_a_schema_full_of_slow_patterns_costs_one_cells_budget(regex_seconds):
    with budget.metered(0.5) as meter:
        verdict = scoring.json_schema(json.dumps([RUN]), {"type": "array", "items": EVIL_SCHEMA})
    assert not verdict.passed and "too long" in verdict.why
    assert regex_seconds[0] < 1.5  # 20 x 0.25 s without the cell's budget
    assert meter.left() <= 0


def test_a_spent_evaluation_budget_leaves_no_time_to_its_next_cells():
    evaluation = budget.Meter(0.2)
    with budget.metered(budget.CELL_S, evaluation):
        for _ in range(3):  # each gets what is left of the evaluation's 0.2 s, until nothing is
            assert scoring.regex(RUN, SLOW).why == "pattern took too long"
    with budget.metered(budget.CELL_S, evaluation) as cell:
        assert scoring.regex(RUN, SLOW).why == "pattern took too long"
        assert scoring.regex("abc", "b").passed is False  # no time left: not even a fast pattern runs
    assert cell.spent == 0.0 and evaluation.spent < 0.6


@pytest.fixture
def echo(monkeypatch):
    registry.register(fake.provider())
    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_PUBLIC_SCORING_SECONDS", "1")
    monkeypatch.setattr(quotas, "_quotas", None)
    monkeypatch.setenv("FMG_PUBLIC_ALLOW_UNPRICED", "1")
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "1000")
    yield
    registry.unregister(fake.NAME)


@pytest.fixture
def regex_seconds(monkeypatch):
    """The seconds every regex search really took, measured outside the budget's own meters."""
    import time

    from services.evaluation.scoring import text

    spent = [0.0]
    original = text._compile

    class Timed:
        def __init__(self, compiled):
            self.compiled = compiled

        def search(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return self.compiled.search(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

    monkeypatch.setattr(text, "_compile", lambda pattern, flags: Timed(original(pattern, flags)))
    return spent


def test_an_evaluation_stops_scoring_when_its_budget_is_spent_and_so_does_its_cached_rerun(echo, regex_seconds):
    items = tuple(datasets.Item(id=str(i), input=f"{RUN} {i}", reference=SLOW) for i in range(16))
    spec = Spec(datasets.Dataset("slow", "chat", items, "slow patterns", "regex"), (Target(fake.NAME),))
    first = Evaluation(spec)
    first.run()
    assert regex_seconds[0] < 2.5  # 16 x 0.25 s = 4 s without the evaluation's budget (1 s)
    regex_seconds[0] = 0.0
    again = Evaluation(spec)
    again.run()  # every reply from the cache: the scorer still runs, and is still bounded
    assert again.cache_hits == 16 and regex_seconds[0] < 2.5
    assert {cell.why for cell in store.cells(again.id)} == {"pattern took too long"}
