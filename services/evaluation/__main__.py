"""`python -m services.evaluation SPEC.json`: run an evaluation from a script or CI and print the matrix.

    python -m services.evaluation spec.json --jsonl results.jsonl --min-score 0.8

SPEC.json is the same JSON the `/evaluate` endpoint takes (`services.evaluation.specs`), e.g.
{"dataset": "arithmetic", "targets": ["local"], "variants": [{"name": "cot", "chain_of_thought": true}]}.
The evaluation's id is printed (to stderr) before the first call, so a run that is killed can be
continued with `--resume ID`. The exit status is 1 when the run did not finish or, under
--min-score, when any row scores below it, had errors, or scored no item at all (n = 0); 2 when
the spec is refused, so a CI job can gate on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from adapters.errors import FMError
from services.evaluation import engine, report, specs, store


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.evaluation", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("spec", nargs="?", help="the spec as a JSON file ('-' reads stdin)")
    parser.add_argument("--resume", metavar="ID", help="continue the stored evaluation ID")
    parser.add_argument("--jsonl", type=Path, help="write every cell to this JSONL file")
    parser.add_argument("--csv", type=Path, help="write every cell to this CSV file")
    parser.add_argument(
        "--min-score", type=float, help="exit 1 if any row's mean score is below this, or it had errors or no score"
    )
    args = parser.parse_args(argv)
    try:
        if args.resume:
            stored = store.evaluation(args.resume, None)
            if stored is None:
                print(f"No stored evaluation {args.resume!r}.", file=sys.stderr)
                return 2
            spec, evaluation_id = specs.from_dict(stored["spec"]), args.resume
        elif args.spec:
            text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text(encoding="utf-8")
            spec, evaluation_id = specs.from_dict(json.loads(text)), None
        else:
            parser.error("give a spec file or --resume ID")
        worst = engine.estimate(spec)
        unpriced = ", ".join(worst.unpriced)
        cost = f"unknown (no list price for {unpriced})" if unpriced else report.usd(worst.usd)
        print(f"{worst.calls} calls at most; worst-case cost {cost or '$0'}", file=sys.stderr)
        evaluation = engine.Evaluation(spec, evaluation_id=evaluation_id, on_progress=_progress)
        print(f"evaluation {evaluation.id} (continue it with --resume {evaluation.id})", file=sys.stderr, flush=True)
        done = evaluation.run()
    except (FMError, json.JSONDecodeError, OSError) as err:
        print(f"\n{err}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    cells = store.cells(done.id)
    rows = report.matrix(cells, seed=spec.seed)
    _print_table(report.MATRIX_COLUMNS, report.table(rows))
    note = f" - {done.note}" if done.note else ""
    print(f"evaluation {done.id}: {done.status}{note}; cache hits {done.cache_hits}/{done.calls}")
    if args.jsonl:
        args.jsonl.write_text(report.to_jsonl(cells), encoding="utf-8")
    if args.csv:
        args.csv.write_text(report.to_csv(cells), encoding="utf-8")
    if args.min_score is not None:
        failing = below(rows, args.min_score)
        if failing:
            print(f"--min-score {args.min_score:g} failed: {'; '.join(failing)}", file=sys.stderr)
            return 1
    return 0 if done.status == "done" else 1


def below(rows: Sequence[report.Row], min_score: float) -> list[str]:
    """Why each failing row fails the gate: a score under `min_score`, errors, or nothing scored."""
    if not rows:
        return ["no cell was run"]
    out = []
    for r in rows:
        name = f"{r.variant} x {r.target}"
        if r.errors:
            out.append(f"{name} had {r.errors} error{'s' * (r.errors != 1)}")
        elif r.n == 0:
            out.append(f"{name} scored no item")
        elif r.score < min_score:
            out.append(f"{name} scored {r.score:.3f}")
    return out


def _progress(evaluation: engine.Evaluation) -> None:
    print(f"\r{evaluation.done}/{evaluation.total} cells", end="", file=sys.stderr, flush=True)


def _print_table(columns: list[str], rows: list[list]) -> None:
    cells = [columns, *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
