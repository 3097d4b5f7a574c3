"""The lectures' prompting claims, checked offline on the packaged SmolLM2-135M (local provider).

- chain of thought ("Let's think step by step") against answering directly, on the arithmetic set;
- self-consistency, a majority of 5 samples against 1 sample (both at temperature 0.7, with the
  chain-of-thought prompt, as in the paper);
- prompt injection: the attack success rate with no guard and with each guard.

Every figure is a mean with a 95% bootstrap interval over the items; nothing is tuned to this model,
which is small enough that it may show no gain at all. Results go to the run's JSON line (and
bench/results.jsonl with --save); the README quotes them.

    python -m bench.evaluate_smollm2 [--quick] [--save]
"""

from __future__ import annotations

import os
import sys
import tempfile

from bench import timing


def main(argv=None) -> dict:
    args = timing.parser("Prompting claims on the packaged SmolLM2-135M (issue 12).").parse_args(argv)
    folder = tempfile.TemporaryDirectory(prefix="fmg-bench-smollm2-")
    os.environ.setdefault("FMG_EVALUATIONS", os.path.join(folder.name, "evaluations.sqlite3"))
    from adapters import registry
    from adapters.types import CompletionParams, Task
    from services.evaluation import datasets, report, store
    from services.evaluation.datasets import Dataset
    from services.evaluation.engine import Evaluation, Spec, Target
    from services.evaluation.variants import Variant

    option = next(o for o in registry.options(Task.COMPLETION) if o.provider == "local")
    if not option.usable:
        return timing.report("evaluate_smollm2", args, [], {}, skipped=option.reason)
    target = (Target("local"),)
    n = 4 if args.quick else None

    def subset(name: str) -> Dataset:
        data = datasets.builtin(name)
        return Dataset(data.name, data.kind, data.items[:n], data.description, data.scorer, data.labels)

    def run(data: Dataset, variants: tuple[Variant, ...], params: CompletionParams) -> list[report.Row]:
        done = Evaluation(Spec(data, target, variants=variants, params=params, concurrency=1)).run()
        assert done.status == "done", done.note
        return report.matrix(store.cells(done.id))

    greedy = CompletionParams(max_tokens=320, temperature=0.0)
    sampled = CompletionParams(max_tokens=320, temperature=0.7)
    rows = run(subset("arithmetic"), (Variant("direct"), Variant("step by step", chain_of_thought=True)), greedy)
    rows += run(
        subset("arithmetic"),
        (
            Variant("1 sample, T=0.7", chain_of_thought=True),
            Variant("majority of 5, T=0.7", chain_of_thought=True, samples=5, pick="majority"),
        ),
        sampled,
    )
    guards = tuple(Variant(f"guard: {g}", guard=g) for g in ("none", "delimit", "sandwich", "detector"))
    injection = run(subset("injection"), guards, CompletionParams(max_tokens=96, temperature=0.0))

    table = [[r.variant, r.n, f"{r.score:.3f}", f"{r.low:.2f}-{r.high:.2f}", ""] for r in rows]
    table += [
        [r.variant, r.n, f"{r.score:.3f}", f"{r.low:.2f}-{r.high:.2f}", f"{r.attack_rate:.0%}"] for r in injection
    ]
    timing.table(["variant", "items", "score", "95% CI", "attack success"], table)
    figures = {
        "model": option.model,
        "arithmetic": [
            {"variant": r.variant, "accuracy": round(r.score, 4), "ci": [round(r.low, 4), round(r.high, 4)], "n": r.n}
            for r in rows
        ],
        "injection": [
            {
                "variant": r.variant,
                "attack_success": r.attack_rate,
                "resisted": round(r.score, 4),
                "ci": [round(r.low, 4), round(r.high, 4)],
                "n": r.n,
            }
            for r in injection
        ],
    }
    folder.cleanup()
    return timing.report(
        "evaluate_smollm2",
        args,
        [],
        figures,
        ["scores are means over items with 95% bootstrap intervals; no targets: these are findings, not goals"],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
