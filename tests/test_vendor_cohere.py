"""The Cohere adapters: the real `cohere` SDK over real HTTP against a local fake of API v2.

Every task Cohere serves is covered on success, then each fault of the shared policy: rejected
key, unknown model, rate limit with Retry-After, server errors (once and forever), a slow first
byte, a stream cut mid-way or ended early, malformed JSON, no server at all. Each fault test
checks the attempts the server saw, the time taken and the message a user would read.
"""

from __future__ import annotations

import email.utils
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapters import cohere_api, registry
from adapters.errors import (
    BadInput,
    MissingCredentials,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    UnknownProvider,
)
from adapters.types import CompletionParams, Task
from tests.fakes import cohere_server
from tests.fakes.http_server import FakeServer, Reply

KEY = "sk-test-DISTINCTIVE-123456"
DEADLINE_S = 5  # FMG_TIMEOUT_S and FMG_FIRST_TOKEN_TIMEOUT_S, as `env` sets them
MARGIN_S = 2.0  # over a deadline, for a loaded 2-core machine: only to catch a call that ignores it
SLOW_S = 4  # a scripted server delay, far past the 1 s deadlines that the slow-server tests set
ROOT = Path(__file__).resolve().parents[1]
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
COMPLETION_MODEL = "command-r-08-2024"


@pytest.fixture(scope="module")
def server():
    import cohere  # noqa: F401 - import the SDK once, so no timed test pays for it

    with FakeServer(cohere_server.route) as fake:
        yield fake


@pytest.fixture(autouse=True)
def env(server, monkeypatch, tmp_path):
    server.reset()
    settings = tmp_path / "fm-gallery.toml"
    settings.write_text("[settings]\nmax_backoff_s = 0.2\n")
    monkeypatch.setenv("FMG_CONFIG", str(settings))
    monkeypatch.setenv("CO_API_KEY", KEY)
    monkeypatch.setenv("CO_API_URL", server.url)
    monkeypatch.setenv("FMG_TIMEOUT_S", str(DEADLINE_S))
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", str(DEADLINE_S))
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "3")
    monkeypatch.delenv(cohere_api.RERANK_MODEL_VAR, raising=False)
    for task in Task:
        monkeypatch.delenv(f"FMG_MODEL_COHERE_{task.value.upper().replace('-', '_')}", raising=False)
    registry.register(registry.providers()["cohere"])  # fresh adapters: no cached clients or labels
    yield


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


def assert_clean(message: str, *words: str) -> None:
    """A user-facing message: names Cohere, says what to do, leaks nothing."""
    assert "Cohere" in message
    assert KEY not in message
    assert "Traceback" not in message and "headers:" not in message and "status_code" not in message
    for word in words:
        assert word in message, (word, message)


def frames(text: str = "Hello there") -> list[str]:
    body = {"model": COMPLETION_MODEL, "messages": [{"role": "user", "content": text}]}
    return cohere_server.stream_frames(body)


def completer():
    return registry.get(Task.COMPLETION, "cohere")


def embedder():
    return registry.get(Task.EMBEDDINGS, "cohere")


# -- wiring ------------------------------------------------------------------------------------


def test_importing_the_module_does_not_import_the_sdk():
    code = "import sys, adapters.cohere_api, adapters.registry as r; r.providers(); assert 'cohere' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("CO_API_KEY")
    with pytest.raises(MissingCredentials, match="Set CO_API_KEY to use Cohere"):
        completer()
    option = next(o for o in registry.options(Task.EMBEDDINGS) if o.provider == "cohere")
    assert not option.usable and "CO_API_KEY" in option.reason


def test_a_session_key_is_sent_and_overrides_the_environment(server, monkeypatch):
    monkeypatch.delenv("CO_API_KEY")
    adapter = registry.get(Task.EMBEDDINGS, "cohere", api_key="sk-session-OTHER-654321")
    adapter.embed(["one text"])
    assert server.requests[-1].headers["authorization"] == "Bearer sk-session-OTHER-654321"


