"""OpenAI adapter tests: the real `openai` SDK over real HTTP against a local fake of the API.

Covers every task on success, the fault policy (401, 404, 429 + Retry-After, 5xx, deadlines,
broken and malformed streams), and named OpenAI-compatible endpoints side by side.
"""

from __future__ import annotations

import base64
import email.utils
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import compat
from adapters import inputs, keys, openai_api, registry
from adapters.errors import BadInput, MissingCredentials, ProviderError, ProviderTimeout, ProviderUnavailable
from adapters.types import CompletionParams, ImageParams, Task
from tests.fakes.http_server import FakeServer, Reply, sse
from tests.fakes.openai_server import (
    OpenAIFake,
    chat_json,
    chunk,
    decode_data_uri,
    error_reply,
    prompt_color,
    rate_limited,
    server_error,
    stream_frames,
    vector_for,
)

KEY = "sk-test-DISTINCTIVE-123456"
DEADLINE_S = 5  # FMG_TIMEOUT_S and FMG_FIRST_TOKEN_TIMEOUT_S, as `openai_env` sets them
MARGIN_S = 2.0  # over a deadline, for a loaded 2-core machine: only to catch a call that ignores it
SLOW_S = 4  # a scripted server delay, far past the 1 s deadlines that the slow-server tests set
HELLO = [{"role": "user", "content": "hello there world"}]
ECHO = "Echo from gpt-4o-mini: hello there world"


def write_config(path: Path, extra: str = "") -> Path:
    path.write_text("[settings]\nmax_backoff_s = 0.2\n" + extra)
    return path


ALPHA_KEY = "alpha-SECRET-key-777777"


def fresh_routes() -> tuple[OpenAIFake, OpenAIFake, OpenAIFake]:
    """OpenAI itself; "alpha", a keyed compatible server; "beta", a keyless one sending floats."""
    return OpenAIFake(key=KEY), OpenAIFake(key=ALPHA_KEY), OpenAIFake(base64_embeddings=False)


@pytest.fixture(scope="module")
def servers():
    """Started once per module (stopping a server takes ~0.5 s); routes are renewed per test."""
    with FakeServer(OpenAIFake()) as main, FakeServer(OpenAIFake()) as alpha, FakeServer(OpenAIFake()) as beta:
        yield main, alpha, beta


@pytest.fixture
def server(servers):
    for s, route in zip(servers, fresh_routes(), strict=False):
        s.reset()
        s.route = route
    return servers[0]


@pytest.fixture(autouse=True)
def openai_env(monkeypatch, tmp_path, server):
    """The real SDK pointed at the fake; short deadlines, small backoff, 3 attempts."""
    for var in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS", "OPENAI_ADMIN_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    monkeypatch.setenv("FMG_CONFIG", str(write_config(tmp_path / "fm-gallery.toml")))
    monkeypatch.setenv("FMG_TIMEOUT_S", str(DEADLINE_S))
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", str(DEADLINE_S))
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "3")


def red_image(width: int = 64, height: int = 48) -> Image.Image:
    return Image.new("RGB", (width, height), (210, 25, 25))


def assert_clean(message: str, *secrets: str) -> None:
    """A user-facing message: no traceback, no key, no SDK class names."""
    for secret in (KEY, *secrets):
        assert secret not in message
    assert "Traceback" not in message and "openai." not in message and "Error code" not in message


# --------------------------------------------------------------------------- success, every task


def test_completion_streams_deltas_then_usage_and_finish(server):
    adapter = registry.get(Task.COMPLETION, "openai")
    stream = adapter.stream(HELLO, CompletionParams(max_tokens=50, temperature=0.5, top_p=0.9, seed=7))
    deltas = list(stream)
    result = stream.result
    assert "".join(deltas) == result.text == ECHO
    assert len(deltas) == len(ECHO.split())  # one delta per chunk, the empty role chunk skipped
    assert result.finish_reason == "stop" and result.cut is None
    assert result.usage.input_tokens == 3 and result.usage.output_tokens == len(ECHO.split())
    assert result.cost_usd == pytest.approx((3 * 0.15 + 6 * 0.60) / 1e6)
    assert result.ttft_s is not None and result.provider == "openai" and result.model == "gpt-4o-mini"
    (request,) = server.requests
    body = request.json()
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == HELLO and body["model"] == "gpt-4o-mini"
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.5, 0.9, 7)
    assert body["max_tokens"] == 50 and "max_completion_tokens" not in body  # not api.openai.com
    assert request.headers.get("x-stainless-retry-count", "0") == "0"


