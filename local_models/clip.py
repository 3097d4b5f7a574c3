"""Zero-shot image classification with CLIP: softmax over image-label similarities.

Users try one image against the same few labels again and again, so label embeddings are
cached (bounded, least recently used first out): a repeated label skips the text encoder.
"""

from __future__ import annotations

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


def prompt_for(label: str) -> str:
    """CLIP was trained on captions: "a photo of {label}." scores better than a bare word.

    A label that already reads like a caption (ends with a full stop, or has four words or more)
    is used as written.
    """
    if label.rstrip().endswith((".", "!", "?")) or len(label.split()) >= 4:
        return label
    return f"a photo of {label}."


class ClipScorer:
    def __init__(self, model: Any, processor: Any, where: Placement, cache_size: int = LABEL_CACHE_SIZE):
        self.model = model
        self.processor = processor
        self.placement = where
        self.cache_size = cache_size
        self._label_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        # One call at a time: the cache is shared, and a fast tokenizer used by two threads at
        # once can fail ("Already borrowed") when they set padding/truncation.
        self._lock = threading.Lock()
        self.cache_hits = 0  # labels served from the cache, for tests and the run log
        self.cache_misses = 0

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
            pixels = pixels.to(self.placement.device, self.placement.dtype)
            features = _unit(_pooled(self.model.get_image_features(pixel_values=pixels)))
            logits = self.model.logit_scale.float().exp() * features @ text.T
            return logits.softmax(dim=-1).tolist()

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
