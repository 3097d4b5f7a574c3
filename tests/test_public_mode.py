"""Public mode's rules, below the server: the switch, model names at the trust boundary, and
visitor quotas (calls per minute, dollars per day, votes, one local turn), in memory and on a real
Redis shared by two counters (layer 1). The same rules through the running app are in
test_public_server.py."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
import uuid

import gradio as gr
import pytest

from adapters.errors import BadInput
from adapters.types import Task
from services import boundary, public, quotas
from services.quotas import LimitReached, Work
from services.visitors import Visitor

PRICES = {"fake": {"fake-model": {"input_per_1m": 1.0, "output_per_1m": 4.0, "per_image": 0.01}}}
ALICE, BOB = Visitor("addr:10.0.0.1"), Visitor("addr:10.0.0.2")


@pytest.fixture
def public_mode(monkeypatch, fake_provider):
    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setattr(quotas, "price_table", lambda: PRICES)
    monkeypatch.setattr(quotas, "_quotas", None)  # fresh counters for each test
    return fake_provider


class AnyModel(dict):
    """A vendor's price list where every model has the same price."""

    def __init__(self, **price):
        super().__init__()
        self.price = price

    def get(self, model, default=None):
        return self.price


def small_call(n_chars: int = 300, out: int = 100) -> Work:
    return Work(input_chars=n_chars, output_tokens=out)  # 100 tokens in + 100 out: $0.0005 at PRICES


# --- the switch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"SPACE_ID": "me/app"}, True),
        ({"FMG_PUBLIC": "1"}, True),
        ({"SPACE_ID": "me/app", "FMG_PUBLIC": "0"}, False),
        ({"FMG_PUBLIC": "yes"}, True),
    ],
)
def test_public_mode_is_on_for_spaces_or_when_asked(monkeypatch, env, on):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("FMG_PUBLIC", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert public.enabled() is on


def test_a_bad_setting_names_itself(monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "lots")
    with pytest.raises(BadInput, match="FMG_PUBLIC_CALLS_PER_MINUTE"):
        public.limits()


# --- model names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "http://127.0.0.1:9/steal",
        "https://evil.example/models/x",
        "//evil/x",
        "/etc/passwd",
        "../../etc/passwd",
        "org/../../x",
        "C:\\models\\x",
        "~/models",
        "pkg:os/../../etc/passwd",
        "model\0",
        "x" * 300,
        "a b",
    ],
)
@pytest.mark.parametrize("mode", ["0", "1"])
def test_a_visitor_never_names_a_url_or_a_path(monkeypatch, name, mode):
    monkeypatch.setenv("FMG_PUBLIC", mode)
    for provider in ("hf", "openai", "local"):
        with pytest.raises(BadInput, match=r"not a model id|offers only"):
            boundary.model(Task.COMPLETION, provider, name, own_key=True)


