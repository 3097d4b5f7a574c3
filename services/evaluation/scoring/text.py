"""Scorers of an answer's text: exact, contains, and regular expressions run with a timeout.

Patterns may come from a visitor, so they are bounded in length and in how much their counted
repeats expand, and each search stops after `REGEX_TIMEOUT_S`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import regex as regex_lib

from adapters.errors import BadInput
from services.evaluation.scoring import budget
from services.evaluation.scoring.result import Score, clip, squash

MAX_PATTERN_CHARS = 500
MAX_PATTERN_EXPANSION = 10_000  # atoms once {n} repeats are written out (each costs compile memory)
MAX_SCAN_CHARS = 20_000  # characters of an output a pattern or schema pattern searches
REGEX_TIMEOUT_S = 0.25


def exact(output: str, reference: str, *, ignore_case: bool = True, ignore_whitespace: bool = True) -> Score:
    """1 when the output equals the reference (by default ignoring case and runs of whitespace)."""
    a = squash(output, ignore_case) if ignore_whitespace else (output.casefold() if ignore_case else output)
    b = squash(reference, ignore_case) if ignore_whitespace else (reference.casefold() if ignore_case else reference)
    if a == b:
        return Score(1.0, "the answer matches the reference")
    if not output.strip():
        return Score(0.0, "the answer is empty")
    return Score(0.0, f"expected '{clip(reference)}', got '{clip(output)}'")


def contains(output: str, reference: str, *, ignore_case: bool = True) -> Score:
    """1 when the reference appears in the output (by default ignoring case and runs of whitespace)."""
    needle = squash(reference, ignore_case)
    if not needle:
        raise BadInput("The reference is empty, so 'contains' would pass every answer: give each item a reference.")
    if needle in squash(output, ignore_case):
        return Score(1.0, f"the answer contains '{clip(reference)}'")
    return Score(0.0, f"'{clip(reference)}' is not in the answer")


_COUNTED = re.compile(r"\{(\d*)(,?)(\d*)\}")


def _skip_class(pattern: str, i: int) -> int:
    """The index just after the character class that starts at `pattern[i] == "["`."""
    i += 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def _expansion(pattern: str) -> int:
    """How many atoms the pattern holds once counted repeats such as (a{100}){100} are written out.

    The regex engine compiles a{n} into n copies, so nested counts could exhaust the memory.
    """
    frames = [[0, 0]]  # per open group: [atoms so far, atoms of the last item]
    i = 0
    while i < len(pattern):
        char, size = pattern[i], 1
        if char == "\\":
            i += 2
            if i < len(pattern) and pattern[i - 1] in "pPNxuUg" and pattern[i] == "{":
                i = pattern.find("}", i) + 1 or len(pattern)
        elif char == "[":
            i = _skip_class(pattern, i)
        elif char == "(":
            frames.append([0, 0])
            i += 1
            continue
        elif char == ")" and len(frames) > 1:
            size = max(frames.pop()[0], 1)
            i += 1
        elif (counted := _COUNTED.match(pattern, i)) and (counted[1] or counted[3]):
            times = max(int(counted[3] or counted[1] or 0), 1)
            frame = frames[-1]
            frame[0] += frame[1] * (times - 1)
            frame[1] *= times
            i = counted.end()
            continue
        else:
            i += 1
        frames[-1][0] += size
        frames[-1][1] = size
    while len(frames) > 1:
        inner = frames.pop()[0]
        frames[-1][0] += inner
    return frames[0][0]


@lru_cache(maxsize=256)
def _compile(pattern: str, flags: int) -> Any:
    """The compiled pattern (cached); a pattern that is too long, too repetitive or invalid raises BadInput."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise BadInput(
            f"The regular expression is {len(pattern):,} characters; the limit is {MAX_PATTERN_CHARS}: shorten it."
        )
    if _expansion(pattern) > MAX_PATTERN_EXPANSION:
        raise BadInput(
            f"The regular expression '{clip(pattern)}' repeats too much: keep the product of nested "
            f"{{n}} counts under {MAX_PATTERN_EXPANSION:,}."
        )
    try:
        return regex_lib.compile(pattern, flags)
    except (regex_lib.error, OverflowError, RecursionError, MemoryError, ValueError) as err:
        raise BadInput(f"The regular expression '{clip(pattern)}' is not valid ({err}): fix the pattern.") from err


def search(pattern: str, text: str, ignore_case: bool = False) -> bool | None:
    """Whether `pattern` matches in the first MAX_SCAN_CHARS of `text`; None when it ran out of time."""
    compiled = _compile(pattern, regex_lib.IGNORECASE if ignore_case else 0)
    if budget.spent():  # the cell's (or its evaluation's) scorer budget
        return None
    allowed = min(REGEX_TIMEOUT_S, budget.left())
    try:
        with budget.charged():
            return compiled.search(text[:MAX_SCAN_CHARS], timeout=allowed) is not None
    except TimeoutError:
        return None


def regex(output: str, reference: str, *, ignore_case: bool = False) -> Score:
    """1 when the pattern `reference` matches somewhere in the output (`regex` syntax, time-limited)."""
    found = search(reference, output, ignore_case)
    if found is None:
        return Score(0.0, "pattern took too long")
    if found:
        return Score(1.0, f"the answer matches '{clip(reference)}'")
    return Score(0.0, f"the answer does not match '{clip(reference)}'")
