"""Where a collection's vectors live: the embedded store (its folder, shared by the app's workers on
one machine through the cross-process writer lock) or Qdrant (`FMG_VECTOR_URL`, here qdrant-client's
local mode, which speaks the server's API). Same results on both; commits durable before they count;
a collection stays on the backend it was built with; the zip limits."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from adapters.errors import BadInput
from services import collections
from services.collections import archives, embedded, metadata, qdrant, reader, store
from tests.test_collections import (
    VECTORS,
    _assert_consistent,
    _contents,
    _state,
    by_number,
    clustered,
    numbered,
    numbers,
)

ROOT = Path(__file__).resolve().parent.parent
TARGET = "bench:clustered"

pytest.importorskip("qdrant_client", reason="pip install qdrant-client (requirements.txt)")


@pytest.fixture(autouse=True)
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FMG_COLLECTIONS", str(tmp_path / "collections"))
    monkeypatch.delenv(qdrant.URL_ENV, raising=False)
    yield tmp_path / "collections"
    reader._loaded.clear()
    qdrant.close_all()


def use_qdrant(monkeypatch, tmp_path, on_disk: bool = False) -> None:
    """New collections go to a Qdrant in local mode: in memory (closed after each test), or in a
    folder of this test's own (slower: it writes each point to disk)."""
    monkeypatch.setenv(qdrant.URL_ENV, str(tmp_path / "qdrant") if on_disk else ":memory:")


def points(name: str) -> int:
    state = _state(name)
    return qdrant.client().count(state.backend_name, exact=True).count


def build_both(tmp_path, monkeypatch, files: int = 5, per_file: int = 300) -> None:
    """The same files in "emb" (embedded) and "qd" (Qdrant)."""
    parts = [numbered(tmp_path, f"{i}.txt", i * per_file, (i + 1) * per_file) for i in range(files)]
    collections.create("emb", "text", TARGET)
    use_qdrant(monkeypatch, tmp_path)
    collections.create("qd", "text", TARGET)
    collections.add("emb", parts, by_number)
    collections.add("qd", parts, by_number)


def test_qdrant_and_the_embedded_store_give_the_same_exact_hits(tmp_path, monkeypatch):
    build_both(tmp_path, monkeypatch)
    assert (_state("emb").backend, _state("qd").backend) == ("embedded", "qdrant")
    assert _state("qd").backend_name == f"fmg-{_state('qd').uid}" and points("qd") == 1500
    assert (store.folder("qd") / _state("qd").vectors_file).stat().st_size == 0  # no vectors in the folder
    assert collections.open("emb").search == collections.open("qd").search == "exact"
    for q in clustered(30, 7):
        mine, theirs = collections.search("emb", q, 10, TARGET), collections.search("qd", q, 10, TARGET)
        assert [h.text for h in theirs] == [h.text for h in mine]
        assert [h.score for h in theirs] == pytest.approx([h.score for h in mine], abs=1e-5)
        assert numbers(mine) == np.argsort(-(VECTORS[:1500] @ q))[:10].tolist()


def test_approximate_settings_keep_recall_at_10_above_095_on_both(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "APPROX_THRESHOLD", 1000)
    build_both(tmp_path, monkeypatch, files=8)
    assert collections.open("emb").search.startswith("approximate")
    assert collections.open("qd").search == f"approximate: Qdrant HNSW, ef {qdrant.HNSW_EF}"
    queries = clustered(60, 3)
    truth = np.argsort(-(queries @ VECTORS[:2400].T), axis=1)[:, :10]
    for name in ("emb", "qd"):
        found = [numbers(collections.search(name, q, 10, TARGET)) for q in queries]
        recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth.tolist(), found, strict=True)])
        assert recall >= 0.95, name


