"""The Compare tab: targets run at once with their own deadlines, chat streams into every column,
errors stay in their cell, and blind mode names nothing until the vote (layer 1 and end to end)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import re
import threading
import time
import uuid

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from adapters import registry
from adapters.errors import BadInput
from adapters.registry import Provider
from adapters.types import Task
from demos import compare
from demos.widgets.standalone import standalone
from services import comparisons as comparison
from services.comparisons import Form, fanout
from services.comparisons.fanout import Outcome, Target
from tests.fakes import providers as fake
from tests.fakes import timed

SLACK_S = 0.25  # thread start-up and scheduling on a busy 2-core machine


@pytest.fixture(autouse=True)
def leaderboard_db(tmp_path, monkeypatch):
    path = tmp_path / "leaderboard.sqlite3"
    monkeypatch.setenv("FMG_LEADERBOARD", str(path))
    return path


@pytest.fixture
def timed_providers():
    """Register fakes of known latency by name; unregistered afterwards."""
    names = []

    def add(name: str, delay_s: float) -> str:
        registry.register(timed.provider(name, delay_s))
        names.append(name)
        return name

    yield add
    for name in names:
        registry.unregister(name)


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (50, 40), "blue").save(path)
    return str(path)


def finished(task: Task, targets, form: Form, **kw) -> comparison.Comparison:
    result = None
    for result in comparison.run(task, targets, form, **kw):  # noqa: B007 - keeps the last frame
        pass
    return result


# --- concurrency ---------------------------------------------------------------------------------


def test_a_comparison_takes_about_the_slowest_target_not_the_sum(timed_providers):
    delays = {"tortoise": 0.8, "hare": 0.2, "fox": 0.4}
    names = [timed_providers(n, d) for n, d in delays.items()]
    started = time.perf_counter()
    result = finished(Task.COMPLETION, names, Form(prompt="one two three"))
    wall = time.perf_counter() - started
    assert [o.ok for o in result.outcomes] == [True, True, True]
    assert [result.outputs[i] for i in range(3)] == ["echo: one two three"] * 3
    assert 0.8 <= wall < 0.8 + SLACK_S < sum(delays.values())
    elapsed = {o.target.provider: o.elapsed_s for o in result.outcomes}
    assert all(delays[name] <= elapsed[name] <= wall for name in delays)  # each its own time, not the slowest's
    assert elapsed["hare"] < elapsed["fox"] < elapsed["tortoise"]


@pytest.mark.parametrize("task", [Task.ZERO_SHOT, Task.CAPTIONING, Task.IMAGE_GENERATION])
def test_every_task_runs_its_targets_at_once(timed_providers, image_file, task):
    names = [timed_providers("tortoise", 0.6), timed_providers("hare", 0.3), timed_providers("fox", 0.45)]
    form = Form(prompt="a fox", image=image_file, labels="a cat, a dog", width=64, height=64)
    started = time.perf_counter()
    result = finished(task, names, form)
    assert time.perf_counter() - started < 0.6 + SLACK_S < 1.35
    assert all(o.ok for o in result.outcomes), [o.error for o in result.outcomes]


def test_four_targets_take_about_as_long_as_the_slowest_alone(timed_providers, capsys):
    """The closing note's measurement: 4 targets (0.05/0.1/0.2/0.4 s) against the slowest alone."""
    names = [timed_providers(f"t{int(d * 100)}", d) for d in (0.05, 0.1, 0.2, 0.4)]
    form = Form(prompt="measure the wall time")
    slowest = registry.get(Task.COMPLETION, "t40")
    started = time.perf_counter()
    slowest.complete([{"role": "user", "content": form.prompt}])
    alone = time.perf_counter() - started
    started = time.perf_counter()
    result = finished(Task.COMPLETION, names, form)
    wall = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\n4-target comparison: {wall:.3f} s (fan-out {result.wall_s:.3f} s); slowest target alone: "
            f"{alone:.3f} s; sum of the four: 0.750 s"
        )
    assert all(o.ok for o in result.outcomes)
    assert wall < alone + SLACK_S


