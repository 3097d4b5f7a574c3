"""Image generation evaluations: each target draws the same prompts (same seed), scored by
CLIPScore of prompt against image with an image-text model (local CLIP or Cohere). Without one,
the Compare tab's blind votes are the way to judge images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from adapters.errors import BadInput, FMError
from adapters.tasks import ImageGenerator
from adapters.types import ImageParams, Task
from services import access, boundary
from services.evaluation import image_eval, stats
from services.evaluation.engine import Target, check_targets
from services.quotas import LimitReached, Work
from services.visitors import OWNER, Visitor

PROMPTS = (
    "a red apple on a wooden table",
    "a lighthouse on a cliff at sunset",
    "a cat sleeping on a blue sofa",
    "a bowl of ramen with chopsticks, top view",
    "a snowy mountain village at night",
    "an astronaut riding a bicycle on the moon",
    "a watercolor painting of a fox in a forest",
    "three yellow rubber ducks in a bathtub",
)
MAX_PROMPTS = 50
COLUMNS = ["generator", "CLIPScore", "images", "errors", "mean latency s", "cost $"]


@dataclass(frozen=True)
class GenerationRow:
    target: str
    clip_score: tuple[float, float, float]
    n: int
    errors: int
    mean_latency_s: float
    cost_usd: float | None
    images: tuple[Any, ...]
    error: str | None = None


def run(
    prompts: Sequence[str],
    targets: Sequence[str],
    clip: str,
    params: ImageParams | None = None,
    visitor: Visitor = OWNER,
    api_key: str | None = None,
) -> list[GenerationRow]:
    """One row per generator: CLIPScore mean with a 95% bootstrap interval over the prompts."""
    prompts = [p.strip() for p in prompts if isinstance(p, str) and p.strip()]
    if not prompts:
        raise BadInput("Give at least one prompt, one per line.")
    if len(prompts) > MAX_PROMPTS:
        raise BadInput(f"Give at most {MAX_PROMPTS} prompts.")
    targets = check_targets(targets)
    boundary.capped("An evaluation's model calls", len(prompts) * len(targets), "evaluation_calls")
    scorer = image_eval.clip_embedder(clip, visitor, api_key)  # refused before anything is drawn
    params = params or ImageParams(steps=1, width=512, height=512, seed=0)
    return [_one(prompts, Target.parse(t), scorer, params, visitor, api_key) for t in targets]


def _one(
    prompts: list[str], target: Target, scorer: Any, params: ImageParams, visitor: Visitor, api_key: str | None
) -> GenerationRow:
    nan = float("nan")
    try:
        generator = cast(ImageGenerator, access.adapter(Task.IMAGE_GENERATION, target.provider, target.model, api_key))
    except FMError as err:
        return GenerationRow(target.name, (nan, nan, nan), 0, 0, nan, None, (), error=str(err))
    drawn: list[tuple[str, Any]] = []
    latencies: list[float] = []
    cost: float | None = 0.0
    for prompt in prompts:
        try:
            with access.call(visitor, generator, Work(input_chars=len(prompt), images_out=1)):
                result = generator.generate(prompt, params)
        except LimitReached:
            raise
        except FMError:
            continue
        drawn.append((prompt, result.images[0]))
        latencies.append(result.latency_s)
        cost = None if cost is None or result.cost_usd is None else cost + result.cost_usd
    scores = image_eval.clip_scores(scorer, [i for _, i in drawn], [p for p, _ in drawn], visitor) if drawn else []
    return GenerationRow(
        target.name, stats.bootstrap_ci(scores), len(drawn), len(prompts) - len(drawn), stats.mean(latencies), cost,
        tuple(i for _, i in drawn),
    )  # fmt: skip


def table(rows: Sequence[GenerationRow]) -> list[list]:
    from services.evaluation.report import usd

    return [
        [
            r.target,
            "" if r.error or not r.n else f"{r.clip_score[0]:.3f} [{r.clip_score[1]:.2f}, {r.clip_score[2]:.2f}]",
            r.n, r.error or r.errors,
            "" if r.error or not r.n else f"{r.mean_latency_s:.3f}", usd(r.cost_usd),
        ]
        for r in rows
    ]  # fmt: skip
