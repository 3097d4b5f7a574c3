"""API keys never leave the server: not to the page, not to logs, not to errors, not to disk.

The whole app runs as `python app.py` in a subprocess against the three vendors' local fake
servers, with distinctive keys in its environment and a distinctive key typed "in the browser".
Every tab is exercised on every vendor, succeeding and failing (including a server that echoes
the key back in its error), then every byte the app sent, logged or wrote is searched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.fakes.cohere_server import route as cohere_route
from tests.fakes.hf_server import HFRouter
from tests.fakes.http_server import FakeServer, Reply
from tests.fakes.openai_server import OpenAIFake

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "OPENAI_API_KEY": "sk-test-OPENAI-DISTINCTIVE-7f3a9c",
    "CO_API_KEY": "co-test-COHERE-DISTINCTIVE-2b8e41",
    "HF_TOKEN": "hf_testHFDISTINCTIVE5d0c77e2aa",
}
SESSION_KEY = "sk-session-BROWSER-DISTINCTIVE-91d4"
VENDORS = ("openai", "cohere", "hf")
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Fake vendors, and the app serving in a subprocess whose home, temp and logs are ours."""
    base = tmp_path_factory.mktemp("secrecy")
    servers = {
        "openai": FakeServer(OpenAIFake(key=KEYS["OPENAI_API_KEY"])).start(),
        "cohere": FakeServer(cohere_route).start(),
        "hf": FakeServer(HFRouter()).start(),
    }
    port = free_port()
    for folder in ("home", "tmp", "hf"):
        (base / folder).mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "CO_", "HF_", "FMG_", "GRADIO_"))}
    env.update(KEYS)
    env.update(
        OPENAI_BASE_URL=servers["openai"].url + "/v1",
        CO_API_URL=servers["cohere"].url,
        HF_INFERENCE_ENDPOINT=servers["hf"].url,
        HOME=str(base / "home"),
        TMPDIR=str(base / "tmp"),
        GRADIO_TEMP_DIR=str(base / "tmp" / "gradio"),
        HF_HOME=str(base / "hf"),
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        FMG_RUN_LOG=str(base / "home" / "runs.sqlite3"),
        FMG_LEADERBOARD=str(base / "home" / "board.sqlite3"),
        FMG_TIMEOUT_S="10",
        FMG_MAX_ATTEMPTS="1",
        PYTHONUNBUFFERED="1",
    )
    log = open(base / "app.log", "wb")  # noqa: SIM115 - closed when the fixture ends
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=base / "home", env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                raise RuntimeError("the app did not start:\n" + (base / "app.log").read_text()[-3000:]) from None
            time.sleep(0.5)
    try:
        yield {"base": base, "url": url, "servers": servers, "proc": proc}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        for server in servers.values():
            server.stop()


def exercise(client: Client, image: str) -> list[str]:
    """Every tab on every vendor, with the env key and with a (rejected) session key."""
    seen: list[str] = []

    def call(*args, api_name):
        try:
            seen.append(repr(client.predict(*args, api_name=api_name)))
        except Exception as err:  # noqa: BLE001 - the message is what we inspect
            seen.append(f"ERROR {err!r}")

    for vendor in VENDORS:
        for key in ("", SESSION_KEY):
            call("hello there", [], vendor, key, "", 16, 0.0, 1.0, 1, api_name="/chat")
            call(handle_file(image), "a red square, a blue circle", vendor, key, api_name="/classify")
            call(handle_file(image), "", vendor, key, api_name="/caption")
            call("a red square", "", 1, 1024, 1024, 0.0, 1, vendor, key, api_name="/generate")
            call("red things", "a red apple\n\nthe blue sea", None, 2, 120, vendor, key, api_name="/search")
    return seen


def test_keys_appear_nowhere(world, tmp_path):
    image = tmp_path / "red.png"
    Image.new("RGB", (64, 64), "red").save(image)
    # Cohere and HF echo the key they were sent in an error: the app must redact it.
    world["servers"]["cohere"].script(Reply(status=401, json={"message": f"invalid api token {KEYS['CO_API_KEY']}"}))
    world["servers"]["hf"].script(Reply(status=400, json={"error": f"bad request from token {KEYS['HF_TOKEN']}"}))

    client = Client(world["url"], verbose=False)
    seen = exercise(client, str(image))
    successes = [s for s in seen if not s.startswith("ERROR")]
    errors = [s for s in seen if s.startswith("ERROR")]
    assert len(successes) >= 12, seen  # most cells really ran
    # the session key was used, refused, and the message points at it rather than at an env var
    assert any("OpenAI rejected the API key (401): check the key typed for this session" in e for e in errors)
    assert any("Cohere has no image generation" in e for e in errors)

    # the keys did reach the vendors (so they were in play)...
    auth = [r.headers.get("authorization", "") for s in world["servers"].values() for r in s.requests]
    for key in (*KEYS.values(), SESSION_KEY):
        assert any(key in a for a in auth), key

    # ...and nothing the app sent, logged or wrote holds any of them
    page = b"".join(
        urllib.request.urlopen(world["url"] + path, timeout=10).read() for path in ("", "config", "gradio_api/info")
    )
    world["proc"].terminate()
    world["proc"].wait(timeout=30)
    haystacks = {"responses": "\n".join(seen).encode(), "page": page}
    for path in world["base"].rglob("*"):
        if path.is_file():
            haystacks[str(path.relative_to(world["base"]))] = path.read_bytes()
    assert (world["base"] / "app.log").stat().st_size > 0
    assert any(name.endswith("runs.sqlite3") for name in haystacks), sorted(haystacks)
    for key in (*KEYS.values(), SESSION_KEY):
        leaks = [name for name, data in haystacks.items() if key.encode() in data]
        assert leaks == [], f"{key} found in {leaks}"
