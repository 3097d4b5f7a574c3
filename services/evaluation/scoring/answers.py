"""Reading the number a reply gives as its answer, as a person would, and the numeric scorer.

An explicit answer wins over the last number. From strongest to weakest:

1. `\\boxed{...}` or GSM8K's `#### n` (the last one);
2. "the answer is n", "answer: n", "final answer = n", or "n is the answer" (the last one stated);
3. "=> n" or a bolded number such as **12** (the last one).

Inside an explicit answer an expression takes its result ("the answer is 14 x 2 = 28" reads 28), a
detail after the number is ignored ("12 dollars, after the $5 coupon" reads 12), and a negated
number is skipped ("the answer is not 12; it is 19" reads 19). A correction after the answer
("... Wait, actually it is 19") is read instead of it.

With no explicit answer: a reply that starts with a number and then explains ("12, because ...")
answers with that number; otherwise the last number that is neither negated ("19, not 12"), in
brackets beside a number outside them ("28 (14 x 2)"), nor in a trailing detail ("12 dollars,
after the $5 coupon").

A reply cut off at max_tokens (`cut_off`) is read only from an explicit answer stated before the
cut: its last number may be the middle of its working ("a 25% off rate, so").
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from adapters.errors import BadInput
from services.evaluation.scoring.result import Score, clip

_DIGITS = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
_NUMBER = re.compile(
    rf"(?<![\w.])(?P<sign>[-\u2212+])?[$€£]?(?P<num>{_DIGITS})(?:\s*/\s*(?P<den>\d+)(?!\d)(?![.,]\d))?(?:[eE](?P<exp>[-+]?\d+))?"
)
_ANSWER_IS = re.compile(
    r"\banswer\b\**\s*(?:is\b|was\b|would be\b|should be\b|will be\b|[:=])\s*(?:\*\*)?", re.IGNORECASE
)
_IS_THE_ANSWER = re.compile(
    r"\s*(?:[A-Za-z%]+\s+){0,2}(?:is|would be|should be|will be)\s+(?:the|my|our)\s+"
    r"(?:final\s+|correct\s+|right\s+)?answer\b",
    re.IGNORECASE,
)
_HASHES = re.compile(r"####[ \t]*(?=[-\u2212+$€£]?\.?\d)")  # GSM8K style; not a markdown heading
_ARROW = re.compile(r"(?:=>|⇒)\s*")
_BOLD = re.compile(r"\*\*([^*\n]{1,40})\*\*")
_BOLD_NUMBER = re.compile(  # "**12**", "**$56**", "**Total: 19 apples**"
    rf"(?:[A-Za-z ]{{1,20}}:\s*)?[-\u2212+]?[$€£~≈]?\s*(?:{_DIGITS})\s*(?:[A-Za-z%$€£.]+\s*){{0,2}}[.!]?"
)
_BOXED = re.compile(r"\\boxed\s*\{")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]*)\}\s*\{\s*([^{}]*)\}")
_SENTENCE_END = re.compile(r"(?<!\d)\.(?!\d)|\.(?=\s|$)|[!?\n]")
_EDGE_PUNCT = " \t\r\n.,;:!?\"'`*_()[]{}<>«»\u201c\u201d\u2018\u2019"

_NEGATED_BEFORE = re.compile(
    r"(?:\bnot|n['\u2019]t|\bnever|\brather than|\binstead of|\bno longer)(?:\s+(?:exactly|quite|just|simply|equal to"
    r"|the|a|an|really|even|actually))*\s*$",
    re.IGNORECASE,
)
_NEGATED_AFTER = re.compile(
    r"\s*(?:[A-Za-z%]+\s+){0,2}(?:is|was|would be)\s+(?:wrong|incorrect|not\b|a mistake|a typo)", re.IGNORECASE
)
_OPERATOR = r"(?:[-+*/x\u00d7\u00f7\u00b7\u2212]|times|plus|minus|divided by|multiplied by)"
_PLAIN_NUMBER = r"[-\u2212]?[$€£]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_EXPRESSION = re.compile(
    rf"\(?{_PLAIN_NUMBER}\)?(?:\s*{_OPERATOR}\s*\(?{_PLAIN_NUMBER}\)?)+(?:\s*[a-z%]+)?\s*=\s*"
    rf"(?:{_PLAIN_NUMBER}\s*=\s*)*"
    rf"(?P<result>{_PLAIN_NUMBER})",
    re.IGNORECASE,
)
_DETAIL = re.compile(
    r"\s*(?:[A-Za-z%]++\s*){0,3}[*_]*(?:,|;|\s[-\u2013\u2014]|\()\s*(?:after|before|including|excluding|not counting|"
    r"counting|with|without|once|given|from|for|at|per|which|since|because|as|i\.e\.|that is|based on|assuming|"
    r"using|when|if|"
    r"plus tax|minus the)\b",
    re.IGNORECASE,
)
_EXPLAINS = re.compile(
    r"\s*(?:[A-Za-z%]++\s*){0,3}(?:[.,;:)\]]|\s[-\u2013\u2014]|\n)\s*(?:because|since|as|explanation|reasoning|reason|working|"
    r"here'?s how|here is how|to see why|this is because|check|first|step 1|calculation|proof|why)\b",
    re.IGNORECASE,
)
_WORKING_FOLLOWS = re.compile(  # after a first sentence that states the answer: the working, announced
    r"\s*(?:[A-Za-z%]++\s*){0,3}[.:;]\s*(?:#+\s*|\*\*)?(?:step[- ]by[- ]step|explanation|reasoning|working|"
    r"here'?s how|here is how|to see why|how i got (?:it|this|there))\b",
    re.IGNORECASE,
)
_LEADING = re.compile(
    r"\s*(?:\*\*)?(?:(?:it(?:'s| is| will be| would be)|that(?:'s| is)|there (?:are|is|were)|total:?|"
    r"result:?|about|exactly|approximately)\s+)?(?=[-\u2212+$€£]?\d)",
    re.IGNORECASE,
)
_CORRECTION = re.compile(
    r"\b(?:wait|actually|correction|oops|sorry|on second thought|i made (?:a|an) (?:mistake|error)|let me "
    r"(?:recheck|recalculate|correct))\b",
    re.IGNORECASE,
)
_TOTAL_AFTER = re.compile(  # "19 in total: 12 from Monday and 7 from Tuesday" (a breakdown follows)
    r"\s*(?:[A-Za-z%]+\s+){0,2}(?:in total|in all|altogether|total)\s*[,:;(\u2013\u2014-]", re.IGNORECASE
)
_CONCLUSION = re.compile(  # a clause that states a new result, so it is no mere detail
    r"\b(?:so|therefore|thus|hence|leaving|leaves|left|remain(?:s|ing)?|in total|in all|altogether|gives?|giving|"
    r"makes?|making|equals?|comes? to|totals?)\b|=|"
    r"\b(?:she|he|they|it|we|you|i)\s+(?:now\s+)?(?:has|have|had|gets?|got|pays?|paid|needs?|owes?|is|are|ends? up)\b",
    re.IGNORECASE,
)
EXPLICIT = ("boxed", "####", "answer is", "is the answer", "=>", "bold")
_HOW = {
    "boxed": "in \\boxed{}",
    "####": "after ####",
    "answer is": "the stated answer",
    "is the answer": "the stated answer",
    "=>": "after =>",
    "bold": "the bolded number",
    "answer first": "the number it starts with",
    "last number": "the last number",
    "correction": "the corrected answer",
}


MAX_SPAN = 400  # characters after a marker, or after a number, read as its sentence
MAX_READ_CHARS = 20_000  # of a longer reply, its first and last halves of this are read


def _bounded(text: str) -> str:
    """The reply, or of a very long one its start and its end (where answers are stated)."""
    if len(text) <= MAX_READ_CHARS:
        return text
    half = MAX_READ_CHARS // 2
    return text[:half] + "\n\n" + text[-half:]


@dataclass(frozen=True)
class _Number:
    value: float
    start: int
    end: int


@dataclass(frozen=True)
class Reading:
    """The number a reply answers with, the rule that found it (`how`, a key of `_HOW`) and where it
    ends in the reply (-1 when the reply has none)."""

    value: float | None
    how: str = "none"
    end: int = -1

    @property
    def explicit(self) -> bool:
        """Whether the reply stated this answer (a marker, not the last number)."""
        return self.how in EXPLICIT or self.how == "correction"


@dataclass(frozen=True)
class _Mark:
    kind: str
    start: int  # where the marked span starts in the reply
    stop: int  # where it ends


def _to_float(match: re.Match[str]) -> float | None:
    """The value of one `_NUMBER` match (a fraction divided out); None for a zero denominator."""
    value = float(match["num"].replace(",", ""))
    if match["den"] is not None:
        den = float(match["den"])
        if den == 0:
            return None
        value /= den
    if match["exp"] is not None:
        try:
            value *= 10.0 ** int(match["exp"])
        except OverflowError:
            return None
    return -value if match["sign"] in ("-", "\u2212") else value


def _found(text: str, start: int = 0, stop: int | None = None) -> list[_Number]:
    """Every number in text[start:stop], with its place in `text`."""
    out = []
    for m in _NUMBER.finditer(text, start, len(text) if stop is None else stop):
        value = _to_float(m)
        if value is not None and math.isfinite(value):
            out.append(_Number(value, m.start(), m.end()))
    return out


def numbers_in(text: str) -> list[float]:
    """Every number in `text`, in order ("1,234", "-3", "$12.50", "3/4", "2e3")."""
    return [n.value for n in _found(text)]


def _negated(text: str, number: _Number) -> bool:
    """Whether the reply says the number is not the answer ("not 12", "12 is wrong")."""
    before = text[max(0, number.start - 40) : number.start]
    return bool(_NEGATED_BEFORE.search(before) or _NEGATED_AFTER.match(text, number.end))


def _sentence_end(text: str, start: int) -> int:
    """Where the sentence that `start` is in ends (looking at most `MAX_SPAN` characters ahead)."""
    stop = min(len(text), start + MAX_SPAN)
    end = _SENTENCE_END.search(text, start, stop)
    return end.start() if end else stop


def _boxed_span(text: str) -> tuple[int, int] | None:
    """Where the contents of the last \\boxed{...} are (nested braces allowed), or None."""
    starts = list(_BOXED.finditer(text))
    if not starts:
        return None
    i = start = starts[-1].end()
    depth = 1
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return (start, i - 1) if depth == 0 else (start, len(text))


def _boxed(text: str) -> str | None:
    """The contents of the last \\boxed{...}, LaTeX fractions and text commands written out."""
    span = _boxed_span(text)
    if span is None:
        return None
    inner = _FRAC.sub(lambda m: f"{m[1]}/{m[2]}", text[span[0] : span[1]])
    return re.sub(r"\\(?:text|mathrm|textbf)\s*\{([^{}]*)\}", r"\1", inner).replace("\\", " ")


def _marks(text: str) -> Iterator[_Mark]:
    """The reply's explicit answers, strongest first and, within a strength, the last stated first."""
    boxed = _boxed_span(text)
    if boxed is not None:
        yield _Mark("boxed", *boxed)
    hashes = list(_HASHES.finditer(text))
    if hashes:
        yield _Mark("####", hashes[-1].end(), _sentence_end(text, hashes[-1].end()))
    stated, claimed = [], []
    for n in _found(text):
        claim = _IS_THE_ANSWER.match(text, n.end)
        if claim and not _negated(text, n):
            stated.append(_Mark("is the answer", n.start, n.end))
            claimed.append(range(n.end, claim.end()))
    for m in _ANSWER_IS.finditer(text):
        if any(m.start() in span for span in claimed):
            continue  # the "answer" of "12 is the answer: ..."
        start = len(text) - len(text[m.end() :].lstrip(" \t\r\n*:"))
        stated.append(_Mark("answer is", start, _sentence_end(text, start)))
    yield from sorted(stated, key=lambda mark: -mark.start)
    weak = [_Mark("=>", m.end(), _sentence_end(text, m.end())) for m in _ARROW.finditer(text)]
    weak += [_Mark("bold", m.start(1), m.end(1)) for m in _BOLD.finditer(text) if _BOLD_NUMBER.fullmatch(m[1].strip())]
    yield from sorted(weak, key=lambda mark: -mark.start)


