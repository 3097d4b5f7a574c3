"""Hugging Face adapter: the real `huggingface_hub.InferenceClient` over real HTTP against a fake router.

The adapter is pointed at the fake with `HF_INFERENCE_ENDPOINT` (or, for the default auto-routed
chat URL, by moving `ROUTER_URL`); everything else is what production runs. Every test here needs
the SDK, so the module is skipped without it; the checks that need no SDK (lazy import, missing SDK,
routes) are in test_vendor_hf_routing.py.
"""

from __future__ import annotations

import base64
import email.utils
import io
import time

import numpy as np
import pytest
from PIL import Image

from adapters import hf_inference, registry
from adapters.errors import FMError, MissingCredentials, ProviderError, ProviderTimeout, ProviderUnavailable
from adapters.types import CompletionParams, ImageParams, Task
from tests.fakes import hf_server
from tests.fakes.hf_server import HFRouter, chat_chunk, loading, usage_chunk
from tests.fakes.http_server import FakeServer, Reply, sse

pytest.importorskip("huggingface_hub")  # every test below needs it (see the module docstring)

KEY = "sk-test-DISTINCTIVE-123456"
DEADLINE_S = 5  # FMG_TIMEOUT_S, as `hf_env` sets it
MARGIN_S = 2.0  # over a deadline, for a loaded 2-core machine: only to catch a call that ignores it
SLOW_S = 4  # a scripted server delay, far past the 1 s deadlines that the slow-server tests set
SESSION_KEY = "hf_session-DISTINCTIVE-987654"
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there friend"}]
LABELS = ["a cat", "a dog", "a car"]
EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def hf_env(monkeypatch, tmp_path):
    """A private HF home (no token file can leak in), small deadlines, the fake key."""
    import huggingface_hub.constants as hf_constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))  # read by the SDK at import
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_INFERENCE_ENDPOINT", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "fm-gallery.toml"
    config.write_text("[settings]\nmax_backoff_s = 0.2\n")
    monkeypatch.setenv("FMG_CONFIG", str(config))
    monkeypatch.setenv("FMG_TIMEOUT_S", str(DEADLINE_S))
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", "4")
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("HF_TOKEN", KEY)


@pytest.fixture(scope="module")
def shared_server():
    with FakeServer(HFRouter()) as fake:  # one per module: stopping a server takes half a second
        yield fake


@pytest.fixture
def server(hf_env, shared_server, monkeypatch):
    """The fake router, fresh: no script, no recorded requests, default behaviour."""
    shared_server.reset()
    shared_server.route = HFRouter()
    monkeypatch.setenv("HF_INFERENCE_ENDPOINT", shared_server.url + "/hf-inference")
    yield shared_server
    shared_server.reset()


def router(server: FakeServer) -> HFRouter:
    return server.route


def image(width: int = 40, height: int = 30) -> Image.Image:
    return Image.new("RGB", (width, height), (200, 30, 30))


def completer():
    return registry.get(Task.COMPLETION, "hf")


def embedder():
    return registry.get(Task.EMBEDDINGS, "hf")


def classifier():
    return registry.get(Task.ZERO_SHOT, "hf")


def assert_clean(message: str) -> None:
    """One or two plain sentences naming the provider; no key, no traceback, no SDK internals."""
    assert "Hugging Face" in message or "HF_" in message
    assert KEY not in message and SESSION_KEY not in message
    assert "Traceback" not in message and "huggingface_hub" not in message and "\n" not in message


# --- availability and routing ----------------------------------------------------------------------


