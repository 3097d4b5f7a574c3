"""Per-task leaderboard from blind votes, kept in a database so it survives restarts.

Two ratings per target, from the same votes. One vote settles one comparison:

- a win counts as a win of the chosen target over every other target of that comparison (the
  other targets are not compared with each other: the vote says nothing about their order);
- a tie counts as a draw between every pair of targets.

Elo (K = 32, every target starts at 1000) updates in one step per vote and stays readable (the
arithmetic fits in a test). All pairs of one comparison are scored against the ratings from
before the vote and their changes added up, so the order of targets inside a comparison does not
matter; the order of the votes does. Bradley-Terry (`bradley_terry`) is refitted from the whole
`votes` table, so it does not depend on that order, and comes with a bootstrap 95% interval.

The database is `FMG_LEADERBOARD` (default `~/.fm-gallery/leaderboard.sqlite3`, WAL), or the
shared one of `FMG_DATABASE_URL` (services.db). A vote and its rating changes are one
transaction, which first takes the task's lock (SQLite: the file's write lock; PostgreSQL: an
advisory lock per task), so concurrent voters in any process or worker queue instead of
overwriting each other's ratings, and a killed process leaves either the whole vote or none of it.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Column, Connection, Engine, Float, Integer, MetaData, Table, Text, exc, insert, select, update

from adapters.errors import BadInput
from adapters.types import Task
from services import db
from services.comparisons import bradley_terry

K = 32.0
START = 1000.0
DEFAULT_PATH = Path("~/.fm-gallery/leaderboard.sqlite3")
BRANCH = "leaderboard"  # its Alembic branch
COLUMNS = ["rank", "target", "rating", "votes", "wins", "ties", "losses", "bt rating", "bt 95% low", "bt 95% high"]

metadata = MetaData()
votes = Table(
    "votes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task", Text, nullable=False),
    Column("comparison_id", Text, nullable=False, unique=True),  # one vote per comparison, even across workers
    Column("targets", Text, nullable=False),  # JSON list of the rated targets' names
    Column("winner", Text),  # NULL for a tie
    Column("voted_at", Float, nullable=False),
)
ratings = Table(
    "ratings",
    metadata,
    Column("task", Text, primary_key=True),
    Column("target", Text, primary_key=True),
    Column("rating", Float, nullable=False),
    Column("wins", Integer, nullable=False),
    Column("ties", Integer, nullable=False),
    Column("losses", Integer, nullable=False),
)


@dataclass(frozen=True)
class Strength:
    """A Bradley-Terry rating (Elo scale, mean 1000) and its bootstrap 95% interval."""

    rating: float
    low: float
    high: float


@dataclass(frozen=True)
class Standing:
    target: str  # "provider:model"
    rating: float  # Elo
    wins: int
    ties: int
    losses: int
    bt: Strength | None = None

    @property
    def votes(self) -> int:
        return self.wins + self.ties + self.losses


def db_path() -> Path:
    """The SQLite file without FMG_DATABASE_URL; read on every call, so a test (or a deployment)
    can point it elsewhere at any time."""
    return Path(os.environ.get("FMG_LEADERBOARD") or DEFAULT_PATH).expanduser()


def url() -> str:
    """The leaderboard's database (also that of the blind comparisons waiting for a vote)."""
    return db.store_url(db_path())


def engine() -> Engine:
    """The database, with the leaderboard's tables at their current schema."""
    return db.ready(url(), BRANCH)


def _exists() -> bool:
    """False only for a SQLite file not made yet: reading creates no file."""
    local = db.sqlite_file(url())
    return local is None or local.exists()


def expected(rating: float, other: float) -> float:
    """Elo's expected score of `rating` against `other`."""
    return 1.0 / (1.0 + 10.0 ** ((other - rating) / 400.0))


def elo_update(ratings: dict[str, float], winner: str | None) -> dict[str, float]:
    """New ratings after one vote among `ratings`' targets (`winner` None: a tie among all)."""
    if winner is not None and winner not in ratings:
        raise BadInput(f"The winner {winner!r} is not one of the compared targets.")
    delta = dict.fromkeys(ratings, 0.0)
    for a, b in itertools.combinations(ratings, 2):
        if winner is None:
            score_a = 0.5
        elif winner in (a, b):
            score_a = 1.0 if winner == a else 0.0
        else:
            continue  # two losers: the vote does not order them
        change = K * (score_a - expected(ratings[a], ratings[b]))
        delta[a] += change
        delta[b] -= change
    return {name: ratings[name] + delta[name] for name in ratings}