def _read_span(text: str, start: int, stop: int) -> _Number | None:
    """The answer inside a marked span: its first number that is not negated, or the result of the
    expression it starts with ("14 x 2 = 28")."""
    for number in _found(text, start, stop):
        if _negated(text, number):
            continue
        opening = number.start - (text[number.start - 1 : number.start] == "(")
        expression = _EXPRESSION.match(text, opening, max(stop, _sentence_end(text, number.start)))
        if expression is not None:
            result = _found(text, expression.start("result"), expression.end("result"))
            if result:
                return result[-1]
        return number
    return None


def _answer_first(text: str) -> _Number | None:
    """The number a reply opens with when what follows explains it ("12, because 3 x 4 = 12")."""
    lead = _LEADING.match(text)
    if lead is None:
        return None
    numbers = _found(text, lead.end(), lead.end() + 40)
    if not numbers or numbers[0].start != lead.end():
        return None
    first = numbers[0]
    if _EXPLAINS.match(text, first.end) or _DETAIL.match(text, first.end):
        return first
    return None


def _stated_first(text: str) -> _Number | None:
    """The last number of a first sentence that the working then follows ("The total is 45.
    Step-by-step: ...")."""
    end = _sentence_end(text, 0)
    numbers = [n for n in _found(text, 0, end) if not _negated(text, n)]
    if numbers and _WORKING_FOLLOWS.match(text, numbers[-1].end):
        return numbers[-1]
    return None


