"""Image editing (`ImageGenerator.edit`): the interface's checks, canvas, masks and outpainting on fake
providers, which modes each provider serves, and OpenAI's `images.edit` with the real SDK over real
HTTP (multipart upload, the mask as alpha) against the fake API. Hugging Face is in
test_image_editing_hf.py and the local diffusers pipelines in test_image_editing_local.py (each needs
an optional package).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from adapters import config, registry
from adapters.errors import BadInput, MissingCredentials, ProviderError, ProviderUnavailable
from adapters.registry import Provider
from adapters.tasks import OUTPAINT_OVERLAP, ImageGenerator, outpaint_canvas
from adapters.types import EditMode, ImageParams, Task
from local_models import fetch
from tests.fakes.http_server import FakeServer
from tests.fakes.openai_server import OpenAIFake, error_reply, parse_multipart, prompt_color, server_error

FILL = (7, 200, 90)  # what the fake editors paint


class FullEditor(ImageGenerator):
    """Every mode: paints the whole image FILL (upscales by resizing) and records each call."""

    edit_modes = frozenset(EditMode)

    def __init__(self, provider: str, model: str):
        super().__init__(provider, model)
        self.calls: list[dict] = []

    def _generate(self, prompt, params, on_step):
        return [Image.new("RGB", (params.width, params.height), FILL)]

    def _edit(self, prompt, image, mode, params, mask, strength, scale, on_step):
        self.calls.append(
            {"prompt": prompt, "image": image, "mode": mode, "mask": mask, "strength": strength, "seed": params.seed}
        )
        for step in range(params.steps):
            on_step(step + 1, params.steps)
        if mode is EditMode.UPSCALE:
            return [image.resize((image.width * scale, image.height * scale))]
        return [Image.new("RGB", image.size, FILL)]


class ImageToImageOnly(FullEditor):
    edit_modes = frozenset({EditMode.IMAGE_TO_IMAGE})


class NoEdits(ImageGenerator):
    def _generate(self, prompt, params, on_step):
        return [Image.new("RGB", (params.width, params.height), FILL)]


@pytest.fixture
def editors():
    """Three fake providers: "full" (every mode), "i2i" (image-to-image only) and "plain" (no edits)."""
    made = {
        "full": Provider("full", "Full fake", {Task.IMAGE_GENERATION: FullEditor}, models=lambda task: "m"),
        "i2i": Provider("i2i", "I2I fake", {Task.IMAGE_GENERATION: ImageToImageOnly}, models=lambda task: "m"),
        "plain": Provider("plain", "Plain fake", {Task.IMAGE_GENERATION: NoEdits}, models=lambda task: "m"),
    }
    for provider in made.values():
        registry.register(provider)
    yield {name: registry.get(Task.IMAGE_GENERATION, name) for name in made}
    for name in made:
        registry.unregister(name)


def noise(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


# --- which provider edits what ---------------------------------------------------------------------


def test_each_provider_says_which_edits_it_serves(editors):
    assert registry.edit_modes("local") == frozenset(EditMode)
    assert registry.edit_modes("openai") == {EditMode.IMAGE_TO_IMAGE, EditMode.INPAINT, EditMode.OUTPAINT}
    assert registry.edit_modes("hf") == {EditMode.IMAGE_TO_IMAGE}
    assert registry.edit_modes("cohere") == frozenset()  # no image generation at all
    assert registry.edit_modes("plain") == frozenset() and registry.edit_modes("no-such") == frozenset()
    assert registry.providers()["openai"].edit_modes == registry.edit_modes("openai")  # through its partial
    upscalers = [p.name for p in registry.editors(EditMode.UPSCALE)]
    assert "local" in upscalers and "full" in upscalers and "openai" not in upscalers and "i2i" not in upscalers
    assert EditMode("outpaint") is EditMode.OUTPAINT and EditMode.INPAINT.title == "Inpainting"


def test_a_mode_the_provider_lacks_names_the_providers_that_can(editors):
    adapter = editors["i2i"]
    problem = adapter.edit_problem("upscale")
    assert isinstance(problem, ProviderUnavailable)
    assert str(problem).startswith("I2I fake cannot do upscaling: pick ")
    assert "Local models" in str(problem) and "Full fake" in str(problem) and "OpenAI" not in str(problem)
    with pytest.raises(ProviderUnavailable, match=r"I2I fake cannot do inpainting: pick .*OpenAI"):
        adapter.edit("a cat", None, EditMode.INPAINT)  # said before the (missing) image is looked at
    with pytest.raises(ProviderUnavailable, match="Plain fake cannot do image to image"):
        editors["plain"].edit("a cat", noise(), "image-to-image")
    assert adapter.edit_problem(EditMode.IMAGE_TO_IMAGE) is None and adapter.calls == []
    with pytest.raises(BadInput, match="scale must be 2 or 4"):
        adapter.edit_problem("upscale", 3)


def test_outpainting_cannot_be_listed_without_inpainting():
    with pytest.raises(TypeError, match="outpainting without inpainting"):

        class Broken(ImageGenerator):  # defining it is the test
            edit_modes = frozenset({EditMode.OUTPAINT})


# --- the checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sharpen"}, "Unknown edit mode 'sharpen': choose one of image-to-image, inpaint"),
        ({"strength": 0}, "strength must be above 0"),
        ({"strength": 1.5}, "strength must be between 0.0 and 1.0"),
        ({"strength": "high"}, "strength must be a number"),
        ({"scale": 3}, "scale must be 2 or 4"),
        ({"scale": True}, "scale must be 2 or 4"),
        ({"mode": "outpaint", "pad": 0}, "needs a border"),
        ({"mode": "outpaint", "pad": -8}, "pad must be between 0 and 1024"),
        ({"mode": "outpaint", "pad": (8, 8, 8)}, r"or four: \(left, top, right, bottom\)"),
        ({"mode": "outpaint", "pad": 1000}, "would be 2096 x 2064 pixels; the limit is 2048"),
        ({"mode": "upscale", "scale": 4, "image": noise(600, 400)}, "would be 2400 x 1600 .* upscale 2x"),
        ({"mode": "upscale", "scale": 2, "image": noise(1200, 400)}, "would be 2400 x 800 .* use a smaller image"),
        ({"image": noise(60, 200)}, "this edit needs at least 64 on each side"),
        ({"mode": "upscale", "image": noise(200, 15)}, "this edit needs at least 16 on each side"),
        ({"image": None}, "No image was given"),
        ({"prompt": "  "}, "The prompt is empty"),
        ({"mask": box_mask((96, 64), (0, 0, 8, 8))}, "A mask is used only for inpainting"),
        ({"mode": "upscale", "mask": box_mask((96, 64), (0, 0, 8, 8))}, "A mask is used only for inpainting"),
        ({"mode": "inpaint"}, "Inpainting needs a mask"),
        ({"mode": "inpaint", "mask": Image.new("L", (96, 64), 0)}, "The mask is all black"),
        ({"mode": "inpaint", "mask": box_mask((50, 50), (0, 0, 9, 9))}, "mask is 50 x 50 pixels and the image 96 x 64"),
        ({"mode": "inpaint", "mask": box_mask((97, 65), (96, 0, 97, 65)), "image": noise(97, 65)}, "are cut off"),
        ({"params": ImageParams(steps=0)}, "steps must be between 1 and 100"),
    ],
)
def test_bad_edits_are_refused_before_the_provider_is_called(editors, kwargs, message):
    call = {"prompt": "a cat", "image": noise(), "mode": "image-to-image", **kwargs}
    adapter = editors["full"]
    with pytest.raises(BadInput, match=message):
        adapter.edit(**call)
    assert adapter.calls == []


def test_an_unreadable_mask_says_it_is_the_mask(editors, tmp_path):
    broken = tmp_path / "mask.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(BadInput, match=r"The mask cannot be used: 'mask.png' is not an image"):
        editors["full"].edit("a cat", noise(), "inpaint", mask=str(broken))


# --- what reaches the provider, and what comes back -----------------------------------------------


def test_image_to_image_gets_the_canvas_strength_and_a_seed(editors):
    adapter, steps = editors["full"], []
    image = noise(101, 70)  # sides cut down to multiples of 8: 96 x 64
    result = adapter.edit(
        "a cat", image, "image-to-image", ImageParams(steps=3), strength=0.35, on_step=lambda *s: steps.append(s)
    )
    (call,) = adapter.calls
    assert call["mode"] is EditMode.IMAGE_TO_IMAGE and call["mask"] is None and call["strength"] == 0.35
    assert call["image"].size == (96, 64) and np.array_equal(pixels(call["image"]), pixels(image)[:64, :96])
    assert result.images[0].size == (96, 64) and steps == [(1, 3), (2, 3), (3, 3)]
    assert result.seed == call["seed"] is not None and result.provider == "full"
    again = adapter.edit("a cat", image, "image-to-image", ImageParams(seed=11))
    assert again.seed == adapter.calls[-1]["seed"] == 11


def test_inpainting_keeps_every_pixel_outside_the_mask(editors):
    adapter, image = editors["full"], noise()
    mask = box_mask(image.size, (16, 8, 48, 40))
    result = adapter.edit("a cat", image, EditMode.INPAINT, mask=mask, strength=0.8)
    (call,) = adapter.calls
    assert call["mode"] is EditMode.INPAINT and call["strength"] == 0.8
    assert call["mask"].mode == "L" and np.array_equal(pixels(call["mask"])[..., 0], np.asarray(mask))
    out, inside = pixels(result.images[0]), np.asarray(mask) == 255
    assert (out[inside] == FILL).all()  # the provider's paint where the mask is white
    assert np.array_equal(out[~inside], pixels(image)[~inside])  # the image, exactly, everywhere else


def test_mask_conventions(editors):
    adapter, image = editors["full"], noise(128, 64)
    strokes = Image.new("RGBA", image.size, (0, 0, 0, 0))  # white strokes on a transparent layer
    strokes.paste((255, 255, 255, 255), (0, 0, 32, 16))
    adapter.edit("a cat", image, "inpaint", mask=strokes)
    assert adapter.calls[-1]["mask"].getbbox() == (0, 0, 32, 16)  # transparency counts as black (keep)
    grey = Image.new("L", image.size, 127)
    grey.paste(128, (64, 0, 128, 64))
    adapter.edit("a cat", image, "inpaint", mask=grey)
    assert adapter.calls[-1]["mask"].getbbox() == (64, 0, 128, 64)  # at least mid grey is white
    half = box_mask((64, 32), (0, 0, 16, 8))  # the same shape at half the size: scaled to the image
    adapter.edit("a cat", image, "inpaint", mask=half)
    scaled = adapter.calls[-1]["mask"]
    assert scaled.size == image.size and scaled.getbbox() == (0, 0, 32, 16)


def test_outpainting_pads_the_image_and_inpaints_the_border(editors):
    adapter, image = editors["full"], noise(64, 64)
    result = adapter.edit("a beach", image, "outpaint", strength=0.3, pad=(16, 0, 30, 8))  # 30 -> 32
    (call,) = adapter.calls
    assert call["mode"] is EditMode.INPAINT and call["strength"] == 1.0  # the border is painted from noise
    canvas, mask = call["image"], np.asarray(call["mask"])
    assert canvas.size == (64 + 16 + 32, 64 + 8) and result.images[0].size == canvas.size
    original = pixels(image)
    assert np.array_equal(pixels(canvas)[0:64, 16:80], original)  # the image in its place
    assert np.array_equal(pixels(canvas)[0:64, 0], original[:, 0])  # the border starts as the edge drawn outwards
    overlap = OUTPAINT_OVERLAP
    kept = np.zeros_like(mask, dtype=bool)
    kept[0 : 64 - overlap, 16 + overlap : 80 - overlap] = True  # top not padded: no overlap there
    assert (mask[kept] == 0).all() and (mask[~kept] == 255).all()
    out = pixels(result.images[0])
    assert np.array_equal(out[kept], pixels(canvas)[kept]) and (out[~kept] == FILL).all()


def test_outpaint_canvas_with_one_number_pads_every_side():
    canvas, mask = outpaint_canvas(noise(64, 64), (8, 8, 8, 8))
    assert canvas.size == mask.size == (80, 80)
    assert mask.getbbox() == (0, 0, 80, 80) and mask.getpixel((40, 40)) == 0


def test_upscaling_scales_and_takes_an_empty_prompt(editors):
    adapter = editors["full"]
    result = adapter.edit("", noise(64, 48), "upscale", scale=4)
    assert adapter.calls[-1]["mode"] is EditMode.UPSCALE and adapter.calls[-1]["prompt"] == ""
    assert result.images[0].size == (256, 192)
    assert adapter.edit("", noise(20, 17), "upscale").images[0].size == (32, 32)  # cut to 16 x 16, then 2x
    assert adapter.edit(None, noise(512, 256), "upscale", scale=4).images[0].size == (2048, 1024)  # at the limit


def test_fetch_knows_the_upscalers_by_name(capsys):
    extra = {name: config.extra_model("local", name) for name in config.EXTRA_MODELS["local"]}
    assert fetch.targets(["upscale", "upscale-x2"], lambda task: None, extra) == [
        "stabilityai/stable-diffusion-x4-upscaler",
        "stabilityai/sd-x2-latent-upscaler",
    ]
    with pytest.raises(fetch.FetchError, match="upscale-x3"):
        fetch.targets(["upscale-x3"], lambda task: None, extra)


def test_upscaler_models_follow_the_environment_and_the_config_file(monkeypatch, tmp_path):
    assert config.extra_model_var("local", "upscale-x2") == "FMG_MODEL_LOCAL_UPSCALE_X2"
    path = tmp_path / "fm-gallery.toml"
    path.write_text('[models.local]\nupscale = "org/my-x4"\n')
    monkeypatch.setenv("FMG_CONFIG", str(path))
    assert config.extra_model("local", "upscale") == "org/my-x4"
    monkeypatch.setenv("FMG_MODEL_LOCAL_UPSCALE", "/models/x4")
    assert config.extra_model("local", "upscale") == "/models/x4"
    assert config.extra_model("local", "upscale-x2") == "stabilityai/sd-x2-latent-upscaler"


# --- OpenAI: images.edit over multipart ------------------------------------------------------------

KEY = "sk-test-DISTINCTIVE-123456"


@pytest.fixture(scope="module")
def shared_openai():
    with FakeServer(OpenAIFake()) as server:  # one per module: stopping a server takes half a second
        yield server


@pytest.fixture
def openai(shared_openai, monkeypatch, tmp_path):
    """The real SDK pointed at a fresh fake; small backoff, 3 attempts."""
    shared_openai.reset()
    shared_openai.route = OpenAIFake(key=KEY)
    for var in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS", "OPENAI_ADMIN_KEY"):
        monkeypatch.delenv(var, raising=False)
    config_file = tmp_path / "fm-gallery.toml"
    config_file.write_text("[settings]\nmax_backoff_s = 0.2\n")
    monkeypatch.setenv("FMG_CONFIG", str(config_file))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{shared_openai.url}/v1")
    monkeypatch.setenv("FMG_TIMEOUT_S", "5")
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "3")
    return shared_openai


def openai_editor(model: str = "gpt-image-1.5"):
    return registry.get(Task.IMAGE_GENERATION, "openai", model=model)


def uploaded(server: FakeServer, index: int = -1):
    """(form fields, {name: PIL image}) of a recorded images.edit request."""
    request = server.requests[index]
    assert request.path == "/v1/images/edits" and request.headers["content-type"].startswith("multipart/form-data")
    fields, files = parse_multipart(request)
    assert all(f.content_type == "image/png" for f in files.values())
    return fields, {name: Image.open(io.BytesIO(f.data)) for name, f in files.items()}


def test_openai_inpaint_uploads_a_png_and_the_mask_as_alpha(openai):
    image, steps = noise(128, 96), []
    mask = box_mask(image.size, (0, 0, 64, 48))
    result = openai_editor().edit("a red kite", image, "inpaint", mask=mask, on_step=lambda *s: steps.append(s))
    fields, files = uploaded(openai)
    assert fields == {"model": "gpt-image-1.5", "prompt": "a red kite", "n": "1", "size": "1536x1024"}
    assert files["image"].format == "PNG" and np.array_equal(pixels(files["image"]), pixels(image))  # lossless
    sent = files["mask"]
    assert sent.format == "PNG" and sent.mode == "RGBA" and sent.size == image.size
    alpha = np.asarray(sent.getchannel("A"))
    assert (alpha[:48, :64] == 0).all()  # transparent: OpenAI edits here (white in the app's mask)
    assert (alpha[48:, :] == 255).all() and (alpha[:, 64:] == 255).all()  # opaque: kept
    (out,) = result.images
    assert out.size == (1536, 1024)  # the model's size nearest the image's shape: not pasted over the original
    scaled = image.resize(out.size, Image.Resampling.NEAREST)  # as the fake scales its answer
    assert out.getpixel((10, 10)) == prompt_color("a red kite") and out.getpixel((1500, 1000)) == scaled.getpixel(
        (1500, 1000)
    )
    assert result.seed is None and result.usage.images == 1 and steps == [(1, 1)]


def test_openai_image_to_image_is_an_edit_without_a_mask(openai):
    image = Image.new("RGB", (256, 256), (200, 20, 20))
    result = openai_editor("dall-e-2").edit("a blue sea", image, "image-to-image", strength=0.9)
    fields, files = uploaded(openai)
    assert set(files) == {"image"} and fields["size"] == "256x256" and fields["response_format"] == "b64_json"
    colour = prompt_color("a blue sea")
    expected = tuple((a + b) // 2 for a, b in zip((200, 20, 20), colour, strict=True))  # the fake's half-way paint
    assert all(abs(a - b) <= 1 for a, b in zip(result.images[0].getpixel((5, 5)), expected, strict=True))


def test_openai_outpaint_sends_the_grown_canvas_and_keeps_the_original(openai):
    image = noise(192, 192)
    result = openai_editor("dall-e-2").edit("a forest", image, "outpaint", pad=32)
    fields, files = uploaded(openai)
    assert files["image"].size == files["mask"].size == (256, 256) and fields["size"] == "256x256"
    alpha = np.asarray(files["mask"].getchannel("A"))
    inner = slice(32 + OUTPAINT_OVERLAP, 224 - OUTPAINT_OVERLAP)
    assert (alpha[inner, inner] == 255).all() and (alpha[:32] == 0).all() and (alpha[:, 240:] == 0).all()
    out = pixels(result.images[0])
    assert np.array_equal(out[inner, inner], pixels(image)[8:-8, 8:-8])  # same size back: the original kept
    assert tuple(out[0, 0]) == prompt_color("a forest")


@pytest.mark.parametrize(
    ("model", "size", "call", "message"),
    [
        ("dall-e-2", (320, 256), {}, "dall-e-2 edits only square images \\(got 320x256\\)"),
        ("gpt-image-2", (1000, 200), {}, "at most 3:1"),
        ("gpt-image-1.5", (128, 128), {"params": ImageParams(negative_prompt="fog")}, "no negative prompt"),
    ],
)
def test_openai_edits_it_cannot_make_are_bad_input_without_a_request(openai, model, size, call, message):
    with pytest.raises(BadInput, match=message):
        openai_editor(model).edit("a cat", noise(*size), "image-to-image", **call)
    assert openai.requests == []


def test_openai_does_not_upscale(openai):
    with pytest.raises(ProviderUnavailable, match="OpenAI cannot do upscaling: pick Local models"):
        openai_editor().edit("a cat", noise(), "upscale")
    assert openai.requests == []


def test_openai_edit_sizes():
    from adapters.openai_api import edit_size

    assert edit_size("gpt-image-1", 1536, 1024) == "1536x1024"  # its own size where the model makes it
    assert edit_size("gpt-image-1", 800, 600) == "1536x1024"  # else the nearest it makes
    assert edit_size("gpt-image-2", 1000, 600) == "1008x608"
    assert edit_size("some-local-sd", 640, 480) == "640x480"


def test_openai_edit_400_is_not_retried_and_passes_the_detail_on(openai):
    openai.script(error_reply(400, "Invalid mask image format - mask size does not match image size.", param="mask"))
    with pytest.raises(ProviderError) as info:
        openai_editor().edit("a cat", noise(), "inpaint", mask=box_mask((96, 64), (0, 0, 8, 8)))
    assert str(info.value) == (
        "OpenAI rejected the request (400): Invalid mask image format - mask size does not match image size."
    )
    assert info.value.status == 400 and len(openai.requests) == 1


def test_openai_edit_401_names_the_variable(openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-WRONG-KEY-999999")
    with pytest.raises(ProviderError) as info:
        openai_editor().edit("a cat", noise(), "image-to-image")
    assert str(info.value) == "OpenAI rejected the API key (401): check OPENAI_API_KEY."
    assert len(openai.requests) == 1 and "WRONG" not in str(info.value)


def test_openai_edit_500_is_retried_with_the_same_upload(openai):
    openai.script(server_error(500))
    result = openai_editor().edit("a cat", noise(), "image-to-image")
    assert len(openai.requests) == 2 and result.images[0].size == (1536, 1024)
    first, second = (parse_multipart(request) for request in openai.requests)
    assert first[0] == second[0] and first[1]["image"].data == second[1]["image"].data  # the file went again, whole
    openai.script(*[server_error(500)] * 3)
    with pytest.raises(ProviderError, match=r"OpenAI had a server error \(500\): try again later."):
        openai_editor().edit("a cat", noise(), "image-to-image")
    assert len(openai.requests) == 5


def test_openai_edit_without_a_key(openai, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(MissingCredentials):
        openai_editor().edit("a cat", noise(), "image-to-image")


def test_the_fake_refuses_a_mask_without_alpha(openai):
    """The fake checks what the real API checks, so the adapter's alpha mask is tested against something."""
    import httpx2

    image, mask = io.BytesIO(), io.BytesIO()
    noise(64, 64).save(image, format="PNG")
    Image.new("L", (64, 64), 255).save(mask, format="PNG")
    response = httpx2.post(
        f"{openai.url}/v1/images/edits",
        headers={"authorization": f"Bearer {KEY}"},
        data={"model": "gpt-image-1.5", "prompt": "a cat"},
        files={"image": ("i.png", image.getvalue(), "image/png"), "mask": ("m.png", mask.getvalue(), "image/png")},
    )
    assert response.status_code == 400 and "alpha channel" in response.json()["error"]["message"]