def test_the_env_key_is_sent_as_a_bearer_token(server):
    embedder().embed(["one text"])
    assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_sdk_missing_names_the_package(monkeypatch):
    real = cohere_api.importlib.util.find_spec
    monkeypatch.setattr(cohere_api.importlib.util, "find_spec", lambda name: None if name == "cohere" else real(name))
    problem = cohere_api.check(Task.COMPLETION, COMPLETION_MODEL)
    assert isinstance(problem, ProviderUnavailable) and "pip install cohere" in str(problem)


def test_cohere_has_no_image_generation():
    with pytest.raises(UnknownProvider, match="Cohere has no image generation"):
        registry.get(Task.IMAGE_GENERATION, "cohere")
    option = next(o for o in registry.options(Task.IMAGE_GENERATION) if o.provider == "cohere")
    assert option.reason == "Cohere has no image generation."


def test_building_the_client_is_not_in_the_reported_latency(server, monkeypatch):
    """The first ClientV2 of a process took 1.9 s to build: a call's latency is the server's."""
    real, built_at = cohere_api._build_client, []

    def slow_build(api_key, base_url):
        time.sleep(0.5)
        client = real(api_key, base_url)
        built_at.append(time.perf_counter())
        return client

    monkeypatch.setattr(cohere_api, "_build_client", slow_build)
    caption = registry.get(Task.CAPTIONING, "cohere").caption(solid((220, 30, 30)))
    done_at = time.perf_counter()
    stream = completer().stream(CHAT)
    first_delta_at = None
    for _ in stream:
        first_delta_at = first_delta_at or time.perf_counter()
    assert len(built_at) == 2 and stream.result.text  # one client per adapter
    assert caption.latency_s <= done_at - built_at[0]  # timed from when the client existed
    assert stream.result.ttft_s <= first_delta_at - built_at[1]


def test_warm_up_builds_the_clients_of_usable_vendors_before_any_call(server, monkeypatch):
    built = []
    real = cohere_api._build_client
    monkeypatch.setattr(cohere_api, "_build_client", lambda *a: built.append(a) or real(*a))
    registry.warm_up().join(30)
    assert len(built) == len(registry.providers()["cohere"].adapters)  # one client per task's adapter
    assert completer().complete(CHAT).text and embedder().embed(["a"]).vectors.shape[0] == 1
    assert len(built) == len(registry.providers()["cohere"].adapters)  # the calls built nothing


def test_a_changed_key_rebuilds_the_client(server, monkeypatch):
    adapter = embedder()
    adapter.embed(["a"])
    first = adapter._sdk()
    monkeypatch.setenv("CO_API_KEY", "sk-test-ROTATED-999999")
    adapter.embed(["a"])
    assert adapter._sdk() is not first
    assert server.requests[-1].headers["authorization"] == "Bearer sk-test-ROTATED-999999"


# -- completion --------------------------------------------------------------------------------


def test_stream_yields_deltas_usage_and_finish(server):
    stream = completer().stream(CHAT, CompletionParams(max_tokens=50, temperature=0.2, top_p=1.0, seed=7))
    deltas = list(stream)
    result = stream.result
    assert deltas == ["command-r-08-2024", " says:", " Hello", " there"]
    assert result.text == "command-r-08-2024 says: Hello there"
    assert result.finish_reason == "stop" and result.cut is None
    assert result.usage.input_tokens == 4 and result.usage.output_tokens == 4  # billed units, not raw tokens
    assert result.cost_usd is not None and result.cost_usd > 0
    assert result.ttft_s is not None and result.provider == "cohere" and result.model == COMPLETION_MODEL
    (request,) = server.requests
    body = request.json()
    assert request.path == "/v2/chat" and body["stream"] is True
    assert body["messages"] == CHAT and body["model"] == COMPLETION_MODEL
    assert body["max_tokens"] == 50 and body["temperature"] == 0.2 and body["seed"] == 7
    assert body["p"] == 0.99  # top_p 1.0 ("off") becomes Cohere's highest accepted p


