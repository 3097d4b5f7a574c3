"""The Hugging Face login identifies a visitor, through Gradio's own OAuth routes.

Outside a Space, Gradio's `attach_oauth` mocks the login: `/login/huggingface` puts the profile
of the machine's own token (`whoami`, answered here by a local stand-in of the Hub) into the
session cookie, exactly where the real Spaces login puts it. The app runs in a subprocess in
public mode with a login button (OAUTH_CLIENT_ID set) and SPACE_AUTHOR_NAME naming that user, so
the logged-in visitor is the Space's owner: an admin who reads every visitor's runs, from any
browser they log in with. Chat goes to the OpenAI stand-in.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.http_server import FakeServer, Reply, Request
from tests.fakes.openai_server import OpenAIFake

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
USER = "ada-owner"


def whoami(request: Request) -> Reply:
    if request.path.startswith("/api/whoami"):
        return Reply(json={"type": "user", "name": USER, "fullname": "Ada", "avatarUrl": "", "orgs": []})
    return Reply(status=404, json={"error": "not here"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("oauth")
    hub, openai = FakeServer(whoami).start(), FakeServer(OpenAIFake(key="sk-test-oauth")).start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "CO_", "HF_", "FMG_", "GRADIO_"))}
    env.update(
        FMG_PUBLIC="1",
        OAUTH_CLIENT_ID="test-client",  # the page gets its login button, and Gradio attaches OAuth
        SPACE_AUTHOR_NAME=USER,
        HF_TOKEN="hf_test_token_for_the_mocked_login",
        HF_ENDPOINT=hub.url,  # huggingface_hub's whoami asks the stand-in, never the Hub
        OPENAI_API_KEY="sk-test-oauth",
        OPENAI_BASE_URL=openai.url + "/v1",
        FMG_RUN_LOG=str(base / "runs.sqlite3"),
        FMG_LEADERBOARD=str(base / "board.sqlite3"),
        FMG_VISITOR_SALT="oauth-test",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_TEMP_DIR=str(base / "gradio"),
        HOME=str(base),
        PYTHONUNBUFFERED="1",
    )
    log = open(base / "app.log", "wb")  # noqa: SIM115 - closed when the fixture ends
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(url, timeout=2)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                raise RuntimeError("the app did not start:\n" + (base / "app.log").read_text()[-3000:]) from None
            time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        hub.stop()
        openai.stop()


def browser(url: str, address: str) -> httpx.Client:
    client = httpx.Client(base_url=url, headers={"X-Forwarded-For": address}, timeout=30, follow_redirects=True)
    assert client.get("/").status_code == 200
    return client


def call(client: httpx.Client, api: str, data: list) -> list:
    """One API call as the page's scripts would make it (same cookies), to its end."""
    posted = client.post(f"/gradio_api/call/{api}", json={"data": data})
    posted.raise_for_status()
    with client.stream("GET", f"/gradio_api/call/{api}/{posted.json()['event_id']}") as events:
        kind = ""
        for line in events.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                assert kind == "complete", line
                return json.loads(line[5:])
    raise AssertionError("the call never completed")


def log_in(client: httpx.Client) -> None:
    """Gradio's mocked login puts the profile into its session cookie. That cookie is `Secure`
    (as on a Space): browsers send it to http://127.0.0.1, httpx only over https, so the test
    hands it back itself."""
    client.get("/login/huggingface")
    session = next(c for c in client.cookies.jar if c.name == "session")
    client.cookies.set("session", session.value)


def chat(client: httpx.Client, words: str) -> None:
    call(client, "chat", [words, [], "openai", "", "", 16, 0.0, 1.0, 1])


def history(client: httpx.Client) -> str:
    return json.dumps(call(client, "history", ["", "", "", False]))


def test_the_login_is_the_visitor_and_the_spaces_owner_reads_every_run(app_url):
    stranger = browser(app_url, "198.51.100.20")
    chat(stranger, "a stranger's question")
    assert "a stranger's question" in history(stranger)

    owner = browser(app_url, "198.51.100.21")
    assert "a stranger's question" not in history(owner)  # not logged in yet: just another browser
    log_in(owner)
    assert "a stranger's question" in history(owner)  # the Space's owner is an admin
    chat(owner, "the owner's own question")

    elsewhere = browser(app_url, "2001:db8::77")  # the owner again, from another browser and network
    assert "the owner's own question" not in history(elsewhere)
    log_in(elsewhere)
    assert "the owner's own question" in history(elsewhere)
    assert "the owner's own question" not in history(stranger)
