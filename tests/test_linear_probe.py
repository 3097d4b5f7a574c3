"""The linear probe vs zero-shot comparison (services/evaluation): the probe on fake embeddings
whose answer is known, the image sets it runs on (digits, folders, zips and their limits), and
one run on a tiny random CLIP model through the local runner."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

pytest.importorskip("sklearn")

from PIL import Image

from adapters.errors import BadInput
from services.evaluation import image_sets
from services.evaluation.image_sets import ImageSet, digits, from_folder, from_zip
from services.evaluation.linear_probe import (
    ProbeCurve,
    curve,
    k_shot_indices,
    probe_accuracy,
    stratified_split,
    zero_shot_accuracy,
)

CLASSES = ("apple", "bird", "car", "dog", "eel")


def separable(per_class: int = 40, dim: int = 32, scale: float = 1.0, seed: int = 0):
    """A fake embedder's output: class means (about scale x 8 apart) plus unit noise. -> (vectors, labels, means)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(len(CLASSES), dim)) * scale
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    vectors = means[y] + rng.normal(size=(len(y), dim))
    return vectors, [CLASSES[i] for i in y], means


def noise(per_class: int = 60, dim: int = 32, seed: int = 1):
    rng = np.random.default_rng(seed)
    labels = [CLASSES[i] for i in np.repeat(np.arange(len(CLASSES)), per_class)]
    return rng.normal(size=(len(labels), dim)), labels


# --- splits and shots --------------------------------------------------------------------------