def test_stream_without_seed_sends_none(server):
    completer().complete(CHAT, CompletionParams(top_p=0.5))
    body = server.requests[0].json()
    assert "seed" not in body and body["p"] == 0.5


def test_max_tokens_finish_is_length():
    result = completer().complete(CHAT, CompletionParams(max_tokens=2))
    assert result.text == "command-r-08-2024 says:" and result.finish_reason == "length"


def test_stream_cut_mid_way_keeps_the_text(server):
    server.script(Reply(sse=frames(), cut_after=4))  # message-start, content-start, 2 deltas, then gone
    stream = completer().stream(CHAT)
    assert list(stream) == ["command-r-08-2024", " says:"]
    result = stream.result
    assert result.text == "command-r-08-2024 says:"
    assert result.cut and result.finish_reason is None
    assert_clean(result.cut, "try again")
    assert len(server.requests) == 1  # nothing is retried once text has arrived


def test_stream_that_ends_without_message_end_is_marked_cut(server):
    server.script(Reply(sse=frames()[:-1]))
    result = completer().complete(CHAT)
    assert result.text == "command-r-08-2024 says: Hello there"
    assert_clean(result.cut, "ended the answer early")


def test_stream_ending_in_error_is_marked_cut(server):
    body = {"model": COMPLETION_MODEL, "messages": [{"role": "user", "content": "Hello there"}]}
    server.script(Reply(sse=cohere_server.stream_frames(body, finish_reason="ERROR", error_text="overloaded")))
    result = completer().complete(CHAT)
    assert result.text and result.usage is not None
    assert_clean(result.cut, "overloaded")


def test_stream_500_before_the_first_event_is_retried(server):
    server.script(cohere_server.error(500, "internal error"))
    result = completer().complete(CHAT)
    assert result.text.endswith("Hello there") and len(server.requests) == 2


def test_stream_429_honours_retry_after(server):
    server.script(cohere_server.error(429, "too many requests", headers={"Retry-After": "1"}))
    started = time.monotonic()
    result = completer().complete(CHAT)
    assert result.text and len(server.requests) == 2
    assert 1.0 <= time.monotonic() - started < DEADLINE_S + MARGIN_S


def test_stream_500_forever_stops_after_max_attempts(server):
    server.script(*[cohere_server.error(500, "internal error") for _ in range(5)])
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        completer().complete(CHAT)
    assert len(server.requests) == 3 and time.monotonic() - started < DEADLINE_S + MARGIN_S
    assert_clean(str(caught.value), "server error (500)")


def test_stream_answered_with_plain_json_is_malformed(server):
    server.script(Reply(json={"id": "x", "message": "not a stream"}))
    with pytest.raises(ProviderError) as caught:
        completer().complete(CHAT)
    assert len(server.requests) == 1
    assert_clean(str(caught.value), "could not read")


def test_stream_of_unreadable_frames_fails_instead_of_returning_nothing(server):
    server.script(Reply(sse=["event: content-delta\ndata: {not json\n\n", "data: ]]]\n\n"]))
    with pytest.raises(ProviderError) as caught:
        completer().complete(CHAT)
    assert_clean(str(caught.value), "sent a response this app could not read")  # it did not end early: unreadable
    assert len(server.requests) == 1


def test_an_unreadable_frame_mid_stream_cuts_the_answer_instead_of_dropping_text(server):
    good = frames()
    server.script(Reply(sse=[*good[:3], "event: content-delta\ndata: {not json\n\n", *good[3:]]))
    result = completer().complete(CHAT)
    assert result.text == "command-r-08-2024"  # what came before the unreadable frame, and nothing after it
    assert_clean(result.cut, "sent a response this app could not read")


