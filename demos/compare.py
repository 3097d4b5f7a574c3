"""Compare: one input, 2-6 targets side by side, for every task; blind votes build a leaderboard.

Targets are "provider" or "provider:model" (two models of one vendor are fine). They run at once,
each with its own deadline, so a comparison takes about as long as its slowest target; chat
streams into every column together. In blind mode the columns are "Model A", "Model B", ... in a
random order, and nothing the page or the API receives names them until the vote.

API:
- `/compare(task, targets, prompt, image, labels, corpus_text, top_k, max_tokens, temperature,
  steps, width, height, seed, blind, api_key, key_provider, edit_mode, strength)` (`image`: `handle_file(path)` or None;
  image generation with an image and `edit_mode` "image-to-image", "outpaint" or "upscale" compares edits of it;
  `targets`: 2-6 "provider" or "provider:model"; `api_key` goes only to `key_provider`'s targets)
  returns a summary per target:
  `{"comparison_id", "task", "blind", "names_hidden", "wall_s", "targets": [{"name", "output",
  "latency_s", "ttft_s", "input_tokens", "output_tokens", "cost_usd", "note", "snippet", "error"}]}`
  (`output`: text, {label: score}, an image file, or hits; `snippet`: the call as a Python program;
  blind: `name` is "Model A", ... and latency, tokens, cost, notes and snippets are left out until the vote).
- `/vote(comparison_id, choice)` with "A".."F", "tie" or "skip" reveals the names and returns the
  task's leaderboard; `/leaderboard(task)` returns it: a row per target, best Elo first,
  `{"rank", "target", "rating", "votes", "wins", "ties", "losses", "bt rating", "bt 95% low", "bt 95% high"}`
  (`rating`: Elo; `bt ...`: Bradley-Terry fitted to all the task's votes, with its bootstrap 95% interval).
"""

from __future__ import annotations

import atexit
import html
import os
import re
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, cast

import gradio as gr

from adapters import registry
from adapters.types import Completion, Task
from demos.widgets import reproduce, standalone
from demos.widgets.image_upload import ImageUpload
from demos.widgets.report import shows_errors, usd
from services import boundary, public, run_log, visitors
from services import comparisons as cmp
from services.comparisons import COMPARED_EDITS, LETTERS, MAX_TARGETS, Comparison, Form, leaderboard
from services.search import SAMPLE_CORPUS

TAB = cmp.TAB  # the tab's id in the app and in the run log
TITLE = "Compare"
CONCURRENCY = 8  # comparisons at once; each runs up to six targets in its own threads
IMAGE_PREFIX = "fm-gallery-compare-"  # each process hands out generated images from its own folder (`image_dir`)
KEEP_IMAGES = 64
IMAGE_NAME = re.compile(r"[0-9a-f]{24}\.png")  # what `_image_file` names them; nothing else is pruned
HIDDEN_ERROR = "This model failed; the reason is shown after the vote."
HIDDEN_STATS = "answered · time, tokens and cost are shown after the vote"
OUTPUT_KIND = {
    Task.COMPLETION: "text",
    Task.CAPTIONING: "text",
    Task.ZERO_SHOT: "scores",
    Task.IMAGE_GENERATION: "image",
    Task.EMBEDDINGS: "hits",
}
SHOWN_INPUTS = {
    Task.COMPLETION: {"prompt", "completion", "seed"},
    Task.ZERO_SHOT: {"image", "labels"},
    Task.CAPTIONING: {"image", "prompt"},
    Task.IMAGE_GENERATION: {"prompt", "generation", "seed", "image"},  # the image: only to compare edits
    Task.EMBEDDINGS: {"prompt", "corpus"},
}
PROMPT_LABEL = {
    Task.COMPLETION: "Prompt",
    Task.CAPTIONING: "Prompt (optional; vision chat models follow it)",
    Task.IMAGE_GENERATION: "Prompt",
    Task.EMBEDDINGS: "Query",
}
HIT_COLUMNS = ["rank", "score", "passage"]


