"""What the Compare tab runs, without Gradio: one task's input checked once, sent to 2-6 targets at
once (`adapters.fanout`), collected into a `Comparison` that the tab renders as it fills in.

Blind comparisons wait here, in a server-side dict keyed by a random id, for their vote: the page
and the API only ever see the id and the letters "Model A", "Model B", ..., never which target
is which, until `vote()` reveals them and records the vote on the leaderboard.

Every target's run is one row of the run log (tab "compare"), written by the target's own thread
when it ends; the row's params name the whole comparison so History can re-open it.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

from adapters import fanout, inputs, registry, snippets
from adapters.errors import BadInput
from adapters.fanout import Emit, Outcome, Target
from adapters.tasks import Adapter
from adapters.types import CompletionParams, GeneratedImages, ImageParams, Result, Task
from demos import corpus, leaderboard, run_log
from demos.embeddings_search import corpus_index

TAB = "compare"  # the tab's id in the app and in the run log
MIN_TARGETS, MAX_TARGETS = 2, 6
LETTERS = "ABCDEF"
DEFAULT_TIMEOUT_S = 120.0  # local models on CPU take their time; vendors have their own, shorter deadline
MAX_WAITING_VOTES = 256  # blind comparisons kept for a vote; the oldest are dropped first


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


def prepare(task: Task, form: Form) -> Job:
    """Check the input once, so a bad prompt is one clear error instead of six identical cells."""
    return _JOBS[task](form)


def _completion_job(form: Form) -> Job:
    messages = inputs.check_messages([{"role": "user", "content": form.prompt or ""}])
    params = inputs.check_completion_params(CompletionParams(
        max_tokens=form.max_tokens, temperature=form.temperature, seed=_seed(form.seed)))

    def run(adapter, emit):
        stream = adapter.stream(messages, params)
        for delta in stream:
            emit(delta)
        result = stream.result
        return Cell(result, result.text, f"⚠️ cut off: {result.cut}" if result.cut else "")

    return Job(run, {"prompt": messages[-1]["content"]}, asdict(params), {"messages": messages})


def _zero_shot_job(form: Form) -> Job:
    image, labels = inputs.load_image(form.image), inputs.check_labels(form.labels)

    def run(adapter, emit):
        result = adapter.classify(image, labels)
        return Cell(result, dict(result.scores), "" if result.calibrated else "scores are the model's guess, not calibrated")

    return Job(run, {"image": run_log.Upload(form.image), "labels": labels}, {}, {"labels": labels})


def _captioning_job(form: Form) -> Job:
    image, prompt = inputs.load_image(form.image), inputs.check_optional_prompt(form.prompt)

    def run(adapter, emit):
        result = adapter.caption(image, prompt)
        return Cell(result, result.text)

    return Job(run, {"image": run_log.Upload(form.image), "prompt": prompt}, {}, {"prompt": prompt})


def _image_generation_job(form: Form) -> Job:
    prompt = inputs.check_prompt(form.prompt)
    seed = _seed(form.seed)
    params = inputs.check_image_params(ImageParams(
        steps=form.steps, width=form.width, height=form.height,
        seed=random.randrange(2**31) if seed is None else seed,  # one seed for all: a fair comparison
    ))

    def run(adapter, emit):
        result = adapter.generate(prompt, params)
        return Cell(result, result.images[0], f"seed {result.seed}")

    return Job(run, {"prompt": prompt}, asdict(params), {"prompt": prompt})


def _embeddings_job(form: Form) -> Job:
    query = inputs.check_prompt(form.prompt) if (form.prompt or "").strip() else None
    if query is None:
        raise BadInput("The query is empty: type what you are looking for.")
    passages = corpus.chunk(corpus.read_sources(form.corpus_text, None))
    top_k = int(form.top_k or 5)

    def run(adapter, emit):
        built, cached = corpus_index(adapter, passages)
        result = adapter.embed([query], kind="query")
        scores, ids = built.index.search(result.vectors, top_k)
        hits = [[rank + 1, round(float(s), 4), built.passages[i].text]  # one source here: pasted text
                for rank, (s, i) in enumerate(zip(scores[0], ids[0]))]
        how = "index reused" if cached else f"{len(passages)} passages indexed in {built.build_s:.2f} s"
        return Cell(result, hits, f"{how}; cost is the query's only")

    return Job(run, {"query": query, "corpus": form.corpus_text}, {"top_k": top_k, "passages": len(passages)},
               {"query": query, "documents": [p.text for p in passages]})


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


def resolve_targets(task: Task, names: Sequence[str] | str | None) -> list[Target]:
    """2-6 distinct targets, each with its model spelled out (the provider's default where none
    was given), so the page and the leaderboard name exactly what ran."""
    if isinstance(names, str):
        names = [names]
    targets = [Target.parse(n) for n in names or [] if str(n).strip()]
    if not MIN_TARGETS <= len(targets) <= MAX_TARGETS:
        raise BadInput(f"Pick {MIN_TARGETS} to {MAX_TARGETS} targets to compare (got {len(targets)}).")
    known = registry.providers()
    targets = [
        Target(t.provider, t.model or (known[t.provider].model(task) if t.provider in known else None))
        for t in targets
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
    if not (provider or "").strip():
        raise BadInput("Say which vendor the API key is for, so it is never sent to another one.")
    return SessionKey(provider.strip(), key)


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

@dataclass
class Comparison:
    """A comparison as it fills in: per column the output so far and, once done, its outcome."""

    task: Task
    targets: list[Target]
    blind: bool
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    outputs: list[object] = field(default_factory=list)
    outcomes: list[Outcome | None] = field(default_factory=list)
    wall_s: float | None = None
    revealed: bool = False
    vote: str | None = None  # "A", "B", ..., "tie" or "skip" once voted

    def __post_init__(self):
        self.outputs = self.outputs or [None] * len(self.targets)
        self.outcomes = self.outcomes or [None] * len(self.targets)

    @property
    def hidden(self) -> bool:
        """True while the targets' names must not reach the page."""
        return self.blind and not self.revealed

    @property
    def done(self) -> bool:
        return self.wall_s is not None

    def letter(self, i: int) -> str:
        return f"Model {LETTERS[i]}"

    def label(self, i: int) -> str:
        """What column `i` is called on the page right now."""
        if self.hidden:
            return self.letter(i)
        return f"{self.letter(i)}: {self.targets[i].name}" if self.blind else self.targets[i].name

    def answered(self) -> list[int]:
        """Columns with a result: the ones a vote can rate (a failed call says nothing of the model)."""
        return [i for i, o in enumerate(self.outcomes) if o is not None and o.ok]

    @property
    def awaits_vote(self) -> bool:
        return self.hidden and self.done and len(self.answered()) >= MIN_TARGETS

    def apply(self, i: int, event: str | Outcome) -> None:
        if isinstance(event, str):
            self.outputs[i] = (self.outputs[i] or "") + event
            return
        self.outcomes[i] = event
        if event.ok:
            self.outputs[i] = event.value.output