def test_missing_key_names_the_variable(hf_env, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(MissingCredentials, match="Set HF_TOKEN to use Hugging Face"):
        completer()


def test_offline_mode_is_explained(server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problem = hf_inference.check(Task.EMBEDDINGS, EMBED_MODEL)
    assert isinstance(problem, ProviderUnavailable) and "HF_HUB_OFFLINE" in str(problem)
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # set when the SDK was imported
    with pytest.raises(ProviderUnavailable, match="HF_HUB_OFFLINE is set"):
        embedder().embed(["x"])
    assert not server.requests


# --- every task, on success --------------------------------------------------------------------------


def test_completion_streams_text_usage_and_served_by(server):
    router(server).words_per_chunk = 2
    stream = completer().stream(CHAT, CompletionParams(max_tokens=50, temperature=0.3, top_p=0.9, seed=7))
    deltas = list(stream)
    result = stream.result
    assert len(deltas) > 1 and "".join(deltas) == result.text
    assert result.text.strip() == "Echo from Qwen/Qwen2.5-7B-Instruct: hello there friend"
    assert result.finish_reason == "stop" and result.cut is None
    assert result.usage.input_tokens == 5 and result.usage.output_tokens == 6
    assert result.served_by == "hf-inference" and result.provider == "hf" and result.ttft_s is not None
    (request,) = server.requests
    assert request.path == "/hf-inference/models/Qwen/Qwen2.5-7B-Instruct/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.json()
    assert body["model"] == "Qwen/Qwen2.5-7B-Instruct" and body["messages"] == CHAT and body["stream"] is True
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (50, 0.3, 0.9, 7)
    assert body["stream_options"] == {"include_usage": True}


def test_completion_stops_at_max_tokens(server):
    result = completer().complete(CHAT, CompletionParams(max_tokens=3))
    assert result.text.split() == ["Echo", "from", "Qwen/Qwen2.5-7B-Instruct:"] and result.finish_reason == "length"


def test_default_route_is_the_auto_router_and_reports_its_provider(hf_env, monkeypatch):
    with FakeServer(HFRouter()) as fake:
        monkeypatch.setattr(hf_inference, "ROUTER_URL", fake.url)
        result = completer().complete(CHAT)
        vectors = embedder().embed(["one text"])
    assert result.served_by == hf_server.CHAT_PROVIDER  # from the x-inference-provider header
    assert [r.path for r in fake.requests] == [
        "/v1/chat/completions",
        f"/hf-inference/models/{EMBED_MODEL}/pipeline/feature-extraction",
    ]
    assert vectors.served_by == "hf-inference"


def test_served_by_falls_back_to_the_configured_provider(server):
    router(server).provider_header = None
    assert classifier().classify(image(), LABELS).served_by == "hf-inference"
    router(server).provider_header = "hf-inference-eu"
    assert classifier().classify(image(), LABELS).served_by == "hf-inference-eu"


def test_zero_shot(server):
    result = classifier().classify(image(48, 32), LABELS)
    assert [label for label, _ in result.scores] == LABELS  # the fake scores earlier labels higher
    assert [round(s, 3) for _, s in result.scores] == [0.5, 0.333, 0.167] and result.calibrated
    (request,) = server.requests
    assert request.path == "/hf-inference/models/openai/clip-vit-large-patch14"
    body = request.json()
    assert body["parameters"] == {"candidate_labels": LABELS}
    assert Image.open(io.BytesIO(base64.b64decode(body["inputs"]))).size == (48, 32)


def test_captioning_ignores_the_prompt(server):
    result = registry.get(Task.CAPTIONING, "hf").caption(image(64, 24), prompt="describe the colours")
    assert result.text == "a photo of 64x24 pixels" and result.served_by == "hf-inference"
    (request,) = server.requests
    assert request.path == "/hf-inference/models/Salesforce/blip-image-captioning-large"
    assert Image.open(io.BytesIO(request.body)).size == (64, 24)  # the raw image, no prompt anywhere
    assert b"describe" not in request.body


def test_image_generation(server):
    steps = []
    params = ImageParams(steps=4, width=96, height=64, guidance=3.5, negative_prompt="blurry", seed=513)
    result = registry.get(Task.IMAGE_GENERATION, "hf").generate("a red fox", params, on_step=lambda *s: steps.append(s))
    (img,) = result.images
    assert img.size == (96, 64) and img.getpixel((0, 0)) == (1, 2, 128)  # colour from the seed
    assert steps == [(1, 1)] and result.seed == 513 and result.usage.images == 1
    assert result.served_by == "hf-inference"
    (request,) = server.requests
    assert request.path == "/hf-inference/models/black-forest-labs/FLUX.1-schnell"
    assert request.headers["accept"] == "image/png"
    assert request.json() == {
        "inputs": "a red fox",
        "parameters": {
            "negative_prompt": "blurry",
            "height": 64,
            "width": 96,
            "num_inference_steps": 4,
            "guidance_scale": 3.5,
            "seed": 513,
        },
    }


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_embeddings_sentence_level(server):
    texts = ["first passage", "second one", "third"]
    result = embedder().embed(texts, kind="query")
    assert result.vectors.shape == (3, hf_server.DIM) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(result.vectors, unit([hf_server.vector(t) for t in texts]), rtol=1e-5)
    assert result.served_by == "hf-inference"
    (request,) = server.requests
    assert request.path == f"/hf-inference/models/{EMBED_MODEL}/pipeline/feature-extraction"
    assert request.json() == {"inputs": texts}


def test_embeddings_token_level_are_mean_pooled(server):
    router(server).token_level = True
    texts = ["a b", "c d"]  # same token count: one 3-D answer
    result = embedder().embed(texts)
    pooled = [np.mean([hf_server.vector(w) for w in t.split()], axis=0) for t in texts]
    np.testing.assert_allclose(result.vectors, unit(pooled), rtol=1e-5, atol=1e-6)
    assert len(server.requests) == 1


def test_embeddings_ragged_token_level_go_one_text_at_a_time(server):
    router(server).token_level = True
    texts = ["a b", "c d e", "f"]
    result = embedder().embed(texts)
    pooled = [np.mean([hf_server.vector(w) for w in t.split()], axis=0) for t in texts]
    np.testing.assert_allclose(result.vectors, unit(pooled), rtol=1e-5, atol=1e-6)
    assert [r.json()["inputs"] for r in server.requests] == [texts, ["a b"], ["c d e"], ["f"]]


def test_session_key_overrides_the_environment(server):
    adapter = registry.get(Task.EMBEDDINGS, "hf", api_key=SESSION_KEY)
    adapter.embed(["x"])
    assert server.requests[0].headers["authorization"] == f"Bearer {SESSION_KEY}"
    server.script(Reply(401, json={"error": f"Invalid credentials: {SESSION_KEY}"}))
    with pytest.raises(ProviderError) as err:
        adapter.embed(["x"])
    assert "check the key typed for this session" in str(err.value)
    assert_clean(str(err.value))


# --- faults --------------------------------------------------------------------------------------


def test_401_is_not_retried_and_names_the_variable(server):
    server.script(Reply(401, json={"error": "Invalid credentials in Authorization header"}))
    with pytest.raises(ProviderError) as err:
        embedder().embed(["x"])
    assert str(err.value) == "Hugging Face rejected the API key (401): check HF_TOKEN."
    assert err.value.status == 401 and len(server.requests) == 1
    assert_clean(str(err.value))


def test_404_names_the_model_problem(server):
    server.script(Reply(404, json={"error": "Model openai/clip-vit-large-patch14 does not exist"}))
    with pytest.raises(ProviderError) as err:
        classifier().classify(image(), LABELS)
    message = str(err.value)
    assert "does not know that model" in message and "does not exist" in message
    assert len(server.requests) == 1
    assert_clean(message)


def test_429_waits_for_retry_after_then_succeeds(server):
    server.script(Reply(429, json={"error": "Rate limit reached"}, headers={"Retry-After": "1"}))
    started = time.monotonic()
    result = embedder().embed(["x"])
    elapsed = time.monotonic() - started
    assert result.vectors.shape == (1, hf_server.DIM)
    assert len(server.requests) == 2 and 1.0 <= elapsed < DEADLINE_S + MARGIN_S


def test_retry_after_as_an_http_date_is_read_against_the_servers_clock(server):
    server_now = time.time() - 3600  # a server clock an hour behind: the date is past by this machine's
    server.script(
        Reply(
            429,
            json={"error": "Rate limit reached"},
            headers={
                "Date": email.utils.formatdate(server_now, usegmt=True),
                "Retry-After": email.utils.formatdate(server_now + 1, usegmt=True),
            },
        )
    )
    started = time.monotonic()
    embedder().embed(["x"])
    assert len(server.requests) == 2 and time.monotonic() - started >= 1.0


def test_500_then_success(server):
    server.script(Reply(500, json={"error": "Internal error"}))
    result = completer().complete(CHAT)
    assert result.text and len(server.requests) == 2


def test_500_forever_stops_after_max_attempts_within_the_deadline(server):
    server.script(*[Reply(500, json={"error": "Internal error"})] * 5)
    started = time.monotonic()
    with pytest.raises(ProviderError) as err:
        registry.get(Task.CAPTIONING, "hf").caption(image())
    assert len(server.requests) == 3 and time.monotonic() - started < DEADLINE_S + MARGIN_S
    assert str(err.value) == "Hugging Face had a server error (500): try again later."


def test_slow_first_byte_fails_at_the_deadline(server, monkeypatch):
    monkeypatch.setenv("FMG_TIMEOUT_S", "1")
    server.script(Reply(delay_s=SLOW_S, json=[[0.0] * hf_server.DIM]))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as err:
        embedder().embed(["x"])
    assert time.monotonic() - started < SLOW_S and len(server.requests) == 1  # gave up before the server answered
    assert "did not answer within 1 s" in str(err.value)
    assert_clean(str(err.value))


def test_slow_first_token_fails_at_the_first_token_deadline(server, monkeypatch):
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", "1")
    model = "Qwen/Qwen2.5-7B-Instruct"
    server.script(Reply(delay_s=SLOW_S, sse=sse(chat_chunk(model, "late"), done="[DONE]")))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        completer().complete(CHAT)
    assert time.monotonic() - started < SLOW_S and len(server.requests) == 1


def test_stream_stalling_midway_is_cut_by_the_idle_deadline(server, monkeypatch):
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", "1")
    model = "Qwen/Qwen2.5-7B-Instruct"
    frames = sse(
        chat_chunk(model, "Once "), chat_chunk(model, "upon "), chat_chunk(model, "", finish="stop"), done="[DONE]"
    )
    server.script(Reply(sse=frames, interval_s=3))  # "Once " at once, then 3 s between chunks
    stream = completer().stream(CHAT)
    assert list(stream) == ["Once "]  # cut before the next chunk came, 3 s later
    assert stream.result.cut == "Hugging Face stopped sending for 1 s mid-answer: try again."
    assert len(server.requests) == 1


def test_stream_cut_keeps_the_text_so_far(server):
    model = "Qwen/Qwen2.5-7B-Instruct"
    frames = sse(
        chat_chunk(model, "Once "),
        chat_chunk(model, "upon "),
        chat_chunk(model, "a time"),
        chat_chunk(model, "", finish="stop"),
        usage_chunk(model, 3, 3),
        done="[DONE]",
    )
    server.script(Reply(sse=frames, cut_after=2))
    stream = completer().stream(CHAT)
    assert list(stream) == ["Once ", "upon "]
    result = stream.result
    assert result.text == "Once upon " and result.cut and result.finish_reason is None
    assert result.served_by == "hf-inference"  # no header in this reply: the route's provider, kept though cut
    assert_clean(result.cut)
    assert len(server.requests) == 1  # nothing is retried once text has arrived


def test_stream_error_event_before_any_text_is_raised(server):
    frames = sse({"error": "Model is overloaded", "error_type": "overloaded"})
    server.script(*[Reply(sse=frames)] * 3)
    with pytest.raises(ProviderError, match="overloaded: try again in a minute") as err:
        completer().complete(CHAT)
    assert len(server.requests) == 3  # overloaded is retryable
    assert_clean(str(err.value))


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b'[{"label": "a cat", "score": 0.9', headers={"Content-Type": "application/json"}),
        Reply(json={"label": "a cat"}),  # valid JSON, wrong shape
        Reply(json=[{"label": "a cat", "score": 1.0}]),  # labels missing
    ],
)
def test_malformed_zero_shot_answer(server, reply):
    server.script(reply)
    with pytest.raises(ProviderError) as err:
        classifier().classify(image(), LABELS)
    assert str(err.value) == "Hugging Face sent a response this app could not read: try again later."
    assert len(server.requests) == 1


