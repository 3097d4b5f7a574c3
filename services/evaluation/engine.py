"""Running an evaluation: every item x target x variant, concurrently, scored, cached and resumable.

Each (item, target, variant) cell makes one or more chat calls (samples, a detector guard, a judge),
through `services.access` so that a public visitor spends only their own quota. Calls run on a
thread pool, at most `concurrency` at once per provider, as background work (`adapters.priority`:
after interactive local calls, at a lower scheduling priority). Identical calls (same provider,
model, parameters, messages and seed) are served from the store's cache; every finished cell is saved at
once, so a run killed half way resumes where it stopped. A cost cap stops a run before the call
that could pass it (at list prices, `services.quotas.estimate_usd`), and `cancel()` stops it
between calls.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from adapters import inputs, priority
from adapters.errors import BadInput, FMError
from adapters.types import CompletionParams, Message, Task
from services import access, boundary, public
from services.evaluation import scoring, store, variants
from services.evaluation.datasets import Dataset, Item
from services.evaluation.scoring import budget
from services.evaluation.store import Cell, Reply
from services.evaluation.variants import Variant
from services.quotas import CHARS_PER_TOKEN, LimitReached, Work, estimate_usd
from services.visitors import OWNER, Visitor

CHAT_KINDS = ("chat", "classification", "injection")
EXTRA_SCORERS = ("judge", "similarity", "injection")  # scorers that make calls, or read the item's marker
MAX_TARGETS = 6
MAX_VARIANTS = 8
MAX_CALLS = 20_000
CANCELLED = "Cancelled: the finished cells are kept; resume it to run the rest."
CACHE_BATCH = 256  # cells answered from the cache, saved per transaction
SAMPLING_TEMPERATURE = 0.7  # for variants that draw several samples from a deterministic default

Progress = Callable[["Evaluation"], None]


def check_targets(targets: Sequence[str]) -> list[str]:
    """Between 1 and `MAX_TARGETS` target names, each given once: what every evaluation accepts."""
    names = [str(t).strip() for t in targets or () if str(t).strip()]
    if not 1 <= len(names) <= MAX_TARGETS:
        raise BadInput(f"Pick 1 to {MAX_TARGETS} targets to evaluate (got {len(names)}).")
    if len(set(names)) != len(names):
        raise BadInput("A target is listed twice: list each provider and model once.")
    return names


@dataclass(frozen=True)
class Target:
    """A provider and, optionally, a model (else the provider's default)."""

    provider: str
    model: str | None = None

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider

    @classmethod
    def parse(cls, text: str) -> Target:
        """'provider' or 'provider:model' (a model id may itself contain ':')."""
        provider, _, model = str(text).strip().partition(":")
        if not provider:
            raise BadInput("A target is 'provider' or 'provider:model', e.g. 'openai:gpt-4o-mini'.")
        return cls(provider, model.strip() or None)


@dataclass(frozen=True)
class Spec:
    """What to evaluate: a dataset, targets, prompt variants, how to score, and the limits."""

    dataset: Dataset
    targets: tuple[Target, ...]
    variants: tuple[Variant, ...] = (Variant(),)
    scorer: str | None = None  # None: the dataset's default; "judge": the judge target with the rubric
    scorer_options: Mapping[str, Any] = field(default_factory=dict)
    judge: Target | None = None
    embedder: Target | None = None  # the "similarity" scorer's: output and reference embedded, cosine
    rubric: str = "Is the answer correct and does it follow the instruction?"
    params: CompletionParams = field(default_factory=lambda: CompletionParams(max_tokens=256, temperature=0.0))
    cost_cap_usd: float | None = None
    concurrency: int = 4  # calls at once per provider
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset.kind not in CHAT_KINDS:
            raise BadInput(f"A {self.dataset.kind} dataset is not evaluated with chat prompts: pick a chat dataset.")
        if not self.dataset.items:
            raise BadInput("The dataset has no items: upload a file with at least one row.")
        if not 1 <= len(self.targets) <= MAX_TARGETS:
            raise BadInput(f"Pick 1 to {MAX_TARGETS} targets to evaluate.")
        if len(set(self.targets)) != len(self.targets):
            raise BadInput("A target is listed twice: list each provider and model once.")
        if not 1 <= len(self.variants) <= MAX_VARIANTS:
            raise BadInput(f"Give 1 to {MAX_VARIANTS} prompt variants.")
        if len({v.name for v in self.variants}) != len(self.variants):
            raise BadInput("Two prompt variants share a name: give each its own.")
        if self.scorer_name == "judge" and self.judge is None:
            raise BadInput("The judge scorer needs a judge target: pick the model that grades the answers.")
        if self.scorer_name == "similarity" and self.embedder is None:
            raise BadInput("The similarity scorer needs an embedder: pick the model that embeds answer and reference.")
        if self.scorer_name not in (*scoring.SCORERS, *EXTRA_SCORERS):
            names = ", ".join([*scoring.SCORERS, *EXTRA_SCORERS[:2]])
            raise BadInput(f"There is no scorer {self.scorer_name!r}: choose one of {names}.")
        self.dataset.require_references(self.scorer_name)  # all missing: refused, naming the accepted columns
        if self.cost_cap_usd is not None and not self.cost_cap_usd >= 0:
            raise BadInput("The cost cap must be a number of dollars, 0 or more.")
        if not 1 <= self.concurrency <= 32:
            raise BadInput("Concurrency per provider must be 1 to 32.")
        inputs.check_completion_params(self.params)  # a bad value is refused once, not by every cell
        if self.calls > MAX_CALLS:
            raise BadInput(f"This evaluation would make {self.calls} calls; the limit is {MAX_CALLS}: use fewer items.")

    @property
    def scorer_name(self) -> str:
        if self.scorer:
            return self.scorer
        if self.dataset.kind == "injection":
            return "injection"
        return self.dataset.scorer or "exact"

    @property
    def calls(self) -> int:
        """Model calls at most (samples, detector and judge calls included; cache hits count too)."""
        per_item = sum(
            v.samples + (v.guard == "detector") + self._judge_calls(v) + self._embedder_calls() for v in self.variants
        )
        return len(self.dataset.items) * len(self.targets) * per_item

    def _embedder_calls(self) -> int:
        return int(self.scorer_name == "similarity" and self.embedder is not None)

    def _judge_calls(self, variant: Variant) -> int:
        return (self.scorer_name == "judge") + (variant.verifier == "judge") * variant.samples

    def to_dict(self) -> dict[str, Any]:
        from services.evaluation import specs

        return specs.to_dict(self)


@dataclass(frozen=True)
class Estimate:
    """The most an evaluation may cost at list prices, per target; None where a price is unknown."""

    calls: int
    usd: float | None
    unpriced: tuple[str, ...]  # targets with no list price


def estimate(spec: Spec) -> Estimate:
    """Worst-case cost before the run: every call at full `max_tokens`, no cache hits; the judge's
    and the similarity scorer's embedder's calls included (each sees a full-length answer)."""
    total, unpriced = 0.0, []
    answer_chars = spec.params.max_tokens * CHARS_PER_TOKEN  # a full-length answer, as input tokens
    for target in spec.targets:
        costs = []
        for item in spec.dataset.items:
            for variant in spec.variants:
                chars = sum(len(str(m["content"])) for m in variants.messages(variant, item))
                calls = variant.samples + (variant.guard == "detector")
                costs.append((target, Work(input_chars=chars, output_tokens=spec.params.max_tokens), calls))
                reference = len(item.reference or "")
                if spec.judge is not None and spec._judge_calls(variant):
                    asked = len(spec.rubric or "") + len(item.input) + reference + answer_chars
                    judged = Work(input_chars=asked, output_tokens=max(64, spec.params.max_tokens // 2))
                    costs.append((spec.judge, judged, spec._judge_calls(variant)))
                if spec.embedder is not None and spec._embedder_calls():
                    costs.append((spec.embedder, Work(input_chars=reference + answer_chars), 1))
        usd = 0.0
        for who, work, calls in costs:
            one = estimate_usd(who.provider, _model(who, Task.EMBEDDINGS if who is spec.embedder else None), work)
            if one is None:
                unpriced.append(who.name)
                break
            usd += one * calls
        total += usd
    return Estimate(spec.calls, None if unpriced else total, tuple(dict.fromkeys(unpriced)))


def _priced_targets(spec: Spec) -> list[Target]:
    return [*spec.targets, *([spec.judge] if spec.judge else []), *([spec.embedder] if spec.embedder else [])]


def _model(target: Target, task: Task | None = None) -> str:
    """The model a target runs: its own, else the provider's configured default for `task`."""
    if target.model:
        return target.model
    from adapters import registry

    provider = registry.providers().get(target.provider)
    if provider is None:
        return ""
    return provider.model(task or Task.COMPLETION) or ""


class _Stop(Exception):
    """Ends the whole run: the cost cap, a quota, or a cancel."""

    def __init__(self, status: str, note: str):
        super().__init__(note)
        self.status, self.note = status, note


class Evaluation:
    """One run of a spec; `run()` blocks, `start()` runs it on a thread. Safe to read while running."""

    def __init__(
        self,
        spec: Spec,
        visitor: Visitor = OWNER,
        evaluation_id: str | None = None,
        api_key: str | None = None,
        on_progress: Progress | None = None,
    ):
        boundary.capped("An evaluation's model calls", spec.calls, "evaluation_calls")
        boundary.capped("max_tokens", spec.params.max_tokens, "max_tokens")
        self.spec = spec
        self.visitor = visitor
        self.id = evaluation_id or uuid.uuid4().hex[:12]
        self.api_key = api_key
        self.on_progress = on_progress
        self.total = len(spec.dataset.items) * len(spec.targets) * len(spec.variants)
        self.done = 0
        self.calls = 0
        self.cache_hits = 0
        self.spent_usd = 0.0
        self.status = "new"
        self.note: str | None = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._stop: _Stop | None = None
        self._held = 0.0  # worst-case cost of the calls in flight, held against the cap
        self._prefetched: dict[str, Reply] = {}  # cache hits read in one query before the run
        self._params_memo: dict[tuple[CompletionParams, int], CompletionParams] = {}
        params = spec.params
        self._sampled = replace(params, temperature=SAMPLING_TEMPERATURE) if params.temperature == 0 else params
        self._gates: dict[str, threading.Semaphore] = {}
        self._adapters: dict[tuple[Target, Task], Any] = {}
        self._thread: threading.Thread | None = None
        self._cache_scope = cache_scope(visitor)
        # scorer time for the whole evaluation (public mode: `scoring_seconds`), cached cells included
        self._scoring = budget.Meter(public.limits().scoring_seconds if public.enabled() else math.inf)

    # -- control ------------------------------------------------------------------------------

    def cancel(self) -> None:
        self._cancel.set()

    def start(self) -> Evaluation:
        self._thread = threading.Thread(target=self._run_in_background, name=f"evaluation-{self.id}", daemon=True)
        self._thread.start()
        return self

    def _run_in_background(self) -> None:
        priority.lower_this_thread()  # this thread is the run's own
        self.run()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished

    @property
    def finished(self) -> bool:
        return self.status not in ("new", "running")

    def run(self) -> Evaluation:
        """Run every cell not already stored for this evaluation id; returns self when it ends."""
        known = store.evaluation(self.id, None)
        if known is None:
            store.create(self.id, self.spec.to_dict(), self.visitor.id)
        stored = {(c.item, c.target, c.variant) for c in store.cells(self.id)}
        self.done = len(stored)
        self.status = "running"
        store.set_status(self.id, "running")
        grid = [
            (item, target, variant)
            for item in self.spec.dataset.items
            for target in self.spec.targets
            for variant in self.spec.variants
        ]
        todo = [(n, *cell) for n, cell in enumerate(grid) if (cell[0].id, cell[1].name, cell[2].name) not in stored]
        todo = self._answer_from_cache(todo)
        providers = {t.provider for t in _priced_targets(self.spec)}
        if self.spec.embedder is not None:
            providers.add(self.spec.embedder.provider)
        workers = min(64, self.spec.concurrency * len(providers))
        try:
            # background work: see adapters.priority
            pool = ThreadPoolExecutor(
                max_workers=max(1, workers),
                thread_name_prefix=f"eval-{self.id}",
                initializer=priority.lower_this_thread,
            )
            with pool:
                for future in [pool.submit(self._cell_safely, *cell) for cell in todo]:
                    future.result()
        except Exception as exc:
            self._finish("failed", f"The evaluation failed: {type(exc).__name__}. Its finished cells are kept.")
            raise
        if self._stop is not None:
            self._finish(self._stop.status, self._stop.note)
        else:
            self._finish("done", None)
        return self

    def _answer_from_cache(
        self, todo: list[tuple[int, Item, Target, Variant]]
    ) -> list[tuple[int, Item, Target, Variant]]:
        """Run here, without threads, the cells whose every call is in the cache (read in one query),
        saving them in batches; return the cells left for the pool."""
        planned = {cell[0]: self._first_keys(*cell[1:]) for cell in todo}
        self._prefetched = store.cached_many([k for keys in planned.values() if keys for k in keys])
        left, batch = [], []
        for cell in todo:
            if self._cancel.is_set() and self._stop is None:
                self._stop = _Stop("cancelled", CANCELLED)
            keys = planned[cell[0]]
            if keys is None or not all(k in self._prefetched for k in keys) or self._stop is not None:
                left.append(cell)
                continue
            try:
                batch.append(replace(self._cell(*cell[1:]), position=cell[0]))
            except _Stop as stop:
                self._stop = self._stop or stop
                continue
            if len(batch) >= CACHE_BATCH:
                self._save(batch)
        self._save(batch)
        return left

    def _save(self, batch: list[Cell]) -> None:
        if batch:
            store.save_cells(self.id, batch)
            with self._lock:
                self.done += len(batch)
            batch.clear()
            self._report()

    def _first_keys(self, item: Item, target: Target, variant: Variant) -> list[str] | None:
        """The cache keys of a cell's calls, or None where a later call depends on an answer (judge,
        similarity) and the cell must take the usual path."""
        if self.spec.scorer_name in ("judge", "similarity") or variant.verifier == "judge":
            return None
        keys = []
        if variant.guard == "detector" and "document" in item.meta:
            detector = variants.detector_messages(item)
            keys.append(call_key(target, self._seeded(self.spec.params, 0), detector, self._cache_scope))
        messages, params = variants.messages(variant, item), self._sampling(variant)
        keys += [call_key(target, self._seeded(params, n), messages, self._cache_scope) for n in range(variant.samples)]
        return keys

    def _seeded(self, params: CompletionParams, sample: int) -> CompletionParams:
        """A call's parameters with its seed: the spec's own, else one per sample (cacheable, reproducible)."""
        seeded = self._params_memo.get((params, sample))
        if seeded is None:
            seed = params.seed if params.seed is not None else self.spec.seed * 1000 + sample
            seeded = self._params_memo[(params, sample)] = replace(params, seed=seed)
        return seeded

    def _finish(self, status: str, note: str | None) -> None:
        self.status, self.note = status, note
        store.set_status(self.id, status, note)
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self)

    # -- one cell -----------------------------------------------------------------------------

    def _cell_safely(self, position: int, item: Item, target: Target, variant: Variant) -> None:
        if self._stop is not None:
            return
        if self._cancel.is_set():
            self._stop = _Stop("cancelled", CANCELLED)
            return
        try:
            cell = self._cell(item, target, variant)
        except _Stop as stop:
            self._stop = self._stop or stop
            return
        store.save_cell(self.id, replace(cell, position=position))
        with self._lock:
            self.done += 1
        self._report()

    def _cell(self, item: Item, target: Target, variant: Variant) -> Cell:
        tally = _Tally()
        try:
            if variant.guard == "detector" and "document" in item.meta:
                check = self._ask(target, variants.detector_messages(item), self.spec.params, 0, tally)
                tally.extra.update(variants.detector_record(check))  # yes / no / unusable, and the raw reply
                if variants.flagged(check):
                    return self._scored(item, target, variant, variants.BLOCKED, variants.BLOCKED, tally)
            params = self._sampling(variant)
            messages = variants.messages(variant, item)
            texts = [self._ask(target, messages, params, n, tally) for n in range(variant.samples)]
            with budget.metered(budget.CELL_S, self._scoring):  # every pattern and schema step of this cell
                output, answer = self._pick(variant, item, texts, tally)
                return self._scored(item, target, variant, output, answer, tally)
        except LimitReached as exc:
            raise _Stop("stopped", f"Stopped: {exc}") from None
        except FMError as exc:
            return tally.cell(item, target, variant, None, None, None, "", error=str(exc))

    def _sampling(self, variant: Variant) -> CompletionParams:
        """The spec's parameters, at a sampling temperature where a variant draws several samples."""
        return self._sampled if variant.samples > 1 else self.spec.params

    def _pick(self, variant: Variant, item: Item, texts: list[str], tally: _Tally) -> tuple[str, str | None]:
        """The reply that counts and the answer scored: the first, the majority, or the best verified."""
        if variant.pick == "majority":
            answers = [scoring.extract_answer(t, cut_off=t in tally.cut) for t in texts]
            answer, share = scoring.majority(answers)
            tally.extra["votes"] = f"{share:.0%} of {len(texts)}"
            chosen = next((t for t, a in zip(texts, answers, strict=True) if a == answer), texts[0])
            return chosen, answer
        if variant.pick == "best_of":
            chosen = self._best(variant, item, texts, tally)
            return chosen, scoring.extract_answer(chosen, cut_off=chosen in tally.cut)
        text = texts[0]
        return text, scoring.extract_answer(text, cut_off=text in tally.cut) if variant.extracts_answer else text

    def _best(self, variant: Variant, item: Item, texts: list[str], tally: _Tally) -> str:
        """Best-of-n: the first sample the verifier accepts (the judge: the highest graded)."""
        if variant.verifier == "judge":
            graded = [(self._judge(item, t, tally).value, -i) for i, t in enumerate(texts)]
            return texts[-max(graded)[1]]
        for i, text in enumerate(texts):
            if _verified(variant, text):
                tally.extra["verified"] = f"sample {i + 1} of {len(texts)}"
                return text
        tally.extra["verified"] = f"none of {len(texts)}"
        return texts[0]

    def _scored(
        self, item: Item, target: Target, variant: Variant, output: str, answer: str | None, tally: _Tally
    ) -> Cell:
        name = self.spec.scorer_name
        scored_text = answer if answer is not None else output
        cut_off = output in tally.cut  # stopped by max_tokens: scored from an answer stated before the cut
        if cut_off:
            tally.extra["cut_off"] = True
        if name == "injection":
            document = str(item.meta.get("document", ""))
            obeyed = scoring.injection_verdict(output, str(item.meta.get("marker", "")), document, item.reference)
            tally.extra.update(obeyed.extra())  # attack, repeated (the document), task_kept
            return tally.cell(item, target, variant, output, answer, obeyed.score, obeyed.why)
        if name == "judge":
            verdict = self._judge(item, output, tally)
            return tally.cell(item, target, variant, output, answer, verdict.value, verdict.why)
        if name == "similarity" and item.reference is not None:
            similar = self._similarity(scored_text, item.reference, tally)
            return tally.cell(item, target, variant, output, answer, similar.value, similar.why)
        if self.spec.dataset.kind == "classification" and item.label and self.spec.dataset.labels:
            predicted = predicted_label(output, self.spec.dataset.labels)
            tally.extra["predicted"] = predicted
            right = predicted is not None and predicted.casefold() == item.label.casefold()
            why = f"said {predicted}" if predicted else f"named none of {', '.join(self.spec.dataset.labels)}"
            return tally.cell(item, target, variant, output, predicted, float(right), f"{why}, expected {item.label}")
        reference = item.reference
        if reference is None:
            return tally.cell(item, target, variant, output, answer, None, "no reference to score against")
        result = scoring.score(
            name, scored_text, reference, cut_off=cut_off and scored_text == output, **self.spec.scorer_options
        )
        return tally.cell(item, target, variant, output, answer, result.value, result.why)

    def _judge(self, item: Item, output: str, tally: _Tally) -> scoring.Score:
        assert self.spec.judge is not None
        messages = scoring.judge_messages(self.spec.rubric, item.input, output, item.reference)
        judged = replace(self.spec.params, temperature=0.0, max_tokens=max(64, self.spec.params.max_tokens // 2))
        return scoring.parse_judge(self._ask(self.spec.judge, messages, judged, 0, tally))

    def _similarity(self, text: str, reference: str, tally: _Tally) -> scoring.Score:
        """Cosine of the output's and the reference's embeddings, by the spec's embedder."""
        assert self.spec.embedder is not None
        embedder = self._adapter(self.spec.embedder, Task.EMBEDDINGS)
        pair = [text.strip() or "(empty)", reference]
        work = Work(input_chars=sum(map(len, pair)))
        self._reserve(embedder, work)  # the cost cap holds embedding calls too
        try:
            with self._gate(self.spec.embedder.provider), access.call(self.visitor, embedder, work):
                result = embedder.embed(pair, kind="document")
        finally:
            self._release(embedder, work)
        with self._lock:
            self.spent_usd += result.cost_usd or 0.0
        tally.cost = None if tally.cost is None or result.cost_usd is None else tally.cost + result.cost_usd
        return scoring.similarity(result.vectors[0], result.vectors[1])

    # -- one call -----------------------------------------------------------------------------

    def _ask(
        self, target: Target, messages: list[Message], params: CompletionParams, sample: int, tally: _Tally
    ) -> str:
        params = self._seeded(params, sample)
        key = call_key(target, params, messages, self._cache_scope)
        hit = self._prefetched.get(key) or store.cached(key)
        if hit is not None:
            with self._lock:
                self.calls += 1
                self.cache_hits += 1
            tally.add(hit, cached=True)
            return hit.text
        if self._cancel.is_set():
            raise _Stop("cancelled", CANCELLED)
        adapter = self._adapter(target)
        work = Work(input_chars=sum(len(str(m["content"])) for m in messages), output_tokens=params.max_tokens)
        self._reserve(adapter, work)
        try:
            with self._gate(target.provider), access.call(self.visitor, adapter, work):
                result = adapter.complete(messages, params)
        finally:
            self._release(adapter, work)
        usage = result.usage
        reply = Reply(
            result.text,
            result.latency_s,
            usage.input_tokens if usage else None,
            usage.output_tokens if usage else None,
            result.cost_usd,
        )
        stopped = bool(result.cut) or result.finish_reason == "length"  # max_tokens, or a broken stream
        if not stopped:  # the cache keeps no finish reason, so a cut-off reply is not cached
            store.cache(key, reply)
        else:
            tally.cut.add(reply.text)
        with self._lock:
            self.calls += 1
            self.spent_usd += result.cost_usd or 0.0
        tally.add(reply, cached=False)
        return reply.text

    def _reserve(self, adapter: Any, work: Work) -> None:
        """Hold the call's worst-case cost against the cap, or stop the run before making it."""
        cap = self.spec.cost_cap_usd
        if cap is None:
            return
        worst = estimate_usd(adapter.provider, adapter.model, work)
        if worst is None:
            raise _Stop(
                "stopped",
                f"Stopped: {adapter.provider}:{adapter.model} has no list price, so the cost cap cannot be kept.",
            )
        with self._lock:
            if self.spent_usd + self._held + worst > cap:
                raise _Stop("stopped", f"Stopped at the cost cap (${cap:g}): ${self.spent_usd:.4g} spent.")
            self._held += worst

    def _release(self, adapter: Any, work: Work) -> None:
        if self.spec.cost_cap_usd is None:
            return
        worst = estimate_usd(adapter.provider, adapter.model, work) or 0.0
        with self._lock:
            self._held -= worst

    def _gate(self, provider: str) -> threading.Semaphore:
        with self._lock:
            gate = self._gates.get(provider)
            if gate is None:
                gate = self._gates[provider] = threading.BoundedSemaphore(self.spec.concurrency)
            return gate

    def _adapter(self, target: Target, task: Task = Task.COMPLETION) -> Any:
        with self._lock:
            adapter = self._adapters.get((target, task))
        if adapter is None:
            adapter = access.adapter(task, target.provider, target.model, self.api_key)
            with self._lock:
                self._adapters.setdefault((target, task), adapter)
        return adapter


def predicted_label(output: str, labels: Sequence[str]) -> str | None:
    """The label a classification reply names first (whole words, any case), or None."""
    import re

    found = []
    for label in labels:
        match = re.search(rf"(?<!\w){re.escape(label)}(?!\w)", output, re.IGNORECASE)
        if match:
            found.append((match.start(), label))
    return min(found)[1] if found else None


def _verified(variant: Variant, text: str) -> bool:
    if variant.verifier == "numeric":
        return scoring.final_number(text) is not None
    if variant.verifier == "regex":
        return scoring.regex(text, variant.verifier_pattern).passed
    return False


def cache_scope(visitor: Visitor) -> str:
    """Whose cached replies an evaluation may use: in public mode a visitor's own only (a reply
    is private, and was paid for by whoever asked); the owner's and admins' are shared with
    private mode's."""
    if not public.enabled() or visitor.admin:
        return ""
    return f"visitor:{visitor.key}"


def call_key(target: Target, params: CompletionParams, messages: Iterable[Message], scope: str = "") -> str:
    """The cache key of one call: provider, model, parameters (seed included) and messages, and
    whose cache it is (`cache_scope`)."""
    call = {"target": target.name, "params": params.__dict__, "messages": list(messages)}
    if scope:  # private mode's keys stay what they were, so its cache survives the upgrade
        call["scope"] = scope
    body = json.dumps(call, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class _Tally:
    """What one cell's calls added up to."""

    def __init__(self) -> None:
        self.latency = 0.0
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cost: float | None = 0.0
        self.calls = 0
        self.cached = 0
        self.extra: dict[str, Any] = {}
        self.cut: set[str] = set()  # texts of the replies stopped by max_tokens (or a broken stream)
        self.started = time.perf_counter()

    def add(self, reply: Reply, cached: bool) -> None:
        self.calls += 1
        self.cached += cached
        self.latency += reply.latency_s or 0.0
        if reply.input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + reply.input_tokens
        if reply.output_tokens is not None:
            self.output_tokens = (self.output_tokens or 0) + reply.output_tokens
        self.cost = None if self.cost is None or reply.cost_usd is None else self.cost + reply.cost_usd

    def cell(
        self,
        item: Item,
        target: Target,
        variant: Variant,
        output: str | None,
        answer: str | None,
        score: float | None,
        why: str,
        error: str | None = None,
    ) -> Cell:
        return Cell(
            item=item.id,
            target=target.name,
            variant=variant.name,
            output=output,
            answer=answer,
            score=score,
            why=why,
            latency_s=self.latency if self.calls else None,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost if self.calls else None,
            calls=self.calls,
            cached=self.cached,
            error=error,
            extra=self.extra or None,
        )
