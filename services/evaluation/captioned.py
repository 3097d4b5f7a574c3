"""Images with reference captions, from what the installed scikit-image ships (no download).

The captions were written for this project by looking at each picture: one plain sentence of what
is visible, the kind a good captioner should come close to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.errors import BadInput

CAPTIONS = {
    "astronaut": "A smiling astronaut in an orange spacesuit beside an American flag and a space shuttle model.",
    "camera": "A black and white photo of a man looking through a camera on a tripod in a field.",
    "coffee": "A cup of coffee on a red saucer with a spoon, on a wooden table.",
    "chelsea": "A close-up of a tabby cat with green eyes.",
    "coins": "Rows of old coins on a dark background.",
    "horse": "The black silhouette of a horse on a white background.",
    "hubble_deep_field": "Many small distant galaxies scattered across a dark sky.",
    "immunohistochemistry": "A microscope image of tissue stained brown and blue.",
    "moon": "A grey close-up of a rough surface with a few craters.",
    "page": "A photo of a printed page of text about image segmentation.",
    "rocket": "A rocket on a launch pad at dusk, between lightning towers.",
    "grass": "A grey texture of grass seen from above.",
    "brick": "A grey brick wall seen at an angle.",
    "colorwheel": "A colour wheel with every hue on a black background.",
    "retina": "A photo of the back of a human eye, with red blood vessels.",
}


@dataclass(frozen=True)
class CaptionedImage:
    name: str
    image: Any  # a PIL image
    caption: str


def samples(size: int = 256) -> list[CaptionedImage]:
    """The captioned scikit-image samples as RGB images, the longer side at most `size` pixels."""
    import skimage.data
    from PIL import Image as PILImage

    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 1024:
        raise BadInput(f"The image size must be a whole number of pixels between 32 and 1024 (got {size!r}).")
    out = []
    for name, caption in CAPTIONS.items():
        image = PILImage.fromarray(getattr(skimage.data, name)()).convert("RGB")
        image.thumbnail((size, size))
        out.append(CaptionedImage(name, image, caption))
    return out