def run(task: Task, names: Sequence[str], form: Form, blind: bool = False, api_key: str | None = None,
        key_provider: str | None = None) -> Iterator[Comparison]:
    """Yield the comparison as it fills in (once at the start, then per batch of events, then
    done). Input errors are raised before anything starts."""
    targets = resolve_targets(task, names)
    job = prepare(task, form)
    key = session_key(api_key, key_provider)
    if blind:
        random.SystemRandom().shuffle(targets)  # column order must not give the pick order away
    comparison = Comparison(task, targets, blind)
    yield comparison
    started = time.perf_counter()  # after the first frame: the wall time is the targets', not the page's
    for batch in fanout.stream_batches(targets, _target_call(task, job, key, comparison), timeout_s()):
        for i, event in batch:
            comparison.apply(i, event)
        yield comparison
    comparison.wall_s = time.perf_counter() - started
    if comparison.blind and not comparison.awaits_vote:
        comparison.revealed = True  # fewer than two answers: there is nothing to vote on
    if comparison.awaits_vote:
        _waiting.put(comparison)
    yield comparison


def _target_call(task: Task, job: Job, key: SessionKey | None, comparison: Comparison) -> fanout.Call:
    """One target's run, logged on its own (tab "compare"); the log gets the input, never the key.

    The log row also names the whole comparison (its targets, blind or not, its id), so History
    can re-open the comparison rather than one side of it."""
    about = {"targets": [t.name for t in comparison.targets], "blind": comparison.blind,
             "comparison_id": comparison.id}

    def call(target: Target, emit: Emit) -> Cell:
        with run_log.run(tab=TAB, task=task, provider=target.provider, inputs=job.inputs,
                         params=job.params | about) as logged:
            logged.model = target.model  # known even when the call fails before an adapter exists
            adapter = registry.get(task, target.provider, target.model, api_key=key.for_target(target) if key else None)
            logged.uses(adapter)
            cell = job.run(adapter, emit)
            logged.done(cell.result, output=cell.output)
        return replace(cell, snippet=_snippet(task, job, adapter, cell.result))

    return call


