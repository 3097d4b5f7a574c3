"""Blind votes: a waiting comparison's vote, taken by any worker, recorded with its rating changes.

What is waiting lives in the database (`services.comparisons.waiting`); this worker also keeps
its own waiting comparisons (with their outputs), so that a vote taken here reveals the very
object its page holds. The vote and the comparison's removal are one transaction.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from adapters.errors import BadInput
from adapters.types import Task
from services import quotas, visitors
from services.comparisons import leaderboard, waiting
from services.comparisons.comparison import LETTERS, Comparison
from services.comparisons.fanout import Outcome, Target
from services.visitors import Visitor

MAX_WAITING_VOTES = waiting.MAX_WAITING  # blind comparisons kept for a vote; the oldest are dropped first
NOT_WAITING = waiting.NOT_WAITING


class _LocalComparisons:
    """This worker's own waiting comparisons, with their outputs, by id (bounded, oldest out): a vote
    taken here reveals the very object the page holds. The database decides what is waiting."""

    def __init__(self):
        self._items: OrderedDict[str, Comparison] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, comparison: Comparison) -> None:
        dropped = waiting.put(comparison.id, comparison.answered(), comparison.wall_s)
        with self._lock:
            self._items[comparison.id] = comparison
            for expired in dropped:
                self._items.pop(expired, None)
            while len(self._items) > MAX_WAITING_VOTES:
                self._items.popitem(last=False)

    def get(self, row: waiting.Waiting) -> Comparison:
        """The comparison this worker ran, or one rebuilt from its row (its outputs stayed with
        the worker that ran it: the vote reveals the names, the outputs show as empty)."""
        with self._lock:
            found = self._items.get(row.id)
        if found is not None:
            return found
        targets = [Target.parse(name) for name in row.targets]
        outcomes: list[Outcome | None] = [
            Outcome(t, None, None if i in row.answered else "no answer", 0.0) for i, t in enumerate(targets)
        ]
        return Comparison(
            Task(row.task), targets, True, id=row.id, outcomes=outcomes, wall_s=row.wall_s, owner=row.owner,
            session=row.session,
        )  # fmt: skip

    def forget(self, comparison_id: str) -> None:
        with self._lock:
            self._items.pop(comparison_id, None)


_local = _LocalComparisons()


def remember(comparison: Comparison) -> None:
    """The comparison ended with a vote to take: it waits, on every worker, until then."""
    _local.put(comparison)


def hidden_ids() -> frozenset[str]:
    """The blind comparisons whose runs no reader may see yet (running or waiting for a vote), on any worker."""
    return waiting.hidden()


def parse_choice(comparison: Comparison, choice: str) -> int | str:
    """A column index for "A".."F" (or "Model A"), or "tie" / "skip"; only answered columns count."""
    text = str(choice or "").strip().lower().removeprefix("model").strip()
    if text in ("tie", "skip"):
        return text
    letters = {LETTERS[i].lower(): i for i in comparison.answered()}
    if text not in letters:
        options = ", ".join(LETTERS[i] for i in comparison.answered())
        raise BadInput(f"Vote for one of {options}, or 'tie' (or 'skip' to reveal without voting).")
    return letters[text]


def vote(
    comparison_id: str, choice: str, visitor: Visitor = visitors.OWNER
) -> tuple[Comparison, list[leaderboard.Standing]]:
    """Record a blind vote (a letter, "tie", or "skip" to reveal without voting) and reveal the
    names; returns the comparison and the task's standings. Only the visitor who ran the
    comparison (same login, address or page session) may vote on it, within their vote quota."""
    with waiting.claim(comparison_id) as (conn, row):  # one transaction: the vote, and the comparison gone
        comparison = _local.get(row)
        if visitor.id != comparison.owner and not (visitor.session and visitor.session == comparison.session):
            raise BadInput(NOT_WAITING)
        chosen = parse_choice(comparison, choice)
        quotas.vote(visitor)
        if chosen != "skip":
            rated = [comparison.targets[i].name for i in comparison.answered()]
            winner = comparison.targets[chosen].name if isinstance(chosen, int) else None  # else "tie"
            leaderboard.apply_vote(conn, comparison.task, comparison.id, rated, winner)
    _local.forget(comparison.id)
    comparison.vote = chosen if isinstance(chosen, str) else LETTERS[chosen]
    comparison.revealed = True
    return comparison, leaderboard.standings(comparison.task)
