"""An image just under the pixel limit is scaled down as it is decoded, in its own mode: a few
kilobytes of 1-bit PNG must not become hundreds of megabytes of RGB on the server."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import resource
from PIL import Image
Image.new("1", (6300, 6300), 1).save({path!r})  # 39.7 megapixels, a few kilobytes
from adapters import inputs
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = inputs.load_image({path!r})
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(image.size, image.mode, grown // 1024)
"""


def test_a_near_limit_image_costs_little_memory(tmp_path):
    path = str(tmp_path / "near-limit.png")
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(path=path)], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    size, mode, grown_mb = " ".join(out[:2]), out[2], int(out[3])
    assert size == "(2048, 2048)" and mode == "RGB"
    assert grown_mb < 60  # decoded whole as RGB it would take about 120 MB, plus copies
