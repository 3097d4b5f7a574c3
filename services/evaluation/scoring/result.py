"""A scorer's verdict (`Score`) and the small text helpers every scorer's `why` uses."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

MAX_WHY_QUOTE = 60


@dataclass(frozen=True)
class Score:
    """One item's score: `value` in 0..1 and `why`, one short sentence shown in the drill-down."""

    value: float
    why: str

    @property
    def passed(self) -> bool:
        """True when the score counts as a pass (value at least 0.5)."""
        return self.value >= 0.5


def clip(text: str, limit: int = MAX_WHY_QUOTE) -> str:
    """`text` on one line, shortened with an ellipsis so a `why` stays one short sentence."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def squash(text: str, ignore_case: bool) -> str:
    """Whitespace runs collapsed to one space and the ends stripped; casefolded when asked."""
    flat = " ".join(unicodedata.normalize("NFKC", text).split())
    return flat.casefold() if ignore_case else flat
