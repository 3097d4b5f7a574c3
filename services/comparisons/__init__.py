"""What the Compare tab runs, without Gradio: one task's input checked once, sent to 2-6 targets at
once (`services.comparisons.fanout`), collected into a `Comparison` that the tab renders as it fills in.

Blind comparisons wait for their vote in the leaderboard's database (`services.comparisons.waiting`),
keyed by a random id, so any worker can take the vote and every worker hides their runs: the page
and the API only ever see the id and the letters "Model A", "Model B", ..., never which target
is which, until `vote()` reveals them and records the vote on the leaderboard.

Every target's run is one row of the run log (tab "compare"), written by the target's own thread
when it ends; the row's params name the whole comparison so History can re-open it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

from adapters import inputs, registry, snippets
from adapters.errors import BadInput
from adapters.prices import FREE_PROVIDERS
from adapters.tasks import Adapter
from adapters.types import CompletionParams, EditMode, GeneratedImages, ImageParams, Result, Task
from services import access, boundary, public, quotas, run_log, visitors
from services.comparisons import fanout, votes, waiting
from services.comparisons.comparison import LETTERS as LETTERS
from services.comparisons.comparison import MAX_TARGETS, MIN_TARGETS, Comparison
from services.comparisons.fanout import Emit, Target
from services.comparisons.votes import MAX_WAITING_VOTES as MAX_WAITING_VOTES
from services.comparisons.votes import NOT_WAITING as NOT_WAITING
from services.comparisons.votes import hidden_ids as hidden_ids
from services.comparisons.votes import parse_choice as parse_choice
from services.comparisons.votes import vote as vote
from services.search import corpus, corpus_index
from services.visitors import Visitor

TAB = "compare"  # the tab's id in the app and in the run log
DEFAULT_TIMEOUT_S = 120.0  # local models on CPU take their time; vendors have their own, shorter deadline


# --- the input, checked once ---------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """The task's input as the page (or an API caller) gives it; each task reads its own fields."""

    prompt: str = ""
    image: str | None = None
    labels: str = ""
    corpus_text: str = ""
    top_k: int = 5
    max_tokens: int = 256
    temperature: float = 0.7
    steps: int = 1
    width: int = 512
    height: int = 512
    seed: int | None = None  # None or negative: random (one seed shared by every target)
    edit_mode: str = ""  # image generation: edit `image` instead ("image-to-image", "outpaint", "upscale")
    strength: float = 0.6  # image to image: how much of the image is repainted


@dataclass(frozen=True)
class Cell:
    """What one target produced: the result (for latency, tokens, cost) and the output to show."""

    result: Result
    output: object  # text, {label: score}, a PIL image, or hit rows [rank, score, passage]
    note: str = ""  # about this output (uncalibrated scores, a reused index, the seed)
    snippet: str = ""  # the call as a Python program (adapters.snippets)


@dataclass(frozen=True)
class Job:
    """A task's checked input and how one adapter runs it; `inputs`/`params` are what a run log
    may record (never a key), `call` the input as the adapter receives it (for the snippet)."""

    run: Callable[[Adapter, Emit], Cell]
    inputs: dict
    params: dict
    call: dict = field(default_factory=dict)
    work: access.Work = field(
        default_factory=access.Work
    )  # what one target's call may consume, for the visitor's quota


def prepare(task: Task, form: Form) -> Job:
    """Check the input once, so a bad prompt is one clear error instead of six identical cells."""
    return _JOBS[task](form)


def _completion_job(form: Form) -> Job:
    messages = inputs.check_messages([{"role": "user", "content": form.prompt or ""}])
    params = inputs.check_completion_params(
        CompletionParams(
            max_tokens=boundary.capped("max_tokens", form.max_tokens, "max_tokens"),
            temperature=form.temperature,
            seed=_seed(form.seed),
        )
    )

    def run(adapter, emit):
        stream = adapter.stream(messages, params)
        for delta in stream:
            emit(delta)
        result = stream.result
        return Cell(result, result.text, f"⚠️ cut off: {result.cut}" if result.cut else "")

    return Job(
        run,
        {"prompt": messages[-1]["content"]},
        asdict(params),
        {"messages": messages},
        access.Work(input_chars=len(messages[-1]["content"]), output_tokens=params.max_tokens),
    )


