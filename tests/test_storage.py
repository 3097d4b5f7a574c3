"""The shared stores on both engines (`db_url`: SQLite files, then a real PostgreSQL): blind
comparisons waiting for their vote, the evaluations store, and, on PostgreSQL only, several
processes at once (two writers of 2,000 runs each; a comparison run in one process, read and
voted in another). The run log's and the leaderboard's own suites take `db_url` too."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest

from adapters import registry
from adapters.errors import BadInput
from adapters.types import Task
from services import comparisons, run_log, visitors
from services.comparisons import Form, leaderboard, waiting
from services.evaluation import store
from tests.fakes import timed

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALICE = visitors.Visitor("user:alice", session="s-alice")
BOB = visitors.Visitor("user:bob", session="s-bob")


@pytest.fixture
def two_targets():
    names = ["alpha-secret", "beta-secret"]
    for name in names:
        registry.register(timed.provider(name, 0.0))
    yield names
    for name in names:
        registry.unregister(name)


def blind(targets, visitor=visitors.OWNER) -> comparisons.Comparison:
    frame = None
    for frame in comparisons.run(Task.COMPLETION, targets, Form(prompt="hi"), blind=True, visitor=visitor):  # noqa: B007
        pass
    assert frame is not None and frame.awaits_vote
    return frame


def seen() -> str:
    """What History shows the owner: every run the owner may see, with the hidden ones left out."""
    scope = run_log.Scope(hidden=comparisons.hidden_ids())
    return repr(run_log.query(scope=scope, limit=None)) + repr(run_log.distinct("provider", scope))


def child(code: str, *args: str) -> str:
    """Run `code` in a new Python process (another worker) with this test's environment; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# --- the run log's writes, on both engines ---------------------------------------------------------


def test_a_batch_of_runs_is_one_transaction_whole_or_none(db_url, caplog):
    """The writer commits all the rows queued at once in one transaction: one bad row (here a
    repeated id) and none of the batch is stored, so no reader ever sees part of a batch."""
    from services.run_log import schema, writing

    path = run_log.location()
    rows = [writing.Run(path, "chat", Task.COMPLETION, "fake", {"i": i}, {})._row(None) for i in range(3)]
    rows.append(dict(rows[0]))  # the same run twice
    with caplog.at_level("WARNING", logger="fm_gallery.run_log"):
        writing._insert(schema.store(path), rows)
    assert "could not record runs" in caplog.text
    assert run_log.query(limit=None) == []
    writing._insert(schema.store(path), rows[:3])
    assert len(run_log.query(limit=None)) == 3
    assert all(type(key) is str for key in run_log.query()[0])  # plain keys: Gradio's JSON encoder refuses others


# --- blind comparisons waiting for their vote, on both engines ------------------------------------


def test_a_blind_comparison_is_hidden_until_its_vote_and_voted_once(two_targets, db_url):
    done = blind(two_targets)
    assert done.id in comparisons.hidden_ids()
    assert "alpha-secret" not in seen() and len(run_log.query(tab="compare")) == 2
    with pytest.raises(BadInput, match="Vote for one of"):
        comparisons.vote(done.id, "Z")  # a bad choice keeps it waiting
    revealed, table = comparisons.vote(done.id, "A")
    assert revealed is done and done.revealed and done.vote == "A"
    assert {s.target.split(":")[0] for s in table} == set(two_targets)
    assert "alpha-secret" in seen() and comparisons.hidden_ids() == frozenset()
    with pytest.raises(BadInput, match="not waiting"):
        comparisons.vote(done.id, "B")  # one vote per comparison
    assert sum(s.wins for s in leaderboard.standings(Task.COMPLETION)) == 1


def test_only_the_visitor_who_ran_it_may_vote(two_targets, db_url):
    done = blind(two_targets, visitor=ALICE)
    with pytest.raises(BadInput, match="not waiting"):
        comparisons.vote(done.id, "A", BOB)
    assert done.id in comparisons.hidden_ids()  # a refused voter reveals nothing
    comparisons.vote(done.id, "tie", ALICE)
    assert done.id not in comparisons.hidden_ids()


def test_the_oldest_waiting_comparisons_are_dropped_past_the_limit(two_targets, db_url, monkeypatch):
    monkeypatch.setattr(waiting, "MAX_WAITING", 2)
    made = [blind(two_targets) for _ in range(3)]
    assert comparisons.hidden_ids() == {made[1].id, made[2].id}
    with pytest.raises(BadInput, match="not waiting"):
        comparisons.vote(made[0].id, "A")


def test_a_comparison_lost_with_its_worker_stays_hidden_then_expires(db_url, monkeypatch):
    waiting.hide("lost", "completion", ["a", "b"], visitors.OWNER.id, "")  # its worker died while it ran
    assert "lost" in comparisons.hidden_ids()
    monkeypatch.setattr(waiting, "RUNNING_EXPIRES_S", -1.0)
    assert "lost" not in comparisons.hidden_ids()


# --- the evaluations store, on both engines -------------------------------------------------------


def cell(item: str, score: float, position: int, **kw) -> store.Cell:
    return store.Cell(item, "fake", "plain", "out", "ans", score, "why", 0.1, 3, 4, 0.0, 1, 0, position=position, **kw)