def test_stream_slow_first_byte_fails_at_the_first_token_deadline(server, monkeypatch):
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", "1")
    server.script(Reply(sse=frames(), delay_s=SLOW_S))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        completer().complete(CHAT)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < SLOW_S  # gave up at its deadline, before the server answered
    assert len(server.requests) == 1
    assert_clean(str(caught.value), "did not start answering within 1 s")


def test_stream_stalling_midway_is_cut_by_the_idle_deadline(server, monkeypatch):
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", "1")
    server.script(Reply(sse=frames()[2:], interval_s=3))  # the first delta at once, then 3 s between events
    stream = completer().stream(CHAT)
    assert list(stream) == ["command-r-08-2024"]  # cut before the next delta came, 3 s later
    assert stream.result.cut == "Cohere stopped sending for 1 s mid-answer: try again."
    assert len(server.requests) == 1


def test_stream_401_is_not_retried(server):
    server.script(cohere_server.error(401, "invalid api token"))
    with pytest.raises(ProviderError) as caught:
        completer().complete(CHAT)
    assert caught.value.status == 401 and len(server.requests) == 1
    assert_clean(str(caught.value), "rejected the API key", "CO_API_KEY")


# -- captioning --------------------------------------------------------------------------------


def test_caption_sends_text_and_a_data_uri(server):
    caption = registry.get(Task.CAPTIONING, "cohere").caption(solid((220, 30, 30)))
    assert caption.text == "A 64x48 image, mostly red (by command-a-vision-07-2025)."
    assert caption.usage.input_tokens > 0 and caption.usage.output_tokens > 0
    assert caption.cost_usd is not None
    (request,) = server.requests
    body = request.json()
    assert body["model"] == "command-a-vision-07-2025" and body["stream"] is False
    text_part, image_part = body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": cohere_api.CAPTION_PROMPT}
    assert image_part["type"] == "image_url" and image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_caption_uses_the_given_prompt(server):
    registry.get(Task.CAPTIONING, "cohere").caption(solid((0, 0, 200)), prompt="What colour is it?")
    assert server.requests[0].json()["messages"][0]["content"][0]["text"] == "What colour is it?"


def test_caption_malformed_json_is_not_retried(server):
    server.script(Reply(body=b'{"id": "x", "message": {"content": [{"type": "text", "te'))
    with pytest.raises(ProviderError) as caught:
        registry.get(Task.CAPTIONING, "cohere").caption(solid((0, 200, 0)))
    assert len(server.requests) == 1
    assert_clean(str(caught.value), "could not read")


def test_caption_unknown_model_is_a_404(server):
    with pytest.raises(ProviderError) as caught:
        registry.get(Task.CAPTIONING, "cohere", model="no-such-model").caption(solid((0, 200, 0)))
    assert caught.value.status == 404 and len(server.requests) == 1
    assert_clean(str(caught.value), "does not know that model", "check the model name")


# -- embeddings --------------------------------------------------------------------------------


