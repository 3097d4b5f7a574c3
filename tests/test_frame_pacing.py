"""The chat's page updates: each stream's share of the budget, the first token at once, and the
count of open streams kept right however a stream ends."""

from __future__ import annotations

import contextlib
import threading

import pytest

from demos.widgets.frame_pacing import FramePacer


def test_few_streams_update_at_the_fastest_and_many_share_the_budget_down_to_the_slowest():
    pacer = FramePacer(per_second=200, fastest_s=0.1, slowest_s=0.5)
    with contextlib.ExitStack() as streams:
        for open_streams, interval in [(1, 0.1), (20, 0.1), (50, 0.25), (80, 0.4), (150, 0.5)]:
            while pacer.open_streams < open_streams:
                streams.enter_context(pacer.stream())
            assert pacer.interval() == pytest.approx(interval)
    assert pacer.open_streams == 0


def test_the_first_update_is_due_at_once_and_the_next_only_after_the_interval(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("demos.widgets.frame_pacing.time.monotonic", lambda: now[0])
    pacer = FramePacer(per_second=200, fastest_s=0.1, slowest_s=0.5)
    with pacer.stream() as clock:
        assert clock.due()  # the first token
        now[0] += 0.05
        assert not clock.due()
        now[0] += 0.06  # 0.11 s after the first
        assert clock.due()
        assert not clock.due()


def test_a_stream_that_fails_or_is_closed_midway_is_no_longer_counted():
    pacer = FramePacer()

    def reply():
        with pacer.stream() as clock:
            while True:
                yield clock.due()

    with pytest.raises(RuntimeError), pacer.stream():
        assert pacer.open_streams == 1
        raise RuntimeError("the vendor failed")
    gen = reply()
    next(gen)
    assert pacer.open_streams == 1
    gen.close()  # the page was closed: Gradio closes the generator
    assert pacer.open_streams == 0


def test_concurrent_streams_are_counted_exactly():
    pacer, start = FramePacer(), threading.Barrier(16)

    def stream():
        start.wait()
        for _ in range(200):
            with pacer.stream():
                pass

    threads = [threading.Thread(target=stream) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pacer.open_streams == 0


@pytest.mark.parametrize("kwargs", [dict(fastest_s=0.5, slowest_s=0.1), dict(per_second=0), dict(fastest_s=-1)])
def test_settings_that_make_no_sense_are_refused(kwargs):
    with pytest.raises(ValueError):
        FramePacer(**kwargs)
