"""`python app.py --workers 2` through its public port: nginx in front of two Gradio workers.

One stack (the launcher in a subprocess, as an operator starts it) serves the module; the
fake OpenAI vendor streams each chat word by word. Skipped where nginx is missing (Debian's
`nginx` package). The last test stops the stack with SIGTERM and looks for anything left behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from launcher import nginx, settings
from tests.fakes.http_server import FakeServer, Reply, Request
from tests.fakes.openai_server import OpenAIFake
from tests.proxy_stack import KEY, ROOT, Stack, free_port, process_groups

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(nginx.binary() is None, reason="needs Debian's nginx package (apt-get install nginx)"),
]
WORDS = " ".join(f"word{i}" for i in range(30))  # the fake vendor streams it back a word every 20 ms
TOO_MANY = "Too many requests from your address"


class SlowOpenAI(OpenAIFake):
    def __call__(self, request: Request) -> Reply:
        reply = super().__call__(request)
        if reply.sse is not None:
            reply.interval_s = 0.02
        return reply


def chat_args(text: str) -> list:
    return [text, [], "openai", "", "", 64, 0.7, 1.0, -1]


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeServer]:
    with FakeServer(SlowOpenAI(key=KEY)) as server:
        yield server


@pytest.fixture(scope="module")
def stack(vendor, tmp_path_factory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("proxy"), vendor.url, workers=2)
    try:
        yield running
    finally:
        running.kill_everything()


def client_chat(url: str, text: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """A gradio_client session's chat: (frames streamed, the reply's text)."""
    from gradio_client import Client

    client = Client(url, verbose=False, headers=headers)
    try:
        job = client.submit(*chat_args(text), api_name="/chat")
        frames = list(job)
        history, _ = job.result(timeout=60)
    finally:
        client.close()
    content = history[-1]["content"]
    reply = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    return len(frames), reply


def raw_chat(http: httpx.Client, url: str, text: str) -> list[str]:
    """POST /gradio_api/call/chat, then GET its event stream: the event names in order."""
    posted = http.post(f"{url}gradio_api/call/chat", json={"data": chat_args(text)})
    posted.raise_for_status()
    events = []
    try:
        with http.stream("GET", f"{url}gradio_api/call/chat/{posted.json()['event_id']}") as stream:
            if stream.status_code != 200:
                return [f"http {stream.status_code}"]
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    events.append(line.split(":", 1)[1].strip())
                elif line.startswith("data:") and events and events[-1] == "error":
                    events.append(line)
    except httpx.RemoteProtocolError:  # a worker that does not know the event cuts the stream short
        events.append("cut")
    return events


@contextmanager
def nginx_with(config: str, tmp: Path) -> Iterator[None]:
    """nginx running this config (written into `tmp`), stopped after."""
    (tmp / "nginx.conf").write_text(config)
    if os.geteuid() == 0:
        tmp.chmod(0o711)
    proc = subprocess.Popen(
        [nginx.binary(), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not (tmp / "nginx.pid").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stderr.close()  # type: ignore[union-attr]


# --- the proxy's own rules, against an upstream that echoes what it got --------------------------


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_the_proxy_replaces_a_visitors_forwarded_for_and_sets_a_route_cookie(tmp_path):
    echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    port = free_port()
    config = nginx.render(settings.from_env({}, port=port), tmp_path, [echo.server_address[1]], "25mb")
    try:
        with (
            nginx_with(config, tmp_path),
            httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.4")) as http,
        ):
            page = http.get(
                f"http://127.0.0.1:{port}/", headers={"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=7.7.7.7"}
            )
            seen = page.json()
            assert seen["x-forwarded-for"] == "127.0.0.4" and "forwarded" not in seen  # replaced, not appended
            assert seen["host"] == f"127.0.0.1:{port}" and seen["x-forwarded-proto"] == "http"
            route = page.cookies["fmg_route"]
            assert len(route) == 32  # a page load draws a route of its own (browsers behind one NAT spread)
            again = http.get(f"http://127.0.0.1:{port}/config")
            assert "set-cookie" not in again.headers  # the browser's cookie is kept as it is
            bare = httpx.get(f"http://127.0.0.1:{port}/gradio_api/info")  # a client without cookies
            assert bare.cookies["fmg_route"] == "127.0.0.1"  # its address: where it was routed anyway
            config = httpx.get(f"http://127.0.0.1:{port}/config")  # gradio_client's first request
            assert len(config.cookies["fmg_route"]) == 32 and config.cookies["fmg_route"] != route
    finally:
        echo.shutdown()


def test_without_nginx_workers_mode_names_the_package_to_install(monkeypatch, capsys):
    from launcher import cli

    monkeypatch.setattr(nginx, "binary", lambda: None)
    assert cli.main(["--workers", "2"], "25mb") == 1
    assert capsys.readouterr().err.strip() == nginx.MISSING
    assert "apt-get install nginx" in nginx.MISSING


def test_plain_app_stays_one_process_and_a_worker_never_launches(monkeypatch):
    from launcher import cli

    monkeypatch.delenv("FMG_WORKERS", raising=False)
    assert cli.workers_wanted([]) is None
    assert cli.workers_wanted(["--workers", "3"]) == 3
    monkeypatch.setenv("FMG_WORKERS", "2")
    assert cli.workers_wanted([]) == 2
    monkeypatch.setenv(cli.WORKER_ENV, "1")  # a worker inherits FMG_WORKERS from an operator's shell
    assert cli.workers_wanted(["--workers", "3"]) is None
    env = cli.worker_env(cli.worker_environment(), 2, 4321)
    assert env["FORWARDED_ALLOW_IPS"] == "127.0.0.1" and env["GRADIO_SERVER_NAME"] == "127.0.0.1"
    assert env["GRADIO_SERVER_PORT"] == "4321" and "FMG_WORKERS" not in env


# --- the stack -----------------------------------------------------------------------------------


def test_gradio_client_and_raw_http_stream_a_chat_through_the_proxy(stack):
    frames, reply = client_chat(stack.url, WORDS)  # it keeps the route cookie of its first request
    assert frames >= 5 and reply.endswith("word29")
    with httpx.Client(timeout=60) as http:  # keeps cookies: its first request is the POST
        events = raw_chat(http, stack.url, WORDS)
        assert events.count("generating") >= 5 and events[-1] == "complete", events
        assert http.cookies.get("fmg_route") == "127.0.0.1"
    for _ in range(2):  # no cookies at all (curl): each request routed by address
        with httpx.Client(timeout=60) as http:
            http.cookies.clear()
            events = raw_chat(http, stack.url, "hello there")
        assert events[-1] == "complete", events


def rr_client_chat(url: str) -> object:
    """A gradio_client chat: its (frames, reply), its error, or "no answer" after 8 s (it waits
    forever for events that went to the other worker)."""
    outcome: list[object] = []

    def session() -> None:
        try:
            outcome.append(client_chat(url, "hello"))
        except Exception as err:  # noqa: BLE001 - whichever way the client reports it
            outcome.append(f"{type(err).__name__}: {err}")

    attempt = threading.Thread(target=session, daemon=True)
    attempt.start()
    attempt.join(timeout=8)
    return outcome[0] if outcome else "no answer in 8 s"


def test_round_robin_loses_sessions_and_the_sticky_proxy_keeps_them(stack, tmp_path):
    """Gradio keeps an event in the worker that took it: plain round robin sends the stream's GET
    to the other worker, which has never heard of it."""
    port = free_port()
    config = nginx.render(settings.from_env({}, port=port), tmp_path, stack.worker_ports, "25mb", sticky=False)
    with nginx_with(config, tmp_path):
        with httpx.Client(timeout=60) as http:
            lost = [raw_chat(http, f"http://127.0.0.1:{port}/", "hello") for _ in range(4)]
        print("round robin, raw:", lost)
        assert sum(events[-1] != "complete" for events in lost) >= 2, lost
        # gradio_client: whether its join and its event stream meet depends on how many requests
        # it made before (round robin alternates), so two sessions, one request apart
        outcomes = [rr_client_chat(f"http://127.0.0.1:{port}/")]
        httpx.get(f"http://127.0.0.1:{port}/config")
        outcomes.append(rr_client_chat(f"http://127.0.0.1:{port}/"))
        print("round robin, gradio_client:", outcomes)
        assert any(not isinstance(o, tuple) for o in outcomes), outcomes
    with httpx.Client(timeout=60) as http:
        kept = [raw_chat(http, stack.url, "hello") for _ in range(4)]
    assert all(events[-1] == "complete" for events in kept), kept


def test_an_over_limit_address_gets_429_from_nginx_while_another_chat_streams(stack):
    done: dict[str, object] = {}

    def polite() -> None:
        try:
            done["chat"] = client_chat(stack.url, WORDS)
        except Exception as err:  # noqa: BLE001 - the assertion below names it
            done["chat"] = err

    visitor = threading.Thread(target=polite)
    visitor.start()
    limits = httpx.Limits(max_connections=40)
    transport = httpx.HTTPTransport(local_address="127.0.0.2", limits=limits)  # not the polite visitor's address
    with httpx.Client(transport=transport, timeout=30) as abuser, ThreadPoolExecutor(16) as pool:
        # 80 queue joins at once: nginx lets 5 a second and a burst of 30 through by default
        answers = list(
            pool.map(
                lambda _: abuser.post(f"{stack.url}gradio_api/call/chat", json={"data": chat_args("hammer")}),
                range(80),
            )
        )
    codes = [a.status_code for a in answers]
    refused = [a for a in answers if a.status_code == 429]
    assert all(TOO_MANY in a.json()["detail"] and a.headers["retry-after"] == "5" for a in refused)
    visitor.join(timeout=90)
    assert len(refused) >= 20 and set(codes) == {200, 429}, codes
    frames, reply = done["chat"]  # type: ignore[misc]
    assert frames >= 5 and reply.endswith("word29")


def test_bodies_over_the_upload_limit_are_refused_by_the_proxy(stack):
    limit = nginx.size_bytes("30mb")  # FMG_MAX_UPLOAD_REQUEST_MB in the stack: nginx takes the app's cap
    big = httpx.post(
        f"{stack.url}gradio_api/upload", files={"files": ("big.bin", b"\0" * (limit + 200_000))}, timeout=60
    )
    assert big.status_code == 413 and "30 MB" in big.json()["detail"]
    # 1 MB: more than nginx keeps in memory, so it passes through nginx's temp folder (as root,
    # nginx's workers run as nobody and must be able to write there)
    fine = httpx.post(f"{stack.url}gradio_api/upload", files={"files": ("fine.bin", b"\1" * 1_000_000)}, timeout=60)
    assert fine.status_code == 200 and fine.json()[0].endswith("fine.bin")


def test_a_killed_worker_is_restarted_and_new_sessions_keep_working(stack):
    before = stack.pids()
    seen = len(stack.lines)
    os.kill(before["w1"], signal.SIGKILL)
    # new sessions on many routes (cookies): some hash to the dead worker, and nginx moves them
    for i in range(6):
        _frames, reply = client_chat(stack.url, "still there?", headers={"Cookie": f"fmg_route={i:032x}"})
        assert reply.endswith("there?"), reply
    stack.wait_for(re.compile(r"w1 started \(pid (\d+)\)"), timeout=120, after=seen)
    assert stack.pids()["w1"] != before["w1"]
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{stack.worker_ports[0]}/", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "the restarted worker never answered on its port"
            time.sleep(0.5)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM or importlib.util.find_spec("playwright") is None,
    reason="needs Debian's chromium and the playwright package",
)
def test_chromium_streams_a_chat_and_shows_the_proxys_429_as_an_error(stack):
    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import FLAGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(stack.url)
            assert any(c["name"] == "fmg_route" for c in page.context.cookies())
            provider = page.get_by_label("Provider").locator("visible=true").first
            provider.click()
            page.get_by_role("option", name=re.compile("^OpenAI")).locator("visible=true").first.click()
            chat = page.get_by_placeholder("Ask something…")
            chat.fill(WORDS)
            chat.press("Enter")
            replies = page.locator(".message.bot, [data-testid='bot']")
            expect(replies.last).to_contain_text("word29", timeout=60_000)

            # a script on the same address keeps spending its queue joins: the page's next join
            # gets nginx's 429, which the page shows as the event's error
            stop, codes = threading.Event(), []

            def spend() -> None:
                with httpx.Client(timeout=30) as http:
                    while not stop.is_set():
                        codes.append(http.post(f"{stack.url}gradio_api/call/chat", json={"data": []}).status_code)

            spender = threading.Thread(target=spend, daemon=True)
            spender.start()
            try:
                deadline = time.monotonic() + 30
                while codes.count(429) < 3:
                    assert time.monotonic() < deadline, codes
                    time.sleep(0.05)
                chat.fill("one more")
                chat.press("Enter")
                expect(page.get_by_text(TOO_MANY).first).to_be_visible(timeout=15_000)
            finally:
                stop.set()
                spender.join(timeout=30)
            assert "Traceback" not in page.content()
            if os.environ.get("FMG_SCREENSHOT"):
                page.screenshot(path=os.environ["FMG_SCREENSHOT"])
        finally:
            browser.close()


def test_sigterm_stops_the_proxy_and_every_worker_and_leaves_nothing(stack):
    """Last: it stops the module's stack."""
    children = stack.pids()
    assert {"w1", "w2", "proxy"} <= set(children)
    with open(f"/proc/{children['proxy']}/cmdline", "rb") as f:  # "nginx: master process nginx -p <folder> ..."
        folder = Path(re.search(r"-p (\S+)", f.read().replace(b"\0", b" ").decode())[1])
    assert (folder / "nginx.conf").exists()
    took = stack.stop(signal.SIGTERM)
    assert stack.proc.returncode == 0 and took < 10, (stack.proc.returncode, took)
    # looked at the moment the launcher is gone: it stopped its children before exiting (the
    # death signal each child asked for is only the fallback for a killed launcher)
    left = {pid for group in children.values() for pid in process_groups().get(group, [])}
    assert not left, left
    assert not folder.exists()


