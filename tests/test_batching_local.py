"""Micro-batching through the local adapters (tiny random models): concurrent requests are collected
before the device slot is taken. Needs torch and sentence-transformers, so the module is skipped
without them; the batcher's own tests, which need neither, are in test_batching.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from adapters import registry
from adapters.local import load_runner
from adapters.types import Task
from local_models.device import slot
from tests.fixtures import tiny_models


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching-models")
    return {
        "st": tiny_models.save_tiny_sentence_transformer(root / "st"),
        "clip": tiny_models.save_tiny_clip(root / "clip"),
    }


def count_calls(monkeypatch, runner, method: str) -> list[int]:
    sizes: list[int] = []
    real = getattr(runner, method)

    def counting(items, *args):
        sizes.append(len(items))
        return real(items, *args)

    monkeypatch.setattr(runner, method, counting)
    return sizes


def concurrently(call, inputs: list) -> list:
    """Run `call(x)` for each input from its own thread while the device slot is held, so that
    every request is queued before any model call can start; results in input order."""
    out: list = [None] * len(inputs)
    threads = [threading.Thread(target=lambda i=i, x=x: out.__setitem__(i, call(x))) for i, x in enumerate(inputs)]
    with slot():
        for t in threads:
            t.start()
        time.sleep(0.3)  # long enough for every thread to queue its request
    for t in threads:
        t.join(30)
    return out


def test_concurrent_embeddings_run_as_one_batch_with_the_same_vectors(tiny_folders, monkeypatch):
    adapter = registry.get(Task.EMBEDDINGS, "local", model=str(tiny_folders["st"]))
    texts = [f"the {w} is on the road" for w in tiny_models.WORDS[10:26]]
    monkeypatch.setenv("FMG_BATCHING", "off")
    alone = [adapter.embed([t]).vectors for t in texts]
    monkeypatch.setenv("FMG_BATCHING", "on")
    sizes = count_calls(monkeypatch, load_runner(Task.EMBEDDINGS, str(tiny_folders["st"])), "embed")
    joined = concurrently(lambda t: adapter.embed([t]).vectors, texts)
    # the first batch waits at the slot with whatever had arrived; all the others then run as one
    assert sum(sizes) == len(texts) and len(sizes) <= 2
    for a, b in zip(alone, joined, strict=False):
        assert np.allclose(a, b, atol=1e-5)


def test_concurrent_clip_requests_with_the_same_labels_are_batched(tiny_folders, monkeypatch):
    from PIL import Image

    folder = str(tiny_folders["clip"])
    adapter = registry.get(Task.ZERO_SHOT, "local", model=folder)
    images = [Image.new("RGB", (40, 30), (25 * i, 200 - 15 * i, 90)) for i in range(10)]
    labels = ["a cat", "a dog", "a red car"]
    monkeypatch.setenv("FMG_BATCHING", "off")
    alone = [dict(adapter.classify(image, labels).scores) for image in images]
    monkeypatch.setenv("FMG_BATCHING", "on")
    runner = load_runner(Task.ZERO_SHOT, folder)
    runner._image_cache.clear()  # score the images afresh, not from the cache
    sizes = count_calls(monkeypatch, runner, "scores_batch")
    joined = concurrently(lambda image: dict(adapter.classify(image, labels).scores), images)
    assert sum(sizes) == len(images) and len(sizes) <= 2
    for a, b in zip(alone, joined, strict=False):
        assert a == pytest.approx(b, abs=1e-5)
    # different labels are different requests: never joined
    sizes.clear()
    concurrently(lambda x: adapter.classify(x[0], x[1]), [(images[0], ["sun", "moon"]), (images[1], ["tree", "rock"])])
    assert sizes == [1, 1]


def test_batching_off_runs_each_call_alone(tiny_folders, monkeypatch):
    adapter = registry.get(Task.EMBEDDINGS, "local", model=str(tiny_folders["st"]))
    adapter.embed(["warm"])
    monkeypatch.setenv("FMG_BATCHING", "off")
    sizes = count_calls(monkeypatch, load_runner(Task.EMBEDDINGS, str(tiny_folders["st"])), "embed")
    concurrently(lambda t: adapter.embed([t]), ["a cat", "a dog", "a car", "the sun"])
    assert sizes == [1, 1, 1, 1]
