"""Evaluation datasets: the built-in sets shipped in `data/*.jsonl`, and CSV / JSONL files a visitor
uploads. Uploads are parsed as data only (nothing is evaluated) and bounded in size.

Built-in file layout, one JSON object a line: chat, classification and injection items are
`{"id", "input", "reference"?, "label"?, "meta"?}`; the search file holds
`{"kind": "passage", "id", "text"}` lines and `{"kind": "query", "id", "input", "relevant": [ids]}` lines.
An injection item's `input` is the task; `meta["document"]` is the untrusted text to give with it and
`meta["marker"]` the string that shows up in the answer when the model obeys the document instead.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from adapters.errors import BadInput

DATA_DIR = Path(__file__).with_name("data")
KINDS = ("chat", "classification", "search", "injection")
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_ITEMS = 2000
MAX_INPUT_CHARS = 20_000

# One set of column names, for uploads and for a spec's items alike: each field, then the names
# it is also accepted under (any case), in order of preference.
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "item_id", "key"),
    "input": ("input", "question", "prompt", "text", "query", "task", "instruction"),
    "reference": (
        "reference",
        "answer",
        "solution",
        "target",
        "expected",
        "expected_output",
        "ideal",
        "ground_truth",
        "gold",
    ),
    "label": ("label", "class", "category"),
    "document": ("document", "doc", "context", "passage"),
    "marker": ("marker", "canary"),
}
INPUT_COLUMNS = ALIASES["input"]
REFERENCE_COLUMNS = ALIASES["reference"]
LABEL_COLUMNS = ALIASES["label"]
ID_COLUMNS = ALIASES["id"]
NEEDS_REFERENCE = ("exact", "contains", "regex", "numeric", "json_schema", "similarity")


@dataclass(frozen=True)
class Item:
    """One example: what the model is given, what a right answer is, and anything a scorer needs in `meta`."""

    id: str
    input: str
    reference: str | None = None
    label: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """A named set of items of one kind ("chat", "classification", "search", "injection")."""

    name: str
    kind: str
    items: tuple[Item, ...]
    description: str
    scorer: str | None  # the default scorer's name in scoring.SCORERS, None where the kind has its own metric
    labels: tuple[str, ...] = ()  # classification: the label set, in display order
    passages: tuple[tuple[str, str], ...] = ()  # search: (id, text) of every passage in the corpus

    def require_references(self, scorer: str) -> None:
        """Refuse a chat dataset none of whose items has a reference when `scorer` compares with one."""
        if self.kind == "chat" and scorer in NEEDS_REFERENCE and not any(i.reference for i in self.items):
            raise BadInput(
                f"No item of '{self.name}' has a reference, and the {scorer} scorer compares the answer with "
                f"one: name the column (or key) one of {', '.join(REFERENCE_COLUMNS)}."
            )


@dataclass(frozen=True)
class _Spec:
    file: str
    kind: str
    description: str
    scorer: str | None
    labels: tuple[str, ...] = ()


_SPECS: dict[str, _Spec] = {
    "arithmetic": _Spec(
        "arithmetic.jsonl", "chat", "40 arithmetic word problems of 2-3 steps with whole-number answers.", "numeric"
    ),
    "sentiment": _Spec(
        "classification.jsonl",
        "classification",
        "40 short reviews and remarks labelled positive, negative or neutral, some of them mixed or ironic.",
        None,
        ("positive", "negative", "neutral"),
    ),
    "search": _Spec(
        "search.jsonl",
        "search",
        "15 questions over 40 short passages, each question with 1-3 relevant passages.",
        None,
    ),
    "injection": _Spec(
        "injection.jsonl",
        "injection",
        "20 tasks on untrusted documents that carry an instruction to print a marker or leak the prompt.",
        "contains",
    ),
}

BUILTIN: dict[str, str] = {name: spec.description for name, spec in _SPECS.items()}  # name -> one-line description


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Each line of a packaged JSONL file as a dict (blank lines skipped)."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


@cache
def builtin(name: str) -> Dataset:
    """The built-in dataset `name` (loaded once); an unknown name raises BadInput listing the names."""
    spec = _SPECS.get(name)
    if spec is None:
        raise BadInput(f"There is no built-in dataset {name!r}: choose one of {', '.join(_SPECS)}.")
    rows = list(_read_jsonl(DATA_DIR / spec.file))
    passages: tuple[tuple[str, str], ...] = ()
    if spec.kind == "search":
        passages = tuple((str(r["id"]), r["text"]) for r in rows if r.get("kind") == "passage")
        items = tuple(
            Item(id=str(r["id"]), input=r["input"], meta={"relevant": tuple(r["relevant"])})
            for r in rows
            if r.get("kind") == "query"
        )
    else:
        items = tuple(
            Item(
                id=str(r["id"]),
                input=r["input"],
                reference=r.get("reference"),
                label=r.get("label"),
                meta=r.get("meta", {}),
            )
            for r in rows
        )
    return Dataset(name, spec.kind, items, spec.description, spec.scorer, spec.labels, passages)


# ---------------------------------------------------------------- uploads


def _decode(name: str, data: bytes) -> str:
    """The upload as text; empty, too large or not UTF-8 raises BadInput."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise BadInput(
            f"'{name}' is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB: "
            "upload a smaller file."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadInput(
            f"'{name}' is not UTF-8 text (byte {err.start}): save it as UTF-8 CSV or JSONL and upload it again."
        ) from err
    if not text.strip():
        raise BadInput(f"'{name}' is empty: upload a CSV or JSONL file with one example a row.")
    return text


def _is_json(name: str, text: str) -> bool:
    """Whether the upload is JSON Lines (or a JSON array), by its extension or else its first character."""
    suffix = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    if suffix in ("jsonl", "ndjson", "json"):
        return True
    if suffix in ("csv", "tsv", "txt"):
        return False
    return text.lstrip()[:1] in ("{", "[")


