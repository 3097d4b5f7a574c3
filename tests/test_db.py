"""services.db: URLs, engines, Alembic migrations on SQLite and PostgreSQL, adoption of a
pre-Alembic SQLite file, refusal of a newer schema, and N processes migrating at once."""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import text

from services import db
from services.db import schema

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_postgres_urls_are_normalised_to_psycopg_3():
    for raw in ("postgres://u:p@h/d", "postgresql://u:p@h/d", "postgresql+psycopg://u:p@h/d"):
        assert db.normalise(raw) == "postgresql+psycopg://u:p@h/d"
    assert db.shown("postgresql+psycopg://u:secret@h/d") == "postgresql+psycopg://u:***@h/d"
    with pytest.raises(db.StorageError, match="PostgreSQL"):
        db.normalise("mysql://u@h/d")
    with pytest.raises(db.StorageError, match="not a database URL"):
        db.normalise("just words")


def test_one_engine_per_url_per_process(tmp_path):
    url = db.sqlite_url(tmp_path / "a.sqlite3")
    assert db.engine(url) is db.engine(url) and db.engine(url) is not db.engine(db.sqlite_url(tmp_path / "b.sqlite3"))


def test_migrate_is_idempotent_on_both_engines(db_url, tmp_path):
    url = db_url or db.sqlite_url(tmp_path / "shared.sqlite3")
    db.migrate(url)
    heads = db.current(url)
    assert {h.split("_0")[0] for h in heads} == set(db.all_branches())
    db.migrate(url)
    assert db.current(url) == heads
    with db.engine(url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 0


def legacy_run_log(path: pathlib.Path) -> None:
    """A run log exactly as fm-gallery made it before SQLAlchemy (schema 2, rows in rowid order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(
        """CREATE TABLE runs (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, tab TEXT NOT NULL, task TEXT NOT NULL,
        provider TEXT, model TEXT, served_by TEXT, inputs TEXT NOT NULL, params TEXT NOT NULL, output TEXT,
        image_path TEXT, latency_s REAL, ttft_s REAL, wall_s REAL, input_tokens INTEGER, output_tokens INTEGER,
        cost_usd REAL, error TEXT, visitor TEXT)"""
    )
    conn.execute("CREATE INDEX runs_by_time ON runs (created_at)")
    for i, cid in enumerate(["c1", None, "c2"]):
        params = json.dumps({"comparison_id": cid} if cid else {})
        conn.execute(
            "INSERT INTO runs (id, created_at, tab, task, inputs, params, output) "
            "VALUES (?, ?, 'compare', 'completion', '{}', ?, ?)",
            (f"old{i}", "2025-01-01T00:00:00.000+00:00", params, f'"answer {i}"'),
        )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


def test_a_run_log_from_before_alembic_is_adopted_with_its_rows(tmp_path):
    path = tmp_path / "runs.sqlite3"
    legacy_run_log(path)
    url = db.sqlite_url(path)
    db.ready(url, "run_log")
    assert db.current(url) == ("run_log_0003",)
    with db.engine(url).connect() as conn:
        rows = conn.execute(text("SELECT seq, id, comparison_id, output FROM runs ORDER BY seq")).all()
        assert conn.exec_driver_sql("PRAGMA user_version").scalar() == schema.SQLITE_USER_VERSION
    assert [tuple(r) for r in rows] == [
        (1, "old0", "c1", '"answer 0"'),
        (2, "old1", None, '"answer 1"'),
        (3, "old2", "c2", '"answer 2"'),
    ]


def test_a_database_from_a_newer_fm_gallery_is_refused_untouched(db_url, tmp_path):
    url = db_url or db.sqlite_url(tmp_path / "newer.sqlite3")
    with db.engine(url).begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('run_log_9999')"))
    with pytest.raises(db.StorageError, match="newer"):
        db.ready(url, "run_log")
    with db.engine(url).connect() as conn:
        assert not db.engine(url).dialect.has_table(conn, "runs")


MIGRATOR = "import sys; from services import db; db.migrate(sys.argv[1]); print('ok')"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # N workers started together (the advisory lock)
def test_processes_migrating_at_once_all_succeed(db_url):
    url = db_url
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, url],
            cwd=ROOT,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, [err[-800:] for _, err in outs]
    assert {h.split("_0")[0] for h in db.current(url)} == set(db.all_branches())


def test_the_operators_command_upgrades_and_says_where(db_url, tmp_path, capsys, monkeypatch):
    from services.db.__main__ import main

    url = db_url or db.sqlite_url(tmp_path / "cli.sqlite3")
    assert main(["upgrade", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "run_log_0003" in out and "leaderboard_0001" in out
    monkeypatch.delenv("FMG_DATABASE_URL", raising=False)
    assert main(["current"]) == 2 and "FMG_DATABASE_URL is not set" in capsys.readouterr().err


def test_engines_beyond_the_limit_are_closed_and_reopen_on_use(tmp_path, monkeypatch):
    from services.db import engines

    monkeypatch.setattr(engines, "MAX_ENGINES", 2)
    urls = [db.sqlite_url(tmp_path / f"{i}.sqlite3") for i in range(3)]
    first = db.ready(urls[0], "run_log")
    for url in urls[1:]:
        db.ready(url, "run_log")
    assert urls[0] not in engines._engines and len(engines._engines) == 2
    with first.connect() as conn:  # a caller still holding the closed one can go on
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 0
    with db.ready(urls[0], "run_log").connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 0
