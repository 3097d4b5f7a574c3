"""Persistent collections (`services.collections`): built, closed, reopened and searched; files
added, replaced and removed; embedders and names checked; a killed indexing process leaves a
consistent collection; exact search switches to approximate at the threshold; concurrent writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from adapters.errors import BadInput
from adapters.tasks import ZeroShotClassifier
from services import collections
from services.collections import embedded, files, metadata, reader, store, tables
from tests.fakes import providers as fake

ROOT = Path(__file__).resolve().parent.parent
TARGET = "fake:fake-1"
EMBEDDER = fake.FakeEmbedder(fake.NAME, "fake-1")

DOGS = "Dogs bark at the postman every morning.\n\nA puppy chews slippers and shoes."
CATS = "The cat sleeps on the warm windowsill.\n\nKittens chase a ball of red wool."
BREAD = "Sourdough bread rises slowly overnight.\n\nA baguette has a crisp crust."


@pytest.fixture(autouse=True)
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FMG_COLLECTIONS", str(tmp_path / "collections"))
    yield tmp_path / "collections"
    reader._loaded.clear()


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


class Counting:
    """The fake text embedder as an `embed_fn`, counting its calls and inputs."""

    def __init__(self):
        self.calls = 0
        self.inputs = 0

    def __call__(self, texts):
        self.calls += 1
        self.inputs += len(texts)
        return EMBEDDER.embed(texts, kind="document")


def query(text: str) -> np.ndarray:
    return EMBEDDER.embed([text], kind="query").vectors[0]


def top(name: str, text: str, k: int = 1) -> list[str | None]:
    return [h.text for h in collections.search(name, query(text), k, TARGET)]


def reopen() -> None:
    """What a restart does to this process's view: nothing loaded, everything read from disk again."""
    reader._loaded.clear()


# --- text: built, reopened, searched --------------------------------------------------------------


def test_a_text_collection_is_built_reopened_and_searched(tmp_path, data_folder, db_url):
    info = collections.create("Pets", "text", TARGET)
    assert (info.name, info.kind, info.embedder, info.dim, info.items) == ("Pets", "text", TARGET, None, 0)
    embed, steps = Counting(), []
    report = collections.add(
        "Pets",
        [write(tmp_path, "dogs.txt", DOGS), write(tmp_path, "cats.md", CATS)],
        embed,
        progress=lambda done, total: steps.append((done, total)),
    )
    assert report.added == ("dogs.txt", "cats.md") and report.items == 4
    assert report.collection.items == 4 and report.collection.dim == fake.FakeEmbedder.dim
    assert report.collection.sources == ("dogs.txt", "cats.md") and report.collection.search == "exact"
    assert steps[0] == (0, 4) and steps[-1] == (4, 4) and [d for d, _ in steps] == sorted(d for d, _ in steps)
    assert embed.calls == 1  # both files' passages in one call

    reopen()
    assert [c.name for c in collections.list()] == ["Pets"]
    assert collections.open("Pets").items == 4
    hits = collections.search("Pets", query("kittens chase wool"), 2, TARGET)
    assert hits[0].text == "Kittens chase a ball of red wool." and hits[0].source == "cats.md"
    assert hits[0].score == pytest.approx(float(query("kittens chase wool") @ query(hits[0].text)), abs=1e-5)
    assert hits[0].score >= hits[1].score and hits[0].image is None
    assert (data_folder / "Pets" / "collection.sqlite3").is_file() == (db_url is None)  # else: in PostgreSQL


