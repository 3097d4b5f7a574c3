"""Small patches to libraries the app runs on, each for the versions it was written for.

Each patch says what upstream does, checks the installed version when applied (outside its range
it is skipped, with a log line: a newer release may have fixed it or changed the code it replaces),
and can be turned off with `FMG_COMPAT_<NAME>=off`. `install()` applies them all; `app.build()`
calls it, and applying one twice is harmless.

atomic_image_cache (`FMG_COMPAT_ATOMIC_IMAGE_CACHE`), Gradio >= 6.0, < 7:
    upstream: `gradio.processing_utils.save_pil_to_cache` writes a content-addressed cache file
    (`<cache>/<hash of the encoded image>/image.png`) in place with `Path.write_bytes`, which
    truncates, then writes. Two identical images (the same seed, prompt and model) share that path,
    so a second handler rewriting it truncates the file while the first one's client downloads it:
    6 of 124 concurrent `/generate` downloads came back cut. The patch writes the same bytes to a
    file of its own in that folder and renames it into place (`os.replace`, atomic on POSIX and
    Windows): a reader sees the old file or the new one, each whole. `save_file_to_cache` already
    does this upstream; `save_bytes_to_cache` (audio, video, MCP) has the same flaw and is not used
    by this app's components, so it is left alone.

missing_matplotlib (`FMG_COMPAT_MISSING_MATPLOTLIB`), Gradio >= 6.0, < 7:
    upstream: Gradio imports matplotlib around every event, on the server's event loop, to set its
    backend. Where it is not installed, each failed import searches sys.path again, and each stat
    lets worker threads take the GIL from the loop. Marked missing once, the import fails at once.

component_signatures (`FMG_COMPAT_COMPONENT_SIGNATURES`), Gradio >= 6.0, < 7:
    upstream: `Block.get_config` calls `inspect.signature(cls.__init__)` for every block of the page,
    for every new session and page load. A function's `__signature__` is where `inspect.signature`
    looks first (PEP 362): each component's constructor gets the signature it has, computed once.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("fm_gallery.compat")
OFF = frozenset({"0", "off", "false", "no"})


@dataclass(frozen=True)
class Patch:
    name: str  # FMG_COMPAT_<NAME> turns it off
    package: str
    versions: tuple[tuple[int, int], tuple[int, int]]  # (lowest, first one not covered), as (major, minor)
    apply: Callable[[], bool]  # True if it changed anything (False: it was in place already)

    @property
    def env_var(self) -> str:
        return f"FMG_COMPAT_{self.name.upper()}"


def _version(package: str) -> tuple[int, int] | None:
    import importlib.metadata

    try:
        found = re.match(r"(\d+)\.(\d+)", importlib.metadata.version(package))
    except importlib.metadata.PackageNotFoundError:
        return None
    return (int(found[1]), int(found[2])) if found else None


# --------------------------------------------------------------------------- atomic_image_cache


def atomic_save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """`gradio.processing_utils.save_pil_to_cache` (6.31), its file written aside and renamed into place."""
    from gradio import processing_utils

    bytes_data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(bytes_data)
    folder.mkdir(exist_ok=True, parents=True)
    target = (folder / f"{name}.{format}").resolve()
    staging = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
    try:
        with open(staging, "xb") as f:  # "x": a name of its own; the mode follows the umask, as upstream's
            f.write(bytes_data)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return str(target)


atomic_save_pil_to_cache.fmg_compat = True  # type: ignore[attr-defined]


def _atomic_image_cache() -> bool:
    from gradio import processing_utils

    if getattr(processing_utils.save_pil_to_cache, "fmg_compat", False):
        return False
    atomic_save_pil_to_cache.upstream = processing_utils.save_pil_to_cache  # type: ignore[attr-defined]
    traced = getattr(processing_utils, "traced_sync", None)  # Gradio's profiling, as upstream's has
    patched = traced("postprocess_save_pil_to_cache")(atomic_save_pil_to_cache) if traced else atomic_save_pil_to_cache
    processing_utils.save_pil_to_cache = patched
    return True


ATOMIC_IMAGE_CACHE = Patch("atomic_image_cache", "gradio", ((6, 0), (7, 0)), _atomic_image_cache)


# --------------------------------------------------------------------------- missing_matplotlib


def _missing_matplotlib() -> bool:
    """Mark matplotlib as missing once, where it is not installed, so the import fails at once."""
    import importlib.util
    import sys

    if "matplotlib" in sys.modules or importlib.util.find_spec("matplotlib") is not None:
        return False
    sys.modules["matplotlib"] = None  # type: ignore[assignment]
    return True


MISSING_MATPLOTLIB = Patch("missing_matplotlib", "gradio", ((6, 0), (7, 0)), _missing_matplotlib)


# --------------------------------------------------------------------------- component_signatures


def _component_signatures() -> bool:
    """Give every Gradio component class's `__init__` its own signature, computed once."""
    import contextlib
    import inspect

    from gradio.blocks import Block

    changed = False
    seen: set[type] = set()
    todo = [Block]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo += cls.__subclasses__()
        init = cls.__dict__.get("__init__")
        if inspect.isfunction(init) and "__signature__" not in init.__dict__:
            with contextlib.suppress(TypeError, ValueError):
                init.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]
                changed = True
    return changed


COMPONENT_SIGNATURES = Patch("component_signatures", "gradio", ((6, 0), (7, 0)), _component_signatures)
PATCHES = (ATOMIC_IMAGE_CACHE, MISSING_MATPLOTLIB, COMPONENT_SIGNATURES)


# --------------------------------------------------------------------------- applying them


def apply(patch: Patch) -> bool:
    """Apply one patch unless it is turned off or the installed version is outside its range;
    True if it is in place afterwards."""
    if os.environ.get(patch.env_var, "").strip().lower() in OFF:
        log.info("compat patch %s is off (%s)", patch.name, patch.env_var)
        return False
    version = _version(patch.package)
    low, high = patch.versions
    if version is None or not low <= version < high:
        log.warning(
            "compat patch %s skipped: written for %s >= %d.%d, < %d.%d; installed: %s",
            patch.name,
            patch.package,
            *low,
            *high,
            "none" if version is None else ".".join(map(str, version)),
        )
        return False
    if patch.apply():
        log.info("compat patch %s applied", patch.name)
    return True


def install() -> dict[str, bool]:
    """Apply every patch (call it after the page's components are defined); which are in place."""
    return {patch.name: apply(patch) for patch in PATCHES}