def test_embeddings_are_batched_by_96_and_normalised(server):
    texts = [f"passage number {i}" for i in range(200)]
    result = embedder().embed(texts)
    assert result.vectors.shape == (200, cohere_server.DIM) and result.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    expected = np.asarray([cohere_server.text_vector(t) for t in texts[:3]], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(result.vectors[:3], expected, atol=1e-5)
    bodies = [r.json() for r in server.requests]
    assert [len(b["texts"]) for b in bodies] == [96, 96, 8]
    assert all(b["input_type"] == "search_document" and b["embedding_types"] == ["float"] for b in bodies)
    assert result.usage.input_tokens == 600 and result.cost_usd is not None


def test_query_embeddings_use_search_query(server):
    embedder().embed("where is the red car", kind="query")
    assert server.requests[0].json()["input_type"] == "search_query"


def test_embeddings_malformed_json_is_not_retried(server):
    server.script(Reply(body=b'{"id": "x", "embeddings": {"float": [[0.1, 0.2'))
    with pytest.raises(ProviderError) as caught:
        embedder().embed(["a"])
    assert len(server.requests) == 1
    assert_clean(str(caught.value), "sent a response this app could not read")


def test_embeddings_wrong_shape_is_malformed(server):
    server.script(Reply(json={"id": "x", "embeddings": {"float": []}, "meta": {}}))
    with pytest.raises(ProviderError, match="could not read"):
        embedder().embed(["a", "b"])


def test_embeddings_429_honours_retry_after(server):
    server.script(cohere_server.error(429, "too many requests", headers={"Retry-After": "1"}))
    started = time.monotonic()
    result = embedder().embed(["a"])
    elapsed = time.monotonic() - started
    assert result.vectors.shape[0] == 1 and len(server.requests) == 2
    assert 1.0 <= elapsed < DEADLINE_S + MARGIN_S


def test_retry_after_as_an_http_date_is_read_against_the_servers_clock(server):
    server_now = time.time() - 3600  # a server clock an hour behind: the date is past by this machine's
    server.script(
        cohere_server.error(
            429,
            "too many requests",
            headers={
                "Date": email.utils.formatdate(server_now, usegmt=True),
                "Retry-After": email.utils.formatdate(server_now + 1, usegmt=True),
            },
        )
    )
    started = time.monotonic()
    embedder().embed(["a"])
    assert len(server.requests) == 2 and time.monotonic() - started >= 1.0


def test_embeddings_500_then_success(server):
    server.script(cohere_server.error(500, "internal error"))
    assert embedder().embed(["a"]).vectors.shape[0] == 1
    assert len(server.requests) == 2


def test_embeddings_500_forever_stops_after_max_attempts(server):
    server.script(*[cohere_server.error(503, "unavailable") for _ in range(5)])
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        embedder().embed(["a"])
    elapsed = time.monotonic() - started
    assert len(server.requests) == 3 and elapsed < DEADLINE_S + MARGIN_S
    assert caught.value.status == 503
    assert_clean(str(caught.value), "server error", "try again later")


def test_embeddings_slow_first_byte_fails_at_the_deadline(server, monkeypatch):
    monkeypatch.setenv("FMG_TIMEOUT_S", "1")
    server.script(Reply(json={}, delay_s=SLOW_S))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        embedder().embed(["a"])
    assert time.monotonic() - started < SLOW_S and len(server.requests) == 1
    assert_clean(str(caught.value), "FMG_TIMEOUT_S")


def test_invalid_token_498_reads_as_a_key_problem(server):
    server.script(cohere_server.error(498, "invalid token"))
    with pytest.raises(ProviderError) as caught:
        embedder().embed(["a"])
    assert len(server.requests) == 1
    assert_clean(str(caught.value), "rejected the API key", "CO_API_KEY")


def test_a_key_echoed_by_the_server_is_redacted(server):
    server.script(cohere_server.error(400, f"bad request for key {KEY}"))
    with pytest.raises(ProviderError) as caught:
        embedder().embed(["a"])
    assert_clean(str(caught.value), "rejected the request (400)", "[redacted]")


def test_no_server_is_a_connection_error(monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CO_API_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderError) as caught:
        embedder().embed(["a"])
    assert caught.value.retryable
    assert_clean(str(caught.value), "Could not connect to Cohere")


# -- zero-shot ---------------------------------------------------------------------------------


def test_zero_shot_ranks_by_image_text_similarity(server):
    result = registry.get(Task.ZERO_SHOT, "cohere").classify(solid((230, 20, 20)), ["green", "red", "blue"])
    assert result.best == "red" and result.calibrated is False
    assert abs(sum(score for _, score in result.scores) - 1) < 1e-9
    image_request, label_request = (r.json() for r in server.requests)
    assert image_request["images"][0].startswith("data:image/jpeg;base64,") and "texts" not in image_request
    assert image_request["input_type"] == "search_document" and image_request["model"] == "embed-v4.0"
    assert label_request["texts"] == ["a photo of green", "a photo of red", "a photo of blue"]
    assert label_request["input_type"] == "search_query"
    assert result.usage.images == 1 and result.usage.input_tokens == 12


def test_zero_shot_caches_label_embeddings(server):
    classifier = registry.get(Task.ZERO_SHOT, "cohere")
    classifier.classify(solid((20, 20, 230)), ["red", "blue"])
    server.reset()
    again = classifier.classify(solid((20, 230, 20)), ["red", "blue", "green"])
    assert again.best == "green"
    bodies = [r.json() for r in server.requests]
    assert len(bodies) == 2 and bodies[1]["texts"] == ["a photo of green"]  # only the new label
    server.reset()
    classifier.classify(solid((230, 20, 20)), "blue, red")
    assert len(server.requests) == 1 and "images" in server.requests[0].json()


def test_zero_shot_image_input_type_for_embed_v3(server):
    registry.get(Task.ZERO_SHOT, "cohere", model="embed-english-v3.0").classify(solid((230, 20, 20)), ["red", "blue"])
    assert server.requests[0].json()["input_type"] == "image"


def test_zero_shot_401_is_not_retried(server):
    server.script(cohere_server.error(401, "invalid api token"))
    with pytest.raises(ProviderError) as caught:
        registry.get(Task.ZERO_SHOT, "cohere").classify(solid((230, 20, 20)), ["red", "blue"])
    assert len(server.requests) == 1
    assert_clean(str(caught.value), "CO_API_KEY")


def test_image_and_label_embeddings_are_what_zero_shot_compares(server):
    classifier = registry.get(Task.ZERO_SHOT, "cohere")
    assert classifier.embeds
    images = [solid((230, 20, 20)), solid((20, 200, 30)), solid((30, 20, 220)), solid((200, 40, 190))]
    labels = ["green", "red", "blue"]
    embedded = classifier.embed_images(images)
    assert embedded.vectors.shape == (4, cohere_server.DIM) and embedded.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(embedded.vectors, axis=1), 1.0, atol=1e-6)
    bodies = [r.json() for r in server.requests]
    assert len(bodies) == 4 and all(len(b["images"]) == 1 and b["input_type"] == "search_document" for b in bodies)
    assert embedded.usage.images == 4 and embedded.usage.input_tokens is None
    uri = bodies[0]["images"][0]
    expected = np.asarray(cohere_server.image_vector(uri), dtype=np.float32)
    assert np.allclose(embedded.vectors[0], expected / np.linalg.norm(expected), atol=1e-6)  # the server's vector
    server.reset()
    label_vectors = classifier.embed_labels(labels)
    (request,) = server.requests
    assert request.json()["texts"] == ["a photo of green", "a photo of red", "a photo of blue"]
    assert request.json()["input_type"] == "search_query" and label_vectors.usage.input_tokens == 12
    server.reset()
    picks = [labels[i] for i in (embedded.vectors @ label_vectors.vectors.T).argmax(axis=1)]
    assert picks[:3] == ["red", "green", "blue"]
    assert picks == [classifier.classify(image, labels).best for image in images]
    assert all("texts" not in r.json() for r in server.requests)  # classify found the labels cached


