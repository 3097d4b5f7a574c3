"""Layer 3: the local runners, on tiny random models saved with `save_pretrained`.

Every model is loaded the way the app loads it: `registry.get(task, "local", model=folder)`,
then the adapter's public method, which goes through `adapters/local.py` to the runner's
`from_pretrained(path)`. Real-weight tests (packaged models), weights lookup and the llama.cpp
probe need no torch: they are in test_local_weights.py, so a missing torch skips none of them.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image

from adapters import registry
from adapters.errors import BadInput, ProviderUnavailable
from adapters.local import load_runner
from adapters.types import CompletionParams, ImageParams, Task
from local_models import weights
from tests.fixtures import tiny_models

USER = [{"role": "user", "content": "hello the cat is on the road"}]


def local(task: Task, model: str | Path):
    return registry.get(task, "local", model=str(model))


def picture(color: str = "red", size: tuple[int, int] = (40, 30)) -> Image.Image:
    image = Image.new("RGB", size, color)
    image.paste("blue", (0, 0, size[0] // 2, size[1] // 2))
    return image


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Build one tiny model on first use: `tiny("llama")` -> its folder."""
    root = tmp_path_factory.mktemp("tiny-models")
    builders = {
        "llama": tiny_models.save_tiny_llama,
        "llama-stop": lambda folder: tiny_models.save_tiny_llama(folder, always_stop=True),
        "llama-base": tiny_models.save_tiny_causal_lm_without_template,
        "clip": tiny_models.save_tiny_clip,
        "blip": tiny_models.save_tiny_blip,
        "vit-gpt2": tiny_models.save_tiny_vit_gpt2,
        "sd": tiny_models.save_tiny_stable_diffusion,
        "st": tiny_models.save_tiny_sentence_transformer,
        "st-prompts": lambda folder: tiny_models.save_tiny_sentence_transformer(
            folder, prompts=tiny_models.EMBEDDING_PROMPTS
        ),
    }
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = builders[name](root / name)
        return built[name]

    return get


def generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fmg-generate" and t.is_alive()]


# --- completion: transformers ------------------------------------------------------------------