def test_private_mode_takes_any_model_id_and_the_owners_paths(monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC", "0")
    assert boundary.model(Task.COMPLETION, "openai", "gpt-4.1-mini") == "gpt-4.1-mini"
    assert boundary.model(Task.COMPLETION, "hf", "meta-llama/Llama-3.1-8B-Instruct:fastest")
    assert boundary.model(Task.COMPLETION, "openai", "") is None  # the provider's default
    monkeypatch.setenv("FMG_MODEL_LOCAL_ZERO_SHOT", "/models/clip")  # configured by the owner: a path is fine
    assert boundary.model(Task.ZERO_SHOT, "local", "/models/clip") == "/models/clip"


def test_public_mode_offers_only_the_owners_models(monkeypatch, tmp_path):
    monkeypatch.setenv("FMG_PUBLIC", "1")
    assert boundary.model(Task.COMPLETION, "openai", "gpt-4o-mini") == "gpt-4o-mini"  # the default
    with pytest.raises(BadInput, match=r"offers only these openai models.*gpt-4o-mini"):
        boundary.model(Task.COMPLETION, "openai", "o1-pro")
    with pytest.raises(BadInput, match="offers only these local models"):
        boundary.model(Task.COMPLETION, "local", "HuggingFaceTB/SmolLM2-1.7B-Instruct", own_key=True)
    assert boundary.model(Task.COMPLETION, "openai", "o1-pro", own_key=True) == "o1-pro"  # their key pays
    config = tmp_path / "fm-gallery.toml"
    config.write_text('[public.models.openai]\ncompletion = ["gpt-4.1-mini", "gpt-4o-mini"]\n')
    monkeypatch.setenv("FMG_CONFIG", str(config))
    assert boundary.model(Task.COMPLETION, "openai", "gpt-4.1-mini") == "gpt-4.1-mini"
    with pytest.raises(BadInput, match=re.escape("gpt-4.1-mini, gpt-4o-mini")):
        boundary.model(Task.COMPLETION, "openai", "o1-pro")


def test_public_caps_refuse_with_the_limit_and_private_mode_has_none(monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_PUBLIC_MAX_TOKENS", "300")
    assert boundary.capped("max_tokens", 300, "max_tokens") == 300
    with pytest.raises(BadInput, match=r"max_tokens is at most 300 .*got 4,096"):
        boundary.capped("max_tokens", 4096, "max_tokens")
    assert boundary.ceiling("max_tokens", 4096) == 300
    monkeypatch.setenv("FMG_PUBLIC", "0")
    assert boundary.capped("max_tokens", 4096, "max_tokens") == 4096 and boundary.ceiling("max_tokens", 4096) == 4096


# --- quotas ------------------------------------------------------------------------------------------


def test_hosted_calls_per_minute_per_visitor(public_mode, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "3")
    for _ in range(3):
        quotas.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    with pytest.raises(LimitReached, match=r"3 hosted calls in the last minute.*try again in \d+ s"):
        quotas.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    with pytest.raises(LimitReached):  # a key of their own is still rate limited
        quotas.charge(ALICE, "fake", "fake-model", small_call(), own_key=True)
    quotas.charge(BOB, "fake", "fake-model", small_call(), own_key=False)  # another visitor has their own count


def test_estimated_dollars_per_visitor_and_for_the_whole_space(public_mode, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_VISITOR_USD_PER_DAY", "0.001")  # two calls of $0.0005
    monkeypatch.setenv("FMG_PUBLIC_GLOBAL_USD_PER_DAY", "0.0015")
    assert quotas.estimate_usd("fake", "fake-model", small_call()) == pytest.approx(0.0005)
    quotas.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    quotas.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    with pytest.raises(LimitReached, match=r"up to \$0.0005, more than is left of your \$0.001 daily budget"):
        quotas.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    quotas.charge(ALICE, "fake", "fake-model", small_call(), own_key=True)  # their key: the owner pays nothing
    quotas.charge(BOB, "fake", "fake-model", small_call(), own_key=False)
    with pytest.raises(LimitReached, match=r"spent its \$0.0015 daily budget"):
        quotas.charge(BOB, "fake", "fake-model", small_call(), own_key=False)


def test_a_call_is_charged_its_worst_case(public_mode):
    long_reply = Work(input_chars=3, output_tokens=100_000)  # 1 token in, 100k out: $0.4
    with pytest.raises(LimitReached, match=r"up to \$0.4"):
        quotas.charge(ALICE, "fake", "fake-model", long_reply, own_key=False)
    assert quotas.estimate_usd("fake", "fake-model", Work(images_out=2)) == pytest.approx(0.02)
    assert quotas.estimate_usd("fake", "fake-model", Work(images_in=1)) == pytest.approx(0.0015)


def test_an_unpriced_model_is_refused_unless_the_owner_allows_it(public_mode, monkeypatch):
    with pytest.raises(LimitReached, match="fake:mystery has no price"):
        quotas.charge(ALICE, "fake", "mystery", small_call(), own_key=False)
    quotas.charge(ALICE, "fake", "mystery", small_call(), own_key=True)
    monkeypatch.setenv("FMG_PUBLIC_ALLOW_UNPRICED", "1")
    quotas.charge(ALICE, "fake", "mystery", small_call(), own_key=False)


def test_local_calls_cost_nothing_and_private_mode_counts_nothing(public_mode, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "1")
    for _ in range(5):
        quotas.charge(ALICE, "local", "anything", small_call(), own_key=False)
    monkeypatch.setenv("FMG_PUBLIC", "0")
    for _ in range(5):
        quotas.charge(ALICE, "fake", "mystery", small_call(), own_key=False)


def test_votes_per_minute(public_mode, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_VOTES_PER_MINUTE", "2")
    quotas.vote(ALICE)
    quotas.vote(ALICE)
    with pytest.raises(LimitReached, match="2 votes in the last minute"):
        quotas.vote(ALICE)
    quotas.vote(BOB)


def test_one_local_turn_per_visitor_at_a_time(public_mode):
    with quotas.local_turn(ALICE):
        with pytest.raises(LimitReached, match="previous local-model call is still running"), quotas.local_turn(ALICE):
            pass
        with quotas.local_turn(BOB):
            pass
        with quotas.local_turn(ALICE, uses_local=False):  # a hosted call needs no local turn
            pass
    with quotas.local_turn(ALICE):  # released when the first ended
        pass


def test_one_local_turn_holds_across_threads(public_mode):
    entered, refused = threading.Event(), []
    release = threading.Event()

    def hold():
        with quotas.local_turn(ALICE):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(10)
    try:
        with quotas.local_turn(ALICE):
            pass
    except LimitReached:
        refused.append(True)
    release.set()
    holder.join(10)
    assert refused == [True]


# --- Redis: replicas share one count --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(200):  # wait until it answers, not for a guessed time
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        else:
            pytest.fail("redis-server did not start")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_replicas_share_their_counts_through_redis(public_mode, monkeypatch, redis_url):
    monkeypatch.setenv("FMG_RATE_LIMIT_STORAGE", redis_url)
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "4")
    monkeypatch.setenv("FMG_PUBLIC_VISITOR_USD_PER_DAY", "1")
    one, two = quotas.Quotas(redis_url), quotas.Quotas(redis_url)  # two processes' counters
    one.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    two.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    one.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    two.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    with pytest.raises(LimitReached, match="4 hosted calls"):
        one.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    assert quotas.quotas().uri == redis_url  # the app's own counters use the setting
    with pytest.raises(LimitReached, match="4 hosted calls"):
        quotas.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    quotas.charge(BOB, "fake", "fake-model", small_call(), own_key=False)


def test_public_pages_show_no_configured_path_or_url(monkeypatch):
    from adapters.types import Caption
    from demos import compare
    from demos.widgets import picker, report

    monkeypatch.setenv("FMG_MODEL_LOCAL_CAPTIONING", "/srv/owner/models/blip-base")
    monkeypatch.setenv("FMG_MODEL_HF_CAPTIONING", "http://10.9.8.7:8080/tgi")
    result = Caption(
        text="a cat",
        provider="local",
        model="/srv/owner/models/blip-base",
        latency_s=0.1,
        usage=None,
        cost_usd=0.0,
        served_by=None,
    )
    for mode, visible in (("0", True), ("1", False)):
        monkeypatch.setenv("FMG_PUBLIC", mode)
        shown = (
            repr(compare.target_choices(Task.CAPTIONING))
            + report.stats(result)
            + repr(picker._state(Task.CAPTIONING))
            + str(report.user_error(BadInput("weights missing in /srv/owner/models/blip-base")))
        )
        assert ("/srv/owner" in shown) is visible and ("10.9.8.7" in shown) is visible
    assert "blip-base" in shown and "tgi" in shown
    assert boundary.shown_target("hf:http://10.9.8.7:8080/tgi") == "hf:tgi"
    assert boundary.shown_model("org/model") == "org/model"


def test_a_search_counts_every_vendor_request_it_makes(public_mode, monkeypatch):
    from demos import embeddings_search

    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "3")
    monkeypatch.setattr(quotas, "price_table", lambda: {"fake": AnyModel(input_per_1m=0.01)})
    fresh = uuid.uuid4().hex  # corpora no other test has indexed
    many = "\n\n".join(f"passage {fresh} number {i} about topic {i % 7}" for i in range(12))  # 3 batches of 4
    with pytest.raises(gr.Error, match="3 hosted calls in the last minute"):  # 3 batches + the query: 4
        embeddings_search.search("topic 3", many, None, 3, 120, "fake", "")
    small = f"cats purr {fresh}\n\nrockets fly"
    assert embeddings_search.search("topic 3", small, None, 1, 120, "fake", "")[0]  # 1 batch + the query: 2
    assert embeddings_search.search("again", small, None, 1, 120, "fake", "")[0]  # its index is reused: 1
    with pytest.raises(gr.Error, match="hosted calls"):
        embeddings_search.search("once more", small, None, 1, 120, "fake", "")


def test_an_over_quota_visitors_image_is_not_even_decoded(public_mode, monkeypatch, tmp_path):
    from demos import zero_shot

    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "1")
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 100)
    with pytest.raises(gr.Error, match=r"corrupt|not an image"):  # within quota: the image is checked
        zero_shot.classify(str(corrupt), "a cat, a dog", "fake", "")
    quotas.charge(ALICE, "fake", "fake-model", small_call(), own_key=False)
    monkeypatch.setattr("services.visitors.current", lambda request: ALICE)
    with pytest.raises(gr.Error, match="1 hosted calls in the last minute"):
        zero_shot.classify(str(corrupt), "a cat, a dog", "fake", "")
