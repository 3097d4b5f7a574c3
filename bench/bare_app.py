"""A bare Gradio app, the baseline of `bench.cold_start`: N tabs of a few components and one
event each, queued and launched the way app.py launches.

    python bench/bare_app.py [N] [--blocks-per-tab]

With `--blocks-per-tab`, each tab's content is first built as a `gr.Blocks` of its own and then
rendered into its tab, as app.py assembles its demos (so the cost of that pattern shows alone).
"""

from __future__ import annotations

import sys

import gradio as gr


def echo(text: str, choice: str, amount: float) -> str:
    return f"{text} {choice} {amount}"


def tab_content(i: int) -> None:
    text = gr.Textbox(label="Input")
    choice = gr.Dropdown(["a", "b", "c"], value="a", label="Choice")
    amount = gr.Slider(0, 10, value=5, label="Amount")
    button = gr.Button("Run")
    out = gr.Markdown()
    button.click(echo, [text, choice, amount], out, api_name=f"run{i + 1}")


def tab_blocks(i: int) -> gr.Blocks:
    with gr.Blocks() as blocks:
        tab_content(i)
    return blocks


def build(tabs: int, blocks_per_tab: bool = False) -> gr.Blocks:
    built = [tab_blocks(i) for i in range(tabs)] if blocks_per_tab else None
    with gr.Blocks(title="bare") as demo:
        gr.Markdown("# bare")
        with gr.Tabs():
            for i in range(tabs):
                with gr.Tab(f"Tab {i + 1}"):
                    if built:
                        built[i].render()
                    else:
                        tab_content(i)
    demo.queue(max_size=256, default_concurrency_limit=16)
    return demo


_args = [a for a in sys.argv[1:] if not a.startswith("--")]
demo = build(int(_args[0]) if _args else 5, "--blocks-per-tab" in sys.argv)

if __name__ == "__main__":
    demo.launch(show_error=False)
