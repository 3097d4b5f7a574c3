"""Run one input against several targets at once, each in its own thread with its own deadline.

A comparison should take as long as its slowest target, not the sum, and one target that fails
or hangs must not hold up or break the others. So every target runs in a daemon thread that
reports into one queue; the caller reads the queue until every target has reported or its
deadline has passed. A target that misses its deadline is reported as timed out and abandoned:
its thread may finish later, but nobody reads what it sends (and a streaming target is stopped
at its next delta). Daemon threads, not a pool: a hung vendor call must not keep the process
alive at exit.

A target's call receives `emit(text)` for streamed text; non-streaming calls ignore it. So
`stream()` yields `(target index, text delta)` as text arrives from any target and
`(target index, Outcome)` once per target, and `run()` just waits for the outcomes. No Gradio
here: the Compare tab renders what this module reports.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from adapters.errors import FMError
from adapters.keys import redact

log = logging.getLogger("fm_gallery.fanout")
T = TypeVar("T")
UNEXPECTED = "Something went wrong on the server; it has been logged. Try again, or pick another target."

Emit = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """One side of a comparison: a provider and (optionally) a model; None means its default."""

    provider: str
    model: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        """ "provider" or "provider:model"; only the first colon splits, since model ids may hold
        colons ("pkg:..." files, Ollama tags such as "llama3:8b")."""
        provider, _, model = str(text).strip().partition(":")
        return cls(provider.strip(), model.strip() or None)

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """How one target ended: its value, or the one sentence that says why there is none."""

    target: Target
    value: T | None
    error: str | None
    elapsed_s: float  # from the start of the comparison to this target's answer (or deadline)
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


Event = str | Outcome  # a text delta, or the target's final outcome
Call = Callable[[Target, Emit], T]


class Abandoned(Exception):
    """Raised by `emit` inside a target's thread once nobody waits for it any more."""

    def __init__(self):
        super().__init__("The comparison stopped waiting for this target (its deadline passed or the page closed).")


def error_sentence(err: BaseException) -> str:
    """The sentence shown for a target's failure; anything unexpected is logged in full here."""
    if isinstance(err, FMError):
        return redact(str(err))
    log.error("unexpected error in a comparison target: %s", redact(f"{type(err).__name__}: {err}"), exc_info=err)
    return UNEXPECTED


def stream_batches(targets: Sequence[Target], call: Call, timeout_s: float) -> Iterator[list[tuple[int, Event]]]:
    """Like `stream`, but yields everything that arrived since the last batch at once, so a slow
    consumer (a web page re-rendering six columns) catches up instead of falling behind."""
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive (got {timeout_s}).")
    events: queue.SimpleQueue[tuple[int, Event]] = queue.SimpleQueue()
    abandoned = [threading.Event() for _ in targets]
    started = time.perf_counter()
    for i, target in enumerate(targets):
        threading.Thread(
            target=_work,
            args=(i, target, call, events, abandoned[i], started),
            name=f"fanout-{i}-{target.provider}",
            daemon=True,
        ).start()
    pending = set(range(len(targets)))
    deadline = started + timeout_s  # every target starts now, so each one's own deadline is this
    try:
        while pending:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                for i in pending:
                    abandoned[i].set()
                yield [(i, _timed_out(targets[i], timeout_s)) for i in sorted(pending)]
                return
            try:
                first = events.get(timeout=remaining)
            except queue.Empty:
                continue
            batch = [e for e in [first, *_drain(events)] if e[0] in pending]
            pending -= {i for i, event in batch if isinstance(event, Outcome)}
            yield batch
    finally:  # also when the consumer stops early: stop every stream still running
        for flag in abandoned:
            flag.set()


def stream(targets: Sequence[Target], call: Call, timeout_s: float) -> Iterator[tuple[int, Event]]:
    """Yield `(target index, text delta)` as text arrives from any target, and `(target index,
    Outcome)` once per target: when it finishes, fails, or misses its deadline."""
    for batch in stream_batches(targets, call, timeout_s):
        yield from batch


def run(targets: Sequence[Target], call: Call, timeout_s: float) -> list[Outcome]:
    """Every target's outcome, in the targets' order, once all have answered or timed out."""
    outcomes: list[Outcome | None] = [None] * len(targets)
    for i, event in stream(targets, call, timeout_s):
        if isinstance(event, Outcome):
            outcomes[i] = event
    return outcomes  # type: ignore[return-value]  # stream reports one Outcome per target


def _work(
    i: int, target: Target, call: Call, events: queue.SimpleQueue, abandoned: threading.Event, started: float
) -> None:
    def emit(text: str) -> None:
        if abandoned.is_set():
            raise Abandoned()
        if text:
            events.put((i, text))

    try:
        value, error = call(target, emit), None
    except Abandoned:
        return
    except Exception as err:  # noqa: BLE001 - a thread's failure becomes its target's error cell
        value, error = None, error_sentence(err)
    if not abandoned.is_set():
        events.put((i, Outcome(target, value, error, time.perf_counter() - started)))


def _timed_out(target: Target, timeout_s: float) -> Outcome:
    return Outcome(
        target,
        None,
        f"{target.name} did not finish within {timeout_s:g} s; the other results are shown.",
        timeout_s,
        timed_out=True,
    )


def _drain(events: queue.SimpleQueue) -> list[tuple[int, Event]]:
    out = []
    while True:
        try:
            out.append(events.get_nowait())
        except queue.Empty:
            return out
