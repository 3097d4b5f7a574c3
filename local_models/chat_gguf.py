"""Chat with a GGUF model through llama.cpp (`llama-cpp-python`): the offline default.

A thin wrapper on purpose: one `create_chat_completion(stream=True)` call whose chunks are
passed on as they arrive, so that time to first token and tokens/s match llama.cpp's own.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.errors import BadInput
from adapters.types import CompletionParams, Finish, Message, Usage
from local_models import recipe

N_CTX = recipe.GGUF_N_CTX  # prompt + reply, in tokens


class LlamaCppChat:
    def __init__(self, llama: Any):
        self.llama = llama
        # A Llama object holds one KV cache and one sampler: two generations at once would
        # corrupt each other, so they take turns.
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path: Path) -> LlamaCppChat:
        from local_models import threads
        from local_models.llama_open import open_llama

        n = threads.count()  # a core left to the web server
        return cls(open_llama(path, n_ctx=N_CTX, n_threads=n, n_threads_batch=n, verbose=False))

    def stream(self, messages: list[Message], params: CompletionParams) -> Iterator[str | Usage | Finish]:
        """Text deltas, then `Usage`, then `Finish("stop" | "length")`.

        Closing this generator early (the consumer stopped reading) leaves the `with` block,
        which releases the lock, and closes llama.cpp's chunk generator, which stops sampling.
        """
        # Without a seed llama-cpp-python derives each one from the last, starting from a fixed
        # value: the same prompt would get the same "random" reply after every restart.
        seed = params.seed if params.seed is not None else random.randrange(2**32)
        with self._lock:
            chunks = self.llama.create_chat_completion(
                messages=messages,
                stream=True,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=seed,
            )
            generated, reason = 0, None
            try:
                for chunk in _checked(chunks):
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        generated += 1  # llama-cpp-python sends one chunk per token
                        yield text
                    reason = choice.get("finish_reason") or reason
            finally:
                chunks.close()
            usage = Usage(input_tokens=self._prompt_tokens(generated, reason), output_tokens=generated)
        yield usage
        yield Finish(reason)

    def _prompt_tokens(self, generated: int, reason: str | None) -> int | None:
        """The prompt's length in tokens, recovered from the context: streams carry no usage.

        After generation the context holds the prompt and every sampled token but the last one
        (which is never fed back): on "length" that is the last text token, on "stop" the
        end-of-turn token, which is not counted as output.
        """
        fed_back = generated - 1 if reason == "length" else generated
        count = self.llama.n_tokens - fed_back
        return count if count > 0 else None


def _checked(chunks: Iterator[dict]) -> Iterator[dict]:
    """The chunks; a conversation too long for the context becomes a `BadInput` that says so."""
    try:
        first = next(chunks, None)
    except ValueError as err:  # raised before any token, when the prompt alone fills the context
        if "context window" not in str(err):
            raise
        raise BadInput(
            f"The conversation is too long for this model's {N_CTX}-token context: clear the chat or shorten it."
        ) from None
    if first is not None:
        yield first
        yield from chunks