def test_a_hanging_target_times_out_alone(timed_providers, monkeypatch, image_file):
    monkeypatch.setenv("FMG_COMPARE_TIMEOUT_S", "0.5")
    names = [timed_providers("hare", 0.05), timed_providers("sloth", 30.0), timed_providers("fox", 0.1)]
    started = time.perf_counter()
    result = finished(Task.CAPTIONING, names, Form(image=image_file))
    wall = time.perf_counter() - started
    assert 0.5 <= wall < 0.5 + SLACK_S
    hare, sloth, fox = result.outcomes
    assert hare.ok and fox.ok and hare.value.output == "a 50x40 image"
    assert sloth.timed_out and "sloth:sloth-model did not finish within 0.5 s" in sloth.error
    assert "timed out" in compare.chart(result) and "did not finish" in compare.cell_stats(result, 1)


def test_an_abandoned_stream_stops_and_its_late_events_are_ignored():
    sent = []

    def call(target, emit):
        for i in range(100):
            time.sleep(0.02)
            emit(f"{target.provider}{i} ")
            sent.append(i)
        return "done"

    events = list(fanout.stream([Target("slow")], call, timeout_s=0.15))
    assert isinstance(events[-1][1], Outcome) and events[-1][1].timed_out
    count = len(sent)
    time.sleep(0.1)
    assert len(sent) <= count + 1 and len(sent) < 20  # stopped at its next delta
    assert all(i == 0 for i, _ in events) and len([e for _, e in events if isinstance(e, Outcome)]) == 1


def test_streaming_interleaves_deltas_from_every_target(timed_providers):
    names = [timed_providers("tortoise", 0.6), timed_providers("hare", 0.3), timed_providers("fox", 0.45)]
    targets = [Target(n) for n in names]

    def call(target, emit):
        stream = registry.get(Task.COMPLETION, target.provider).stream([{"role": "user", "content": "a b c d e f"}])
        for delta in stream:
            emit(delta)
        return stream.result

    events = list(fanout.stream(targets, call, timeout_s=5))
    deltas = [i for i, e in events if isinstance(e, str)]
    first_done = next(n for n, (_, e) in enumerate(events) if isinstance(e, Outcome))
    assert {i for i, e in events[:first_done] if isinstance(e, str)} == {0, 1, 2}  # all stream before any ends
    assert sum(a != b for a, b in itertools.pairwise(deltas)) >= 6  # columns alternate, not one after another
    texts = ["".join(e for j, e in events if j == i and isinstance(e, str)) for i in range(3)]
    assert texts == ["echo: a b c d e f"] * 3
    assert [e.value.text for _, e in events if isinstance(e, Outcome)] == texts


def test_the_page_handler_streams_every_column(timed_providers):
    names = [timed_providers("tortoise", 0.4), timed_providers("hare", 0.2)]
    frames = list(
        compare.compare_page(
            "completion", names, "one two three four", None, "", "", 3, 32, 0.7, 1, 64, 64, -1, False, "", None
        )
    )
    texts = [(frame[2]["value"], frame[10]["value"]) for frame in frames]  # slot 0 and slot 1 text boxes
    assert len(frames) >= 6
    assert any(0 < len(a) < len("echo: one two three four") and len(b) > 0 for a, b in texts)  # both mid-stream
    assert texts[-1] == ("echo: one two three four",) * 2
    assert frames[-1][1] == "**tortoise:tortoise-model**" and "first token" in frames[-1][6]


# --- every task, errors per cell -----------------------------------------------------------------


@pytest.mark.parametrize(
    "task, form, check",
    [
        (Task.COMPLETION, Form(prompt="hi there"), lambda out: out == "echo: hi there"),
        (Task.ZERO_SHOT, Form(labels="a cat, a dog"), lambda out: set(out) == {"a cat", "a dog"}),
        (Task.CAPTIONING, Form(prompt="look:"), lambda out: out == "look: a 50x40 image"),
        (Task.IMAGE_GENERATION, Form(prompt="a fox", width=64, height=64, seed=7), lambda out: out.size == (64, 64)),
        (
            Task.EMBEDDINGS,
            Form(prompt="rockets", corpus_text="cats purr\n\nrockets fly"),
            lambda out: out[0][2] == "rockets fly",
        ),
    ],
)
def test_every_task_compares_and_renders(fake_provider, image_file, task, form, check):
    form = dataclasses.replace(form, image=image_file)
    result = finished(task, ["fake", "fake:other-model"], form)
    assert [o.ok for o in result.outcomes] == [True, True]
    assert all(check(out) for out in result.outputs)
    assert [t.name for t in result.targets] == ["fake:fake-1", "fake:other-model"]
    frame = compare.page(result)
    assert frame[0]["visible"] and frame[8]["visible"] and not frame[16]["visible"]  # two of six columns shown
    summary = compare.summary(result)
    json.dumps(summary)  # JSON-able
    assert [t["name"] for t in summary["targets"]] == ["fake:fake-1", "fake:other-model"]


