"""Image evaluations: zero-shot accuracy per target, and a linear probe against zero-shot on one model.

Zero-shot sends every image of a labelled set to each target's `classify` with the set's label
names (the CLIP paper's "a photo of a {label}." prompt is the provider's own business) and scores
the best label. The probe takes one target whose zero-shot works by embeddings (`embeds`: local
CLIP, Cohere), embeds every image once, and fits logistic regression on k shots per class
(`linear_probe.curve`), with zero-shot from the same vectors on the same held-out images.
Calls go through `services.access`, so a public visitor spends only their own quota.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from adapters.errors import BadInput, FMError
from adapters.tasks import ZeroShotClassifier
from adapters.types import Task
from services import access, boundary
from services.evaluation import linear_probe, scoring, stats
from services.evaluation.engine import Target, check_targets
from services.evaluation.image_sets import ImageSet
from services.quotas import LimitReached, Work
from services.visitors import OWNER, Visitor

MAX_IMAGES_PER_RUN = 2_000
EMBED_BATCH = 64


@dataclass(frozen=True)
class ZeroShotRow:
    """One target's zero-shot accuracy on a set, with a 95% bootstrap interval."""

    target: str
    accuracy: float
    low: float
    high: float
    n: int
    errors: int
    mean_latency_s: float
    cost_usd: float | None
    confusion: list[list]  # rows: actual label, then counts per predicted label
    error: str | None = None


ZERO_SHOT_COLUMNS = ["target", "accuracy", "Wilson 95% CI", "images", "errors", "mean latency s", "cost $"]


def zero_shot(
    image_set: ImageSet, targets: Sequence[str], visitor: Visitor = OWNER, api_key: str | None = None
) -> list[ZeroShotRow]:
    """Each target classifies every image among the set's labels; one row per target."""
    targets = check_targets(targets)
    _check(image_set, len(targets))
    return [_zero_shot_one(image_set, Target.parse(t), visitor, api_key) for t in targets]


def check_first(targets: Sequence[str], visitor: Visitor, api_key: str | None = None) -> list[str]:
    """The cheap checks, before an image set is read or decoded: 1 to 6 targets, each a model the
    visitor may call (the trust boundary), and a hosted call left in the visitor's quota. A target
    that cannot run is left to fail in its own row; when none can, the request is refused here."""
    names = check_targets(targets)
    reasons = []
    for name in names:
        target = Target.parse(name)
        try:
            access.check(visitor, access.adapter(Task.ZERO_SHOT, target.provider, target.model, api_key))
        except LimitReached:
            raise
        except FMError as err:
            reasons.append(f"{target.name}: {err}")
    if len(reasons) == len(names):
        raise BadInput(f"None of the targets can run, so nothing was read: {reasons[0]}")
    return names


def _zero_shot_one(image_set: ImageSet, target: Target, visitor: Visitor, api_key: str | None) -> ZeroShotRow:
    labels = list(image_set.label_names)
    predicted: list[str | None] = []
    latencies: list[float] = []
    cost: float | None = 0.0
    errors = 0
    try:
        adapter = cast(ZeroShotClassifier, access.adapter(Task.ZERO_SHOT, target.provider, target.model, api_key))
    except FMError as err:
        return _failed(target, str(err))
    for image in image_set.images:
        try:
            with access.call(visitor, adapter, Work(input_chars=sum(map(len, labels)), images_in=1)):
                result = adapter.classify(image, labels)
        except LimitReached:
            raise
        except FMError:
            errors += 1
            predicted.append(None)
            continue
        predicted.append(result.best)
        latencies.append(result.latency_s)
        cost = None if cost is None or result.cost_usd is None else cost + result.cost_usd
    hits = [float(p == a) for p, a in zip(predicted, image_set.labels, strict=True) if p is not None]
    mean, low, high = stats.wilson_ci(int(sum(hits)), len(hits))  # accuracy is a proportion
    matrix = scoring.confusion(predicted, image_set.labels, labels)
    return ZeroShotRow(
        target=target.name,
        accuracy=mean,
        low=low,
        high=high,
        n=len(hits),
        errors=errors,
        mean_latency_s=stats.mean(latencies),
        cost_usd=cost,
        confusion=[[label, *row] for label, row in zip(labels, matrix, strict=True)],
    )


def _failed(target: Target, error: str) -> ZeroShotRow:
    nan = float("nan")
    return ZeroShotRow(target.name, nan, nan, nan, 0, 0, nan, None, [], error=error)


def zero_shot_table(rows: Sequence[ZeroShotRow]) -> list[list]:
    from services.evaluation.report import usd

    return [
        [
            r.target,
            "" if r.error else f"{r.accuracy:.3f}",
            "" if r.error or not r.n else f"{r.low:.2f}-{r.high:.2f}",
            r.n,
            r.error or r.errors,
            "" if r.error else f"{r.mean_latency_s:.3f}",
            usd(r.cost_usd),
        ]
        for r in rows
    ]


