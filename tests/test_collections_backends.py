"""Where a collection's vectors live: the embedded store (its folder, shared by the app's workers on
one machine through the cross-process writer lock) or Qdrant (`FMG_VECTOR_URL`, here qdrant-client's
local mode, which speaks the server's API). Same results on both; commits durable before they count;
a collection stays on the backend it was built with; the zip limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from adapters.errors import BadInput
from services import collections
from services.collections import archives, embedded, qdrant, reader, store
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


def test_a_qdrant_add_killed_before_its_commit_leaves_nothing_visible(tmp_path, monkeypatch):
    use_qdrant(monkeypatch, tmp_path)
    collections.create("qd", "text", TARGET)
    collections.add("qd", [numbered(tmp_path, "a.txt", 0, 100)], by_number)
    original = store.transaction
    events: list[str] = []

    def dying(conn):
        events.append(f"commit at {points('qd')} points")
        raise KeyboardInterrupt  # the process dies between the upsert and its commit

    monkeypatch.setattr(store, "transaction", dying)
    with pytest.raises(KeyboardInterrupt):
        collections.add("qd", [numbered(tmp_path, "b.txt", 100, 300)], by_number)
    assert events == ["commit at 300 points"]  # the points were upserted (acknowledged) before the commit
    monkeypatch.setattr(store, "transaction", original)

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


def test_the_vectors_are_fsynced_before_the_commit_that_counts_them(tmp_path, monkeypatch):
    collections.create("emb", "text", TARGET)
    events: list[str] = []
    real_fsync, original = os.fsync, store.transaction

    def fsync(fd):
        events.append(f"fsync {Path(os.readlink(f'/proc/self/fd/{fd}')).name}")
        real_fsync(fd)

    def transaction(conn):
        events.append("commit")
        return original(conn)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(store, "transaction", transaction)
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
