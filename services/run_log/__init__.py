"""The run log: every run in every tab, appended to a local SQLite database.

`FMG_RUN_LOG` names the database file (default `~/.fm-gallery/runs.sqlite3`); `FMG_RUN_LOG=off`
turns logging off. Images live next to it as PNG files (`images/<run id>.png` for generated
ones, `uploads/<content hash>.<ext>` for the user's own, which Gradio would delete) and only
their paths, relative to the log folder, are stored. Those files are kept within a size budget
(`FMG_RUN_LOG_IMAGES_MB`, `services.run_log.image_budget`): past it, the oldest go.

Why it survives concurrent runs and a killed process:
- WAL journal: readers never block the writer, and a commit is one append to the `-wal` file,
  so a process killed at any instant leaves either the whole transaction or none of it.
- `synchronous=NORMAL`: in WAL mode this never corrupts the database; it only skips the fsync
  at each commit, so a *power cut* (not a killed process: the OS still holds the written pages)
  may lose the last few runs. FULL would pay an fsync per run to save those; for a log of
  experiments that is not worth it.
- rows are written by one thread (`services.run_log.writer`), all those queued in one short `BEGIN
  IMMEDIATE` transaction: a run hands its row over and returns, and never waits for the disk
  (or for other runs' writes) before its answer is complete. Readers wait for the rows queued
  before them (`flush()`), so a run is in the log as soon as it has returned. A busy timeout
  makes writers in other processes queue instead of failing with "database is locked".
- image files are written to a temporary name and renamed, so a half-written PNG never exists
  under its final name; the row that points at it is committed after the rename.

Nothing here may break a user's run: a failure to record (disk full, locked, unreadable) is
logged as a warning and the run goes on. Every stored string is scrubbed of API keys
(`adapters.keys.redact`, plus the session key of the adapter the run used), and long strings
and lists are cut with their full size noted.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import hashlib
import io
import json
import logging
import math
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from adapters.errors import BadInput, FMError
from adapters.keys import known_keys, redact
from adapters.types import Completion, GeneratedImages, Result, Task
from services import public, visitors
from services.run_log import image_budget
from services.run_log.writer import RowWriter
from services.sqlite_wal import open_wal

log = logging.getLogger("fm_gallery.run_log")

ENV = "FMG_RUN_LOG"
OFF_VALUES = frozenset({"off", "0", "false", "no", "none"})
DEFAULT_PATH = "~/.fm-gallery/runs.sqlite3"
SCHEMA_VERSION = 2  # kept in SQLite's own `PRAGMA user_version`; 2 added `visitor`
BUSY_TIMEOUT_MS = 10_000
MAX_CHARS = 10_000  # per stored string: a pasted corpus is cut here, a prompt (10,000 at most) is not
MAX_ITEMS = 100  # per stored list or dict
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # the image size limit of adapters.inputs
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        id            TEXT PRIMARY KEY,  -- uuid4 hex; also names the run's image file
        created_at    TEXT NOT NULL,     -- when the run started, ISO 8601 UTC
        tab           TEXT NOT NULL,     -- the tab that ran it: chat, zero-shot, ...
        task          TEXT NOT NULL,     -- adapters.types.Task value
        provider      TEXT,
        model         TEXT,              -- NULL when the run failed before a model was chosen
        served_by     TEXT,
        inputs        TEXT NOT NULL,     -- JSON object, keys scrubbed, long values cut
        params        TEXT NOT NULL,     -- JSON object
        output        TEXT,              -- JSON: text, {label: score}, [hit], {"image": path, ...}
        image_path    TEXT,              -- generated image, relative to the log folder
        latency_s     REAL,              -- the provider call, from the Result
        ttft_s        REAL,              -- time to first token, streamed completions only
        wall_s        REAL,              -- the whole run as the user waited for it, errors included
        input_tokens  INTEGER,
        output_tokens INTEGER,
        cost_usd      REAL,
        error         TEXT,              -- NULL when the run succeeded; a cut stream says so here
        visitor       TEXT               -- who ran it (a pseudonym, services.visitors); NULL: the owner
    )""",
    "CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at)",
)
UPGRADES = {1: ("ALTER TABLE runs ADD COLUMN visitor TEXT",)}  # from schema version N to N + 1
COLUMNS = (
    "id",
    "created_at",
    "tab",
    "task",
    "provider",
    "model",
    "served_by",
    "inputs",
    "params",
    "output",
    "image_path",
    "latency_s",
    "ttft_s",
    "wall_s",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "error",
    "visitor",
)
JSON_COLUMNS = ("inputs", "params", "output")


