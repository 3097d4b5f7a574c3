"""Run-log writes per second with 2 writer processes: PostgreSQL against SQLite, side by side.

Two processes (two app workers) each record runs through `services.run_log` at once, as fast as
they can, into the same database: first the embedded SQLite file, then a PostgreSQL server this
script starts (Debian's binaries, `tests/fixtures/postgres.py`, fsync on: PostgreSQL's defaults;
the run log's own transactions skip the wait for the disk, `synchronous_commit = off`, the
trade SQLite's `synchronous=NORMAL` makes). Two ways of writing, both measured:

- batched: the app's way: each run hands its row to the writer thread and returns; the writer
  commits whatever has queued in one transaction (`flush()` once at the end);
- one commit per run: `flush()` after every run (a run is "answered" only once it is committed).

writes/s = all runs of both processes / the slower process's time, from a common start signal
(imports and connections made before it). Target (issue 17): PostgreSQL >= 0.5x SQLite, batched.
Rounds alternate the engines' order. `--quick`: 150 runs a process, one round.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import timing

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.5

WRITER = """
import sys, time
from adapters.types import Caption
from services import run_log
count, each = int(sys.argv[1]), sys.argv[2] == "each"
result = Caption(text="a caption", provider="fake", model="fake-1", latency_s=0.01)
with run_log.run(tab="captioning", task="captioning", provider="fake", inputs={"warm": True}) as r:
    r.done(result, output="warm-up")  # the connection and the schema, before the clock
assert run_log.flush(timeout=60)
print("ready", flush=True)
sys.stdin.readline()  # the common start signal
started = time.perf_counter()
for i in range(count):
    with run_log.run(tab="captioning", task="captioning", provider="fake", inputs={"prompt": "x" * 200, "i": i}) as r:
        r.done(result, output="an answer of a few words " * 8)
    if each:
        run_log.flush()
assert run_log.flush(timeout=600)
print(time.perf_counter() - started, flush=True)
"""


def writes_per_s(env: dict[str, str], count: int, mode: str) -> float:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(count), mode],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        times = [float(p.stdout.readline()) for p in procs if p.stdout is not None]
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return 2 * count / max(times)


def main(argv: list[str] | None = None) -> int:
    args = timing.parser(__doc__.splitlines()[0]).parse_args(argv)
    count, rounds = (150, 1) if args.quick else (2000, 3)
    sys.path.insert(0, str(ROOT))
    from tests.fixtures import postgres

    if not postgres.available():
        timing.report("scale_storage", args, [], {}, skipped=postgres.SKIP_REASON.format(bin=postgres.BIN))
        return 0
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fmg-bench-storage-") as tmp, postgres.running_postgres(durable=True) as pg:
        base = os.environ | {"PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
        base.pop("FMG_DATABASE_URL", None)
        made = iter(range(1_000_000))

        def case(engine: str, mode: str):
            def one() -> float:
                n = next(made)
                env = base | {"FMG_RUN_LOG": os.path.join(tmp, f"{engine}-{n}", "runs.sqlite3")}
                if engine == "postgresql":
                    env["FMG_DATABASE_URL"] = pg.create_database()
                return writes_per_s(env, count, mode)

            return one

        for mode in ("batched", "each"):
            samples = timing.interleaved(
                {engine: case(engine, mode) for engine in ("sqlite", "postgresql")}, rounds=rounds, warmup=0
            )
            figures[mode] = {engine: round(timing.median(values), 1) for engine, values in samples.items()}
    rows = [
        [
            "batched (the app)" if mode == "batched" else "one commit per run",
            f["sqlite"],
            f["postgresql"],
            f"{f['postgresql'] / f['sqlite']:.2f}x",
        ]
        for mode, f in figures.items()
    ]
    timing.table(["writes", "SQLite /s", "PostgreSQL /s", "PG / SQLite"], rows, title="Run-log writes, 2 processes")
    ratio = figures["batched"]["postgresql"] / figures["batched"]["sqlite"]
    targets = [
        timing.target("run-log writes/s, PostgreSQL / SQLite, 2 writers (batched)", round(ratio, 2), TARGET_RATIO)
    ]
    notes = [
        f"{count} runs per process, {rounds} round(s)",
        "PostgreSQL: fsync on, synchronous_commit off for the run log; SQLite: WAL, synchronous=NORMAL",
        "figures on a shared machine move with its load (machine.load_1min)",
    ]
    figures_out = {
        "runs_per_process": count,
        **{f"{mode}_{engine}_writes_per_s": v for mode, f in figures.items() for engine, v in f.items()},
    }
    timing.report("scale_storage", args, targets, figures_out, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
