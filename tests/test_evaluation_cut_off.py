"""Replies stopped by max_tokens: the provider's finish reason reaches the scorer, marks the cell,
and such a reply passes only where it stated its answer before the cut."""

from __future__ import annotations

import pytest

from adapters import registry
from adapters.errors import BadInput
from adapters.registry import Provider
from adapters.tasks import Completer
from adapters.types import Finish, Task, Usage
from services.evaluation import datasets, report, scoring, specs, store
from services.evaluation.engine import Evaluation, Spec, Target
from services.evaluation.variants import Variant

# item id -> (reply, finish reason); every reference is known
REPLIES = {
    "rambles": ("The shirt costs $40 and has a 25% off rate, so", "length"),  # last number 25 = the reference
    "answered": ("The answer is 30. To see why: $40 minus 25% of", "length"),
    "complete": ("It is 7.", "stop"),
    "broken": ("So far 3 + 4 = 7, and", "stop"),  # stopped on its own: read from its last number
}
ITEMS = (
    datasets.Item("rambles", "q rambles", "25"),
    datasets.Item("answered", "q answered", "30"),
    datasets.Item("complete", "q complete", "7"),
    datasets.Item("broken", "q broken", "7"),
)
DATA = datasets.Dataset("cut", "chat", ITEMS, "four replies", "numeric")
calls: list[str] = []


class Truncating(Completer):
    def _stream(self, messages, params):
        item = str(messages[-1]["content"]).split()[1]
        calls.append(item)
        text, finish = REPLIES[item]
        yield text
        yield Usage(input_tokens=3, output_tokens=len(text.split()))
        yield Finish(finish)


@pytest.fixture(autouse=True)
def truncating():
    registry.register(
        Provider(name="trunc", label="Truncating", adapters={Task.COMPLETION: Truncating}, models=lambda task: "m")
    )
    calls.clear()
    yield
    registry.unregister("trunc")


@pytest.mark.parametrize("variant", [Variant(), Variant("cot", chain_of_thought=True)])
def test_a_cut_off_reply_passes_only_with_an_answer_stated_before_the_cut(variant):
    done = Evaluation(Spec(DATA, (Target("trunc"),), variants=(variant,))).run()
    cells = {c.item: c for c in store.cells(done.id)}
    assert cells["rambles"].score == 0.0 and "cut off at max_tokens before an explicit answer" in cells["rambles"].why
    assert cells["answered"].score == 1.0
    assert cells["complete"].score == 1.0 and "cut_off" not in (cells["complete"].extra or {})
    assert [report.cut_off(cells[i]) for i in REPLIES] == [True, True, False, False]
    row = report.matrix(list(cells.values()))[0]
    assert row.cut_off == 2 and report.table([row])[0][report.MATRIX_COLUMNS.index("cut off")] == 2
    drill = {r[0]: r[4] for r in report.drill_down(list(cells.values()))}
    assert "cut off at max_tokens" in drill["answered"] and "cut off" not in drill["complete"]


def test_a_cut_off_reply_is_not_served_from_the_cache_as_a_complete_one():
    spec = Spec(DATA, (Target("trunc"),))
    Evaluation(spec).run()
    calls.clear()
    again = Evaluation(spec).run()
    assert sorted(calls) == ["answered", "rambles"]  # the cache has no finish reason: cut replies are asked again
    assert {c.item: c.score for c in store.cells(again.id)} == {
        "rambles": 0.0,
        "answered": 1.0,
        "complete": 1.0,
        "broken": 1.0,
    }


def test_a_vote_ignores_cut_off_samples_without_a_stated_answer():
    vote = Variant("vote", samples=3, pick="majority")
    done = Evaluation(Spec(DATA, (Target("trunc"),), variants=(vote,))).run()
    cells = {c.item: c for c in store.cells(done.id)}
    assert cells["rambles"].answer is None and cells["rambles"].score == 0.0
    assert cells["answered"].answer == "30" and cells["answered"].score == 1.0


def test_the_scorer_api_takes_cut_off_and_every_verdict_says_so():
    assert scoring.score("numeric", "a 25% off rate, so", "25", cut_off=True).value == 0.0
    assert scoring.score("numeric", "a 25% off rate, so", "25").value == 1.0  # the same reply, finished
    found = scoring.score("contains", "The hotel is in Lisbon and the", "Lisbon", cut_off=True)
    assert found.passed and found.why == "the answer contains 'Lisbon' (cut off at max_tokens)"
    assert not scoring.score("exact", "Lisb", "Lisbon", cut_off=True).passed
    with pytest.raises(BadInput, match="cut_off is not a scorer option"):
        specs.from_dict({"dataset": "arithmetic", "targets": ["trunc"], "scorer_options": {"cut_off": False}})
