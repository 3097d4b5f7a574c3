"""Issue 17's table in one run, on this machine, the CPU named by each part: serving many people.

- `bench.scale_proxy`: 50 streaming sessions through nginx, 2 workers vs 1 (and 1 process
  direct): p95 <= 1.15x the ideal, first token <= +100 ms; a polite visitor's chat p95 with 5
  abusers through nginx vs idle: <= 1.5x.
- `bench.scale_local`: a polite visitor's page load and hosted chat p95 during a 40-item local
  evaluation vs idle: <= 2x; RSS of 2 workers + llama.cpp's server vs 2 workers each loading
  SmolLM2: reported.
- `bench.scale_storage`: run-log writes/s with 2 writer processes, PostgreSQL vs SQLite: >= 0.5x.

Each part runs its own baseline side by side and prints its own table and JSON line; this script
runs them one after the other (never at once: each needs the machine to itself). `--quick` and
`--save` are passed on; `--only proxy|local|storage` picks parts.
"""

from __future__ import annotations

import importlib
import sys

from bench import timing

PARTS = {"proxy": "bench.scale_proxy", "local": "bench.scale_local", "storage": "bench.scale_storage"}


def main(argv: list[str] | None = None) -> int:
    parser = timing.parser("Serving many people (issue 17): every part of bench/scale_*.py, one after the other.")
    parser.add_argument("--only", action="append", choices=list(PARTS), help="run only these parts")
    args = parser.parse_args(argv)
    passed = [flag for flag, on in (("--quick", args.quick), ("--save", args.save)) if on]
    for name in args.only or list(PARTS):
        print(f"\n=== {PARTS[name]} ===", flush=True)
        importlib.import_module(PARTS[name]).main(passed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
