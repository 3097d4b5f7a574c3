"""One comparison as the Compare tab shows it while it fills in: per column its output and outcome,
and whether the targets' names may be shown yet (a blind one hides them until its vote)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, cast

from adapters.types import Task
from services import boundary, visitors
from services.comparisons.fanout import Outcome, Target

MIN_TARGETS, MAX_TARGETS = 2, 6
LETTERS = "ABCDEF"


@dataclass
class Comparison:
    """A comparison as it fills in: per column the output so far and, once done, its outcome."""

    task: Task
    targets: list[Target]
    blind: bool
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    outputs: list[object] = field(default_factory=list)
    outcomes: list[Outcome | None] = field(default_factory=list)
    wall_s: float | None = None
    revealed: bool = False
    vote: str | None = None  # "A", "B", ..., "tie" or "skip" once voted
    owner: str = visitors.OWNER.id  # the visitor who ran it: only they may vote
    session: str = ""  # and the page session it ran in

    def __post_init__(self):
        self.outputs = self.outputs or [None] * len(self.targets)
        self.outcomes = self.outcomes or [None] * len(self.targets)

    @property
    def hidden(self) -> bool:
        """True while the targets' names must not reach the page."""
        return self.blind and not self.revealed

    @property
    def done(self) -> bool:
        return self.wall_s is not None

    def letter(self, i: int) -> str:
        return f"Model {LETTERS[i]}"

    def label(self, i: int) -> str:
        """What column `i` is called on the page right now."""
        if self.hidden:
            return self.letter(i)
        name = boundary.shown_target(self.targets[i].name) or ""  # (None only for no name)
        return f"{self.letter(i)}: {name}" if self.blind else name

    def answered(self) -> list[int]:
        """Columns with a result: the ones a vote can rate (a failed call says nothing of the model)."""
        return [i for i, o in enumerate(self.outcomes) if o is not None and o.ok]

    @property
    def awaits_vote(self) -> bool:
        return self.hidden and self.done and len(self.answered()) >= MIN_TARGETS

    def apply(self, i: int, event: str | Outcome) -> None:
        if isinstance(event, str):
            self.outputs[i] = cast(str, self.outputs[i] or "") + event  # a text column holds text
            return
        self.outcomes[i] = event
        if event.ok:
            cell: Any = event.value  # an ok outcome holds its cell
            self.outputs[i] = cell.output
