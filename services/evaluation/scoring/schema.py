"""The JSON schema scorer: the first JSON value of an answer validated under a visitor's schema,
with no remote reference fetched, patterns time-limited and every keyword charged a step."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from adapters.errors import BadInput
from services.evaluation.scoring import budget
from services.evaluation.scoring.result import Score, clip
from services.evaluation.scoring.text import search

MAX_SCHEMA_CHARS = 20_000
MAX_SCHEMA_STEPS = 50_000  # schema keywords evaluated for one answer before giving up
CLOCK_EVERY = 64  # steps between two looks at the clock (the scorer budget's deadline)
MAX_JSON_SCAN_CHARS = 100_000  # characters of an output searched for a JSON value
MAX_JSON_STARTS = 200  # "{" / "[" positions tried before giving up on finding JSON


def _schema(reference: str | Mapping[str, Any]) -> Mapping[str, Any] | bool:
    """The schema from a JSON string or a mapping; unreadable or too large raises BadInput."""
    if not isinstance(reference, str):
        return reference
    if len(reference) > MAX_SCHEMA_CHARS:
        raise BadInput(f"The JSON schema is {len(reference):,} characters; the limit is {MAX_SCHEMA_CHARS:,}.")
    try:
        schema = json.loads(reference)
    except (ValueError, RecursionError) as err:
        raise BadInput(f"The JSON schema is not valid JSON ({err}): fix the schema.") from err
    if not isinstance(schema, dict | bool):
        raise BadInput('The JSON schema must be a JSON object such as {"type": "object"}.')
    return schema


def _has_pattern_properties(node: Any) -> bool:
    """Whether a schema uses patternProperties anywhere (it runs patterns with no time limit)."""
    if isinstance(node, Mapping):
        if isinstance(node.get("patternProperties"), Mapping):
            return True
        return any(_has_pattern_properties(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_pattern_properties(v) for v in node)
    return False


class _TooLong(Exception):
    """Raised inside validation when a schema check has used up its step budget."""


_steps = threading.local()


def _counted(keyword: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """`keyword` charged one step per use, so a schema that multiplies work through $ref stops early."""

    def counted(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        _steps.left -= 1
        if _steps.left < 0 or (_steps.left % CLOCK_EVERY == 0 and budget.spent()):
            raise _TooLong
        yield from keyword(validator, value, instance, schema)

    return counted


def _pattern_keyword(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """The schema keyword "pattern", run with the same limits as the regex scorer."""
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "string") or not isinstance(pattern, str):
        return
    found = search(pattern, instance)
    if found is None:
        yield ValidationError(f"pattern '{clip(pattern)}' took too long")
    elif not found:
        yield ValidationError(f"'{clip(instance)}' does not match '{clip(pattern)}'")


def _canonical(value: Any) -> Any:
    """A hashable form of a JSON value in which values JSON Schema calls equal are equal (1 == 1.0, not True)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, float) and value.is_integer():
        return ("number", int(value))
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, list):
        return ("array", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, _canonical(v)) for k, v in value.items()))
    return ("other", repr(value))


def _unique_items_keyword(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """The schema keyword "uniqueItems" in linear time (the library compares every pair)."""
    from jsonschema.exceptions import ValidationError

    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield ValidationError(f"the array has a repeated item: {clip(json.dumps(item, ensure_ascii=False))}")
            return
        seen.add(key)


@lru_cache(maxsize=16)
def _safe_validator(base: type) -> Any:
    """`base` with time-limited "pattern", linear "uniqueItems", and every keyword charged a step."""
    from jsonschema import validators

    keywords = dict(base.VALIDATORS)  # type: ignore[attr-defined]
    keywords.update(pattern=_pattern_keyword, uniqueItems=_unique_items_keyword)
    return validators.extend(base, {name: _counted(fn) for name, fn in keywords.items()})


def _json_candidates(text: str) -> Iterator[str]:
    """Texts that may hold the answer's JSON: each ``` fence's contents, then the whole output."""
    for fence in re.finditer(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", text, re.DOTALL):
        yield fence[1]
    yield text


def find_json(text: str) -> tuple[bool, Any]:
    """(True, value) for the first JSON object or array in a ``` fence, else in the text; (False, None) if none."""
    decoder = json.JSONDecoder()
    for candidate in _json_candidates(text[:MAX_JSON_SCAN_CHARS]):
        starts = [m.start() for m in re.finditer(r"[\[{]", candidate)][:MAX_JSON_STARTS]
        for start in starts:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict | list):
                return True, value
    return False, None


def json_schema(output: str, reference: str | Mapping[str, Any]) -> Score:
    """1 when the first JSON object or array in the output is valid under the JSON schema `reference`."""
    from jsonschema import exceptions, validators
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    schema = _schema(reference)
    if _has_pattern_properties(schema):
        raise BadInput("The JSON schema uses patternProperties, which is not supported here: use properties instead.")
    base = validators.validator_for(schema)
    try:
        base.check_schema(schema)
    except exceptions.SchemaError as err:
        raise BadInput(f"The JSON schema is not valid ({clip(err.message, 120)}): fix the schema.") from err
    found, value = find_json(output)
    if not found:
        return Score(0.0, "no JSON object or array in the answer")
    validator = _safe_validator(base)(schema, registry=Registry())  # an empty registry: no remote $ref is fetched
    _steps.left = MAX_SCHEMA_STEPS
    try:
        with budget.charged():
            error = exceptions.best_match(validator.iter_errors(value))
    except _TooLong:
        return Score(0.0, "the JSON took too long to check against the schema")
    except Unresolvable as err:
        raise BadInput(
            f"The JSON schema has a $ref that cannot be resolved ({clip(str(err), 100)}): "
            "use only local '#/...' references."
        ) from err
    except RecursionError as err:
        raise BadInput("The JSON schema refers to itself without end: fix its $ref.") from err
    if error is None:
        return Score(1.0, "the JSON matches the schema")
    where = "/".join(str(p) for p in error.absolute_path)
    return Score(
        0.0, f"the JSON does not match the schema{f' at {where}' if where else ''}: {clip(error.message, 100)}"
    )