def test_chat_streams_deltas_and_stops_at_max_tokens(tiny):
    folder = tiny("llama")
    stream = local(Task.COMPLETION, folder).stream(USER, CompletionParams(max_tokens=8, temperature=0))
    deltas = list(stream)
    result = stream.result
    assert len(deltas) >= 2 and all(isinstance(d, str) and d for d in deltas)
    assert "".join(deltas) == result.text
    assert result.finish_reason == "length"
    assert result.usage.output_tokens == 8
    runner = load_runner(Task.COMPLETION, str(folder))
    prompt = runner.tokenizer.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    assert result.usage.input_tokens == len(runner.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert result.ttft_s is not None and result.ttft_s <= result.latency_s


def test_chat_same_seed_same_text_and_greedy_ignores_seed(tiny):
    adapter = local(Task.COMPLETION, tiny("llama"))

    def text(**params):
        return adapter.complete(USER, CompletionParams(max_tokens=12, **params)).text

    assert text(temperature=1.0, seed=7) == text(temperature=1.0, seed=7)
    assert text(temperature=1.0, seed=7) != text(temperature=1.0, seed=8)
    assert text(temperature=0, seed=1) == text(temperature=0, seed=2)


def test_chat_that_ends_on_end_of_text_reports_stop(tiny):
    result = local(Task.COMPLETION, tiny("llama-stop")).complete(USER, CompletionParams(max_tokens=8, temperature=0))
    assert result.finish_reason == "stop"
    assert result.text == "" and result.usage.output_tokens == 0  # the end-of-text token is not output


def test_chat_without_a_template_uses_a_plain_transcript(tiny):
    folder = tiny("llama-base")
    result = local(Task.COMPLETION, folder).complete(USER, CompletionParams(max_tokens=4, temperature=0))
    tokenizer = load_runner(Task.COMPLETION, str(folder)).tokenizer
    assert not tokenizer.chat_template
    transcript = f"user: {USER[0]['content']}\nassistant:"
    assert result.usage.input_tokens == len(tokenizer(transcript)["input_ids"])
    assert result.usage.output_tokens == 4


def test_chat_replies_share_one_worker_thread_that_outlives_a_failure(tiny, monkeypatch):
    runner = load_runner(Task.COMPLETION, str(tiny("llama")))
    params = CompletionParams(max_tokens=3, temperature=0)
    list(runner.stream(USER, params))
    worker = runner._worker._thread
    original, threads = runner.model.generate, []

    def failing(**kwargs):
        threads.append(threading.current_thread())
        raise RuntimeError("out of memory")

    monkeypatch.setattr(runner.model, "generate", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(runner.stream(USER, params))
    monkeypatch.setattr(runner.model, "generate", original)
    assert [t for t in runner.stream(USER, params) if isinstance(t, str)]
    assert threads == [worker] and runner._worker._thread is worker and worker.is_alive()


def test_closing_a_chat_stream_early_stops_generation(tiny):
    from local_models.device import turns_held

    adapter = local(Task.COMPLETION, tiny("llama"))
    adapter.complete(USER, CompletionParams(max_tokens=1))  # loaded, so the timing below is generation only
    events = iter(adapter.stream(USER, CompletionParams(max_tokens=4000, temperature=0)))
    first = next(events)
    assert first and generation_threads()
    started = time.perf_counter()
    events.close()
    assert time.perf_counter() - started < 2.0  # 4000 tokens would take far longer
    runner = load_runner(Task.COMPLETION, str(tiny("llama")))
    assert runner._lock.acquire(blocking=False)  # generate has returned: its worker holds the lock while it runs
    runner._lock.release()
    assert turns_held() == 0  # the device slot was given back
    assert adapter.complete(USER, CompletionParams(max_tokens=2)).usage.output_tokens == 2


# --- zero-shot classification ------------------------------------------------------------------


def test_clip_scores_are_probabilities_one_per_label(tiny):
    labels = ["a cat", "a dog", "a red car"]
    result = local(Task.ZERO_SHOT, tiny("clip")).classify(picture(), labels)
    assert sorted(label for label, _ in result.scores) == sorted(labels)
    assert sum(score for _, score in result.scores) == pytest.approx(1.0, abs=1e-5)
    assert all(0 < score < 1 for _, score in result.scores)
    assert result.calibrated


def test_clip_caches_label_embeddings(tiny):
    folder = tiny("clip")
    adapter = local(Task.ZERO_SHOT, folder)
    labels = ["sun", "moon", "a star in the night sky"]
    first = adapter.classify(picture("green"), labels)
    runner = load_runner(Task.ZERO_SHOT, str(folder))
    hits, misses = runner.cache_hits, runner.cache_misses
    second = adapter.classify(picture("green"), labels)
    assert (runner.cache_hits - hits, runner.cache_misses - misses) == (3, 0)
    assert dict(second.scores) == pytest.approx(dict(first.scores), abs=1e-6)
    adapter.classify(picture("green"), ["sun", "tree"])  # one cached, one new
    assert (runner.cache_hits - hits, runner.cache_misses - misses) == (4, 1)


def test_clip_label_cache_is_bounded(tiny):
    from local_models.clip import ClipScorer

    runner = load_runner(Task.ZERO_SHOT, str(tiny("clip")))
    small = ClipScorer(runner.model, runner.processor, runner.placement, cache_size=2)
    small.scores(picture(), ["one", "two", "three"])
    assert len(small._label_cache) == 2


def test_clip_caches_image_embeddings_by_pixels(tiny):
    from local_models.clip import ClipScorer

    runner = load_runner(Task.ZERO_SHOT, str(tiny("clip")))
    scorer = ClipScorer(runner.model, runner.processor, runner.placement, image_cache_size=2)
    labels = ["sun", "moon"]
    first = scorer.scores(picture("green"), labels)
    assert (scorer.image_cache_hits, scorer.image_cache_misses) == (0, 1)
    assert scorer.scores(picture("green"), labels) == pytest.approx(first, abs=1e-6)  # an equal image, another object
    assert (scorer.image_cache_hits, scorer.image_cache_misses) == (1, 1)
    scorer.scores_batch([picture("white"), picture("white"), picture("green")], labels)  # a new image, twice
    assert (scorer.image_cache_hits, scorer.image_cache_misses) == (3, 2)
    scorer.scores(picture("black"), labels)
    assert len(scorer._image_cache) == 2  # bounded, least recently used out
    uncached = ClipScorer(runner.model, runner.processor, runner.placement, image_cache_size=0)
    assert uncached.scores(picture("green"), labels) == pytest.approx(first, abs=1e-5)
    assert len(uncached._image_cache) == 0


def test_clip_batch_matches_single_images(tiny):
    runner = load_runner(Task.ZERO_SHOT, str(tiny("clip")))
    images, labels = [picture("red"), picture("white", (50, 80))], ["cat", "dog"]
    batch = runner.scores_batch(images, labels)
    assert len(batch) == 2 and all(len(row) == 2 for row in batch)
    for image, row in zip(images, batch, strict=False):
        assert row == pytest.approx(runner.scores(image, labels), abs=1e-5)


def test_clip_prepare_gives_the_processors_pixels(tiny):
    """`prepare` (in the caller's thread) + the batch's scaling reproduce the processor exactly."""
    runner = load_runner(Task.ZERO_SHOT, str(tiny("clip")))
    assert runner._steps is not None  # the fast path is the one in use
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (61, 97, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (45, 33, 4), dtype=np.uint8), "RGBA")
    images = [noise, noise.transpose(Image.Transpose.ROTATE_90), noise.convert("L"), rgba, picture("red", (300, 41))]
    for image in images:
        expected = runner.processor(images=[image], return_tensors="pt")["pixel_values"]
        mine = runner._model_input(runner.prepare(image)[None])
        assert mine.shape == expected.shape
        assert np.allclose(mine.numpy(), expected.numpy(), atol=1e-5), image.mode
    # prepared pixels and PIL images score the same
    labels = ["cat", "dog"]
    assert runner.scores_batch([runner.prepare(noise)], labels) == runner.scores_batch([noise], labels)


def test_clip_prompt_template():
    from local_models.clip import prompt_for

    assert prompt_for("cat") == "a photo of cat."
    assert prompt_for("a red car") == "a photo of a red car."
    assert prompt_for("a blurry photo of a dog.") == "a blurry photo of a dog."
    assert prompt_for("two dogs playing in snow") == "two dogs playing in snow"


# --- image and label embeddings (the linear probe's features) ------------------------------------


def noise_image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_clip_image_embeddings_are_unit_rows_of_the_projection_size(tiny):
    folder = tiny("clip")
    adapter = local(Task.ZERO_SHOT, folder)
    runner = load_runner(Task.ZERO_SHOT, str(folder))
    assert adapter.embeds
    images = [noise_image(10), picture("red"), noise_image(10), picture("white", (50, 80))]
    result = adapter.embed_images(images)
    dim = runner.model.config.projection_dim
    assert result.vectors.shape == (4, dim) and result.vectors.dtype == np.float32
    assert np.linalg.norm(result.vectors, axis=1) == pytest.approx(np.ones(4), abs=1e-5)
    assert np.array_equal(result.vectors[0], result.vectors[2])  # the same image, the same vector
    assert not np.allclose(result.vectors[0], result.vectors[1])
    assert result.provider == "local" and result.model == str(folder)
    again = adapter.embed_images([noise_image(10)]).vectors[0]
    assert np.allclose(again, result.vectors[0], atol=1e-6)  # and again in another call
    labels = adapter.embed_labels(["cat", "dog", "a red car"])
    assert labels.vectors.shape == (3, dim)
    assert np.linalg.norm(labels.vectors, axis=1) == pytest.approx(np.ones(3), abs=1e-5)


def test_zero_shot_from_embeddings_is_what_classify_says(tiny):
    folder = tiny("clip")
    adapter = local(Task.ZERO_SHOT, folder)
    runner = load_runner(Task.ZERO_SHOT, str(folder))
    labels = ["cat", "dog", "a red car", "two dogs playing in snow"]  # the last is used as written
    images = [noise_image(seed) for seed in range(6)] + [picture("red"), picture("green", (30, 70))]
    similarities = adapter.embed_images(images).vectors @ adapter.embed_labels(labels).vectors.T
    scale = float(runner.model.logit_scale.detach().float().exp())
    chosen = set()
    for image, row in zip(images, similarities, strict=True):
        result = adapter.classify(image, labels)
        assert labels[int(np.argmax(row))] == result.best
        logits = scale * row
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert dict(zip(labels, softmax, strict=True)) == pytest.approx(dict(result.scores), abs=1e-4)
        chosen.add(result.best)
    assert len(chosen) >= 2  # the images do not all agree, so the comparison means something


def test_clip_label_embeddings_use_the_zero_shot_prompt(tiny):
    adapter = local(Task.ZERO_SHOT, tiny("clip"))
    short = adapter.embed_labels(["cat", "dog"]).vectors
    assert np.allclose(short, adapter.embed_labels(["a photo of cat.", "a photo of dog."]).vectors, atol=1e-6)
    assert not np.allclose(short, adapter.embed_labels(["cat dog cat dog", "dog cat dog cat"]).vectors)


def test_embedding_a_set_leaves_the_image_cache_and_the_device_slot_alone(tiny):
    from local_models.device import turns_held

    adapter = local(Task.ZERO_SHOT, tiny("clip"))
    runner = load_runner(Task.ZERO_SHOT, str(tiny("clip")))
    before = dict(runner._image_cache)
    images = [noise_image(100 + i, (24, 24)) for i in range(adapter.max_batch)] + [noise_image(100, (24, 24))]
    vectors = adapter.embed_images(images).vectors  # two slices: the first and the last image share none
    assert vectors.shape[0] == adapter.max_batch + 1
    assert np.allclose(vectors[0], vectors[-1], atol=1e-5)
    assert runner._image_cache.keys() == before.keys()  # a whole set does not push out interactive images
    assert turns_held() == 0  # the slot was given back after each slice


def test_image_embeddings_check_their_input(tiny, tmp_path):
    adapter = local(Task.ZERO_SHOT, tiny("clip"))
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # a few hundred KB that would decode to 400 million pixels
    with pytest.raises(BadInput, match=r"Image 2 of 2: .*megapixel"):
        adapter.embed_images([picture(), str(bomb)])
    corrupt = tmp_path / "corrupt.png"
    picture().save(tmp_path / "good.png")
    corrupt.write_bytes((tmp_path / "good.png").read_bytes()[:60])
    with pytest.raises(BadInput, match=r"Image 1 of 1: .*corrupt"):
        adapter.embed_images([str(corrupt)])
    with pytest.raises(BadInput, match="limit is 256"):
        adapter.embed_images([picture()] * 257)
    assert adapter.embed_images([picture()] * 256).vectors.shape[0] == 256
    with pytest.raises(BadInput, match="no images"):
        adapter.embed_images([])
    with pytest.raises(BadInput, match="as a list"):
        adapter.embed_images(str(tmp_path / "good.png"))
    with pytest.raises(BadInput, match="given once"):
        adapter.embed_labels(["cat", "Cat", "dog"])  # rows would no longer match the labels
    with pytest.raises(BadInput, match="No text was given"):
        adapter.embed_labels([])
    assert adapter.embed_labels(["cat"]).vectors.shape[0] == 1  # a single query text embeds


# --- captioning --------------------------------------------------------------------------------


def test_blip_captions_and_continues_a_prompt(tiny):
    """What a random tiny BLIP can guarantee: the caption is exactly what transformers' own
    `generate` gives with the app's settings (no sampling, so the same every time), made of words
    from its vocabulary (one word per token), no more of them than `max_new_tokens`."""
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from local_models import recipe

    folder = tiny("blip")
    adapter = local(Task.CAPTIONING, folder)
    plain = adapter.caption(picture())
    prompted = adapter.caption(picture(), prompt="a photo of")

    settings = recipe.CAPTION_GENERATION
    assert settings["do_sample"] is False  # deterministic: beam or greedy search
    processor = BlipProcessor.from_pretrained(folder)
    model = BlipForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()

    def direct(prompt=None) -> str:
        with torch.inference_mode():
            ids = model.generate(**processor(images=picture(), text=prompt, return_tensors="pt"), **settings)
        return processor.decode(ids[0], skip_special_tokens=True).strip()

    assert plain.text == direct()
    words = plain.text.split()
    assert 1 <= len(words) <= settings["max_new_tokens"] and set(words) <= set(tiny_models.WORDS)
    assert prompted.text == direct("a photo of")
    assert prompted.text.startswith("a photo of ")  # BLIP echoes its text prefix, then continues it
    continuation = prompted.text.removeprefix("a photo of ").split()
    assert 1 <= len(continuation) <= settings["max_new_tokens"] and set(continuation) <= set(tiny_models.WORDS)
    assert adapter.caption(picture()).text == plain.text  # deterministic


def test_vit_gpt2_captions_and_ignores_the_prompt(tiny):
    adapter = local(Task.CAPTIONING, tiny("vit-gpt2"))
    text = adapter.caption(picture()).text
    assert isinstance(text, str) and text.split() and set(text.split()) <= set(tiny_models.WORDS)
    assert adapter.caption(picture(), prompt="a photo of").text == text


def test_captioner_names_the_families_it_runs(tiny):
    from local_models.captioning import ImageCaptioner

    with pytest.raises(ValueError, match="'clip' model; captioning runs blip or vision-encoder-decoder"):
        ImageCaptioner.from_pretrained(tiny("clip"))
    with pytest.raises(ProviderUnavailable, match="could not be loaded"):
        local(Task.CAPTIONING, tiny("clip")).caption(picture())


# --- image generation --------------------------------------------------------------------------


def _pixels(result) -> bytes:
    return result.images[0].tobytes()


def test_diffusion_makes_the_requested_size_and_reports_each_step(tiny):
    steps: list[tuple[int, int]] = []
    params = ImageParams(steps=2, width=96, height=64, seed=3)
    adapter = local(Task.IMAGE_GENERATION, tiny("sd"))
    result = adapter.generate("a red cat", params, on_step=lambda i, n: steps.append((i, n)))
    assert len(result.images) == 1 and result.images[0].size == (96, 64) and result.images[0].mode == "RGB"
    assert steps == [(1, 2), (2, 2)]
    assert result.seed == 3


def test_diffusion_seed_decides_the_pixels(tiny):
    adapter = local(Task.IMAGE_GENERATION, tiny("sd"))

    def run(**params):
        return _pixels(adapter.generate("a red cat", ImageParams(steps=2, width=64, height=64, **params)))

    assert run(seed=1) == run(seed=1)
    assert run(seed=1) != run(seed=2)
    # a negative prompt only matters with classifier-free guidance
    assert run(seed=1, negative_prompt="blurry") == run(seed=1)
    assert run(seed=1, guidance=2.0, negative_prompt="blurry") != run(seed=1, guidance=2.0)


# --- embeddings --------------------------------------------------------------------------------


def test_embeddings_are_unit_rows(tiny):
    result = local(Task.EMBEDDINGS, tiny("st")).embed(["a small cat", "a fast car", "the sea"])
    assert result.vectors.shape == (3, tiny_models.HIDDEN) and result.vectors.dtype == np.float32
    assert np.linalg.norm(result.vectors, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    assert not np.allclose(result.vectors[0], result.vectors[1])


def test_embedding_kind_selects_the_models_prompt(tiny):
    texts = ["a small cat"]
    with_prompts = local(Task.EMBEDDINGS, tiny("st-prompts"))
    query = with_prompts.embed(texts, kind="query").vectors
    assert not np.allclose(query, with_prompts.embed(texts, kind="document").vectors)
    without = local(Task.EMBEDDINGS, tiny("st"))
    assert np.allclose(without.embed(texts, kind="query").vectors, without.embed(texts, kind="document").vectors)


def test_concurrent_first_calls_load_the_model_once(tiny, tmp_path, monkeypatch):
    import shutil

    from local_models.sentence_embeddings import SentenceEmbedder

    folder = shutil.copytree(tiny("st"), tmp_path / "fresh-copy")  # a model no other test has loaded
    real = SentenceEmbedder.from_pretrained.__func__
    calls: list[Path] = []

    def counting(cls, path):
        calls.append(path)
        time.sleep(0.2)  # widen the window in which the other threads arrive
        return real(cls, path)

    monkeypatch.setattr(SentenceEmbedder, "from_pretrained", classmethod(counting))
    start = threading.Barrier(4)
    results: list[np.ndarray] = []

    def first_call():
        start.wait()
        results.append(local(Task.EMBEDDINGS, folder).embed(["hello"]).vectors)

    threads = [threading.Thread(target=first_call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(calls) == 1 and len(results) == 4
    # concurrent calls may share a batch, whose padding changes the last bits of a float
    assert all(np.allclose(r, results[0], atol=1e-5) for r in results)


# --- a missing model ---------------------------------------------------------------------------


def test_missing_repo_says_which_fetch_command_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(weights.WeightsMissing, match=re.escape("python -m adapters.local fetch org/absent")):
        weights.resolve("org/absent", env_var="FMG_MODEL_LOCAL_ZERO_SHOT")
    with pytest.raises(ProviderUnavailable, match=re.escape("python -m adapters.local fetch org/absent")):
        local(Task.ZERO_SHOT, "org/absent")


# --- GPU ---------------------------------------------------------------------------------------


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs CUDA")
def test_gpu_runners_use_cuda_in_half_precision(tiny, monkeypatch):
    import torch

    monkeypatch.delenv("FMG_DEVICE", raising=False)
    chat = load_runner(Task.COMPLETION, str(tiny("llama")))
    assert chat.model.device.type == "cuda" and chat.model.dtype == torch.float16
    assert local(Task.COMPLETION, tiny("llama")).complete(USER, CompletionParams(max_tokens=4, temperature=0)).text
    params = ImageParams(steps=2, width=64, height=64, seed=5)
    result = local(Task.IMAGE_GENERATION, tiny("sd")).generate("a cat", params)
    assert result.images[0].size == (64, 64)
    same = local(Task.IMAGE_GENERATION, tiny("sd")).generate("a cat", params)
    assert _pixels(same) == _pixels(result)
    scores = local(Task.ZERO_SHOT, tiny("clip")).classify(picture(), ["cat", "dog"]).scores
    assert sum(s for _, s in scores) == pytest.approx(1.0, abs=1e-3)
    assert local(Task.EMBEDDINGS, tiny("st")).embed(["a cat"]).vectors.shape == (1, tiny_models.HIDDEN)
