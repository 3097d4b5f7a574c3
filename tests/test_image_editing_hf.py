"""Hugging Face image editing: `image_to_image` with the real `InferenceClient` over real HTTP against the
fake router (tests/fakes/hf_server.py), routed like every other HF task. Needs huggingface_hub."""

from __future__ import annotations

import base64
import io

import pytest

pytest.importorskip("huggingface_hub")

from PIL import Image

from adapters import registry
from adapters.errors import ProviderError, ProviderUnavailable
from adapters.types import ImageParams, Task
from tests.fakes.hf_server import HFRouter, edit_colour
from tests.fakes.http_server import FakeServer, Reply

KEY = "hf_test-DISTINCTIVE-123456"
MODEL = "black-forest-labs/FLUX.1-schnell"  # the configured image generation model


@pytest.fixture(scope="module")
def shared_server():
    with FakeServer(HFRouter()) as fake:  # one per module: stopping a server takes half a second
        yield fake


@pytest.fixture
def server(shared_server, monkeypatch, tmp_path):
    """A fresh fake router as the HF inference base; a private HF home, small deadlines, the fake key."""
    import huggingface_hub.constants as hf_constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "fm-gallery.toml"
    config.write_text("[settings]\nmax_backoff_s = 0.2\n")
    monkeypatch.setenv("FMG_CONFIG", str(config))
    monkeypatch.setenv("FMG_TIMEOUT_S", "5")
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("HF_TOKEN", KEY)
    shared_server.reset()
    shared_server.route = HFRouter()
    monkeypatch.setenv("HF_INFERENCE_ENDPOINT", shared_server.url + "/hf-inference")
    yield shared_server
    shared_server.reset()


def editor():
    return registry.get(Task.IMAGE_GENERATION, "hf")


RED = (200, 30, 30)


def test_image_to_image_sends_the_image_prompt_strength_and_size(server):
    steps = []
    params = ImageParams(steps=6, guidance=2.5, negative_prompt="blurry", seed=9)
    image = Image.new("RGB", (100, 67), RED)  # cut to 96 x 64
    result = editor().edit(
        "a green field", image, "image-to-image", params, strength=0.25, on_step=lambda *s: steps.append(s)
    )
    (request,) = server.requests
    assert request.path == f"/hf-inference/models/{MODEL}"
    body = request.json()
    assert body["parameters"] == {
        "prompt": "a green field",
        "negative_prompt": "blurry",
        "target_size": {"width": 96, "height": 64},
        "num_inference_steps": 6,
        "guidance_scale": 2.5,
        "strength": 0.25,
    }
    sent = Image.open(io.BytesIO(base64.b64decode(body["inputs"])))
    assert sent.size == (96, 64) and sent.format == "JPEG"
    (out,) = result.images
    expected = [round(a + (b - a) * 0.25) for a, b in zip(RED, edit_colour("a green field"), strict=True)]
    assert out.size == (96, 64) and all(abs(a - b) <= 3 for a, b in zip(out.getpixel((40, 30)), expected, strict=True))
    assert result.seed is None  # the image-to-image task takes no seed
    assert result.served_by == "hf-inference" and result.usage.images == 1 and steps == [(1, 1)]


def test_hf_has_no_inpainting_and_says_who_has(server):
    mask = Image.new("L", (64, 64), 255)
    with pytest.raises(ProviderUnavailable, match="Hugging Face cannot do inpainting: pick Local models, OpenAI"):
        editor().edit("a cat", Image.new("RGB", (64, 64), RED), "inpaint", mask=mask)
    with pytest.raises(ProviderUnavailable, match="Hugging Face cannot do upscaling: pick Local models"):
        editor().edit("", Image.new("RGB", (64, 64), RED), "upscale")
    assert server.requests == []


def test_400_passes_the_detail_on(server):
    server.script(Reply(400, json={"error": "strength must be between 0 and 1"}))
    with pytest.raises(ProviderError) as err:
        editor().edit("a cat", Image.new("RGB", (64, 64), RED), "image-to-image")
    assert str(err.value) == "Hugging Face rejected the request (400): strength must be between 0 and 1."
    assert err.value.status == 400 and len(server.requests) == 1


def test_401_is_not_retried_and_names_the_variable(server):
    server.script(Reply(401, json={"error": "Invalid credentials in Authorization header"}))
    with pytest.raises(ProviderError) as err:
        editor().edit("a cat", Image.new("RGB", (64, 64), RED), "image-to-image")
    assert str(err.value) == "Hugging Face rejected the API key (401): check HF_TOKEN."
    assert len(server.requests) == 1 and KEY not in str(err.value)


def test_500_is_retried_then_reported(server):
    server.script(Reply(500, json={"error": "Internal error"}))
    assert editor().edit("a cat", Image.new("RGB", (64, 64), RED), "image-to-image").images[0].size == (64, 64)
    assert len(server.requests) == 2
    server.script(*[Reply(500, json={"error": "Internal error"})] * 3)
    with pytest.raises(ProviderError, match=r"^Hugging Face had a server error \(500\): try again later.$"):
        editor().edit("a cat", Image.new("RGB", (64, 64), RED), "image-to-image")
    assert len(server.requests) == 5
