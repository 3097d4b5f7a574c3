"""Micro-batching: requests from concurrent callers run together as one call of the model.

A model on a GPU (and, less so, on a CPU) embeds 32 sentences in little more time than one, so
when many clients call at once it pays to join their inputs. Each caller hands its items to
`MicroBatcher.submit(items, key)` and waits; one worker thread takes the waiting requests that
share the first one's key (up to `max_items` items in all), makes one `run(items, key)` call and
gives each caller its own slice of the results, in order.

Collecting happens before the model is called, so `run` is where the device slot is taken: a
caller waiting here holds nothing. A lone caller is not delayed: the worker waits for more
requests only while the traffic is concurrent (the last batch joined several requests), and
then only until as many are waiting as the last batch had, or a quarter of the time the last
batch took to run has passed (at most `max_wait_s`): the callers of one batch come back at
about the same time, and this joins them again instead of running the first few to return
alone, for at most a quarter more latency. When a joined call fails, each of its requests is run
again alone, so an error (a bad input, say) reaches only the caller that caused it.

`FMG_BATCHING=off` turns batching off (each call runs alone, as a baseline for `bench/batching.py`).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any

MAX_WAIT_S = 0.05  # the longest a batch waits for more requests under concurrent traffic
WAIT_FRACTION = 0.25  # ... and at most this fraction of the last batch's run time
IDLE_EXIT_S = 5.0  # the worker thread ends after this long without requests (a new one starts on demand)

Run = Callable[[list[Any], Hashable], Sequence[Any]]  # (items, key) -> one result per item


def enabled() -> bool:
    """Batching is on unless `FMG_BATCHING` is off, 0, false or no (read at each call)."""
    return os.environ.get("FMG_BATCHING", "on").strip().lower() not in ("off", "0", "false", "no")


class _Request:
    __slots__ = ("done", "error", "items", "key", "result")

    def __init__(self, items: list[Any], key: Hashable):
        self.items = items
        self.key = key
        self.done = threading.Event()
        self.result: Sequence[Any] | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    def __init__(self, run: Run, max_items: int = 64, max_wait_s: float = MAX_WAIT_S, name: str = "fmg-batcher"):
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self._run = run
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.name = name
        self._pending: deque[_Request] = deque()
        self._wakeup = threading.Condition()
        self._worker: threading.Thread | None = None
        self._expected = 1  # requests in the last batch: how many to wait for
        self._last_run_s = 0.0
        self.batches = 0  # calls of `run` made, for tests and benchmarks
        self.requests = 0  # requests served

    def submit(self, items: Sequence[Any], key: Hashable = None) -> Sequence[Any]:
        """`run(items, key)` for this caller (possibly joined with others' items): one result per item."""
        request = _Request(list(items), key)
        if not request.items:
            return []
        with self._wakeup:
            self._pending.append(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._worker.start()
            self._wakeup.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[return-value]

    def _serve(self) -> None:
        while True:
            with self._wakeup:
                if not self._pending:
                    self._wakeup.wait(IDLE_EXIT_S)
                    if not self._pending:
                        self._worker = None  # the next submit starts a new worker
                        return
                if self._expected > 1:
                    deadline = time.monotonic() + min(self.max_wait_s, WAIT_FRACTION * self._last_run_s)
                    while self._short() and (left := deadline - time.monotonic()) > 0:
                        self._wakeup.wait(left)
                batch = self._take()
            self._expected = len(batch)
            self._execute(batch)

    def _short(self) -> bool:
        """Fewer requests wait with the first one's key than the last batch had (and room is left)?"""
        key = self._pending[0].key
        same = [r for r in self._pending if r.key == key]
        return len(same) < self._expected and sum(len(r.items) for r in same) < self.max_items

    def _take(self) -> list[_Request]:
        """The first request and those after it with the same key, up to `max_items` items (the
        first always, however large); the others keep their places."""
        first = self._pending.popleft()
        batch, count = [first], len(first.items)
        kept: deque[_Request] = deque()
        while self._pending:
            request = self._pending.popleft()
            if request.key == first.key and count + len(request.items) <= self.max_items:
                batch.append(request)
                count += len(request.items)
            else:
                kept.append(request)
        self._pending = kept
        return batch

    def _execute(self, batch: list[_Request]) -> None:
        items = [item for request in batch for item in request.items]
        try:
            self.batches += 1
            started = time.monotonic()
            results = self._run(items, batch[0].key)
            self._last_run_s = time.monotonic() - started
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: run returned {len(results)} results for {len(items)} items")
            bounds = [0]
            for request in batch:
                bounds.append(bounds[-1] + len(request.items))
            shares = [results[a:b] for a, b in itertools.pairwise(bounds)]  # slices: an array stays an array
        except BaseException as err:  # noqa: BLE001 - every waiting caller must be released
            if len(batch) == 1:
                batch[0].error = err
                batch[0].done.set()
            else:  # find whose input failed: each request alone
                for request in batch:
                    self._execute([request])
            return
        for request, share in zip(batch, shares, strict=False):
            request.result = share
            self.requests += 1
            request.done.set()