def test_completion_hits_max_tokens(server):
    result = registry.get(Task.COMPLETION, "openai").complete(HELLO, CompletionParams(max_tokens=2))
    assert result.text == "Echo from" and result.finish_reason == "length"
    assert "seed" not in server.requests[0].json()


def test_official_api_gets_max_completion_tokens(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert openai_api.OPENAI.url() == "https://api.openai.com/v1"
    assert openai_api.OPENAI.max_tokens_param() == "max_completion_tokens"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    assert openai_api.OPENAI.max_tokens_param() == "max_tokens"


def test_caption_sends_the_image_as_a_data_uri(server):
    result = registry.get(Task.CAPTIONING, "openai").caption(red_image(64, 48))
    assert result.text == "A 64x48 image, mostly red."
    assert result.served_by is None and result.usage.output_tokens == 5  # the reply's "model" is no provider
    assert result.cost_usd is not None and result.cost_usd > 0
    body = server.requests[0].json()
    text_part, image_part = body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": "Describe this image in one sentence."}
    media_type, sent = decode_data_uri(image_part["image_url"]["url"])
    assert media_type == "image/jpeg" and sent.size == (64, 48)
    assert "stream" not in body or body["stream"] is False


def test_served_by_is_the_provider_a_router_names_or_nothing(server):
    """OpenAI's `model` field names the model (a dated snapshot), not who served the call: only
    a server that names a provider (a router such as OpenRouter, `provider` field) gives one."""
    assert registry.get(Task.ZERO_SHOT, "openai").classify(red_image(), ["red", "blue"]).served_by is None
    assert registry.get(Task.COMPLETION, "openai").complete(HELLO).served_by is None
    server.route = OpenAIFake(key=KEY, provider="Azure")
    assert registry.get(Task.CAPTIONING, "openai").caption(red_image()).served_by == "Azure"
    assert registry.get(Task.ZERO_SHOT, "openai").classify(red_image(), ["red", "blue"]).served_by == "Azure"
    assert registry.get(Task.COMPLETION, "openai").complete(HELLO).served_by == "Azure"


def test_caption_uses_the_given_prompt(server):
    registry.get(Task.CAPTIONING, "openai").caption(red_image(), "What colour is this?")
    assert server.requests[0].json()["messages"][0]["content"][0]["text"] == "What colour is this?"


def test_zero_shot_scores_the_labels_and_says_they_are_not_calibrated(server):
    labels = ["a red square", "a green square", "a blue square"]
    result = registry.get(Task.ZERO_SHOT, "openai").classify(red_image(), labels)
    assert result.best == "a red square" and result.calibrated is False
    assert dict(result.scores) == pytest.approx({"a red square": 0.6, "a green square": 0.2, "a blue square": 0.2})
    body = server.requests[0].json()
    assert body["response_format"] == {"type": "json_object"} and body["temperature"] == 0
    assert json.dumps(labels) in body["messages"][0]["content"][0]["text"]


def test_zero_shot_copes_with_a_server_that_ignores_json_mode(server):
    server.route = OpenAIFake(key=KEY, json_mode=False)
    result = registry.get(Task.ZERO_SHOT, "openai").classify(red_image(), "red car, blue car")
    assert result.best == "red car" and dict(result.scores)["red car"] == pytest.approx(0.75)


def test_zero_shot_retries_without_response_format_when_the_server_rejects_it(server):
    server.script(
        error_reply(
            400,
            "Invalid parameter: 'response_format' is not supported by this model.",
            param="response_format",
            code="invalid_parameter",
        )
    )
    result = registry.get(Task.ZERO_SHOT, "openai").classify(red_image(), ["red", "green"])
    assert result.best == "red"
    first, second = (r.json() for r in server.requests)
    assert "response_format" in first and "response_format" not in second


def test_zero_shot_with_an_unusable_reply_says_so(server):
    server.script(Reply(json=chat_json("I cannot tell what this is.")))
    with pytest.raises(ProviderError) as info:
        registry.get(Task.ZERO_SHOT, "openai").classify(red_image(), ["cat", "dog"])
    assert "did not score the labels" in str(info.value) and "OpenAI" in str(info.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"cat": 0.7, "dog": 0.3}', [0.7, 0.3, 0.0]),
        ('Sure!\n```json\n{"Cat": 0.9, "bird": "0.1"}\n```', [0.9, 0.0, 0.1]),
        ('{"scores": {"cat": "80%", "dog": "20%"}}', [0.8, 0.2, 0.0]),
        ('[{"label": "dog", "score": 1}, {"label": "cat", "score": 0}]', [0.0, 1.0, 0.0]),
        ('{"cat": 0.5, "horse": 0.5, "dog": -1, "bird": true}', [0.5, 0.0, 0.0]),  # unknown / bad ignored
        ('{"answer": "dog"}', [0.0, 1.0, 0.0]),  # no label keys: the one label it names
        ("It is a bird.", [0.0, 0.0, 1.0]),
        ("Either a cat or a dog.", None),  # names two labels: no guess
        ("No idea.", None),
    ],
)
def test_parse_label_scores(reply, expected):
    scores = openai_api.parse_label_scores(reply, ["cat", "dog", "bird"])
    assert scores == (pytest.approx(expected) if expected is not None else None)


