"""Fake providers with known, deterministic behaviour, registered like real ones (layer 1 tests).

They implement the same protected methods a vendor module does, so everything above them
(validation, timing, results, registry, demos, app) runs for real.
"""

from __future__ import annotations

import hashlib
import re
import time

import numpy as np
from PIL import Image

from adapters import keys
from adapters.errors import FMError, ProviderError
from adapters.registry import Provider
from adapters.tasks import Captioner, Completer, Embedder, ImageGenerator, Raw, ZeroShotClassifier
from adapters.types import Finish, Task, Usage

NAME = "fake"
KEY_VAR = "FAKE_API_KEY"


class FakeCompleter(Completer):
    """Replies "echo: <last user message>" word by word; "FAIL" / "CUT" in the prompt inject faults."""

    delay_s = 0.0

    def _stream(self, messages, params):
        prompt = messages[-1]["content"]
        if "FAIL" in prompt:
            raise ProviderError("Fake had a server error (500): try again later.", provider=NAME, status=500)
        words = ("echo: " + prompt).split()[: params.max_tokens]
        for i, word in enumerate(words):
            if "CUT" in prompt and i == 2:
                raise ProviderError("Fake's stream broke off: try again.", provider=NAME)
            time.sleep(self.delay_s)
            yield (" " if i else "") + word
        yield Usage(input_tokens=sum(len(m["content"].split()) for m in messages), output_tokens=len(words))
        yield Finish("stop")


class FakeClassifier(ZeroShotClassifier):
    """Prefers the label whose length is closest to the image's width / 10."""

    def _classify(self, image, labels):
        target = image.width / 10
        return [1.0 / (1.0 + abs(len(label) - target)) for label in labels]


class FakeCaptioner(Captioner):
    def _caption(self, image, prompt):
        return Raw(f"{prompt + ' ' if prompt else ''}a {image.width}x{image.height} image", served_by="fake-backend")


class FakeImageGenerator(ImageGenerator):
    def _generate(self, prompt, params, on_step):
        for step in range(params.steps):
            on_step(step + 1, params.steps)
        shade = params.seed % 256
        return [Image.new("RGB", (params.width, params.height), (shade, len(prompt) % 256, 0))]


class FakeEmbedder(Embedder):
    """Hashed bag of words: texts sharing words are close, as with a real embedding model."""

    dim = 64
    max_batch = 4  # small, so batching is exercised

    def _embed(self, texts, kind):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return Raw(out, usage=Usage(input_tokens=sum(len(t.split()) for t in texts)))


def _check(task: Task, model: str) -> FMError | None:
    import os

    if model == "needs-key" and not os.environ.get(KEY_VAR):
        return keys.missing(KEY_VAR, "Fake")
    return None


def provider() -> Provider:
    return Provider(
        name=NAME,
        label="Fake",
        adapters={
            Task.COMPLETION: FakeCompleter,
            Task.ZERO_SHOT: FakeClassifier,
            Task.CAPTIONING: FakeCaptioner,
            Task.IMAGE_GENERATION: FakeImageGenerator,
            Task.EMBEDDINGS: FakeEmbedder,
        },
        check=_check,
        models=lambda task: "fake-1",
    )
