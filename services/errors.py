"""The errors that services/ raises about its own machinery (not about a visitor's input).

`StorageError`: a database (SQLite or PostgreSQL) could not be read or written, or holds a schema
this code does not know. Storage engines' own exceptions (sqlite3, psycopg, SQLAlchemy) are turned
into it before they leave services/, so a tab catches one type whatever the engine.
"""

from __future__ import annotations


class StorageError(Exception):
    """A store could not be used: unreachable, locked past its timeout, or from a newer fm-gallery."""
