"""Target 1: what the adapter layer adds to a completion, against the raw `openai` SDK.

Both sides talk to the same local OpenAI wire-format server (`bench.openai_wire`, in its own
process) and get byte-identical replies after the same delay; calls are interleaved in a random
order each round and compared round by round (median of the paired differences).

- adapter: `registry.get(Task.COMPLETION, "openai")` then `.complete(...)` per call, as the app
  does (OPENAI_BASE_URL points at the server). `complete` streams under the hood.
- raw SDK: one `openai.OpenAI` client, `chat.completions.create(stream=True, ...)` with the same
  request, text joined from the chunks. The sync SDK drops the connection after each stream
  (it closes at `[DONE]` before the end of the HTTP body); the adapter reads the end so the
  connection is reused, and the baseline does the same so that neither side pays for
  connection setup (the keep-alive check shows connections per call for each side, and for the
  SDK as shipped).

Cases: complete with a 50 ms and a 0 ms server (target: overhead <= 0.5 ms and <= 1 ms), and
time to first token with a 50 ms server streaming a token every 5 ms (target: <= 1.02x raw).

    python -m bench.adapter_overhead [--quick] [--save]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import openai_wire, timing

KEY = "sk-bench-0000000000"
MESSAGES = [{"role": "user", "content": "Tell me something about foxes."}]
TEMPERATURE, TOP_P, MAX_TOKENS = 0.7, 1.0, 256
WORDS = 32


def keep_connection(response) -> None:
    """Read the end of a finished stream's HTTP body before the SDK closes it (as the adapter does)."""
    close = response.close

    def read_rest_then_close():
        try:
            if not response.is_closed:
                for _ in response.stream:
                    pass
        finally:
            close()

    response.close = read_rest_then_close


class Sides:
    def __init__(self, base_url: str):
        import openai

        from adapters import registry
        from adapters.types import CompletionParams, Task

        self.registry, self.task = registry, Task.COMPLETION
        self.params = CompletionParams(max_tokens=MAX_TOKENS, temperature=TEMPERATURE, top_p=TOP_P)
        self.client = openai.OpenAI(api_key=KEY, base_url=base_url, max_retries=0)

    # -- adapter
    def adapter_complete(self, model: str) -> str:
        return self.registry.get(self.task, "openai", model).complete(MESSAGES, self.params).text

    def adapter_ttft(self, model: str) -> float:
        import time

        started = time.perf_counter()
        stream = self.registry.get(self.task, "openai", model).stream(MESSAGES, self.params)
        ttft = None
        for _ in stream:
            if ttft is None:
                ttft = time.perf_counter() - started
        return ttft

    # -- raw SDK
    def _raw_stream(self, model: str, keep: bool = True):
        stream = self.client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            temperature=TEMPERATURE,
            top_p=TOP_P,
            max_tokens=MAX_TOKENS,
        )
        if keep:
            keep_connection(stream.response)
        return stream

    def raw_complete(self, model: str, keep: bool = True) -> str:
        parts = []
        for chunk in self._raw_stream(model, keep):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)

    def raw_ttft(self, model: str) -> float:
        import time

        started = time.perf_counter()
        ttft = None
        for chunk in self._raw_stream(model):
            if ttft is None and chunk.choices and chunk.choices[0].delta.content:
                ttft = time.perf_counter() - started
        return ttft


def connections_per_call(base_url: str, call, n: int) -> float:
    before = openai_wire.stats(base_url)["connections"]
    for _ in range(n):
        call()
    return (openai_wire.stats(base_url)["connections"] - before) / n


