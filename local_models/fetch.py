"""Download the local models that are not shipped in a package, once, ahead of time.

    python -m adapters.local fetch                  # CLIP, BLIP and SD-Turbo (the configured defaults)
    python -m adapters.local fetch zero-shot        # the configured model of one task
    python -m adapters.local fetch openai/clip-vit-base-patch32
    python -m adapters.local fetch upscale          # a model the provider uses besides its tasks' (4x upscaling)

The command belongs to the local provider, which knows the configured model ids; this module
knows how to download them.

Files go to the Hugging Face cache, where `local_models.weights` finds them; the app itself
never downloads. Only what the runners load is fetched: configs, tokenizer files and one copy
of the weights per folder (safetensors, else PyTorch .bin), so no TensorFlow / Flax / ONNX
copies, no fp16 or EMA variants and no single-file checkpoints beside a diffusers pipeline.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence

from adapters.types import Task

FETCHED_TASKS = (Task.ZERO_SHOT, Task.CAPTIONING, Task.IMAGE_GENERATION)
TEXT_SUFFIXES = (".json", ".txt", ".model")  # configs, vocabularies and merges, sentencepiece models
SKIPPED_FOLDERS = {"onnx", "openvino", "coreml", "tflite"}  # other runtimes' exports
PYTORCH_WEIGHTS = ("pytorch_model", "diffusion_pytorch_model")  # .bin names; others are optimizer states etc.
NETWORK_ERRORS = {"ConnectionError", "ConnectError", "TransportError", "TimeoutException", "Timeout", "TimeoutError"}


class FetchError(Exception):
    """A one-line reason, printed as is."""


def select_files(files: Iterable[str]) -> list[str]:
    """The files of a repo listing that a runner loads (see the module docstring)."""
    files = [f for f in files if not SKIPPED_FOLDERS & set(f.split("/")[:-1])]
    pipeline = "model_index.json" in files
    weights: dict[str, list[str]] = {}  # folder -> its canonical weight files
    for folder in sorted({posixpath.dirname(f) for f in files}):
        if pipeline and folder == "":
            continue  # a single-file checkpoint duplicating the pipeline's components
        in_folder = [f for f in files if posixpath.dirname(f) == folder and not _is_variant(f)]
        safetensors = [f for f in in_folder if f.endswith(".safetensors")]
        pytorch = [f for f in in_folder if f.endswith(".bin") and posixpath.basename(f).startswith(PYTORCH_WEIGHTS)]
        weights[folder] = safetensors or pytorch
    chosen = {f for group in weights.values() for f in group}
    for f in files:
        name = posixpath.basename(f)
        if not f.endswith(TEXT_SUFFIXES) or _is_variant(f) or name.startswith("."):
            continue
        if ".index." in name and not _indexes_one_of(f, chosen):
            continue  # the shard index of weights that are not fetched
        chosen.add(f)
    return sorted(chosen)


def _indexes_one_of(index: str, weights: set[str]) -> bool:
    """Whether a shard index (`model.safetensors.index.json`) lists shards among `weights`."""
    indexed = posixpath.join(posixpath.dirname(index), posixpath.basename(index).split(".index.")[0])
    stem, kind = posixpath.splitext(indexed)
    return any(w.startswith(stem) and w.endswith(kind) for w in weights)


def _is_variant(path: str) -> bool:
    """`model.fp16.safetensors`, `diffusion_pytorch_model.non_ema.bin`, `model.safetensors.index.fp16.json`."""
    name = posixpath.basename(path)
    if ".index." in name:
        return not name.endswith(".index.json")
    if name.endswith((".safetensors", ".bin")):
        return "." in posixpath.splitext(name)[0]
    return False


Configured = Callable[[Task], str | None]  # a task's configured local model id


def targets(args: Sequence[str], configured: Configured, extra: Mapping[str, str | None] | None = None) -> list[str]:
    """Repo ids to fetch for the command-line arguments (task names, `extra` model names such as "upscale",
    or repo ids); `extra` maps each such name to its configured model."""
    tasks = {task.value: task for task in Task}
    extra = extra or {}
    repos: list[str] = []
    for arg in args or [task.value for task in FETCHED_TASKS]:
        if arg in tasks or arg in extra:
            model = (configured(tasks[arg]) if arg in tasks else extra[arg]) or ""
            if model.startswith(("pkg:", ".", "/", "~")) or "/" not in model:
                print(f"{arg}: {model} is on this machine already; nothing to fetch.")
                continue
            repos.append(model)
        elif arg.count("/") == 1 and all(arg.split("/")):
            repos.append(arg)
        else:
            names = ", ".join([*tasks, *extra])
            raise FetchError(f"{arg!r} is neither a task or model name ({names}) nor a repo id like 'org/name'.")
    return list(dict.fromkeys(repos))


def fetch(repo_id: str) -> str:
    """Download `repo_id`'s runnable files into the HF cache; return the snapshot folder."""
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except RepositoryNotFoundError:
        raise FetchError(
            f"{repo_id} was not found on the Hugging Face Hub (or needs access: set HF_TOKEN); nothing was downloaded."
        ) from None
    except HfHubHTTPError as err:
        raise FetchError(
            f"The Hugging Face Hub refused {repo_id} ({_first_line(err)}); nothing was downloaded."
        ) from None
    except Exception as err:
        if not _is_network_error(err):
            raise
        if type(err).__name__ == "OfflineModeIsEnabled":
            raise FetchError(
                f"HF_HUB_OFFLINE is set, so {repo_id} cannot be fetched: unset it; nothing was downloaded."
            ) from None
        raise FetchError(
            f"Could not reach the Hugging Face Hub at {constants.ENDPOINT} to fetch {repo_id} "
            f"({type(err).__name__}: {_first_line(err)}); nothing was downloaded. "
            "Check the internet connection, or HF_ENDPOINT if you use a mirror."
        ) from None
    sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
    files = select_files(sizes)
    if not any(f.endswith((".safetensors", ".bin")) for f in files):
        raise FetchError(
            f"{repo_id} has no safetensors or PyTorch weights that this app can load; nothing was downloaded."
        )
    print(f"Fetching {repo_id}: {len(files)} files, {sum(sizes[f] for f in files) / 1e6:,.0f} MB ...", flush=True)
    try:
        return snapshot_download(repo_id, allow_patterns=files)
    except Exception as err:
        if not (_is_network_error(err) or isinstance(err, (HfHubHTTPError, OSError))):
            raise
        raise FetchError(
            f"Downloading {repo_id} did not complete ({type(err).__name__}: {_first_line(err)}): "
            "run the same command again to resume."
        ) from None


def _is_network_error(err: BaseException) -> bool:
    """Connection and timeout errors, whichever HTTP library this huggingface_hub version uses."""
    return any(cls.__name__ in NETWORK_ERRORS for cls in type(err).__mro__)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]


def main(
    argv: Sequence[str] | None, configured: Configured, prog: str, extra: Mapping[str, str | None] | None = None
) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").split("\n\n")[0])
    default = " ".join(task.value for task in FETCHED_TASKS)
    parser.add_argument("models", nargs="*", metavar="TASK_OR_REPO_ID", help=f"default: {default}")
    args = parser.parse_args(argv)
    try:
        for repo_id in targets(args.models, configured, extra):
            print(f"{repo_id}: saved in {fetch(repo_id)}")
    except FetchError as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted: run the same command again to resume.", file=sys.stderr)
        return 1
    return 0