# --- handlers ------------------------------------------------------------------------------------


def _form(
    prompt, image, labels, corpus_text, top_k, max_tokens, temperature, steps, width, height, seed, edit_mode="",
    strength=0.6,
) -> Form:  # fmt: skip
    return Form(
        edit_mode=str(edit_mode or "") if image is not None else "",
        strength=0.6 if strength is None else strength,
        prompt=prompt or "",
        image=image,
        labels=labels or "",
        corpus_text=corpus_text or "",
        top_k=top_k or 5,
        max_tokens=max_tokens,
        temperature=temperature,
        steps=steps,
        width=width,
        height=height,
        seed=None if seed is None else int(seed),
    )


@shows_errors
def compare_page(
    task,
    targets,
    prompt,
    image,
    labels,
    corpus_text,
    top_k,
    max_tokens,
    temperature,
    steps,
    width,
    height,
    seed,
    blind,
    api_key,
    key_provider,
    edit_mode="",
    strength=0.6,
    request: gr.Request | None = None,
):
    """The page's handler: re-render every column each time text or a result arrives."""
    form = _form(
        prompt, image, labels, corpus_text, top_k, max_tokens, temperature, steps, width, height, seed, edit_mode,
        strength,
    )  # fmt: skip
    visitor = visitors.current(request)
    for comparison in cmp.run(cmp.parse_task(task), targets, form, bool(blind), api_key, key_provider, visitor):
        yield page(comparison)


@shows_errors
def compare(
    task,
    targets,
    prompt,
    image,
    labels,
    corpus_text,
    top_k,
    max_tokens,
    temperature,
    steps,
    width,
    height,
    seed,
    blind,
    api_key,
    key_provider,
    edit_mode="",
    strength=0.6,
    request: gr.Request | None = None,
):
    """Run one input against 2-6 targets at once; returns a JSON summary per target."""
    form = _form(
        prompt, image, labels, corpus_text, top_k, max_tokens, temperature, steps, width, height, seed, edit_mode,
        strength,
    )  # fmt: skip
    comparison = None
    visitor = visitors.current(request)
    for comparison in cmp.run(cmp.parse_task(task), targets, form, bool(blind), api_key, key_provider, visitor):  # noqa: B007 - keeps the last frame
        pass
    assert comparison is not None  # run yields at least its first frame
    return summary(comparison)


@shows_errors
def vote(comparison_id: str, choice: str, request: gr.Request | None = None) -> dict:
    """Vote on a blind comparison ("A".."F", "tie", or "skip" to reveal without voting); reveals the names."""
    comparison, standings = cmp.vote(comparison_id, choice, visitors.current(request))
    return {**summary(comparison), "vote": comparison.vote, "leaderboard": _board_dicts(standings)}


@shows_errors
def leaderboard_api(task: str) -> list[dict]:
    """The task's leaderboard from blind votes: Elo, Bradley-Terry with a 95% interval, and votes per target."""
    return _board_dicts(leaderboard.standings(cmp.parse_task(task)))


def _vote_handler(choice: str):
    """The page's handler for one vote button (the comparison id comes from the session's state)."""

    def handler(comparison_id, request: gr.Request | None = None):
        comparison, standings = cmp.vote(comparison_id, choice, visitors.current(request))
        return [*page(comparison), leaderboard.rows(standings)]

    handler.__name__ = f"vote_{choice.lower()}"
    return shows_errors(handler)


def _board_dicts(standings: list[leaderboard.Standing]) -> list[dict]:
    return [dict(zip(leaderboard.COLUMNS, row, strict=False)) for row in _shown_rows(standings)]


def _board_rows(task: Task) -> list[list]:
    return _shown_rows(leaderboard.standings(task))


def _shown_rows(standings: list[leaderboard.Standing]) -> list[list]:
    return [[rank, boundary.shown_target(target), *rest] for rank, target, *rest in leaderboard.rows(standings)]


# --- what the page shows -------------------------------------------------------------------------


