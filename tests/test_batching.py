"""Micro-batching of concurrent local calls: the batcher itself, which needs no model library.
Through the local adapters (tiny random models, torch) it is tested in test_batching_local.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from local_models import batching
from local_models.batching import MicroBatcher


class Recorder:
    """A `run` that doubles each item, records each call, and can be held at its next call."""

    def __init__(self, fail_on=None):
        self.calls: list[tuple[list, object]] = []
        self.fail_on = fail_on
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def __call__(self, items, key):
        self.calls.append((list(items), key))
        self.entered.set()
        self.hold.wait(10)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [(key, item * 2) for item in items]


def submit_all(batcher: MicroBatcher, requests: list[tuple[list, object]], recorder: Recorder | None = None):
    """Submit each request from its own thread while the first call is held, so the rest queue
    up behind it; return each request's result or exception, in request order."""
    out: list = [None] * len(requests)

    def call(i, items, key):
        try:
            out[i] = batcher.submit(items, key)
        except Exception as err:  # noqa: BLE001 - the test looks at which caller got what
            out[i] = err

    threads = [threading.Thread(target=call, args=(i, items, key)) for i, (items, key) in enumerate(requests)]
    if recorder is not None:
        recorder.hold.clear()
    threads[0].start()
    if recorder is not None:
        assert recorder.entered.wait(10)  # the first request is being run alone, the others will wait
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 10
    while recorder is not None and len(batcher._pending) < len(requests) - 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    if recorder is not None:
        recorder.hold.set()
    for t in threads:
        t.join(10)
    return out


def test_concurrent_callers_are_joined_into_one_call_each_getting_its_own_results_in_order():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_items=64)
    requests = [([10 * i + j for j in range(i % 3 + 1)], "k") for i in range(12)]
    results = submit_all(batcher, requests, recorder)
    assert results == [[("k", item * 2) for item in items] for items, _ in requests]  # same as unbatched
    assert len(recorder.calls) == 2  # the first alone, then the eleven that queued behind it together
    assert recorder.calls[1][0] == [item for items, _ in requests[1:] for item in items]  # arrival order
    assert batcher.requests == 12


def test_only_requests_with_the_same_key_are_joined():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)
    requests = [([1], "first"), ([2], "a"), ([3], "b"), ([4], "a"), ([5], "b")]
    results = submit_all(batcher, requests, recorder)
    assert results == [[(key, items[0] * 2)] for items, key in requests]
    assert [(items, key) for items, key in recorder.calls] == [([1], "first"), ([2, 4], "a"), ([3, 5], "b")]


def test_a_batch_holds_at_most_max_items_but_a_large_request_runs_whole():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_items=4)
    requests = [([0], None), ([1, 2, 3, 4, 5, 6], None), ([7, 8], None), ([9, 10], None), ([11], None)]
    results = submit_all(batcher, requests, recorder)
    assert results == [[(None, item * 2) for item in items] for items, _ in requests]
    assert [items for items, _ in recorder.calls] == [[0], [1, 2, 3, 4, 5, 6], [7, 8, 9, 10], [11]]


def test_an_error_reaches_only_the_caller_whose_input_caused_it():
    recorder = Recorder(fail_on=13)
    batcher = MicroBatcher(recorder)
    requests = [([1], None), ([2], None), ([13], None), ([4, 5], None)]
    results = submit_all(batcher, requests, recorder)
    assert results[0] == [(None, 2)] and results[1] == [(None, 4)] and results[3] == [(None, 8), (None, 10)]
    assert isinstance(results[2], ValueError) and "bad item 13" in str(results[2])
    # the joined call failed, so each of its requests ran again alone to find whose it was
    assert [items for items, _ in recorder.calls] == [[1], [2, 13, 4, 5], [2], [13], [4, 5]]


def test_under_concurrent_traffic_a_batch_waits_for_as_many_callers_as_the_last_one_had(monkeypatch):
    monkeypatch.setattr(batching, "WAIT_FRACTION", 10.0)  # the wait allowed: 10x the last run, here 0.5 s
    recorder = Recorder()
    batcher = MicroBatcher(lambda items, key: (time.sleep(0.05), recorder(items, key))[1], max_wait_s=2.0)
    submit_all(batcher, [([0], None), ([1], None), ([2], None), ([3], None)], recorder)  # [0], then [1, 2, 3]
    recorder.calls.clear()
    threads = []
    for i in range(3):  # the three callers come back one by one, well apart
        threads.append(threading.Thread(target=batcher.submit, args=([10 + i],)))
        threads[-1].start()
        time.sleep(0.05)
    for t in threads:
        t.join(10)
    assert [items for items, _ in recorder.calls] == [[10, 11, 12]]


def test_a_lone_caller_does_not_wait(monkeypatch):
    monkeypatch.setattr(batching, "WAIT_FRACTION", 10.0)
    batcher = MicroBatcher(lambda items, key: (time.sleep(0.3), items)[1], max_wait_s=5.0)
    for _ in range(2):  # batches of one request: no waiting for others (a wait would be 3 s)
        started = time.monotonic()
        assert batcher.submit([1]) == [1]
        assert time.monotonic() - started < 2.5


def test_a_run_that_returns_the_wrong_number_of_results_is_an_error():
    batcher = MicroBatcher(lambda items, key: items[:-1])
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        batcher.submit([1, 2])


def test_arrays_come_back_as_row_slices():
    batcher = MicroBatcher(lambda items, key: np.array(items, dtype=np.float32)[:, None] * np.ones(3, np.float32))
    result = batcher.submit([1.0, 2.0])
    assert isinstance(result, np.ndarray) and result.shape == (2, 3)
    assert batcher.submit([]) == []


def test_a_lone_caller_is_served_and_the_idle_worker_ends(monkeypatch):
    monkeypatch.setattr(batching, "IDLE_EXIT_S", 0.05)
    batcher = MicroBatcher(lambda items, key: [i + 1 for i in items], name="fmg-batch-test")
    assert batcher.submit([1, 2]) == [2, 3]
    deadline = time.monotonic() + 5
    while batcher._worker is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher._worker is None
    assert not [t for t in threading.enumerate() if t.name == "fmg-batch-test"]
    assert batcher.submit([5]) == [6]  # a new worker starts on demand


def test_fmg_batching_switch(monkeypatch):
    monkeypatch.delenv("FMG_BATCHING", raising=False)
    assert batching.enabled()
    for off in ("off", "0", "false", "No"):
        monkeypatch.setenv("FMG_BATCHING", off)
        assert not batching.enabled()
    monkeypatch.setenv("FMG_BATCHING", "on")
    assert batching.enabled()