@pytest.mark.usefixtures("db_url")
def test_replace_remove_and_delete_behave_the_same_on_qdrant(tmp_path, monkeypatch):
    use_qdrant(monkeypatch, tmp_path)
    collections.create("qd", "text", TARGET)
    a, b = numbered(tmp_path, "a.txt", 0, 100), numbered(tmp_path, "b.txt", 100, 200)
    collections.add("qd", [a, b], by_number)
    assert numbers(collections.search("qd", VECTORS[150], 1, TARGET)) == [150]

    numbered(tmp_path, "a.txt", 200, 250)  # a.txt changed: its 100 items become 50 new ones
    report = collections.add("qd", [a], by_number)
    assert report.replaced == ("a.txt",) and collections.open("qd").items == 150
    assert points("qd") == 150  # the replaced items' points were deleted
    assert all(n >= 100 for n in numbers(collections.search("qd", VECTORS[5], 10, TARGET)))

    assert collections.remove("qd", ["b.txt"]) == 100
    assert points("qd") == 50 and _contents("qd").keys() == {"a.txt"}
    hits = collections.search("qd", VECTORS[150], 100, TARGET)
    assert len(hits) == 50 and all(200 <= n < 250 for n in numbers(hits))
    _assert_consistent("qd")

    name = _state("qd").backend_name
    collections.delete("qd")
    assert not qdrant.client().collection_exists(name)
    with pytest.raises(BadInput, match="no collection named 'qd'"):
        collections.search("qd", VECTORS[0], 1, TARGET)


@pytest.mark.usefixtures("db_url")
def test_a_qdrant_add_killed_before_its_commit_leaves_nothing_visible(tmp_path, monkeypatch):
    use_qdrant(monkeypatch, tmp_path)
    collections.create("qd", "text", TARGET)
    collections.add("qd", [numbered(tmp_path, "a.txt", 0, 100)], by_number)
    original = metadata.writing
    events: list[str] = []

    def dying(engine):
        events.append(f"commit at {points('qd')} points")
        raise KeyboardInterrupt  # the process dies between the upsert and its commit

    monkeypatch.setattr(metadata, "writing", dying)
    with pytest.raises(KeyboardInterrupt):
        collections.add("qd", [numbered(tmp_path, "b.txt", 100, 300)], by_number)
    assert events == ["commit at 300 points"]  # the points were upserted (acknowledged) before the commit
    monkeypatch.setattr(metadata, "writing", original)

    assert points("qd") == 300 and _state("qd").rows == 100  # the uncommitted points are there...
    assert numbers(collections.search("qd", VECTORS[250], 5, TARGET))[0] != 250  # ...and never found
    assert all(n < 100 for n in numbers(collections.search("qd", VECTORS[250], 100, TARGET)))
    collections.add("qd", [numbered(tmp_path, "c.txt", 300, 350)], by_number)  # written over, the rest swept
    assert points("qd") == _state("qd").rows == 150
    assert numbers(collections.search("qd", VECTORS[320], 1, TARGET)) == [320]
    _assert_consistent("qd")


def test_a_collection_is_always_searched_on_the_backend_it_was_built_with(tmp_path, monkeypatch):
    use_qdrant(monkeypatch, tmp_path, on_disk=True)
    collections.create("qd", "text", TARGET)
    monkeypatch.delenv(qdrant.URL_ENV)
    collections.create("emb", "text", TARGET)
    with pytest.raises(BadInput, match="FMG_VECTOR_URL"):  # its vectors are in Qdrant: said, not guessed
        collections.add("qd", [numbered(tmp_path, "a.txt", 0, 100)], by_number)
    use_qdrant(monkeypatch, tmp_path, on_disk=True)  # set again: the embedded collection stays embedded
    collections.add("emb", [numbered(tmp_path, "a.txt", 0, 100)], by_number)
    collections.add("qd", [numbered(tmp_path, "b.txt", 100, 200)], by_number)
    assert (store.folder("emb") / _state("emb").vectors_file).stat().st_size == 100 * 32 * 4
    assert (store.folder("qd") / _state("qd").vectors_file).stat().st_size == 0
    known = {c.name for c in qdrant.client().get_collections().collections}
    assert known == {_state("qd").backend_name}
    assert numbers(collections.search("emb", VECTORS[50], 1, TARGET)) == [50]
    assert numbers(collections.search("qd", VECTORS[150], 1, TARGET)) == [150]


# --- durability: vectors before their commit ------------------------------------------------------


@pytest.mark.usefixtures("db_url")
def test_the_vectors_are_fsynced_before_the_commit_that_counts_them(tmp_path, monkeypatch):
    collections.create("emb", "text", TARGET)
    events: list[str] = []
    real_fsync, original = os.fsync, metadata.writing

    def fsync(fd):
        events.append(f"fsync {Path(os.readlink(f'/proc/self/fd/{fd}')).name}")
        real_fsync(fd)

    def transaction(engine):
        events.append("commit")
        return original(engine)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(metadata, "writing", transaction)
    collections.add("emb", [numbered(tmp_path, "a.txt", 0, 100)], by_number)
    vectors = _state("emb").vectors_file
    assert f"fsync {vectors}" in events and "commit" in events
    assert events.index(f"fsync {vectors}") < events.index("commit")