def _zero_shot_job(form: Form) -> Job:
    image, labels = inputs.load_image(form.image), inputs.check_labels(form.labels)

    def run(adapter, emit):
        result = adapter.classify(image, labels)
        return Cell(
            result, dict(result.scores), "" if result.calibrated else "scores are the model's guess, not calibrated"
        )

    return Job(
        run,
        {"image": run_log.Upload(form.image), "labels": labels},
        {},
        {"labels": labels},
        access.Work(input_chars=sum(map(len, labels)) + 500, output_tokens=300, images_in=1),
    )


def _captioning_job(form: Form) -> Job:
    image, prompt = inputs.load_image(form.image), inputs.check_optional_prompt(form.prompt)

    def run(adapter, emit):
        result = adapter.caption(image, prompt)
        return Cell(result, result.text)

    return Job(
        run,
        {"image": run_log.Upload(form.image), "prompt": prompt},
        {},
        {"prompt": prompt},
        access.Work(input_chars=len(prompt or "") + 500, output_tokens=300, images_in=1),
    )


def _image_generation_job(form: Form) -> Job:
    if form.edit_mode:
        return _image_edit_job(form)
    prompt = inputs.check_prompt(form.prompt)
    seed = _seed(form.seed)
    params = inputs.check_image_params(
        ImageParams(
            steps=boundary.capped("steps", form.steps, "steps"),
            width=boundary.capped("width", form.width, "image_side"),
            height=boundary.capped("height", form.height, "image_side"),
            seed=random.randrange(2**31) if seed is None else seed,  # one seed for all: a fair comparison
        )
    )

    def run(adapter, emit):
        result = adapter.generate(prompt, params)
        return Cell(
            result,
            result.images[0],
            f"seed {result.seed}" if result.seed is not None else "this provider takes no seed",
        )

    return Job(
        run, {"prompt": prompt}, asdict(params), {"prompt": prompt}, access.Work(input_chars=len(prompt), images_out=1)
    )


COMPARED_EDITS = (EditMode.IMAGE_TO_IMAGE, EditMode.OUTPAINT, EditMode.UPSCALE)  # inpainting needs a drawn mask


def _image_edit_job(form: Form) -> Job:
    """One image edited by every target with the same seed; a target without the mode shows why."""
    mode = inputs.check_edit_mode(form.edit_mode)
    if mode not in COMPARED_EDITS:
        raise BadInput(
            "Compare edits by image to image, outpainting or upscaling: inpaint in the Image generation tab."
        )
    image = inputs.load_image(form.image)
    prompt = (
        (inputs.check_optional_prompt(form.prompt) or "")
        if mode is EditMode.UPSCALE
        else inputs.check_prompt(form.prompt)
    )
    seed = _seed(form.seed)
    params = inputs.check_image_params(
        ImageParams(
            steps=boundary.capped("steps", form.steps, "steps"), seed=random.randrange(2**31) if seed is None else seed
        )
    )
    strength = inputs.check_strength(form.strength)

    def run(adapter, emit):
        result = adapter.edit(prompt, image, mode, params, strength=strength)
        seed_note = f"seed {result.seed}" if result.seed is not None else "this provider takes no seed"
        return Cell(result, result.images[0], f"{mode.title}, {seed_note}")

    return Job(
        run,
        {"prompt": prompt, "image": run_log.Upload(form.image), "mode": mode.value},
        {**asdict(params), "strength": strength},
        {"prompt": prompt, "mode": mode.value},
        access.Work(input_chars=len(prompt), images_in=1, images_out=1),
    )