def _last_number(text: str, numbers: list[_Number]) -> _Number | None:
    """The last number that is not negated, bracketed beside a free number, or in a trailing detail
    (or listed after a total) of its sentence."""
    kept = [n for n in numbers if not _negated(text, n)]
    if not kept:
        return None
    window = max(0, kept[-1].start - MAX_SPAN)
    sentence_start = max((m.end() for m in _SENTENCE_END.finditer(text, window, kept[-1].start)), default=window)
    sentence = [n for n in kept if n.start >= sentence_start]
    free, depth, at = [], 0, sentence_start
    for n in sentence:  # outside brackets: "28 (14 x 2)" has one free number
        depth += text.count("(", at, n.start) - text.count(")", at, n.start)
        at = n.start
        if depth <= 0:
            free.append(n)
    for n in free[:-1]:
        if _TOTAL_AFTER.match(text, n.end):
            return n
        detail = _DETAIL.match(text, n.end)
        if detail and not _CONCLUSION.search(text, detail.end(), _sentence_end(text, detail.end())):
            return n
    return free[-1] if free else kept[-1]


def read_number(text: str, cut_off: bool = False) -> Reading:
    """The number `text` gives as its answer and how it was found (see the module docstring).

    With `cut_off`, only an explicit answer complete before the cut counts."""
    text = _bounded(text)
    for mark in _marks(text):
        if mark.kind == "boxed":
            inner = _boxed(text) or ""
            numbers = numbers_in(inner)
            if numbers:
                return _corrected(text, Reading(numbers[0], "boxed", mark.stop), cut_off)
            continue
        number = _read_span(text, mark.start, mark.stop)
        if number is not None:
            return _corrected(text, Reading(number.value, mark.kind, number.end), cut_off)
    if cut_off:
        return Reading(None, "cut off")
    first = _answer_first(text) or _stated_first(text)
    if first is not None:
        return Reading(first.value, "answer first", first.end)
    last = _last_number(text, _found(text))
    return Reading(last.value, "last number", last.end) if last else Reading(None)