@pytest.mark.usefixtures("db_url")
def test_a_fresh_process_finds_what_this_one_stored(tmp_path, data_folder):
    collections.create("docs", "text", TARGET)
    collections.add("docs", [write(tmp_path, "bread.txt", BREAD)], Counting())
    code = (
        "from services import collections; from tests.test_collections import query; "
        "print(collections.search('docs', query('crisp baguette crust'), 1, 'fake:fake-1')[0].text)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "FMG_COLLECTIONS": str(data_folder)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "A baguette has a crisp crust."


# --- files added, replaced, removed ---------------------------------------------------------------


def test_an_unchanged_file_added_again_is_a_no_op(tmp_path):
    collections.create("docs", "text", TARGET)
    path = write(tmp_path, "dogs.txt", DOGS)
    collections.add("docs", [path], Counting())
    before = collections.open("docs")
    version = _state("docs").version
    embed = Counting()
    report = collections.add("docs", [path], embed)
    assert report.unchanged == ("dogs.txt",) and report.added == report.replaced == () and report.items == 0
    assert embed.calls == 0
    assert _state("docs").version == version and collections.open("docs") == before


@pytest.mark.usefixtures("db_url")
def test_a_changed_file_replaces_its_items_and_a_removed_one_leaves(tmp_path):
    collections.create("docs", "text", TARGET)
    collections.add("docs", [write(tmp_path, "pets.txt", DOGS), write(tmp_path, "bread.txt", BREAD)], Counting())
    assert top("docs", "puppy chews slippers") == ["A puppy chews slippers and shoes."]

    report = collections.add("docs", [write(tmp_path, "pets.txt", CATS)], Counting())
    assert report.replaced == ("pets.txt",) and report.items == 2
    info = collections.open("docs")
    assert info.items == 4 and set(info.sources) == {"pets.txt", "bread.txt"}
    found = top("docs", "puppy chews slippers", k=4)
    assert "A puppy chews slippers and shoes." not in found and "Kittens chase a ball of red wool." in found

    with pytest.raises(BadInput, match=r"no file named 'nope\.txt'"):
        collections.remove("docs", ["bread.txt", "nope.txt"])
    assert collections.open("docs").items == 4  # nothing removed

    assert collections.remove("docs", ["pets.txt"]) == 2
    reopen()
    info = collections.open("docs")
    assert info.items == 2 and info.sources == ("bread.txt",)
    assert set(top("docs", "kittens wool", k=10)) == {
        "Sourdough bread rises slowly overnight.",
        "A baguette has a crisp crust.",
    }


@pytest.mark.usefixtures("db_url")
def test_removed_rows_are_compacted_away_and_search_stays_right(tmp_path, data_folder):
    collections.create("docs", "text", TARGET)
    files = [write(tmp_path, f"part-{i}.txt", f"alpha{i} beta{i}\n\ngamma{i} delta{i}") for i in range(10)]
    collections.add("docs", files, Counting())
    old = _state("docs").vectors_file
    collections.remove("docs", ["part-0.txt", "part-1.txt", "part-2.txt"])  # 30% of the rows: compacted
    state = _state("docs")
    assert state.vectors_file != old and state.rows == 14
    assert not (data_folder / "docs" / old).exists()
    assert (data_folder / "docs" / state.vectors_file).stat().st_size == 14 * state.dim * 4
    for i in range(3, 10):
        assert top("docs", f"gamma{i} delta{i}") == [f"gamma{i} delta{i}"]
    assert "alpha0 beta0" not in top("docs", "alpha0 beta0", k=14)


def test_files_are_checked_before_anything_is_stored(tmp_path):
    collections.create("docs", "text", TARGET)
    with pytest.raises(BadInput, match=r"upload \.txt, \.md or \.csv"):
        collections.add("docs", [write(tmp_path, "data.bin", "x")], Counting())
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(BadInput, match=r"Two files are named 'a\.txt'"):
        collections.add("docs", [write(tmp_path, "a.txt", DOGS), write(other, "a.txt", CATS)], Counting())
    with pytest.raises(BadInput, match="shape"):
        collections.add("docs", [write(tmp_path, "b.txt", DOGS)], lambda texts: np.ones((1, 8)))
    assert collections.open("docs").items == 0


# --- images ---------------------------------------------------------------------------------------


class ColourEmbedder(ZeroShotClassifier):
    """A tiny image embedder: an image's vector is its mean colour, a label's the colour it names."""

    embeds = True
    COLOURS: ClassVar[dict[str, tuple[float, float, float]]] = {
        "red": (1.0, 0.05, 0.05),
        "green": (0.05, 1.0, 0.05),
        "blue": (0.05, 0.05, 1.0),
    }

    def _embed_images(self, images):
        return np.array([np.asarray(img, dtype=np.float32).reshape(-1, 3).mean(axis=0) + 1.0 for img in images])

    def _embed_labels(self, labels):
        return np.array([np.array(self.COLOURS[label]) * 255 + 1.0 for label in labels])


def picture(folder: Path, name: str, colour: tuple[int, int, int]) -> str:
    path = folder / name
    Image.new("RGB", (16, 12), colour).save(path)
    return str(path)


@pytest.mark.usefixtures("db_url")
def test_an_image_collection_is_built_reopened_and_searched(tmp_path):
    embedder = ColourEmbedder("colours", "mean-rgb")
    target = "colours:mean-rgb"
    collections.create("photos", "image", target)
    files = [
        picture(tmp_path, "tomato.png", (220, 20, 20)),
        picture(tmp_path, "grass.png", (20, 200, 30)),
        picture(tmp_path, "sea.jpg", (10, 30, 210)),
    ]
    calls = []
    report = collections.add("photos", files, lambda paths: calls.append(paths) or embedder.embed_images(paths))
    assert report.added == ("tomato.png", "grass.png", "sea.jpg") and report.collection.items == 3
    assert len(calls) == 1  # the images went in one call

    reopen()
    label = embedder.embed_labels(["green", "red"]).vectors[0]
    hits = collections.search("photos", label, 3, target)
    assert hits[0].source == "grass.png" and hits[0].text is None
    stored = collections.image_file("photos", hits[0].image)
    assert stored is not None and stored.read_bytes() == Path(files[1]).read_bytes()
    assert collections.image_file("photos", "../collection.sqlite3") is None  # never outside its images
    by_image = collections.search("photos", embedder.embed_images([files[2]]).vectors, 1, target)
    assert by_image[0].source == "sea.jpg" and by_image[0].score == pytest.approx(1.0, abs=1e-5)

    collections.remove("photos", ["grass.png"])
    assert not stored.exists()  # no item uses the stored file any more
    with pytest.raises(BadInput, match="not an image this collection can hold"):
        collections.add("photos", [write(tmp_path, "notes.txt", "hello")], embedder.embed_images)


# --- embedders and names --------------------------------------------------------------------------


def test_a_query_from_another_embedder_is_refused_naming_the_one_that_built_it(tmp_path):
    collections.create("docs", "text", TARGET)
    collections.add("docs", [write(tmp_path, "dogs.txt", DOGS)], Counting())
    with pytest.raises(BadInput, match=r"built with fake:fake-1.*openai:text-embedding-3-small"):
        collections.search("docs", query("dogs"), 3, "openai:text-embedding-3-small")
    with pytest.raises(BadInput, match="built with fake:fake-1"):
        collections.add("docs", [write(tmp_path, "cats.txt", CATS)], Counting(), embedder_target="fake:fake-2")
    with pytest.raises(BadInput, match="64 dimensions"):
        collections.search("docs", np.ones(8, dtype=np.float32), 3, TARGET)
    with pytest.raises(BadInput, match="holds 64"):  # vectors of another size cannot join
        collections.add("docs", [write(tmp_path, "cats.txt", CATS)], lambda texts: np.ones((len(texts), 8)))
    with pytest.raises(BadInput, match="between 1 and"):
        collections.search("docs", query("dogs"), 0, TARGET)
    with pytest.raises(BadInput, match="provider:model"):
        collections.create("other", "text", "fake")


@pytest.mark.parametrize(
    "name", ["", "   ", "../escape", "a/b", "a\\b", ".hidden", "x" * 65, "end.", "nul\0byte", "tab\tname", None, 3]
)
def test_bad_names_are_refused(name, data_folder):
    with pytest.raises(BadInput):
        collections.create(name, "text", TARGET)
    with pytest.raises(BadInput):
        collections.open(name)
    assert not data_folder.exists() or [p.name for p in data_folder.iterdir() if not p.name.startswith(".")] == []


@pytest.mark.usefixtures("db_url")
def test_names_kinds_and_existence_are_checked(tmp_path):
    collections.create("My notes 2.0_v1-a", "text", TARGET)  # letters, digits, space, '.', '_' and '-'
    with pytest.raises(BadInput, match="exists already"):
        collections.create("My notes 2.0_v1-a", "image", TARGET)
    with pytest.raises(BadInput, match="text or images"):
        collections.create("audio", "audio", TARGET)
    with pytest.raises(BadInput, match="no collection named 'nope'"):
        collections.open("nope")
    with pytest.raises(BadInput, match="no collection named 'nope'"):
        collections.add("nope", [write(tmp_path, "a.txt", DOGS)], Counting())
    collections.delete("My notes 2.0_v1-a")
    assert collections.list() == []
    with pytest.raises(BadInput, match="no collection named"):
        collections.search("My notes 2.0_v1-a", query("dogs"), 1, TARGET)


def test_the_data_folder_follows_the_run_log(monkeypatch, tmp_path):
    monkeypatch.delenv("FMG_COLLECTIONS")
    monkeypatch.setenv("FMG_RUN_LOG", str(tmp_path / "logs" / "runs.sqlite3"))
    assert collections.root() == tmp_path / "logs" / "collections"
    monkeypatch.setenv("FMG_RUN_LOG", "off")
    assert collections.root() == Path("~/.fm-gallery/collections").expanduser()


# --- exact and approximate search -----------------------------------------------------------------


def clustered(n: int, seed: int, dim: int = 32, topics: int = 20) -> np.ndarray:
    """Unit vectors around a few topics, as embeddings are (same topics for any seed)."""
    centers = np.random.default_rng(0).standard_normal((topics, dim))
    rng = np.random.default_rng(seed)
    x = centers[rng.integers(0, topics, n)] + 0.35 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


VECTORS = clustered(4000, 1)


def by_number(texts: list[str]) -> np.ndarray:
    """An `embed_fn` for passages "passage <i>": vector i of VECTORS."""
    return VECTORS[[int(t.split()[1]) for t in texts]]


def numbered(folder: Path, name: str, start: int, stop: int) -> str:
    return write(folder, name, "\n\n".join(f"passage {i}" for i in range(start, stop)))


def numbers(hits: list[collections.Hit]) -> list[int]:
    return [int(h.text.split()[1]) for h in hits if h.text]


@pytest.mark.usefixtures("db_url")
def test_search_turns_approximate_at_the_threshold_and_back(tmp_path, monkeypatch, data_folder):
    monkeypatch.setattr(embedded, "APPROX_THRESHOLD", 1000)
    collections.create("big", "text", "bench:clustered")
    collections.add("big", [numbered(tmp_path, "a.txt", 0, 900)], by_number)
    assert collections.open("big").search == "exact"
    assert not list((data_folder / "big").glob("*.faiss"))

    collections.add("big", [numbered(tmp_path, "b.txt", 900, 1500)], by_number)
    info = collections.open("big")
    assert info.search.startswith("approximate") and info.items == 1500
    assert len(list((data_folder / "big").glob("*.faiss"))) == 1  # kept on disk

    queries = clustered(50, 2)
    truth = np.argsort(-(queries @ VECTORS[:1500].T), axis=1)[:, :10]
    reopen()  # the index comes back from disk, not rebuilt
    found = [numbers(collections.search("big", q, 10, "bench:clustered")) for q in queries]
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth.tolist(), found, strict=True)])
    assert recall >= 0.9
    hit = collections.search("big", VECTORS[1234], 1, "bench:clustered")[0]
    assert numbers([hit]) == [1234] and hit.score == pytest.approx(1.0, abs=1e-5)  # scores are exact

    collections.add("big", [numbered(tmp_path, "c.txt", 1500, 1800)], by_number)  # added to the index
    state = _state("big")
    assert state.index_rows == state.rows == 1800 and state.trained_rows == 1500
    assert numbers(collections.search("big", VECTORS[1700], 1, "bench:clustered")) == [1700]

    collections.remove("big", ["a.txt"])  # 900 of 1800 rows: compacted, and below the threshold again
    info = collections.open("big")
    assert info.search == "exact" and info.items == 900
    assert not list((data_folder / "big").glob("*.faiss"))
    assert all(n >= 900 for n in numbers(collections.search("big", VECTORS[5], 10, "bench:clustered")))