# --- the writer lock across processes -------------------------------------------------------------

ADDER = """
import json, sys, time
from pathlib import Path
from services import collections
from tests.test_collections import by_number
collections.TEXT_BATCH = 10  # one file per embedder call: one commit each
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
collections.add("shared", json.loads(sys.argv[2]), by_number)
"""


@pytest.mark.usefixtures("db_url")
def test_two_processes_adding_to_one_collection_at_once_lose_nothing(tmp_path, data_folder):
    collections.create("shared", "text", TARGET)
    go = tmp_path / "go"
    children = []
    for first in (0, 25):
        files = [numbered(tmp_path, f"{i}.txt", i * 10, (i + 1) * 10) for i in range(first, first + 25)]
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", ADDER, str(go), json.dumps(files)],
                cwd=ROOT,
                env={**os.environ, "FMG_COLLECTIONS": str(data_folder)},
                stderr=subprocess.PIPE,
            )
        )
    time.sleep(1.0)  # both imported and waiting (a late one only makes the overlap shorter)
    go.touch()
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()[-2000:]
    reader._loaded.clear()
    info = collections.open("shared")
    assert info.items == 500 and len(info.sources) == 50
    assert _state("shared").rows == 500
    _assert_consistent("shared")


# --- zip limits -----------------------------------------------------------------------------------


def zipped(tmp_path: Path, sizes: list[int]) -> str:
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i, size in enumerate(sizes):
            z.writestr(f"docs/{i}.txt", ("word " * size)[:size])
    return str(path)


def test_a_zip_member_over_its_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 1000)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert len(archives.expand([zipped(tmp_path, [1000, 1000])], "text", scratch)) == 2
    scratch = tmp_path / "scratch2"
    scratch.mkdir()
    with pytest.raises(BadInput, match=r"'docs/1\.txt' in 'upload\.zip' is over|more than its limits allow"):
        archives.expand([zipped(tmp_path, [1000, 1001])], "text", scratch)


def test_a_zip_over_its_total_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "MAX_TOTAL_BYTES", 2500)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert len(archives.expand([zipped(tmp_path, [1000, 1000])], "text", scratch)) == 2
    scratch = tmp_path / "scratch2"
    scratch.mkdir()
    with pytest.raises(BadInput, match="more than its limits allow"):
        archives.expand([zipped(tmp_path, [1000, 1000, 1000])], "text", scratch)


def test_a_qdrant_removal_killed_before_its_points_are_deleted_never_returns_them(tmp_path, monkeypatch):
    use_qdrant(monkeypatch, tmp_path)
    collections.create("qd", "text", TARGET)
    collections.add("qd", [numbered(tmp_path, "a.txt", 0, 100), numbered(tmp_path, "b.txt", 100, 200)], by_number)
    original = qdrant.maintain

    def dying(*args):
        raise KeyboardInterrupt  # killed after the removal's commit, before its points were deleted

    monkeypatch.setattr(qdrant, "maintain", dying)
    with pytest.raises(KeyboardInterrupt):
        collections.remove("qd", ["a.txt"])
    monkeypatch.setattr(qdrant, "maintain", original)
    assert points("qd") == 200 and collections.open("qd").items == 100
    hits = collections.search("qd", VECTORS[50], 10, TARGET)
    assert len(hits) == 10 and all(n >= 100 for n in numbers(hits))
    collections.add("qd", [numbered(tmp_path, "c.txt", 200, 210)], by_number)  # the next write deletes them
    assert points("qd") == 110
    _assert_consistent("qd")


# --- the metadata's home: a collection's own file (old layouts converted), or the shared database -


