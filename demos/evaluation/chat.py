"""Evaluate, chat: many inputs x prompt variants x models, scored the same way, side by side.

API: `/evaluate(spec)` takes the JSON spec of `services.evaluation.specs` and returns the matrix
once the run ends; `/evaluate_estimate(spec)` returns the call count and worst-case cost first.
The page runs the same spec with a progress bar and a cancel button, then shows the matrix, a
chart of score against cost, the per-item drill-down, the exports and the run as a program.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from adapters import registry
from adapters.errors import BadInput
from adapters.types import Task
from demos.widgets import exports
from demos.widgets.report import shows_errors
from services import visitors
from services.evaluation import datasets, engine, report, specs, store
from services.evaluation.engine import Evaluation

POLL_S = 0.5
CHAT_SETS = [name for name in datasets.BUILTIN if datasets.builtin(name).kind in engine.CHAT_KINDS]
UPLOAD = "(uploaded file)"
SENTIMENT = "Is the sentiment of this text positive, negative or neutral? Answer with one word.\n\n{input}"
PRESETS: dict[str, list[dict[str, Any]]] = {
    "Direct vs chain of thought": [{"name": "direct"}, {"name": "step by step", "chain_of_thought": True}],
    "Self-consistency (n=5) vs one sample": [
        {"name": "one sample", "chain_of_thought": True},
        {"name": "majority of 5", "chain_of_thought": True, "samples": 5, "pick": "majority"},
    ],
    "Best of 3 with a numeric verifier": [
        {"name": "one sample"},
        {"name": "best of 3", "samples": 3, "pick": "best_of", "verifier": "numeric"},
    ],
    "Sentiment: instruction vs few-shot": [
        {"name": "instruction", "template": SENTIMENT},
        {
            "name": "few-shot",
            "template": SENTIMENT,
            "examples": [
                [SENTIMENT.replace("{input}", "I love this phone."), "positive"],
                [SENTIMENT.replace("{input}", "The parcel arrived on Tuesday."), "neutral"],
            ],
        },
    ],
    "Injection guards": [
        {"name": "no guard"},
        {"name": "delimited", "guard": "delimit"},
        {"name": "sandwich", "guard": "sandwich"},
        {"name": "detector", "guard": "detector"},
    ],
    "Few-shot": [
        {"name": "zero-shot"},
        {
            "name": "two examples",
            "examples": [["What is 2 + 3?", "5"], ["Anna has 4 apples and eats 1. How many are left?", "3"]],
        },
    ],
}
FIRST_PRESET = next(iter(PRESETS))
SCORERS = ["(dataset default)", "exact", "contains", "regex", "numeric", "json_schema", "judge", "similarity"]


def spec_from_form(
    dataset: str, upload: str | None, targets: str, variants_json: str, scorer: str, judge: str, rubric: str,
    max_tokens: float, temperature: float, cost_cap: float | None, concurrency: float, embedder: str = "",
) -> engine.Spec:  # fmt: skip
    """The spec the form describes; anything malformed raises BadInput naming the field."""
    try:
        variants = json.loads(variants_json or "[]")
    except json.JSONDecodeError as err:
        raise BadInput(f"The variants are not valid JSON (line {err.lineno}): fix them or pick a preset.") from None
    return specs.from_dict(
        {
            "dataset": _dataset_json(dataset, upload),
            "targets": [line.strip() for line in str(targets or "").replace(",", "\n").splitlines() if line.strip()],
            "variants": variants,
            "scorer": None if scorer in (None, "", SCORERS[0]) else scorer,
            "judge": (judge or "").strip() or None,
            "embedder": (embedder or "").strip() or None,
            "rubric": rubric or None,
            "params": {"max_tokens": max_tokens, "temperature": temperature},
            "cost_cap_usd": cost_cap if cost_cap not in (None, 0) else None,
            "concurrency": concurrency,
        }
    )


def _dataset_json(name: str, upload: str | None) -> Any:
    if name != UPLOAD:
        return name
    if not upload:
        raise BadInput("Upload a CSV or JSONL file, or pick a built-in dataset.")
    path = Path(str(upload))
    with path.open("rb") as f:
        data = f.read(datasets.MAX_UPLOAD_BYTES + 1)
    uploaded = datasets.from_upload(path.name, data)
    return specs.dataset_dict(uploaded)


def _estimate_text(spec: engine.Spec) -> str:
    worst = engine.estimate(spec)
    if worst.unpriced:
        cost = f"unknown: no list price for {', '.join(worst.unpriced)}"
    else:
        cost = report.usd(worst.usd) or "$0"
    return f"{worst.calls:,} calls at most (no cache hits, every answer at max tokens); worst-case cost {cost}."


@shows_errors
def estimate(*form):
    """The call count and the worst-case cost of the form's evaluation, before it runs."""
    return _estimate_text(spec_from_form(*form))


