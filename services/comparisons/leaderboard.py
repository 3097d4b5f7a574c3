"""Per-task leaderboard from blind votes, kept in SQLite so it survives restarts.

Two ratings per target, from the same votes. One vote settles one comparison:

- a win counts as a win of the chosen target over every other target of that comparison (the
  other targets are not compared with each other: the vote says nothing about their order);
- a tie counts as a draw between every pair of targets.

Elo (K = 32, every target starts at 1000) updates in one step per vote and stays readable (the
arithmetic fits in a test). All pairs of one comparison are scored against the ratings from
before the vote and their changes added up, so the order of targets inside a comparison does not
matter; the order of the votes does. Bradley-Terry (`bradley_terry`) is refitted from the whole
`votes` table, so it does not depend on that order, and comes with a bootstrap 95% interval.

The database is `FMG_LEADERBOARD` (default `~/.fm-gallery/leaderboard.sqlite3`), in WAL mode; a
vote and its rating changes are one transaction, so concurrent voters (threads or processes)
queue up instead of overwriting each other, and a killed process leaves either the whole vote
or none of it.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from adapters.errors import BadInput
from adapters.types import Task
from services.comparisons import bradley_terry
from services.sqlite_wal import open_wal

K = 32.0
START = 1000.0
DEFAULT_PATH = Path("~/.fm-gallery/leaderboard.sqlite3")
COLUMNS = ["rank", "target", "rating", "votes", "wins", "ties", "losses", "bt rating", "bt 95% low", "bt 95% high"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    task TEXT NOT NULL,
    comparison_id TEXT NOT NULL UNIQUE,  -- one vote per comparison, even across processes
    targets TEXT NOT NULL,               -- JSON list of the rated targets' names
    winner TEXT,                         -- NULL for a tie
    voted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
    task TEXT NOT NULL,
    target TEXT NOT NULL,
    rating REAL NOT NULL,
    wins INTEGER NOT NULL DEFAULT 0,
    ties INTEGER NOT NULL DEFAULT 0,
    losses INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task, target)
);
"""


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
    """Read on every call, so a test (or a deployment) can point it elsewhere at any time."""
    return Path(os.environ.get("FMG_LEADERBOARD") or DEFAULT_PATH).expanduser()


def connect() -> sqlite3.Connection:
    """A new connection per use: sqlite3 connections are not shared across threads."""
    conn, _ = open_wal(db_path(), busy_timeout_s=10.0)  # transactions are explicit
    try:
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


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
    conn = connect()
    try:
        conn.execute("BEGIN IMMEDIATE")  # take the write lock before reading the ratings
        try:
            conn.execute(
                "INSERT INTO votes (task, comparison_id, targets, winner, voted_at) VALUES (?, ?, ?, ?, ?)",
                (task.value, comparison_id, json.dumps(names), winner, time.time()),
            )
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise BadInput("This comparison already has a vote.") from None
        before = _ratings(conn, task, names)
        after = elo_update(before, winner)
        for name in names:
            won, tied = name == winner, winner is None
            conn.execute(
                "INSERT INTO ratings (task, target, rating, wins, ties, losses) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (task, target) DO UPDATE SET rating = excluded.rating, "
                "wins = wins + excluded.wins, ties = ties + excluded.ties, losses = losses + excluded.losses",
                (task.value, name, after[name], int(won), int(tied), int(not won and not tied)),
            )
        conn.execute("COMMIT")
        return _standings(conn, task)
    finally:
        conn.close()


def standings(task: Task) -> list[Standing]:
    """The task's targets, best rating first (none before the first vote: reading creates no file)."""
    if not db_path().exists():
        return []
    conn = connect()
    try:
        return _standings(conn, task)
    finally:
        conn.close()


def bt_standings(task: Task) -> dict[str, Strength]:
    """The task's Bradley-Terry ratings with 95% intervals, best first, from all its stored votes."""
    if not db_path().exists():
        return {}
    conn = connect()
    try:
        return _bt_standings(conn, task)
    finally:
        conn.close()


def rows(table: list[Standing]) -> list[list]:
    """Standings as table rows (`COLUMNS`), ratings rounded for reading."""
    return [
        [rank, s.target, round(s.rating, 1), s.votes, s.wins, s.ties, s.losses, *_bt_cells(s.bt)]
        for rank, s in enumerate(table, start=1)
    ]


def _bt_cells(bt: Strength | None) -> list[float | None]:
    return [None, None, None] if bt is None else [round(bt.rating, 1), round(bt.low, 1), round(bt.high, 1)]


def _ratings(conn: sqlite3.Connection, task: Task, names: list[str]) -> dict[str, float]:
    marks = ",".join("?" * len(names))
    found = dict(
        conn.execute(
            f"SELECT target, rating FROM ratings WHERE task = ? AND target IN ({marks})", (task.value, *names)
        ).fetchall()
    )
    return {name: found.get(name, START) for name in names}


def _standings(conn: sqlite3.Connection, task: Task) -> list[Standing]:
    found = conn.execute(
        "SELECT target, rating, wins, ties, losses FROM ratings WHERE task = ? ORDER BY rating DESC, target",
        (task.value,),
    ).fetchall()
    strengths = _bt_standings(conn, task)
    return [
        Standing(target, rating, wins, ties, losses, strengths.get(target))
        for target, rating, wins, ties, losses in found
    ]


def _bt_standings(conn: sqlite3.Connection, task: Task) -> dict[str, Strength]:
    found = conn.execute("SELECT targets, winner FROM votes WHERE task = ? ORDER BY id", (task.value,)).fetchall()
    return dict(_fit(tuple((tuple(json.loads(targets)), winner) for targets, winner in found)))  # a copy: cached


@lru_cache(maxsize=16)
def _fit(votes: tuple[tuple[tuple[str, ...], str | None], ...]) -> dict[str, Strength]:
    """Cached on the votes themselves: pages reread the board far more often than votes arrive."""
    ratings = bradley_terry.fit_votes(votes)
    intervals = bradley_terry.bootstrap(votes, resamples=bradley_terry.RESAMPLES, seed=0)
    return {name: Strength(rating, *intervals[name]) for name, rating in ratings.items()}
