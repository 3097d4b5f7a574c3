"""Which database a store uses: the shared one named by `FMG_DATABASE_URL`, else its own SQLite file.

`FMG_DATABASE_URL` (read at each use, like the stores' own paths) puts every store (run log,
comparisons, votes and leaderboard, evaluations, collections' metadata) in one database, which is
how several workers or machines share them. `postgresql://`, `postgres://` and
`postgresql+psycopg://` all mean PostgreSQL through psycopg 3; a `sqlite:///path` URL also works
(one file for every store). Unset, each store keeps its SQLite file where it always was.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from services.errors import StorageError

ENV = "FMG_DATABASE_URL"
_POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")


def database_url() -> str | None:
    """The shared database's URL, normalised (psycopg 3 driver), or None when unset."""
    raw = os.environ.get(ENV, "").strip()
    return normalise(raw) if raw else None


def normalise(raw: str) -> str:
    """`postgres://` and `postgresql://` as `postgresql+psycopg://`; other SQLAlchemy URLs as given."""
    try:
        url = make_url(raw)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy raises ArgumentError (and ValueError) for bad URLs
        raise StorageError(f"{ENV} is not a database URL (postgresql://user@host/db): {type(err).__name__}.") from None
    if url.drivername in _POSTGRES_SCHEMES:
        url = url.set(drivername="postgresql+psycopg")
    elif not url.drivername.startswith(("sqlite", "postgresql")):
        raise StorageError(f"{ENV} must name PostgreSQL (postgresql://...) or SQLite, not {url.drivername!r}.")
    return url.render_as_string(hide_password=False)


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite file at `path` (absolute, so that every thread means the same file)."""
    return URL.create("sqlite", database=str(Path(path).expanduser().absolute())).render_as_string()


def store_url(sqlite_path: Path) -> str:
    """Where a store lives: the shared database when `FMG_DATABASE_URL` is set, else `sqlite_path`."""
    return database_url() or sqlite_url(sqlite_path)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for other engines (and for an in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def shown(url: str) -> str:
    """The URL as it may be logged or shown: never its password."""
    return make_url(url).render_as_string(hide_password=True)