def test_evaluations_cells_and_cache_round_trip(db_url):
    store.create("e1", {"dataset": "arithmetic"}, visitor="v1")
    store.create("e2", {"dataset": "other"}, visitor=None)
    store.save_cell("e1", cell("b", 0.5, 1))
    store.save_cells("e1", [cell("a", 1.0, 0, extra={"attack": True}), cell("b", 0.0, 1, error="late")])
    assert [(c.item, c.score, c.error) for c in store.cells("e1")] == [("a", 1.0, None), ("b", 0.0, "late")]
    assert store.cells("e1")[0].extra == {"attack": True}
    store.set_status("e1", "done", "all good")
    assert store.evaluation("e1", "v1")["status"] == "done" and store.evaluation("e1", "v1")["spec"] == {
        "dataset": "arithmetic"
    }
    assert store.evaluation("e1", "v2") is None and store.evaluation("e1", None) is not None
    assert [e["id"] for e in store.evaluations("v1")] == ["e1"]
    assert {e["id"] for e in store.evaluations(None)} == {"e1", "e2"}
    reply = store.Reply("four", 0.2, 5, 1, 0.001)
    store.cache("k1", reply)
    store.cache("k1", reply)
    assert store.cached("k1") == reply and store.cached("nope") is None
    assert store.cached_many(["k1", "nope"]) == {"k1": reply}


def test_a_batch_of_cells_is_stored_whole_or_not_at_all(db_url):
    store.create("e", {}, visitor=None)
    with pytest.raises(Exception):  # noqa: B017 - whichever error the engine gives for a NULL key
        store.save_cells("e", [cell("a", 1.0, 0), cell(None, 1.0, 1)])  # type: ignore[arg-type]
    assert store.cells("e") == []


# --- several processes at once, on PostgreSQL -----------------------------------------------------

WRITE_RUNS = """
import sys
from adapters.types import Caption
from services import run_log
name, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    with run_log.run(tab="captioning", task="captioning", provider="fake", inputs={"w": name, "i": i}) as r:
        r.done(Caption(text="c", provider="fake", model="m", latency_s=0.0), output=f"{name}-{i}")
assert run_log.flush(timeout=120)
"""


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_processes_write_2000_runs_each_with_none_lost_or_duplicated(db_url):
    per_writer = 2000
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITE_RUNS, name, str(per_writer)],
            cwd=ROOT,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("w1", "w2")
    ]
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-1500:] for e in errors]
    runs = run_log.query(limit=None)
    outputs = [r["output"] for r in runs]
    assert len(outputs) == len(set(outputs)) == 2 * per_writer  # none duplicated, none lost
    assert set(outputs) == {f"{w}-{i}" for w in ("w1", "w2") for i in range(per_writer)}
    assert len({r["id"] for r in runs}) == 2 * per_writer


READ_VOTE_READ = """
import sys
from services import comparisons, run_log
comparison_id = sys.argv[1]

def shown():
    scope = run_log.Scope(hidden=comparisons.hidden_ids())
    runs = run_log.query(tab="compare", scope=scope, limit=None)
    print(len(runs), comparison_id in comparisons.hidden_ids())

shown()
comparisons.vote(comparison_id, "A")
shown()
"""


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_blind_comparison_from_one_worker_is_hidden_and_votable_in_another(two_targets, db_url):
    done = blind(two_targets)  # this process is worker 1
    assert run_log.flush(timeout=30)  # its runs are answered: committed, for every worker to read
    before, after = child(READ_VOTE_READ, done.id).splitlines()
    assert before == "0 True"  # worker 2 sees none of its runs while it waits
    assert after == "2 False"  # worker 2 takes the vote, then sees both
    assert "alpha-secret" in seen() and "beta-secret" in seen()  # and so does worker 1
    (vote,) = [s for s in leaderboard.standings(Task.COMPLETION) if s.wins]
    assert vote.target == done.targets[0].name
    with pytest.raises(BadInput, match="not waiting"):
        comparisons.vote(done.id, "B")  # worker 1 cannot count it twice


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_run_returns_while_another_transaction_blocks_the_table(db_url):
    """As on SQLite with a held write lock: the run returns at once, its row waits, readers wait for it."""
    import psycopg

    from adapters.types import Caption

    def record(i: int) -> str:
        with run_log.run(tab="captioning", task="captioning", provider="fake") as run:
            run.done(Caption(text="c", provider="fake", model="m", latency_s=0.0), output=i)
        return run.id

    record(0)
    assert run_log.flush(timeout=30)
    holder = psycopg.connect(db_url.replace("postgresql+psycopg", "postgresql"))
    try:
        holder.execute("LOCK TABLE runs IN EXCLUSIVE MODE")  # writes wait, reads go on
        started = time.perf_counter()
        blocked = record(1)
        assert time.perf_counter() - started < 5 and run_log.flush(timeout=0.3) is False
    finally:
        holder.rollback()
        holder.close()
    assert run_log.get(blocked) is not None


def test_each_visitor_reads_only_their_own_runs(db_url):
    from adapters.types import Caption

    ids = {}
    for who in (ALICE, BOB):
        with run_log.run(tab="captioning", task="captioning", provider=f"p-{who.id}") as run:
            run.by(who)
            run.done(Caption(text="c", provider=f"p-{who.id}", model="m", latency_s=0.0), output=who.id)
        ids[who.id] = run.id
    alice = run_log.Scope(visitor=ALICE.key)
    assert [r["output"] for r in run_log.query(scope=alice)] == [ALICE.id]
    assert run_log.get(ids[BOB.id], alice) is None and run_log.get(ids[ALICE.id], alice) is not None
    assert run_log.distinct("provider", alice) == [f"p-{ALICE.id}"]
    assert len(run_log.query()) == 2  # the owner sees both
