"""Layer 1: tab handlers, corpus and index, and the rule that demos/ knows no vendor or torch."""

from __future__ import annotations

import ast
import pathlib
import re

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from adapters.types import Caption
from demos import captioning, compare, completion, embeddings_search, history, image_generation, zero_shot
from demos.widgets.frame_pacing import FramePacer
from demos.widgets.report import stats, usd
from services.search import corpus
from services.search.vector_index import ExactIndex

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "openai",
    "cohere",
    "huggingface_hub",
    "torch",
    "transformers",
    "diffusers",
    "sentence_transformers",
    "llama_cpp",
    "local_models",
}


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def test_demos_import_no_vendor_sdk_torch_or_runner():
    files = sorted((ROOT / "demos").glob("*.py"))
    assert len(files) >= 5
    offenders = {f.name: sorted(imported_modules(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_walk_would_catch_an_offender(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch.nn\nfrom openai import OpenAI\nimport importlib\nimportlib.import_module('cohere')\n")
    assert imported_modules(bad) & FORBIDDEN == {"torch", "openai", "cohere"}


def test_importing_the_app_loads_no_sdk_torch_or_model():
    import subprocess
    import sys

    code = (
        "import sys, app; heavy = [m for m in ('torch', 'transformers', 'diffusers', 'openai', 'cohere',"
        " 'sentence_transformers', 'llama_cpp') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_app_warms_up_the_vendors_whose_keys_are_set_in_the_background():
    """The first call of a process imported its vendor's SDK inside its deadline: once the page is
    built, a daemon thread prepares the usable vendors' adapters instead (no keys: nothing, above)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, threading, app; from adapters import registry; "
        "[t.join(60) for t in threading.enumerate() if t.name == 'fmg-warm-up']; "
        "print('openai' in sys.modules, sorted({k[0] for k in registry._adapters}))"
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-warm-123456"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True ['openai']"


# --- handlers --------------------------------------------------------------------------------------


def chat(message, history=(), provider="fake", **kw):
    args = dict(api_key="", system="", max_tokens=64, temperature=0.7, top_p=1.0, seed=-1) | kw
    return list(
        completion.chat(
            message,
            list(history),
            provider,
            args["api_key"],
            args["system"],
            args["max_tokens"],
            args["temperature"],
            args["top_p"],
            args["seed"],
        )
    )


def test_chat_streams_into_the_history_and_ends_with_stats(fake_provider, monkeypatch):
    monkeypatch.setattr(completion, "PACER", FramePacer(fastest_s=0.0, slowest_s=0.0))  # a frame per delta
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    frames = chat("say it back", history)
    assert len(frames) >= 4  # one frame per delta, then the stats
    final_history, info, program = frames[-1]
    assert final_history[-1] == {"role": "assistant", "content": "echo: say it back"}
    assert final_history[:2] == history and "fake" in info and "tokens" in info
    assert program.startswith("# No Python snippet is available") and "'fake'" in program  # a fake has no SDK


def test_chat_sends_at_most_one_update_per_interval(fake_provider, monkeypatch):
    monkeypatch.setattr(completion, "PACER", FramePacer(fastest_s=60.0, slowest_s=60.0))
    frames = chat("one two three four five six")
    assert len(frames) == 2  # the first token at once, then only the final answer
    assert frames[-1][0][-1]["content"] == "echo: one two three four five six"


def test_chat_failure_leaves_the_history_as_it_was(fake_provider):
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    gen = completion.chat("FAIL please", history, "fake", "", "", 64, 0.7, 1.0, -1)
    frames = []
    with pytest.raises(gr.Error) as err:
        for frame in gen:
            frames.append(frame)
    assert "server error" in err.value.message
    assert frames[-1][0] == history


def test_chat_cut_stream_keeps_text_and_says_so(fake_provider):
    final_history, info, _ = chat("CUT here please")[-1]
    assert final_history[-1]["content"] == "echo: CUT" and "cut off" in info


@pytest.mark.parametrize("message, provider, match", [("", "fake", "empty"), ("hi", "nobody", "Unknown provider")])
def test_chat_bad_input_is_a_clear_error(fake_provider, message, provider, match):
    with pytest.raises(gr.Error, match=match):
        chat(message, provider=provider)


def test_classify_returns_label_scores(fake_provider, tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (40, 40)).save(path)
    scores, info, _ = zero_shot.classify(str(path), "a dog, cat", "fake", "")
    assert set(scores) == {"a dog", "cat"} and abs(sum(scores.values()) - 1) < 1e-9
    assert "fake" in info


def test_caption_and_generate(fake_provider, tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (30, 20)).save(path)
    text, _, _ = captioning.caption(str(path), "", "fake", "")
    assert text == "a 30x20 image"
    seen = []
    image, info, _ = image_generation.generate(
        "a fox", "", 2, 64, 64, 0.0, 7, "fake", "", progress=lambda *a, **k: seen.append(a)
    )
    assert image.size == (64, 64) and "seed 7" in info and len(seen) == 3


def test_errors_shown_on_the_page_are_html_escaped(fake_provider, tmp_path):
    evil = tmp_path / "<img src=x onerror=alert(1)>.png"
    evil.write_bytes(b"not an image")
    with pytest.raises(gr.Error) as err:
        captioning.caption(str(evil), "", "fake", "")
    assert "<img" not in err.value.message and "&lt;img" in err.value.message


def test_unexpected_exceptions_become_one_plain_sentence(fake_provider, monkeypatch):
    from tests.fakes.providers import FakeCaptioner

    monkeypatch.setattr(FakeCaptioner, "_caption", lambda self, image, prompt: 1 / 0)
    with pytest.raises(gr.Error) as err:
        captioning.caption(Image.new("RGB", (8, 8)), "", "fake", "")
    assert "Traceback" not in err.value.message and "ZeroDivision" not in err.value.message
    assert "logged" in err.value.message


def test_search_finds_the_passage_sharing_words_and_reuses_the_index(fake_provider):
    corpus_text = "cats purr and sleep\n\nrockets fly to space\n\nsoup is hot"
    rows, info, _ = embeddings_search.search("space rockets", corpus_text, None, 2, 120, "fake", "")
    assert rows[0][3] == "rockets fly to space" and rows[0][0] == 1 and len(rows) == 2
    assert "3 passages" in info and "indexed" in info
    rows2, info2, _ = embeddings_search.search("hot soup", corpus_text, None, 1, 120, "fake", "")
    assert rows2[0][3] == "soup is hot" and "reused the index" in info2


def test_search_reads_uploaded_files(fake_provider, tmp_path):
    (tmp_path / "a.md").write_text("# Notes\n\nthe lighthouse keeper\n")
    (tmp_path / "b.csv").write_text("name,role\nAda,engineer\nBob,lighthouse keeper\n")
    rows, _, _ = embeddings_search.search(
        "lighthouse keeper", "", [str(tmp_path / "a.md"), str(tmp_path / "b.csv")], 5, 120, "fake", ""
    )
    sources = {r[2] for r in rows}
    assert sources == {"a.md", "b.csv"}
    assert any(r[3] == "name: Bob; role: lighthouse keeper" for r in rows)


@pytest.mark.parametrize(
    "query, corpus_text, files, match",
    [
        ("", "text", None, "query is empty"),
        ("q", "", None, "corpus is empty"),
        ("q", "  \n\n ", None, "corpus is empty"),
    ],
)
def test_search_bad_input(fake_provider, query, corpus_text, files, match):
    with pytest.raises(gr.Error, match=match):
        embeddings_search.search(query, corpus_text, files, 3, 120, "fake", "")


def test_search_refuses_binary_and_unknown_files(fake_provider, tmp_path):
    binary = tmp_path / "data.txt"
    binary.write_bytes(b"\x89PNG\x00\x00garbage")
    with pytest.raises(gr.Error, match="not a text file"):
        embeddings_search.search("q", "", [str(binary)], 3, 120, "fake", "")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    with pytest.raises(gr.Error, match=re.escape("upload .txt, .md or .csv")):
        embeddings_search.search("q", "", [str(pdf)], 3, 120, "fake", "")


@pytest.mark.parametrize(
    "cost, shown",
    [
        (2.85e-06, "$0.00000285"),
        (0.0123456, "$0.0123"),
        (0.02, "$0.02"),
        (0.011, "$0.011"),
        (0.5, "$0.50"),
        (0.0009999999, "$0.001"),
        (12.345, "$12.35"),
        (1234.5, "$1,234.50"),
        (4e-09, "<$0.00000001"),
    ],
)
def test_costs_show_three_significant_digits(cost, shown):
    assert usd(cost) == shown


def test_a_tiny_cost_is_shown_in_every_table_not_rounded_to_zero():
    """A short gpt-4o-mini reply costs about $0.0000029: five decimals showed "$0.00000"."""
    result = Caption(provider="openai", model="gpt-4o-mini", latency_s=0.5, cost_usd=2.85e-06, text="a cat")
    assert "$0.00000285" in stats(result)
    assert compare._cost(2.85e-06) == "$0.00000285"  # the Compare cells and chart
    row = history._table_row(
        {"created_at": "2026-01-02T03:04:05", "tab": "captioning", "cost_usd": 2.85e-06, "id": "r1"}
    )
    assert row[history.COLUMNS.index("cost")] == "$0.00000285"


# --- corpus and index --------------------------------------------------------------------------------


def test_chunking_keeps_paragraphs_and_windows_long_ones():
    long = " ".join(f"w{i}" for i in range(250))
    passages = corpus.chunk([("doc", "a b c\n\n d e f \n  \n" + long)], max_words=100, overlap=10)
    assert [p.text for p in passages[:2]] == ["a b c", "d e f"]
    windows = [p.text.split() for p in passages[2:]]
    assert len(windows) == 3
    assert all(len(w) <= 100 for w in windows)
    assert windows[0][-10:] == windows[1][:10]  # consecutive windows overlap
    covered = {w for window in windows for w in window}
    assert covered == set(long.split())


def test_exact_index_matches_brute_force():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:3] + 0.01
    scores, ids = ExactIndex(vectors).search(queries, 10)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert (ids == expected).all() and (np.diff(scores, axis=1) <= 1e-7).all()
    assert ExactIndex(vectors[:4]).search(queries, 10)[1].shape == (3, 4)