@pytest.mark.usefixtures("db_url")
def test_rows_removed_from_an_approximate_index_are_never_returned(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "APPROX_THRESHOLD", 1000)
    collections.create("big", "text", "bench:clustered")
    files = [numbered(tmp_path, f"{i}.txt", i * 300, (i + 1) * 300) for i in range(8)]
    collections.add("big", files, by_number)
    assert collections.open("big").search.startswith("approximate")
    collections.remove("big", ["3.txt"])  # 1/8 of the rows: kept, marked removed
    assert _state("big").index_file is not None
    for i in (905, 1000, 1199):
        assert all(not 900 <= n < 1200 for n in numbers(collections.search("big", VECTORS[i], 10, "bench:clustered")))
    assert numbers(collections.search("big", VECTORS[1300], 1, "bench:clustered")) == [1300]


# --- a killed indexing process --------------------------------------------------------------------

KILL_POINTS = ["embedding", "vectors written", "index written", "compaction written"]
CHILD = "from tests.test_collections import _child; _child()"


def _child() -> None:
    """Run in a subprocess: add files (or remove two), and at the kill point, if any, announce it and wait."""
    point, marker = sys.argv[1], Path(sys.argv[2])
    embedded.APPROX_THRESHOLD = 1000
    collections.TEXT_BATCH = 500  # one file a call

    def stop_here() -> None:
        marker.write_text("ready")
        time.sleep(120)

    if point == "embedding":
        calls = []

        def embed(texts):
            calls.append(1)
            if len(calls) == 2:
                stop_here()
            return by_number(texts)

    else:
        embed = by_number
        if point == "vectors written":
            original_append = embedded.append_vectors

            def append(*args):
                original_append(*args)
                if args[1] >= 2000:  # the second new file's vectors: on disk, not committed
                    stop_here()

            embedded.append_vectors = append
        elif point == "index written":
            original_write = embedded.write_index

            def write_index(*args):
                done = original_write(*args)
                stop_here()
                return done

            embedded.write_index = write_index
        elif point == "compaction written":
            original_compacted = embedded._compacted

            def compacted(*args):
                done = original_compacted(*args)
                stop_here()
                return done

            embedded._compacted = compacted
    if point == "compaction written":
        collections.remove("big", ["1.txt", "2.txt"])
    else:
        collections.add("big", json.loads(sys.argv[3]), embed)


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.usefixtures("db_url")
def test_a_killed_indexing_process_leaves_a_consistent_collection(point, tmp_path, monkeypatch, data_folder):
    monkeypatch.setattr(embedded, "APPROX_THRESHOLD", 1000)
    monkeypatch.setattr(collections, "TEXT_BATCH", 500)
    collections.create("big", "text", "bench:clustered")
    first = [numbered(tmp_path, f"{i}.txt", i * 500, (i + 1) * 500) for i in range(3)]
    collections.add("big", first, by_number)  # 1500 rows: approximate
    more = [numbered(tmp_path, f"{i}.txt", i * 500, (i + 1) * 500) for i in range(3, 6)]
    old = _contents("big")

    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tests.test_collections import _child; _child()",
            point,
            str(marker),
            json.dumps(more),
        ],
        cwd=ROOT,
        env={**os.environ, "FMG_COLLECTIONS": str(data_folder)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), child.stderr.read().decode()[-2000:] if child.poll() is not None else "no marker"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    reopen()

    after = _contents("big")
    _assert_consistent("big")
    if point == "compaction written":
        assert after == {"0.txt": old["0.txt"]}  # the removal is committed, the compaction is not
        assert _state("big").index_file is not None and _state("big").rows == 1500
    else:
        assert set(after) >= set(old) and set(after) <= set(old) | {f"{i}.txt" for i in range(3, 6)}
        for name, passages in after.items():  # each file whole, or not at all
            assert len(passages) == 500, name
    if point == "vectors written":
        assert set(after) == set(old) | {"3.txt"}  # the first new file committed, the second not
    if point in ("vectors written", "embedding"):  # the file in flight is not there
        assert "4.txt" not in after

    if point != "compaction written":  # the same add again resumes: stored files are skipped
        report = collections.add("big", more, by_number)
        assert set(report.unchanged) == set(after) - set(old)
        assert collections.open("big").items == 3000
    else:  # the next write (here, adding a stored file again) completes the compaction
        assert collections.add("big", [first[0]], by_number).unchanged == ("0.txt",)
        state = _state("big")
        assert (state.rows, state.index_file, collections.open("big").search) == (500, None, "exact")
    _assert_consistent("big")
    state = _state("big")
    leftovers = {p.name for p in (data_folder / "big").iterdir()} - {
        store.DB,
        f"{store.DB}-wal",
        f"{store.DB}-shm",
        store.LOCK,
        state.vectors_file,
        state.index_file,
    }
    assert leftovers == set()  # the killed writer's files were swept


