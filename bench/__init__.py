"""Benchmarks: each module measures one target of issue 5 against its baseline in the same run.

Run one with `python -m bench.<name>` (`--quick` for a smoke run, `--save` to append the JSON
line to bench/results.jsonl). Shared measurement code is in `bench.timing`; the random-weight
models of real sizes they run are built by `bench.models`.
"""