def page(comparison: Comparison | None) -> list:
    """Updates for every output of the page, in `_Page.outputs` order."""
    updates = []
    for i in range(MAX_TARGETS):
        updates += _slot_updates(comparison, i)
    waiting = comparison is not None and comparison.awaits_vote
    updates += [
        gr.update(visible=waiting),
        chart(comparison),
        status(comparison),
        comparison.id if waiting and comparison is not None else None,
    ]
    return updates + [program(comparison, i) for i in range(MAX_TARGETS)]


def program(comparison: Comparison | None, i: int) -> str:
    """Column `i`'s call as a Python program; while blind, a note instead (the program names the model)."""
    if comparison is None or i >= len(comparison.targets):
        return ""
    if comparison.hidden:
        return reproduce.HIDDEN
    outcome = comparison.outcomes[i]
    if outcome is None or not outcome.ok:
        return ""
    cell: Any = outcome.value  # an ok outcome holds its cell
    return cell.snippet


def _slot_updates(comparison: Comparison | None, i: int) -> list:
    if comparison is None or i >= len(comparison.targets):
        return [gr.update(visible=False)] + [gr.skip()] * 6 + [gr.update(visible=False)]
    kind, output, outcome = OUTPUT_KIND[comparison.task], comparison.outputs[i], comparison.outcomes[i]
    failed_empty = outcome is not None and not outcome.ok and output is None  # its error says it all
    shown = {k: gr.update(visible=False) for k in ("text", "scores", "image", "hits")}
    shown[kind] = gr.update(visible=not failed_empty, value=_page_value(kind, output))
    can_vote = comparison.awaits_vote and i in comparison.answered()
    return [
        gr.update(visible=True),
        header(comparison, i),
        shown["text"],
        shown["scores"],
        shown["image"],
        shown["hits"],
        cell_stats(comparison, i),
        gr.update(visible=can_vote),
    ]


def _page_value(kind: str, output):
    if output is None:
        return {"text": "", "scores": None, "image": None, "hits": None}[kind]
    return output


def header(comparison: Comparison, i: int) -> str:
    if comparison.hidden:
        return f"**{comparison.letter(i)}**"
    name = _md(boundary.shown_target(comparison.targets[i].name) or "")  # (None only for no name)
    if not comparison.blind:
        return f"**{name}**"
    best = " (voted best)" if comparison.vote == LETTERS[i] else ""
    return f"**{comparison.letter(i)}**{best} · {name}"


def cell_stats(comparison: Comparison, i: int) -> str:
    """Latency, first token, tokens and cost of one column, or its error (hidden while blind)."""
    outcome = comparison.outcomes[i]
    if outcome is None:
        return "running…"
    if not outcome.ok:
        return (
            f"⚠️ {HIDDEN_ERROR if comparison.hidden else html.escape(boundary.scrub(outcome.error or ''), quote=False)}"
        )
    if comparison.hidden:
        return HIDDEN_STATS  # time, tokens and cost identify models
    cell: Any = outcome.value  # an ok outcome holds its cell
    result = cell.result
    parts = [f"{outcome.elapsed_s:.2f} s"]
    if isinstance(result, Completion) and result.ttft_s is not None:
        parts.append(f"first token {result.ttft_s:.2f} s")
    parts.append(_tokens(result.usage))
    parts.append(_cost(result.cost_usd))
    if result.served_by and result.served_by != result.provider:
        parts.append(f"served by {_md(result.served_by)}")
    if cell.note:
        parts.append(html.escape(cell.note, quote=False))
    return " · ".join(parts)


