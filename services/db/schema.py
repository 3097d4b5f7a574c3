"""Alembic migrations for every store, run once per database (and safely by many at once).

Each store is an Alembic branch of its own (`run_log`, `leaderboard`, `comparisons`,
`evaluations`, ... : the branch labels), all in `services/db/migrations/versions/`, with revision
ids `<branch>_<NNNN>`. With `FMG_DATABASE_URL` every branch lives in the one shared database
(one `alembic_version` table holding one head per branch); without it each store's own SQLite
file holds its branch alone.

- `migrate()`: what the launcher (and `python -m services.db upgrade`) runs once before
  workers start: every branch to its head in the shared database.
- `ready(url, branch)`: what a store calls before each use: the first call in a process upgrades
  that branch if needed (so plain `python app.py` needs no setup), later calls cost a dict lookup.

Concurrent callers (N workers starting together) are serialised: on PostgreSQL by an advisory
lock held for the migration's transaction (PostgreSQL's DDL is transactional: all of it or none),
on SQLite by the file's write lock (`BEGIN IMMEDIATE`). Whoever comes second finds the work done.

A database made before Alembic (today's SQLite files: tables present, no `alembic_version`) is
adopted: its branch is stamped at the revision matching what it holds (the base revision's
`ADOPT`), its rows kept, and later revisions applied. A database holding a revision this code
does not know (written by a newer fm-gallery) is refused with a `StorageError`, untouched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from services.db.engines import engine, is_sqlite, lock, storage_errors, writing
from services.db.urls import database_url, shown, sqlite_file
from services.errors import StorageError

log = logging.getLogger("fm_gallery.db")

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
MIGRATE_LOCK = "fm-gallery:migrate"
# A SQLite file this code has upgraded says so in `PRAGMA user_version`: fm-gallery before
# Alembic (which wrote 1 or 2 for its run log) then refuses it instead of writing old rows into it.
SQLITE_USER_VERSION = 3

_ready: set[tuple[str, str]] = set()  # (url, branch) upgraded by this process
_ready_lock = threading.Lock()


def migrate(url: str | None = None, branches: Sequence[str] | None = None) -> None:
    """Upgrade `url` (default: `FMG_DATABASE_URL`) to the head of `branches` (default: all).
    Without a URL there is nothing shared to upgrade: each store's SQLite file is upgraded at its
    first use. Idempotent; safe to run from several processes at once."""
    url = url or database_url()
    if url is None:
        log.info("FMG_DATABASE_URL is not set: each store upgrades its own SQLite file at first use")
        return
    wanted = list(branches) if branches is not None else all_branches()
    _upgrade(engine(url), wanted)
    with _ready_lock:
        _ready.update((url, branch) for branch in wanted)


def ready(url: str, branch: str) -> Engine:
    """The engine for `url`, with `branch` at its head (upgraded on this process's first use)."""
    made = engine(url)
    path = sqlite_file(url)
    if (url, branch) in _ready and (path is None or path.exists()):
        return made
    with _ready_lock:
        if path is not None and not path.exists() and any(u == url for u, _ in _ready):
            made.dispose()  # the file was deleted meanwhile: its pooled connections point at nothing
            _ready.difference_update({key for key in _ready if key[0] == url})
        if (url, branch) not in _ready:
            _upgrade(made, [branch])
            _ready.add((url, branch))
    return made


def all_branches() -> list[str]:
    """Every store's branch label, in a stable order."""
    return sorted({label for base in _script().get_bases() for label in _script().get_revision(base).branch_labels})


def current(url: str) -> tuple[str, ...]:
    """The revisions `url` is at (one per branch), for operators and tests."""
    with storage_errors(f"could not read the schema version of {shown(url)}"), engine(url).connect() as conn:
        return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _heads(branches: Sequence[str]) -> dict[str, str]:
    script = _script()
    heads = {}
    for branch in branches:
        try:
            heads[branch] = script.get_revision(f"{branch}@head").revision
        except Exception as err:  # noqa: BLE001 - Alembic's own errors for an unknown label
            raise StorageError(f"No migrations for a store called {branch!r}: {err}") from None
    return heads


def _upgrade(made: Engine, branches: Sequence[str]) -> None:
    heads = _heads(branches)
    where = shown(str(made.url))
    with storage_errors(f"could not prepare the database {where}"):
        with made.connect() as conn:  # the usual case: already there, checked without a write lock
            have = MigrationContext.configure(conn).get_current_heads()
        _refuse_unknown(have, where)
        if set(heads.values()) <= set(have):
            return
        with writing(made) as conn:
            lock(conn, MIGRATE_LOCK)  # PostgreSQL; on SQLite `writing` holds the file's write lock
            _refuse_newer_sqlite(conn, where)
            context = MigrationContext.configure(conn)
            have = context.get_current_heads()  # again: another process may have done it meanwhile
            _refuse_unknown(have, where)
            for branch in branches:
                _adopt(conn, context, branch, have)
            for branch in branches:
                _run_upgrade(conn, f"{branch}@head")
            if is_sqlite(conn):
                conn.exec_driver_sql(f"PRAGMA user_version = {SQLITE_USER_VERSION}")
    log.info("database %s: %s at their head", where, ", ".join(branches))


def _run_upgrade(conn: Connection, destination: str) -> None:
    """What `alembic upgrade <destination>` does, on this connection, with the parsed scripts kept
    from earlier calls (`command.upgrade` would read every revision file again)."""
    script = _script()

    def steps(revision, _context):
        return script._upgrade_revs(destination, revision)

    with EnvironmentContext(_config(conn), script, fn=steps, destination_rev=destination) as env:
        env.configure(connection=conn, target_metadata=None)
        with env.begin_transaction():
            env.run_migrations()


def _refuse_unknown(have: Sequence[str], where: str) -> None:
    script = _script()
    for revision in have:
        try:
            script.get_revision(revision)
        except Exception:  # noqa: BLE001 - Alembic raises its own ResolutionError subclasses
            raise StorageError(
                f"{where} has schema revision {revision!r}, which this fm-gallery does not know: it was "
                "written by a newer version. Upgrade fm-gallery, or point it at another database."
            ) from None


def _refuse_newer_sqlite(conn: Connection, where: str) -> None:
    if not is_sqlite(conn):
        return
    version = conn.exec_driver_sql("PRAGMA user_version").scalar() or 0
    if version > SQLITE_USER_VERSION:
        raise StorageError(f"{where} has schema {version}; this fm-gallery knows {SQLITE_USER_VERSION} at most.")


def _adopt(conn: Connection, context: MigrationContext, branch: str, have: Sequence[str]) -> None:
    """Stamp a pre-Alembic database's tables at the revision they match, keeping their rows."""
    if any(revision.startswith(f"{branch}_") for revision in have):
        return
    script = _script()
    base = next(script.get_revision(b) for b in script.get_bases() if branch in script.get_revision(b).branch_labels)
    adopt = getattr(base.module, "ADOPT", None)
    if not adopt or not inspect(conn).has_table(adopt["table"]):
        return
    version = conn.exec_driver_sql("PRAGMA user_version").scalar() if is_sqlite(conn) else 0
    revision = adopt.get("by_sqlite_user_version", {}).get(version, base.revision)
    log.info("adopting the existing %s tables at revision %s", branch, revision)
    context.stamp(script, revision)