def _read(name: str):
    """A read transaction on the collection's metadata (its own file, or the shared database)."""
    return metadata.reading(metadata.engine_for(store.folder(name), name))


def _state(name: str) -> store.State:
    with _read(name) as conn:
        return metadata.read_state(conn, name=name)


def _contents(name: str) -> dict[str, list[str]]:
    items = tables.items
    with _read(name) as conn:
        uid = metadata.read_state(conn, name=name).uid
        out: dict[str, list[str]] = {}
        query = sa.select(items.c.source, items.c.text).where(items.c.collection == uid).order_by(items.c.row)
        for source, text in conn.execute(query):
            out.setdefault(source, []).append(text)
        return out


def _assert_consistent(name: str) -> None:
    """Metadata and files agree, and every stored passage is found as its own nearest neighbour."""
    state = _state(name)
    items, uid = tables.items, state.uid
    with _read(name) as conn:
        found = conn.execute(sa.select(items.c.row, items.c.source, items.c.text).where(items.c.collection == uid))
        records = found.all()
        rows, item_sources, texts = [r[0] for r in records], [r[1] for r in records], [r[2] for r in records]
        dead = set(metadata.dead_rows(conn, uid))
        listed = metadata.source_items(conn, uid)
    per_source: dict[str, int] = {}
    for source in item_sources:
        per_source[source] = per_source.get(source, 0) + 1
    assert per_source == listed
    assert len(set(rows)) == len(rows) and all(0 <= r < state.rows for r in rows) and not set(rows) & dead
    if state.backend == "embedded":
        assert (store.folder(name) / state.vectors_file).stat().st_size >= state.rows * (state.dim or 0) * 4
        assert state.index_rows <= state.rows
        vectors = files.map_vectors(store.folder(name) / state.vectors_file, state.rows, state.dim or 0)
        for text in texts[:: max(1, len(texts) // 40)]:
            i = int(text.split()[1])
            assert np.allclose(vectors[rows[texts.index(text)]], VECTORS[i], atol=1e-6)
    for text in texts[:: max(1, len(texts) // 40)]:
        i = int(text.split()[1])
        assert numbers(collections.search(name, VECTORS[i], 1, "bench:clustered")) == [i]


# --- concurrent sessions --------------------------------------------------------------------------


@pytest.mark.usefixtures("db_url")
def test_two_sessions_adding_while_a_third_searches_do_not_corrupt_it(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "APPROX_THRESHOLD", 1000)
    monkeypatch.setattr(collections, "TEXT_BATCH", 100)
    collections.create("big", "text", "bench:clustered")
    collections.add("big", [numbered(tmp_path, "seed.txt", 0, 200)], by_number)
    errors: list[Exception] = []
    stop = threading.Event()

    def adding(first: int) -> None:
        try:
            files = [numbered(tmp_path, f"{first + i}.txt", (first + i) * 200, (first + i + 1) * 200) for i in range(4)]
            collections.add("big", files, by_number)
        except Exception as err:  # noqa: BLE001 - every failure is the finding
            errors.append(err)

    def searching() -> None:
        try:
            while not stop.is_set():
                hits = collections.search("big", VECTORS[10], 5, "bench:clustered")
                assert numbers(hits)[0] == 10
        except Exception as err:  # noqa: BLE001 - every failure is the finding
            errors.append(err)

    threads = [threading.Thread(target=adding, args=(1,)), threading.Thread(target=adding, args=(5,))]
    looker = threading.Thread(target=searching)
    looker.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    looker.join(timeout=60)
    assert errors == []
    info = collections.open("big")
    assert info.items == 1800 and info.search.startswith("approximate")
    reopen()
    _assert_consistent("big")


@pytest.mark.usefixtures("db_url")
def test_a_session_in_another_process_adds_while_this_one_does(tmp_path, monkeypatch, data_folder):
    monkeypatch.setattr(embedded, "APPROX_THRESHOLD", 1000)
    collections.create("big", "text", "bench:clustered")
    theirs = [numbered(tmp_path, f"{i}.txt", i * 300, (i + 1) * 300) for i in range(4)]
    ours = [numbered(tmp_path, f"{i}.txt", i * 300, (i + 1) * 300) for i in range(4, 8)]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "none", str(tmp_path / "marker"), json.dumps(theirs)],
        cwd=ROOT,
        env={**os.environ, "FMG_COLLECTIONS": str(data_folder)},
        stderr=subprocess.PIPE,
    )
    try:
        collections.add("big", ours, by_number)
    finally:
        _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err.decode()[-2000:]
    info = collections.open("big")
    assert info.items == 2400 and len(info.sources) == 8 and info.search.startswith("approximate")
    _assert_consistent("big")


# --- the benchmark --------------------------------------------------------------------------------


def test_the_benchmark_quick_run_ends_with_its_json_line():
    results = ROOT / "bench" / "results.jsonl"
    before = results.read_bytes() if results.exists() else None
    done = subprocess.run(
        [sys.executable, "-m", "bench.collections", "--quick"],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["bench"] == "collections" and line["quick"] is True and len(line["targets"]) == 3
    assert line["figures"]["search"].startswith("approximate")
    assert (results.read_bytes() if results.exists() else None) == before  # only --save writes there


def test_the_backends_benchmark_quick_run_compares_both_on_the_same_vectors():
    done = subprocess.run(
        [sys.executable, "-m", "bench.collections", "--backends", "--quick", "--n", "1500", "--queries", "10"],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["bench"] == "collections-backends" and line["figures"]["n"] == 1500
    assert all(target["met"] for target in line["targets"])  # recall@10 >= 0.95 on both