def status(comparison: Comparison | None) -> str:
    if comparison is None:
        return ""
    n = len(comparison.targets)
    if not comparison.done:
        return f"Running {n} targets at once…"
    finished = [o.elapsed_s for o in comparison.outcomes if o is not None]
    line = (
        f"{n} targets in {comparison.wall_s:.2f} s."
        if comparison.hidden
        else f"{n} targets in {comparison.wall_s:.2f} s (slowest {max(finished):.2f} s, sum {sum(finished):.2f} s)."
    )
    if comparison.awaits_vote:
        return f"{line} **Vote for the best answer** (or a tie): the names are revealed after the vote."
    if comparison.vote in ("tie", "skip"):
        return (
            f"{line} {'Tie recorded on the leaderboard.' if comparison.vote == 'tie' else 'Revealed without a vote.'}"
        )
    if comparison.vote:
        return f"{line} Vote for Model {comparison.vote} recorded on the {comparison.task.title.lower()} leaderboard."
    if comparison.blind:
        return f"{line} Fewer than two targets answered, so there is nothing to vote on: names revealed."
    return line


def chart(comparison: Comparison | None) -> str:
    """Latency and cost per target as bars (plain HTML: no plotting library, and "unknown" or
    "hidden" can stand where a bar cannot)."""
    if comparison is None or comparison.hidden:
        return ""  # per-target latency and cost identify models: drawn after the vote
    done = [(i, o) for i, o in enumerate(comparison.outcomes) if o is not None]
    if not done:
        return ""
    slowest = max(o.elapsed_s for _, o in done) or 1.0
    cells: list[Any] = [o.value for _, o in done if o.ok]  # an ok outcome holds its cell
    costs = [c.result.cost_usd for c in cells if c.result.cost_usd is not None]
    priciest = max(costs, default=0.0)
    rows = []
    for i, outcome in done:
        latency = _bar(
            outcome.elapsed_s / slowest, f"{outcome.elapsed_s:.2f} s" + (" (timed out)" if outcome.timed_out else "")
        )
        rows.append(
            f"<tr><td>{html.escape(comparison.label(i))}</td><td>{latency}</td>"
            f"<td>{_cost_cell(outcome, priciest)}</td></tr>"
        )
    return (
        "<table style='width:100%'><tr><th style='text-align:left'>target</th><th style='text-align:left'>latency"
        "</th><th style='text-align:left'>estimated cost</th></tr>" + "".join(rows) + "</table>"
    )


def _cost_cell(outcome, priciest: float) -> str:
    if not outcome.ok:
        return "—"
    cost = outcome.value.result.cost_usd
    if cost is None:
        return "unknown"
    if cost == 0:
        return "no cost"
    return _bar(cost / priciest, _cost(cost), "#f59e0b")


def _bar(fraction: float, text: str, color: str = "#6366f1") -> str:
    width = max(2, round(160 * max(0.0, min(1.0, fraction))))
    return (
        f"<div style='display:flex;align-items:center;gap:6px'><div style='width:{width}px;height:10px;"
        f"background:{color};border-radius:3px'></div><span>{html.escape(text)}</span></div>"
    )


def _tokens(usage) -> str:
    if usage is None or (usage.input_tokens is None and usage.output_tokens is None):
        return "tokens unknown"
    return f"{_count(usage.input_tokens)} in / {_count(usage.output_tokens)} out tokens"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _cost(cost: float | None) -> str:
    if cost is None:
        return "cost unknown"
    return "no cost" if cost == 0 else usd(cost)


def _md(text: str) -> str:
    """A name (possibly typed by the user) as inert Markdown that still wraps in a narrow column."""
    return re.sub(r"([\\`*_{}\[\]()#+!|<>~])", r"\\\1", html.escape(str(text), quote=False))


# --- what the API returns ------------------------------------------------------------------------


def summary(comparison: Comparison) -> dict:
    """A JSON-able summary per target; while blind, names, costs and notes are left out."""
    return {
        "comparison_id": comparison.id if comparison.awaits_vote else None,
        "task": comparison.task.value,
        "blind": comparison.blind,
        "names_hidden": comparison.hidden,
        "wall_s": None if comparison.wall_s is None else round(comparison.wall_s, 4),
        "targets": [_target_summary(comparison, i) for i in range(len(comparison.targets))],
    }


