"""Reproduce templates of the "cohere" provider (`cohere.ClientV2`), registered by
`adapters.cohere_api.providers()`. The base URL is the server's `CO_API_URL`, if set (the SDK's
variable); nothing here imports the SDK.
"""

from __future__ import annotations

import json

from adapters import cohere_api, keys
from adapters.snippets import (
    IMAGE_DATA_URI,
    IMAGE_DATA_URI_IMPORTS,
    UNIT_ROWS,
    Call,
    Expr,
    assign,
    function,
    invoke,
    program,
    search_tail,
    seed_note,
)
from adapters.types import Task

PUBLIC_BASE_URL = "https://api.cohere.com"  # the SDK's default environment (cohere.ClientEnvironment.PRODUCTION)


def _client(call: Call) -> tuple[list[str], str]:
    args = f"api_key=os.environ[{cohere_api.KEY_VAR!r}]"
    base_url = keys.from_env(cohere_api.URL_VAR)
    if base_url and call.public:  # the app's own URL is not shown: the variable, and Cohere's API by default
        args += f", base_url=os.environ.get({cohere_api.URL_VAR!r}, {PUBLIC_BASE_URL!r})"
    elif base_url:
        args += f", base_url={base_url!r}"
    return ["import os", "import cohere"], f"co = cohere.ClientV2({args})"


def completion(call: Call) -> str:
    low, high = cohere_api.NUCLEUS_RANGE
    imports, setup = _client(call)
    request = {
        "model": call.model,
        "messages": Expr("messages"),
        "max_tokens": call.max_tokens,
        "temperature": call.temperature,
        "p": min(max(call.top_p, low), high),
    }
    if call.seed is not None:
        request["seed"] = call.seed
    return program(
        call,
        imports,
        setup,
        assign("messages", call.messages),
        [
            f"# Cohere takes p only in [{low}, {high}]." if request["p"] != call.top_p else None,
            seed_note(call),
            "for event in " + invoke("co.chat_stream", request) + ":",
            '    if event.type == "content-delta":',
            '        print(event.delta.message.content.text, end="", flush=True)',
            '    elif event.type == "message-end":',
            "        print()",
        ],
    )


def captioning(call: Call) -> str:
    imports, setup = _client(call)
    content = [
        {"type": "text", "text": call.prompt or cohere_api.CAPTION_PROMPT},
        {"type": "image_url", "image_url": {"url": Expr("image_url")}},
    ]
    request = {
        "model": call.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": cohere_api.CAPTION_MAX_TOKENS,
    }
    return program(
        call,
        [*imports, *IMAGE_DATA_URI_IMPORTS],
        setup,
        IMAGE_DATA_URI,
        [
            "response = " + invoke("co.chat", request),
            'print("".join(part.text for part in response.message.content))',
        ],
    )


COSINES = (
    "cosines = label_vectors @ image_vector / (np.linalg.norm(label_vectors, axis=1) * np.linalg.norm(image_vector))"
)


def zero_shot(call: Call) -> str:
    imports, setup = _client(call)
    image_type = "image" if "v3" in call.model else "search_document"  # as CohereClassifier embeds images
    prompts = [cohere_api.LABEL_TEMPLATE.format(label=label) for label in call.labels]
    return program(
        call,
        [*imports, *IMAGE_DATA_URI_IMPORTS, "import numpy as np"],
        setup,
        IMAGE_DATA_URI,
        [
            assign("labels", call.labels),
            "# The image and a caption per label in one embedding space; scaled cosines through a softmax",
            "# rank the labels (relative weights, not calibrated probabilities).",
            "image = "
            + invoke(
                "co.embed",
                {
                    "model": call.model,
                    "images": [Expr("image_url")],
                    "input_type": image_type,
                    "embedding_types": ["float"],
                },
            ),
            "captions = "
            + invoke(
                "co.embed",
                {"model": call.model, "texts": prompts, "input_type": "search_query", "embedding_types": ["float"]},
            ),
            "image_vector = np.array(image.embeddings.float_[0])",
            "label_vectors = np.array(captions.embeddings.float_)",
            COSINES,
            f"weights = np.exp({cohere_api.SIMILARITY_SCALE!r} * (cosines - cosines.max()))",
            "for label, score in sorted(zip(labels, weights / weights.sum()), key=lambda pair: -pair[1]):",
            '    print(f"{score:.3f}  {label}")',
        ],
    )


def embeddings(call: Call) -> str:
    imports, setup = _client(call)
    batch = cohere_api.EMBED_BATCH
    tail = search_tail(call)
    if call.rerank_model and call.documents:
        tail += [
            "reranked = "
            + invoke(
                "co.rerank",
                {
                    "model": call.rerank_model,
                    "query": Expr("query"),
                    "documents": Expr("documents"),
                    "top_n": call.top_k,
                },
            ),
            "for hit in reranked.results:",
            "    print(round(hit.relevance_score, 4), documents[hit.index])",
        ]
    return program(
        call,
        [*imports, "import json", "import numpy as np"],
        setup,
        f"INPUT_TYPES = {json.dumps(cohere_api.INPUT_TYPES)}",
        function(
            "def embed(texts, kind):",
            "    vectors = []",
            f"    for i in range(0, len(texts), {batch}):  # at most {batch} texts per call",
            "        response = "
            + invoke(
                "co.embed",
                {
                    "model": call.model,
                    "texts": Expr(f"texts[i : i + {batch}]"),
                    "input_type": Expr("INPUT_TYPES[kind]"),
                    "embedding_types": ["float"],
                },
                indent=8,
            ),
            "        vectors += response.embeddings.float_",
            "    vectors = np.array(vectors, dtype=np.float32)",
            UNIT_ROWS,
        ),
        tail,
    )


TEMPLATES = {  # Cohere has no image generation
    Task.COMPLETION: completion,
    Task.ZERO_SHOT: zero_shot,
    Task.CAPTIONING: captioning,
    Task.EMBEDDINGS: embeddings,
}