def _snippet(task: Task, job: Job, adapter: Adapter, result: Result) -> str:
    params = dict(job.params)
    if isinstance(result, GeneratedImages) and result.seed is not None:
        params["seed"] = result.seed
    return snippets.snippet(task, adapter.provider, adapter.model, job.call, params,
                            secrets=[getattr(adapter, "api_key", None)])


# --- blind votes ---------------------------------------------------------------------------------

class _WaitingVotes:
    """Blind comparisons waiting for their vote, by id; server memory only (bounded, oldest out)."""

    def __init__(self):
        self._items: OrderedDict[str, Comparison] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, comparison: Comparison) -> None:
        with self._lock:
            self._items[comparison.id] = comparison
            while len(self._items) > MAX_WAITING_VOTES:
                self._items.popitem(last=False)

    def __contains__(self, comparison_id: object) -> bool:
        with self._lock:
            return comparison_id in self._items

    def take(self, comparison_id: str, check: Callable[[Comparison], None]) -> Comparison:
        """Remove and return the comparison once `check` accepts it (so a bad choice keeps it)."""
        with self._lock:
            comparison = self._items.get(str(comparison_id or ""))
            if comparison is None:
                raise BadInput("This comparison is not waiting for a vote: it was voted on already, was not "
                               "blind, or is too old. Run a new comparison.")
            check(comparison)
            return self._items.pop(comparison.id)


_waiting = _WaitingVotes()


def awaits_vote(comparison_id: str | None) -> bool:
    """True while a blind comparison's names must stay hidden (History asks before showing a run)."""
    return bool(comparison_id) and comparison_id in _waiting


def parse_choice(comparison: Comparison, choice: str) -> int | str:
    """A column index for "A".."F" (or "Model A"), or "tie" / "skip"; only answered columns count."""
    text = str(choice or "").strip().lower().removeprefix("model").strip()
    if text in ("tie", "skip"):
        return text
    letters = {LETTERS[i].lower(): i for i in comparison.answered()}
    if text not in letters:
        options = ", ".join(LETTERS[i] for i in comparison.answered())
        raise BadInput(f"Vote for one of {options}, or 'tie' (or 'skip' to reveal without voting).")
    return letters[text]


def vote(comparison_id: str, choice: str) -> tuple[Comparison, list[leaderboard.Standing]]:
    """Record a blind vote (a letter, "tie", or "skip" to reveal without voting) and reveal the
    names; returns the comparison and the task's standings."""
    picked: dict[str, int | str] = {}
    comparison = _waiting.take(comparison_id, lambda c: picked.setdefault("choice", parse_choice(c, choice)))
    chosen = picked["choice"]
    if chosen != "skip":
        rated = [comparison.targets[i].name for i in comparison.answered()]
        winner = None if chosen == "tie" else comparison.targets[chosen].name
        try:
            leaderboard.record_vote(comparison.task, comparison.id, rated, winner)
        except Exception:
            _waiting.put(comparison)  # the vote did not count: it may be cast again
            raise
    comparison.vote = chosen if isinstance(chosen, str) else LETTERS[chosen]
    comparison.revealed = True
    return comparison, leaderboard.standings(comparison.task)
