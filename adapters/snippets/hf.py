"""Reproduce templates of the "hf" provider (`huggingface_hub.InferenceClient`), registered by
`adapters.hf_inference.providers()`. Each program calls the URL the app calls
(`hf_inference.route`), so the SDK skips its provider lookup; nothing here imports the SDK.
"""

from __future__ import annotations

from adapters import hf_inference
from adapters.snippets import (
    IMAGE_FILE,
    IMAGE_LINE,
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


def _client(call: Call) -> tuple[list[str], str]:
    url = hf_inference.route(call.task, call.model).url
    about = "The URL the app calls for this model (it skips the SDK's provider lookup)."
    public = public_url(call.task, call.model)
    if call.public and url != public:  # the app's HF_INFERENCE_ENDPOINT is not shown
        url = public
        about = (
            f"The public URL for this model (it skips the SDK's provider lookup); the app calls the server "
            f"in its {hf_inference.ENDPOINT_VAR}."
        )
    setup = f"# {about}\nclient = InferenceClient(model={url!r}, token=os.environ[{hf_inference.KEY_VAR!r}])"
    return ["import os", "from huggingface_hub import InferenceClient"], setup


def public_url(task: Task, model: str) -> str:
    """`hf_inference.route`'s URL without `HF_INFERENCE_ENDPOINT` (a model given as a URL is called as it is)."""
    hf = hf_inference
    if model.startswith(("http://", "https://")):
        return model
    if task is Task.COMPLETION:
        return f"{hf.ROUTER_URL}/v1"
    return f"{hf.ROUTER_URL}/{hf.HF_INFERENCE}/models/{model}{hf.PIPELINE_SUFFIX.get(task, '')}"


def completion(call: Call) -> str:
    imports, setup = _client(call)
    request = {
        "model": call.model,
        "stream": True,
        "max_tokens": call.max_tokens,
        "temperature": call.temperature,
        "top_p": call.top_p,
        "seed": call.seed,
        "stream_options": {"include_usage": True},
    }
    return program(
        call,
        imports,
        setup,
        assign("messages", call.messages),
        [
            seed_note(call),
            "for chunk in " + invoke("client.chat_completion", request, positional=[Expr("messages")]) + ":",
            "    if chunk.choices and chunk.choices[0].delta.content:",
            '        print(chunk.choices[0].delta.content, end="", flush=True)',
            "print()",
        ],
    )


def zero_shot(call: Call) -> str:
    imports, setup = _client(call)
    return program(
        call,
        imports,
        setup,
        [
            IMAGE_LINE,
            assign("labels", call.labels),
            "for item in client.zero_shot_image_classification(IMAGE, candidate_labels=labels):",
            '    print(f"{item.score:.3f}  {item.label}")',
        ],
    )


def captioning(call: Call) -> str:
    imports, setup = _client(call)
    return program(
        call,
        imports,
        setup,
        [
            IMAGE_LINE,
            "# image-to-text takes no prompt" + (" (the run's prompt was not used)." if call.prompt else "."),
            "print(client.image_to_text(IMAGE).generated_text)",
        ],
    )


def image_generation(call: Call) -> str:
    imports, setup = _client(call)
    request = {
        "negative_prompt": call.negative_prompt or None,
        "width": call.width,
        "height": call.height,
        "num_inference_steps": call.steps,
        "guidance_scale": call.guidance,
        "seed": call.seed,
    }
    return program(
        call,
        imports,
        setup,
        assign("prompt", call.prompt or ""),
        [
            "image = " + invoke("client.text_to_image", request, positional=[Expr("prompt")]),
            f"image.save({IMAGE_FILE!r})",
        ],
    )


def embeddings(call: Call) -> str:
    imports, setup = _client(call)
    return program(
        call,
        [*imports, "import json", "import numpy as np"],
        setup,
        function(
            "def embed(texts, kind):  # feature extraction has no query/document switch: kind changes nothing",
            "    vectors = np.asarray(client.feature_extraction(texts), dtype=np.float32)",
            "    if vectors.ndim == 3:  # one vector per token: mean-pool, as the app does",
            "        vectors = vectors.mean(axis=1)",
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
