"""Chat with a causal language model saved in the transformers format.

`generate` runs in the runner's own worker thread and feeds a `TextIteratorStreamer`; this
generator yields the streamer's text as it arrives. A stopping criterion polls a flag, so a
consumer that stops reading (closes the generator) also stops generation after at most one
more token.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from adapters.types import CompletionParams, Finish, Message, Usage
from local_models import recipe
from local_models.device import Placement, placement


class TransformersChat:
    def __init__(self, model: Any, tokenizer: Any, where: Placement):
        self.model = model
        self.tokenizer = tokenizer
        self.placement = where
        # Seeds go through torch's global RNG, so one generation at a time per model keeps
        # "same seed, same text" true under concurrent requests (local models share one queue anyway).
        self._lock = threading.Lock()
        self._worker = _Worker("fmg-generate")

    @classmethod
    def from_pretrained(cls, path: Path) -> TransformersChat:
        where = placement()
        model_class, tokenizer_class = recipe.CHAT.load()
        tokenizer = tokenizer_class.from_pretrained(path)
        model = model_class.from_pretrained(path, dtype=where.dtype).to(where.device).eval()
        return cls(model, tokenizer, where)

    def stream(self, messages: list[Message], params: CompletionParams) -> Iterator[str | Usage | Finish]:
        """Text deltas, then `Usage`, then `Finish("stop" | "length")`."""
        inputs = self._encode(messages)
        prompt_len = inputs["input_ids"].shape[1]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = _Cancel()
        outcome: dict[str, Any] = {}
        kwargs = dict(
            **inputs,
            **self._sampling(params),
            max_new_tokens=params.max_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([cancel]),
            pad_token_id=self._pad_token_id(),
        )
        finished = self._worker.submit(self._generate, kwargs, params.seed, cancel, outcome)
        try:
            yield from (text for text in streamer if text)
        finally:
            cancel.set()
            finished.wait()
        if "error" in outcome:
            raise outcome["error"]
        new_tokens = [int(t) for t in outcome["sequences"][0, prompt_len:]]
        ended_on_eos = bool(new_tokens) and new_tokens[-1] in self._eos_ids()
        # The end-of-text token is not output (as in llama.cpp's and the vendors' usage).
        yield Usage(input_tokens=prompt_len, output_tokens=len(new_tokens) - ended_on_eos)
        yield Finish("stop" if ended_on_eos or len(new_tokens) < params.max_tokens else "length")

    def _encode(self, messages: list[Message]) -> dict[str, Any]:
        """Token ids of the conversation, through the model's chat template when it has one."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            add_special = False  # the template writes its own BOS and turn markers
        else:  # a base model: a plain transcript that ends where the assistant should continue
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            add_special = True
        encoded = self.tokenizer(text, return_tensors="pt", add_special_tokens=add_special)
        return {k: v.to(self.placement.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}

    @staticmethod
    def _sampling(params: CompletionParams) -> dict[str, Any]:
        if params.temperature > 0:
            return {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        # Greedy: also clear the sampling knobs a model's generation_config may set, which
        # generate would otherwise warn about.
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}

    def _pad_token_id(self) -> int | None:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def _generate(self, kwargs: dict[str, Any], seed: int | None, cancel: _Cancel, outcome: dict[str, Any]) -> None:
        """The worker: never leaves the streamer's reader waiting, even when generate fails."""
        try:
            with self._lock, torch.inference_mode():
                if cancel.is_set():  # the reader left while this waited for its turn
                    return
                if seed is not None:
                    torch.manual_seed(seed)
                outcome["sequences"] = self.model.generate(**kwargs)
        except Exception as err:  # noqa: BLE001 - re-raised in the reader's thread
            outcome["error"] = err
            kwargs["streamer"].end()

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


class _Worker:
    """One long-lived daemon thread that runs this runner's generations one after another.

    One thread, because torch's OpenMP threads and memory arenas start cold in every new thread.
    Daemon, unlike a thread pool's, so that stopping the app never waits for a reply nobody reads."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, fn, *args) -> threading.Event:
        """Run `fn(*args)` on the worker; the event is set when it has returned (or raised)."""
        done = threading.Event()
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._jobs.put((fn, args, done))
        return done

    def _run(self) -> None:
        while True:
            fn, args, done = self._jobs.get()
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - fn reports its own errors; the worker must outlive them
                pass
            finally:
                done.set()


class _Cancel(StoppingCriteria):
    """Stops generation once `set()` is called from another thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return torch.full(  # type: ignore[return-value]  # transformers' stub wants BoolTensor, a legacy alias no op returns
            (input_ids.shape[0],), self._event.is_set(), dtype=torch.bool, device=input_ids.device
        )
