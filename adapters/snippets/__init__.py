"""Reproduce a run in Python: the vendor SDK (or local library) calls an adapter makes, with the
same model, parameters and seed, as a short program the user can copy and run.

    snippet(Task.COMPLETION, "openai", "gpt-4o-mini", {"messages": [...]}, {"max_tokens": 64, "seed": 7})

This package is the shared core: the entry point, the normalised call (`Call`) and the helpers
that write Python. The templates belong to the vendors: each vendor has a module here
(`openai`, `cohere`, `hf`, `local`) and registers its templates with its provider
(`Provider.reproduce`, a task -> template mapping; see adapters/registry.py). `snippet` asks the
provider for its template and nothing else: a provider that registered none (a test fake, a
plugin, a logged run of a provider no longer configured) gets a one-line comment instead.

Adding a vendor: write `adapters/snippets/<vendor>.py` with one `template(call: Call) -> str` per
task, built with `program`, `assign`, `invoke` (...) from here, and set
`reproduce={Task.X: template, ...}` in the vendor's `providers()` (bind per-provider settings,
such as an endpoint, with `functools.partial`).

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

Nothing here imports a vendor SDK, torch or a runner.
"""

from __future__ import annotations

import logging
import math
import pprint
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


# --------------------------------------------------------------------------- the public entry


def snippet(
    task: Task | str,
    provider: str,
    model: str | None,
    inputs: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    *,
    secrets: Sequence[str | None] = (),
    notes: Sequence[str] = (),
    public: bool = False,
) -> str:
    """A runnable Python program that makes this call (or a comment saying why there is none).

    `inputs` may hold `messages` (or `system` / `history` / `message` / `prompt`, as the chat tab
    logs them), `prompt`, `negative_prompt`, `labels`, `query`, `documents`; `params` the task's
    parameters (`max_tokens`, `temperature`, `top_p`, `seed`, `steps`, `width`, `height`,
    `guidance`, `top_k`, `rerank_model`); an image edit's `mode` in `inputs` gets a comment (the
    templates write text-to-image programs only). Unknown keys are ignored. `secrets` (a session key)
    are scrubbed like the environment's keys; `notes` become comment lines at the top; `public`
    leaves out what the server's configuration says about where it calls (base URLs, local paths).
    Never raises: a program that cannot be made is a comment, and the reason goes to the log.
    """
    try:
        task = Task(getattr(task, "value", task))
        mode = (inputs or {}).get("mode")
        if mode:
            return f"# No program yet for image edits ({str(mode)[:40]}): this run edited an uploaded image.\n"
        template = templates(provider).get(task)
        if template is None:
            return _unavailable(provider, task)
        if not model:
            return "# No snippet: this run failed before a model was chosen.\n"
        call = make_call(task, str(provider), str(model), inputs or {}, params or {}, public=bool(public))
        code = _notes(notes) + template(call)
    except Exception:  # a snippet must never break the run it describes
        log.warning("no snippet for %s on %r", task, provider, exc_info=True)
        return "# No snippet could be made for this run (the reason is in the server log).\n"
    return _scrub(code, secrets)


Template = Callable[["Call"], str]


def templates(provider: str) -> Mapping[Task, Template]:
    """The Reproduce templates the provider registered (`Provider.reproduce`); none if it is unknown."""
    found = registry.providers().get(provider) if isinstance(provider, str) else None
    return (found.reproduce if found is not None else None) or {}


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
    shown_model: str | None = None  # how the program names the model, where not as `model` (a template sets it)

    @property
    def named(self) -> str:
        return self.model if self.shown_model is None else self.shown_model


def make_call(
    task: Task, provider: str, model: str, inputs: Mapping[str, Any], params: Mapping[str, Any], *, public: bool = False
) -> Call:
    chat, image = CompletionParams(), ImageParams()
    prompt = inputs.get("prompt")
    prompt = prompt.strip() if isinstance(prompt, str) and prompt.strip() else None
    documents = [str(d) for d in inputs.get("documents") or [] if str(d).strip()]
    kept: list[str] = []
    size = 0
    for document in documents[:MAX_DOCUMENTS]:
        size += len(document)
        if kept and size > MAX_DOCUMENT_CHARS:
            break
        kept.append(document)
    rerank = params.get("rerank_model")
    return Call(
        task=task,
        provider=provider,
        model=model,
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
        public=public,
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


def program(call: Call, imports: Sequence[str], *blocks: str | Sequence[str | None]) -> str:
    """A header naming the run, the imports, then the blocks separated by blank lines."""
    header = (
        f"# {call.task.title} with provider {call.provider!r}, model {call.named!r}: "
        "the call fm-gallery made, as a program."
    )
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


def seed_note(call: Call, takes_seed: bool = True) -> str | None:
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


def search_tail(call: Call) -> list[str | None]:
    """Embed the query (and the passages), print the top hits and the query's embedding; the
    program defines `embed(texts, kind)` before this."""
    lines: list[str | None] = [assign("query", call.query), 'query_vector = embed([query], "query")[0]']
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

__all__ = [
    "Call",
    "Expr",
    "Template",
    "assign",
    "function",
    "invoke",
    "literal",
    "make_call",
    "program",
    "search_tail",
    "seed_note",
    "snippet",
    "templates",
]
