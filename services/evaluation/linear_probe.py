"""Linear probe against zero-shot, as in the CLIP paper: with k labelled images per class, does a
logistic regression on a model's image embeddings beat classifying them by label text alone?

Everything works on embeddings already computed (a matrix per image set and, for zero-shot, one
vector per label), so the same curve serves any model that embeds images. numpy and scikit-learn
are imported inside functions: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from adapters.errors import BadInput

if TYPE_CHECKING:
    import numpy as np

DEFAULT_SHOTS = (1, 2, 4, 8, 16)
DEFAULT_C = 0.316  # inverse L2 strength on standardised features (the CLIP repository's probe example uses 0.316)
MAX_ITER = 1000  # lbfgs converges in well under this on a few hundred standardised examples
MAX_REPEATS = 50
MAX_SHOTS = 1000


class KShot(NamedTuple):
    """Indices of a k-shot training sample, and the classes that had fewer than k images to give."""

    indices: np.ndarray
    short: dict[Any, int]  # label -> images it had (fewer than k)


@dataclass(frozen=True)
class ShotPoint:
    """The probe's accuracy with k images per class, over `repeats` different samples of shots."""

    k: int
    mean: float
    low: float  # 95% interval of the mean over repeats (Student t); equal to mean with one repeat
    high: float
    accuracies: tuple[float, ...]  # one per repeat
    train_images: int  # images in each training sample (fewer than k x classes when a class is short)
    short_classes: tuple[str, ...]  # classes with fewer than k images in the training pool


@dataclass(frozen=True)
class ProbeCurve:
    """Probe accuracy per number of shots, with zero-shot and chance on the same test images."""

    points: tuple[ShotPoint, ...]
    zero_shot: float | None  # accuracy from label-text embeddings; None when none were given
    chance: float  # 1 / classes
    classes: tuple[str, ...]
    images: int
    train_pool: int  # images the shots are drawn from
    test_images: int
    repeats: int
    seed: int
    notes: tuple[str, ...]  # plain sentences about anything that limits the comparison


