"""The run log's writer thread: rows handed over are written in batches, `flush` waits for them,
a failing write neither kills the thread nor hangs a reader."""

from __future__ import annotations

import threading
from pathlib import Path

from services.run_log.writer import RowWriter


def test_rows_queued_while_a_write_runs_go_in_one_batch_and_flush_waits_for_them():
    written: list[list[int]] = []
    first_started, release = threading.Event(), threading.Event()

    def write(path: Path, rows: list[dict]) -> None:
        if not written:
            first_started.set()
            release.wait(10)
        written.append([row["i"] for row in rows])

    writer = RowWriter(write)
    writer.put(Path("a"), {"i": 0})
    assert first_started.wait(10)
    for i in range(1, 6):  # queued while the first write is held
        writer.put(Path("a"), {"i": i})
    assert writer.flush(timeout=0.05) is False  # row 0 is not written yet
    release.set()
    assert writer.flush(timeout=10)
    assert written == [[0], [1, 2, 3, 4, 5]]


def test_rows_for_different_files_are_written_to_each(tmp_path):
    written: dict[Path, list[int]] = {}
    writer = RowWriter(lambda path, rows: written.setdefault(path, []).extend(r["i"] for r in rows))
    for i in range(20):
        writer.put(tmp_path / f"{i % 2}.db", {"i": i})
    assert writer.flush(timeout=10)
    assert written == {tmp_path / "0.db": list(range(0, 20, 2)), tmp_path / "1.db": list(range(1, 20, 2))}


def test_a_write_that_raises_loses_only_its_own_rows(caplog):
    written: list[int] = []
    held, release = threading.Event(), threading.Event()

    def write(path: Path, rows: list[dict]) -> None:
        if rows[0]["i"] == -1:  # holds the writer so that the next rows arrive as one batch
            held.set()
            release.wait(10)
        elif path.name == "broken":
            raise RuntimeError("disk on fire")
        else:
            written.extend(row["i"] for row in rows)

    writer = RowWriter(write)
    writer.put(Path("ok"), {"i": -1})
    assert held.wait(10)
    writer.put(Path("broken"), {"i": 0})
    writer.put(Path("ok"), {"i": 1})  # same batch, another file: still written
    release.set()
    assert writer.flush(timeout=10)  # settled, not hung
    writer.put(Path("ok"), {"i": 2})  # and the thread lives on
    assert writer.flush(timeout=10)
    assert written == [1, 2]
    assert "disk on fire" in caplog.text


def test_no_thread_until_the_first_row():
    name = "test-writer-no-thread-yet"
    writer = RowWriter(lambda path, rows: None, name=name)
    assert writer.flush(timeout=1)
    assert name not in {t.name for t in threading.enumerate()}  # nothing at import or construction
    writer.put(Path("a"), {"i": 0})
    assert writer.flush(timeout=10)
    assert name in {t.name for t in threading.enumerate()}
