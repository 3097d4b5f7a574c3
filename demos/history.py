"""History: every logged run, filtered, inspected, exported, or re-opened into its tab.

API: `/history(tab, provider, text, errors_only)` returns the table of runs (newest first);
`/export(format)` returns a CSV or JSONL file of every run. The log itself is `services.run_log`
(`FMG_RUN_LOG` sets where it lives, `FMG_RUN_LOG=off` turns it off).

Re-opening needs the other tabs' input components, so `app.py` wires it with `attach()` after
rendering every tab; run alone (`python -m demos.history`) this tab lists and exports only.
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gradio as gr

from demos.widgets import exports, reproduce
from demos.widgets.report import shows_errors, usd
from services import boundary, public, run_log, visitors
from services import comparisons as comparison

log = logging.getLogger("fm_gallery.history")
TAB = "history"
TITLE = "History"
COLUMNS = ["time (UTC)", "tab", "provider", "model", "latency", "tokens", "cost", "error", "input", "output", "id"]
WIDTHS: list[str | int] = ["11%", "9%", "7%", "9%", "6%", "6%", "6%", "12%", "13%", "13%", "8%"]
FORMATS = {"CSV": ("csv", run_log.export_csv), "JSONL": ("jsonl", run_log.export_jsonl)}
PREVIEW_CHARS = 80
LIMIT = 200

Reopener = tuple[Callable[[dict], list], Sequence[gr.components.Component]]  # (tab's reopen, its inputs)


def _readable(fn: Callable) -> Callable:
    """A damaged or locked log is shown as one sentence naming the file, not a generic failure."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (run_log.RunLogError, OSError) as err:
            if public.enabled():  # no server path for visitors; the owner finds the reason in the server log
                log.warning("the run log could not be read: %s", err)
                raise gr.Error(
                    "The run history could not be read right now: try again later.", print_exception=False
                ) from None
            raise gr.Error(
                f"The run log at {run_log.location()} could not be read: {err}", print_exception=False
            ) from err

    return wrapper


def scope(request) -> run_log.Scope:
    """The runs this visitor may see: in public mode only their own (an admin's: all); never the
    runs of a blind comparison that waits for its vote."""
    visitor = visitors.current(request)
    return run_log.Scope(visitor=None if visitor.admin else visitor.key, hidden=comparison.hidden_ids())


def _text(value, limit: int = 200) -> str | None:
    """A filter value from the browser: text of a sane length, or None."""
    return value[:limit] if isinstance(value, str) and value else None


@shows_errors
@_readable
def history(tab, provider, text, errors_only, request: gr.Request | None = None):
    """The runs matching the filters, newest first, one table row each (at most LIMIT)."""
    runs = run_log.query(
        tab=_text(tab),
        provider=_text(provider),
        text=_text(text),
        errors_only=bool(errors_only),
        limit=LIMIT,
        scope=scope(request),
    )
    return [[boundary.scrub(c) if isinstance(c, str) else c for c in _table_row(r)] for r in runs]


@shows_errors
@_readable
def export(fmt, request: gr.Request | None = None):
    """Every run as a CSV or JSONL file, in a folder of its own (`demos.widgets.exports`)."""
    if fmt not in FORMATS:
        raise gr.Error(f"Export as {' or '.join(FORMATS)}, not {str(fmt)[:20]!r}.")
    if run_log.location() is None:
        raise gr.Error("The run log is off (FMG_RUN_LOG=off): there is nothing to export.")
    suffix, write = FORMATS[fmt]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = exports.new_folder()
    target = folder / f"fm-gallery-runs-{stamp}.{suffix}"
    try:
        count = write(target, scope=scope(request))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    gr.Info(f"Exported {count:,} run{'s' if count != 1 else ''}.")
    return str(target)


@shows_errors
@_readable
def detail(run_id, request: gr.Request | None = None):
    """The whole record of one run, its image (generated or uploaded) if it has one, and the run
    as a Python program (the vendor's SDK or the local library, same model, parameters and seed)."""
    run = run_log.get(run_id if isinstance(run_id, str) else "", scope(request))
    if run is None:
        return None, None, ""
    inputs = run.get("inputs") or {}
    image = run_log.open_image(run.get("image_path") or (inputs.get("image") if isinstance(inputs, dict) else None))
    shown = {k: boundary.scrub(v) if isinstance(v, str) else v for k, v in run.items() if k != "visitor"}
    return shown, image, reproduce.for_run(run)


def pick(evt: gr.SelectData) -> str:
    """The id of the clicked row (the last column)."""
    row = evt.row_value or []
    return str(row[-1]) if row else gr.skip()


def filter_choices(request: gr.Request | None = None) -> tuple[dict, dict]:
    """The tabs and providers seen in the visitor's runs, for the filter menus."""
    seen = scope(request)
    try:
        tabs, providers = run_log.distinct("tab", seen), run_log.distinct("provider", seen)
    except (run_log.RunLogError, OSError):
        tabs, providers = [], []
    return gr.update(choices=[("all", ""), *tabs]), gr.update(choices=[("all", ""), *providers])


def where() -> str:
    path = run_log.location()
    if path is None:
        return "The run log is **off** (`FMG_RUN_LOG=off`): new runs are not recorded."
    if public.enabled():  # no server path for visitors
        return "Only your own runs are listed here: no other visitor can see them. API keys are never recorded."
    return (
        f"Runs are recorded in `{path}` (set `FMG_RUN_LOG` to move it, `FMG_RUN_LOG=off` to stop). API keys never are."
    )


