"""The Image generation tab's editing: the ImageEditor's value becomes image and mask, and each
mode reaches the provider's edit (fake editors from tests/test_image_editing.py)."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demos import image_generation as tab
from tests.test_image_editing import FILL, editors, noise  # noqa: F401 - `editors` is a fixture

pytestmark = pytest.mark.usefixtures("editors")


def strokes(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """A transparent layer with a brush stroke (any colour) over `box`."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), box)
    return layer


def run(editor, mode, provider="full", **changes):
    values = {"strength": 0.6, "scale": 2, "border": 64, "steps": 2, "guidance": 0.0, "seed": 5}
    values.update(changes)
    return tab.edit(
        "a green field", editor, mode, values["strength"], values["scale"], values["border"], values["steps"],
        values["guidance"], values["seed"], provider, "",
    )  # fmt: skip


def test_inpainting_repaints_only_the_strokes():
    image = noise(96, 64)
    result, info = run({"background": image, "layers": [strokes(image.size, (8, 8, 40, 40))]}, "inpaint")
    out = np.asarray(result)
    assert (out[10:38, 10:38] == FILL).all()  # inside the stroke: repainted
    assert (out[50:, 50:] == np.asarray(image)[50:, 50:]).all()  # outside: exactly as it was
    assert "Inpaint" in info and "seed 5" in info


def test_each_mode_reaches_the_provider():
    image = noise(96, 64)
    assert run({"background": image}, "upscale")[0].size == (192, 128)
    assert run({"background": image}, "outpaint", border=64)[0].size == (96 + 128, 64 + 128)
    assert run({"background": image}, "image-to-image")[0].size == (96, 64)


def test_what_cannot_be_done_says_what_to_do():
    image = noise(96, 64)
    with pytest.raises(gr.Error, match="paint over the area"):
        run({"background": image, "layers": []}, "inpaint")
    with pytest.raises(gr.Error, match="Upload or paste an image"):
        run({"background": None}, "image-to-image")
    with pytest.raises(gr.Error, match="pick"):
        run({"background": image}, "upscale", provider="i2i")
    choices = dict((value, label) for label, value in tab.edit_modes_of("i2i")["choices"])
    assert "not with this provider" in choices["upscale"] and "not with" not in choices["image-to-image"]


def test_a_logged_edit_is_not_reproduced_as_text_to_image():
    from demos.widgets import reproduce

    run = {"task": "image-generation", "provider": "full", "model": "m", "inputs": {"prompt": "x", "mode": "inpaint"}}
    assert reproduce.for_run(run).startswith("# No program yet for image edits (inpaint)")