def interleaved_pairs(cases: dict[str, Callable[[], float | None]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """`timing.interleaved`, also keeping each call's CPU time of this thread under "<case>.cpu":
    that counts only this thread's own work, so it barely moves when other processes compete
    for the cores, while wall time does."""
    names = list(cases)
    samples: dict[str, list[float]] = {key: [] for name in names for key in (name, f"{name}.cpu")}
    for r in range(warmup + rounds):
        for name in names if r % 2 == 0 else reversed(names):
            cpu, started = time.thread_time(), time.perf_counter()
            value = cases[name]()
            wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
            if r >= warmup:
                samples[name].append(wall if value is None else value)
                samples[f"{name}.cpu"].append(cpu)
    return samples


def paired(a: list[float], b: list[float]) -> list[float]:
    """Round-by-round differences: a burst of load hits both sides of a round alike."""
    return [x - y for x, y in zip(a, b, strict=False)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


def main(argv=None) -> dict:
    args = timing.parser("Adapter overhead vs. the raw openai SDK (issue 5, target 1).").parse_args(argv)
    reps = {"50": 8, "0": 20, "ttft": 6} if args.quick else {"50": 200, "0": 600, "ttft": 150}
    tmp = tempfile.TemporaryDirectory(prefix="fmg-bench-")
    config = Path(tmp.name) / "absent.toml"  # no config file: the defaults
    with openai_wire.running() as url:
        os.environ.update(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=url, FMG_CONFIG=str(config))
        sides = Sides(url)
        m50, m0 = f"bench-50ms-words{WORDS}", f"bench-0ms-words{WORDS}"
        mttft = "bench-50ms-gap5ms-words8"
        assert sides.adapter_complete(m0) == sides.raw_complete(m0), "the two sides must get the same reply"

        conns = {
            "adapter": connections_per_call(url, lambda: sides.adapter_complete(m0), 10),
            "raw SDK + read to end": connections_per_call(url, lambda: sides.raw_complete(m0), 10),
            "raw SDK as shipped": connections_per_call(url, lambda: sides.raw_complete(m0, keep=False), 10),
        }

        cases = []
        for label, model, n, kind in (
            ("complete, 50 ms server", m50, reps["50"], "complete"),
            ("complete, 0 ms server", m0, reps["0"], "complete"),
            ("first token, 50 ms server", mttft, reps["ttft"], "ttft"),
        ):
            if kind == "complete":
                sides_ = {
                    "adapter": lambda m=model: sides.adapter_complete(m) and None,
                    "raw": lambda m=model: sides.raw_complete(m) and None,
                }
            else:
                sides_ = {"adapter": lambda m=model: sides.adapter_ttft(m), "raw": lambda m=model: sides.raw_ttft(m)}
            runs = interleaved_pairs(sides_, rounds=n, warmup=max(3, n // 20))
            diffs = paired(runs["adapter"], runs["raw"])
            cases.append(
                {
                    "case": label,
                    "n": n,
                    "adapter_ms": ms(timing.median(runs["adapter"])),
                    "raw_ms": ms(timing.median(runs["raw"])),
                    "overhead_ms": ms(timing.median(diffs)),
                    "overhead_iqr_ms": [ms(timing.percentile(diffs, 25)), ms(timing.percentile(diffs, 75))],
                    "ratio": round(timing.median(runs["adapter"]) / timing.median(runs["raw"]), 4),
                    "cpu_overhead_ms": ms(timing.median(paired(runs["adapter.cpu"], runs["raw.cpu"]))),
                }
            )

    c50, c0, cttft = cases
    targets = [
        timing.target("overhead, 50 ms server (ms)", c50["overhead_ms"], 0.5, higher_is_better=False, unit=" ms"),
        timing.target(
            "overhead, 50 ms server (% of raw)",
            100 * c50["overhead_ms"] / c50["raw_ms"],
            1.0,
            higher_is_better=False,
            unit=" %",
        ),
        timing.target("overhead, 0 ms server (ms)", c0["overhead_ms"], 1.0, higher_is_better=False, unit=" ms"),
        timing.target("first token, adapter / raw (x)", cttft["ratio"], 1.02, higher_is_better=False, unit="x"),
    ]
    print(
        f"Adapter vs. raw openai SDK: same local server, interleaved rounds, {WORDS}-word streamed replies "
        "(first token: 8 words, 5 ms apart)"
    )
    timing.table(
        ["case", "rounds", "adapter ms", "raw ms", "overhead ms", "IQR ms", "ratio", "CPU overhead ms"],
        [
            [
                c["case"],
                c["n"],
                c["adapter_ms"],
                c["raw_ms"],
                c["overhead_ms"],
                "{:.3f} .. {:.3f}".format(*c["overhead_iqr_ms"]),
                c["ratio"],
                c["cpu_overhead_ms"],
            ]
            for c in cases
        ],
    )
    timing.table(
        ["client", "new connections per call"],
        [[k, v] for k, v in conns.items()],
        title="Keep-alive (10 streamed calls each)",
    )
    notes = [
        (
            "overhead = median over rounds of (adapter - raw) in the same round; CPU overhead = the same for this "
            "thread's CPU time, which other processes' load barely moves"
        ),
        (
            "the sync openai SDK drops the connection after every stream (it closes at [DONE] before the end of the "
            "HTTP body); the adapter reads the end first, and so does the raw baseline here"
        ),
    ]
    tmp.cleanup()
    return timing.report("adapter_overhead", args, targets, {"cases": cases, "connections_per_call": conns}, notes)


if __name__ == "__main__":
    main(sys.argv[1:])
