"""Target 2: a comparison of 4 targets takes as long as its slowest target, not more.

Four fake completion providers answer after a fixed 50, 100, 200 and 400 ms (registered in the
registry like real ones, so `registry.get`, validation and results run for real). Each round
runs, in a random order:

- the slowest target alone: `registry.get(...).complete(...)` (or `.stream`, iterated);
- all four through `services.comparisons.fanout` (`run`, or `stream` with every delta handed to `emit`).

Target: fan-out wall time at most 1.1x the slowest alone (median over rounds). The streaming
variant spreads each target's reply over 20 tokens, the last one at the target's latency.

    python -m bench.fanout [--quick] [--save]
"""

from __future__ import annotations

import sys
import time

from bench import timing

LATENCIES_MS = (50, 100, 200, 400)
TOKENS = 20
PROMPT = [{"role": "user", "content": "Compare yourselves."}]
TIMEOUT_S = 30.0
_KEEP: list = []  # temporary directories that live as long as the process


def register() -> list[str]:
    """One fake provider per latency, named "lat<ms>"; returns their names."""
    from adapters import registry
    from adapters.registry import Provider
    from adapters.tasks import Completer
    from adapters.types import Finish, Task, Usage

    names = []
    for latency_ms in LATENCIES_MS:

        class FixedLatency(Completer):
            latency_s = latency_ms / 1000

            def _stream(self, messages, params):
                """TOKENS tokens, evenly spread, the last one at `latency_s` (sleep-paced, as a vendor
                call waits on its socket)."""
                step = self.latency_s / TOKENS
                deadline = time.perf_counter()
                for i in range(TOKENS):
                    deadline += step
                    time.sleep(max(0.0, deadline - time.perf_counter()))
                    yield f"t{i} "
                yield Usage(input_tokens=3, output_tokens=TOKENS)
                yield Finish("stop")

        name = f"lat{latency_ms}"
        registry.register(
            Provider(
                name=name,
                label=f"{latency_ms} ms",
                adapters={Task.COMPLETION: FixedLatency},
                models=lambda task: "fixed",
            )
        )
        names.append(name)
    return names


def compare_tab_call(names: list[str]):
    """The Compare tab's own path (`services.comparisons.run`: checked input, fan-out, a run log row
    per target, the comparison re-built per batch), or None where that module cannot be used."""
    import os
    import tempfile

    try:
        from adapters.types import Task
        from services import comparisons as comparison
    except Exception as err:  # noqa: BLE001 - the tab is optional for this benchmark
        print(f"(Compare tab path skipped: {type(err).__name__}: {err})")
        return None
    tmp = tempfile.TemporaryDirectory(prefix="fmg-bench-")  # removed at exit
    _KEEP.append(tmp)
    os.environ.setdefault("FMG_RUN_LOG", os.path.join(tmp.name, "runs.sqlite3"))
    form = comparison.Form(prompt=PROMPT[0]["content"], max_tokens=64)

    def call() -> None:
        last = None
        for last in comparison.run(Task.COMPLETION, names, form):  # noqa: B007 - keeps the last frame
            pass
        bad = [o for o in last.outcomes if o is None or not o.ok]
        if bad:
            raise RuntimeError(f"a Compare tab target failed: {bad[0]}")

    return call


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def main(argv=None) -> dict:
    args = timing.parser("Fan-out to 4 targets vs. the slowest alone (issue 5, target 2).").parse_args(argv)
    from adapters import registry
    from adapters.types import CompletionParams, Task
    from services.comparisons import fanout
    from services.comparisons.fanout import Target

    names = register()
    targets = [Target(name) for name in names]
    slowest = names[-1]
    params = CompletionParams(max_tokens=64)

    def complete(target: Target, emit) -> str:
        return registry.get(Task.COMPLETION, target.provider, target.model).complete(PROMPT, params).text

    def stream(target: Target, emit) -> str:
        s = registry.get(Task.COMPLETION, target.provider, target.model).stream(PROMPT, params)
        for delta in s:
            emit(delta)
        return s.result.text

    def check(outcomes) -> None:
        bad = [o for o in outcomes if not o.ok]
        if bad:
            raise RuntimeError(f"a fan-out target failed: {bad[0].error}")

    def fan_run() -> None:
        check(fanout.run(targets, complete, TIMEOUT_S))

    deltas = [0]

    def fan_stream() -> None:
        outcomes = []
        for _, event in fanout.stream(targets, stream, TIMEOUT_S):
            if isinstance(event, str):
                deltas[0] += 1
            else:
                outcomes.append(event)
        check(outcomes)

    def alone_complete() -> None:
        complete(Target(slowest), None)

    def alone_stream() -> None:
        stream(Target(slowest), lambda text: None)

    cases = [("complete (fanout.run)", alone_complete, fan_run), ("stream (fanout.stream)", alone_stream, fan_stream)]
    compare_tab = None if args.quick else compare_tab_call(names)  # quick: spares the Gradio import
    if compare_tab is not None:
        cases.append(("stream, Compare tab (comparison.run)", alone_stream, compare_tab))

    repeats = 2 if args.quick else 30
    variants = []
    for label, alone, fan in cases:
        runs = timing.interleaved({"alone": lambda f=alone: f(), "fanout": lambda f=fan: f()}, rounds=repeats)
        alone_s, fan_s = timing.median(runs["alone"]), timing.median(runs["fanout"])
        variants.append(
            {
                "variant": label,
                "rounds": repeats,
                "slowest_alone_ms": ms(alone_s),
                "fanout_ms": ms(fan_s),
                "fanout_p95_ms": ms(timing.percentile(runs["fanout"], 95)),
                "added_ms": ms(fan_s - alone_s),
                "ratio": round(fan_s / alone_s, 4),
            }
        )
    if deltas[0] < repeats * len(targets) * TOKENS:
        raise RuntimeError("the streaming variant lost deltas")

    print(
        f"Fan-out to {len(targets)} targets at {'/'.join(map(str, LATENCIES_MS))} ms vs. the {LATENCIES_MS[-1]} ms "
        f"target alone; sequential would be {sum(LATENCIES_MS)} ms"
    )
    timing.table(
        ["variant", "rounds", "slowest alone ms", "fan-out ms", "fan-out p95 ms", "added ms", "ratio"],
        [
            [
                v["variant"],
                v["rounds"],
                v["slowest_alone_ms"],
                v["fanout_ms"],
                v["fanout_p95_ms"],
                v["added_ms"],
                v["ratio"],
            ]
            for v in variants
        ],
    )
    for name in names:
        registry.unregister(name)
    targets = [
        timing.target(f"fan-out / slowest alone, {v['variant']} (x)", v["ratio"], 1.1, higher_is_better=False, unit="x")
        for v in variants
    ]
    return timing.report(
        "fanout",
        args,
        targets,
        {"latencies_ms": list(LATENCIES_MS), "variants": variants},
        [
            (
                "medians over interleaved rounds; the Compare tab row includes its run log (one SQLite "
                "row per target) and builds the comparison per batch"
            )
            if compare_tab
            else "the Compare tab row is left out of --quick (it imports Gradio)"
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
