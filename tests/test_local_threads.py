"""Local model calls leave the web server a core and let interactive calls go first (issue 17, C):
the threads rule, the device slot's turn order, and an evaluation's threads as background work."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from adapters import priority, registry
from adapters.registry import Provider
from adapters.tasks import Completer
from adapters.types import Finish, Task
from local_models import device, threads
from services.evaluation import datasets
from services.evaluation.engine import Evaluation, Spec, Target

# --- threads: the usable cores less one ------------------------------------------------------------


@pytest.mark.parametrize(("cores", "expected"), [(8, 7), (2, 1), (1, 1)])
def test_local_calls_use_every_usable_core_but_one(monkeypatch, cores, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the affinity (a container's cpuset) is what counts
    assert threads.count() == expected


def test_the_thread_count_can_be_set(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    monkeypatch.setenv(threads.ENV, "4")
    assert threads.count() == 4
    monkeypatch.setenv(threads.ENV, "0")
    assert threads.count() == 1
    monkeypatch.setenv(threads.ENV, "all")
    with pytest.raises(ValueError, match="FMG_LOCAL_THREADS must be a whole number"):
        threads.count()


def test_llama_cpp_gets_the_cores_less_one(monkeypatch):
    from local_models import chat_gguf, llama_open

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    opened = {}
    monkeypatch.setattr(llama_open, "open_llama", lambda path, **settings: opened.update(settings) or object())
    chat_gguf.LlamaCppChat.from_pretrained(Path("model.gguf"))
    assert opened["n_threads"] == opened["n_threads_batch"] == 3
    assert opened["n_ctx"] == chat_gguf.N_CTX


def test_torch_gets_the_cores_less_one(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(3)))
    monkeypatch.setattr(threads, "_torch_done", False)
    set_to = {}
    monkeypatch.setattr(torch, "set_num_threads", lambda n: set_to.update(intra=n))
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: set_to.update(inter=n))
    device.placement()  # where every torch runner starts
    assert set_to == {"intra": 2, "inter": 2}
    set_to.clear()
    device.placement()
    assert set_to == {}  # once per process


# --- the device slot: interactive calls first --------------------------------------------------------


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_an_interactive_local_call_passes_waiting_evaluation_calls():
    """Through the local provider's own wrapper (`adapters.local._errors`), as its calls take the slot:
    evaluation calls queued first still go after a chat that arrives later. Repeated, since a slot
    without a turn order would let either go first."""
    from adapters import local

    slot = device._device_slot()
    for _ in range(10):
        order: list[str] = []

        def call(name: str, background: bool, order: list[str] = order) -> None:
            if background:
                priority.lower_this_thread()
            with local._errors("model"):
                order.append(name)

        with slot.turn():  # a call on the device now
            queued = [threading.Thread(target=call, args=(f"evaluation {i}", True)) for i in range(3)]
            for t in queued:
                t.start()
            _wait_for(lambda: slot._waiting[True] == 3)
            chat = threading.Thread(target=call, args=("chat", False))
            chat.start()
            _wait_for(lambda: slot._waiting[False] == 1)
        for t in [*queued, chat]:
            t.join(10)
        assert order[0] == "chat" and sorted(order[1:]) == ["evaluation 0", "evaluation 1", "evaluation 2"]
    assert slot.held == 0


def test_background_calls_still_run_when_nothing_else_waits():
    def background() -> None:
        priority.lower_this_thread()
        with device.slot(priority.background()):
            ran.append(True)

    ran: list[bool] = []
    worker = threading.Thread(target=background)
    worker.start()
    worker.join(10)
    assert ran == [True] and device.turns_held() == 0


# --- an evaluation's threads are background work ---------------------------------------------------


class _Recorder(Completer):
    seen: ClassVar[list[tuple[bool, int | None, str]]] = []

    def _stream(self, messages, params):
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if hasattr(os, "getpriority") else None
        self.seen.append((priority.background(), nice, threading.current_thread().name))
        yield "42"
        yield Finish("stop")


@pytest.fixture
def recorder():
    _Recorder.seen = []
    registry.register(
        Provider(name="recorder", label="Recorder", adapters={Task.COMPLETION: _Recorder}, models=lambda task: "m")
    )
    yield _Recorder.seen
    registry.unregister("recorder")


@pytest.mark.parametrize("started", [False, True], ids=["run", "start"])
def test_an_evaluation_makes_its_calls_as_background_work(recorder, started):
    items = datasets.builtin("arithmetic").items[:6]
    spec = Spec(datasets.Dataset("six", "chat", items, "", "numeric"), (Target("recorder"),), concurrency=2)
    finished_in: list[bool] = []  # the thread that ends the run (its own, when started) is background too

    def progress(evaluation: Evaluation) -> None:
        if evaluation.status == "done":
            finished_in.append(priority.background())

    evaluation = Evaluation(spec, on_progress=progress)
    if started:
        evaluation.start().wait(30)
    else:
        evaluation.run()
    assert evaluation.status == "done" and len(recorder) == 6
    assert finished_in == [started]  # run(): the caller's thread, left as it was
    assert all(background for background, _, _ in recorder)
    if sys.platform.startswith("linux"):
        assert all(nice is not None and nice >= priority.NICE for _, nice, _ in recorder)
    # the caller's own thread is left as it was: it may be serving the page
    assert not priority.background()
    if hasattr(os, "getpriority"):
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < priority.NICE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_threads_started_by_a_background_thread_inherit_its_priority():
    """What llama.cpp's and torch's worker threads get when a background thread starts them."""
    nices: list[int] = []

    def child() -> None:
        nices.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def background() -> None:
        priority.lower_this_thread()
        inner = threading.Thread(target=child)
        inner.start()
        inner.join()

    outer = threading.Thread(target=background)
    outer.start()
    outer.join()
    assert nices and nices[0] >= priority.NICE
