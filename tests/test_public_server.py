"""Public mode through the running app, as anonymous visitors would try it: gradio_client and raw
HTTP, each visitor a different X-Forwarded-For address (the test trusts its own proxy, 127.0.0.1).
No vendor is reached: fakes count every call they get."""

from __future__ import annotations

import http.server
import json
import logging
import os
import pathlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from adapters import registry
from adapters.errors import ProviderError
from adapters.registry import Provider
from adapters.types import Task
from demos import compare
from services import quotas
from tests.fakes import providers as fake

pytestmark = pytest.mark.e2e

MODELS = ("m1", "m2", "m3")
PRICES = {
    "counted": {m: {"input_per_1m": 1.0, "output_per_1m": 1.0} for m in MODELS},
    "broken": {"b1": {"input_per_1m": 1.0, "output_per_1m": 1.0}},
}


class Counted(fake.FakeCompleter):
    """Echoes like the fake; counts its calls, and holds each while `gate` is closed."""

    calls = 0
    lock = threading.Lock()
    gate = threading.Event()
    entered = threading.Semaphore(0)

    def _stream(self, messages, params):
        with Counted.lock:
            Counted.calls += 1
        Counted.entered.release()
        Counted.gate.wait(30)
        yield from super()._stream(messages, params)


class Leaky(fake.FakeCompleter):
    """A vendor library whose unexpected error quotes the key it was given (some do)."""

    def _stream(self, messages, params):
        try:
            raise ConnectionError(f"handshake refused for token {os.environ['HF_TOKEN']}")
        except ConnectionError as err:
            raise RuntimeError(f"client failed with {os.environ['HF_TOKEN']!r}") from err
        yield  # a generator


class Broken(fake.FakeCompleter):
    def _stream(self, messages, params):
        raise ProviderError("Broken Vendor Inc rejected the request (500).", provider="broken", status=500)
        yield  # a generator


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    registry.register(fake.provider())
    registry.register(Provider("counted", "Counted", {Task.COMPLETION: Counted}, models=lambda task: "m1"))
    registry.register(Provider("broken", "Broken", {Task.COMPLETION: Broken}, models=lambda task: "b1"))
    registry.register(Provider("leaky", "Leaky", {Task.COMPLETION: Leaky}, models=lambda task: "l1"))
    import app

    mp = pytest.MonkeyPatch()
    mp.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")  # this test is the proxy: its X-Forwarded-For is believed
    app.demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_options()
    )
    try:
        yield app.demo.local_url
    finally:
        app.demo.close()
        mp.undo()
        registry.unregister(fake.NAME)
        registry.unregister("counted")
        registry.unregister("broken")
        registry.unregister("leaky")


@pytest.fixture(autouse=True)
def public(monkeypatch, tmp_path):
    config = tmp_path / "fm-gallery.toml"
    config.write_text(f"[public.models.counted]\ncompletion = {json.dumps(list(MODELS))}\n")
    monkeypatch.setenv("FMG_CONFIG", str(config))
    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_LEADERBOARD", str(tmp_path / "board.sqlite3"))
    monkeypatch.setattr(quotas, "price_table", lambda: PRICES)
    monkeypatch.setattr(quotas, "_quotas", None)
    Counted.calls = 0
    Counted.gate.set()
    Counted.entered = threading.Semaphore(0)


_address = iter(range(1, 250))


def visitor(server: str) -> Client:
    """A new anonymous visitor: a client behind its own address."""
    return Client(server, headers={"X-Forwarded-For": f"198.51.100.{next(_address)}"}, verbose=False)


def chat(client: Client, text: str, provider: str = "counted"):
    return client.predict(text, [], provider, "", "", 32, 0.7, 1.0, -1, api_name="/chat")


def compare_args(targets, prompt="hello there", blind=False) -> dict:
    return dict(
        task="completion",
        targets=list(targets),
        prompt=prompt,
        image=None,
        labels="",
        corpus_text="",
        top_k=3,
        max_tokens=32,
        temperature=0.7,
        steps=1,
        width=64,
        height=64,
        seed=-1,
        blind=blind,
        api_key="",
        key_provider=None,
        api_name="/compare",
    )


# --- spend ---------------------------------------------------------------------------------------


def test_a_visitor_makes_at_most_their_calls_per_minute(server, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "3")
    alice = visitor(server)
    answers, refusals = [], []
    for i in range(6):
        try:
            answers.append(chat(alice, f"question {i}"))
        except AppError as err:
            refusals.append(str(err))
    assert len(answers) == 3 and Counted.calls == 3
    assert len(refusals) == 3 and all("3 hosted calls in the last minute" in r for r in refusals)
    chat(visitor(server), "someone else")  # another visitor is not held back
    assert Counted.calls == 4