def _embeddings_job(form: Form) -> Job:
    query = inputs.check_prompt(form.prompt) if (form.prompt or "").strip() else None
    if query is None:
        raise BadInput("The query is empty: type what you are looking for.")
    sources = corpus.read_sources(form.corpus_text, None)
    boundary.capped("The corpus (characters)", sum(len(text) for _, text in sources), "corpus_chars")
    passages = corpus.chunk(sources)
    top_k = int(form.top_k or 5)

    def run(adapter, emit):
        built, cached = corpus_index(adapter, passages)
        result = adapter.embed([query], kind="query")
        scores, ids = built.index.search(result.vectors, top_k)
        hits = [
            [rank + 1, round(float(s), 4), built.passages[i].text]  # one source here: pasted text
            for rank, (s, i) in enumerate(zip(scores[0], ids[0], strict=False))
        ]
        how = "index reused" if cached else f"{len(passages)} passages indexed in {built.build_s:.2f} s"
        return Cell(result, hits, f"{how}; cost is the query's only")

    return Job(
        run,
        {"query": query, "corpus": form.corpus_text},
        {"top_k": top_k, "passages": len(passages)},
        {"query": query, "documents": [p.text for p in passages]},
        access.Work(input_chars=len(query) + sum(len(p.text) for p in passages), requests=1 + -(-len(passages) // 64)),
    )  # the corpus in batches, then the query


_JOBS: dict[Task, Callable[[Form], Job]] = {
    Task.COMPLETION: _completion_job,
    Task.ZERO_SHOT: _zero_shot_job,
    Task.CAPTIONING: _captioning_job,
    Task.IMAGE_GENERATION: _image_generation_job,
    Task.EMBEDDINGS: _embeddings_job,
}


def _seed(value) -> int | None:
    return None if value is None or value < 0 else int(value)


# --- targets and the session key -----------------------------------------------------------------


def parse_task(value) -> Task:
    try:
        return Task(value)
    except ValueError:
        raise BadInput(f"Unknown task {str(value)[:40]!r}: choose one of {', '.join(t.value for t in Task)}.") from None


def resolve_targets(task: Task, names: Sequence[str] | str | None, key: SessionKey | None = None) -> list[Target]:
    """2-6 distinct targets, each with its model spelled out (the provider's default where none
    was given), so the page and the leaderboard name exactly what ran. Every model named passes
    the trust boundary (never a URL or a path; in public mode one the owner lists)."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        names = [] if names is None else [str(names)]  # (each name goes through str() below anyway)
    if len(names) > 4 * MAX_TARGETS:
        raise BadInput(f"Pick {MIN_TARGETS} to {MAX_TARGETS} targets to compare (got {len(names)}).")
    targets = [Target.parse(str(n)) for n in names if str(n).strip()]
    if not MIN_TARGETS <= len(targets) <= MAX_TARGETS:
        raise BadInput(f"Pick {MIN_TARGETS} to {MAX_TARGETS} targets to compare (got {len(targets)}).")
    known = registry.providers()
    targets = [
        Target(t.provider, boundary.model(task, t.provider, t.model, own_key=bool(key and key.for_target(t))))
        for t in targets
    ]
    targets = [
        Target(t.provider, t.model or (known[t.provider].model(task) if t.provider in known else None)) for t in targets
    ]
    seen = set()
    for t in targets:
        if t.name in seen:
            raise BadInput(f"{t.name} is listed twice: pick each target once.")
        seen.add(t.name)
    return targets


@dataclass(frozen=True, repr=False)
class SessionKey:
    """A key typed for this session, and the one provider it belongs to: a key is never sent to
    another vendor's targets. Kept in the running call only, never in a `Comparison`."""

    provider: str
    key: str

    def for_target(self, target: Target) -> str | None:
        return self.key if target.provider == self.provider else None


def session_key(api_key: str | None, provider: str | None) -> SessionKey | None:
    key = (api_key or "").strip()
    if not key:
        return None
    vendor = (provider or "").strip()
    if not vendor:
        raise BadInput("Say which vendor the API key is for, so it is never sent to another one.")
    return SessionKey(vendor, key)


def timeout_s() -> float:
    """Each target's deadline (`FMG_COMPARE_TIMEOUT_S`), read per comparison."""
    raw = os.environ.get("FMG_COMPARE_TIMEOUT_S", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise BadInput(f"FMG_COMPARE_TIMEOUT_S must be a number of seconds (got {raw!r}).") from None
    if value <= 0:
        raise BadInput(f"FMG_COMPARE_TIMEOUT_S must be positive (got {raw!r}).")
    return value


# --- one comparison ------------------------------------------------------------------------------


def run(
    task: Task,
    names: Sequence[str],
    form: Form,
    blind: bool = False,
    api_key: str | None = None,
    key_provider: str | None = None,
    visitor: Visitor = visitors.OWNER,
) -> Iterator[Comparison]:
    """Yield the comparison as it fills in (once at the start, then per batch of events, then
    done). Input errors are raised before anything starts. A blind comparison's runs stay out of
    every reader's sight (`hidden_ids`) from its start until its vote."""
    key = session_key(api_key, key_provider)
    targets = resolve_targets(task, names, key)
    job = prepare(task, form)
    if blind:
        random.SystemRandom().shuffle(targets)  # column order must not give the pick order away
    comparison = Comparison(task, targets, blind, owner=visitor.id, session=visitor.session)
    uses_local = any(t.provider in FREE_PROVIDERS for t in targets)
    if blind:
        waiting.hide(comparison.id, task.value, [t.name for t in targets], comparison.owner, comparison.session)
    try:
        with quotas.local_turn(visitor, uses_local):  # the visitor's one local turn, for every local target
            yield comparison
            started = time.perf_counter()  # after the first frame: the wall time is the targets', not the page's
            call = _target_call(task, job, key, comparison, visitor)
            for batch in fanout.stream_batches(targets, call, timeout_s()):
                for i, event in batch:
                    comparison.apply(i, event)
                yield comparison
            comparison.wall_s = time.perf_counter() - started
        if comparison.blind and not comparison.awaits_vote:
            comparison.revealed = True  # fewer than two answers: there is nothing to vote on
        if comparison.awaits_vote:
            votes.remember(comparison)
        yield comparison
    finally:
        if blind and not comparison.awaits_vote:
            waiting.unhide(comparison.id)


def _target_call(task: Task, job: Job, key: SessionKey | None, comparison: Comparison, visitor: Visitor) -> fanout.Call:
    """One target's run, logged on its own (tab "compare"); the log gets the input, never the key.

    The log row also names the whole comparison (its targets, blind or not, its id), so History
    can re-open the comparison rather than one side of it."""
    about = {"targets": [t.name for t in comparison.targets], "blind": comparison.blind, "comparison_id": comparison.id}

    def call(target: Target, emit: Emit) -> Cell:
        with run_log.run(
            tab=TAB, task=task, provider=target.provider, inputs=job.inputs, params=job.params | about
        ) as logged:
            logged.model = target.model  # known even when the call fails before an adapter exists
            logged.by(visitor)
            adapter = registry.get(task, target.provider, target.model, api_key=key.for_target(target) if key else None)
            logged.uses(adapter)
            access.charge(visitor, adapter, job.work)  # a 6-target comparison counts 6 calls
            cell = job.run(adapter, emit)
            logged.done(cell.result, output=cell.output)
        return replace(cell, snippet=_snippet(task, job, adapter, cell.result))

    return call


def _snippet(task: Task, job: Job, adapter: Adapter, result: Result) -> str:
    params = dict(job.params)
    if isinstance(result, GeneratedImages) and result.seed is not None:
        params["seed"] = result.seed
    return snippets.snippet(
        task,
        adapter.provider,
        adapter.model,
        job.call,
        params,
        secrets=[getattr(adapter, "api_key", None)],
        public=public.enabled(),
    )