def record_vote(task: Task, comparison_id: str, targets: Sequence[str], winner: str | None) -> list[Standing]:
    """Store one vote and apply it to the task's ratings; returns the task's new standings."""
    names = list(dict.fromkeys(targets))
    if len(names) < 2:
        raise BadInput("A vote needs at least two rated targets.")
    with db.storage_errors("the leaderboard could not record the vote"):
        bound = engine()
        try:
            with db.writing(bound) as conn:
                apply_vote(conn, task, comparison_id, names, winner)
        except exc.IntegrityError:
            raise BadInput("This comparison already has a vote.") from None
        with bound.connect() as conn:
            return _standings(conn, task)


def apply_vote(conn: Connection, task: Task, comparison_id: str, names: list[str], winner: str | None) -> None:
    """The vote and its rating changes, inside the caller's write transaction (which may do more:
    the blind comparison's row goes in the same one). The task's lock is taken first, so that no
    other voter reads the ratings between this one's read and write."""
    db.lock(conn, f"fm-gallery:leaderboard:{task.value}")
    conn.execute(
        insert(votes).values(
            task=task.value, comparison_id=comparison_id, targets=json.dumps(names), winner=winner, voted_at=time.time()
        )
    )
    before = _ratings(conn, task, names)
    after = elo_update(before, winner)
    for name in names:
        won, tied = name == winner, winner is None
        counts = {"wins": int(won), "ties": int(tied), "losses": int(not won and not tied)}
        changed = conn.execute(
            update(ratings)
            .where(ratings.c.task == task.value, ratings.c.target == name)
            .values(
                rating=after[name],
                wins=ratings.c.wins + counts["wins"],
                ties=ratings.c.ties + counts["ties"],
                losses=ratings.c.losses + counts["losses"],
            )
        ).rowcount
        if not changed:  # a first vote for this target (no other voter can add it meanwhile: the lock)
            conn.execute(insert(ratings).values(task=task.value, target=name, rating=after[name], **counts))


def standings(task: Task) -> list[Standing]:
    """The task's targets, best rating first (none before the first vote: reading creates no file)."""
    if not _exists():
        return []
    with db.storage_errors("the leaderboard could not be read"), engine().connect() as conn:
        return _standings(conn, task)


def bt_standings(task: Task) -> dict[str, Strength]:
    """The task's Bradley-Terry ratings with 95% intervals, best first, from all its stored votes."""
    if not _exists():
        return {}
    with db.storage_errors("the leaderboard could not be read"), engine().connect() as conn:
        return _bt_standings(conn, task)


def rows(table: list[Standing]) -> list[list]:
    """Standings as table rows (`COLUMNS`), ratings rounded for reading."""
    return [
        [rank, s.target, round(s.rating, 1), s.votes, s.wins, s.ties, s.losses, *_bt_cells(s.bt)]
        for rank, s in enumerate(table, start=1)
    ]


def _bt_cells(bt: Strength | None) -> list[float | None]:
    return [None, None, None] if bt is None else [round(bt.rating, 1), round(bt.low, 1), round(bt.high, 1)]


def _ratings(conn: Connection, task: Task, names: list[str]) -> dict[str, float]:
    statement = select(ratings.c.target, ratings.c.rating).where(
        ratings.c.task == task.value, ratings.c.target.in_(names)
    )
    found = {target: rating for target, rating in conn.execute(statement.with_for_update())}
    return {name: found.get(name, START) for name in names}


def _standings(conn: Connection, task: Task) -> list[Standing]:
    found = conn.execute(
        select(ratings.c.target, ratings.c.rating, ratings.c.wins, ratings.c.ties, ratings.c.losses)
        .where(ratings.c.task == task.value)
        .order_by(ratings.c.rating.desc(), ratings.c.target)
    ).all()
    strengths = _bt_standings(conn, task)
    return [
        Standing(target, rating, wins, ties, losses, strengths.get(target))
        for target, rating, wins, ties, losses in found
    ]


def _bt_standings(conn: Connection, task: Task) -> dict[str, Strength]:
    found = conn.execute(
        select(votes.c.targets, votes.c.winner).where(votes.c.task == task.value).order_by(votes.c.id)
    ).all()
    return dict(_fit(tuple((tuple(json.loads(targets)), winner) for targets, winner in found)))  # a copy: cached


@lru_cache(maxsize=16)
def _fit(votes: tuple[tuple[tuple[str, ...], str | None], ...]) -> dict[str, Strength]:
    """Cached on the votes themselves: pages reread the board far more often than votes arrive."""
    ratings = bradley_terry.fit_votes(votes)
    intervals = bradley_terry.bootstrap(votes, resamples=bradley_terry.RESAMPLES, seed=0)
    return {name: Strength(rating, *intervals[name]) for name, rating in ratings.items()}