LEGACY_SCHEMA = """
CREATE TABLE collection (id INTEGER PRIMARY KEY CHECK (id = 1), uid TEXT NOT NULL, name TEXT NOT NULL,
    kind TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, dim INTEGER, created TEXT NOT NULL,
    updated TEXT NOT NULL, version INTEGER NOT NULL, vectors_file TEXT NOT NULL, rows INTEGER NOT NULL,
    index_file TEXT, index_rows INTEGER NOT NULL, trained_rows INTEGER NOT NULL, nlist INTEGER, nprobe INTEGER,
    rerank INTEGER, index_note TEXT NOT NULL);
CREATE TABLE sources (name TEXT PRIMARY KEY, hash TEXT NOT NULL, items INTEGER NOT NULL, added TEXT NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, source TEXT NOT NULL, hash TEXT NOT NULL, text TEXT, image TEXT,
    row INTEGER NOT NULL);
CREATE TABLE dead (row INTEGER PRIMARY KEY);
INSERT INTO collection VALUES (1, 'abc', 'old', 'text', 'bench', 'clustered', 32, '2026-01-01T00:00:00+00:00',
    '2026-01-01T00:00:00+00:00', 4, 'vectors-2.f32', 3, NULL, 0, 0, NULL, NULL, NULL, 'exact');
INSERT INTO sources VALUES ('b.txt', 'hb', 1, '2026-01-01T00:00:00+00:00'),
    ('a.txt', 'ha', 1, '2026-01-01T00:00:00+00:00');
INSERT INTO items VALUES (7, 'b.txt', 'hb', 'passage 2', NULL, 2), (9, 'a.txt', 'ha', 'passage 0', NULL, 0);
INSERT INTO dead VALUES (1);
PRAGMA user_version = 1;
"""


def test_a_collection_file_from_before_sqlalchemy_is_converted_on_first_open(data_folder):
    folder = data_folder / "old"
    folder.mkdir(parents=True)
    conn = sqlite3.connect(folder / store.DB)
    conn.executescript(LEGACY_SCHEMA)
    conn.close()
    VECTORS[:3].astype("<f4").tofile(folder / "vectors-2.f32")
    (folder / store.LOCK).touch()

    info = collections.open("old")
    assert (info.items, info.sources, info.dim, info.search) == (2, ("b.txt", "a.txt"), 32, "exact")
    assert _state("old").backend == "embedded" and _state("old").version == 4
    hits = collections.search("old", VECTORS[1], 3, TARGET)
    assert numbers(hits) == [0, 2] and [h.item for h in hits] == [9, 7]  # row 1 was removed; ids kept
    conn = sqlite3.connect(folder / store.DB)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == metadata.SCHEMA_VERSION
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    assert names == {"collections", "collection_sources", "collection_items", "collection_dead"}
    collections.add("old", [numbered(data_folder.parent, "c.txt", 10, 20)], by_number)  # writable as before
    assert collections.open("old").items == 12


SEES = """
import sys
from services import collections
from tests.test_collections import VECTORS
print(collections.names())
try:
    collections.search("docs", VECTORS[5], 1, "bench:clustered")
except Exception as err:
    print(type(err).__name__, err)
"""


@pytest.mark.usefixtures("db_url")
def test_with_a_shared_database_every_worker_and_machine_sees_the_same_collections(tmp_path, data_folder, db_url):
    if db_url is None:
        pytest.skip("without FMG_DATABASE_URL each machine has its own collections")
    collections.create("docs", "text", TARGET)
    collections.add("docs", [numbered(tmp_path, "a.txt", 0, 10)], by_number)
    elsewhere = tmp_path / "another-machine"
    done = subprocess.run(
        [sys.executable, "-c", SEES],
        cwd=ROOT,
        env={**os.environ, "FMG_COLLECTIONS": str(elsewhere)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listed, error = done.stdout.strip().splitlines()
    assert listed == "['docs']"  # its metadata is shared...
    assert error.startswith("BadInput") and "FMG_VECTOR_URL" in error  # ...its embedded vectors are not: said
    collections.delete("docs")
    assert collections.names() == []


HOLDER = """
import sys, time
from services import collections
from services.collections import store
collections.names()  # imported and connected: what is left is the lock
print("ready", flush=True)
with store.writing("docs"):
    print(time.time(), flush=True)
"""


@pytest.mark.usefixtures("db_url")
def test_with_postgresql_a_writer_on_another_machine_waits_for_this_one(tmp_path, data_folder, db_url):
    if db_url is None or not db_url.startswith("postgresql"):
        pytest.skip("machines share a collection's writer lock through PostgreSQL only")
    collections.create("docs", "text", TARGET)
    with store.writing("docs"):
        other = subprocess.Popen(  # another machine: its own data folder, so no flock in common
            [sys.executable, "-c", HOLDER],
            cwd=ROOT,
            env={**os.environ, "FMG_COLLECTIONS": str(tmp_path / "another-machine")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "ready", other.stderr.read() if other.poll() is not None else ""
        time.sleep(3.0)  # without the lock it would have written its time by now
        released = time.time()
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err[-2000:]
    assert float(out.strip()) >= released