def test_a_comparison_counts_one_call_per_target(server, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "4")
    alice = visitor(server)
    first = alice.predict(**compare_args(["counted:m1", "counted:m2", "counted:m3"]))
    assert all(t["error"] is None for t in first["targets"]) and Counted.calls == 3
    second = alice.predict(**compare_args(["counted:m1", "counted:m2", "counted:m3"]))
    errors = [t["error"] for t in second["targets"] if t["error"]]
    assert Counted.calls == 4 and len(errors) == 2 and all("hosted calls" in e for e in errors)


def test_a_visitor_picks_only_the_owners_models(server):
    alice = visitor(server)
    with pytest.raises(AppError, match="offers only these counted models for completion / chat: m1, m2, m3"):
        alice.predict(**compare_args(["counted:o1-pro", "counted:m1"]))
    assert Counted.calls == 0


@pytest.mark.parametrize("mode", ["1", "0"])
def test_no_target_is_ever_a_url(server, monkeypatch, mode):
    """hf:<URL> made the server POST to that URL with the owner's HF_TOKEN."""
    monkeypatch.setenv("FMG_PUBLIC", mode)
    monkeypatch.setenv("HF_TOKEN", "hf_owner_secret_token_value")
    hits = []

    class Trap(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            hits.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args):
            pass

    trap = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trap)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{trap.server_address[1]}/steal"
    try:
        for targets in ([f"hf:{url}", "counted"], [f"openai:{url}", "counted"], [f"local:{url}", "counted"]):
            with pytest.raises(AppError, match="not a model id"):
                visitor(server).predict(**compare_args(targets))
    finally:
        trap.shutdown()
    assert hits == [] and Counted.calls == 0


