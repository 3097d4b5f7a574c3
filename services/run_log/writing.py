"""Recording a run: `run()` around a tab's handler, one row per run, written off the run's thread.

Why it survives concurrent runs and a killed process, on both engines:
- rows are written by one thread per process (`services.run_log.writer`), all those queued in
  one short write transaction: a run hands its row over and returns, and never waits for the
  database (or for other runs' writes) before its answer is complete. Readers wait for the rows
  queued before them (`flush()`), so a run is in the log as soon as it has returned.
- each batch is one transaction: a process killed at any instant leaves either the whole batch
  or none of it, never half a row. SQLite: WAL journal (a commit is one append to the `-wal`
  file; readers never block the writer), `BEGIN IMMEDIATE` with a busy timeout so writers in
  other processes queue instead of failing with "database is locked", `synchronous=NORMAL` (a
  *power cut*, not a killed process, may lose the last few runs). PostgreSQL: the server commits
  or discards the transaction whole when its client dies; workers on any machine append at once;
  the same trade as SQLite's (`synchronous_commit = off` for these transactions): a crash of the
  server itself may lose its last fraction of a second of runs, a killed worker loses nothing.
- image files are written first, to a temporary name and renamed (`services.run_log.files`), so
  the row that points at an image is committed after the image exists.

Nothing here may break a user's run: a failure to record (disk full, locked, unreachable) is
logged as a warning and the run goes on. Every stored string is scrubbed of API keys
(`adapters.keys.redact`, plus the session key of the adapter the run used), and long strings
and lists are cut with their full size noted.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from sqlalchemy import insert

from adapters.errors import BadInput, FMError
from adapters.keys import known_keys, redact
from adapters.types import Completion, GeneratedImages, Result, Task
from services import db, public, visitors
from services.run_log import image_budget
from services.run_log.files import is_image, keep_upload, save_png
from services.run_log.schema import RunLogError, Store, engine, location, runs, store
from services.run_log.writer import RowWriter

log = logging.getLogger("fm_gallery.run_log")

MAX_CHARS = 10_000  # per stored string: a pasted corpus is cut here, a prompt (10,000 at most) is not
MAX_ITEMS = 100  # per stored list or dict


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
                _writer.put(store(self.path), self._row(exc))
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
        comparison_id = self.params.get("comparison_id")
        return {
            "id": self.id,
            "created_at": datetime.fromtimestamp(self._started, UTC).isoformat(timespec="milliseconds"),
            "tab": self._clean(self.tab),
            "task": self.task,
            "provider": self._clean(result.provider if result else self.provider),
            "model": self._clean(result.model if result else self.model),
            "served_by": self._clean(result.served_by if result else None),
            "inputs": to_json(self._clean(inputs)),
            "params": to_json(self._clean(self.params)),
            "output": None if output is None else to_json(output),
            "image_path": image_path,
            "latency_s": result.latency_s if result else None,
            "ttft_s": result.ttft_s if isinstance(result, Completion) else None,
            "wall_s": round(time.perf_counter() - self._clock, 6),
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "cost_usd": result.cost_usd if result else None,
            "error": self._clean(self._error(exc)),
            "visitor": self.visitor,
            "comparison_id": None if comparison_id is None else str(comparison_id),
        }

    def _kept(self, upload: Upload, folder: Path) -> str | None:
        """The upload's path in the log folder; a copy that fails loses the image, not the run."""
        try:
            return keep_upload(upload.image, folder)
        except (OSError, ValueError) as err:
            log.warning("run %s: the uploaded image could not be kept: %s", self.id, err)
            return None

    def _stored_output(self, folder: Path) -> tuple[Any, str | None]:
        """The output as JSON-ready data; an image is saved as a file and only its path kept."""
        if self.output is None or not is_image(self.output):
            return self._clean(self.output), None
        relative = f"images/{self.id}.png"
        save_png(self.output, folder / relative)
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


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _insert(where: Store, rows: list[dict[str, Any]]) -> None:
    """Write `rows` in one transaction (on the writer's thread); a failure is logged, not raised."""
    try:
        with (
            db.storage_errors("the run log could not be written", RunLogError),
            db.writing(engine(where), flush_to_disk=False) as conn,
        ):
            conn.execute(insert(runs), rows)
    except Exception as err:  # noqa: BLE001 - the users' runs matter more than their log entries
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
