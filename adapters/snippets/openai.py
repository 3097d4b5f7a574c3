"""Reproduce templates of the "openai" provider and of every OpenAI-compatible endpoint (Ollama,
vLLM, ...): the same programs, each bound to its provider's `openai_api.Endpoint`, which says the
base URL, the key's environment variable and the token parameter (`adapters.openai_api.provider_for`
registers them). Nothing here imports the SDK.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from adapters import openai_api
from adapters.openai_api import Endpoint
from adapters.snippets import (
    IMAGE_DATA_URI,
    IMAGE_DATA_URI_IMPORTS,
    IMAGE_FILE,
    UNIT_ROWS,
    Call,
    Expr,
    Template,
    assign,
    function,
    invoke,
    literal,
    program,
    search_tail,
    seed_note,
)
from adapters.types import Task


@dataclass(frozen=True)
class _Client:
    imports: list[str]
    setup: str
    token_param: str


def _client(endpoint: Endpoint, call: Call) -> _Client:
    url, key_var = endpoint.url(), endpoint.key_var
    args: dict[str, Any] = {}
    imports, note = ["from openai import OpenAI"], "reads OPENAI_API_KEY from the environment"
    url_note = ""
    if url.rstrip("/") != openai_api.OFFICIAL_BASE_URL and call.public:  # the app's own URL is not shown
        var = openai_api.BASE_URL_VAR
        imports.append("import os")
        if endpoint.base_url is None:  # $OPENAI_BASE_URL on the server: OpenAI's API is the public default
            args["base_url"] = Expr(f"os.environ.get({var!r}, {openai_api.OFFICIAL_BASE_URL!r})")
        else:  # a compatible server of the owner's: there is no public default
            args["base_url"] = Expr(f"os.environ[{var!r}]")
            url_note = f"{var}: your server's URL; "
    elif url.rstrip("/") != openai_api.OFFICIAL_BASE_URL:
        args["base_url"] = url
    if key_var is None:
        args["api_key"] = openai_api.NO_KEY
        note = "this server needs no key; the SDK insists on one"
    elif key_var != openai_api.KEY_VAR:
        args["api_key"] = Expr(f"os.environ[{key_var!r}]")
        imports.append("import os")
        note = f"the key comes from the environment variable {key_var!r}"
    setup = f"client = OpenAI({', '.join(f'{k}={literal(v)}' for k, v in args.items())})  # {url_note}{note}"
    return _Client(imports, setup, endpoint.max_tokens_param())


def completion(endpoint: Endpoint, call: Call) -> str:
    client = _client(endpoint, call)
    request = {
        "model": call.model,
        "messages": Expr("messages"),
        client.token_param: call.max_tokens,
        "temperature": call.temperature,
        "top_p": call.top_p,
    }
    if call.seed is not None:
        request["seed"] = call.seed
    request |= {"stream": True, "stream_options": {"include_usage": True}}
    return program(
        call,
        client.imports,
        client.setup,
        assign("messages", call.messages),
        [
            seed_note(call),
            "stream = " + invoke("client.chat.completions.create", request),
            "for chunk in stream:",
            "    if chunk.choices and chunk.choices[0].delta.content:",
            '        print(chunk.choices[0].delta.content, end="", flush=True)',
            "    if chunk.usage:",
            '        print(f"\\n[{chunk.usage.prompt_tokens} tokens in, {chunk.usage.completion_tokens} out]")',
        ],
    )


def _vision(endpoint: Endpoint, call: Call, text: str, max_tokens: int, extra: dict[str, Any], show: list[str]) -> str:
    client = _client(endpoint, call)
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": Expr("image_url")}}]
    request = {
        "model": call.model,
        "messages": [{"role": "user", "content": content}],
        client.token_param: max_tokens,
        **extra,
    }
    return program(
        call,
        [*client.imports, *IMAGE_DATA_URI_IMPORTS],
        client.setup,
        IMAGE_DATA_URI,
        ["response = " + invoke("client.chat.completions.create", request), *show],
    )


def captioning(endpoint: Endpoint, call: Call) -> str:
    return _vision(
        endpoint,
        call,
        call.prompt or openai_api.CAPTION_PROMPT,
        openai_api.CAPTION_MAX_TOKENS,
        {},
        ["print(response.choices[0].message.content)"],
    )


def zero_shot(endpoint: Endpoint, call: Call) -> str:
    max_tokens = 100 + sum(len(label) // 3 + 10 for label in call.labels)  # as OpenAIClassifier asks
    return _vision(
        endpoint,
        call,
        openai_api.zero_shot_prompt(call.labels),
        max_tokens,
        {"temperature": 0, "response_format": {"type": "json_object"}},
        [
            "# The model states its scores as JSON (not calibrated probabilities); the app scales them to sum to 1.",
            "print(response.choices[0].message.content)",
        ],
    )


def image_generation(endpoint: Endpoint, call: Call) -> str:
    client = _client(endpoint, call)
    request = {"model": call.model, "prompt": Expr("prompt"), "n": 1, "size": f"{call.width}x{call.height}"}
    if not call.model.startswith(openai_api.B64_ONLY_MODELS):
        request["response_format"] = "b64_json"
    return program(
        call,
        [*client.imports, "import base64", "from pathlib import Path"],
        client.setup,
        assign("prompt", call.prompt or ""),
        [
            "# OpenAI image models take no steps or guidance.",
            seed_note(call, takes_seed=False),
            "response = " + invoke("client.images.generate", request),
            f"Path({IMAGE_FILE!r}).write_bytes(base64.b64decode(response.data[0].b64_json))",
        ],
    )


def embeddings(endpoint: Endpoint, call: Call) -> str:
    client = _client(endpoint, call)
    return program(
        call,
        [*client.imports, "import json", "import numpy as np"],
        client.setup,
        function(
            "def embed(texts, kind):  # OpenAI embeddings are symmetric: kind changes nothing",
            f"    response = client.embeddings.create(model={call.model!r}, input=texts)",
            "    vectors = np.array([item.embedding for item in response.data], dtype=np.float32)",
            UNIT_ROWS,
        ),
        search_tail(call),
    )


TEMPLATES = {
    Task.COMPLETION: completion,
    Task.ZERO_SHOT: zero_shot,
    Task.CAPTIONING: captioning,
    Task.IMAGE_GENERATION: image_generation,
    Task.EMBEDDINGS: embeddings,
}


def templates(endpoint: Endpoint, tasks: Iterable[Task] = tuple(TEMPLATES)) -> dict[Task, Template]:
    """The templates of a provider whose adapters talk to `endpoint`, for the tasks it serves."""
    return {task: functools.partial(TEMPLATES[task], endpoint) for task in tasks if task in TEMPLATES}