def test_image_generation_says_which_targets_take_no_seed(fake_provider):
    """Like the Image generation tab: "this provider takes no seed", never "seed None"."""

    class Seedless(fake.FakeImageGenerator):
        takes_seed = False  # as OpenAI's image models

    registry.register(dataclasses.replace(fake.provider(), name="seedless", adapters={Task.IMAGE_GENERATION: Seedless}))
    try:
        form = Form(prompt="a fox", width=64, height=64, seed=7)
        result = finished(Task.IMAGE_GENERATION, ["fake", "seedless"], form)
    finally:
        registry.unregister("seedless")
    assert [o.ok for o in result.outcomes] == [True, True]
    assert [o.value.note for o in result.outcomes] == ["seed 7", "this provider takes no seed"]
    assert "seed None" not in compare.cell_stats(result, 1) and "takes no seed" in compare.cell_stats(result, 1)


def test_a_failing_target_shows_its_error_while_the_others_succeed(fake_provider):
    result = finished(Task.COMPLETION, ["fake", "fake:needs-key", "fake:other"], Form(prompt="hello"))
    ok, missing, other = result.outcomes
    assert ok.ok and other.ok and result.outputs[0] == "echo: hello"
    assert "Set FAKE_API_KEY" in missing.error
    assert "Set FAKE_API_KEY" in compare.cell_stats(result, 1)
    summary = compare.summary(result)
    assert [t["error"] is None for t in summary["targets"]] == [True, False, True]
    assert "—" in compare.chart(result)  # no cost bar for the failed one


def test_a_session_key_goes_only_to_its_vendor(fake_provider, timed_providers):
    timed_providers("other", 0.0)
    form = Form(prompt="hello")
    mine = finished(
        Task.COMPLETION, ["fake:needs-key", "other:needs-key"], form, api_key="sk-test-123456", key_provider="fake"
    )
    assert mine.outcomes[0].ok and "Set FAKE_API_KEY" in mine.outcomes[1].error
    assert "sk-test-123456" not in json.dumps(compare.summary(mine))
    with pytest.raises(BadInput, match="which vendor"):
        finished(Task.COMPLETION, ["fake", "other"], form, api_key="sk-test-123456", key_provider="")


@pytest.mark.parametrize(
    "targets, form, match",
    [
        (["fake"], Form(prompt="hi"), "Pick 2 to 6"),
        (["fake"] * 7, Form(prompt="hi"), "Pick 2 to 6"),
        (["fake", "fake:fake-1"], Form(prompt="hi"), "listed twice"),
        (["fake", "fake:b"], Form(prompt="  "), "prompt is empty"),
    ],
)
def test_bad_input_is_one_clear_error_before_anything_runs(fake_provider, targets, form, match):
    with pytest.raises(BadInput, match=match):
        finished(Task.COMPLETION, targets, form)


def test_unknown_provider_is_an_error_in_its_own_cell(fake_provider):
    result = finished(Task.COMPLETION, ["fake", "nosuch:model"], Form(prompt="hello"))
    assert result.outcomes[0].ok and "Unknown provider 'nosuch'" in result.outcomes[1].error


# --- end to end through gradio_client: the API, and the bytes the page receives ------------------

SECRET_NAMES = ("zephyrine", "quokkatron")  # provider names that appear nowhere else


@pytest.fixture(scope="module")
def app():
    """The tab alone, launched once for these tests (the leaderboard path is read per call, so
    each test still gets its own database)."""
    providers = [fake.provider(), *(timed.provider(name, 0.05) for name in SECRET_NAMES)]
    for provider in providers:
        registry.register(provider)
    demo = standalone(compare)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield demo
    finally:
        demo.close()
        for provider in providers:
            registry.unregister(provider.name)