def _corrected(text: str, reading: Reading, cut_off: bool) -> Reading:
    """The reading, or what a correction stated after it says instead ("... Wait, it is 19")."""
    corrections = [m for m in _CORRECTION.finditer(text) if m.start() >= reading.end]
    if corrections:
        start = corrections[-1].end()
        again = read_number(text[start:], cut_off)
        if again.value is not None and again.value != reading.value:
            return Reading(again.value, "correction", start + again.end)
    if cut_off and reading.end >= len(text.rstrip()):
        return Reading(None, "cut off")  # the number may be the start of a longer one
    return reading


def final_number(text: str) -> float | None:
    """The number a reply gives as its answer (see the module docstring); None if it has none."""
    return read_number(text).value


def fmt(value: float) -> str:
    """A number as people write it: "42", "-3", "0.75"."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


def numeric(
    output: str, reference: str | float, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9, cut_off: bool = False
) -> Score:
    """1 when the reply's answer equals the reference within a relative or absolute tolerance.

    A reply cut off at max_tokens (`cut_off`) scores 0 unless it stated its answer before the cut."""
    if isinstance(reference, str):
        expected = final_number(reference)
        if expected is None:
            raise BadInput(f"The reference '{clip(reference)}' is not a number: the numeric scorer needs one per item.")
    else:
        expected = float(reference)
    reading = read_number(output, cut_off)
    if reading.value is None:
        if cut_off:
            last = final_number(output)
            seen = f" (its last number was {fmt(last)})" if last is not None else ""
            return Score(0.0, f"cut off at max_tokens before an explicit answer{seen}")
        return Score(0.0, "no number in the answer")
    ok = math.isclose(reading.value, expected, rel_tol=rel_tol, abs_tol=abs_tol)
    how = "" if reading.how == "last number" else f" ({_HOW.get(reading.how, reading.how)})"
    cut = "; cut off at max_tokens after it" if cut_off else ""
    return Score(1.0 if ok else 0.0, f"expected {fmt(expected)}, got {fmt(reading.value)}{how}{cut}")


def _normalise_answer(span: str) -> str | None:
    """An answer in the form votes are counted in: a number in canonical form, else casefolded text."""
    numbers = numbers_in(span)
    if numbers:
        return fmt(numbers[0])
    text = " ".join(span.split()).strip(_EDGE_PUNCT).casefold()
    return text or None


def extract_answer(text: str | None, cut_off: bool = False) -> str | None:
    """The final answer of a chain-of-thought reply, normalised so equal answers vote together.

    A number is read as `read_number` reads it; otherwise the text of \\boxed{}, "####" or "the
    answer is", else the last line. A cut-off reply answers only where it stated its answer."""
    if not text or not text.strip():
        return None
    text = _bounded(text)
    reading = read_number(text, cut_off)
    if reading.value is not None and reading.explicit:
        return fmt(reading.value)
    for mark in _marks(text):
        if mark.kind in ("boxed", "####", "answer is"):
            span = _boxed(text) if mark.kind == "boxed" else text[mark.start : mark.stop]
            answer = _normalise_answer(span or "")
            if answer is not None and (not cut_off or mark.stop < len(text.rstrip())):
                return answer
    if cut_off:
        return None
    if reading.value is not None:
        return fmt(reading.value)
    lines = [line for line in text.splitlines() if line.strip(_EDGE_PUNCT)]
    bold = list(_BOLD.finditer(lines[-1])) if lines else []
    return _normalise_answer(bold[-1][1] if bold else lines[-1]) if lines else None


def majority(answers: Sequence[str | None]) -> tuple[str | None, float]:
    """The most common non-None answer (ties: the first seen) and its share of all answers."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)
    return winner, best / len(answers)