@shows_errors
def run(*form, request: gr.Request | None = None, progress=gr.Progress()):  # noqa: B008 - Gradio's progress idiom
    """Run the form's evaluation, streaming progress, then the results."""
    spec = spec_from_form(*form)
    yield from _follow(Evaluation(spec, visitors.current(request)), progress)


@shows_errors
def resume(evaluation_id, request: gr.Request | None = None, progress=gr.Progress()):  # noqa: B008
    """Continue a stopped evaluation of this visitor's: only the cells not yet stored run."""
    visitor = visitors.current(request)
    stored = store.evaluation(str(evaluation_id or "").strip(), None if visitor.admin else visitor.id)
    if stored is None:
        raise BadInput("There is no evaluation of yours with that id: copy it from a run's summary.")
    yield from _follow(Evaluation(specs.from_dict(stored["spec"]), visitor, evaluation_id=stored["id"]), progress)


def _follow(evaluation: Evaluation, progress: Any):
    """Start `evaluation`, yield its progress every `POLL_S`, then its results; stop it if the page goes."""
    header = _estimate_text(evaluation.spec)
    evaluation.start()
    try:
        while not evaluation.wait(POLL_S):
            progress((evaluation.done, evaluation.total), desc="cells")
            yield f"{header}\n\nRunning {evaluation.id}: {evaluation.done}/{evaluation.total} cells.", *[gr.skip()] * 5
        yield _results(evaluation, header)
    finally:
        evaluation.cancel()  # the page stopped listening (Cancel, or closed): stop between calls


def _results(evaluation: Evaluation, header: str) -> tuple:
    cells = store.cells(evaluation.id)
    rows = report.matrix(cells, seed=evaluation.spec.seed)
    folder = exports.new_folder()
    csv_path, jsonl_path = folder / f"evaluation-{evaluation.id}.csv", folder / f"evaluation-{evaluation.id}.jsonl"
    csv_path.write_text(report.to_csv(cells), encoding="utf-8")
    jsonl_path.write_text(report.to_jsonl(cells), encoding="utf-8")
    summary_tables = _confusion_markdown(evaluation.spec, cells)
    status = {"done": "Done", "cancelled": "Cancelled", "stopped": "Stopped", "failed": "Failed"}[evaluation.status]
    summary = (
        f"{header}\n\n**{status}** ({evaluation.id}): {evaluation.done}/{evaluation.total} cells, "
        f"{evaluation.calls} calls of which {evaluation.cache_hits} from the cache, "
        f"{report.usd(evaluation.spent_usd) or '$0'} spent. {evaluation.note or ''}{summary_tables}"
    )
    return (
        summary,
        report.table(rows),
        _chart(rows),
        report.drill_down(cells),
        [str(csv_path), str(jsonl_path)],
        program(evaluation.spec),
    )


def _confusion_markdown(spec: engine.Spec, cells: list) -> str:
    """Confusion tables (rows: actual label, columns: what the model said) for classification sets."""
    data = spec.dataset
    if data.kind != "classification" or not data.labels:
        return ""
    actual = {i.id: i.label for i in data.items if i.label}
    parts = []
    for (variant, target), rows in report.confusion(cells, data.labels, actual).items():
        header = "| actual \\ said | " + " | ".join([*data.labels, "none"]) + " |"
        rule = "|---" * (len(data.labels) + 2) + "|"
        body = "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in rows)
        parts.append(f"\n\n**{variant} · {target}**\n\n{header}\n{rule}\n{body}")
    return "".join(parts)


def _chart(rows: list[report.Row]) -> Any:
    import pandas as pd

    points = [
        {"cost $": r.cost_usd or 0.0, "score": r.score, "target": r.target, "variant": r.variant} for r in rows if r.n
    ]
    return pd.DataFrame(points, columns=["cost $", "score", "target", "variant"])


def program(spec: engine.Spec) -> str:
    """The evaluation as a Python program that runs it again from a checkout of this project."""
    body = json.dumps(specs.to_dict(spec), indent=2)
    return (
        "# The same evaluation from a script or CI, in a checkout of fm-gallery:\n"
        "#   python -m services.evaluation spec.json --min-score 0.8\n"
        "from services.evaluation import engine, report, specs, store\n\n"
        f"spec = specs.from_dict({body})\n"
        "evaluation = engine.Evaluation(spec).run()\n"
        "for row in report.table(report.matrix(store.cells(evaluation.id))):\n"
        "    print(row)\n"
    )


@shows_errors
def evaluate_api(spec_json: str, request: gr.Request | None = None) -> dict:
    """Run a JSON spec to the end; returns its id, status and matrix rows (one dict per row)."""
    spec = specs.from_dict(_json(spec_json))
    done = Evaluation(spec, visitors.current(request)).run()
    rows = report.table(report.matrix(store.cells(done.id), seed=spec.seed))
    return {
        "id": done.id,
        "status": done.status,
        "note": done.note,
        "cache_hits": done.cache_hits,
        "calls": done.calls,
        "rows": [dict(zip(report.MATRIX_COLUMNS, row, strict=True)) for row in rows],
    }


