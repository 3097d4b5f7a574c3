"""Layer 1: the task interfaces, registry, input checks and config, with the fake provider."""

from __future__ import annotations

import email.utils
import threading
import time

import numpy as np
import pytest
from PIL import Image

from adapters import config, faults, inputs, registry
from adapters.errors import BadInput, MissingCredentials, ProviderError, ProviderTimeout, UnknownProvider
from adapters.prices import estimate_cost, price_table
from adapters.tasks import Completer
from adapters.types import CompletionParams, ImageParams, Task, Usage

USER = [{"role": "user", "content": "hello there world"}]


def png(tmp_path, size=(64, 48), name="img.png", mode="RGB"):
    path = tmp_path / name
    Image.new(mode, size, "red" if mode == "RGB" else 0).save(path)
    return path


# --- registry ---------------------------------------------------------------------------------


def test_unknown_provider_names_the_valid_ones(fake_provider):
    with pytest.raises(UnknownProvider) as err:
        registry.get(Task.CAPTIONING, "nope")
    assert "'nope'" in str(err.value) and "local" in str(err.value) and "fake" in str(err.value)


def test_every_task_lists_every_provider_with_a_reason_when_not_usable(fake_provider):
    for task in Task:
        opts = registry.options(task)
        names = [o.provider for o in opts]
        assert "fake" in names and "local" in names
        assert all(o.usable or o.reason for o in opts)
        # usable ones are listed first
        usable = [o.usable for o in opts]
        assert usable == sorted(usable, reverse=True)


def test_missing_key_names_the_variable_and_a_session_key_bypasses_it(fake_provider, monkeypatch):
    with pytest.raises(MissingCredentials, match="FAKE_API_KEY"):
        registry.get(Task.COMPLETION, "fake", model="needs-key")
    adapter = registry.get(Task.COMPLETION, "fake", model="needs-key", api_key="sk-session-123456")
    assert adapter.api_key == "sk-session-123456"
    # a session-key adapter is never the shared cached one
    monkeypatch.setenv("FAKE_API_KEY", "x")
    shared = registry.get(Task.COMPLETION, "fake", model="needs-key")
    assert shared.api_key is None and shared is not adapter
    assert registry.get(Task.COMPLETION, "fake", model="needs-key") is shared


def test_provider_without_the_task_says_so(fake_provider):
    registry.register(registry.Provider("textonly", "Text only", {Task.COMPLETION: Completer}))
    try:
        with pytest.raises(UnknownProvider, match="Text only has no image generation"):
            registry.get(Task.IMAGE_GENERATION, "textonly")
        opt = next(o for o in registry.options(Task.IMAGE_GENERATION) if o.provider == "textonly")
        assert not opt.usable and "no image generation" in opt.reason
    finally:
        registry.unregister("textonly")


def test_local_zero_shot_without_weights_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    opt = next(o for o in registry.options(Task.ZERO_SHOT) if o.provider == "local")
    assert not opt.usable
    assert "python -m adapters.local fetch openai/clip-vit-base-patch32" in opt.reason
    assert "FMG_MODEL_LOCAL_ZERO_SHOT" in opt.reason


# --- config ------------------------------------------------------------------------------------


def test_model_ids_come_from_env_then_toml_then_defaults(monkeypatch, tmp_path):
    assert config.model_for("openai", Task.EMBEDDINGS) == config.DEFAULT_MODELS["openai"][Task.EMBEDDINGS]
    cfg = tmp_path / "fm.toml"
    cfg.write_text('[models.openai]\nembeddings = "from-toml"\n[settings]\ntimeout_s = 7\n')
    monkeypatch.setenv("FMG_CONFIG", str(cfg))
    assert config.model_for("openai", Task.EMBEDDINGS) == "from-toml"
    assert config.settings().timeout_s == 7
    monkeypatch.setenv("FMG_MODEL_OPENAI_EMBEDDINGS", "from-env")
    monkeypatch.setenv("FMG_TIMEOUT_S", "3.5")
    assert config.model_for("openai", Task.EMBEDDINGS) == "from-env"
    assert config.settings().timeout_s == 3.5