def compare_args(task="completion", targets=SECRET_NAMES, prompt="tell me a joke", blind=True, **kw):
    args = {
        "task": task,
        "targets": list(targets),
        "prompt": prompt,
        "image": None,
        "labels": "a cat, a dog",
        "corpus_text": "cats purr\n\nrockets fly",
        "top_k": 2,
        "max_tokens": 32,
        "temperature": 0.7,
        "steps": 1,
        "width": 64,
        "height": 64,
        "seed": -1,
        "blind": blind,
        "api_key": "",
        "key_provider": "",
        "edit_mode": "",
        "strength": 0.6,
    }
    return args | kw


def leaks(text: str) -> list[str]:
    return [n for n in SECRET_NAMES if n in text.lower()]


def test_blind_api_names_nothing_until_the_vote_then_reveals(app):
    client = Client(app.local_url, verbose=False)
    result = client.predict(**compare_args(), api_name="/compare")
    assert leaks(json.dumps(result)) == []
    assert [t["name"] for t in result["targets"]] == ["Model A", "Model B"] and result["names_hidden"]
    assert all("cost_usd" not in t for t in result["targets"])
    assert client.predict("completion", api_name="/leaderboard") == []
    with pytest.raises(AppError, match="Vote for one of A, B"):
        client.predict(result["comparison_id"], "C", api_name="/vote")
    revealed = client.predict(result["comparison_id"], "B", api_name="/vote")
    names = [t["name"] for t in revealed["targets"]]
    assert sorted(n.split(":")[0] for n in names) == sorted(SECRET_NAMES)
    assert [t["label"] for t in revealed["targets"]] == ["Model A", "Model B"]
    board = client.predict("completion", api_name="/leaderboard")
    assert board[0]["target"] == names[1] and board[0]["rating"] == 1016.0 and board[0]["votes"] == 1
    assert revealed["leaderboard"] == board
    with pytest.raises(AppError, match="not waiting for your vote"):
        client.predict(result["comparison_id"], "A", api_name="/vote")


def test_blind_page_stream_names_nothing_until_the_vote(app):
    session = uuid.uuid4().hex
    page = page_call(app, "compare_page", list(compare_args().values()), session)
    assert "Model A" in page and "Model B" in page and "Vote for the best answer" in page
    assert leaks(page) == []
    revealed = page_call(app, "vote_tie", [None], session)  # the comparison id stays in the session's state
    assert sorted(leaks(revealed)) == sorted(SECRET_NAMES) and "Tie recorded" in revealed
    assert re.search(r"zephyrine:zephyrine-model\W+1000\.0\W+1\W+0\W+1\W+0", revealed)  # a tie at equal ratings


def test_non_blind_api_names_targets_and_hands_out_images(app):
    client = Client(app.local_url, verbose=False)
    result = client.predict(
        **compare_args("image-generation", ["fake", "fake:other"], "a fox", blind=False), api_name="/compare"
    )
    assert result["comparison_id"] is None and not result["names_hidden"]
    assert [t["name"] for t in result["targets"]] == ["fake:fake-1", "fake:other"]
    for target in result["targets"]:
        with Image.open(target["output"]) as image:  # downloaded by gradio_client
            assert image.size == (64, 64)
        assert target["cost_usd"] is None and target["note"].startswith("seed ")
    with pytest.raises(AppError, match="not waiting for your vote"):
        client.predict("no-such-id", "A", api_name="/vote")


def test_api_compares_an_uploaded_image_and_reports_errors_per_target(app, image_file):
    client = Client(app.local_url, verbose=False)
    result = client.predict(
        **compare_args("zero-shot", ["fake", "fake:needs-key"], "", blind=False, image=handle_file(image_file)),
        api_name="/compare",
    )
    ok, failed = result["targets"]
    assert set(ok["output"]) == {"a cat", "a dog"} and ok["error"] is None
    assert failed["output"] is None and "FAKE_API_KEY" in failed["error"]
    with pytest.raises(AppError, match="Pick 2 to 6"):
        client.predict(**compare_args(targets=["fake"]), api_name="/compare")


def page_call(demo, fn_name: str, data: list, session: str) -> str:
    """Call a page-only listener the way the browser does and return the raw event stream, i.e.
    every byte the page receives for it."""
    fn_index = next(i for i, fn in demo.fns.items() if fn.name == fn_name)
    with httpx.Client(base_url=demo.local_url, timeout=30) as http:
        joined = http.post(
            "gradio_api/queue/join",
            json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None},
        )
        joined.raise_for_status()
        lines = []
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as response:
            for line in response.iter_lines():
                lines.append(line)
                if "process_completed" in line:
                    break
    return "\n".join(lines)


