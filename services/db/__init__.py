"""Shared state in SQLAlchemy 2 Core: one engine per URL per process, Alembic migrations per store.

See `services.db.urls` (which database), `services.db.engines` (engines, write transactions,
locks, errors) and `services.db.schema` (Alembic). Operators: `python -m services.db upgrade`.
"""

from services.db.engines import as_dict, dispose_all, engine, is_sqlite, lock, storage_errors, writing
from services.db.schema import all_branches, current, migrate, ready
from services.db.urls import ENV, database_url, normalise, shown, sqlite_file, sqlite_url, store_url
from services.errors import StorageError

__all__ = [
    "ENV",
    "StorageError",
    "all_branches",
    "as_dict",
    "current",
    "database_url",
    "dispose_all",
    "engine",
    "is_sqlite",
    "lock",
    "migrate",
    "normalise",
    "ready",
    "shown",
    "sqlite_file",
    "sqlite_url",
    "storage_errors",
    "store_url",
    "writing",
]