def test_broken_config_file_is_a_clear_error(monkeypatch, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[models\n")
    monkeypatch.setenv("FMG_CONFIG", str(cfg))
    with pytest.raises(BadInput, match="could not be read"):
        config.model_for("openai", Task.COMPLETION)


# --- completion ----------------------------------------------------------------------------------


def test_stream_yields_deltas_then_a_result_with_usage_and_ttft(fake_provider):
    stream = registry.get(Task.COMPLETION, "fake").stream(USER, CompletionParams(max_tokens=3))
    deltas = list(stream)
    assert "".join(deltas) == "echo: hello there"
    r = stream.result
    assert r.text == "echo: hello there" and r.provider == "fake" and r.model == "fake-1"
    assert r.usage == Usage(input_tokens=3, output_tokens=3) and r.finish_reason == "stop"
    assert 0 <= r.ttft_s <= r.latency_s and r.cut is None


def test_stream_broken_midway_keeps_text_and_marks_it_cut(fake_provider):
    stream = registry.get(Task.COMPLETION, "fake").stream([{"role": "user", "content": "CUT me now please"}])
    assert list(stream) == ["echo:", " CUT"]
    assert stream.result.text == "echo: CUT" and "broke off" in stream.result.cut


def test_failure_before_any_text_is_raised(fake_provider):
    with pytest.raises(ProviderError, match="server error"):
        registry.get(Task.COMPLETION, "fake").complete([{"role": "user", "content": "FAIL"}])


@pytest.mark.parametrize(
    "messages, match",
    [
        ([], "empty"),
        ([{"role": "user", "content": "   "}], "empty"),
        ([{"role": "robot", "content": "hi"}], "role"),
        ([{"role": "user", "content": 3}], "role"),
        ([{"role": "user", "content": "x" * (inputs.MAX_CONVERSATION_CHARS + 1)}], "limit"),
    ],
)
def test_bad_messages(fake_provider, messages, match):
    with pytest.raises(BadInput, match=match):
        registry.get(Task.COMPLETION, "fake").stream(messages)


@pytest.mark.parametrize(
    "params, match",
    [
        (CompletionParams(max_tokens=0), "max_tokens"),
        (CompletionParams(temperature=5), "temperature"),
        (CompletionParams(top_p=0), "top_p"),
        (CompletionParams(max_tokens="many"), "whole number"),
    ],
)
def test_bad_completion_params(fake_provider, params, match):
    with pytest.raises(BadInput, match=match):
        registry.get(Task.COMPLETION, "fake").complete(USER, params)


# --- images --------------------------------------------------------------------------------------


def test_classification_scores_sum_to_one_best_first(fake_provider, tmp_path):
    r = registry.get(Task.ZERO_SHOT, "fake").classify(str(png(tmp_path, (60, 20))), "a cat, a dog, sixchr")
    assert next(label for label, _ in r.scores) == "sixchr"
    assert abs(sum(s for _, s in r.scores) - 1) < 1e-9
    assert r.scores == tuple(sorted(r.scores, key=lambda p: -p[1]))


@pytest.mark.parametrize("labels", ["cat", "cat, CAT,  cat ", "", None, [" ", "dog"]])
def test_fewer_than_two_labels_is_bad_input(fake_provider, tmp_path, labels):
    with pytest.raises(BadInput, match="at least two"):
        registry.get(Task.ZERO_SHOT, "fake").classify(str(png(tmp_path)), labels)


def test_image_inputs_are_checked_before_decoding(fake_provider, tmp_path, monkeypatch):
    cap = registry.get(Task.CAPTIONING, "fake")
    with pytest.raises(BadInput, match="No image"):
        cap.caption(None)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(png(tmp_path).read_bytes()[:60])
    with pytest.raises(BadInput, match="corrupt"):
        cap.caption(str(corrupt))
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(BadInput, match="not an image"):
        cap.caption(str(text))
    with pytest.raises(BadInput, match="Expected an image"):
        cap.caption(12345)


def test_decompression_bomb_is_refused_without_decoding(fake_provider, tmp_path):
    # a 20000 x 20000 PNG compresses to a few hundred KB but would decode to 1.2 GB
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    assert bomb.stat().st_size < 2_000_000
    with pytest.raises(BadInput, match="megapixel"):
        registry.get(Task.CAPTIONING, "fake").caption(str(bomb))


def test_images_are_converted_to_rgb_and_large_ones_scaled_down(tmp_path):
    img = inputs.load_image(str(png(tmp_path, (4000, 100), mode="L")))
    assert img.mode == "RGB" and max(img.size) == inputs.MAX_IMAGE_SIDE
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert inputs.load_image(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_caption_carries_served_by(fake_provider, tmp_path):
    r = registry.get(Task.CAPTIONING, "fake").caption(str(png(tmp_path)), "  a photo of ")
    assert r.text == "a photo of a 64x48 image" and r.served_by == "fake-backend"


def test_generation_reports_every_step_and_the_seed(fake_provider):
    steps = []
    gen = registry.get(Task.IMAGE_GENERATION, "fake")
    r = gen.generate("a red fox", ImageParams(steps=3, width=64, height=72), on_step=lambda s, t: steps.append((s, t)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert r.images[0].size == (64, 72) and isinstance(r.seed, int)
    again = gen.generate("a red fox", ImageParams(steps=1, width=64, height=72, seed=r.seed))
    assert again.seed == r.seed and again.images[0].tobytes() == r.images[0].tobytes()


@pytest.mark.parametrize(
    "params, match",
    [
        (ImageParams(steps=0), "steps"),
        (ImageParams(width=500), "multiple of 8"),
        (ImageParams(height=10_000), "height"),
        (ImageParams(guidance=-1), "guidance"),
        (ImageParams(seed=-5), "seed"),
    ],
)
def test_bad_image_params(fake_provider, params, match):
    with pytest.raises(BadInput, match=match):
        registry.get(Task.IMAGE_GENERATION, "fake").generate("a fox", params)


# --- embeddings ----------------------------------------------------------------------------------


def test_embeddings_are_batched_normalised_and_summed_usage(fake_provider):
    texts = [f"text number {i}" for i in range(10)]  # fake max_batch is 4: three backend calls
    r = registry.get(Task.EMBEDDINGS, "fake").embed(texts)
    assert r.vectors.shape == (10, 64) and r.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(r.vectors, axis=1), 1, atol=1e-6)
    assert r.usage.input_tokens == 30


@pytest.mark.parametrize("texts, match", [([], "no text"), (["ok", " "], "Text 2 is empty"), ([3], "Text 1")])
def test_bad_texts(fake_provider, texts, match):
    with pytest.raises(BadInput, match=match):
        registry.get(Task.EMBEDDINGS, "fake").embed(texts)


# --- prices --------------------------------------------------------------------------------------


def test_cost_is_unknown_not_zero_when_price_or_usage_is_missing():
    assert estimate_cost(
        "openai", "gpt-4o-mini", Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    ) == pytest.approx(0.75)
    assert estimate_cost("openai", "no-such-model", Usage(input_tokens=10)) is None
    assert estimate_cost("openai", "gpt-4o-mini", None) is None
    assert estimate_cost("openai", "dall-e-2", Usage(images=2)) == pytest.approx(0.04)
    assert estimate_cost("local", "anything", None) == 0.0


@pytest.mark.parametrize("vendor", ["openai", "cohere"])
def test_every_default_model_of_a_priced_vendor_has_a_price(vendor):
    """The default image model was gpt-image-1-mini while only retired DALL-E models had prices."""
    missing = [model for model in config.DEFAULT_MODELS[vendor].values() if model not in price_table()[vendor]]
    assert missing == []
    assert estimate_cost("openai", config.DEFAULT_MODELS["openai"][Task.IMAGE_GENERATION], Usage(images=1)) > 0


# --- the fault policy ----------------------------------------------------------------------------


def test_retry_after_in_seconds_or_as_an_http_date():
    assert faults.parse_retry_after("2") == 2.0 and faults.parse_retry_after("-1") == 0.0
    assert faults.parse_retry_after("soon") is None and faults.parse_retry_after(None) is None
    server_now = time.time() - 3600  # an hour behind this machine's clock: its date is read against its own
    headers = {
        "retry-after": email.utils.formatdate(server_now + 7, usegmt=True),
        "date": email.utils.formatdate(server_now, usegmt=True),
    }
    assert faults.retry_after(headers) == 7.0
    assert faults.retry_after({"retry-after": headers["retry-after"]}) == 0.0  # no Date: this machine's clock
    assert 5 < faults.parse_retry_after(email.utils.formatdate(time.time() + 7, usegmt=True)) <= 7
    assert faults.parse_retry_after("Sun Nov  6 08:49:37 1994", date="Sun Nov  6 08:49:30 1994") == 7.0  # asctime
    assert faults.parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", date="Sun, 06 Nov 1994 08:49:27 GMT") == 10.0


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [(None, "wait a minute"), (0.2, "wait a second"), (1, "wait 1 s"), (12.5, "wait 13 s"), (150, "wait about 3 min")],
)
def test_a_rate_limit_says_the_wait_the_server_asked_for(retry_after, wait):
    err = faults.http_error("Vendor", 429, retry_after=retry_after)
    assert str(err) == f"Vendor is rate limiting requests (429): {wait} and try again."
    assert err.retryable and err.retry_after == retry_after


@pytest.mark.parametrize("status", sorted(faults.RETRYABLE_STATUS))
def test_retryable_statuses_are_retried_and_others_are_not(monkeypatch, status):
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "3")
    attempts = []

    def attempt(seconds_left):
        attempts.append(seconds_left)
        if len(attempts) == 1:
            raise faults.http_error("Vendor", status, retry_after=0)
        return "answer"

    assert faults.call("Vendor", attempt, lambda exc: exc) == "answer" and len(attempts) == 2

    def rejected(seconds_left):
        attempts.append(seconds_left)
        raise faults.http_error("Vendor", 400)

    attempts.clear()
    with pytest.raises(ProviderError):
        faults.call("Vendor", rejected, lambda exc: exc)
    assert len(attempts) == 1


def test_a_stream_that_stalls_after_its_first_event_says_so(monkeypatch):
    monkeypatch.setenv("FMG_FIRST_TOKEN_TIMEOUT_S", "2")

    def open_stream(seconds_left):
        yield "first"
        raise TimeoutError("read timed out")  # what the SDK raises when the per-read timeout passes

    def classify(exc):
        return faults.timeout_error("Vendor", 30) if isinstance(exc, TimeoutError) else exc

    events = faults.stream("Vendor", open_stream, classify)
    assert next(events) == "first"
    with pytest.raises(ProviderTimeout) as err:
        next(events)
    assert str(err.value) == "Vendor stopped sending for 2 s mid-answer: try again."


# --- client set-up stays out of a call's times --------------------------------------------------

PREPARE_S = 0.3


class SlowToPrepare:
    """A mixin for fake adapters whose client takes PREPARE_S to build, once."""

    prepared_at: float | None = None

    def _prepare(self):
        if self.prepared_at is None:
            time.sleep(PREPARE_S)
            self.prepared_at = time.perf_counter()


def test_latency_and_first_token_start_once_the_client_exists():
    from tests.fakes import providers as fake

    class Captioner(SlowToPrepare, fake.FakeCaptioner):
        pass

    class Chat(SlowToPrepare, fake.FakeCompleter):
        pass

    captioner = Captioner("fake", "fake-1")
    result = captioner.caption(Image.new("RGB", (8, 8)))
    assert result.latency_s <= time.perf_counter() - captioner.prepared_at
    chat = Chat("fake", "fake-1")
    stream = chat.stream(USER)
    first_at = None
    for _ in stream:
        first_at = first_at or time.perf_counter()
    assert stream.result.ttft_s <= first_at - chat.prepared_at
    assert stream.result.latency_s <= time.perf_counter() - chat.prepared_at


def test_warm_up_prepares_the_usable_adapters_of_warm_providers_only():
    from adapters.registry import Provider
    from tests.fakes import providers as fake

    class Embedder(SlowToPrepare, fake.FakeEmbedder):
        pass

    def provider(name, warm, usable=True):
        check = (lambda task, model: None) if usable else (lambda task, model: MissingCredentials("no key"))
        return Provider(
            name=name, label=name, adapters={Task.EMBEDDINGS: Embedder}, check=check, models=lambda task: "m", warm=warm
        )

    made = [provider("warm-vendor", True), provider("cold-vendor", False), provider("keyless-vendor", True, False)]
    for p in made:
        registry.register(p)
    try:
        registry.warm_up().join(30)
        assert registry.get(Task.EMBEDDINGS, "warm-vendor").prepared_at is not None
        assert registry.get(Task.EMBEDDINGS, "cold-vendor").prepared_at is None
        assert not [a for key, a in registry._adapters.items() if key[0] == "keyless-vendor"]
    finally:
        for p in made:
            registry.unregister(p.name)


# --- local model loading -------------------------------------------------------------------------


def test_concurrent_first_calls_load_a_model_once():
    from local_models import loading

    calls = []
    barrier = threading.Barrier(8)

    def factory():
        calls.append(1)
        return object()

    def first_call(out):
        barrier.wait()
        out.append(loading.load(("test", "once"), factory))

    results: list = []
    threads = [threading.Thread(target=first_call, args=(results,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loading.unload(("test", "once"))
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_an_image_array_of_the_wrong_type_is_a_clear_refusal():
    with pytest.raises(BadInput, match="cannot be read: send height x width x 3 values of type uint8"):
        inputs.load_image(np.zeros((4, 4, 3), dtype=np.int64))
    with pytest.raises(BadInput, match="megapixel limit"):
        inputs.load_image(np.lib.stride_tricks.as_strided(np.zeros(1, dtype=np.uint8), (10_000, 10_000), (0, 0)))
    assert inputs.load_image(np.zeros((4, 6, 3), dtype=np.uint8)).size == (6, 4)