def _target_summary(comparison: Comparison, i: int) -> dict:
    outcome = comparison.outcomes[i]
    cell = outcome.value if outcome is not None and outcome.ok else None
    result = cell.result if cell else None
    usage = result.usage if result else None
    entry = {
        "name": comparison.letter(i) if comparison.hidden else boundary.shown_target(comparison.targets[i].name),
        "output": _json_output(comparison.task, cell.output) if cell else None,
        "error": None
        if outcome is None or outcome.ok
        else (HIDDEN_ERROR if comparison.hidden else boundary.scrub(outcome.error or "")),
    }
    if comparison.blind:
        entry["label"] = comparison.letter(i)
    if not comparison.hidden:  # time, tokens and cost identify models: given after the vote
        entry["latency_s"] = None if outcome is None else round(outcome.elapsed_s, 4)
        entry["ttft_s"] = (
            round(result.ttft_s, 4) if isinstance(result, Completion) and result.ttft_s is not None else None
        )
        entry["input_tokens"] = usage.input_tokens if usage else None
        entry["output_tokens"] = usage.output_tokens if usage else None
        entry["cost_usd"] = result.cost_usd if result else None
        entry["note"] = cell.note if cell else ""
        entry["snippet"] = cell.snippet if cell else None
    return entry


def _json_output(task: Task, output):
    kind = OUTPUT_KIND[task]
    if kind == "scores":
        return {label: round(float(score), 6) for label, score in output.items()}
    if kind == "hits":
        return [dict(zip(HIT_COLUMNS, row, strict=False)) for row in output]
    if kind == "image":
        return _image_file(output)
    return output


def _image_file(image) -> dict:
    """Save a generated image where Gradio serves it, as a file reference gradio_client downloads.

    A JSON output is not scanned for files, so the folder is a static path (`image_dir`); names
    are random, a file appears whole (written aside, then renamed) and only the newest
    `KEEP_IMAGES` files are kept.

    gradio_client 2.7 downloads a FileData from `file=<path>` (its `url` only for streams), and
    Gradio 6.31 serves files only by path, so `path` stays: a temporary file's, like the
    `/tmp/gradio/...` path Gradio gives every file output of every other tab."""
    folder = image_dir()
    name = f"{secrets.token_hex(12)}.png"
    path = folder / name
    staging = folder / f".{name}.part"  # not "*.png": a prune never sees it half written
    try:
        image.save(staging, format="PNG")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    _prune(folder)
    return {"path": str(path), "orig_name": name, "meta": {"_type": "gradio.FileData"}, "mime_type": "image/png"}


_image_dir: tuple[int, Path] | None = None  # (the process that made it, the folder)
_image_dir_lock = threading.Lock()


def image_dir() -> Path:
    """This process's folder of generated images: made on first use (again in a forked child, or
    if something removed it), registered as a Gradio static path, removed when the process exits.
    A folder shared between processes would let one process's prune delete what another just
    handed out."""
    global _image_dir
    with _image_dir_lock:
        if _image_dir is None or _image_dir[0] != os.getpid() or not _image_dir[1].is_dir():
            folder = Path(tempfile.mkdtemp(prefix=IMAGE_PREFIX))
            gr.set_static_paths([str(folder)])
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            _image_dir = (os.getpid(), folder)
        return _image_dir[1]


def _prune(folder: Path) -> None:
    """Keep the newest `KEEP_IMAGES` images; a file another thread removed first is skipped.
    Only names `_image_file` gives are looked at."""
    dated = []
    for file in folder.glob("*.png"):
        if not IMAGE_NAME.fullmatch(file.name):
            continue
        try:
            dated.append((file.stat().st_mtime, file))
        except FileNotFoundError:
            continue
    for _, old in sorted(dated)[:-KEEP_IMAGES]:
        old.unlink(missing_ok=True)


# --- the page ------------------------------------------------------------------------------------