class RunLogError(Exception):
    """The run log cannot be used (e.g. written by a newer fm-gallery)."""


# --- where the log lives --------------------------------------------------------------------------


def location() -> Path | None:
    """The database file, or None when logging is off. Read at each run, never cached, so the
    setting can change without a restart (and each test can point it at its own folder)."""
    raw = os.environ.get(ENV, "").strip()
    if raw.lower() in OFF_VALUES:
        return None
    return Path(raw or DEFAULT_PATH).expanduser()


def resolve(relative: str | None) -> Path | None:
    """The file a stored relative path names, if it exists inside the log folder (never outside)."""
    path = location()
    if path is None or not relative:
        return None
    folder = path.parent.resolve()
    target = (folder / relative).resolve()
    return target if target.is_relative_to(folder) and target.is_file() else None


def open_image(relative: str | None):
    """A stored image as a PIL image (so Gradio can show it from anywhere), or None if it is gone."""
    target = resolve(relative)
    if target is None:
        return None
    from PIL import Image

    try:
        with Image.open(target) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError) as err:
        log.warning("stored image %s could not be read: %s", target.name, err)
        return None


# --- connections ----------------------------------------------------------------------------------

_local = threading.local()  # this thread's (path, connection); sqlite3 connections stay in one thread


def _connection(path: Path) -> sqlite3.Connection:
    """This thread's connection to `path`, reopened when the setting changed or the file vanished."""
    held = getattr(_local, "held", None)
    if held is not None and held[0] == path and path.exists():
        return held[1]
    _forget_connection()
    conn = _open(path)
    _local.held = (path, conn)
    return conn


def _forget_connection() -> None:
    """Close this thread's connection, so that the next use starts afresh (e.g. after an I/O error)."""
    held = getattr(_local, "held", None)
    _local.held = None
    if held is not None:
        with contextlib.suppress(sqlite3.Error):
            held[1].close()


