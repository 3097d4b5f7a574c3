"""Image evaluations: zero-shot accuracy per target and the probe's refusals, through the fakes."""

from __future__ import annotations

import pytest
from PIL import Image

from adapters.errors import BadInput
from services.evaluation import image_eval
from services.evaluation.image_sets import ImageSet


def shapes(labels: list[str]) -> ImageSet:
    """The fake classifier prefers the label whose length is closest to the image's width / 10."""
    images = [Image.new("RGB", (10 * len(label), 20), (i, 0, 0)) for i, label in enumerate(labels)]
    return ImageSet("shapes", images, labels, ("cat", "horse"), "a photo of a {label}.")


def test_zero_shot_accuracy_and_confusion_follow_what_the_classifier_says(fake_provider):
    right = shapes(["cat", "horse", "cat", "horse"])
    [row] = image_eval.zero_shot(right, ["fake"])
    assert row.accuracy == 1.0 and row.n == 4 and row.errors == 0
    assert row.confusion == [["cat", 2, 0], ["horse", 0, 2]]
    swapped = ImageSet("swapped", right.images, ["horse", "cat", "horse", "cat"], right.label_names, right.prompt)
    [row] = image_eval.zero_shot(swapped, ["fake"])
    assert row.accuracy == 0.0 and row.confusion == [["cat", 0, 2], ["horse", 2, 0]]


def test_an_unknown_target_is_an_error_row_and_the_others_still_score(fake_provider):
    rows = image_eval.zero_shot(shapes(["cat", "horse"]), ["nope", "fake"])
    assert "Unknown provider" in rows[0].error and rows[1].accuracy == 1.0
    assert image_eval.zero_shot_table(rows)[0][4].startswith("Unknown provider")


def test_the_probe_needs_a_target_that_embeds(fake_provider):
    with pytest.raises(BadInput, match="nothing to probe"):
        image_eval.probe(shapes(["cat", "horse"]), "fake")


def test_public_mode_caps_the_images_of_one_run(fake_provider, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_PUBLIC_EVALUATION_CALLS", "3")
    with pytest.raises(BadInput, match="at most 3"):
        image_eval.zero_shot(shapes(["cat", "horse", "cat", "horse"]), ["fake"])
