"""Zero-shot image classification with CLIP: softmax over image-label similarities.

Users try one image against the same few labels again and again, so both sides are cached
(bounded, least recently used first out): a repeated label skips the text encoder, and a repeated
image (the same pixels after preprocessing) skips the image encoder, which costs more than a few
labels. A second run of the same image and labels is then only preprocessing and a dot product.

Preprocessing is split in two so that callers can do the costly part in their own thread
(`prepare`, outside the scorer's lock and the device slot, while the model serves others), and
a joined batch only stacks, scales and normalises their pixels in one tensor operation.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image as PILImage
from PIL.Image import Image

from local_models import recipe
from local_models.device import Placement, placement
from local_models.recipe import clip_prompt as prompt_for  # "a photo of {label}."

LABEL_CACHE_SIZE = 4096  # label embeddings kept; each is a few KB
IMAGE_CACHE_SIZE = 256  # image embeddings kept, keyed by a digest of the preprocessed pixels


class ClipScorer:
    def __init__(
        self,
        model: Any,
        processor: Any,
        where: Placement,
        cache_size: int = LABEL_CACHE_SIZE,
        image_cache_size: int = IMAGE_CACHE_SIZE,
    ):
        self.model = model
        self.processor = processor
        self.placement = where
        self.cache_size = cache_size
        self.image_cache_size = image_cache_size
        self._label_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._image_cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        # One call at a time: the cache is shared, and a fast tokenizer used by two threads at
        # once can fail ("Already borrowed") when they set padding/truncation.
        self._lock = threading.Lock()
        self.cache_hits = 0  # labels served from the cache, for tests and the run log
        self.cache_misses = 0
        self.image_cache_hits = 0
        self.image_cache_misses = 0
        self._steps = _Steps.of(processor.image_processor)
        if self._steps is not None and not self._reproduces_processor():
            self._steps = None  # (a processor backend that resizes otherwise, e.g. torchvision's)

    @classmethod
    def from_pretrained(cls, path: Path) -> ClipScorer:
        where = placement()
        model_class, processor_class = recipe.CLIP.load()
        model = model_class.from_pretrained(path, dtype=where.dtype).to(where.device).eval()
        return cls(model, processor_class.from_pretrained(path), where)

    def scores(self, image: Image, labels: Sequence[str]) -> list[float]:
        """One probability per label, in the labels' order, summing to 1."""
        return self.scores_batch([image], labels)[0]

    def scores_batch(self, images: Sequence[Image | torch.Tensor], labels: Sequence[str]) -> list[list[float]]:
        """For each image (a PIL image, or `prepare`'s result), one probability per label (the
        labels are encoded once for all)."""
        prepared = [image if isinstance(image, torch.Tensor) else self.prepare(image) for image in images]
        with self._lock, torch.inference_mode():
            text = self._label_embeddings(list(labels))
            features = self._image_embeddings(torch.stack(prepared))
            logits = self.model.logit_scale.float().exp() * features @ text.T
            return logits.softmax(dim=-1).tolist()

    def embed_images(self, images: Sequence[Image | torch.Tensor]) -> np.ndarray:
        """(n_images, dim) float32 unit vectors, those `scores_batch` compares with the labels: the
        features of a linear probe. Cached images are reused, but new ones are not kept, so that
        embedding a whole image set does not push out what interactive callers asked for."""
        prepared = [image if isinstance(image, torch.Tensor) else self.prepare(image) for image in images]
        with self._lock, torch.inference_mode():
            return self._image_embeddings(torch.stack(prepared), remember=False).cpu().numpy()

    def embed_labels(self, labels: Sequence[str]) -> np.ndarray:
        """(n_labels, dim) float32 unit vectors of the labels in CLIP's prompt (`prompt_for`), as
        `scores_batch` encodes them."""
        with self._lock, torch.inference_mode():
            return self._label_embeddings(list(labels)).cpu().numpy()

    def prepare(self, image: Image) -> torch.Tensor:
        """The image resized and cropped as the processor does it, as uint8 (3, H, W): PIL's C code,
        about all the preprocessing costs. Needs no lock. Processors whose steps are not the
        usual CLIP ones give their full (float) result instead."""
        steps = self._steps
        if steps is None:
            return self.processor(images=[image], return_tensors="pt")["pixel_values"][0]
        w, h, short = *image.size, steps.shortest_edge
        # the processor's arithmetic: the short side becomes `short`, the long one is rounded down
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        if image.mode != "RGB":  # as the processor does: transparent pixels become white
            white = PILImage.new("RGBA", image.size, "white")
            image = PILImage.alpha_composite(white, image.convert("RGBA")).convert("RGB")
        image = image.resize(size, steps.resample)
        left, top = (size[0] - steps.width) // 2, (size[1] - steps.height) // 2
        image = image.crop((left, top, left + steps.width, top + steps.height))
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)

    def _model_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """Stacked `prepare` results as the model's input: uint8 ones are scaled and normalised here."""
        pixels = pixels.to(self.placement.device)  # (uint8: a quarter of the bytes to a GPU)
        if pixels.dtype == torch.uint8:
            assert self._steps is not None  # uint8 pixels come only from `prepare`, which needs the steps
            mean, std = self._steps.mean.to(pixels.device), self._steps.std.to(pixels.device)
            pixels = (pixels.float() * self._steps.scale).sub_(mean).div_(std)
        return pixels.to(self.placement.dtype)

    def _reproduces_processor(self) -> bool:
        """Does `prepare` + `_model_input` give the processor's own pixels (checked once, on a probe)?"""
        rng = np.random.default_rng(0)
        probe = PILImage.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
        expected = self.processor(images=[probe], return_tensors="pt")["pixel_values"]
        mine = self._model_input(self.prepare(probe)[None]).float().cpu()
        return mine.shape == expected.shape and torch.allclose(mine, expected.float(), atol=1e-4)

    def _image_embeddings(self, pixels: torch.Tensor, remember: bool = True) -> torch.Tensor:
        """(n_images, dim) unit vectors in float32 for stacked `prepare` results; only images not
        cached go through the image encoder, and they are cached only if `remember`."""
        if self.image_cache_size > 0:  # a digest of what decides the model's input exactly
            keys = [hashlib.sha1(row.numpy().tobytes()).digest() for row in pixels]
        else:
            keys = [i.to_bytes(4, "big") for i in range(len(pixels))]  # no cache: every image is new
        found = {key: self._image_cache[key] for key in keys if key in self._image_cache}
        for key in found:
            self._image_cache.move_to_end(key)
        missing = list({key: i for i, key in reversed(list(enumerate(keys))) if key not in found}.values())
        if missing:  # (each new image once, even if it comes twice)
            chosen = self._model_input(pixels[missing])
            for i, vector in zip(
                missing, _unit(_pooled(self.model.get_image_features(pixel_values=chosen))), strict=False
            ):
                found[keys[i]] = vector
                if self.image_cache_size > 0 and remember:
                    self._image_cache[keys[i]] = vector.clone()  # not a view that keeps the whole batch alive
            while len(self._image_cache) > self.image_cache_size:
                self._image_cache.popitem(last=False)
        self.image_cache_hits += len(keys) - len(missing)
        self.image_cache_misses += len(missing)
        return torch.stack([found[key] for key in keys])

    def _label_embeddings(self, labels: list[str]) -> torch.Tensor:
        """(n_labels, dim) unit vectors in float32; only labels not cached go through the text encoder."""
        found = {label: self._label_cache[label] for label in labels if label in self._label_cache}
        for label in found:
            self._label_cache.move_to_end(label)
        missing = [label for label in dict.fromkeys(labels) if label not in found]
        if missing:
            for label, vector in zip(missing, self._encode_labels(missing), strict=False):
                found[label] = self._label_cache[label] = vector
            while len(self._label_cache) > self.cache_size:
                self._label_cache.popitem(last=False)
        self.cache_hits += len(labels) - len(missing)
        self.cache_misses += len(missing)
        return torch.stack([found[label] for label in labels])

    def _encode_labels(self, labels: list[str]) -> torch.Tensor:
        prompts = [prompt_for(label) for label in labels]
        tokens = self.processor(text=prompts, padding=True, truncation=True, return_tensors="pt")
        tokens = {k: v.to(self.placement.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return _unit(_pooled(self.model.get_text_features(**tokens)))


class _Steps(NamedTuple):
    """The usual CLIP preprocessing: resize the short side, centre-crop, rescale, normalise."""

    shortest_edge: int
    height: int  # of the crop
    width: int
    resample: int
    scale: float
    mean: torch.Tensor  # (3, 1, 1)
    std: torch.Tensor

    @classmethod
    def of(cls, processor: Any) -> _Steps | None:
        """A processor's settings, if its steps are exactly these."""
        steps = ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
        if not all(getattr(processor, step, False) for step in steps) or getattr(processor, "do_pad", False):
            return None
        size, crop = _set_fields(processor.size), _set_fields(processor.crop_size)
        if set(size) != {"shortest_edge"} or set(crop) != {"height", "width"}:
            return None
        mean, std = (
            torch.tensor(values, dtype=torch.float32).view(3, 1, 1)
            for values in (processor.image_mean, processor.image_std)
        )
        resample, scale = processor.resample, processor.rescale_factor
        return cls(size["shortest_edge"], crop["height"], crop["width"], resample, scale, mean, std)


def _set_fields(size: Any) -> dict:
    """A processor's size setting as a dict of the fields set: a dict in transformers 4, a SizeDict in 5."""
    fields = size if isinstance(size, dict) else vars(size) if size is not None else {}
    return {key: value for key, value in fields.items() if value is not None}


def _unit(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to length 1, in float32 (half-precision dot products lose the ranking's detail)."""
    return torch.nn.functional.normalize(features.float(), dim=-1)


def _pooled(output: Any) -> torch.Tensor:
    """The projected features: transformers 5 returns a model output, 4.x a bare tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