def target_choices(task: Task) -> tuple[list[tuple[str, str]], list[str], str]:
    """Dropdown choices "provider:model" for the task, two usable ones picked, and why the others
    are not ready."""
    options = [o for o in registry.options(task) if o.model]
    offered = [(o, model) for o in options for model in _offered_models(task, o)]
    choices = [
        (
            f"{o.label} · {boundary.shown_model(model)}" + ("" if o.usable else " (not ready)"),
            _choice(o.provider, model, o.model),
        )
        for o, model in offered
    ]
    value = [_choice(o.provider, model, o.model) for o, model in offered if o.usable][:2]
    unusable = [o for o in registry.options(task) if not o.usable]
    notes = boundary.scrub("\n".join(f"- **{o.label}**: {o.reason}" for o in unusable))
    return (
        choices,
        value,
        (f"<details><summary>Why some targets are not ready</summary>\n\n{notes}\n</details>" if notes else ""),
    )


def _offered_models(task: Task, option) -> list[str]:
    """The provider's default model, and in public mode every model the owner lists for visitors."""
    if not public.enabled():
        return [option.model]
    listed = public.listed_models(option.provider, task, option.model)
    return [option.model, *sorted(listed - {option.model})]


def _choice(provider: str, model: str, default: str | None) -> str:
    """A target's value in the page: "provider" where the default model is a configured path or
    URL a visitor must not see (the server fills it in), else "provider:model"."""
    return provider if model == default and boundary.shown_model(model) != model else f"{provider}:{model}"


def key_choices(task: Task) -> tuple[list[tuple[str, str]], str | None]:
    """The vendors a session key may be for (local models take none); the first not ready by default."""
    options = [o for o in registry.options(task) if o.model and o.provider != "local"]
    first = next((o.provider for o in options if not o.usable), options[0].provider if options else None)
    return [(o.label, o.provider) for o in options], first


