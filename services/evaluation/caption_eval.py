"""Captioning evaluations: each target captions the same images, scored against reference captions
by embedding similarity (any embedder) and, where an image-text model is given, by CLIPScore."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from adapters.errors import FMError
from adapters.tasks import Captioner, Embedder
from adapters.types import Task
from services import access, boundary
from services.evaluation import image_eval, stats
from services.evaluation.captioned import CaptionedImage
from services.evaluation.engine import Target, check_targets
from services.quotas import LimitReached, Work
from services.visitors import OWNER, Visitor

REFERENCE = "reference captions"  # the row that scores the references themselves
COLUMNS = ["captioner", "similarity to reference", "CLIPScore", "images", "errors", "mean latency s", "cost $"]


@dataclass(frozen=True)
class CaptionRow:
    target: str
    similarity: tuple[float, float, float]  # mean, 95% low, high
    clip_score: tuple[float, float, float] | None
    n: int
    errors: int
    mean_latency_s: float
    cost_usd: float | None
    captions: tuple[str | None, ...]
    error: str | None = None


def run(
    samples: Sequence[CaptionedImage],
    targets: Sequence[str],
    embedder: str,
    clip: str | None = None,
    visitor: Visitor = OWNER,
    api_key: str | None = None,
) -> list[CaptionRow]:
    """One row per captioner, plus a "reference captions" row scoring the references themselves
    by CLIPScore (a ceiling for the metric on these images)."""
    targets = check_targets(targets)
    boundary.capped("An evaluation's model calls", len(samples) * len(targets), "evaluation_calls")
    parsed = Target.parse(embedder)
    scorer = cast(Embedder, access.adapter(Task.EMBEDDINGS, parsed.provider, parsed.model, api_key))
    clip_adapter = image_eval.clip_embedder(clip, visitor, api_key) if clip else None
    rows = [_one(samples, Target.parse(t), scorer, clip_adapter, visitor, api_key) for t in targets]
    if clip_adapter is not None:
        references = [s.caption for s in samples]
        scores = image_eval.clip_scores(clip_adapter, [s.image for s in samples], references, visitor)
        nan = float("nan")
        rows.append(
            CaptionRow(
                REFERENCE, (nan, nan, nan), stats.bootstrap_ci(scores), len(samples), 0, nan, None,
                tuple(references),
            )
        )  # fmt: skip
    return rows


def _one(
    samples: Sequence[CaptionedImage],
    target: Target,
    scorer: Embedder,
    clip: object,
    visitor: Visitor,
    api_key: str | None,
) -> CaptionRow:
    nan = float("nan")
    try:
        captioner = cast(Captioner, access.adapter(Task.CAPTIONING, target.provider, target.model, api_key))
    except FMError as err:
        return CaptionRow(target.name, (nan, nan, nan), None, 0, 0, nan, None, (), error=str(err))
    captions: list[str | None] = []
    latencies: list[float] = []
    cost: float | None = 0.0
    for sample in samples:
        try:
            with access.call(visitor, captioner, Work(images_in=1)):
                result = captioner.caption(sample.image)
        except LimitReached:
            raise
        except FMError:
            captions.append(None)
            continue
        captions.append(result.text)
        latencies.append(result.latency_s)
        cost = None if cost is None or result.cost_usd is None else cost + result.cost_usd
    done = [(s, c) for s, c in zip(samples, captions, strict=True) if c]
    similarity = (nan, nan, nan)
    clip_score = None
    if done:
        texts = [c for _, c in done] + [s.caption for s, _ in done]
        with access.call(visitor, scorer, Work(input_chars=sum(map(len, texts)))):
            vectors = scorer.embed(texts, kind="document").vectors
        half = len(done)
        similarity = stats.bootstrap_ci([float(vectors[i] @ vectors[half + i]) for i in range(half)])
        if clip is not None:
            adapter = cast(image_eval.ZeroShotClassifier, clip)
            clip_score = stats.bootstrap_ci(
                image_eval.clip_scores(adapter, [s.image for s, _ in done], [c for _, c in done], visitor)
            )
    return CaptionRow(
        target.name, similarity, clip_score, len(done), len(samples) - len(done), stats.mean(latencies), cost,
        tuple(captions),
    )  # fmt: skip


def table(rows: Sequence[CaptionRow]) -> list[list]:
    from services.evaluation.report import usd

    def ci(value: tuple[float, float, float] | None) -> str:
        if value is None or value[0] != value[0]:  # NaN: not measured
            return ""
        return f"{value[0]:.3f} [{value[1]:.2f}, {value[2]:.2f}]"

    return [
        [
            r.target, ci(r.similarity), ci(r.clip_score), r.n, r.error or r.errors,
            "" if r.mean_latency_s != r.mean_latency_s else f"{r.mean_latency_s:.3f}", usd(r.cost_usd),
        ]
        for r in rows
    ]  # fmt: skip
