"""Example images that work offline: scikit-image's bundled sample photos, written once as PNGs."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

# (scikit-image loader, file name, labels for zero-shot)
SAMPLES = (
    ("chelsea", "cat.png", "a cat, a dog, a rocket, a cup of coffee"),
    ("coffee", "coffee.png", "a cup of coffee, a cat, a rocket, a bowl of soup"),
    ("rocket", "rocket.png", "a rocket, an airplane, a cat, a lighthouse"),
    ("astronaut", "astronaut.png", "an astronaut, a doctor, a cat, a rocket"),
)


@functools.cache
def example_dir() -> Path:
    return Path(tempfile.gettempdir()) / "fm-gallery-examples"


def images() -> list[tuple[str, str]]:
    """[(png path, labels)] for the samples available; empty if scikit-image is not installed."""
    try:
        from PIL import Image
        from skimage import data
    except ImportError:
        return []
    folder = example_dir()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for loader, name, labels in SAMPLES:
        path = folder / name
        if not path.exists():
            try:
                array = getattr(data, loader)()
            except Exception:  # noqa: BLE001 - a sample that needs a download is skipped, never fetched
                continue
            # a temp name of this process's own: `--workers` starts several processes at once
            tmp = path.with_suffix(f".{os.getpid()}.tmp.png")
            Image.fromarray(array).save(tmp)
            tmp.replace(path)
        out.append((str(path), labels))
    return out