@pytest.mark.parametrize("task", [t.value for t in Task])
def test_the_page_renders_every_task(app, image_file, task):
    with httpx.Client(base_url=app.local_url, timeout=30) as http, open(image_file, "rb") as f:
        uploaded = http.post("gradio_api/upload", files={"files": f}).json()[0]
    image = {"path": uploaded, "meta": {"_type": "gradio.FileData"}, "orig_name": "photo.png"}
    args = compare_args(task, ["fake", "fake:needs-key"], "a fox", blind=False, image=image)
    page = page_call(app, "compare_page", list(args.values()), uuid.uuid4().hex)
    done = json.loads(page.rsplit("data: ", 1)[1])
    assert done["msg"] == "process_completed" and done["success"], done.get("output")
    assert "fake:fake-1" in page and "Set FAKE_API_KEY" in page


# --- the run log ---------------------------------------------------------------------------------


def test_every_target_is_logged_without_the_key_and_reopens_the_comparison(fake_provider, image_file):
    from services import run_log

    finished(
        Task.ZERO_SHOT,
        ["fake", "fake:needs-key"],
        Form(image=image_file, labels="a cat, a dog"),
        api_key="sk-never-logged-42",
        key_provider="other",
    )
    deadline = time.monotonic() + 5  # each target logs from its own thread, which may end just after
    while len(runs := run_log.query(tab="compare")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted((r["model"], r["error"] is None) for r in runs) == [("fake-1", True), ("needs-key", False)]
    assert all(r["provider"] == "fake" and r["task"] == "zero-shot" for r in runs)
    assert all(r["params"]["targets"] == ["fake:fake-1", "fake:needs-key"] for r in runs)
    assert "sk-never-logged-42" not in json.dumps(run_log.query(limit=None))

    values = dict(zip(compare.LAYOUT + compare.REFILLED, compare.reopen(runs[0]), strict=False))
    assert values["task"] == "zero-shot" and values["targets"]["value"] == ["fake:fake-1", "fake:needs-key"]
    assert values["labels"]["value"] == "a cat, a dog" and values["image_row"]["visible"]
    assert values["image"].size == (50, 40) and values["blind"] is False


def test_history_shows_no_run_of_a_blind_comparison_until_the_vote(timed_providers):
    from demos import history

    a, b = timed_providers("secret-alpha", 0.01), timed_providers("secret-beta", 0.01)
    done = finished(Task.COMPLETION, [a, b], Form(prompt="hello"), blind=True)
    ids = [r["id"] for r in run_log_runs()]
    assert len(ids) == 2  # both runs are logged, and the log's owner can read them

    def shown() -> str:
        exports = [pathlib.Path(history.export(fmt)).read_text(encoding="utf-8") for fmt in history.FORMATS]
        searched = [history.history("", "", text, False) for text in ("secret", "hello", "")]
        return (
            repr(searched) + repr([history.detail(i) for i in ids]) + "".join(exports) + repr(history.filter_choices())
        )

    before = shown()
    assert "secret-alpha" not in before and "secret-beta" not in before
    assert not any(i in before for i in ids) and done.id not in before

    comparison.vote(done.id, "tie")
    after = shown()
    assert "secret-alpha" in after and "secret-beta" in after and all(i in after for i in ids)


def test_a_running_blind_comparison_shows_no_finished_target(timed_providers):
    """A target's run is logged when it ends, before the comparison ends: it must not show then."""
    from demos import history

    release = threading.Event()

    class Held(fake.FakeCompleter):
        def _stream(self, messages, params):
            release.wait(30)
            yield from super()._stream(messages, params)

    registry.register(Provider("held-secret", "Held", {Task.COMPLETION: Held}, models=lambda task: "h1"))
    quick = timed_providers("quick-secret", 0.0)
    try:
        frames = comparison.run(Task.COMPLETION, [quick, "held-secret"], Form(prompt="hello"), blind=True)
        for frame in frames:
            if any(o is not None for o in frame.outcomes):
                break  # the quick target has ended and logged its run; the held one is still running
        assert len(run_log_runs()) == 1
        seen = repr(history.history("", "", "", False)) + repr(history.filter_choices())
        assert "quick-secret" not in seen
        release.set()
        for frame in frames:  # noqa: B007 - keeps the last frame
            pass
        assert frame.awaits_vote and "quick-secret" not in repr(history.history("", "", "", False))
    finally:
        release.set()
        registry.unregister("held-secret")


def test_a_blind_page_shows_no_time_tokens_or_cost_until_the_vote(timed_providers):
    """Each target's latency, tokens and cost would tell the models apart."""
    a, b = timed_providers("alpha", 0.01), timed_providers("beta", 0.05)
    done = finished(Task.COMPLETION, [a, b], Form(prompt="one two three"), blind=True)
    shown = [compare.cell_stats(done, i) for i in range(2)] + [compare.chart(done), compare.status(done)]
    assert shown[:2] == [compare.HIDDEN_STATS] * 2 and shown[2] == ""
    assert "slowest" not in shown[3] and not re.search(r"\d+ (in|out)", " ".join(shown))
    comparison.vote(done.id, "A")
    revealed = [compare.cell_stats(done, i) for i in range(2)]
    assert all(re.search(r"\d+ in / \d+ out tokens", s) for s in revealed) and "alpha" in compare.chart(done)


def run_log_runs():
    from services import run_log

    return run_log.query(tab="compare")


def test_an_edit_goes_to_every_target_and_one_without_the_mode_says_why(tmp_path):
    """Image generation with an image and an edit mode compares edits (the editing fakes of
    tests/test_image_editing.py: "full" does every mode, "i2i" only image to image)."""
    from services import comparisons as cmp_service
    from tests.test_image_editing import FILL, FullEditor, ImageToImageOnly

    made = [
        Provider("full", "Full", {Task.IMAGE_GENERATION: FullEditor}, models=lambda task: "m"),
        Provider("i2i", "I2I", {Task.IMAGE_GENERATION: ImageToImageOnly}, models=lambda task: "m"),
    ]
    for provider in made:
        registry.register(provider)
    try:
        source = tmp_path / "photo.png"
        Image.new("RGB", (96, 64), "white").save(source)
        form = cmp_service.Form(prompt="", image=str(source), edit_mode="upscale", seed=3)
        *_, last = cmp_service.run(Task.IMAGE_GENERATION, ["full", "i2i"], form, blind=False)
        full, i2i = last.outcomes
        assert full.ok and full.value.output.size == (192, 128) and "Upscaling" in full.value.note
        assert full.value.snippet.startswith("# No program yet for image edits (upscale)")  # from adapters.snippets
        assert not i2i.ok and "cannot do upscaling" in i2i.error
        form = cmp_service.Form(prompt="a red barn", image=str(source), edit_mode="image-to-image", seed=3)
        *_, last = cmp_service.run(Task.IMAGE_GENERATION, ["full", "i2i"], form, blind=False)
        assert all(o.ok and o.value.output.getpixel((0, 0)) == FILL for o in last.outcomes)
        with pytest.raises(BadInput, match="inpaint in the Image generation tab"):
            cmp_service.prepare(
                Task.IMAGE_GENERATION, cmp_service.Form(prompt="x", image=str(source), edit_mode="inpaint")
            )
    finally:
        for provider in made:
            registry.unregister(provider.name)


def test_a_blind_failed_target_hides_its_error_until_the_vote_and_is_not_rated(fake_provider, leaderboard_db):
    """An error names its vendor ("Set FAKE_API_KEY"): before the vote the page and the API say
    only that the column failed; after it, the failed target gets no rating (the voter never
    saw its answer), while the two that answered are rated."""
    from services.comparisons import leaderboard

    targets = ["fake", "fake:needs-key", "fake:other"]
    done = finished(Task.COMPLETION, targets, Form(prompt="hello"), blind=True)
    failed = next(i for i, o in enumerate(done.outcomes) if not o.ok)  # blind columns are shuffled
    assert "needs-key" in done.targets[failed].name
    before = compare.cell_stats(done, failed) + json.dumps(compare.summary(done))
    assert "FAKE_API_KEY" not in before and compare.HIDDEN_ERROR in before
    comparison.vote(done.id, done.letter(next(i for i in range(3) if i != failed)))
    rated = {s.target for s in leaderboard.standings(Task.COMPLETION)}
    assert rated == {"fake:fake-1", "fake:other"}  # not fake:needs-key
    assert "FAKE_API_KEY" in compare.cell_stats(done, failed)  # revealed after the vote