def test_label_embeddings_share_the_zero_shot_cache(server):
    classifier = registry.get(Task.ZERO_SHOT, "cohere")
    classifier.classify(solid((230, 20, 20)), ["red", "blue"])
    server.reset()
    vectors = classifier.embed_labels(["blue", "red", "green"]).vectors
    (request,) = server.requests
    assert request.json()["texts"] == ["a photo of green"]  # only the label classify had not embedded
    expected = np.asarray([cohere_server.text_vector(f"a photo of {c}") for c in ("blue", "red", "green")])
    assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)


def test_image_embeddings_401_is_not_retried(server):
    server.script(cohere_server.error(401, "invalid api token"))
    with pytest.raises(ProviderError) as caught:
        registry.get(Task.ZERO_SHOT, "cohere").embed_images([solid((230, 20, 20)), solid((20, 20, 230))])
    assert caught.value.status == 401 and len(server.requests) == 1  # nor is the second image sent
    assert_clean(str(caught.value), "rejected the API key", "CO_API_KEY")


def test_image_embeddings_500_is_retried_then_succeeds(server):
    server.script(cohere_server.error(500, "internal error"))
    result = registry.get(Task.ZERO_SHOT, "cohere").embed_images([solid((230, 20, 20))])
    assert result.vectors.shape == (1, cohere_server.DIM) and len(server.requests) == 2