class _Page:
    """The tab's components, grouped so handlers can list their outputs in one place."""

    def __init__(self, task: Task):
        choices, value, notes = target_choices(task)
        keys, key_for = key_choices(task)
        with gr.Row():
            self.task = gr.Radio([(t.title, t.value) for t in Task], value=task.value, label="Task", scale=4)
            self.blind = gr.Checkbox(label="Blind: hide the names until I vote", value=False, scale=1)
        self.targets = gr.Dropdown(
            choices,
            value=value,
            multiselect=True,
            max_choices=MAX_TARGETS,
            allow_custom_value=True,
            label="Targets (2-6)",
            info="Type provider:model to add any model, e.g. openai:gpt-4.1-mini (two models of one vendor are fine).",
        )
        self.notes = gr.Markdown(notes)
        with gr.Row():
            self.api_key = gr.Textbox(
                "",
                label="API key for this session (optional)",
                type="password",
                max_lines=1,
                placeholder="Used only for your calls; never stored or logged",
                scale=3,
            )
            self.key_provider = gr.Dropdown(
                keys, value=key_for, label="The key is for", scale=1, allow_custom_value=True
            )
        self.prompt = gr.Textbox(
            "", label=PROMPT_LABEL[task], lines=3, placeholder="Explain transfer learning in two sentences."
        )
        with gr.Row(visible=False) as self.image_row:
            self.image = ImageUpload(label="Image", height=240)
            self.labels = gr.Textbox(label="Candidate labels (comma separated)", value="a cat, a dog, a car")
        with gr.Group(visible=False) as self.corpus_group:
            self.corpus_text = gr.Textbox(label="Corpus (blank lines separate passages)", lines=6, value=SAMPLE_CORPUS)
            self.top_k = gr.Slider(1, 20, value=3, step=1, label="Top k")
        with gr.Accordion("Parameters", open=False):
            with gr.Row() as self.completion_group:
                self.max_tokens = gr.Slider(
                    1, boundary.ceiling("max_tokens", 4096), value=256, step=1, label="Max tokens"
                )
                self.temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature")
            with gr.Row(visible=False) as self.generation_group:
                self.steps = gr.Number(value=1, precision=0, label="Steps (1-100)")
                self.width = gr.Number(value=512, precision=0, step=64, label="Width")
                self.height = gr.Number(value=512, precision=0, step=64, label="Height")
                self.edit_mode = gr.Dropdown(
                    [("no: draw from the prompt", ""), *((m.title, m.value) for m in COMPARED_EDITS)],
                    value="",
                    label="Edit the image instead",
                )
                self.strength = gr.Slider(0.05, 1.0, value=0.6, step=0.05, label="Strength (image to image)")
            self.seed = gr.Number(value=-1, precision=0, label="Seed (-1: random; the same for every target)")
        self.run = gr.Button("Compare", variant="primary")
        self.status = gr.Markdown()
        self.slots, self.programs = [], []  # a program box per column, listed after the other outputs
        with gr.Row(equal_height=False):
            for i in range(MAX_TARGETS):
                slot, code = self._slot(i)
                self.slots.append(slot)
                self.programs.append(code)
        with gr.Row(visible=False) as self.vote_row:
            self.tie = gr.Button("Tie", size="sm")
            self.skip = gr.Button("Reveal without voting", size="sm", variant="secondary")
        self.chart = gr.HTML()
        with gr.Accordion("Leaderboard (blind votes: Elo, K=32, start 1000; Bradley-Terry, 95% interval)", open=False):
            # filled on page load: building the tab (at app import) must not touch the database
            self.board = gr.Dataframe(headers=leaderboard.COLUMNS, interactive=False, label="Leaderboard")
            self.refresh = gr.Button("Refresh", size="sm")
        self.comparison_id = gr.State(None)  # only the random id; the names stay in services.comparisons
        self.api_trigger = gr.Button(visible=False)  # the /compare endpoint has no button of its own
        self.api_result = gr.JSON(visible=False)

    @staticmethod
    def _slot(i: int) -> tuple[list, gr.Code]:
        with gr.Column(visible=False, min_width=220) as column:
            title = gr.Markdown()
            text = gr.Textbox(show_label=False, lines=8, max_lines=24, buttons=["copy"])
            scores = gr.Label(show_label=False, num_top_classes=5, visible=False)
            image = gr.Image(show_label=False, type="pil", format="png", visible=False)
            hits = gr.Dataframe(
                headers=HIT_COLUMNS,
                show_label=False,
                wrap=True,
                interactive=False,
                visible=False,
                column_widths=["18%", "22%", "60%"],
            )
            stats = gr.Markdown()
            vote_button = gr.Button(f"{LETTERS[i]} is best", visible=False, size="sm", variant="primary")
            code = reproduce.code_box()
        return [column, title, text, scores, image, hits, stats, vote_button], code

    @property
    def inputs(self) -> list:
        return [
            self.task,
            self.targets,
            self.prompt,
            self.image,
            self.labels,
            self.corpus_text,
            self.top_k,
            self.max_tokens,
            self.temperature,
            self.steps,
            self.width,
            self.height,
            self.seed,
            self.blind,
            self.api_key,
            self.key_provider,
            self.edit_mode,
            self.strength,
        ]

    @property
    def outputs(self) -> list:
        return (
            [c for slot in self.slots for c in slot]
            + [self.vote_row, self.chart, self.status, self.comparison_id]
            + self.programs
        )

    @property
    def task_outputs(self) -> list:
        return [getattr(self, name) for name in LAYOUT]

    @property
    def reopen_inputs(self) -> list:
        """What `reopen` fills when History re-opens a comparison here."""
        return [getattr(self, name) for name in LAYOUT + REFILLED] + self.outputs


LAYOUT = (
    "targets",
    "key_provider",
    "notes",
    "prompt",
    "image_row",
    "labels",
    "corpus_group",
    "completion_group",
    "generation_group",
    "seed",
    "board",
)  # what follows the task
REFILLED = ("task", "image", "corpus_text", "top_k", "max_tokens", "temperature", "steps", "width", "height", "blind")