def stratified_split(
    labels: Sequence[Hashable] | np.ndarray, test_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with each class split in the same proportion: a class with two or
    more images has at least one on each side; a class with one image goes to train."""
    import numpy as np

    if not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise BadInput(f"test_fraction must be between 0 and 1, exclusive (got {test_fraction!r}).")
    y = _labels_array(labels)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        n = len(members)
        n_test = 0 if n < 2 else min(max(round(n * test_fraction), 1), n - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)).astype(np.intp), np.sort(np.concatenate(test)).astype(np.intp)


def k_shot_indices(
    labels: Sequence[Hashable] | np.ndarray, train_idx: Sequence[int] | np.ndarray, k: int, seed: int
) -> KShot:
    """k indices per class drawn at random from `train_idx` (all of a class's, in `short`, when it
    has fewer than k)."""
    import numpy as np

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise BadInput(f"The number of shots per class must be a whole number of at least 1 (got {k!r}).")
    y = _labels_array(labels)
    pool = np.asarray(train_idx, dtype=np.intp).reshape(-1)
    if pool.size and (pool.min() < 0 or pool.max() >= len(y)):
        raise BadInput(f"Training indices must lie between 0 and {len(y) - 1}.")
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    short: dict[Any, int] = {}
    for cls in np.unique(y[pool]):
        members = pool[y[pool] == cls]
        if len(members) < k:
            short[cls.item() if hasattr(cls, "item") else cls] = len(members)
            chosen.append(members)
        else:
            chosen.append(rng.choice(members, size=int(k), replace=False))
    indices = np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.intp)
    return KShot(indices.astype(np.intp), short)


def probe_accuracy(
    train_vectors: Any,
    train_labels: Sequence[Hashable] | np.ndarray,
    test_vectors: Any,
    test_labels: Sequence[Hashable] | np.ndarray,
    seed: int = 0,
    C: float = DEFAULT_C,
) -> float:
    """Accuracy on the test images of an L2-regularised logistic regression fitted on the train
    images' embeddings (rows scaled to unit length, then standardised with train statistics)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train, y_train = _checked(train_vectors, train_labels, "training")
    x_test, y_test = _checked(test_vectors, test_labels, "test")
    if x_train.shape[1] != x_test.shape[1]:
        raise BadInput(
            f"Training and test embeddings differ in size ({x_train.shape[1]} and {x_test.shape[1]}): "
            "embed both with the same model."
        )
    if len(set(y_train.tolist())) < 2:
        raise BadInput("The linear probe needs training images of at least two classes.")
    if not len(y_test):
        raise BadInput("There are no test images to score the probe on.")
    scaler = StandardScaler().fit(_unit_rows(x_train))
    # lbfgs with the default (L2) penalty: a multinomial model over all classes at once
    model = LogisticRegression(C=C, max_iter=MAX_ITER, random_state=seed)
    model.fit(scaler.transform(_unit_rows(x_train)), y_train)
    predicted = model.predict(scaler.transform(_unit_rows(x_test)))
    return float((predicted == y_test).mean())


def zero_shot_accuracy(
    test_vectors: Any,
    label_vectors: Any,
    test_labels: Sequence[Hashable] | np.ndarray,
    label_names: Sequence[Hashable],
) -> float:
    """Accuracy of predicting, for each image, the label whose text embedding is closest in
    cosine (row i of `label_vectors` embeds `label_names[i]`)."""
    import numpy as np

    x, y = _checked(test_vectors, test_labels, "test")
    names = _labels_array(list(label_names))
    text = _matrix(label_vectors, "label")
    if len(text) != len(names):
        raise BadInput(f"There are {len(text)} label embeddings for {len(names)} label names: give one per label.")
    if len(set(names.tolist())) != len(names):
        raise BadInput("The label names repeat: give each class's name once.")
    if text.shape[1] != x.shape[1]:
        raise BadInput(
            f"Image and label embeddings differ in size ({x.shape[1]} and {text.shape[1]}): "
            "embed both with the same model (CLIP-like models embed images and text in one space)."
        )
    missing = sorted(set(y.tolist()) - set(names.tolist()), key=str)
    if missing:
        raise BadInput(f"The class '{missing[0]}' has no label embedding: embed a text for every class.")
    if not len(y):
        raise BadInput("There are no test images to score zero-shot classification on.")
    predicted = names[np.argmax(_unit_rows(x) @ _unit_rows(text).T, axis=1)]
    return float((predicted == y).mean())


def curve(
    vectors: Any,
    labels: Sequence[Hashable] | np.ndarray,
    shots: Sequence[int] = DEFAULT_SHOTS,
    repeats: int = 3,
    seed: int = 0,
    label_vectors: Any = None,
    label_names: Sequence[Hashable] | None = None,
    test_fraction: float = 0.5,
) -> ProbeCurve:
    """The linear probe's accuracy for each number of shots per class (mean and 95% interval over
    `repeats` samples of shots), and zero-shot accuracy on the same held-out test images."""
    import numpy as np

    x, y = _checked(vectors, labels, "image")
    classes = np.unique(y)
    if len(classes) < 2:
        raise BadInput(f"Comparing classifiers needs images of at least two classes (got {len(classes)}).")
    ks = _checked_shots(shots)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
        raise BadInput(f"repeats must be a whole number between 1 and {MAX_REPEATS} (got {repeats!r}).")
    if (label_vectors is None) != (label_names is None):
        raise BadInput("Zero-shot needs both the label embeddings and their names (one name per embedding).")

    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    if len(set(y[train_idx].tolist())) < 2:
        raise BadInput("After holding out test images, fewer than two classes are left to train on: add images.")
    if not len(test_idx):
        raise BadInput("No image is left to test on: each class needs at least two images.")
    notes: list[str] = []
    untested = [str(c) for c in classes if not (y[test_idx] == c).any()]
    if untested:
        notes.append(
            f"{len(untested)} class(es) have a single image, used for training only: {', '.join(untested[:5])}."
        )

    points = []
    for k in ks:
        accuracies, sizes, short = [], set(), {}
        for r in range(repeats):
            sample_seed = int(np.random.SeedSequence([seed, k, r]).generate_state(1)[0])
            sample = k_shot_indices(y, train_idx, k, sample_seed)
            short = sample.short
            sizes.add(len(sample.indices))
            accuracies.append(probe_accuracy(x[sample.indices], y[sample.indices], x[test_idx], y[test_idx], seed))
        mean, low, high = _interval(accuracies)
        short_names = tuple(sorted((str(c) for c in short), key=str))
        points.append(ShotPoint(k, mean, low, high, tuple(accuracies), max(sizes), short_names))
        if short and len(short) == len(set(y[train_idx].tolist())):
            notes.append(f"With {k} shots every class gave all its training images: the repeats are identical.")

    zero_shot = None
    if label_vectors is not None and label_names is not None:
        zero_shot = zero_shot_accuracy(x[test_idx], label_vectors, y[test_idx], label_names)
    return ProbeCurve(
        points=tuple(points),
        zero_shot=zero_shot,
        chance=1.0 / len(classes),
        classes=tuple(str(c) for c in classes),
        images=len(y),
        train_pool=len(train_idx),
        test_images=len(test_idx),
        repeats=repeats,
        seed=seed,
        notes=tuple(notes),
    )


# --- checks and helpers ------------------------------------------------------------------------


def _labels_array(labels: Any) -> np.ndarray:
    """Labels as a 1-D numpy array (strings or numbers), refusing missing ones."""
    import numpy as np

    if labels is None or isinstance(labels, (str, bytes)):
        raise BadInput("Labels must be a list with one label per image.")
    y = np.asarray(list(labels) if not hasattr(labels, "__array_interface__") else labels)
    if y.ndim != 1:
        raise BadInput(f"Labels must be a flat list, one per image (got shape {y.shape}).")
    if y.dtype == object and any(label is None for label in y):
        raise BadInput("Some images have no label: give every image a class.")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise BadInput("Some labels are NaN: give every image a class.")
    return y


def _matrix(vectors: Any, what: str) -> np.ndarray:
    """A finite 2-D float64 matrix, or BadInput saying what is wrong."""
    import numpy as np

    try:
        x = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput(f"The {what} embeddings are not a table of numbers (one equal-length vector per row).") from None
    if x.ndim != 2 or x.shape[1] == 0:
        raise BadInput(f"The {what} embeddings must be a matrix with one vector per row (got shape {x.shape}).")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise BadInput(
            f"{int(bad.sum())} {what} embedding(s) contain NaN or infinite values (first: row {int(np.argmax(bad))}): "
            "the model failed on those inputs; embed them again or leave them out."
        )
    return x


def _checked(vectors: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _matrix(vectors, what), _labels_array(labels)
    if len(x) != len(y):
        raise BadInput(f"There are {len(x)} {what} embeddings but {len(y)} labels: give one label per embedding.")
    return x, y


def _checked_shots(shots: Sequence[int]) -> list[int]:
    """Distinct shot counts, ascending; BadInput unless every one is a whole number in range."""
    import numpy as np

    values = list(shots) if isinstance(shots, (list, tuple, range)) or hasattr(shots, "__array_interface__") else []
    whole = all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and 1 <= k <= MAX_SHOTS for k in values)
    if not values or not whole:
        raise BadInput(f"shots must be whole numbers between 1 and {MAX_SHOTS}, e.g. (1, 2, 4, 8, 16) (got {shots!r}).")
    return sorted({int(k) for k in values})


def _unit_rows(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student t interval of the mean, clipped to [0, 1]."""
    import numpy as np
    from scipy import stats

    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if len(a) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    return mean, max(0.0, mean - half), min(1.0, mean + half)
