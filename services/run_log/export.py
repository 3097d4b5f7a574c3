"""Exporting the run log as CSV or JSON Lines, written atomically (the whole file or none)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.run_log.files import write_atomically
from services.run_log.queries import EVERYTHING, Scope, select_runs
from services.run_log.schema import COLUMNS, JSON_COLUMNS
from services.run_log.writing import to_json

Shown = Callable[[dict[str, Any]], dict[str, Any]]  # a run as an export may show it (e.g. masked)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell as a formula


def export_csv(target: str | os.PathLike, shown: Shown = lambda run: run, scope: Scope = EVERYTHING) -> int:
    """Write every run, newest first, as `shown` gives it, as CSV (JSON columns as JSON text,
    NULL as an empty cell); the number of runs written. A text cell that a spreadsheet would
    read as a formula (it starts with = + - @) gets a leading apostrophe, as OWASP advises: a
    prompt or a model's answer must not run in whoever opens the file."""
    count = 0

    def write(f):
        nonlocal count
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(COLUMNS)
        for run in select_runs(scope=scope):
            run = shown(run)
            writer.writerow(
                [csv_cell(to_json(run[c]) if c in JSON_COLUMNS and run[c] is not None else run[c]) for c in COLUMNS]
            )
            count += 1
        text.flush()
        text.detach()

    write_atomically(Path(target), write)
    return count


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: NULL empty, a would-be formula defused with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def export_jsonl(target: str | os.PathLike, shown: Shown = lambda run: run, scope: Scope = EVERYTHING) -> int:
    """Write every run, newest first, as `shown` gives it, one JSON object a line (JSON columns
    nested); the count."""
    count = 0

    def write(f):
        nonlocal count
        for run in select_runs(scope=scope):
            f.write(to_json(shown(run)).encode("utf-8") + b"\n")
            count += 1

    write_atomically(Path(target), write)
    return count