def test_malformed_stream_frame(server):
    server.script(Reply(sse=['data: {"choices": [\n\n']))
    with pytest.raises(ProviderError, match="could not read"):
        completer().complete(CHAT)


def test_malformed_image_bytes(server):
    server.script(Reply(body=b"\x89PNG not really", headers={"Content-Type": "image/png"}))
    with pytest.raises(ProviderError, match="could not read"):
        registry.get(Task.IMAGE_GENERATION, "hf").generate("a fox")


def test_model_loading_is_retried_when_it_fits(server):
    server.script(loading(EMBED_MODEL, 0.5))
    started = time.monotonic()
    result = embedder().embed(["x"])
    assert result.vectors.shape == (1, hf_server.DIM)
    assert len(server.requests) == 2 and time.monotonic() - started >= 0.5


def test_model_loading_longer_than_the_deadline_says_so(server):
    server.script(loading(EMBED_MODEL, 20.0))
    with pytest.raises(ProviderError) as err:
        embedder().embed(["x"])
    assert str(err.value) == (f"Hugging Face: the model {EMBED_MODEL} is loading (about 20 s): try again in a minute.")
    assert err.value.status == 503 and len(server.requests) == 1  # not retried: 20 s is past the deadline


def test_model_loading_in_a_stream_open(server):
    server.script(loading("Qwen/Qwen2.5-7B-Instruct", 30.0))
    with pytest.raises(ProviderError, match="is loading \\(about 30 s\\)"):
        completer().complete(CHAT)
    assert len(server.requests) == 1


def test_connection_refused(hf_env, monkeypatch):
    with FakeServer(HFRouter()) as fake:
        url = fake.url
    monkeypatch.setenv("HF_INFERENCE_ENDPOINT", url)  # nothing listens there any more
    with pytest.raises(ProviderError) as err:
        embedder().embed(["x"])
    assert str(err.value).startswith("Could not connect to Hugging Face")
    assert_clean(str(err.value))


def test_every_error_is_ours(server):
    """Whatever the server does, callers only ever see FMError subclasses."""
    server.script(Reply(418, body=b"<html>teapot</html>", headers={"Content-Type": "text/html"}))
    with pytest.raises(FMError) as err:
        classifier().classify(image(), LABELS)
    assert str(err.value) == "Hugging Face answered with an error (418)."
    assert_clean(str(err.value))
