"""Issue 17's acceptance, as an operator would run it: `python app.py --workers 2` with
FMG_DATABASE_URL on a PostgreSQL this test starts, 20 gradio_client sessions at once through the
one public port, every run in PostgreSQL and in /history from new sessions (whichever worker
serves them), a worker killed with SIGKILL (new sessions keep working, it comes back), and
SIGTERM leaving no process behind."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from launcher import nginx
from tests.fakes.http_server import FakeServer
from tests.fakes.openai_server import OpenAIFake
from tests.proxy_stack import KEY, Stack, process_groups
from tests.test_proxy import client_chat

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(nginx.binary() is None, reason="needs Debian's nginx package (apt-get install nginx)"),
]
SESSIONS = 20


@pytest.fixture(scope="module")
def stack(postgres_server, tmp_path_factory) -> Iterator[tuple[Stack, str]]:
    url = postgres_server.create_database("accept")
    with FakeServer(OpenAIFake(key=KEY)) as vendor:
        running = Stack(tmp_path_factory.mktemp("accept"), vendor.url, workers=2, env={"FMG_DATABASE_URL": url})
        try:
            yield running, url
        finally:
            running.kill_everything()
    postgres_server.drop_database(url)


def history_rows(url: str) -> list[list]:
    from gradio_client import Client

    client = Client(url, verbose=False)  # a new session: a new route cookie, whichever worker
    try:
        return client.predict("", "", "", False, api_name="/history")["data"]
    finally:
        client.close()


def test_many_sessions_through_two_workers_share_one_postgresql(stack):
    running, database = stack
    words = [f"question q{i:02d}q" for i in range(SESSIONS)]
    with ThreadPoolExecutor(SESSIONS) as pool:
        replies = list(pool.map(lambda w: client_chat(running.url, w)[1], words))
    assert all(w in r for w, r in zip(words, replies, strict=True))

    engine = sa.create_engine(database.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            stored = [row[0] for row in conn.execute(sa.text("SELECT inputs FROM runs WHERE tab = 'chat'"))]
    finally:
        engine.dispose()
    assert all(sum(w in s for s in stored) == 1 for w in words)  # each run once, in the one database
    for _ in range(4):  # new sessions land on either worker; each sees every run
        seen = " ".join(str(row) for row in history_rows(running.url))
        assert all(w in seen for w in words)


def test_a_killed_worker_comes_back_and_sigterm_leaves_nothing(stack):
    running, _ = stack
    before = running.pids()
    seen = len(running.lines)
    os.kill(before["w2"], signal.SIGKILL)
    for i in range(4):  # new sessions keep working while it is down
        assert f"still here {i}" in client_chat(running.url, f"still here {i}")[1]
    running.wait_for(re.compile(r"w2 started \(pid (\d+)\)"), timeout=120, after=seen)
    assert running.pids()["w2"] != before["w2"]
    children = set(running.pids().values())  # each child leads its own process group
    assert running.stop(signal.SIGTERM) < 20
    alive = {pid for group, members in process_groups().items() for pid in members if group in children}
    assert not alive and running.proc.poll() is not None, f"left behind: {alive}"