def test_label_embeddings_500_forever_stops_after_max_attempts(server):
    server.script(*[cohere_server.error(500, "internal error") for _ in range(5)])
    with pytest.raises(ProviderError) as caught:
        registry.get(Task.ZERO_SHOT, "cohere").embed_labels(["red", "blue"])
    assert caught.value.status == 500 and len(server.requests) == 3
    assert_clean(str(caught.value), "server error (500)")


def test_label_embeddings_wrong_shape_is_malformed(server):
    server.script(Reply(json={"id": "x", "embeddings": {"float": [[0.1, 0.2]]}, "meta": {}}))
    with pytest.raises(ProviderError) as caught:
        registry.get(Task.ZERO_SHOT, "cohere").embed_labels(["red", "blue"])
    assert_clean(str(caught.value), "could not read")


# -- rerank ------------------------------------------------------------------------------------


DOCS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital of France.",
    "Bananas are yellow.",
    "France borders Spain.",
]


def test_rerank_orders_documents(server):
    pairs = cohere_api.reranker().rerank("capital of France", DOCS, top_n=2)
    assert [index for index, _ in pairs] == [1, 0]
    assert pairs[0][1] == 1.0
    body = server.requests[0].json()
    assert server.requests[0].path == "/v2/rerank"
    assert body == {"model": "rerank-v3.5", "query": "capital of France", "documents": DOCS, "top_n": 2}


def test_rerank_model_comes_from_the_environment(server, monkeypatch):
    monkeypatch.setenv(cohere_api.RERANK_MODEL_VAR, "rerank-v9")
    cohere_api.reranker().rerank("capital", DOCS)
    assert server.requests[0].json()["model"] == "rerank-v9"


def test_rerank_follows_the_fault_policy(server):
    server.script(cohere_server.error(429, "slow down", headers={"Retry-After": "0.3"}))
    assert len(cohere_api.reranker().rerank("capital", DOCS)) == 4
    assert len(server.requests) == 2


def test_rerank_checks_its_input_and_credentials(monkeypatch):
    with pytest.raises(BadInput, match="query is empty"):
        cohere_api.reranker().rerank("  ", DOCS)
    assert cohere_api.reranker().rerank("capital", []) == []
    monkeypatch.delenv("CO_API_KEY")
    assert isinstance(cohere_api.rerank_check(), MissingCredentials)
    with pytest.raises(MissingCredentials, match="CO_API_KEY"):
        cohere_api.reranker()
    assert cohere_api.rerank_check(api_key="sk-session-OTHER-654321") is None


def test_rerank_uses_a_typed_key_only_when_the_session_provider_is_cohere(server, monkeypatch):
    monkeypatch.delenv("CO_API_KEY")
    typed = "sk-session-OTHER-654321"
    problem = cohere_api.rerank_check(api_key=typed, provider="openai")  # typed for OpenAI: not Cohere's
    assert isinstance(problem, MissingCredentials)
    assert str(problem) == "Reranking uses Cohere: set CO_API_KEY, or pick Cohere as the provider and type its key."
    with pytest.raises(MissingCredentials):
        cohere_api.reranker(api_key=typed, provider="openai")
    assert server.requests == []
    cohere_api.reranker(api_key=typed, provider="cohere").rerank("capital", DOCS)
    assert server.requests[0].headers["authorization"] == f"Bearer {typed}"
