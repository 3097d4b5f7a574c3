"""The run log: every run in every tab, one row each, in SQLite or in the shared PostgreSQL.

`FMG_RUN_LOG` names the SQLite file (default `~/.fm-gallery/runs.sqlite3`; `off` turns logging
off); with `FMG_DATABASE_URL` the rows go to that shared database (services.db) and every worker
sees every run. Images stay files in the log file's folder, shared by the workers of one machine
(`services.run_log.files`), kept within a size budget (`services.run_log.image_budget`).

Modules: `schema` (where it lives, the table), `writing` (recording a run; its guarantees
against concurrent runs and killed processes are in its docstring), `writer` (the writer
thread), `queries` (reading within a visitor's scope), `export` (CSV and JSON Lines), `files`.
"""

from services.run_log.export import FORMULA_STARTS, Shown, csv_cell, export_csv, export_jsonl
from services.run_log.files import IMAGE_SUFFIXES, MAX_UPLOAD_BYTES, open_image, resolve
from services.run_log.queries import EVERYTHING, Scope, distinct, get, query
from services.run_log.schema import (
    COLUMNS,
    DEFAULT_PATH,
    ENV,
    JSON_COLUMNS,
    OFF_VALUES,
    SCHEMA_VERSION,
    RunLogError,
    location,
)
from services.run_log.writing import MAX_CHARS, MAX_ITEMS, Run, Upload, flush, run

__all__ = [
    "COLUMNS",
    "DEFAULT_PATH",
    "ENV",
    "EVERYTHING",
    "FORMULA_STARTS",
    "IMAGE_SUFFIXES",
    "JSON_COLUMNS",
    "MAX_CHARS",
    "MAX_ITEMS",
    "MAX_UPLOAD_BYTES",
    "OFF_VALUES",
    "SCHEMA_VERSION",
    "Run",
    "RunLogError",
    "Scope",
    "Shown",
    "Upload",
    "csv_cell",
    "distinct",
    "export_csv",
    "export_jsonl",
    "flush",
    "get",
    "location",
    "open_image",
    "query",
    "resolve",
    "run",
]
