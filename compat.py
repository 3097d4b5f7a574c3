"""Small patches to libraries the app runs on, each for the versions it was written for.

Each patch says what upstream does, checks the installed version when applied (outside its range
it is skipped, with a log line: a newer release may have fixed it or changed the code it replaces),
and can be turned off with `FMG_COMPAT_<NAME>=off`. `install()` applies them all; `app.build()`
calls it, and applying one twice is harmless.

atomic_image_cache (`FMG_COMPAT_ATOMIC_IMAGE_CACHE`), Gradio >= 6.0, < 7:
    upstream: `gradio.processing_utils.save_pil_to_cache` writes a content-addressed cache file
    (`<cache>/<hash of the encoded image>/image.png`) in place with `Path.write_bytes`, which
    truncates, then writes. Two identical images (the same seed, prompt and model) share that path,
    so a second handler rewriting it truncates the file while the first one's client downloads it
    and gets it cut. The patch writes the same bytes to a
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

lazy_session_configs (`FMG_COMPAT_LAZY_SESSION_CONFIGS`), Gradio >= 6.0, < 7:
    upstream: `gradio.state_holder.SessionState.__init__` builds every block's config (`config_for_block`,
    one `get_config` each) for each new session, on the server's event loop, though only the blocks
    an event changes, and deep links, ever read them: with this page's ~440 blocks, 17 ms per new
    session, so 50 sessions arriving together queue almost a second. The patch makes that mapping
    compute a block's config when it is first read (or when all are listed, for a deep link).

Scoped patches: used by the one call that needs them, on one object or for one moment, never at
import and never process-wide by `install()`. The same version range and opt-out apply (`usable`).

stream_keep_alive (`FMG_COMPAT_STREAM_KEEP_ALIVE`), openai >= 1.40, < 4 (`keep_stream_connection`):
    upstream: the sync SDK closes a stream's response as soon as it reads `data: [DONE]`, before the
    end of the HTTP/1.1 body, and an unfinished response cannot go back to httpx's pool, so every
    streamed reply opened a new connection (a TLS handshake with a hosted vendor). The async SDK
    reads the rest first; so does this, for a finished stream only, within a short read timeout.

llama_default_params (`FMG_COMPAT_LLAMA_DEFAULT_PARAMS`), llama-cpp-python >= 0.3, < 0.4
(`llama_without_extra_buffers`):
    upstream: `Llama()` takes no argument for llama.cpp's `use_extra_bufts` (`--no-repack`); it starts
    from `llama_model_default_params()`. For one construction, under a lock, that function returns
    params with the extra buffer types off (local_models/llama_open.py says when that is needed).

hf_response_hook (`FMG_COMPAT_HF_RESPONSE_HOOK`), huggingface_hub >= 1.0, < 3 (`add_hf_response_hook`):
    upstream: `InferenceClient` returns bodies only, and the router names the provider that served a
    call in a response header. A response hook on the SDK's process-wide HTTP session reads it; it is
    added again whenever the SDK rebuilds that session.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("fm_gallery.compat")
OFF = frozenset({"0", "off", "false", "no"})


@dataclass(frozen=True)
class Patch:
    name: str  # FMG_COMPAT_<NAME> turns it off
    package: str
    versions: tuple[tuple[int, int], tuple[int, int]]  # (lowest, first one not covered), as (major, minor)
    apply: Callable[[], bool] | None = None  # True if it changed anything; None: a scoped patch

    @property
    def env_var(self) -> str:
        return f"FMG_COMPAT_{self.name.upper()}"


@functools.cache
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
# --------------------------------------------------------------------------- lazy_session_configs


class LazyConfigs(dict):
    """A session's block configs, each built on first read from `blocks_config` (as upstream builds
    them all at once); a value set by the session replaces the pending one."""

    def __init__(self, blocks_config: Any, keys: Iterable[int]):
        super().__init__()
        self._blocks_config = blocks_config
        self._pending = set(keys)

    def _fill(self, key: Any) -> None:
        if key in self._pending:
            self._pending.discard(key)
            config = self._blocks_config.config_for_block(key, [], self._blocks_config.blocks[key])
            dict.__setitem__(self, key, config)

    def _fill_all(self) -> None:
        for key in sorted(self._pending):
            self._fill(key)

    def __getitem__(self, key: Any) -> Any:
        self._fill(key)
        return dict.__getitem__(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._pending.discard(key)
        dict.__setitem__(self, key, value)

    def __contains__(self, key: object) -> bool:
        return key in self._pending or dict.__contains__(self, key)

    def __len__(self) -> int:
        return len(self._pending) + dict.__len__(self)

    def __iter__(self):  # type: ignore[override]
        self._fill_all()
        return dict.__iter__(self)

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 - dict.get would skip the lazy fill

    def keys(self):  # type: ignore[override]
        self._fill_all()
        return dict.keys(self)

    def values(self):  # type: ignore[override]
        self._fill_all()
        return dict.values(self)

    def items(self):  # type: ignore[override]
        self._fill_all()
        return dict.items(self)


def _lazy_session_configs() -> bool:
    from gradio import state_holder

    cls = state_holder.SessionState
    if getattr(cls.__init__, "fmg_compat", False):
        return False
    original = cls.__init__

    def __init__(self, blocks) -> None:  # `SessionState.__init__` (6.31), the configs left to LazyConfigs
        self.blocks_config = state_holder.copy(blocks.default_config)
        keys = [k for k in self.blocks_config.blocks if k in blocks.blocks]
        self.config_values = LazyConfigs(self.blocks_config, keys)
        self.state_data = {}
        self._state_ttl = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600

    __init__.fmg_compat = True  # type: ignore[attr-defined]
    __init__.upstream = original  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]
    return True


LAZY_SESSION_CONFIGS = Patch("lazy_session_configs", "gradio", ((6, 0), (7, 0)), _lazy_session_configs)
PATCHES = (ATOMIC_IMAGE_CACHE, MISSING_MATPLOTLIB, COMPONENT_SIGNATURES, LAZY_SESSION_CONFIGS)


# --------------------------------------------------------------------------- applying them


def usable(patch: Patch) -> bool:
    """Is `patch` on and the installed version inside its range? A skip is logged once per process."""
    if os.environ.get(patch.env_var, "").strip().lower() in OFF:
        _log_once(patch, logging.INFO, "compat patch %s is off (%s)", patch.name, patch.env_var)
        return False
    version = _version(patch.package)
    low, high = patch.versions
    if version is None or not low <= version < high:
        _log_once(
            patch,
            logging.WARNING,
            "compat patch %s skipped: written for %s >= %d.%d, < %d.%d; installed: %s",
            patch.name,
            patch.package,
            *low,
            *high,
            "none" if version is None else ".".join(map(str, version)),
        )
        return False
    return True


_logged: set[tuple[str, str]] = set()


def _log_once(patch: Patch, level: int, message: str, *args: Any) -> None:
    if patch.apply is None:  # scoped patches are checked on every use
        if (patch.name, message) in _logged:
            return
        _logged.add((patch.name, message))
    log.log(level, message, *args)


def apply(patch: Patch) -> bool:
    """Apply one process-wide patch unless it is off or outside its versions; True if in place."""
    assert patch.apply is not None, f"{patch.name} is scoped: its caller uses it"
    if not usable(patch):
        return False
    if patch.apply():
        log.info("compat patch %s applied", patch.name)
    return True


def install() -> dict[str, bool]:
    """Apply every patch (call it after the page's components are defined); which are in place."""
    return {patch.name: apply(patch) for patch in PATCHES}


# --------------------------------------------------------------------------- scoped: stream_keep_alive

STREAM_KEEP_ALIVE = Patch("stream_keep_alive", "openai", ((1, 40), (4, 0)))
KEEP_ALIVE_READ_S = 0.1  # how long a finished stream may take to end its HTTP body (the async SDK's bound)


def keep_stream_connection(response: Any) -> threading.Event:
    """Make `response.close()` read the rest of the body first once the returned event is set, so
    a finished stream's connection goes back to the pool; a stream stopped early closes at once."""
    finished = threading.Event()
    if not usable(STREAM_KEEP_ALIVE):
        return finished
    close = response.close

    def read_rest_then_close() -> None:
        try:
            if finished.is_set() and not response.is_closed and response.http_version == "HTTP/1.1":
                timeouts = response.request.extensions.get("timeout")
                if isinstance(timeouts, dict):  # read by the transport when the body is read again
                    timeouts["read"] = KEEP_ALIVE_READ_S
                for _ in response.stream:  # the raw bytes after [DONE]: the end of the chunked body
                    pass
        except Exception:  # noqa: BLE001 - a connection that cannot be reused is just closed
            pass
        finally:
            close()

    response.close = read_rest_then_close
    return finished


# --------------------------------------------------------------------------- scoped: llama_default_params

LLAMA_DEFAULT_PARAMS = Patch("llama_default_params", "llama_cpp_python", ((0, 3), (0, 4)))
_llama_params_lock = threading.Lock()


@contextlib.contextmanager
def llama_without_extra_buffers() -> Iterator[bool]:
    """For the block, `Llama()` starts from default model params with `use_extra_bufts` off;
    yields whether it does (False: patch off, outside its versions, or a llama.cpp without them)."""
    if not usable(LLAMA_DEFAULT_PARAMS):
        yield False
        return
    from llama_cpp import llama as llama_module

    library = llama_module.llama_cpp
    defaults = library.llama_model_default_params

    def without():
        params = defaults()
        params.use_extra_bufts = False
        return params

    with _llama_params_lock:
        if not hasattr(defaults(), "use_extra_bufts"):  # an older llama.cpp, which has no such buffers
            yield False
            return
        library.llama_model_default_params = without
        try:
            yield True
        finally:
            library.llama_model_default_params = defaults


# --------------------------------------------------------------------------- scoped: hf_response_hook

HF_RESPONSE_HOOK = Patch("hf_response_hook", "huggingface_hub", ((1, 0), (3, 0)))
_hf_hook_lock = threading.Lock()


def add_hf_response_hook(hook: Callable[[Any], None]) -> bool:
    """Put `hook` on huggingface_hub's shared HTTP session (again if the SDK rebuilt it); True if on."""
    if not usable(HF_RESPONSE_HOOK):
        return False
    from huggingface_hub.utils import get_session

    hooks = get_session().event_hooks["response"]
    if hook not in hooks:
        with _hf_hook_lock:
            if hook not in hooks:
                hooks.append(hook)
    return True