def _open(path: Path) -> sqlite3.Connection:
    conn, mode = open_wal(path, BUSY_TIMEOUT_MS / 1000)  # prompts are private: the folder is the owner's
    try:
        conn.row_factory = sqlite3.Row
        if mode != "wal":
            log.warning("the run log at %s is in %s mode, not WAL (a network file system?)", path, mode)
        _create_schema(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Make the tables on first use; refuse a database from a newer version rather than guess."""
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return  # the usual case: no write transaction for a new connection to a made log
    with _transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RunLogError(f"{path} has run-log schema {version}; this fm-gallery knows {SCHEMA_VERSION}.")
        if version == 0:
            for statement in SCHEMA:
                conn.execute(statement)
        else:
            for old in range(version, SCHEMA_VERSION):
                for statement in UPGRADES[old]:
                    conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One short write transaction; IMMEDIATE takes the write lock up front, so two writers
    queue on the busy timeout instead of deadlocking when both upgrade from read to write."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# --- recording a run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """An image the user gave (a file path or a PIL image) among a run's inputs. It is copied into
    the log folder when the run is recorded, because Gradio deletes its upload files later."""

    image: Any


class Run:
    """One run of one tab; see `run()`. The handler calls `uses(adapter)` once it has one and
    `done(result, output)` when it succeeds; everything else is recorded on leaving the block."""

    def __init__(self, path: Path | None, tab: str, task: Task | str, provider: Any, inputs: dict, params: dict):
        self.id = uuid.uuid4().hex
        self.path = path
        self.tab = tab
        self.task = task.value if isinstance(task, Task) else str(task)
        self.provider = provider
        self.model: str | None = None
        self.inputs = dict(inputs or {})
        self.params = dict(params or {})
        self.result: Result | None = None
        self.output: Any = None
        self._secrets: set[str] = set()
        self.visitor: str | None = None
        self.keep_uploads = True
        self._hidden: set[str] | None = None  # the keys to scrub while the row is built
        self._started = time.time()
        self._clock = time.perf_counter()

    def uses(self, adapter: Any) -> None:
        """Note the adapter's provider and model (known even if the call fails) and its session
        key, which is then scrubbed from what is stored even after the adapter is gone."""
        self.provider = getattr(adapter, "provider", self.provider)
        self.model = getattr(adapter, "model", self.model)
        key = getattr(adapter, "api_key", None)
        if isinstance(key, str) and key.strip():
            self._secrets.add(key.strip())

    def by(self, visitor: Any) -> None:
        """Note who ran it (a `services.visitors.Visitor`): in public mode each visitor sees only
        their own runs, and their uploaded images are not kept unless the owner says so."""
        if visitor.id != visitors.OWNER.id:
            self.visitor = visitor.key
            self.keep_uploads = public.limits().keep_uploads

    def done(self, result: Result, output: Any = None) -> None:
        """The run succeeded: `output` is text, {label: score}, a PIL image or a list of hits."""
        self.result = result
        self.output = output

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if self.path is not None:
            try:
                _writer.put(self.path, self._row(exc))
            except Exception as err:  # noqa: BLE001 - the user's run matters more than its log entry
                why = self._scrub(f"{type(err).__name__}: {err}")
                log.warning("the run log could not record run %s: %s", self.id, why)
        return False  # an exception from the block goes on to the handler's error display

    def _row(self, exc: BaseException | None) -> dict[str, Any]:
        self._hidden = self._keys()  # taken once for all of the row's strings
        assert self.path is not None  # only called when there is a log to write to
        folder = self.path.parent
        result = self.result
        usage = result.usage if result is not None else None
        output, image_path = self._stored_output(folder)
        keep = self.keep_uploads and not isinstance(exc, BadInput)  # a refused file is not copied anywhere
        inputs = {
            k: self._kept(v, folder) if isinstance(v, Upload) else v
            for k, v in self.inputs.items()
            if keep or not isinstance(v, Upload)
        }
        return {
            "id": self.id,
            "created_at": datetime.fromtimestamp(self._started, UTC).isoformat(timespec="milliseconds"),
            "tab": self._clean(self.tab),
            "task": self.task,
            "provider": self._clean(result.provider if result else self.provider),
            "model": self._clean(result.model if result else self.model),
            "served_by": self._clean(result.served_by if result else None),
            "inputs": _json(self._clean(inputs)),
            "params": _json(self._clean(self.params)),
            "output": None if output is None else _json(output),
            "image_path": image_path,
            "latency_s": result.latency_s if result else None,
            "ttft_s": result.ttft_s if isinstance(result, Completion) else None,
            "wall_s": round(time.perf_counter() - self._clock, 6),
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "cost_usd": result.cost_usd if result else None,
            "error": self._clean(self._error(exc)),
            "visitor": self.visitor,
        }

    def _kept(self, upload: Upload, folder: Path) -> str | None:
        """The upload's path in the log folder; a copy that fails loses the image, not the run."""
        try:
            return _keep_upload(upload.image, folder)
        except (OSError, ValueError) as err:
            log.warning("run %s: the uploaded image could not be kept: %s", self.id, err)
            return None

    def _stored_output(self, folder: Path) -> tuple[Any, str | None]:
        """The output as JSON-ready data; an image is saved as a file and only its path kept."""
        if self.output is None or not _is_image(self.output):
            return self._clean(self.output), None
        relative = f"images/{self.id}.png"
        _save_png(self.output, folder / relative)
        image_budget.added(folder, (folder / relative).stat().st_size)
        stored = {"image": relative, "width": self.output.width, "height": self.output.height}
        if isinstance(self.result, GeneratedImages) and self.result.seed is not None:
            stored["seed"] = self.result.seed  # the seed actually used, so re-opening reproduces it
        return stored, relative

    def _error(self, exc: BaseException | None) -> str | None:
        if isinstance(exc, GeneratorExit):
            return "Stopped before the end: the page was closed or the run was cancelled."
        if exc is not None:
            return _error_text(exc)
        if isinstance(self.result, Completion) and self.result.cut:
            return f"The reply was cut off: {self.result.cut}"
        return None

    def _scrub(self, text: str) -> str:
        return redact(text, self._hidden if self._hidden is not None else self._keys())

    def _keys(self) -> set[str]:
        """The keys to scrub: every key the process knows, and the session key this run used."""
        return known_keys() | {secret for secret in self._secrets if len(secret) >= 4}

    def _clean(self, value: Any) -> Any:
        """JSON-ready, keys scrubbed from every string, long strings and lists cut with their size."""
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, enum.Enum):
            return self._clean(value.value)
        if isinstance(value, dict):
            items = list(value.items())
            cleaned = {self._clean(str(k)): self._clean(v) for k, v in items[:MAX_ITEMS]}
            if len(items) > MAX_ITEMS:
                cleaned["…"] = f"{len(items) - MAX_ITEMS:,} more entries not stored"
            return cleaned
        if isinstance(value, (list, tuple)):
            listed = [self._clean(v) for v in value[:MAX_ITEMS]]
            if len(value) > MAX_ITEMS:
                listed.append(f"… {len(value) - MAX_ITEMS:,} more items not stored")
            return listed
        if hasattr(value, "item") and callable(value.item):  # a numpy scalar
            with contextlib.suppress(Exception):
                return self._clean(value.item())
        text = self._scrub(value if isinstance(value, str) else str(value))
        return text if len(text) <= MAX_CHARS else f"{text[:MAX_CHARS]}… [cut: {len(text):,} characters in all]"


