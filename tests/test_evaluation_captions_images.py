"""Captioning and image-generation evaluations, on the fakes and a tiny random CLIP for CLIPScore."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from adapters import registry
from adapters.errors import BadInput
from adapters.registry import Provider
from adapters.tasks import Captioner
from adapters.types import ImageParams, Task
from services.evaluation import caption_eval, captioned, generation_eval
from services.evaluation.captioned import CaptionedImage

pytest.importorskip("torch")
pytest.importorskip("transformers")

SAMPLES = [
    CaptionedImage("red", Image.new("RGB", (40, 30), "red"), "A plain red rectangle."),
    CaptionedImage("blue", Image.new("RGB", (50, 30), "blue"), "A plain blue rectangle."),
]


class Parrot(Captioner):
    """Says the reference caption of each sample (known by its width)."""

    def _caption(self, image, prompt):
        return {s.image.width: s.caption for s in SAMPLES}[image.width]


@pytest.fixture
def tiny_clip(tmp_path, monkeypatch):
    from tests.fixtures import tiny_models

    monkeypatch.setenv("FMG_MODEL_LOCAL_ZERO_SHOT", str(tiny_models.save_tiny_clip(tmp_path / "clip")))
    return "local"


@pytest.fixture
def parrot():
    registry.register(Provider(name="parrot", label="Parrot", adapters={Task.CAPTIONING: Parrot}, models=lambda t: "p"))
    yield "parrot"
    registry.unregister("parrot")


def test_a_captioner_that_says_the_reference_scores_full_similarity(fake_provider, parrot, tiny_clip):
    rows = caption_eval.run(SAMPLES, ["parrot", "fake", "nope"], embedder="fake", clip=tiny_clip)
    by = {r.target: r for r in rows}
    assert by["parrot"].similarity[0] == pytest.approx(1.0) and by["parrot"].n == 2
    assert by["fake"].similarity[0] < 1.0 and by["fake"].captions == ("a 40x30 image", "a 50x30 image")
    assert "Unknown provider" in by["nope"].error
    ceiling = by["reference captions"]
    assert by["parrot"].clip_score == pytest.approx(ceiling.clip_score)  # the same texts on the same images
    assert all(0 <= v <= 2.5 for v in ceiling.clip_score)
    assert caption_eval.table(rows)[0][0] == "parrot"


def test_clip_score_needs_an_image_text_model(fake_provider):
    with pytest.raises(BadInput, match="cannot compute CLIPScore"):
        caption_eval.run(SAMPLES, ["fake"], embedder="fake", clip="fake")
    with pytest.raises(BadInput, match="cannot compute CLIPScore"):
        generation_eval.run(["a fox"], ["fake"], clip="fake")


def test_generators_are_scored_by_clip_score_of_prompt_and_image(fake_provider, tiny_clip):
    rows = generation_eval.run(
        ["a fox", "a red barn", "FAIL"], ["fake"], clip=tiny_clip, params=ImageParams(width=64, height=64, seed=1)
    )
    [row] = rows
    assert row.n == 3 and row.errors == 0 and len(row.images) == 3
    assert all(0 <= v <= 2.5 for v in row.clip_score) and not math.isnan(row.clip_score[0])
    with pytest.raises(BadInput, match="at least one prompt"):
        generation_eval.run(["  "], ["fake"], clip=tiny_clip)


def test_the_captioned_samples_ship_with_scikit_image():
    samples = captioned.samples(size=64)
    assert len(samples) == len(captioned.CAPTIONS) and all(max(s.image.size) <= 64 for s in samples)
    assert all(s.image.mode == "RGB" and s.caption.endswith(".") for s in samples)
