"""`ZeroShotClassifier.embed_images` / `embed_labels`, the features of a linear probe: the interface's
checks and results on a small embedding classifier, and the providers that have none (OpenAI, HF).
Local CLIP is in test_local_runners.py and Cohere in test_vendor_cohere.py, on their real backends."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from adapters import registry, tasks
from adapters.errors import BadInput, ProviderError, ProviderUnavailable
from adapters.tasks import Raw, ZeroShotClassifier
from adapters.types import Task, Usage


class MeanColour(ZeroShotClassifier):
    """Embeds an image as its mean colour and a label by the colour words it names."""

    embeds = True
    colours = ("red", "green", "blue")
    rows_short = False  # a backend that returns one vector too few
    prepared = 0

    def _prepare(self):
        self.prepared += 1

    def _embed_images(self, images):
        vectors = [np.asarray(image, dtype=np.float64).mean(axis=(0, 1)) * 7 for image in images]
        return Raw(vectors[:-1] if self.rows_short else vectors, usage=Usage(images=len(images)))

    def _embed_labels(self, labels):
        return [[float(colour in label) + 0.01 for colour in self.colours] for label in labels]

    def _classify(self, image, labels):
        vector = np.asarray(self._embed_images([image]).value[0])
        return [max(0.0, float(np.dot(vector, row))) for row in self._embed_labels(labels)]


def solid(colour) -> Image.Image:
    return Image.new("RGB", (20, 10), colour)


def test_rows_are_unit_vectors_in_order_with_usage_and_timing(tmp_path):
    adapter = MeanColour("mean", "rgb-1")
    path = tmp_path / "blue.png"
    solid("blue").save(path)
    images = [solid("red"), str(path), np.full((4, 4, 3), [0, 200, 0], dtype=np.uint8)]
    result = adapter.embed_images(images)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (3, 3)
    assert np.allclose(result.vectors, np.eye(3)[[0, 2, 1]], atol=1e-6)  # red, blue, green; scaled to length 1
    assert result.usage == Usage(images=3) and result.provider == "mean" and result.model == "rgb-1"
    assert result.latency_s >= 0 and adapter.prepared == 1
    labels = adapter.embed_labels(["a red car", "green  grass", "blue sky"])
    assert np.allclose(np.linalg.norm(labels.vectors, axis=1), 1.0)
    assert list((result.vectors @ labels.vectors.T).argmax(axis=1)) == [0, 2, 1]


def test_inputs_are_checked_before_the_provider_is_called(tmp_path):
    adapter = MeanColour("mean", "rgb-1")
    with pytest.raises(BadInput, match="limit is 256"):
        adapter.embed_images([solid("red")] * (tasks.MAX_EMBED_IMAGES + 1))
    with pytest.raises(BadInput, match="Image 2 of 3: No image"):
        adapter.embed_images([solid("red"), None, solid("blue")])
    with pytest.raises(BadInput, match="Image 1 of 1: Expected an image"):
        adapter.embed_images([12345])
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(BadInput, match="not an image"):
        adapter.embed_images([str(text)])
    with pytest.raises(BadInput, match="as a list"):
        adapter.embed_images(solid("red"))  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="given once"):
        adapter.embed_labels(["red", "green", ""])
    with pytest.raises(BadInput, match="No text was given"):
        adapter.embed_labels([])
    assert adapter.prepared == 0
    assert adapter.embed_labels(["red"]).vectors.shape == (1, 3)  # one text is enough to embed (a query)
    assert adapter.embed_images([solid("red")] * tasks.MAX_EMBED_IMAGES).vectors.shape == (tasks.MAX_EMBED_IMAGES, 3)


def test_a_backend_that_returns_too_few_vectors_is_a_provider_error():
    adapter = MeanColour("mean", "rgb-1")
    adapter.rows_short = True
    with pytest.raises(ProviderError, match="1 usable embeddings for 2"):
        adapter.embed_images([solid("red"), solid("blue")])


@pytest.mark.parametrize("provider", ["openai", "hf"])
def test_providers_that_classify_without_embeddings_say_who_can(provider):
    adapter = registry.get(Task.ZERO_SHOT, provider, api_key="sk-session-NEVER-SENT-1234")
    assert adapter.embeds is False and isinstance(adapter, ZeroShotClassifier)
    for call in (lambda: adapter.embed_images([solid("red")]), lambda: adapter.embed_labels(["red", "blue"])):
        with pytest.raises(ProviderUnavailable) as caught:
            call()
        message = str(caught.value)
        assert f"'{provider}'" in message and "local CLIP" in message and "Cohere" in message


def test_only_local_and_cohere_embed():
    embedding = {
        name for name, p in registry.providers().items() if getattr(p.adapters.get(Task.ZERO_SHOT), "embeds", False)
    }
    assert {"local", "cohere"} <= embedding and not embedding & {"openai", "hf"}