@shows_errors
def estimate_api(spec_json: str) -> dict:
    """Calls and worst-case dollars of a JSON spec, before it runs (None where a price is unknown)."""
    worst = engine.estimate(specs.from_dict(_json(spec_json)))
    return {"calls": worst.calls, "usd": worst.usd, "unpriced": list(worst.unpriced)}


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        raise BadInput("Send the spec as a JSON string.")
    if len(text) > 2 * datasets.MAX_UPLOAD_BYTES:
        raise BadInput("The spec is too large: upload fewer items.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInput(f"The spec is not valid JSON (line {err.lineno}, column {err.colno}).") from None


def _default_targets() -> str:
    """The usable chat providers when the page is built (a value, not a callable run at every page load)."""
    usable = [o.provider for o in registry.options(Task.COMPLETION) if o.usable]
    return "\n".join(usable[:2]) or "local"


def layout() -> None:
    """The chat section's components and events, inside the open Blocks."""
    gr.Markdown(
        "Score many inputs the same way: each **target** (a provider, or `provider:model`) answers every "
        "item under every **prompt variant**, and the matrix shows score with a 95% interval, latency, "
        "tokens and cost. Identical calls come from the cache; a stopped run resumes where it stopped."
    )
    with gr.Row():
        with gr.Column():
            dataset = gr.Dropdown([*CHAT_SETS, UPLOAD], value=CHAT_SETS[0], label="Dataset")
            description = gr.Markdown(datasets.BUILTIN.get(CHAT_SETS[0], ""))
            upload = gr.File(
                label="…or a CSV / JSONL file (input, reference columns)",
                file_types=[".csv", ".jsonl", ".json"],
                type="filepath",
            )
            targets = gr.Textbox(
                label="Targets, one per line: provider or provider:model", lines=3, value=_default_targets()
            )
        with gr.Column():
            preset = gr.Dropdown(list(PRESETS), value=FIRST_PRESET, label="Prompt variants preset")
            variants = gr.Code(json.dumps(PRESETS[FIRST_PRESET], indent=2), language="json", label="Variants (JSON)")
        with gr.Column():
            scorer = gr.Dropdown(SCORERS, value=SCORERS[0], label="Scorer")
            judge = gr.Textbox(
                label="Judge target (for the judge scorer or verifier)", placeholder="openai:gpt-4o-mini"
            )
            rubric = gr.Textbox(label="Judge rubric", value="Is the answer correct and does it follow the instruction?")
            embedder = gr.Textbox(label="Embedder (similarity scorer)", placeholder="local")
            with gr.Row():
                max_tokens = gr.Number(256, label="Max tokens", precision=0)
                temperature = gr.Number(0.0, label="Temperature")
            with gr.Row():
                cost_cap = gr.Number(None, label="Cost cap ($, blank: none)")
                concurrency = gr.Number(4, label="Calls at once per provider", precision=0)
    with gr.Row():
        estimate_button = gr.Button("Estimate cost")
        run_button = gr.Button("Run", variant="primary")
        cancel_button = gr.Button("Cancel", variant="stop")
    status = gr.Markdown()
    matrix = gr.Dataframe(headers=report.MATRIX_COLUMNS, label="Results", interactive=False, wrap=True)
    chart = gr.ScatterPlot(x="cost $", y="score", color="target", label="Score against cost")
    with gr.Accordion("Per item", open=False):
        drill = gr.Dataframe(headers=report.DRILL_COLUMNS, interactive=False, wrap=True)
    files = gr.File(label="Export (CSV, JSONL)", file_count="multiple", interactive=False)
    code = gr.Code(language="python", label="Reproduce in Python", interactive=False)

    form = [
        *(dataset, upload, targets, variants, scorer, judge, rubric),
        *(max_tokens, temperature, cost_cap, concurrency, embedder),
    ]
    dataset.change(
        lambda name: datasets.BUILTIN.get(name, "Your file."), dataset, description, api_visibility="private"
    )
    preset.change(lambda name: json.dumps(PRESETS.get(name, []), indent=2), preset, variants, api_visibility="private")
    estimate_button.click(estimate, form, status, api_visibility="private")
    running = run_button.click(
        run, form, [status, matrix, chart, drill, files, code], api_visibility="private", concurrency_limit=4
    )
    with gr.Row():
        resume_id = gr.Textbox(label="Resume a stopped evaluation (its id)", scale=3)
        resume_button = gr.Button("Resume", scale=1)
    resuming = resume_button.click(
        resume, resume_id, [status, matrix, chart, drill, files, code], api_visibility="private", concurrency_limit=4
    )
    cancel_button.click(None, cancels=[running, resuming])
    gr.api(evaluate_api, api_name="evaluate", concurrency_limit=2)
    gr.api(estimate_api, api_name="evaluate_estimate")