def test_image_generation_dalle2(server):
    steps = []
    result = registry.get(Task.IMAGE_GENERATION, "openai", model="dall-e-2").generate(
        "a lighthouse at dusk", ImageParams(width=512, height=512, seed=5), on_step=lambda *a: steps.append(a)
    )
    (image,) = result.images
    assert image.size == (512, 512) and image.getpixel((3, 3)) == prompt_color("a lighthouse at dusk")
    assert steps == [(1, 1)] and result.usage.images == 1 and result.cost_usd == pytest.approx(0.02)
    body = server.requests[0].json()
    assert body == {
        "model": "dall-e-2",
        "prompt": "a lighthouse at dusk",
        "n": 1,
        "size": "512x512",
        "response_format": "b64_json",
    }


def test_gpt_image_models_get_no_response_format(server):
    adapter = registry.get(Task.IMAGE_GENERATION, "openai", model="gpt-image-1.5")
    result = adapter.generate("a red kite", ImageParams(width=1024, height=1536))
    assert result.images[0].size == (1024, 1536)
    assert "response_format" not in server.requests[0].json()


@pytest.mark.parametrize(
    ("model", "size", "hint"),
    [
        ("dall-e-2", (640, 480), "choose 512x512"),
        ("dall-e-2", (2048, 2048), "choose 1024x1024"),
        ("dall-e-3", (512, 512), "choose 1024x1024"),
        ("gpt-image-1", (1536, 1000), "choose 1536x1024"),
        ("gpt-image-2", (1000, 600), "try 1008x608"),
        ("gpt-image-2", (2048, 512), "at most 3:1"),
    ],
)
def test_image_sizes_a_model_cannot_make_are_bad_input(server, model, size, hint):
    adapter = registry.get(Task.IMAGE_GENERATION, "openai", model=model)
    with pytest.raises(BadInput) as info:
        adapter.generate("a cat", ImageParams(width=size[0], height=size[1]))
    assert hint in str(info.value) and model in str(info.value)
    assert server.requests == []  # refused before any call


def test_image_sizes_that_fit_pass_and_unknown_models_pass_through():
    assert openai_api.image_size("gpt-image-2", 1536, 864) == "1536x864"
    assert openai_api.image_size("dall-e-3", 1792, 1024) == "1792x1024"
    assert openai_api.image_size("some-local-sd", 640, 480) == "640x480"


def test_image_generation_refuses_a_negative_prompt(server):
    with pytest.raises(BadInput, match="negative prompt"):
        registry.get(Task.IMAGE_GENERATION, "openai", model="dall-e-2").generate(
            "a cat", ImageParams(negative_prompt="dogs")
        )
    assert server.requests == []


