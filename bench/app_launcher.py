"""Serve `app.demo` with a fake streaming provider registered, for `bench.app_streaming`.

    python -m bench.app_launcher [--tokens 200] [--rate 100] [--chat-limit N] [--max-threads M]
                                 [--update-every S]

The provider "benchstream" streams `--tokens` tokens at `--rate` tokens per second, paced by a
clock (token i is due at (i + 1) / rate s after the stream starts, so sleeping late never adds
up): its own first token comes after 1 / rate s and its last after tokens / rate s.

The app is launched as `python app.py` launches it (same logging, `app.launch_options()`), with
optional changes to its own settings, to compare it with other choices:
- `--chat-limit N`: the /chat listener's `concurrency_limit` (the app's `CHAT_CONCURRENCY`);
- `--max-threads M`: `launch(max_threads=M)` (the app's `MAX_THREADS`; Gradio's default is 40,
  which caps concurrent jobs and the worker threads that step sync generators);
- `--update-every S`: each chat stream updates the page every S seconds however many are open,
  instead of the app's `completion.PACER` (0: the page gets every token).
Prints `URL <local url>` once serving, then serves until killed.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
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

    registry.register(
        Provider(
            name=PROVIDER,
            label="Bench stream",
            adapters={Task.COMPLETION: Streaming},
            models=lambda task: f"{tokens}-tokens-at-{rate:g}-per-s",
        )
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--chat-limit", type=int, default=None)
    parser.add_argument("--max-threads", type=int, default=None)
    parser.add_argument("--update-every", type=float, default=None)
    args = parser.parse_args(argv)

    if not os.environ.get("FMG_RUN_LOG"):  # never the user's own run log (bench.app_streaming passes one)
        os.environ["FMG_RUN_LOG"] = os.path.join(tempfile.mkdtemp(prefix="fmg-bench-"), "runs.sqlite3")
    register(args.tokens, args.rate)
    import app
    from adapters.keys import install_log_redaction
    from demos import completion
    from demos.widgets.frame_pacing import FramePacer

    if args.chat_limit is not None:
        next(fn for fn in app.demo.fns.values() if fn.api_name == "chat").concurrency_limit = args.chat_limit
    if args.max_threads is not None:
        app.MAX_THREADS = args.max_threads
    if args.update_every is not None:
        completion.PACER = FramePacer(per_second=float("inf"), fastest_s=args.update_every, slowest_s=args.update_every)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    app.demo.launch(**app.launch_options(), server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    print(f"URL {app.demo.local_url}", flush=True)
    app.demo.block_thread()


if __name__ == "__main__":
    main()