def test_stratified_split_keeps_class_proportions_and_is_seeded():
    labels = ["a"] * 10 + ["b"] * 6 + ["c"] * 1
    train, test = stratified_split(labels, 0.5, seed=3)
    assert sorted([*train, *test]) == list(range(len(labels))) and not set(train) & set(test)
    y = np.asarray(labels)
    assert (sum(y[test] == "a"), sum(y[test] == "b"), sum(y[test] == "c")) == (5, 3, 0)  # one image: train only
    again = stratified_split(labels, 0.5, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert not np.array_equal(test, stratified_split(labels, 0.5, seed=4)[1])
    _, few = stratified_split(["a", "a", "b", "b"], 0.01)
    assert len(few) == 2  # at least one of each class with two or more images is tested
    with pytest.raises(BadInput, match=r"test_fraction"):
        stratified_split(labels, 1.0)


def test_k_shot_takes_k_per_class_from_train_only_and_reports_short_classes():
    labels = np.asarray(["a"] * 10 + ["b"] * 10 + ["c"] * 2)
    train, _ = stratified_split(labels, 0.5, seed=0)
    shots = k_shot_indices(labels, train, 4, seed=1)
    assert set(shots.indices) <= set(train)
    counts = {c: int((labels[shots.indices] == c).sum()) for c in "abc"}
    assert counts == {"a": 4, "b": 4, "c": 1} and shots.short == {"c": 1}
    assert not np.array_equal(shots.indices, k_shot_indices(labels, train, 4, seed=2).indices)
    with pytest.raises(BadInput, match=r"shots"):
        k_shot_indices(labels, train, 0, seed=0)


# --- the probe and zero-shot on fake embeddings ------------------------------------------------


def test_probe_on_separable_classes_beats_chance_widely_and_does_not_get_worse_with_shots():
    vectors, labels, _ = separable()
    result = curve(vectors, labels, shots=(1, 2, 4, 8, 16), repeats=3, seed=0)
    assert isinstance(result, ProbeCurve)
    assert result.chance == pytest.approx(0.2) and result.classes == CLASSES
    assert (result.images, result.train_pool + result.test_images, result.test_images) == (200, 200, 100)
    by_k = {p.k: p for p in result.points}
    assert list(by_k) == [1, 2, 4, 8, 16]
    assert by_k[8].mean > 0.9
    assert by_k[16].mean >= by_k[1].mean - 0.05
    for p in result.points:
        assert 0 <= p.low <= p.mean <= p.high <= 1 and len(p.accuracies) == 3
        assert p.train_images == p.k * len(CLASSES) and p.short_classes == ()
    assert result.zero_shot is None


def test_probe_on_noise_stays_near_chance():
    vectors, labels = noise()
    result = curve(vectors, labels, shots=(1, 4, 16), repeats=3, seed=0)
    for p in result.points:
        assert abs(p.mean - result.chance) < 0.12, p


def test_zero_shot_with_the_class_means_scores_high_and_with_shuffled_ones_low():
    vectors, labels, means = separable()
    good = curve(vectors, labels, shots=(2,), repeats=2, label_vectors=means, label_names=CLASSES)
    assert good.zero_shot is not None and good.zero_shot > 0.9
    shuffled = curve(
        vectors, labels, shots=(2,), repeats=2, label_vectors=np.roll(means, 1, axis=0), label_names=CLASSES
    )
    assert shuffled.zero_shot is not None and shuffled.zero_shot < 0.3
    # names given in another order than the classes: row i still embeds name i
    order = [3, 0, 4, 1, 2]
    permuted = curve(
        vectors, labels, shots=(2,), repeats=2, label_vectors=means[order], label_names=[CLASSES[i] for i in order]
    )
    assert permuted.zero_shot == good.zero_shot


def test_zero_shot_is_scored_on_the_same_test_images_as_the_probe():
    vectors, labels, means = separable(scale=0.2)  # overlapping classes: accuracies differ between splits
    result = curve(vectors, labels, shots=(1,), repeats=1, seed=5, label_vectors=means, label_names=CLASSES)
    _, test = stratified_split(labels, 0.5, seed=5)
    y = np.asarray(labels)
    assert result.zero_shot == zero_shot_accuracy(vectors[test], means, y[test], CLASSES)
    assert result.test_images == len(test)


def test_probe_accuracy_directly_and_repeats_give_an_interval():
    vectors, labels, _ = separable(scale=0.2)
    y = np.asarray(labels)
    train, test = stratified_split(y, 0.5, seed=0)
    accuracy = probe_accuracy(vectors[train], y[train], vectors[test], y[test])
    assert 0.2 < accuracy <= 1.0
    result = curve(vectors, labels, shots=(1,), repeats=5, seed=0)
    point = result.points[0]
    assert len(set(point.accuracies)) > 1 and point.low < point.mean < point.high  # shot samples differ


def test_short_classes_are_reported():
    vectors, labels, _ = separable(per_class=6)
    result = curve(vectors, labels, shots=(1, 8), repeats=2)
    assert result.points[0].short_classes == ()
    assert result.points[1].short_classes == CLASSES and result.points[1].train_images == result.train_pool
    assert any("identical" in note for note in result.notes)


@pytest.mark.parametrize(
    ("vectors", "labels", "kwargs", "message"),
    [
        (np.ones((4, 3)), ["a"] * 4, {}, "at least two classes"),
        (np.ones((4, 3)), ["a", "b", "a"], {}, "4 image embeddings but 3 labels"),
        (np.array([[1.0, np.nan]] * 2 + [[0.0, 1.0]] * 2), ["a", "a", "b", "b"], {}, "NaN"),
        (np.ones(4), ["a", "a", "b", "b"], {}, "matrix"),
        (np.eye(4), ["a", "a", "b", "b"], {"shots": (0, 2)}, "shots"),
        (np.eye(4), ["a", "a", "b", "b"], {"repeats": 0}, "repeats"),
        (np.eye(4), ["a", "a", "b", "b"], {"label_vectors": np.eye(2, 4)}, "names"),
        (np.eye(4), ["a", "a", "b", "b"], {"label_vectors": np.eye(2, 4), "label_names": ["a", "c"]}, "'b'"),
        (np.eye(4), ["a", "a", "b", "b"], {"label_vectors": np.eye(2, 3), "label_names": ["a", "b"]}, "differ in size"),
        (np.eye(4), ["a", "a", "b", "b"], {"label_vectors": np.eye(3, 4), "label_names": ["a", "b"]}, "3 label emb"),
    ],
)
def test_curve_refuses_unusable_input(vectors, labels, kwargs, message):
    with pytest.raises(BadInput, match=message):
        curve(vectors, labels, **kwargs)


def test_probe_accuracy_refuses_one_training_class_and_mismatched_sizes():
    with pytest.raises(BadInput, match=r"two classes"):
        probe_accuracy(np.eye(2), ["a", "a"], np.eye(2), ["a", "b"])
    with pytest.raises(BadInput, match=r"differ in size"):
        probe_accuracy(np.eye(2), ["a", "b"], np.eye(2, 3), ["a", "b"])
    with pytest.raises(BadInput, match=r"NaN"):
        zero_shot_accuracy(np.eye(2), [[np.nan, 0.0], [0.0, 1.0]], ["a", "b"], ["a", "b"])


# --- image sets --------------------------------------------------------------------------------


def test_digits_are_ten_classes_of_rgb_images_of_the_requested_size():
    images = digits(size=48, per_class=3)
    assert isinstance(images, ImageSet) and images.name == "digits"
    assert len(images.images) == len(images.labels) == 30
    assert images.label_names == ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    assert set(images.labels) == set(images.label_names)
    assert all(im.mode == "RGB" and im.size == (48, 48) for im in images.images)
    corner = np.asarray(images.images[0])[0, 0]
    assert (corner > 200).all()  # dark ink on a light background
    assert images.prompts()[2] == "a photo of the handwritten digit two."
    assert len(digits(size=8).images) == 1797
    with pytest.raises(BadInput, match=r"size"):
        digits(size=4)


def png(color: str = "red", size: tuple[int, int] = (12, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_zip_with_class_folders():
    data = make_zip(
        {
            "pets/cat/1.png": png("red"),
            "pets/cat/2.jpg": _jpeg(),
            "pets/golden_retriever/a.PNG": png("blue"),
            "pets/golden_retriever/.DS_Store": b"junk",
            "pets/golden_retriever/notes.txt": b"not an image",
            "__MACOSX/pets/cat/._1.png": b"resource fork",
        }
    )
    result = from_zip(data, name="pets")
    assert result.name == "pets" and result.label_names == ("cat", "golden retriever")
    assert sorted(result.labels) == ["cat", "cat", "golden retriever"]
    assert all(im.mode == "RGB" for im in result.images)
    assert result.prompts() == ["a photo of a cat.", "a photo of a golden retriever."]


def test_zip_with_labels_csv():
    data = make_zip(
        {
            "labels.csv": b"filename,label\nimg/a.png,sun\nimg/b.png, moon \nc.png,sun\n",
            "img/a.png": png("yellow"),
            "img/b.png": png("gray"),
            "c.png": png("orange"),
            "unlisted.png": png("white"),
        }
    )
    result = from_zip(data)
    assert sorted(zip(result.labels, [im.getpixel((0, 0)) for im in result.images], strict=True)) == [
        ("moon", (128, 128, 128)),
        ("sun", (255, 165, 0)),
        ("sun", (255, 255, 0)),
    ]
    with pytest.raises(BadInput, match=r"line 2 names 'missing.png'"):
        from_zip(make_zip({"labels.csv": b"a.png,x\nmissing.png,y\n", "a.png": png()}))


@pytest.mark.parametrize("name", ["../evil/x.png", "cat/../../x.png", "/etc/x.png", "C:/x.png"])
def test_zip_paths_leading_outside_are_refused(name):
    data = make_zip({"cat/1.png": png(), "dog/1.png": png(), name: png()})
    with pytest.raises(BadInput, match=r"absolute path|outside"):
        from_zip(data)


def test_zip_limits(monkeypatch):
    many = {f"cat/{i}.png": b"x" for i in range(8)} | {f"dog/{i}.png": b"x" for i in range(8)}
    monkeypatch.setattr(image_sets, "MAX_ENTRIES", 10)
    with pytest.raises(BadInput, match=r"16 entries; the limit is 10"):
        from_zip(make_zip(many))
    monkeypatch.setattr(image_sets, "MAX_ENTRIES", 100)
    monkeypatch.setattr(image_sets, "MAX_IMAGES", 10)
    with pytest.raises(BadInput, match=r"16 images; the limit is 10"):
        from_zip(make_zip(many))
    big = make_zip({"cat/1.png": png(size=(300, 300)), "dog/1.png": png()})
    monkeypatch.setattr(image_sets, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(BadInput, match=r"'cat/1.png' is .* MB; the limit"):
        from_zip(big)
    monkeypatch.setattr(image_sets, "MAX_IMAGE_BYTES", 2**20)
    monkeypatch.setattr(image_sets, "MAX_TOTAL_BYTES", 200)
    with pytest.raises(BadInput, match=r"uncompresses to more than"):
        from_zip(make_zip({"cat/1.png": png(size=(64, 64)), "dog/1.png": png(size=(64, 64))}))


def test_zip_errors_name_the_file_and_what_to_do():
    speckled = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(speckled, "PNG")
    truncated = speckled.getvalue()[: len(speckled.getvalue()) // 2]
    with pytest.raises(BadInput, match=r"'cat/bad.png' cannot be used: .*corrupt"):
        from_zip(make_zip({"cat/bad.png": truncated, "dog/1.png": png()}))
    with pytest.raises(BadInput, match=r"'cat/x.png' cannot be used: .*not an image"):
        from_zip(make_zip({"cat/x.png": b"hello", "dog/1.png": png()}))
    with pytest.raises(BadInput, match=r"not a readable zip"):
        from_zip(b"PK not really")
    with pytest.raises(BadInput, match=r"'loose.png' is at the top"):
        from_zip(make_zip({"loose.png": png(), "cat/1.png": png(), "dog/1.png": png()}))
    with pytest.raises(BadInput, match=r"1 class"):
        from_zip(make_zip({"cat/1.png": png(), "cat/2.png": png()}))
    with pytest.raises(BadInput, match=r"no images"):
        from_zip(make_zip({"cat/readme.txt": b"hi"}))


def test_zip_decompression_bomb_is_refused_before_decoding():
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, format="PNG")  # 81 megapixels in a few kB
    with pytest.raises(BadInput, match=r"'cat/bomb.png' cannot be used: .*(megapixel|more pixels)"):
        from_zip(make_zip({"cat/bomb.png": bomb.getvalue(), "dog/1.png": png()}))


def test_large_images_are_kept_small():
    result = from_zip(make_zip({"cat/1.png": png(size=(1000, 500)), "dog/1.png": png()}))
    assert max(result.images[result.labels.index("cat")].size) == image_sets.MAX_SIDE


def test_from_folder(tmp_path):
    for label, color in [("cat", "red"), ("dog", "blue")]:
        (tmp_path / "set" / label).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "set" / label / f"{i}.png").write_bytes(png(color))
    (tmp_path / "set" / ".hidden").mkdir()
    (tmp_path / "set" / ".hidden" / "x.png").write_bytes(b"not read")
    result = from_folder(tmp_path / "set")
    assert result.name == "set" and result.label_names == ("cat", "dog") and len(result.images) == 4
    (tmp_path / "set" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(BadInput, match=r"'dog/broken.png' cannot be used"):
        from_folder(tmp_path / "set")
    with pytest.raises(BadInput, match=r"does not exist"):
        from_folder(tmp_path / "nowhere")


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "green").save(out, format="JPEG")
    return out.getvalue()


# --- on a tiny random CLIP model -----------------------------------------------------------------


def test_the_probe_on_tiny_random_clip_runs_through_the_local_provider(tmp_path, monkeypatch):
    """Digits embedded by the local CLIP adapter (random weights: only shapes and ranges are checked)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from services.evaluation import image_eval
    from tests.fixtures import tiny_models

    monkeypatch.setenv("FMG_MODEL_LOCAL_ZERO_SHOT", str(tiny_models.save_tiny_clip(tmp_path / "clip")))
    images = digits(size=tiny_models.IMAGE_SIZE, per_class=6)
    result, cost = image_eval.probe(images, "local", shots=(1, 2), repeats=2)
    assert [p.k for p in result.points] == [1, 2] and result.chance == pytest.approx(0.1)
    assert result.test_images == 30 and result.train_pool == 30 and cost["cost_usd"] == 0
    assert all(0 <= p.low <= p.mean <= p.high <= 1 for p in result.points)
    assert result.zero_shot is not None and 0 <= result.zero_shot <= 1
    assert [row[0] for row in image_eval.probe_table(result)] == [1, 2]
