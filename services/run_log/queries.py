"""Reading the run log: filtered lists, one run, the values seen, all within a visitor's `Scope`.

Every reader first waits for the rows of runs that have returned (`flush()`). The same SQLAlchemy
Core statements run on SQLite and PostgreSQL; text search is case-insensitive (ILIKE, or lower()
LIKE lower() on SQLite, for ASCII), with the user's % and _ taken literally.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, or_, select

from services import db
from services.run_log.schema import COLUMNS, JSON_COLUMNS, RunLogError, location, readable, runs
from services.run_log.writing import flush

_SHOWN = [runs.c[name] for name in COLUMNS]


@dataclass(frozen=True)
class Scope:
    """The runs a reader may see: `visitor` set, only that visitor's (public mode); never those of
    the comparisons in `hidden` (blind ones still running or waiting for their vote)."""

    visitor: str | None = None
    hidden: frozenset[str] = frozenset()

    def where(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.visitor is not None:
            where.append(runs.c.visitor == self.visitor)
        if self.hidden:
            where.append(or_(runs.c.comparison_id.is_(None), runs.c.comparison_id.not_in(sorted(self.hidden))))
        return where


EVERYTHING = Scope()


def query(
    tab: str | None = None,
    provider: str | None = None,
    text: str | None = None,
    errors_only: bool = False,
    limit: int | None = 200,
    scope: Scope = EVERYTHING,
) -> list[dict[str, Any]]:
    """Runs in `scope`, newest first, matching every filter given; `text` is searched
    (case-insensitively for ASCII) in inputs, output, model and error. `limit=None`: them all."""
    return list(select_runs(tab, provider, text, errors_only, limit, scope))


def get(run_id: str, scope: Scope = EVERYTHING) -> dict[str, Any] | None:
    """One run by id, or None when there is none in `scope`."""
    if location() is None or not isinstance(run_id, str) or not run_id.strip():
        return None
    flush()
    with _reading() as bound:
        if bound is None:
            return None
        statement = select(*_SHOWN).where(runs.c.id == run_id.strip(), *scope.where())
        with bound.connect() as conn:
            row = conn.execute(statement).mappings().first()
    return None if row is None else decoded(row)


def distinct(column: str, scope: Scope = EVERYTHING) -> list[str]:
    """The values seen in `tab` or `provider` within `scope`, for the History tab's filters."""
    if column not in ("tab", "provider"):
        raise ValueError(f"distinct() lists 'tab' or 'provider', not {column!r}")
    flush()
    with _reading() as bound:
        if bound is None:
            return []
        seen = runs.c[column]
        statement = select(seen).distinct().where(seen.is_not(None), *scope.where()).order_by(seen)
        with bound.connect() as conn:
            seen_values = list(conn.execute(statement).scalars())
    return seen_values


def select_runs(
    tab: str | None = None,
    provider: str | None = None,
    text: str | None = None,
    errors_only: bool = False,
    limit: int | None = None,
    scope: Scope = EVERYTHING,
) -> Iterator[dict[str, Any]]:
    """The runs matching the filters, newest first (then latest written first), decoded, one at a time."""
    flush()
    with _reading() as bound:
        if bound is None:
            return
        statement = _filtered(tab, provider, text, errors_only, scope)
        if limit is not None:
            statement = statement.limit(max(0, int(limit)))
        with bound.connect() as conn:
            for row in conn.execute(statement).mappings():
                yield decoded(row)


def _filtered(tab, provider, text, errors_only, scope: Scope) -> Select:
    where = scope.where()
    if tab:
        where.append(runs.c.tab == tab)
    if provider:
        where.append(runs.c.provider == provider)
    if text and text.strip():
        like = "%" + text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        searched = (runs.c.inputs, runs.c.output, runs.c.model, runs.c.error)
        where.append(or_(*(column.ilike(like, escape="\\") for column in searched)))
    if errors_only:
        where.append(runs.c.error.is_not(None))
    return select(*_SHOWN).where(*where).order_by(runs.c.created_at.desc(), runs.c.seq.desc())


@contextlib.contextmanager
def _reading() -> Iterator[Engine | None]:
    """The database to read (None when there is none yet), with its errors as `RunLogError`."""
    with db.storage_errors("the run log could not be read", RunLogError):
        yield readable(location())


def decoded(row) -> dict[str, Any]:
    out = db.as_dict(row)
    for column in JSON_COLUMNS:
        if out[column] is not None:
            out[column] = json.loads(out[column])
    return out
