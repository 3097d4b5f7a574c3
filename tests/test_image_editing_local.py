"""Local image editing on tiny random diffusers pipelines saved with `save_pretrained` and loaded the way the
app loads them: image-to-image and inpainting through `from_pipe` on the text-to-image pipeline, upscaling
with separately configured 4x / 2x upscalers, and the fetch command when an upscaler's weights are absent.
Needs torch, diffusers and transformers."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import numpy as np
from PIL import Image

from adapters import registry
from adapters.errors import BadInput, ProviderUnavailable
from adapters.local import load_runner
from adapters.types import EditMode, ImageParams, Task
from tests.fixtures import tiny_models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Build one tiny pipeline on first use: `tiny("sd")` -> its folder."""
    root = tmp_path_factory.mktemp("tiny-editing")
    builders = {
        "sd": tiny_models.save_tiny_stable_diffusion,
        "x4": tiny_models.save_tiny_upscaler_x4,
        "x2": tiny_models.save_tiny_latent_upscaler_x2,
    }
    built = {}

    def get(name):
        if name not in built:
            built[name] = builders[name](root / name)
        return built[name]

    return get


@pytest.fixture
def editor(tiny):
    return registry.get(Task.IMAGE_GENERATION, "local", model=str(tiny("sd")))


def photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_image_to_image_keeps_the_size_counts_the_steps_and_follows_the_seed(editor):
    steps = []
    params = ImageParams(steps=2, seed=5)
    result = editor.edit(
        "a red cat", photo(), "image-to-image", params, strength=0.5, on_step=lambda *s: steps.append(s)
    )
    (out,) = result.images
    assert out.size == (96, 64) and out.mode == "RGB" and result.seed == 5
    assert steps == [(1, 2), (2, 2)]  # the steps that run, though strength 0.5 skips half the schedule
    assert result.provider == "local" and result.latency_s > 0

    def run(**kw):
        call = {"params": ImageParams(steps=2, seed=5), "strength": 0.5, **kw}
        return pixels(editor.edit("a red cat", photo(), "image-to-image", **call).images[0])

    assert np.array_equal(run(), pixels(out))
    assert not np.array_equal(run(params=ImageParams(steps=2, seed=6)), pixels(out))
    assert not np.array_equal(run(strength=0.9), pixels(out))


def test_one_step_at_the_default_strength_runs_one_step(editor):
    """SD-Turbo's usual single step with strength 0.6: diffusers alone would run none (int(1 * 0.6) == 0)."""
    steps = []
    editor.edit("a cat", photo(), "image-to-image", ImageParams(steps=1), on_step=lambda *s: steps.append(s))
    assert steps == [(1, 1)]


def test_a_strength_too_low_for_the_steps_is_bad_input(editor):
    with pytest.raises(BadInput, match=r"strength 0\.001 is too low for 2 steps"):
        editor.edit("a cat", photo(), "image-to-image", ImageParams(steps=2), strength=0.001)


def test_inpainting_repaints_inside_the_mask_only(editor):
    image, steps = photo(64, 64), []
    mask = Image.new("L", image.size, 0)
    mask.paste(255, (16, 16, 48, 40))
    result = editor.edit(
        "a blue bird",
        image,
        "inpaint",
        ImageParams(steps=2, seed=3),
        mask=mask,
        strength=1.0,
        on_step=lambda *s: steps.append(s),
    )
    out, inside = pixels(result.images[0]), np.asarray(mask) == 255
    assert result.images[0].size == (64, 64) and steps == [(1, 2), (2, 2)]
    assert np.array_equal(out[~inside], pixels(image)[~inside])  # outside the mask: the image, exactly
    assert np.abs(out[inside].astype(int) - pixels(image)[inside]).mean() > 10  # inside: repainted
    again = editor.edit("a blue bird", image, "inpaint", ImageParams(steps=2, seed=3), mask=mask, strength=1.0)
    assert np.array_equal(pixels(again.images[0]), out)


