"""Blind comparisons from their start until their vote, in the leaderboard's database.

A blind comparison's runs must stay out of every reader's sight (History, exports, on every
worker) from its start until its vote, and any worker must accept its vote, since a visitor's
next request may land on another one. So what a vote needs lives in the `comparisons` table
(the `comparisons` Alembic branch), in the same database as the votes (`FMG_LEADERBOARD`'s
SQLite file, or the shared `FMG_DATABASE_URL`): the row is written when the comparison starts
("running"), completed when it ends ("waiting": the columns a vote may rate), and deleted in the
same transaction as its vote. The outputs themselves stay in the worker that ran it.

A running row whose worker died stays hidden for `RUNNING_EXPIRES_S`, then expires; at most
`MAX_WAITING` comparisons wait for a vote, the oldest dropped first (their names may then be seen).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    MetaData,
    Table,
    Text,
    delete,
    exc,
    insert,
    or_,
    select,
    update,
)

from adapters.errors import BadInput
from services import db
from services.comparisons import leaderboard

BRANCH = "comparisons"
MAX_WAITING = 256  # blind comparisons kept for a vote; the oldest are dropped first
RUNNING_EXPIRES_S = 3600.0  # a comparison still "running" after this was lost with its worker
NOT_WAITING = (
    "This comparison is not waiting for your vote: it was voted on already, was not blind, is too "
    "old, or was run by someone else. Run a new comparison."
)

metadata = MetaData()
comparisons = Table(
    "comparisons",
    metadata,
    Column("id", Text, primary_key=True),
    Column("task", Text, nullable=False),
    Column("targets", Text, nullable=False),  # JSON list of target names, in column order
    Column("answered", Text),  # JSON list of the columns a vote may rate; NULL while running
    Column("owner", Text, nullable=False),
    Column("session", Text, nullable=False),
    Column("state", Text, nullable=False),  # running | waiting
    Column("created", Float, nullable=False),
    Column("wall_s", Float),
)


@dataclass(frozen=True)
class Waiting:
    """What a vote needs of a blind comparison that waits for it."""

    id: str
    task: str
    targets: list[str]
    answered: list[int]
    owner: str
    session: str
    wall_s: float | None


def engine() -> Engine:
    url = leaderboard.url()
    db.ready(url, leaderboard.BRANCH)  # a vote writes both, in one transaction
    return db.ready(url, BRANCH)


def hide(comparison_id: str, task: str, targets: Sequence[str], owner: str, session: str) -> None:
    """A blind comparison starts: its runs are hidden from now on, on every worker."""
    now = time.time()
    with db.storage_errors("the blind comparison could not be stored"), db.writing(engine()) as conn:
        conn.execute(
            delete(comparisons).where(comparisons.c.state == "running", comparisons.c.created < now - RUNNING_EXPIRES_S)
        )
        conn.execute(
            insert(comparisons).values(
                id=comparison_id,
                task=task,
                targets=json.dumps(list(targets)),
                owner=owner,
                session=session,
                state="running",
                created=now,
            )
        )


def unhide(comparison_id: str) -> None:
    """The comparison ended with nothing to vote on (or failed): its runs may be seen."""
    with db.storage_errors("the blind comparison could not be updated"), db.writing(engine()) as conn:
        conn.execute(delete(comparisons).where(comparisons.c.id == comparison_id, comparisons.c.state == "running"))


def put(comparison_id: str, answered: Sequence[int], wall_s: float | None) -> list[str]:
    """The comparison waits for its vote on these columns; the ids dropped to stay within MAX_WAITING."""
    with db.storage_errors("the blind comparison could not be updated"), db.writing(engine()) as conn:
        conn.execute(
            update(comparisons)
            .where(comparisons.c.id == comparison_id)
            .values(state="waiting", answered=json.dumps(list(answered)), wall_s=wall_s)
        )
        kept = select(comparisons.c.id).where(comparisons.c.state == "waiting")
        kept = kept.order_by(comparisons.c.created.desc()).limit(MAX_WAITING)
        dropped = list(
            conn.execute(
                select(comparisons.c.id).where(comparisons.c.state == "waiting", comparisons.c.id.not_in(kept))
            ).scalars()
        )
        if dropped:
            conn.execute(delete(comparisons).where(comparisons.c.id.in_(dropped)))
    return dropped


def hidden() -> frozenset[str]:
    """The blind comparisons whose runs no reader may see yet (running or waiting for a vote)."""
    local = db.sqlite_file(leaderboard.url())
    if local is not None and not local.exists():
        return frozenset()  # no blind comparison ever started here (and reading makes no file)
    fresh = time.time() - RUNNING_EXPIRES_S
    statement = select(comparisons.c.id).where(or_(comparisons.c.state == "waiting", comparisons.c.created >= fresh))
    with db.storage_errors("the blind comparisons could not be read"), engine().connect() as conn:
        return frozenset(conn.execute(statement).scalars())


@contextlib.contextmanager
def claim(comparison_id: str) -> Iterator[tuple[Connection, Waiting]]:
    """The waiting comparison, locked in a write transaction that deletes it on leaving the block
    (the caller records the vote on the same connection); an exception in the block keeps it."""
    with db.storage_errors("the vote could not be recorded"):
        try:
            with db.writing(engine()) as conn:
                row = (
                    conn.execute(
                        select(comparisons)
                        .where(comparisons.c.id == str(comparison_id or ""), comparisons.c.state == "waiting")
                        .with_for_update()
                    )
                    .mappings()
                    .first()
                )
                if row is None:
                    raise BadInput(NOT_WAITING)
                yield conn, _waiting(row)
                conn.execute(delete(comparisons).where(comparisons.c.id == row["id"]))
        except exc.IntegrityError:  # its vote is on the leaderboard already
            raise BadInput(NOT_WAITING) from None


def _waiting(row) -> Waiting:
    return Waiting(
        id=row["id"],
        task=row["task"],
        targets=json.loads(row["targets"]),
        answered=json.loads(row["answered"] or "[]"),
        owner=row["owner"],
        session=row["session"],
        wall_s=row["wall_s"],
    )
