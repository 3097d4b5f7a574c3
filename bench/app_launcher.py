"""Serve `app.demo` with a fake streaming provider registered, for `bench.app_streaming`.

    python -m bench.app_launcher [--tokens 200] [--rate 100] [--chat-limit N] [--max-threads M]
                                 [--update-every S]

The provider "benchstream" streams `--tokens` tokens at `--rate` tokens per second, paced by a
clock (token i is due at (i + 1) / rate s after the stream starts, so sleeping late never adds
up): its own first token comes after 1 / rate s and its last after tokens / rate s.

The app is launched as `python app.py` launches it (same logging, same `launch` arguments), with
three optional changes for trying fixes without editing the app:
- `--chat-limit N`: the /chat listener's `concurrency_limit` (the app sets 16);
- `--max-threads M`: `launch(max_threads=M)` (Gradio's default, 40, caps concurrent jobs and
  the worker threads that step sync generators);
- `--update-every S`: send the chat at most every S seconds while it streams (the first delta and
  the final answer are always sent at once), wrapping the /chat function;
- `--coalesce`: step the /chat generator in a thread of its own and hand Gradio, each time it
  asks, the newest value with every delta that arrived since it last asked: one update per token
  while Gradio keeps up, fewer and fuller ones when it falls behind.
Prints `URL <local url>` once serving, then serves until killed.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import queue
import tempfile
import threading
import time

PROVIDER = "benchstream"


def register(tokens: int, rate: float) -> None:
    from adapters import registry
    from adapters.registry import Provider
    from adapters.tasks import Completer
    from adapters.types import Finish, Task, Usage

    class Streaming(Completer):
        def _stream(self, messages, params):
            started = time.perf_counter()
            for i in range(tokens):
                wait = started + (i + 1) / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                yield f"w{i} "
            yield Usage(input_tokens=5, output_tokens=tokens)
            yield Finish("stop")

    registry.register(Provider(name=PROVIDER, label="Bench stream", adapters={Task.COMPLETION: Streaming},
                               models=lambda task: f"{tokens}-tokens-at-{rate:g}-per-s"))


def throttled(fn, every_s: float):
    """A generator function that passes on the first value at once, then at most one value per
    `every_s` (the newest), and always the last one."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        last_sent, pending = None, None
        held = False
        for value in fn(*args, **kwargs):
            now = time.monotonic()
            if last_sent is None or now - last_sent >= every_s:
                last_sent, held = now, False
                yield value
            else:
                pending, held = value, True
        if held:
            yield pending

    return wrapper


def coalesced(fn):
    """A generator function that runs `fn` in a thread and, each time it is asked for the next
    value, returns the newest value produced since (waiting for one if there is none). `fn`'s
    values must be whole states (as a chat handler's (history, info) are), not deltas."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        produced: queue.SimpleQueue = queue.SimpleQueue()
        stopped = threading.Event()

        def produce() -> None:
            try:
                for value in fn(*args, **kwargs):
                    produced.put(("value", value))
                    if stopped.is_set():
                        return
            except BaseException as err:  # noqa: BLE001 - handed to the consumer
                produced.put(("error", err))
                return
            produced.put(("end", None))

        threading.Thread(target=produce, daemon=True, name="chat-coalesce").start()
        try:
            while True:
                kind, value = produced.get()
                latest, have = None, False
                while kind == "value":
                    latest, have = value, True
                    try:
                        kind, value = produced.get_nowait()
                    except queue.Empty:
                        kind = None
                if have:
                    yield latest
                if kind == "error":
                    raise value
                if kind == "end":
                    return
        finally:
            stopped.set()

    return wrapper


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--chat-limit", type=int, default=None)
    parser.add_argument("--max-threads", type=int, default=None)
    parser.add_argument("--update-every", type=float, default=None)
    parser.add_argument("--coalesce", action="store_true")
    args = parser.parse_args(argv)

    if not os.environ.get("FMG_RUN_LOG"):  # never the user's own run log (bench.app_streaming passes one)
        os.environ["FMG_RUN_LOG"] = os.path.join(tempfile.mkdtemp(prefix="fmg-bench-"), "runs.sqlite3")
    register(args.tokens, args.rate)
    import app
    from adapters.keys import install_log_redaction

    chat = next(fn for fn in app.demo.fns.values() if fn.api_name == "chat")
    if args.chat_limit is not None:
        chat.concurrency_limit = args.chat_limit
    if args.update_every is not None:
        chat.fn = throttled(chat.fn, args.update_every)
    if args.coalesce:
        chat.fn = coalesced(chat.fn)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    extra = {"max_threads": args.max_threads} if args.max_threads is not None else {}
    app.demo.launch(max_file_size=app.MAX_UPLOAD, show_error=False, server_name="127.0.0.1",
                    prevent_thread_lock=True, quiet=True, **extra)
    print(f"URL {app.demo.local_url}", flush=True)
    app.demo.block_thread()


if __name__ == "__main__":
    main()
