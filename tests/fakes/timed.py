"""Fake providers that take a known time for every task, to prove what runs at once (layer 1).

`provider(name, delay_s)` serves all five tasks like `tests.fakes.providers` but each call takes
`delay_s` (a completion spreads it over its words, so its text streams). The model is
"<name>-model"; the model "needs-key" fails without `FAKE_API_KEY`, like the plain fake.
"""

from __future__ import annotations

import time

from adapters.registry import Provider
from adapters.types import Task, Usage
from tests.fakes import providers as fake


def provider(name: str, delay_s: float) -> Provider:
    class Completer(fake.FakeCompleter):
        def _stream(self, messages, params):
            words = ("echo: " + messages[-1]["content"]).split()
            for i, word in enumerate(words):
                time.sleep(delay_s / len(words))
                yield (" " if i else "") + word
            yield Usage(input_tokens=len(messages[-1]["content"].split()), output_tokens=len(words))

    class Classifier(fake.FakeClassifier):
        def _classify(self, image, labels):
            time.sleep(delay_s)
            return super()._classify(image, labels)

    class Captioner(fake.FakeCaptioner):
        def _caption(self, image, prompt):
            time.sleep(delay_s)
            return super()._caption(image, prompt)

    class ImageGenerator(fake.FakeImageGenerator):
        def _generate(self, prompt, params, on_step):
            time.sleep(delay_s)
            return super()._generate(prompt, params, on_step)

    class Embedder(fake.FakeEmbedder):
        def _embed(self, texts, kind):
            time.sleep(delay_s)
            return super()._embed(texts, kind)

    return Provider(
        name=name,
        label=name.title(),
        adapters={
            Task.COMPLETION: Completer,
            Task.ZERO_SHOT: Classifier,
            Task.CAPTIONING: Captioner,
            Task.IMAGE_GENERATION: ImageGenerator,
            Task.EMBEDDINGS: Embedder,
        },
        check=fake._check,
        models=lambda task: f"{name}-model",
    )
