"""Target 7: `python app.py` to its first served page, and its idle memory, against a bare Gradio
app with the same number of tabs (`bench/bare_app.py`: a few components and one event per tab),
started the same way. A third process, the bare app with each tab built as a `gr.Blocks` of its
own and rendered into its tab (as app.py assembled its demos until it built them all into one
Blocks), shows what that pattern costs: Gradio builds a FastAPI app (about 80 routes) when a
Blocks is created and again when its `with` block closes.

Each run starts the script in a fresh process on a free port and polls `GET /` every 10 ms until
it answers 200: that is the time to first page. One second later the process's resident memory
(VmRSS) is read: idle memory. Runs alternate in a random order per round, after one untimed run
of each (so both find the files in the OS cache). The bare app gets as many tabs as the app's own
page has (counted from its /config). Targets: both medians at most 1.3x the bare app's.

    python -m bench.cold_start [--quick] [--save] [--rounds 5]
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench import timing

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(command: list[str], env: dict, inspect=None) -> dict:
    """Start `command`, wait for its first page, then measure; returns seconds and MB."""
    port = free_port()
    env = dict(env, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(command)} exited ({proc.returncode}): "
                    f"{proc.stderr.read().decode(errors='replace')[-2000:]}"
                )
            try:
                status, _ = get(url)
                if status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - started > TIMEOUT_S:
                raise RuntimeError(f"{' '.join(command)} served no page within {TIMEOUT_S:g} s")
            time.sleep(0.01)
        first_page = time.perf_counter() - started
        time.sleep(1.0)
        out = {"first_page_s": first_page, "rss_mb": rss_mb(proc.pid)}
        if inspect is not None:
            out.update(inspect(url))
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def count_tabs(url: str) -> dict:
    _, body = get(url + "config", timeout=10)
    components = json.loads(body).get("components", [])
    return {"tabs": sum(1 for c in components if c.get("type") == "tabitem"), "components": len(components)}


def main(argv=None) -> dict:
    parser = timing.parser("Cold start of app.py vs. a bare Gradio app (issue 5, target 7).")
    parser.add_argument("--rounds", type=int, default=None, help="timed runs of each (5; quick: 1)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    tmp = tempfile.TemporaryDirectory(prefix="fmg-bench-")  # the run log; no config file (the defaults)
    env = dict(
        os.environ,
        GRADIO_ANALYTICS_ENABLED="False",
        FMG_RUN_LOG=os.path.join(tmp.name, "runs.sqlite3"),
        FMG_CONFIG=os.path.join(tmp.name, "absent.toml"),
    )
    app_cmd = [sys.executable, "app.py"]
    # untimed: warms the file cache and counts the app's tabs (in quick mode, the one timed run counts them)
    shape = {} if args.quick else start(app_cmd, env, inspect=count_tabs)
    runs: dict[str, list[dict]] = {"app": [], "bare": [], "bare_blocks": []}
    if args.quick:
        runs["app"].append(start(app_cmd, env, inspect=count_tabs))
        shape = {k: runs["app"][0].pop(k) for k in ("tabs", "components")}
    bare_cmd = [sys.executable, "bench/bare_app.py", str(shape["tabs"])]
    bare_shape = start(bare_cmd, env, inspect=count_tabs)
    commands = {"app": app_cmd, "bare": bare_cmd, "bare_blocks": [*bare_cmd, "--blocks-per-tab"]}
    for r in range(rounds if not args.quick else 0):
        for name in list(commands) if r % 2 == 0 else list(commands)[::-1]:
            runs[name].append(start(commands[name], env))

    tmp.cleanup()
    result = {
        name: {
            "first_page_s": round(timing.median([r["first_page_s"] for r in runs[name]]), 3),
            "rss_mb": round(timing.median([r["rss_mb"] for r in runs[name]]), 1),
            "first_page_runs_s": [round(r["first_page_s"], 3) for r in runs[name]],
            "rss_runs_mb": [round(r["rss_mb"], 1) for r in runs[name]],
        }
        for name in runs
        if runs[name]
    }
    if "bare" not in result:  # quick: the bare app's one run is the one that counted its tabs
        result["bare"] = {
            "first_page_s": round(bare_shape["first_page_s"], 3),
            "rss_mb": round(bare_shape["rss_mb"], 1),
            "first_page_runs_s": [round(bare_shape["first_page_s"], 3)],
            "rss_runs_mb": [round(bare_shape["rss_mb"], 1)],
        }
    time_ratio = result["app"]["first_page_s"] / result["bare"]["first_page_s"]
    rss_ratio = result["app"]["rss_mb"] / result["bare"]["rss_mb"]
    print(
        f"Cold start, medians of {max(rounds, 1)} interleaved run(s) each. The app: {shape['tabs']} tabs, "
        f"{shape['components']} components; the bare app: {bare_shape['tabs']} tabs, {bare_shape['components']} "
        "components"
    )
    timing.table(
        ["command", "first page s", "idle RSS MB", "runs (s)"],
        [
            [
                "python " + " ".join(cmd[1:]),
                result[name]["first_page_s"],
                result[name]["rss_mb"],
                ", ".join(f"{x:.2f}" for x in result[name]["first_page_runs_s"]),
            ]
            for name, cmd in commands.items()
            if name in result
        ],
    )
    targets = [
        timing.target("first page, app / bare (x)", time_ratio, 1.3, higher_is_better=False, unit="x"),
        timing.target("idle RSS, app / bare (x)", rss_ratio, 1.3, higher_is_better=False, unit="x"),
    ]
    return timing.report(
        "cold_start",
        args,
        targets,
        {
            "rounds": rounds,
            "app_shape": shape,
            "bare_shape": {k: bare_shape[k] for k in ("tabs", "components")},
            **result,
        },
        [
            (
                "first page: from starting the process to GET / answering 200 (polled every 10 ms); idle RSS: "
                "VmRSS one second later"
            ),
            "bare_blocks: the bare app with a gr.Blocks per tab rendered into it (app.py's former pattern)",
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