def test_embeddings_are_normalised_and_kind_is_ignored(server):
    texts = ["the quick brown fox", "jumps", "over the dog"]
    adapter = registry.get(Task.EMBEDDINGS, "openai")
    docs = adapter.embed(texts)
    query = adapter.embed(texts, kind="query")
    expected = np.array([vector_for(t) for t in texts], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert docs.vectors.dtype == np.float32 and docs.vectors.shape == (3, 8)
    np.testing.assert_allclose(docs.vectors, expected, rtol=1e-5)
    np.testing.assert_array_equal(docs.vectors, query.vectors)
    assert docs.usage.input_tokens == 8 and docs.cost_usd == pytest.approx(8 * 0.02 / 1e6)
    body = server.requests[0].json()
    assert body["input"] == texts and body["model"] == "text-embedding-3-small"
    assert body["encoding_format"] == "base64"  # the SDK's compact default, decoded by the SDK


def test_embeddings_are_sent_in_batches(server):
    texts = [f"text number {i}" for i in range(300)]
    result = registry.get(Task.EMBEDDINGS, "openai").embed(texts)
    assert result.vectors.shape == (300, 8)
    assert [len(r.json()["input"]) for r in server.requests] == [256, 44]
    assert result.usage.input_tokens == 900


# --------------------------------------------------------------------------- credentials and client


def test_missing_key_names_the_variable(monkeypatch, server):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(MissingCredentials) as info:
        registry.get(Task.COMPLETION, "openai")
    assert str(info.value) == "Set OPENAI_API_KEY to use OpenAI, or type a key for this session."
    option = next(o for o in registry.options(Task.COMPLETION) if o.provider == "openai")
    assert not option.usable and "OPENAI_API_KEY" in option.reason


def test_a_session_key_is_used_instead_of_the_env(monkeypatch, server):
    monkeypatch.delenv("OPENAI_API_KEY")
    session_key = "sk-session-OTHER-987654"
    server.route = OpenAIFake(key=session_key)
    adapter = registry.get(Task.COMPLETION, "openai", api_key=session_key)
    assert adapter.complete(HELLO).text == ECHO
    assert server.requests[0].headers["authorization"] == f"Bearer {session_key}"


def test_missing_sdk_names_the_package(monkeypatch):
    monkeypatch.setattr(openai_api, "PACKAGE", "openai_sdk_not_installed_here")
    problem = openai_api.check(openai_api.OPENAI, Task.COMPLETION, "gpt-4o-mini")
    assert isinstance(problem, ProviderUnavailable) and "pip install openai_sdk_not_installed_here" in str(problem)


def test_the_client_is_cached_and_rebuilt_when_the_key_changes(monkeypatch, server):
    adapter = registry.get(Task.COMPLETION, "openai")
    first = adapter.client()
    assert adapter.client() is first
    assert first.max_retries == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-ROTATED-000000")
    assert adapter.client() is not first
    assert first._client.is_closed  # the replaced client's connections are closed at once


def test_finished_streams_keep_their_connection_and_stopped_ones_close_it(server):
    """The sync SDK closes a stream at [DONE] before the end of the HTTP body; the adapter reads
    the rest so the next call reuses the connection (no new TLS handshake per reply)."""
    adapter = registry.get(Task.COMPLETION, "openai")
    adapter._clients.reset()  # start from an empty pool
    for _ in range(3):
        assert adapter.complete(HELLO).text == ECHO
    assert server.connections == 1
    stream = iter(adapter.stream(HELLO))
    next(stream)
    stream.close()  # stopped early: that connection is closed, not drained
    assert adapter.complete(HELLO).text == ECHO
    assert server.connections == 2


def test_with_the_keep_alive_patch_off_each_finished_stream_opens_a_connection(server, monkeypatch):
    monkeypatch.setenv(compat.STREAM_KEEP_ALIVE.env_var, "off")
    adapter = registry.get(Task.COMPLETION, "openai")
    adapter._clients.reset()
    for _ in range(3):
        assert adapter.complete(HELLO).text == ECHO
    assert server.connections == 3


def test_a_server_holding_the_body_open_after_done_does_not_delay_the_answer(server):
    server.script(
        Reply(
            sse=stream_frames(["held", "open"], usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
            hold_s=3.0,
        )
    )
    result = registry.get(Task.COMPLETION, "openai").complete(HELLO)
    assert result.text == "held open"
    assert server.finished == 0  # answered while the server still held the body open, not after


def test_building_the_client_is_outside_the_deadline_and_the_reported_times(monkeypatch, server):
    """The first call of a process builds its client (and imports the SDK: 1.6 s on a cold start).
    That must not eat the first-token deadline, where a 429 and its 1 s Retry-After then left no
    time for the retry, nor show in the latency and first-token time reported for the call."""
    import openai

    deadline_s, retry_after_s = 3, 1
    build_s = deadline_s - retry_after_s + 0.5  # a build inside the deadline leaves no room for the retry
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", str(deadline_s))
    real, built_at = openai.OpenAI, []

    def slow_client(**kwargs):
        time.sleep(build_s)
        client = real(**kwargs)
        built_at.append(time.perf_counter())
        return client

    monkeypatch.setattr(openai, "OpenAI", slow_client)
    server.script(rate_limited(retry_after=str(retry_after_s)))
    stream = registry.get(Task.COMPLETION, "openai", api_key=KEY).stream(HELLO)  # a session adapter: a new client
    first_delta_at = None
    for _ in stream:
        first_delta_at = first_delta_at or time.perf_counter()
    done_at = time.perf_counter()
    result = stream.result
    assert result.text == ECHO and len(server.requests) == 2  # the 429, then the answer
    assert len(built_at) == 1
    assert result.ttft_s <= first_delta_at - built_at[0]  # timed from when the client existed
    assert result.latency_s <= done_at - built_at[0]


def test_importing_the_module_does_not_import_the_sdk():
    code = "import sys, adapters.openai_api as m; m.providers(); sys.exit('openai' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


# --------------------------------------------------------------------------- faults


def test_401_is_not_retried_and_names_the_variable(monkeypatch, server):
    wrong = "sk-test-WRONG-KEY-999999"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with pytest.raises(ProviderError) as info:
        registry.get(Task.COMPLETION, "openai").complete(HELLO)
    message = str(info.value)
    assert message == "OpenAI rejected the API key (401): check OPENAI_API_KEY."
    assert info.value.status == 401 and len(server.requests) == 1
    assert_clean(message, wrong)


def test_404_names_the_model_problem(server):
    server.route = OpenAIFake(key=KEY, known_models={"gpt-4o-mini"})
    with pytest.raises(ProviderError) as info:
        registry.get(Task.CAPTIONING, "openai", model="gpt-nonexistent").caption(red_image())
    assert len(server.requests) == 1
    message = str(info.value)
    assert "OpenAI does not know that model" in message and "check the model name" in message
    assert "gpt-nonexistent" in message  # the server's own detail
    assert_clean(message)


def test_429_waits_for_retry_after_then_succeeds(server):
    server.script(rate_limited(retry_after="1"))
    started = time.monotonic()
    result = registry.get(Task.COMPLETION, "openai").complete(HELLO)
    elapsed = time.monotonic() - started
    assert result.text == ECHO and len(server.requests) == 2
    assert 1.0 <= elapsed < DEADLINE_S + MARGIN_S  # Retry-After honoured (backoff alone is capped at 0.2 s here)


def test_429_on_a_plain_call_too(server):
    server.script(rate_limited(retry_after="1"))
    started = time.monotonic()
    registry.get(Task.EMBEDDINGS, "openai").embed(["one"])
    assert time.monotonic() - started >= 1.0 and len(server.requests) == 2


def test_retry_after_as_an_http_date_is_read_against_the_servers_clock(server):
    """A server whose clock is an hour behind asks for 1 s as an HTTP date: its own time + 1 s.
    Against this machine's clock that date is long past, and the retry came at once."""
    server_now = time.time() - 3600
    server.script(
        error_reply(
            429,
            "Rate limit reached.",
            code="rate_limit_exceeded",
            headers={
                "Date": email.utils.formatdate(server_now, usegmt=True),
                "Retry-After": email.utils.formatdate(server_now + 1, usegmt=True),
            },
        )
    )
    started = time.monotonic()
    registry.get(Task.EMBEDDINGS, "openai").embed(["one"])
    assert len(server.requests) == 2 and time.monotonic() - started >= 1.0


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [("1", "wait 1 s and try again"), ("150", "wait about 3 min"), (None, "wait a minute and try again")],
)
def test_a_429_says_how_long_to_wait(monkeypatch, server, retry_after, wait):
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "1")
    server.script(rate_limited(retry_after=retry_after))
    with pytest.raises(ProviderError) as info:
        registry.get(Task.EMBEDDINGS, "openai").embed(["one"])
    assert wait in str(info.value) and str(info.value).startswith("OpenAI is rate limiting requests (429)")
    assert len(server.requests) == 1


