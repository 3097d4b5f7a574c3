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


def test_abuse_quick_run_reports_the_three_measures():
    """bench.abuse (public mode under abusive visitors), shortened further than --quick: every
    measure is taken and judged, with a number, in one JSON line; nothing is appended without --save."""
    results = ROOT / "bench" / "results.jsonl"
    before = results.read_bytes() if results.exists() else None
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "bench.abuse", "--quick", "--seconds", "3", "--crowd", "2"],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["bench"] == "abuse" and line["quick"] is True and line["figures"]["cpu_model"]
    names = [t["target"] for t in line["targets"]]
    for measure, count in (("vendor calls per visitor", 2), ("server memory growth", 1), ("fair visitor chat p95", 2)):
        assert sum(name.startswith(measure) for name in names) == count, names
    for target in line["targets"]:
        assert isinstance(target["value"], (int, float)) and target["value"] >= 0, target
        goal = float(target["goal"].removeprefix("≤ ").split()[0].rstrip("x"))
        assert target["met"] is (target["value"] <= goal), target
    assert (results.read_bytes() if results.exists() else None) == before


def test_abuse_judges_its_targets_on_hand_made_numbers():
    from bench import abuse

    assert abuse.max_in_window([0, 10, 59.9, 60, 61]) == 4  # 10..61 lie within one minute; 0 and 60 do not
    assert abuse.max_in_window([]) == 0 and abuse.COUNTED_S == 55
    burst = [0.1 * i for i in range(11)]  # 11 calls in the first second: the limit + 1 of slack
    assert abuse.judge_calls("alone", {"7": burst}, 10)["met"] is True
    over = abuse.judge_calls("alone", {"7": [1.0, 2.0], "8": [*burst, 30.0]}, 10)
    assert over["met"] is False and over["value"] == 12 and over["goal"] == "≤ 11"
    # a second minute's calls, charged once the first ones left the window, are not over the limit
    two_minutes = [*burst[:10], *(60.5 + t for t in burst[:10])]
    assert abuse.judge_calls("alone", {"7": two_minutes}, 10)["met"] is True
    assert abuse.judge_calls("nobody called", {}, 10) | {"target": ""} == {
        "target": "", "value": 0, "goal": "≤ 11", "met": True}

    assert abuse.judge_memory(200_000, 200_000 + 99 * 1024)["met"] is True
    grown = abuse.judge_memory(200_000, 200_000 + 101 * 1024)
    assert grown["met"] is False and grown["value"] == 101

    idle = [0.1] * 19 + [0.2]  # p95 0.105 s (interpolated between the 19th and 20th)
    fair = abuse.judge_latency(idle, [0.15] * 20)
    assert fair["met"] is True and fair["value"] == round(0.15 / 0.105, 4) and fair["goal"] == "≤ 1.5x"
    assert abuse.judge_latency(idle, [0.16] * 20)["met"] is False
    assert abuse.judge_latency([0.1] * 20, [0.1] * 19 + [5.0])["met"] is False  # one slow chat in 20 is the p95

    assert abuse.outcome_of({"msg": "process_completed", "success": True}) == "ok"
    refused = {"success": False, "output": {"error": "You have made 10 hosted calls in the last minute, the limit"}}
    assert abuse.outcome_of(refused) == "quota: calls/min"


def test_abuse_bomb_is_small_on_the_wire_and_a_real_png():
    import io

    from PIL import Image

    from bench import abuse

    assert len(abuse.one_bit_png(abuse.BOMB_SIDE)) < 100_000  # 400 MP in under 100 KB
    with Image.open(io.BytesIO(abuse.one_bit_png(100))) as small:  # the same writer, small enough to decode
        small.load()
        assert small.size == (100, 100) and small.mode == "1"