def probe(
    image_set: ImageSet,
    target: str,
    shots: Sequence[int] = linear_probe.DEFAULT_SHOTS,
    repeats: int = 3,
    seed: int = 0,
    visitor: Visitor = OWNER,
    api_key: str | None = None,
) -> tuple[linear_probe.ProbeCurve, dict[str, Any]]:
    """The probe curve on `target`'s image embeddings, and what embedding the set cost."""
    _check(image_set, 1)
    parsed = Target.parse(target)
    adapter = cast(ZeroShotClassifier, access.adapter(Task.ZERO_SHOT, parsed.provider, parsed.model, api_key))
    if not adapter.embeds:
        raise BadInput(
            f"{parsed.name} classifies without image embeddings, so it has nothing to probe: "
            "pick local CLIP or Cohere for the linear probe."
        )
    started = time.perf_counter()
    vectors = []
    cost: float | None = 0.0
    images = list(image_set.images)
    for i in range(0, len(images), EMBED_BATCH):
        batch = images[i : i + EMBED_BATCH]
        with access.call(visitor, adapter, Work(images_in=len(batch), requests=1)):
            result = adapter.embed_images(batch)
        vectors.append(result.vectors)
        cost = None if cost is None or result.cost_usd is None else cost + result.cost_usd
    with access.call(visitor, adapter, Work(input_chars=sum(map(len, image_set.label_names)))):
        labels = adapter.embed_labels(list(image_set.label_names))
    import numpy as np

    curve = linear_probe.curve(
        np.concatenate(vectors),
        list(image_set.labels),
        shots=tuple(shots),
        repeats=repeats,
        seed=seed,
        label_vectors=labels.vectors,
        label_names=list(image_set.label_names),
    )
    total_cost = None if cost is None or labels.cost_usd is None else cost + labels.cost_usd
    return curve, {"target": parsed.name, "seconds": time.perf_counter() - started, "cost_usd": total_cost}


PROBE_COLUMNS = ["shots per class", "probe accuracy", "95% CI", "zero-shot", "chance"]


def probe_table(curve: linear_probe.ProbeCurve) -> list[list]:
    zero = "" if curve.zero_shot is None else f"{curve.zero_shot:.3f}"
    return [[p.k, f"{p.mean:.3f}", f"{p.low:.2f}-{p.high:.2f}", zero, f"{curve.chance:.3f}"] for p in curve.points]


def _check(image_set: ImageSet, targets: int) -> None:
    if not image_set.images:
        raise BadInput("The image set is empty: pick the digits set or upload a zip of labelled images.")
    if len(image_set.images) > MAX_IMAGES_PER_RUN:
        raise BadInput(f"The set has {len(image_set.images)} images; one run takes at most {MAX_IMAGES_PER_RUN}.")
    boundary.capped("An evaluation's model calls", len(image_set.images) * targets, "evaluation_calls")


CLIP_SCORE_WEIGHT = 2.5  # Hessel et al. 2021: CLIP-S = w * max(cos, 0), w = 2.5


def clip_embedder(target: str, visitor: Visitor = OWNER, api_key: str | None = None) -> ZeroShotClassifier:
    """The zero-shot adapter whose image and text embeddings score image-text pairs (CLIPScore)."""
    parsed = Target.parse(target)
    adapter = cast(ZeroShotClassifier, access.adapter(Task.ZERO_SHOT, parsed.provider, parsed.model, api_key))
    if not adapter.embeds:
        raise BadInput(
            f"{parsed.name} has no image embeddings, so it cannot compute CLIPScore: pick local CLIP or Cohere."
        )
    return adapter


def clip_scores(
    adapter: ZeroShotClassifier, images: Sequence[Any], texts: Sequence[str], visitor: Visitor
) -> list[float]:
    """CLIPScore of each (image, text) pair: w * max(cosine, 0) of their embeddings."""
    import numpy as np

    image_vectors = []
    for i in range(0, len(images), EMBED_BATCH):
        batch = list(images[i : i + EMBED_BATCH])
        with access.call(visitor, adapter, Work(images_in=len(batch))):
            image_vectors.append(adapter.embed_images(batch).vectors)
    unique = list(dict.fromkeys(t.strip() for t in texts))
    with access.call(visitor, adapter, Work(input_chars=sum(map(len, unique)))):
        text_vectors = adapter.embed_labels(unique).vectors
    row = {text: n for n, text in enumerate(unique)}
    images_matrix = np.concatenate(image_vectors)
    return [
        CLIP_SCORE_WEIGHT * max(float(images_matrix[i] @ text_vectors[row[t.strip()]]), 0.0)
        for i, t in enumerate(texts)
    ]
