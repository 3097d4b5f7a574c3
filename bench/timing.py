"""Measurement shared by the benchmarks: interleaved repeats, medians and percentiles, the
printed table and the one JSON line of results.

On a noisy machine a baseline measured first and a candidate measured later see different
loads, so cases are interleaved: every round runs each case once, in alternating order
(A B, then B A, ...), and results are medians over rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.jsonl"


def parser(description: str) -> argparse.ArgumentParser:
    """The common command line: `--quick` (a smoke run of seconds) and `--save`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (CI); figures are not meaningful")
    p.add_argument(
        "--save", action="store_true", help=f"append the JSON line to {RESULTS.relative_to(RESULTS.parent.parent)}"
    )
    return p


def interleaved(cases: dict[str, Callable[[], float | None]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run every case once per round, alternating the order between rounds; return each case's samples.

    A case returns its own measurement (a time or a rate), or None to be timed as a whole (seconds).
    `warmup` rounds run first and are not kept.
    """
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        for name in names if r % 2 == 0 else reversed(names):
            started = time.perf_counter()
            value = cases[name]()
            if r >= warmup:
                samples[name].append(time.perf_counter() - started if value is None else float(value))
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linearly interpolated."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * p / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def target(name: str, value: float, goal: float, higher_is_better: bool = True, unit: str = "") -> dict:
    """One target's verdict for the JSON line and the closing table."""
    met = value >= goal if higher_is_better else value <= goal
    return {
        "target": name,
        "value": round(value, 4),
        "goal": ("≥ " if higher_is_better else "≤ ") + f"{goal:g}{unit}",
        "met": bool(met),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    """Print a small aligned table."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths, strict=False)))


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).replace("x", "").lstrip("-").isdigit()


def machine() -> dict:
    """What the figures were measured on."""
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(terse=True)}
    info["cpu"] = cpu_model()
    with contextlib.suppress(OSError):
        info["load_1min"] = round(os.getloadavg()[0], 2)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu_model() -> str:
    """The CPU's model name (figures move between Intel and AMD machines), or the architecture."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report(
    bench: str,
    args: argparse.Namespace,
    targets: list[dict],
    figures: dict,
    notes: Sequence[str] = (),
    skipped: str | None = None,
) -> dict:
    """Print the targets' table and, as the last line of stdout, the JSON line; append it to
    bench/results.jsonl with `--save`. `skipped` says why nothing could be measured here."""
    if targets:
        table(
            ["target", "measured", "goal", "met"],
            [[t["target"], t["value"], t["goal"], t["met"]] for t in targets],
            title="Targets",
        )
    for note in notes:
        print(f"note: {note}")
    line = {
        "bench": bench,
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "machine": machine(),
        "targets": targets,
        "figures": figures,
        "notes": list(notes),
    }
    if skipped:
        line["skipped"] = skipped
    text = json.dumps(line, default=_plain)
    if args.save:
        with RESULTS.open("a") as f:
            f.write(text + "\n")
    sys.stdout.flush()
    print(text, flush=True)
    return line


def _plain(value: object) -> object:
    """numpy numbers and the like as plain JSON numbers."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