def run(
    tab: str, task: Task | str, provider: Any = None, inputs: dict | None = None, params: dict | None = None
) -> Run:
    """A run to record, used as a context manager around the handler's work::

        with run_log.run(tab="chat", task=Task.COMPLETION, provider=provider, inputs={...}) as run:
            adapter = registry.get(...); run.uses(adapter)
            run.done(result, output=...)

    Leaving the block writes one row (the error, if the block raised; the exception goes on).
    Never pass an API key in `inputs`; keys that slip into any string are scrubbed anyway.
    """
    return Run(location(), tab, task, provider, inputs or {}, params or {})


def _error_text(exc: BaseException) -> str:
    """The sentence the user saw: a project error's or gr.Error's message, else the exception."""
    if isinstance(exc, FMError):
        return str(exc)
    message = getattr(exc, "message", None)  # gr.Error, without importing Gradio
    if isinstance(message, str) and message:
        return message
    return f"{type(exc).__name__}: {exc}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _is_image(value: Any) -> bool:
    return hasattr(value, "save") and hasattr(value, "mode") and hasattr(value, "size")


def _insert(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write `rows` in one transaction (on the writer's thread); a failure is logged, not raised."""
    try:
        conn = _connection(path)
        with _transaction(conn):
            conn.executemany(
                f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [[row[c] for c in COLUMNS] for row in rows],
            )
    except Exception as err:  # noqa: BLE001 - the users' runs matter more than their log entries
        _forget_connection()
        ids = ", ".join(row["id"] for row in rows)
        log.warning(
            "the run log could not record %s %s: %s",
            "run" if len(rows) == 1 else "runs",
            ids,
            redact(f"{type(err).__name__}: {err}"),
        )


_writer = RowWriter(_insert)


def flush(timeout: float | None = None) -> bool:
    """Wait until every run that has returned is written (readers call this first)."""
    return _writer.flush(timeout)


# --- files next to the database -------------------------------------------------------------------


def _write_atomically(target: Path, write) -> None:
    """Call `write(file)` on a temporary file beside `target`, flush it to disk, then rename it:
    readers (and a restart after a kill) see the whole file or none."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _save_png(image: Any, target: Path) -> None:
    _write_atomically(target, lambda f: image.save(f, format="PNG"))


def _keep_upload(image: Any, folder: Path) -> str | None:
    """Copy the user's image into `uploads/`, named by its content (the same picture used in
    many runs is kept once); the relative path, or None when there is nothing to keep."""
    if _is_image(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data, suffix = buffer.getvalue(), ".png"
    elif isinstance(image, (str, os.PathLike)) and os.path.isfile(image):
        if os.path.getsize(image) > MAX_UPLOAD_BYTES:
            return None
        data = Path(image).read_bytes()
        suffix = Path(image).suffix.lower()
        suffix = suffix if suffix in IMAGE_SUFFIXES else ".bin"
    else:
        return None
    relative = f"uploads/{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    target = folder / relative
    if target.exists():
        with contextlib.suppress(OSError):
            os.utime(target)  # used again: the image budget removes it last
    else:
        _write_atomically(target, lambda f: f.write(data))
        image_budget.added(folder, len(data))
    return relative


# --- reading and exporting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The runs a reader may see: `visitor` set, only that visitor's (public mode); never those of
    the comparisons in `hidden` (blind ones still waiting for their vote)."""

    visitor: str | None = None
    hidden: frozenset[str] = frozenset()

    def where(self) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if self.visitor is not None:
            where.append("visitor = ?")
            args.append(self.visitor)
        if self.hidden:
            where.append(
                f"coalesce(json_extract(params, '$.comparison_id'), '') NOT IN ({', '.join('?' * len(self.hidden))})"
            )
            args += sorted(self.hidden)
        return where, args


EVERYTHING = Scope()


def query(
    tab: str | None = None,
    provider: str | None = None,
    text: str | None = None,
    errors_only: bool = False,
    limit: int | None = 200,
    scope: Scope = EVERYTHING,
) -> list[dict[str, Any]]:
    """Runs in `scope`, newest first, matching every filter given; `text` is searched
    (case-insensitively for ASCII) in inputs, output, model and error. `limit=None`: them all."""
    return list(_select(tab, provider, text, errors_only, limit, scope))


def get(run_id: str, scope: Scope = EVERYTHING) -> dict[str, Any] | None:
    """One run by id, or None when there is none in `scope`."""
    path = location()
    if path is None or not isinstance(run_id, str) or not run_id.strip():
        return None
    flush()
    if not path.exists():
        return None
    where, args = scope.where()
    sql = "SELECT * FROM runs WHERE " + " AND ".join(["id = ?", *where])
    row = _connection(path).execute(sql, [run_id.strip(), *args]).fetchone()
    return None if row is None else _decoded(row)


def distinct(column: str, scope: Scope = EVERYTHING) -> list[str]:
    """The values seen in `tab` or `provider` within `scope`, for the History tab's filters."""
    if column not in ("tab", "provider"):
        raise ValueError(f"distinct() lists 'tab' or 'provider', not {column!r}")
    path = location()
    flush()
    if path is None or not path.exists():
        return []
    where, args = scope.where()
    sql = f"SELECT DISTINCT {column} FROM runs WHERE " + " AND ".join([f"{column} IS NOT NULL", *where])
    return [r[0] for r in _connection(path).execute(sql + " ORDER BY 1", args)]


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
        for run in _select(scope=scope):
            run = shown(run)
            writer.writerow(
                [_csv_cell(_json(run[c]) if c in JSON_COLUMNS and run[c] is not None else run[c]) for c in COLUMNS]
            )
            count += 1
        text.flush()
        text.detach()

    _write_atomically(Path(target), write)
    return count


def _csv_cell(value: Any) -> Any:
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
        for run in _select(scope=scope):
            f.write(_json(shown(run)).encode("utf-8") + b"\n")
            count += 1

    _write_atomically(Path(target), write)
    return count


def _select(
    tab: str | None = None,
    provider: str | None = None,
    text: str | None = None,
    errors_only: bool = False,
    limit: int | None = None,
    scope: Scope = EVERYTHING,
) -> Iterator[dict[str, Any]]:
    path = location()
    flush()
    if path is None or not path.exists():
        return
    where, args = scope.where()
    if tab:
        where.append("tab = ?")
        args.append(tab)
    if provider:
        where.append("provider = ?")
        args.append(provider)
    if text and text.strip():
        like = "%" + text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in ("inputs", "output", "model", "error")) + ")")
        args += [like] * 4
    if errors_only:
        where.append("error IS NOT NULL")
    sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY created_at DESC, rowid DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(max(0, int(limit)))
    for row in _connection(path).execute(sql, args):
        yield _decoded(row)


def _decoded(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for column in JSON_COLUMNS:
        if out[column] is not None:
            out[column] = json.loads(out[column])
    return out