def test_the_queue_takes_a_few_events_per_visitor(server, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_EVENTS_PER_VISITOR", "2")
    Counted.gate.clear()  # every chat waits inside the vendor call until the test lets it go
    alice, address = visitor(server), "203.0.113.7"
    alice.headers["X-Forwarded-For"] = address
    fn_index = next(i for i, fn in app_fns().items() if fn.api_name == "chat")
    join = {"data": ["hi", [], "counted", "", "", 8, 0.7, 1.0, -1], "fn_index": fn_index, "session_hash": "s1"}
    jobs = [alice.submit("hi", [], "counted", "", "", 8, 0.7, 1.0, -1, api_name="/chat") for _ in range(2)]
    try:
        for _ in range(2):
            assert Counted.entered.acquire(timeout=30)  # both are running, held in the vendor call
        refused = httpx.post(f"{server}gradio_api/queue/join", json=join, headers={"X-Forwarded-For": address})
        assert refused.status_code == 503 and "already have 2 requests" in refused.text
        other = httpx.post(
            f"{server}gradio_api/queue/join",
            json={**join, "session_hash": "s2"},
            headers={"X-Forwarded-For": "203.0.113.8"},
        )
        assert other.status_code == 200
    finally:
        Counted.gate.set()
    assert all(job.result(timeout=30) for job in jobs)


def test_a_visitor_starts_at_most_their_events_per_minute(server, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_EVENTS_PER_MINUTE", "3")
    fn_index = next(i for i, fn in app_fns().items() if fn.api_name == "history")
    join = {"data": ["", "", "", False], "fn_index": fn_index}
    codes = [
        httpx.post(
            f"{server}gradio_api/queue/join",
            json={**join, "session_hash": f"e{i}"},
            headers={"X-Forwarded-For": "203.0.113.50"},
        )
        for i in range(5)
    ]
    assert [c.status_code for c in codes] == [200, 200, 200, 503, 503]
    assert "started 3 requests in the last minute" in codes[-1].text
    other = httpx.post(
        f"{server}gradio_api/queue/join",
        json={**join, "session_hash": "e-other"},
        headers={"X-Forwarded-For": "203.0.113.51"},
    )
    assert other.status_code == 200


def app_fns() -> dict:
    import app

    return app.demo.fns


@pytest.mark.parametrize("mode", ["1", "0"])
def test_a_key_quoted_by_an_unexpected_error_never_reaches_the_log_or_the_page(server, monkeypatch, caplog, mode):
    from adapters.keys import install_log_redaction

    monkeypatch.setenv("FMG_PUBLIC", mode)
    monkeypatch.setenv("FMG_PUBLIC_ALLOW_UNPRICED", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_owner_secret_token_1234567890")
    install_log_redaction()  # as app.main() does
    with caplog.at_level(logging.ERROR), pytest.raises(AppError) as refused:
        chat(visitor(server), "hello", provider="leaky")
    assert "hf_owner_secret" not in str(refused.value) and "went wrong on the server" in str(refused.value)
    logged = caplog.text
    assert "RuntimeError" in logged and "ConnectionError: handshake refused" in logged  # the traceback is there
    assert "hf_owner_secret" not in logged and "[redacted]" in logged


# --- privacy -------------------------------------------------------------------------------------


def test_each_visitor_sees_only_their_own_runs(server, tmp_path):
    alice, bob = visitor(server), visitor(server)
    chat(alice, "alice private question")
    chat(bob, "bob private question")
    seen_by_bob = json.dumps(bob.predict("", "", "", False, api_name="/history"))
    assert "bob private question" in seen_by_bob and "alice private question" not in seen_by_bob
    exported = pathlib.Path(bob.predict("JSONL", api_name="/export")).read_text(encoding="utf-8")
    assert "bob private question" in exported and "alice private question" not in exported
    alice_rows = alice.predict("", "", "alice", False, api_name="/history")
    assert len(alice_rows["data"]) == 1
    run_id = alice_rows["data"][0][-1]
    detail = next(i for i, fn in app_fns().items() if getattr(fn.fn, "__name__", "") == "detail")
    record, _, program = raw_call(server, detail, [run_id], bob.headers["X-Forwarded-For"])  # not on the API page
    assert record is None and program == ""
    address = alice.headers["X-Forwarded-For"]
    record, _, _ = raw_call(server, detail, [run_id], address)  # alice's address, not alice's session
    assert record is None  # privacy follows the browser or the session, never the address alone
    assert alice.cookies.get("fmg_visitor")  # gradio_client keeps the page's cookie: it is a browser
    record, _, _ = raw_call(server, detail, [run_id], address, cookies=alice.cookies)
    assert record["id"] == run_id


def test_two_people_behind_one_address_see_only_their_own_runs(server):
    """One office NAT: two browsers, one address. Each page load gets its own signed cookie."""
    address = f"198.51.100.{next(_address)}"
    first, second = (httpx.Client(base_url=server, headers={"X-Forwarded-For": address}, timeout=30) for _ in range(2))
    with first, second:
        for browser in (first, second):
            assert browser.get("/").status_code == 200
            assert browser.cookies.get("fmg_visitor")  # the page load gave this browser its token
        assert first.cookies.get("fmg_visitor") != second.cookies.get("fmg_visitor")
        chat_fn, history_fn = (
            next(i for i, fn in app_fns().items() if getattr(fn.fn, "__name__", "") == name)
            for name in ("chat", "history")
        )
        for browser, words in ((first, "first browser's secret"), (second, "second browser's secret")):
            raw_call(
                server, chat_fn, [words, [], "counted", "", "", 32, 0.7, 1.0, -1], address, cookies=browser.cookies
            )
        seen = {
            name: json.dumps(raw_call(server, history_fn, ["", "", "", False], address, cookies=browser.cookies))
            for name, browser in (("first", first), ("second", second))
        }
    assert "first browser's secret" in seen["first"] and "second browser's secret" not in seen["first"]
    assert "second browser's secret" in seen["second"] and "first browser's secret" not in seen["second"]
    forged = {"fmg_visitor": first.cookies["fmg_visitor"].split(".")[0] + ".0123456789abcdef0123456789abcdef"}
    assert "secret" not in json.dumps(raw_call(server, history_fn, ["", "", "", False], address, cookies=forged))


def raw_call(server: str, fn_index: int, data: list, address: str, session: str | None = None, cookies=None) -> list:
    """Call any event by its index over plain HTTP, as a script would (private ones included)."""
    session = session or f"raw-{next(_address)}"
    headers = {"X-Forwarded-For": address}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in dict(cookies).items())
    joined = httpx.post(
        f"{server}gradio_api/queue/join",
        headers=headers,
        json={"data": data, "fn_index": fn_index, "session_hash": session},
    )
    joined.raise_for_status()
    with httpx.stream(
        "GET", f"{server}gradio_api/queue/data", params={"session_hash": session}, headers=headers, timeout=30
    ) as events:
        for line in events.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                assert message.get("success"), message
                return message["output"]["data"]
    raise AssertionError("the event never completed")


def upload(server: str, address: str, nbytes: int, name: str = "x.bin") -> httpx.Response:
    files = {"files": (name, os.urandom(nbytes), "application/octet-stream")}
    return httpx.post(f"{server}gradio_api/upload", files=files, headers={"X-Forwarded-For": address}, timeout=30)


def test_a_visitors_uploads_are_limited_per_hour_before_they_are_stored(server, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_UPLOAD_MB_PER_HOUR", "3")
    flooder, other = f"198.51.100.{next(_address)}", f"198.51.100.{next(_address)}"
    folder = pathlib.Path(app_upload_folder())
    for _ in range(3):
        assert upload(server, flooder, 900_000).status_code == 200
    before = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    refused = upload(server, flooder, 900_000)
    assert refused.status_code == 429 and "uploaded 3 MB in the last hour" in refused.json()["detail"]
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) == before  # nothing was written
    assert upload(server, other, 900_000).status_code == 200  # another visitor has their own budget

    def chunks():
        yield b"--x\r\n"

    no_length = httpx.post(f"{server}gradio_api/upload", content=chunks(), headers={"X-Forwarded-For": other})
    assert no_length.status_code == 411


def test_uploads_stop_while_the_upload_folder_is_full(server, monkeypatch):
    upload(server, f"198.51.100.{next(_address)}", 600_000)  # the folder holds at least this much
    monkeypatch.setenv("FMG_PUBLIC_TEMP_FOLDER_MB", "1")
    time.sleep(5.1)  # the folder's size is measured every 5 s
    full = upload(server, f"198.51.100.{next(_address)}", 500_000)
    assert full.status_code == 503 and "upload space is full" in full.json()["detail"]


def app_upload_folder() -> str:
    from gradio import utils

    return utils.get_upload_folder()


def test_a_refused_upload_is_not_kept(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_KEEP_UPLOADS", "1")  # even where the owner keeps uploads
    from gradio_client import handle_file

    from services import run_log

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really an image" * 50)
    with pytest.raises(AppError, match=r"not an image this app can read|corrupt"):
        visitor(server).predict(handle_file(str(broken)), "a cat, a dog", "fake", "", api_name="/classify")
    uploads = run_log.location().parent / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


@pytest.mark.parametrize("keep", ["0", "1"])
def test_visitors_uploads_are_kept_only_when_the_owner_says_so(server, tmp_path, monkeypatch, keep):
    from gradio_client import handle_file
    from PIL import Image

    from services import run_log

    monkeypatch.setenv("FMG_PUBLIC_KEEP_UPLOADS", keep)
    monkeypatch.setenv("FMG_PUBLIC_ALLOW_UNPRICED", "1")
    photo = tmp_path / f"photo-{keep}.png"
    Image.new("RGB", (40, 30), "red").save(photo)
    visitor(server).predict(handle_file(str(photo)), "a cat, a dog", "fake", "", api_name="/classify")
    run_log.flush()
    uploads = run_log.location().parent / "uploads"
    kept = list(uploads.iterdir()) if uploads.exists() else []
    assert len(kept) == (1 if keep == "1" else 0)


# --- blind comparisons ---------------------------------------------------------------------------


def test_a_blind_comparison_gives_nothing_away_and_only_its_visitor_votes(server):
    alice, bob = visitor(server), visitor(server)
    result = alice.predict(**compare_args(["counted:m1", "counted:m2", "broken:b1"], blind=True))
    text = json.dumps(result)
    assert "counted" not in text and "broken" not in text.lower() and "Broken Vendor" not in text
    assert result["names_hidden"] and result["comparison_id"]
    failed = [t for t in result["targets"] if t["error"]]
    assert [t["error"] for t in failed] == [compare.HIDDEN_ERROR]
    assert all(set(t) == {"name", "output", "error", "label"} for t in result["targets"])  # no time, tokens, cost
    history = json.dumps(alice.predict("", "", "", False, api_name="/history"))
    assert "counted" not in history and "hello there" not in history  # its runs are nowhere until the vote
    assert result["comparison_id"] not in pathlib.Path(alice.predict("CSV", api_name="/export")).read_text(
        encoding="utf-8"
    )
    with pytest.raises(AppError, match="not waiting for your vote"):
        bob.predict(result["comparison_id"], "A", api_name="/vote")
    answered = next(t["label"] for t in result["targets"] if not t["error"])
    revealed = alice.predict(result["comparison_id"], answered.removeprefix("Model "), api_name="/vote")
    assert not revealed["names_hidden"] and "counted:m" in json.dumps(revealed)
    assert "hello there" in json.dumps(alice.predict("", "", "", False, api_name="/history"))


def test_votes_are_limited_per_visitor(server, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_VOTES_PER_MINUTE", "1")
    alice = visitor(server)
    ids = [alice.predict(**compare_args(["counted:m1", "counted:m2"], blind=True))["comparison_id"] for _ in range(2)]
    alice.predict(ids[0], "tie", api_name="/vote")
    with pytest.raises(AppError, match="1 votes in the last minute"):
        alice.predict(ids[1], "tie", api_name="/vote")
    assert alice.predict("completion", api_name="/leaderboard")[0]["votes"] == 1