def test_408_is_retried(server):
    server.script(error_reply(408, "Request timed out.", code=None))
    result = registry.get(Task.EMBEDDINGS, "openai").embed(["one"])
    assert result.vectors.shape == (1, 8) and len(server.requests) == 2


def test_500_then_success(server):
    server.script(server_error(500))
    assert registry.get(Task.CAPTIONING, "openai").caption(red_image()).text.startswith("A 64x48")
    assert len(server.requests) == 2


def test_500_forever_stops_after_max_attempts_within_the_deadline(server):
    server.script(*[server_error(503)] * 10)
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        registry.get(Task.COMPLETION, "openai").complete(HELLO)
    elapsed = time.monotonic() - started
    assert len(server.requests) == 3 and elapsed < DEADLINE_S + MARGIN_S
    assert str(info.value) == "OpenAI had a server error (503): try again later."


def test_slow_first_token_fails_at_the_first_token_deadline(monkeypatch, server):
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", "1")
    server.script(Reply(delay_s=SLOW_S, sse=stream_frames(["late"])))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        registry.get(Task.COMPLETION, "openai").complete(HELLO)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < SLOW_S, elapsed  # gave up at its deadline, before the server answered
    assert "OpenAI did not start answering within 1 s" in str(info.value)
    assert len(server.requests) == 1


