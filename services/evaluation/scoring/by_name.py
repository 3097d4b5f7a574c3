"""Chat scorers by name, as a spec names them, with their options checked."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from adapters.errors import BadInput
from services.evaluation.scoring.answers import numeric
from services.evaluation.scoring.result import Score
from services.evaluation.scoring.schema import json_schema
from services.evaluation.scoring.text import contains, exact, regex

Scorer = Callable[..., Score]
SCORERS: dict[str, Scorer] = {
    "exact": exact,
    "contains": contains,
    "regex": regex,
    "numeric": numeric,
    "json_schema": json_schema,
}


@cache
def _options_of(name: str) -> list[str]:
    """The keyword-only options a named scorer takes (read once: `inspect.signature` is slow)."""
    return [p.name for p in inspect.signature(SCORERS[name]).parameters.values() if p.kind is p.KEYWORD_ONLY]


def score(
    name: str,
    output: str | None,
    reference: str | float | Mapping[str, Any] | None,
    *,
    cut_off: bool = False,
    **options: Any,
) -> Score:
    """The chat scorer `name` applied to one answer; unknown scorers, options or a missing reference raise BadInput.

    `cut_off`: the reply was stopped by max_tokens. The numeric scorer then passes it only for an
    answer stated before the cut; the text scorers pass it only where the answer they look for is
    in the text that arrived (as always), and their verdict says it was cut off."""
    scorer = SCORERS.get(name)
    if scorer is None:
        raise BadInput(f"There is no scorer {name!r}: choose one of {', '.join(SCORERS)}.")
    if reference is None or (isinstance(reference, str) and not reference.strip()):
        raise BadInput(f"The {name!r} scorer needs a reference for every item: add one, or choose another scorer.")
    accepted = [option for option in _options_of(name) if option != "cut_off"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise BadInput(f"The {name!r} scorer has no option {', '.join(unknown)}: its options are {allowed}.")
    if "cut_off" in _options_of(name):
        return scorer(output or "", reference, cut_off=cut_off, **options)
    result = scorer(output or "", reference, **options)
    return Score(result.value, f"{result.why} (cut off at max_tokens)") if cut_off else result
