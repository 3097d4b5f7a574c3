"""Evaluate: 200 items x 3 targets on fake vendors answering in 50 ms.

Three fake completion providers (registered like real ones, so access, validation, scoring, the
store and the cache all run for real) each answer after 50 ms of sleep, as a vendor call waits on
its socket. Targets:

- wall time at most 1.2x the ideal, items x targets x 50 ms / (concurrency per provider x providers);
- at most 1 ms of this process's CPU per cell (item x target) beyond what the fake vendors use;
- the same evaluation again, served from the cache, at least 50x faster.

    python -m bench.evaluate [--quick] [--save]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from bench import timing

LATENCY_S = 0.05
PROVIDERS = ("vendor_a", "vendor_b", "vendor_c")
CONCURRENCY = 4


def register() -> None:
    from adapters import registry
    from adapters.registry import Provider
    from adapters.tasks import Completer
    from adapters.types import Finish, Task, Usage

    class FiftyMs(Completer):
        def _stream(self, messages, params):
            time.sleep(LATENCY_S)
            yield "The answer is 42."
            yield Usage(input_tokens=30, output_tokens=5)
            yield Finish("stop")

    for name in PROVIDERS:
        registry.register(
            Provider(name=name, label=name, adapters={Task.COMPLETION: FiftyMs}, models=lambda task: "fixed")
        )


def dataset(n: int):
    from services.evaluation.datasets import Dataset, Item

    items = tuple(Item(id=str(i), input=f"Question {i}: what is 6 x 7?", reference="42") for i in range(n))
    return Dataset("bench", "chat", items, "synthetic", "numeric")


def main(argv=None) -> dict:
    args = timing.parser("Evaluate: 200 items x 3 targets on 50 ms fake vendors (issue 12).").parse_args(argv)
    folder = tempfile.TemporaryDirectory(prefix="fmg-bench-evaluate-")
    os.environ["FMG_EVALUATIONS"] = os.path.join(folder.name, "evaluations.sqlite3")
    from services.evaluation import store
    from services.evaluation.engine import Evaluation, Spec, Target

    register()
    items = 20 if args.quick else 200
    spec = Spec(dataset(items), tuple(Target(p) for p in PROVIDERS), concurrency=CONCURRENCY)
    cells = items * len(PROVIDERS)
    ideal_s = cells * LATENCY_S / (CONCURRENCY * len(PROVIDERS))

    cpu0, wall0 = time.process_time(), time.perf_counter()
    first = Evaluation(spec).run()
    wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
    assert first.status == "done" and first.cache_hits == 0, first.note
    assert all(c.score == 1.0 for c in store.cells(first.id))

    cpu1, wall1 = time.process_time(), time.perf_counter()
    again = Evaluation(spec).run()
    cached_s, cached_cpu_s = time.perf_counter() - wall1, time.process_time() - cpu1
    assert again.cache_hits == again.calls == cells

    cpu_ms_per_cell = cpu_s * 1000 / cells
    speedup = wall_s / cached_s
    cached_cpu_ms = cached_cpu_s * 1000 / cells
    timing.table(
        ["run", "cells", "wall s", "ideal s", "CPU s", "CPU ms / cell"],
        [
            ["first (50 ms vendors)", cells, round(wall_s, 3), round(ideal_s, 3), round(cpu_s, 3), cpu_ms_per_cell],
            ["again, from the cache", cells, round(cached_s, 3), "", round(cached_cpu_s, 3), cached_cpu_ms],
        ],
    )
    targets = [
        timing.target("wall / ideal (x)", wall_s / ideal_s, 1.2, higher_is_better=False, unit="x"),
        timing.target("app CPU per cell (ms)", cpu_ms_per_cell, 1.0, higher_is_better=False, unit=" ms"),
        timing.target("cached re-run speed-up (x)", speedup, 50, unit="x"),
    ]
    folder.cleanup()
    return timing.report(
        "evaluate",
        args,
        targets,
        {
            "items": items,
            "targets": len(PROVIDERS),
            "concurrency_per_provider": CONCURRENCY,
            "wall_s": round(wall_s, 4),
            "ideal_s": round(ideal_s, 4),
            "cpu_ms_per_cell": round(cpu_ms_per_cell, 4),
            "cached_s": round(cached_s, 4),
            "speedup": round(speedup, 2),
        },
        [
            "CPU is the whole process's (threads, scoring, SQLite store and cache), the fake vendors only sleep; "
            "one cell is one item x one target"
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
