"""Text embeddings with sentence-transformers (all-MiniLM-L6-v2 is the packaged default)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from local_models import recipe
from local_models.device import placement

BATCH_SIZE = 64


class SentenceEmbedder:
    def __init__(self, model: Any):
        self.model = model
        # A fast tokenizer shared by threads can fail with "Already borrowed" when they set
        # padding/truncation at once; on CPU parallel calls only compete for the same cores anyway.
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path: Path) -> SentenceEmbedder:
        (model_class,) = recipe.SENTENCE_EMBEDDINGS.load()
        return cls(model_class(str(path), device=placement().device))

    def embed(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """float32 (len(texts), dim), rows L2-normalised.

        `kind` ("query" or "document") selects the model's prompt of that name where it defines
        one (e5 / bge style "query: " prefixes); models without prompts embed both alike.
        """
        options = dict(batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        encode = getattr(self.model, f"encode_{kind}", None)  # sentence-transformers >= 5 picks the prompt itself
        with self._lock:
            if encode is not None:
                vectors = encode(list(texts), **options)
            else:
                prompt_name = kind if kind in (getattr(self.model, "prompts", None) or {}) else None
                vectors = self.model.encode(list(texts), prompt_name=prompt_name, **options)
        return np.asarray(vectors, dtype=np.float32)