def test_slow_plain_call_fails_at_the_call_deadline(monkeypatch, server):
    monkeypatch.setenv("FMG_TIMEOUT_S", "1")
    server.script(Reply(delay_s=SLOW_S, json={}))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="did not answer within 1 s"):
        registry.get(Task.EMBEDDINGS, "openai").embed(["one"])
    assert time.monotonic() - started < SLOW_S and len(server.requests) == 1


def test_stream_cut_midway_keeps_the_text(server):
    frames = stream_frames(ECHO.split(" "), usage={"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9})
    server.script(Reply(sse=frames, cut_after=4))  # role chunk + 3 words, then the connection drops
    stream = registry.get(Task.COMPLETION, "openai").stream(HELLO)
    deltas = list(stream)
    result = stream.result
    assert "".join(deltas) == result.text == "Echo from gpt-4o-mini:"
    assert result.cut == "OpenAI closed the connection mid-answer: try again."
    assert result.finish_reason is None and len(server.requests) == 1  # never retried after text


def test_stream_cut_before_any_text_is_retried(server):
    server.script(Reply(sse=stream_frames(["never"]), cut_after=1))  # only the empty role chunk
    result = registry.get(Task.COMPLETION, "openai").complete(HELLO)
    assert result.text == ECHO and result.cut is None and len(server.requests) == 2


def test_stream_stalling_midway_is_cut_by_the_idle_deadline(monkeypatch, server):
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", "1")
    frames = stream_frames(["one", "two", "three"])[1:]  # "one" at once, then 3 s between chunks
    server.script(Reply(sse=frames, interval_s=3))
    stream = registry.get(Task.COMPLETION, "openai").stream(HELLO)
    list(stream)
    assert stream.result.text == "one" and len(server.requests) == 1  # cut before "two" came, 3 s later
    assert stream.result.cut == "OpenAI stopped sending for 1 s mid-answer: try again."


def test_a_reply_cut_mid_body_says_it_was_cut_not_that_it_could_not_connect(server):
    cut = Reply(json=chat_json("A caption that never arrives whole."), cut_body_after=40)
    server.script(cut, cut, cut)
    with pytest.raises(ProviderError) as info:
        registry.get(Task.CAPTIONING, "openai").caption(red_image())
    assert str(info.value) == "OpenAI closed the connection before the answer was complete: try again."
    assert len(server.requests) == 3  # retried, like any reply lost on the way
    server.reset()
    server.script(cut)
    assert registry.get(Task.CAPTIONING, "openai").caption(red_image()).text == "A 64x48 image, mostly red."
    assert len(server.requests) == 2


def test_malformed_json_body(server):
    server.script(Reply(body=b'{"id": "chatcmpl-1", "choices": [', headers={"Content-Type": "application/json"}))
    with pytest.raises(ProviderError) as info:
        registry.get(Task.CAPTIONING, "openai").caption(red_image())
    assert str(info.value) == "OpenAI sent a response this app could not read: try again later."
    assert len(server.requests) == 1


def test_malformed_stream_frame(server):
    server.script(Reply(sse=["data: {not json\n\n"]))
    with pytest.raises(ProviderError, match="could not read"):
        registry.get(Task.COMPLETION, "openai").complete(HELLO)
    assert len(server.requests) == 1


def test_error_event_inside_a_stream(server):
    frames = sse(
        chunk("gpt-4o-mini", {"content": "Partial"}),
        {"error": {"message": "The model overloaded mid-way.", "type": "server_error"}},
    )
    server.script(Reply(sse=frames))
    stream = registry.get(Task.COMPLETION, "openai").stream(HELLO)
    assert list(stream) == ["Partial"]
    assert "The model overloaded mid-way" in stream.result.cut and "OpenAI" in stream.result.cut


def test_a_refusal_is_reported_not_captioned(server):
    refusal = chat_json("")
    refusal["choices"][0]["message"].update(content=None, refusal="I can't help with that image.")
    server.script(Reply(json=refusal))
    with pytest.raises(ProviderError, match="OpenAI declined: I can't help with that image"):
        registry.get(Task.CAPTIONING, "openai").caption(red_image())


def test_a_reply_without_choices_is_malformed(server):
    server.script(Reply(json={**chat_json("x"), "choices": []}))
    with pytest.raises(ProviderError, match="could not read"):
        registry.get(Task.CAPTIONING, "openai").caption(red_image())
    assert len(server.requests) == 1


def test_an_image_link_instead_of_data_is_refused(server):
    server.script(Reply(json={"created": 1, "data": [{"url": "https://files.example.invalid/a.png"}]}))
    with pytest.raises(ProviderError, match="image link instead of image data"):
        registry.get(Task.IMAGE_GENERATION, "openai", model="dall-e-2").generate("a cat")


def test_an_undecodable_image_is_malformed(server):
    server.script(Reply(json={"created": 1, "data": [{"b64_json": base64.b64encode(b"not a png").decode()}]}))
    with pytest.raises(ProviderError, match="could not read"):
        registry.get(Task.IMAGE_GENERATION, "openai", model="dall-e-2").generate("a cat")


def test_embeddings_without_data_are_malformed(server):
    server.script(Reply(json={"object": "list", "data": [], "model": "m", "usage": {"prompt_tokens": 0}}))
    with pytest.raises(ProviderError, match="could not read"):
        registry.get(Task.EMBEDDINGS, "openai").embed(["one"])


def test_unreachable_server_is_a_connection_error(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")  # nothing listens there
    with pytest.raises(ProviderError) as info:
        registry.get(Task.EMBEDDINGS, "openai").embed(["one"])
    assert str(info.value).startswith("Could not connect to OpenAI")
    assert_clean(str(info.value))


def test_server_detail_echoing_the_key_is_redacted(server):
    server.script(error_reply(400, f"Bad request for key {KEY} (temperature)", param="temperature"))
    with pytest.raises(ProviderError) as info:
        registry.get(Task.CAPTIONING, "openai").caption(red_image())
    assert "rejected the request (400)" in str(info.value) and "[redacted]" in str(info.value)
    assert_clean(str(info.value))


# --------------------------------------------------------------------------- compatible endpoints

COMPATIBLE = """
[openai_compatible.alpha]
label = "Alpha vLLM"
base_url = "{alpha}/v1"
api_key_env = "ALPHA_KEY"
[openai_compatible.alpha.models]
completion = "alpha-chat"
embeddings = "alpha-embed"

[openai_compatible.beta]
label = "Beta Ollama"
base_url = "{beta}/v1"
[openai_compatible.beta.models]
completion = "llama3.2"
captioning = "llava"
zero-shot = "llava"

[openai_compatible.broken]
label = "Broken"
models = {{ completion = "m" }}
[openai_compatible.openai]
base_url = "http://example.invalid/v1"
"""


@pytest.fixture
def compatible(monkeypatch, tmp_path, servers, server):
    """Two named endpoints on two fake servers, next to `openai` on a third."""
    _, alpha, beta = servers
    config = write_config(tmp_path / "compatible.toml", COMPATIBLE.format(alpha=alpha.url, beta=beta.url))
    monkeypatch.setenv("FMG_CONFIG", str(config))
    monkeypatch.setenv("ALPHA_KEY", ALPHA_KEY)
    made = openai_api.providers()[1:]
    for provider in made:
        registry.register(provider)
    yield alpha, beta
    for provider in made:
        registry.unregister(provider.name)


def test_compatible_endpoints_are_providers_of_their_own(compatible, server):
    alpha, beta = compatible
    names = {p.name: p for p in openai_api.providers()}
    assert set(names) == {"openai", "alpha", "beta", "broken"}  # the reserved name "openai" is not taken over
    assert set(names["alpha"].adapters) == {Task.COMPLETION, Task.EMBEDDINGS}
    assert set(names["beta"].adapters) == {Task.COMPLETION, Task.CAPTIONING, Task.ZERO_SHOT}
    assert names["beta"].label == "Beta Ollama"

    assert registry.get(Task.COMPLETION, "alpha").complete(HELLO).text == "Echo from alpha-chat: hello there world"
    assert registry.get(Task.COMPLETION, "beta").complete(HELLO).text == "Echo from llama3.2: hello there world"
    assert registry.get(Task.COMPLETION, "openai").complete(HELLO).text == ECHO
    assert [len(s.requests) for s in (alpha, beta, server)] == [1, 1, 1]  # each to its own server
    assert alpha.requests[0].headers["authorization"] == f"Bearer {ALPHA_KEY}"
    assert beta.requests[0].headers["authorization"] == f"Bearer {openai_api.NO_KEY}"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert alpha.requests[0].json()["max_tokens"] == 256


def test_compatible_vision_and_float_embeddings(compatible):
    _alpha, beta = compatible
    caption = registry.get(Task.CAPTIONING, "beta").caption(red_image(32, 32))
    assert caption.text == "A 32x32 image, mostly red." and caption.provider == "beta" and caption.cost_usd is None
    assert registry.get(Task.ZERO_SHOT, "beta").classify(red_image(), ["red", "blue"]).best == "red"
    vectors = registry.get(Task.EMBEDDINGS, "alpha").embed(["a", "b"]).vectors  # alpha sends base64
    assert vectors.shape == (2, 8)
    floats = openai_api.Endpoint("beta", "Beta", None, f"{beta.url}/v1")  # beta ignores base64
    adapter = openai_api.OpenAIEmbedder("beta", "any", endpoint=floats)
    np.testing.assert_allclose(
        adapter.embed(["a"]).vectors[0], np.array(vector_for("a")) / np.linalg.norm(vector_for("a")), rtol=1e-5
    )
    assert beta.requests[-1].json()["encoding_format"] == "base64"  # asked, and floats came back


def test_compatible_key_problems_name_the_configured_variable(compatible, monkeypatch):
    _alpha, _ = compatible
    monkeypatch.delenv("ALPHA_KEY")
    with pytest.raises(MissingCredentials, match="Set ALPHA_KEY to use Alpha vLLM"):
        registry.get(Task.COMPLETION, "alpha")
    monkeypatch.setenv("ALPHA_KEY", "alpha-WRONG-key-000000")
    with pytest.raises(ProviderError) as info:
        registry.get(Task.COMPLETION, "alpha").complete(HELLO)
    assert str(info.value) == "Alpha vLLM rejected the API key (401): check ALPHA_KEY."


def test_a_key_from_a_custom_variable_is_redacted(compatible):
    alpha, _ = compatible
    alpha.script(error_reply(400, f"bad token {ALPHA_KEY} in request"))
    with pytest.raises(ProviderError) as info:
        registry.get(Task.COMPLETION, "alpha").complete(HELLO)
    assert "[redacted]" in str(info.value)
    assert_clean(str(info.value), ALPHA_KEY)
    assert ALPHA_KEY not in keys.redact(f"x {ALPHA_KEY} y")


def test_a_broken_table_says_what_to_fix(compatible):
    option = next(o for o in registry.options(Task.COMPLETION) if o.provider == "broken")
    assert not option.usable and "needs a base_url" in option.reason and "openai_compatible.broken" in option.reason
    with pytest.raises(ProviderUnavailable, match="base_url"):
        registry.get(Task.COMPLETION, "broken", api_key="sk-whatever-123456")


def test_model_overrides_apply_to_compatible_endpoints(compatible, monkeypatch):
    _alpha, _ = compatible
    monkeypatch.setenv("FMG_MODEL_ALPHA_COMPLETION", "alpha-big")
    assert registry.providers()["alpha"].model(Task.COMPLETION) == "alpha-big"


def test_endpoint_table_validation():
    ep = openai_api.endpoint_from_table("x", {"base_url": "ftp://nope", "models": {"no-such-task": "m"}})
    assert ep.problem and "base_url" in ep.problem and ep.models == {}
    ep = openai_api.endpoint_from_table("y", {"base_url": "http://h/v1", "max_tokens_param": "n_predict"})
    assert ep.problem and "max_tokens_param" in ep.problem
    ep = openai_api.endpoint_from_table("z", {"base_url": " http://h/v1 ", "max_tokens_param": "max_completion_tokens"})
    assert ep.problem is None and ep.url() == "http://h/v1" and ep.max_tokens_param() == "max_completion_tokens"
    assert ep.label == "z" and ep.key_var is None and ep.env_key() == openai_api.NO_KEY


def test_a_data_uri_round_trips():
    uri = inputs.jpeg_data_uri(red_image(10, 20))
    assert uri.startswith("data:image/jpeg;base64,")
    _media, image = decode_data_uri(uri)
    assert image.size == (10, 20) and base64.b64decode(uri.split(",", 1)[1])[:2] == b"\xff\xd8"