def _table_row(run: dict) -> list:
    tokens = [run.get("input_tokens"), run.get("output_tokens")]
    return [
        run["created_at"][:19].replace("T", " "),
        run["tab"],
        run.get("provider") or "",
        run.get("model") or "",
        "" if run.get("latency_s") is None else f"{run['latency_s']:.2f} s",
        "" if tokens == [None, None] else " / ".join("?" if t is None else str(t) for t in tokens),
        "" if run.get("cost_usd") is None else usd(run["cost_usd"]),
        _short(run.get("error") or ""),
        _short(_input_preview(run.get("inputs") or {})),
        _short(_preview(run.get("output"))),
        run["id"],
    ]


def _input_preview(inputs: dict) -> str:
    """The run's main text input, after a mark when it also had an image."""
    text = next((v for k, v in inputs.items() if k != "image" and isinstance(v, str) and v.strip()), "")
    return f"[image] {text}" if "image" in inputs else text


def _preview(value: Any) -> str:
    """A glance at an input or output: the text, the best label, the first hit, the image."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "image" in value and "width" in value:
            seed = f" · seed {value['seed']}" if "seed" in value else ""
            return f"image {value['width']}x{value['height']}{seed}"
        numbers = {k: v for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers and len(numbers) == len(value):  # label scores
            best = max(numbers, key=lambda k: numbers[k])
            return f"{best} ({numbers[best]:.2f})"
        return next((_preview(v) for v in value.values() if isinstance(v, str) and v.strip()), "")
    if isinstance(value, list):
        return _preview(value[0].get("passage") if value and isinstance(value[0], dict) else value[0]) if value else ""
    return str(value)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


@dataclass(frozen=True)
class Page:
    """The History tab's components that `attach` wires to the rest of the app."""

    filters: list
    table: gr.Dataframe
    run_id: gr.Textbox
    open_button: gr.Button


def layout(root: gr.Blocks) -> Page:
    """The tab's components and events, built inside the open `root` Blocks."""
    info = gr.Markdown(where())
    with gr.Row():
        tab = gr.Dropdown(choices=[("all", "")], value="", label="Tab", allow_custom_value=True, scale=1)
        provider = gr.Dropdown(choices=[("all", "")], value="", label="Provider", allow_custom_value=True, scale=1)
        text = gr.Textbox(label="Contains", placeholder="words in the input, output, model or error", scale=2)
        errors_only = gr.Checkbox(label="Errors only", value=False, scale=1)
        refresh = gr.Button("Refresh", scale=1)
    table = gr.Dataframe(
        headers=COLUMNS,
        label=f"Runs, newest first (at most {LIMIT})",
        interactive=False,
        wrap=True,
        max_height=420,
        column_widths=WIDTHS,
    )
    with gr.Row():
        with gr.Column(scale=2):
            run_id = gr.Textbox(label="Selected run (click a row)", max_lines=1)
            open_button = gr.Button("Open in its tab", variant="primary")
            record = gr.JSON(label="Run detail")
            program = reproduce.code_box()
        with gr.Column(scale=1):
            image = gr.Image(label="Image of this run", type="pil", interactive=False, height=260)
            fmt = gr.Radio(list(FORMATS), value="CSV", label="Export every run as")
            export_button = gr.Button("Export")
            file = gr.File(label="Exported runs", interactive=False)

    filters = [tab, provider, text, errors_only]
    gr.on(
        [refresh.click, text.submit, tab.input, provider.input, errors_only.input],
        history,
        filters,
        table,
        api_name="history",
    )
    refresh.click(filter_choices, outputs=[tab, provider], api_visibility="private", queue=False)
    root.load(history, filters, table, api_visibility="private")
    root.load(filter_choices, outputs=[tab, provider], api_visibility="private", queue=False)
    root.load(where, outputs=info, api_visibility="private", queue=False)
    table.select(pick, None, run_id, api_visibility="private", queue=False)
    run_id.change(detail, run_id, [record, image, program], api_visibility="private")
    export_button.click(export, fmt, file, api_name="export")
    return Page(filters, table, run_id, open_button)


def build() -> gr.Blocks:
    with gr.Blocks(title=TITLE) as page:
        layout(page)
    return page


@shows_errors
@_readable
def open_in_tab(run_id, targets: dict[str, Reopener], request: gr.Request | None = None) -> list:
    """Switch to the run's tab and fill its inputs (`gr.skip()` for every other tab's)."""
    run = run_log.get(run_id if isinstance(run_id, str) else "", scope(request))
    if run is None:
        raise gr.Error("Pick a run first: click a row of the table.")
    if run["tab"] not in targets:
        raise gr.Error(f"Runs of the {run['tab']!r} tab cannot be re-opened.")
    values = []
    for tab_id, (reopen, components) in targets.items():
        values += reopen(run) if tab_id == run["tab"] else [gr.skip()] * len(components)
    return [gr.Tabs(selected=run["tab"]), *values]


def attach(page: Page, tabs: gr.Tabs, history_tab: gr.Tab, targets: dict[str, Reopener]) -> None:
    """Wire the History tab into the app (call inside the app's Blocks, after every tab is
    rendered): "Open in its tab" fills the run's tab and switches to it, and the table is
    refreshed whenever the History tab is opened. `targets` maps a tab id to its `reopen`
    function and the components that function fills."""
    outputs = [tabs] + [c for _, components in targets.values() for c in components]

    def reopen(run_id, request: gr.Request):
        return open_in_tab(run_id, targets, request)

    page.open_button.click(reopen, page.run_id, outputs, api_visibility="private")
    history_tab.select(history, page.filters, page.table, api_visibility="private")


if __name__ == "__main__":
    build().queue().launch()
