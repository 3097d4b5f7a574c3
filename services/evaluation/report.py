"""An evaluation's results: the matrix (variant x target), the per-item drill-down and the exports.

The score column is the mean over scored cells with a 95% interval: Wilson's where every score is
0 or 1 (a share of passes), else a bootstrap, named in the "interval" column. Cells that failed
are counted in `errors`, not scored as 0, so a flaky vendor shows as errors rather than as a
worse model. For injection datasets the score is the share of attacks resisted, and the attack
success rate is shown beside it with its Wilson interval.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from services.evaluation import stats
from services.evaluation.store import Cell

MATRIX_COLUMNS = [
    "variant",
    "target",
    "score",
    "95% CI",
    "n",
    "interval",
    "errors",
    "cut off",
    "attack success",
    "repeated document",
    "task kept",
    "detector unusable",
    "mean latency s",
    "p95 latency s",
    "tokens in",
    "tokens out",
    "cost $",
    "$ per correct",
    "cache hits",
]
CONFIDENCE = 0.95
DRILL_COLUMNS = ["item", "target", "variant", "score", "why", "answer", "output", "cost $", "cached"]


@dataclass(frozen=True)
class Row:
    """One line of the matrix: every cell of one (variant, target)."""

    variant: str
    target: str
    score: float
    low: float
    high: float
    n: int
    errors: int
    attack_rate: float | None
    mean_latency_s: float
    p95_latency_s: float
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    usd_per_correct: float | None
    cache_hits: int
    calls: int
    cut_off: int = 0  # cells whose reply was stopped by max_tokens
    interval: str = ""  # how low..high was computed: "Wilson 95%", "bootstrap 95%"
    attack_low: float | None = None
    attack_high: float | None = None
    repeated: int = 0  # injection replies that carried the marker only by reproducing the document
    task_kept: float | None = None  # share of injection replies that still did the task (where known)
    detector_unusable: int = 0  # detector checks that answered neither yes nor no
    detector_checks: int = 0


def matrix(cells: Sequence[Cell], seed: int = 0) -> list[Row]:
    """One row per (variant, target), in the order they first appear."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.variant, cell.target), []).append(cell)
    return [_row(variant, target, group, seed) for (variant, target), group in groups.items()]


def _row(variant: str, target: str, group: list[Cell], seed: int) -> Row:
    scored = [c.score for c in group if c.score is not None and c.error is None]
    mean, low, high, method = stats.interval(scored, CONFIDENCE, seed=seed)
    latencies = [c.latency_s for c in group if c.latency_s is not None and c.error is None]
    attacks = [bool(c.extra.get("attack")) for c in group if c.extra and "attack" in c.extra]
    kept = [float(c.extra["task_kept"]) for c in group if c.extra and c.extra.get("task_kept") is not None]
    detector = [str(c.extra["detector"]) for c in group if c.extra and "detector" in c.extra]
    costs = [c.cost_usd for c in group if c.error is None]
    cost = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    correct = sum(s >= 0.5 for s in scored)
    _, attack_low, attack_high = stats.wilson_ci(sum(attacks), len(attacks), CONFIDENCE) if attacks else (0, None, None)
    return Row(
        variant=variant,
        target=target,
        score=mean,
        low=low,
        high=high,
        n=len(scored),
        errors=sum(c.error is not None for c in group),
        attack_rate=sum(attacks) / len(attacks) if attacks else None,
        attack_low=attack_low,
        attack_high=attack_high,
        mean_latency_s=stats.mean(latencies),
        p95_latency_s=stats.percentile(latencies, 95),
        input_tokens=_total([c.input_tokens for c in group]),
        output_tokens=_total([c.output_tokens for c in group]),
        cost_usd=cost,
        usd_per_correct=(cost / correct) if cost is not None and correct else None,
        cache_hits=sum(c.cached for c in group),
        calls=sum(c.calls for c in group),
        cut_off=sum(cut_off(c) for c in group),
        interval=stats.method_label(method, CONFIDENCE) if scored else "",
        repeated=sum(bool((c.extra or {}).get("repeated")) for c in group),
        task_kept=stats.mean(kept) if kept else None,
        detector_unusable=sum(d == "unusable" for d in detector),
        detector_checks=len(detector),
    )