def _layout(task: Task) -> dict[str, object]:
    """Updates (by `_Page` attribute) that show the task's inputs, targets and leaderboard."""
    choices, value, notes = target_choices(task)
    keys, key_for = key_choices(task)
    shown = SHOWN_INPUTS[task]
    return {
        "targets": gr.update(choices=choices, value=value),
        "key_provider": gr.update(choices=keys, value=key_for),
        "notes": notes,
        "prompt": gr.update(visible="prompt" in shown, label=PROMPT_LABEL.get(task, "Prompt")),
        "image_row": gr.update(visible="image" in shown),
        "labels": gr.update(visible="labels" in shown),
        "corpus_group": gr.update(visible="corpus" in shown),
        "completion_group": gr.update(visible="completion" in shown),
        "generation_group": gr.update(visible="generation" in shown),
        "seed": gr.update(visible="seed" in shown),
        "board": _board_rows(task),
    }


def on_task(task_value) -> list:
    """Show the task's inputs, list its targets and leaderboard, and clear the last comparison."""
    layout = _layout(cmp.parse_task(task_value))
    return [layout[name] for name in LAYOUT] + page(None)


def reopen(run: dict) -> list:
    """Values for `reopen_inputs` from a logged run of this tab: the whole comparison it was part
    of (task, targets, input, parameters, blind or not), laid out for its task."""
    task = cmp.parse_task(run.get("task"))
    inputs, params = run.get("inputs") or {}, run.get("params") or {}
    labels = inputs.get("labels")
    layout = _layout(task)
    for name, value in (
        ("targets", params.get("targets") or [f"{run.get('provider')}:{run.get('model')}"]),
        ("prompt", inputs.get("prompt") or inputs.get("query") or ""),
        ("labels", ", ".join(labels) if isinstance(labels, list) else labels),
        ("seed", -1 if params.get("seed") is None else params["seed"]),
    ):
        if value is not None:
            layout[name] = {**cast(dict, layout[name]), "value": value}  # each entry is a gr.update dict
    refilled = {
        "task": task.value,
        "image": run_log.open_image(inputs.get("image")),
        "corpus_text": inputs.get("corpus"),
        "blind": bool(params.get("blind", False)),
        **{name: params.get(name) for name in ("top_k", "max_tokens", "temperature", "steps", "width", "height")},
    }
    layout |= {name: gr.skip() if value is None else value for name, value in refilled.items()}
    return [layout[name] for name in LAYOUT + REFILLED] + page(None)


def layout(root: gr.Blocks) -> list:
    """This tab's components and events, built inside the open `root` Blocks (a tab of the app, or
    `build()`'s page of its own); returns the inputs that `reopen` fills. The API's images are
    served from `image_dir()`, made and registered as a static path on first use."""
    gr.Markdown(
        "Send one input to several models at once and read the answers side by side. In **blind** mode the "
        "columns are Model A, B, ... until you vote; votes build a per-task leaderboard."
    )
    ui = _Page(Task.COMPLETION)
    # .input, not .change: re-opening a run sets the task and its targets together, and must not be reset
    ui.task.input(on_task, ui.task, ui.task_outputs + ui.outputs, api_visibility="private", queue=False)
    root.load(on_task, ui.task, ui.task_outputs + ui.outputs, api_visibility="private", queue=False)
    ui.run.click(compare_page, ui.inputs, ui.outputs, api_visibility="private", concurrency_limit=CONCURRENCY)
    ui.api_trigger.click(compare, ui.inputs, ui.api_result, api_name="compare", concurrency_limit=CONCURRENCY)
    for i, slot in enumerate(ui.slots):
        slot[-1].click(_vote_handler(LETTERS[i]), ui.comparison_id, [*ui.outputs, ui.board], api_visibility="private")
    ui.tie.click(_vote_handler("tie"), ui.comparison_id, [*ui.outputs, ui.board], api_visibility="private")
    ui.skip.click(_vote_handler("skip"), ui.comparison_id, [*ui.outputs, ui.board], api_visibility="private")
    ui.refresh.click(
        lambda task: _board_rows(cmp.parse_task(task)), ui.task, ui.board, api_visibility="private", queue=False
    )
    gr.api(vote, api_name="vote")
    gr.api(leaderboard_api, api_name="leaderboard")
    return ui.reopen_inputs


if __name__ == "__main__":
    standalone.main(__name__)
