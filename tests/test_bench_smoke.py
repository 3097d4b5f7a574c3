"""The local-model benchmarks still run: each script's `--quick` mode, in a subprocess, must exit
0 and end its output with one parseable JSON line. Never asserts timings: benchmarks are not
timed tests (their figures on a shared CI machine mean nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["batching", "search", "caching", "local_completion", "gpu"]


def run_quick(name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", f"bench.{name}", "--quick"], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_run_exits_cleanly_with_a_json_line(name):
    results = ROOT / "bench" / "results.jsonl"
    before = results.read_bytes() if results.exists() else None
    done = run_quick(name)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    line = json.loads(last)
    assert line["bench"] == name and line["quick"] is True
    assert isinstance(line["targets"], list) and isinstance(line["figures"], dict)
    for target in line["targets"]:
        assert {"target", "value", "goal", "met"} <= set(target)
    if name == "gpu" and "skipped" in line:
        assert "no CUDA" in line["skipped"] and "skipped" in done.stdout.splitlines()[0]
    elif name != "gpu":
        assert line["targets"], "a quick run still measures every target it can"
    assert (results.read_bytes() if results.exists() else None) == before  # only --save writes there


APP_SCRIPTS = ["adapter_overhead", "fanout", "app_streaming", "cold_start"]


@pytest.mark.parametrize("name", APP_SCRIPTS)
def test_app_benchmark_quick_run_exits_cleanly_with_a_json_line(name):
    """Targets 1, 2, 3 and 7: adapter overhead against the raw SDK (a local wire-format server in
    its own process), fan-out, streaming through the app (served by bench.app_launcher, driven by
    gradio_client), cold start against a bare Gradio app. Same checks as the local-model ones."""
    test_quick_run_exits_cleanly_with_a_json_line(name)