def cut_off(cell: Cell) -> bool:
    """Whether the cell's reply was stopped by max_tokens (a column once the store has one, else in `extra`)."""
    return bool(getattr(cell, "cut_off", False) or (cell.extra or {}).get("cut_off"))


def confusion(
    cells: Sequence[Cell], labels: Sequence[str], actual: Mapping[str, str]
) -> dict[tuple[str, str], list[list]]:
    """Per (variant, target): rows actual label, columns predicted (and "none"), as display rows."""
    columns = [*labels, "none"]
    out: dict[tuple[str, str], list[list]] = {}
    for cell in cells:
        if cell.error is not None or cell.item not in actual:
            continue
        table = out.setdefault((cell.variant, cell.target), [[label] + [0] * len(columns) for label in labels])
        said = (cell.extra or {}).get("predicted") or "none"
        if actual[cell.item] in labels and said in columns:
            table[labels.index(actual[cell.item])][1 + columns.index(said)] += 1
    return out


def _attack(row: Row) -> str:
    """The attack success rate with its Wilson interval: "25% (9-49%)"."""
    if row.attack_rate is None:
        return ""
    if row.attack_low is None or row.attack_high is None:
        return f"{row.attack_rate:.0%}"
    return f"{row.attack_rate:.0%} ({row.attack_low * 100:.0f}-{row.attack_high * 100:.0f}%)"


def _total(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def table(rows: Sequence[Row]) -> list[list]:
    """The matrix as display rows (`MATRIX_COLUMNS`)."""
    return [
        [
            r.variant,
            r.target,
            _num(r.score, 3),
            f"{_num(r.low, 2)}-{_num(r.high, 2)}" if r.n else "",
            r.n,
            r.interval,
            r.errors,
            r.cut_off,
            _attack(r),
            r.repeated if r.attack_rate is not None else "",
            "" if r.task_kept is None else f"{r.task_kept:.0%}",
            f"{r.detector_unusable}/{r.detector_checks}" if r.detector_checks else "",
            _num(r.mean_latency_s, 3),
            _num(r.p95_latency_s, 3),
            r.input_tokens,
            r.output_tokens,
            usd(r.cost_usd),
            usd(r.usd_per_correct),
            f"{r.cache_hits}/{r.calls}",
        ]
        for r in rows
    ]


def drill_down(cells: Sequence[Cell], limit: int = 500) -> list[list]:
    """Per-item rows (`DRILL_COLUMNS`): each output and why it scored as it did."""
    rows = []
    for c in cells[:limit]:
        why = c.error or c.why
        extra = "; ".join(
            "cut off at max_tokens" if k == "cut_off" else f"{k} {v}"
            for k, v in (c.extra or {}).items()
            if k not in ("attack", "repeated", "task_kept", "detector_reply")
        )
        rows.append(
            [
                c.item,
                c.target,
                c.variant,
                "" if c.score is None else _num(c.score, 2),
                f"{why} ({extra})" if extra else why,
                (c.answer or "")[:200],
                (c.output or "")[:1000],
                usd(c.cost_usd),
                f"{c.cached}/{c.calls}",
            ]
        )
    return rows


def usd(value: float | None) -> str:
    """Dollars with significant digits (never $0.00000 for a real cost); blank where unknown."""
    if value is None:
        return ""
    if value == 0:
        return "$0"
    return f"${value:.3g}" if value < 1 else f"${value:,.2f}"


def _num(value: float, digits: int) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def to_csv(cells: Sequence[Cell]) -> str:
    out = io.StringIO()
    fields = [f for f in asdict(cells[0])] if cells else ["item"]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for cell in cells:
        row = asdict(cell)
        row["extra"] = json.dumps(row["extra"]) if row["extra"] else ""
        writer.writerow({k: _csv_safe(v) for k, v in row.items()})
    return out.getvalue()


def _csv_safe(value: object) -> object:
    """Text that a spreadsheet would run as a formula gets a leading quote (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_jsonl(cells: Sequence[Cell]) -> str:
    return "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in cells)
