"""The "local" provider: every task on this machine's CPU or GPU through `local_models`.

Each adapter resolves its model reference to local weights, loads the runner once (shared by
all callers) and converts runner failures into the project's errors. Local calls take turns on
the device slot, interactive ones before an evaluation's (`adapters.priority`); embeddings and
CLIP scoring requests that arrive together are first joined into one model call
(`local_models.batching`), which then takes the slot once for all of them.
A CLIP image is resized in its caller's thread before that, holding neither the slot nor a batch.
Where the launcher runs a llama.cpp server (`FMG_LOCAL_CHAT_URL`), local chat goes there
(`adapters.local_chat_server`).

`python -m adapters.local fetch [TASK_OR_REPO_ID ...]` downloads the configured models that no
package ships (`local_models.fetch`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adapters import config, local_chat_server, priority
from adapters.errors import FMError, ProviderError, ProviderUnavailable
from adapters.registry import Provider
from adapters.tasks import Captioner, Completer, Embedder, ImageGenerator, ZeroShotClassifier
from adapters.types import CompletionParams, EditMode, ImageParams, Task, Usage

if TYPE_CHECKING:
    from local_models.batching import MicroBatcher

NAME = "local"


@dataclass(frozen=True)
class Runner:
    module: str  # in local_models/
    cls: str
    needs: tuple[str, ...]  # importable modules
    install: str  # what to pip install if they are missing
    marker: str = "config.json"  # the file that shows a folder holds a saved model


RUNNERS: dict[Task, Runner] = {
    Task.COMPLETION: Runner("chat_transformers", "TransformersChat", ("torch", "transformers"), "torch transformers"),
    Task.ZERO_SHOT: Runner("clip", "ClipScorer", ("torch", "transformers"), "torch transformers"),
    Task.CAPTIONING: Runner("captioning", "ImageCaptioner", ("torch", "transformers"), "torch transformers"),
    Task.IMAGE_GENERATION: Runner(
        "diffusion",
        "TextToImage",
        ("torch", "diffusers", "transformers"),
        "torch diffusers transformers",
        marker="model_index.json",
    ),
    Task.EMBEDDINGS: Runner(
        "sentence_embeddings", "SentenceEmbedder", ("torch", "sentence_transformers"), "sentence-transformers"
    ),
}
GGUF_RUNNER = Runner("chat_gguf", "LlamaCppChat", ("llama_cpp",), "llama-cpp-python")


def runner_for(task: Task, model: str) -> Runner:
    if task is Task.COMPLETION and model.lower().endswith(".gguf"):
        return GGUF_RUNNER
    return RUNNERS[task]


def env_var(task: Task) -> str:
    return f"FMG_MODEL_LOCAL_{task.value.upper().replace('-', '_')}"


def check(task: Task, model: str) -> FMError | None:
    from local_models import weights

    if task is Task.COMPLETION and local_chat_server.completer(model) is not None:
        if importlib.util.find_spec("openai") is None:
            return ProviderUnavailable(
                f"Local chat through {local_chat_server.ENV} needs the OpenAI SDK: pip install openai."
            )
        return None  # served by the shared llama.cpp server: nothing to load here
    runner = runner_for(task, model)
    missing = [m for m in runner.needs if importlib.util.find_spec(m) is None]
    if missing:
        return ProviderUnavailable(
            f"Local {task.title.lower()} needs {', '.join(missing)}: pip install {runner.install}."
        )
    return weights.missing(model, runner.marker, env_var(task))


def load_runner(task: Task, model: str):
    """The shared runner instance for (task, model), loaded on first use."""
    from local_models import loading, weights

    runner = runner_for(task, model)
    path = weights.resolve(model, runner.marker, env_var(task))

    def build():
        with _errors(model, loading_model=True):
            return getattr(importlib.import_module(f"local_models.{runner.module}"), runner.cls).from_pretrained(path)

    return loading.load((task, runner.cls, str(path)), build)


def gguf_chat_file() -> tuple[str, Path] | None:
    """The configured local chat model and its GGUF file, or None where it is not a GGUF on this machine
    (what a llama.cpp server can serve in its place: `launcher.llama_server`)."""
    from local_models import weights

    model = config.model_for(NAME, Task.COMPLETION)
    if not model or runner_for(Task.COMPLETION, model) is not GGUF_RUNNER:
        return None
    try:
        return model, weights.resolve(model, GGUF_RUNNER.marker, env_var(Task.COMPLETION))
    except FMError:
        return None


@contextlib.contextmanager
def _errors(model: str, loading_model: bool = False, take_slot: bool = True) -> Iterator[None]:
    """Take the device slot and turn runner exceptions into project errors (the full detail goes
    to the server log only). A batched call takes the slot later, in `_run_slotted`."""
    from local_models.device import slot

    try:
        with slot(priority.background()) if take_slot else contextlib.nullcontext():
            yield
    except FMError:
        raise
    except MemoryError:
        raise ProviderError(f"Not enough memory to run {model}: try a smaller input or model.") from None
    except Exception as err:
        name = type(err).__name__
        if "OutOfMemory" in name:
            raise ProviderError(f"The GPU ran out of memory running {model}: try a smaller size or batch.") from None
        if isinstance(err, ImportError):
            missing = err.name or "a package"
            raise ProviderUnavailable(
                f"The model {model} needs {missing}, which is not installed: pip install {missing}."
            ) from err
        if loading_model:
            raise ProviderUnavailable(
                f"The model {model} could not be loaded ({name}): its files may be incomplete; fetch it again."
            ) from err
        raise ProviderError(f"The local model {model} failed ({name}): see the server log.") from err


# --- micro-batching: concurrent embeddings and CLIP scoring calls run as one model call ---------------

_batchers: dict[tuple[Task, str, str], MicroBatcher] = {}  # (task, model, runner method) -> its batcher
_batchers_lock = threading.Lock()


def _run_batched(adapter, runner, method: str, items: list, key, max_items: int):
    """`runner.<method>(items, key)` for this caller. With batching on (the default; `FMG_BATCHING=off`
    turns it off) the items of concurrent callers with the same key are joined into one call: the
    batcher collects them before the device slot is taken, or the slot would let one through at a time.
    The caller loads `runner` first, so that a model that cannot load fails it alone, before any queue.
    """
    from local_models import batching

    with _errors(adapter.model, take_slot=False):
        if not batching.enabled():
            return _call_slotted(runner, method, items, key)
        name = (adapter.task, adapter.model, method)
        with _batchers_lock:
            if name not in _batchers:
                run = functools.partial(_run_slotted, adapter.task, adapter.model, method)
                _batchers[name] = batching.MicroBatcher(run, max_items=max_items, name=f"fmg-batch-{method}")
            batcher = _batchers[name]
        return batcher.submit(items, key)


def _run_slotted(task: Task, model: str, method: str, items: list, key):
    return _call_slotted(load_runner(task, model), method, items, key)


def _call_slotted(runner, method: str, items: list, key):
    from local_models.device import slot

    with slot(priority.background()):
        return getattr(runner, method)(items, key)


def _counted(events: Iterator) -> Iterator:
    """The events, with the output tokens counted where the server sends no usage (llama.cpp's
    streams carry none): one chunk per token, as the in-process runner counts them."""
    deltas, usage = 0, False
    for event in events:
        deltas += isinstance(event, str) and bool(event)
        usage = usage or isinstance(event, Usage)
        yield event
    if not usage:
        yield Usage(output_tokens=deltas)


class LocalCompleter(Completer):
    def _stream(self, messages, params: CompletionParams):
        shared = local_chat_server.completer(self.model)
        if shared is not None:  # the launcher's llama.cpp server, shared by the workers
            with _errors(self.model):  # still one turn at a time in this worker, interactive calls first
                yield from _counted(shared._stream(messages, params))
            return
        runner = load_runner(self.task, self.model)
        with _errors(self.model):
            yield from runner.stream(messages, params)


class LocalClassifier(ZeroShotClassifier):
    max_batch = 64  # images per model call: joined concurrent requests, or a slice of `embed_images`
    embeds = True

    def _classify(self, image, labels):
        runner = load_runner(self.task, self.model)
        with _errors(self.model, take_slot=False):  # in this thread, while the model serves other callers
            pixels = runner.prepare(image)
        return _run_batched(self, runner, "scores_batch", [pixels], tuple(labels), self.max_batch)[0]

    def _embed_images(self, images):
        """Resized in this thread, then encoded `max_batch` at a time, each slice taking the device
        slot on its own so that interactive calls get turns during a large set."""
        import numpy as np

        runner = load_runner(self.task, self.model)
        with _errors(self.model, take_slot=False):
            pixels = [runner.prepare(image) for image in images]
        chunks = []
        for i in range(0, len(pixels), self.max_batch):
            with _errors(self.model):
                chunks.append(runner.embed_images(pixels[i : i + self.max_batch]))
        return np.concatenate(chunks)

    def _embed_labels(self, labels):
        runner = load_runner(self.task, self.model)
        with _errors(self.model):
            return runner.embed_labels(labels)


class LocalCaptioner(Captioner):
    def _caption(self, image, prompt):
        runner = load_runner(self.task, self.model)
        with _errors(self.model):
            return runner.caption(image, prompt)


# --- image editing: the text-to-image model's own pipelines, and upscalers configured apart ----------

UPSCALE_MODELS = {4: "upscale", 2: "upscale-x2"}  # scale -> its name in config.EXTRA_MODELS


def upscaler_model(scale: int) -> tuple[str | None, str]:
    """The configured upscaling model for `scale` and the environment variable that sets it."""
    name = UPSCALE_MODELS[scale]
    return config.extra_model(NAME, name), config.extra_model_var(NAME, name)


def upscaler_problem(scale: int) -> FMError | None:
    """Why local `scale`x upscaling cannot run now (packages, or its weights with the fetch command), or None."""
    from local_models import weights

    runner = RUNNERS[Task.IMAGE_GENERATION]
    missing = [m for m in runner.needs if importlib.util.find_spec(m) is None]
    if missing:
        return ProviderUnavailable(f"Local upscaling needs {', '.join(missing)}: pip install {runner.install}.")
    model, var = upscaler_model(scale)
    if not model:
        return ProviderUnavailable(f"No {scale}x upscaling model is configured: set {var}.")
    problem = weights.missing(model, runner.marker, var)
    if problem is None:
        return None
    return ProviderUnavailable(f"Local {scale}x upscaling uses a model of its own. {problem}")


def load_upscaler(scale: int):
    """The shared upscaler for `scale`, loaded on first use; `ProviderUnavailable` if it cannot be."""
    from local_models import loading, weights

    problem = upscaler_problem(scale)
    if problem is not None:
        raise problem
    model, var = upscaler_model(scale)
    assert model is not None  # upscaler_problem says so otherwise
    path = weights.resolve(model, RUNNERS[Task.IMAGE_GENERATION].marker, var)

    def build():
        from local_models.diffusion import Upscaler

        with _errors(model, loading_model=True):
            return Upscaler.from_pretrained(path, factor=scale)

    return model, loading.load((Task.IMAGE_GENERATION, f"Upscaler-x{scale}", str(path)), build)


class LocalImageGenerator(ImageGenerator):
    """diffusers: text-to-image, and edits with the same weights (`from_pipe`); upscaling with its own model."""

    edit_modes = frozenset(EditMode)

    def _generate(self, prompt, params: ImageParams, on_step):
        runner = load_runner(self.task, self.model)
        with _errors(self.model):
            return runner.generate(prompt, params, on_step)

    def edit_problem(self, mode, scale=2):
        problem = super().edit_problem(mode, scale)
        if problem is None and EditMode(mode) is EditMode.UPSCALE:
            return upscaler_problem(scale)
        return problem

    def _edit(self, prompt, image, mode, params: ImageParams, mask, strength, scale, on_step):
        if mode is EditMode.UPSCALE:
            model, upscaler = load_upscaler(scale)
            with _errors(model):
                return upscaler.upscale(prompt, image, params, on_step)
        runner = load_runner(self.task, self.model)
        with _errors(self.model):
            if mode is EditMode.INPAINT:
                return runner.inpaint(prompt, image, mask, params, strength, on_step)
            return runner.image_to_image(prompt, image, params, strength, on_step)


class LocalEmbedder(Embedder):
    max_batch = 256

    def _embed(self, texts, kind):
        return _run_batched(self, load_runner(self.task, self.model), "embed", texts, kind, self.max_batch)


def providers() -> list[Provider]:
    from adapters.snippets import local as reproduce
    from local_models import recipe  # what the runners do, for the programs to do the same (no torch import)

    return [
        Provider(
            name=NAME,
            label="Local models",
            adapters={
                Task.COMPLETION: LocalCompleter,
                Task.ZERO_SHOT: LocalClassifier,
                Task.CAPTIONING: LocalCaptioner,
                Task.IMAGE_GENERATION: LocalImageGenerator,
                Task.EMBEDDINGS: LocalEmbedder,
            },
            check=check,
            reproduce=reproduce.templates(recipe, lambda model: runner_for(Task.COMPLETION, model) is GGUF_RUNNER),
        )
    ]


FETCH_PROG = "python -m adapters.local fetch"


def main(argv: Sequence[str]) -> int:
    """The provider's command line: `fetch` downloads the configured models (see the docstring)."""
    if not argv or argv[0] != "fetch":
        print(f"usage: {FETCH_PROG} [TASK_OR_REPO_ID ...]", file=sys.stderr)
        return 2
    from local_models import fetch

    extra = {name: config.extra_model(NAME, name) for name in config.EXTRA_MODELS[NAME]}
    return fetch.main(argv[1:], configured=lambda task: config.model_for(NAME, task), prog=FETCH_PROG, extra=extra)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