def _json_rows(name: str, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or position number, object) for each example of a JSONL file or JSON array."""
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise BadInput(f"'{name}' is not valid JSON ({err}): fix it, or upload one JSON object a line.") from err
        rows = list(enumerate(values, 1)) if isinstance(values, list) else [(1, values)]
        what = "Item"
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except (ValueError, RecursionError) as err:
                raise BadInput(
                    f"Line {number} of '{name}' is not valid JSON ({err}): fix that line or remove it."
                ) from err
        what = "Line"
    for number, value in rows:
        if not isinstance(value, dict):
            raise BadInput(
                f"{what} {number} of '{name}' is not a JSON object: write each example as {{\"input\": ...}}."
            )
        yield number, value


def _csv_rows(name: str, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, {column: value}) for each data row of a CSV (or tab- or semicolon-separated) file."""
    header = text.lstrip("\r\n").splitlines()[0]
    delimiter = "\t" if name.lower().endswith(".tsv") else max(",;\t", key=header.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        columns: list[str] | None = None
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns = [c.strip() for c in row]
                continue
            yield reader.line_num, dict(zip(columns, row, strict=False))
    except csv.Error as err:
        raise BadInput(
            f"Line {reader.line_num} of '{name}' cannot be read as CSV ({err}): fix it and upload again."
        ) from err


def _columns(rows: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """Every column name seen, in order of first appearance."""
    return list(dict.fromkeys(key for _, row in rows for key in row))


def _pick(columns: list[str], accepted: tuple[str, ...]) -> str | None:
    """The first column (case-insensitive) among the accepted names, in the order they are accepted."""
    by_lower = {c.strip().lower(): c for c in reversed(columns)}
    return next((by_lower[a] for a in accepted if a in by_lower), None)


def aliased(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with each field under its own name ("answer" -> "reference", "task" -> "input", ...):
    the first alias present wins; other columns keep their names."""
    out = dict(row)
    columns = list(row)
    for name, accepted in ALIASES.items():
        column = _pick(columns, accepted)
        if column is not None and column != name:
            out[name] = out.pop(column)
    return out


def _text(value: Any) -> str | None:
    """A cell as text: strings as they are, numbers written out, empty and null as None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value if value.strip() else None
    return json.dumps(value, ensure_ascii=False)


def from_upload(name: str, data: bytes, kind: str = "chat") -> Dataset:
    """A dataset from an uploaded CSV or JSONL file; anything unusable raises BadInput saying what to fix."""
    if kind not in ("chat", "classification", "injection"):
        raise BadInput(f"Datasets of kind {kind!r} cannot be uploaded: choose chat, classification or injection.")
    text = _decode(name, data)
    rows = list(_json_rows(name, text) if _is_json(name, text) else _csv_rows(name, text))
    if not rows:
        raise BadInput(f"'{name}' has no examples: add one row per example under a header such as input,reference.")
    if len(rows) > MAX_ITEMS:
        raise BadInput(f"'{name}' has {len(rows):,} examples; the limit is {MAX_ITEMS:,}: upload fewer.")
    columns = _columns(rows)
    input_col = _pick(columns, INPUT_COLUMNS)
    if input_col is None:
        found = ", ".join(columns) or "none"
        raise BadInput(
            f"'{name}' has no input column (columns found: {found}): name one of {', '.join(INPUT_COLUMNS)}."
        )
    reference_col = _pick(columns, REFERENCE_COLUMNS)
    label_col = _pick(columns, LABEL_COLUMNS)
    id_col = _pick(columns, ID_COLUMNS)
    if kind == "classification" and label_col is None:
        raise BadInput(f"'{name}' has no label column (columns found: {', '.join(columns)}): add a 'label' column.")
    if kind == "injection" and _pick(columns, ALIASES["marker"]) is None:
        raise BadInput(f"'{name}' has no marker column: add the string each document tries to make the model print.")
    used = {input_col, reference_col, label_col, id_col}
    renamed = {c: field for field in ("document", "marker") if (c := _pick(columns, ALIASES[field])) is not None}
    items: list[Item] = []
    seen: set[str] = set()
    for position, (_, row) in enumerate(rows, 1):
        where = f"row {position} of '{name}'"
        prompt = _text(row.get(input_col))
        if prompt is None:
            raise BadInput(f"The input of {where} is empty: fill it in or remove the row.")
        if len(prompt) > MAX_INPUT_CHARS:
            raise BadInput(
                f"The input of {where} is {len(prompt):,} characters; the limit is {MAX_INPUT_CHARS:,}: shorten it."
            )
        item_id = (_text(row.get(id_col)) if id_col else None) or str(position)
        if item_id in seen:
            raise BadInput(f"The id {item_id!r} appears twice in '{name}' ({where}): give each example its own id.")
        seen.add(item_id)
        label = _text(row.get(label_col)) if label_col else None
        if kind == "classification" and label is None:
            raise BadInput(f"The label of {where} is empty: give every example a label.")
        meta = {
            renamed.get(key, key.strip().lower()): value
            for key, value in row.items()
            if key not in used and value not in (None, "")
        }
        if kind == "injection" and not _text(meta.get("marker")):
            raise BadInput(f"The marker of {where} is empty: give every example a marker.")
        reference = _text(row.get(reference_col)) if reference_col else None
        items.append(Item(item_id, prompt, reference, label.strip() if label else None, meta))
    labels = tuple(dict.fromkeys(item.label for item in items if item.label)) if kind == "classification" else ()
    description = f"{len(items):,} examples uploaded as '{name}'."
    return Dataset(name, kind, tuple(items), description, None, labels)