# --- supervision, with plain sleepers as children ------------------------------------------------

SLEEPER_PARENT = """
import sys, time
from launcher.supervisor import Child
child = Child("s", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(300)"])
child.start()
print("CHILD", child.pid, flush=True)
time.sleep(300)
"""


def test_a_sigkilled_launcher_takes_its_children_down():
    parent = subprocess.Popen(
        [sys.executable, "-c", SLEEPER_PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        line = next(x for x in parent.stdout if x.startswith("CHILD"))  # type: ignore[union-attr]
        child = int(line.split()[1])
        assert child in process_groups().get(child, [])  # its own process group
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while child in process_groups().get(child, []):
            assert time.monotonic() < deadline, "the child outlived its SIGKILLed parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]


def test_a_dead_child_is_restarted_after_a_growing_backoff(monkeypatch):
    from launcher import supervisor

    monkeypatch.setattr(supervisor, "BACKOFF_S", (0.2, 1.0))
    out = open(os.devnull, "w")  # noqa: SIM115
    child = supervisor.Child("x", [sys.executable, "-c", "raise SystemExit(3)"])
    child.start(out)
    starts = [time.monotonic()]
    while len(starts) < 4 and time.monotonic() - starts[0] < 30:
        child.check(out)
        if child.restarts == len(starts):
            starts.append(time.monotonic())
        time.sleep(0.01)
    child.restart = False
    child.signal(signal.SIGKILL)
    child.proc.wait()  # type: ignore[union-attr]
    out.close()
    assert child.restarts >= 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.2 and gaps[1] >= 1.0 and gaps[2] >= 1.0, gaps  # 0.2 s, then 1 s (the last step, kept)


STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a worker stuck in C code, say
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # and something it started
print("up", flush=True)
time.sleep(60)
"""


def test_stopping_terminates_each_child_and_kills_what_ignores_it():
    """The launcher's own stop (SIGTERM to each process group, SIGKILL after the grace): the
    children here outlive nothing, since the test process that started them stays alive."""
    from launcher import supervisor

    with open(os.devnull, "w") as out:
        polite = supervisor.Child("p", [sys.executable, "-c", "import time; time.sleep(60)"])
        stubborn = supervisor.Child("s", [sys.executable, "-c", STUBBORN])
        for child in (polite, stubborn):
            child.start(out)
        deadline = time.monotonic() + 30
        while len(process_groups().get(stubborn.pid, [])) < 2:  # its own child is up too
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        supervisor.stop_all([polite, stubborn], grace_s=1.0)
        took = time.monotonic() - started
    assert polite.proc.returncode == -signal.SIGTERM and stubborn.proc.returncode == -signal.SIGKILL  # type: ignore[union-attr]
    assert took < 5, took
    time.sleep(0.1)
    assert not process_groups().get(polite.pid) and not process_groups().get(stubborn.pid)