def test_outpainting_grows_the_canvas_and_keeps_the_image(editor):
    image = photo(64, 64)
    result = editor.edit("a beach", image, "outpaint", ImageParams(steps=2, seed=1), pad=(16, 8, 0, 0))
    (out,) = result.images
    assert out.size == (80, 72)
    kept = pixels(out)[8 + 8 :, 16 + 8 :]  # the image, less the overlap repainted along the grown sides
    assert np.array_equal(kept, pixels(image)[8:, 8:])


def test_edit_pipelines_share_the_loaded_weights(editor, tiny):
    editor.edit("a cat", photo(), "image-to-image", ImageParams(steps=1, seed=1))
    editor.edit("a cat", photo(), "inpaint", ImageParams(steps=1, seed=1), mask=Image.new("L", (96, 64), 255))
    runner = load_runner(Task.IMAGE_GENERATION, str(tiny("sd")))
    derived = runner._derived.values()
    assert {type(p).__name__ for p in derived} == {"StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"}
    assert all(p.unet is runner.pipe.unet and p.vae is runner.pipe.vae for p in derived)  # no second copy


@pytest.mark.parametrize(
    ("scale", "variable", "folder"), [(4, "FMG_MODEL_LOCAL_UPSCALE", "x4"), (2, "FMG_MODEL_LOCAL_UPSCALE_X2", "x2")]
)
def test_upscaling_with_the_configured_upscaler(editor, tiny, monkeypatch, scale, variable, folder):
    monkeypatch.setenv(variable, str(tiny(folder)))
    steps = []
    image = photo(40, 24)  # padded to 64 x 64 for the model, then cut back
    result = editor.edit(
        "", image, EditMode.UPSCALE, ImageParams(steps=2, seed=4), scale=scale, on_step=lambda *s: steps.append(s)
    )
    (out,) = result.images
    assert out.size == (40 * scale, 24 * scale) and out.mode == "RGB" and steps == [(1, 2), (2, 2)]
    again = editor.edit("", image, EditMode.UPSCALE, ImageParams(steps=2, seed=4), scale=scale)
    assert np.array_equal(pixels(again.images[0]), pixels(out))


def test_upscaling_without_its_weights_says_how_to_fetch_them(editor, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    problem = editor.edit_problem("upscale", 4)
    assert isinstance(problem, ProviderUnavailable)
    assert str(problem) == (
        "Local 4x upscaling uses a model of its own. The weights of stabilityai/stable-diffusion-x4-upscaler are not "
        "on this machine. With internet, run `python -m adapters.local fetch stabilityai/stable-diffusion-x4-upscaler` "
        "(it saves them to the Hugging Face cache), or set FMG_MODEL_LOCAL_UPSCALE to a folder that holds it."
    )
    with pytest.raises(
        ProviderUnavailable, match=r"fetch stabilityai/sd-x2-latent-upscaler.*FMG_MODEL_LOCAL_UPSCALE_X2"
    ):
        editor.edit("", photo(), "upscale", scale=2)
    monkeypatch.setenv("FMG_MODEL_LOCAL_UPSCALE", str(tmp_path / "nowhere"))
    with pytest.raises(ProviderUnavailable, match="Model file or folder not found"):
        editor.edit("", photo(), "upscale", scale=4)
    assert editor.edit_problem("image-to-image") is None  # the other modes need only the generation model


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs CUDA")
def test_gpu_edits_run_in_half_precision(editor, tiny, monkeypatch):
    import torch

    from adapters.local import load_upscaler

    monkeypatch.setenv("FMG_MODEL_LOCAL_UPSCALE", str(tiny("x4")))
    params = ImageParams(steps=2, seed=2)
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (0, 0, 48, 32))
    assert editor.edit("a cat", photo(), "image-to-image", params).images[0].size == (96, 64)
    assert editor.edit("a cat", photo(), "inpaint", params, mask=mask).images[0].size == (96, 64)
    assert editor.edit("", photo(32, 32), "upscale", params, scale=4).images[0].size == (128, 128)
    runner = load_runner(Task.IMAGE_GENERATION, str(tiny("sd")))
    for pipe in [runner.pipe, *runner._derived.values(), load_upscaler(4)[1].pipe]:
        assert pipe.device.type == "cuda" and pipe.unet.dtype == torch.float16
