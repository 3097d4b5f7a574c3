"""Zero-shot image classification with CLIP: softmax over image-label similarities.

Users try one image against the same few labels again and again, so both sides are cached
(bounded, least recently used first out): a repeated label skips the text encoder, and a repeated
image (the same pixels after preprocessing) skips the image encoder, which costs more than a few
labels. A second run of the same image and labels is then only preprocessing and a dot product.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL.Image import Image
from transformers import AutoModel, AutoProcessor

from local_models.device import Placement, placement

LABEL_CACHE_SIZE = 4096  # label embeddings kept; each is a few KB
IMAGE_CACHE_SIZE = 256  # image embeddings kept, keyed by a digest of the preprocessed pixels


def prompt_for(label: str) -> str:
    """CLIP was trained on captions: "a photo of {label}." scores better than a bare word.

    A label that already reads like a caption (ends with a full stop, or has four words or more)
    is used as written.
    """
    if label.rstrip().endswith((".", "!", "?")) or len(label.split()) >= 4:
        return label
    return f"a photo of {label}."


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

    @classmethod
    def from_pretrained(cls, path: Path) -> ClipScorer:
        where = placement()
        model = AutoModel.from_pretrained(path, dtype=where.dtype).to(where.device).eval()
        return cls(model, AutoProcessor.from_pretrained(path), where)

    def scores(self, image: Image, labels: Sequence[str]) -> list[float]:
        """One probability per label, in the labels' order, summing to 1."""
        return self.scores_batch([image], labels)[0]

    def scores_batch(self, images: Sequence[Image], labels: Sequence[str]) -> list[list[float]]:
        """For each image, one probability per label (the labels are encoded once for all)."""
        with self._lock, torch.inference_mode():
            text = self._label_embeddings(list(labels))
            pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
            features = self._image_embeddings(pixels)
            logits = self.model.logit_scale.float().exp() * features @ text.T
            return logits.softmax(dim=-1).tolist()

    def _image_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n_images, dim) unit vectors in float32; only images not cached go through the image encoder."""
        if self.image_cache_size > 0:  # a digest of the model's exact input (about 0.4 ms an image on a CPU)
            keys = [hashlib.sha1(row.numpy().tobytes()).digest() for row in pixels]
        else:
            keys = [i.to_bytes(4, "big") for i in range(len(pixels))]  # no cache: every image is new
        found = {key: self._image_cache[key] for key in keys if key in self._image_cache}
        for key in found:
            self._image_cache.move_to_end(key)
        missing = list({key: i for i, key in reversed(list(enumerate(keys))) if key not in found}.values())
        if missing:  # (each new image once, even if it comes twice)
            chosen = pixels[missing].to(self.placement.device, self.placement.dtype)
            for i, vector in zip(missing, _unit(_pooled(self.model.get_image_features(pixel_values=chosen)))):
                found[keys[i]] = vector
                if self.image_cache_size > 0:
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
            for label, vector in zip(missing, self._encode_labels(missing)):
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


def _unit(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to length 1, in float32 (half-precision dot products lose the ranking's detail)."""
    return torch.nn.functional.normalize(features.float(), dim=-1)


def _pooled(output: Any) -> torch.Tensor:
    """The projected features: transformers 5 returns a model output, 4.x a bare tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
