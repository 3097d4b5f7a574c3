"""The Evaluate tab, its `/evaluate` endpoints and the command line, on the oracle provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client

from adapters import registry
from demos import evaluate
from demos.evaluation import chat
from services import quotas
from services.evaluation import __main__ as cli
from services.evaluation import store
from tests.fakes import oracle

SPEC = {
    "dataset": "arithmetic",
    "targets": ["oracle:right", "oracle:wrong"],
    "variants": [{"name": "direct"}, {"name": "cot", "chain_of_thought": True}],
}


@pytest.fixture(autouse=True)
def oracle_provider():
    registry.register(oracle.provider())
    yield
    registry.unregister(oracle.NAME)


def form(**changes):
    values = {
        "dataset": "arithmetic",
        "upload": None,
        "targets": "oracle:right\noracle:wrong",
        "variants_json": json.dumps(SPEC["variants"]),
        "scorer": chat.SCORERS[0],
        "judge": "",
        "rubric": "",
        "max_tokens": 64,
        "temperature": 0.0,
        "cost_cap": None,
        "concurrency": 4,
        "embedder": "",
    }
    return list({**values, **changes}.values())


def test_the_page_runs_the_form_and_shows_matrix_chart_drill_down_exports_and_program():
    *_, last = chat.run(*form())
    summary, matrix, chart, drill, files, program = last
    assert "**Done**" in summary and "160 calls" in summary
    by_row = {(row[0], row[1]): row for row in matrix}
    assert by_row["direct", "oracle:right"][2] == "1.000" and by_row["cot", "oracle:wrong"][2] == "0.000"
    assert set(chart["target"]) == {"oracle:right", "oracle:wrong"} and len(drill) == 160
    csv_text = Path(files[0]).read_text(encoding="utf-8")
    assert csv_text.startswith("item,") and len(csv_text.splitlines()) == 161
    assert "specs.from_dict(" in program and '"oracle:right"' in program
    compile(program, "program", "exec")


def test_an_uploaded_csv_is_evaluated(tmp_path):
    data = tmp_path / "mine.csv"
    data.write_text("question,answer\nA baker makes 14 trays of muffins with 12 muffins on each tray. "
                    "She sells 131 muffins. How many muffins are left?,37\n", encoding="utf-8")  # fmt: skip
    upload = form(dataset=chat.UPLOAD, upload=str(data), targets="oracle:right", scorer="numeric")
    *_, last = chat.run(*upload)
    assert last[1][0][2] == "1.000" and last[1][0][4] == 1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"variants_json": "[{"}, "not valid JSON"),
        ({"targets": ""}, "Pick 1 to 6 targets"),
        ({"dataset": chat.UPLOAD}, "Upload a CSV or JSONL file"),
        ({"scorer": "judge"}, "needs a judge target"),
    ],
)
def test_a_bad_form_says_what_to_fix(changes, message):
    import gradio as gr

    with pytest.raises(gr.Error, match=message):
        chat.estimate(*form(**changes))


def test_the_estimate_counts_calls_before_anything_runs():
    oracle.calls.clear()
    text = chat.estimate(*form())
    assert text.startswith("160 calls at most") and "no list price for oracle:right, oracle:wrong" in text
    assert oracle.calls == []


@pytest.mark.e2e
def test_the_api_runs_a_json_spec_and_estimates_it():
    page = evaluate.standalone.standalone(evaluate)
    page.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(page.local_url, verbose=False)
        worst = client.predict(json.dumps(SPEC), api_name="/evaluate_estimate")
        assert worst["calls"] == 160 and worst["usd"] is None
        result = client.predict(json.dumps(SPEC), api_name="/evaluate")
        assert result["status"] == "done" and len(result["rows"]) == 4
        assert {r["target"]: r["score"] for r in result["rows"] if r["variant"] == "direct"} == {
            "oracle:right": "1.000",
            "oracle:wrong": "0.000",
        }
        with pytest.raises(Exception, match="Unknown spec fields"):
            client.predict(json.dumps({**SPEC, "shell": "rm -rf /"}), api_name="/evaluate")
    finally:
        page.close()


def test_public_mode_caps_the_calls_of_one_evaluation(monkeypatch):
    import gradio as gr

    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_PUBLIC_EVALUATION_CALLS", "50")
    with pytest.raises(gr.Error, match="An evaluation's model calls is at most 50"):
        chat.evaluate_api(json.dumps(SPEC))


def test_the_command_line_runs_a_spec_gates_on_a_score_and_resumes(tmp_path, capsys):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({**SPEC, "targets": ["oracle:right"]}), encoding="utf-8")
    out = tmp_path / "cells.jsonl"
    assert cli.main([str(spec_file), "--jsonl", str(out), "--min-score", "0.9"]) == 0
    printed = capsys.readouterr().out
    assert "oracle:right" in printed and "1.000" in printed and len(out.read_text().splitlines()) == 80
    spec_file.write_text(json.dumps(SPEC), encoding="utf-8")
    assert cli.main([str(spec_file), "--min-score", "0.9"]) == 1  # oracle:wrong scores 0
    evaluation_id = printed.split("evaluation ")[1].split(":")[0]
    assert cli.main(["--resume", evaluation_id]) == 0
    assert "cache hits 0/0" in capsys.readouterr().out  # every cell was stored already
    assert cli.main([str(tmp_path / "absent.json")]) == 2
    assert store.evaluation(evaluation_id, None)["status"] == "done"


def test_the_search_section_scores_each_embedder(fake_provider):
    from demos.evaluation import search

    rows, summary = search.evaluate("search", "fake\nnope", 5, False)
    assert rows[0][0] == "fake" and rows[0][3].startswith("0.") and "queries over" in summary
    assert "Unknown provider" in rows[1][-1]


def test_a_stopped_evaluation_resumes_from_the_page_only_for_its_owner(monkeypatch):
    from services.evaluation.engine import Evaluation

    spec = chat.spec_from_form(*form(targets="oracle:right"))
    first = Evaluation(spec)
    first.on_progress = lambda e: e.cancel() if e.done >= 3 else None
    first.run()
    assert first.status == "cancelled"
    *_, last = chat.resume(first.id)
    assert "**Done**" in last[0] and len(last[3]) == 80
    monkeypatch.setenv("FMG_PUBLIC", "1")  # a visitor is not the owner who ran it
    import gradio as gr

    with pytest.raises(gr.Error, match="no evaluation of yours"):
        list(chat.resume(first.id))


def test_the_similarity_scorer_embeds_output_and_reference(fake_provider):
    """The fake embedder is a bag of words: an answer naming the reference's number is similar to it,
    one naming another number is not."""
    right = form(targets="oracle:right\noracle:wrong", scorer="similarity", embedder="fake")
    *_, last = chat.run(*right)
    scores = {(row[0], row[1]): float(row[2]) for row in last[1]}
    assert scores["direct", "oracle:right"] > scores["direct", "oracle:wrong"] + 0.2  # (hash collisions: not 0)
    with pytest.raises(gr_error(), match="needs an embedder"):
        chat.estimate(*form(scorer="similarity"))


def gr_error():
    import gradio as gr

    return gr.Error


def test_the_images_section_scores_zero_shot_on_the_digits(fake_provider):
    from demos.evaluation import images

    table, notes = images.zero_shot(images.DIGITS, None, 4, "fake")
    assert table[0][0] == "fake" and table[0][3] == 40 and "40 images, 10 labels, chance 0.10" in notes
    assert "| actual \\ said |" in notes
    with pytest.raises(gr_error(), match="nothing to probe"):
        images.probe(images.DIGITS, None, 4, "fake", 2)


def test_the_images_section_evaluates_captioners_and_generators(fake_provider, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from demos.evaluation import images
    from tests.fixtures import tiny_models

    monkeypatch.setenv("FMG_MODEL_LOCAL_ZERO_SHOT", str(tiny_models.save_tiny_clip(tmp_path / "clip")))
    table, said = images.captions("fake", "fake", "local")
    assert [row[0] for row in table] == ["fake", "reference captions"] and list(said.columns)[-1] == "fake"
    assert said["fake"].str.startswith("a ").all()
    table, gallery = images.generation("a fox\na barn", "fake", "local", 1)
    assert table[0][0] == "fake" and table[0][2] == 2 and len(gallery) == 2


def test_a_public_visitor_cannot_make_the_server_decode_a_huge_image_set(tmp_path, monkeypatch, fake_provider):
    import io
    import zipfile

    from PIL import Image

    from demos.evaluation import images

    data = io.BytesIO()
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiny, format="PNG")
    with zipfile.ZipFile(data, "w") as archive:
        for n in range(30):
            archive.writestr(f"{'cat' if n % 2 else 'dog'}/{n}.png", tiny.getvalue())
    upload = tmp_path / "set.zip"
    upload.write_bytes(data.getvalue())
    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_PUBLIC_EVALUATION_CALLS", "20")
    decoded = []
    monkeypatch.setattr(images.image_sets, "from_zip", lambda *a, **k: decoded.append(1))
    with pytest.raises(gr_error(), match="at most 20"):
        images.zero_shot(images.UPLOAD, str(upload), 4, "fake")
    assert decoded == []  # refused before a single image was decoded


def blank_zip(tmp_path, side: int, count: int):
    """A small zip of `count` blank side x side PNGs (one PNG, compressed to a few KB, stored many times)."""
    import io
    import zipfile

    from PIL import Image

    png = io.BytesIO()
    Image.new("L", (side, side), 255).save(png, format="PNG")
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(count):
            archive.writestr(f"{'cat' if n % 2 else 'dog'}/{n}.png", png.getvalue())
    upload = tmp_path / f"blank-{side}-{count}.zip"
    upload.write_bytes(data.getvalue())
    return str(upload)


@pytest.fixture
def counted_decodes(monkeypatch, fake_provider):
    from services.evaluation import image_sets

    decoded = []
    original = image_sets._decoded
    monkeypatch.setattr(image_sets, "_decoded", lambda rel, read: decoded.append(rel) or original(rel, read))
    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setattr(quotas, "_quotas", None)
    monkeypatch.setattr(quotas, "price_table", lambda: {"fake": quotas_any_price()})
    return decoded


class quotas_any_price(dict):
    def get(self, model, default=None):
        return {"input_per_1m": 0.001, "output_per_1m": 0.001}


def test_pixels_are_budgeted_from_the_headers_before_any_image_is_decoded(tmp_path, monkeypatch, counted_decodes):
    from demos.evaluation import images

    monkeypatch.setenv("FMG_PUBLIC_DECODE_MEGAPIXELS", "100")
    with pytest.raises(gr_error(), match="hold 144 megapixels; one request on this public Space decodes at most 100"):
        images.zero_shot(images.UPLOAD, blank_zip(tmp_path, 6000, 4), 4, "fake")
    assert counted_decodes == []


def test_a_visitors_decoded_pixels_are_budgeted_per_minute(tmp_path, monkeypatch, counted_decodes):
    from demos.evaluation import images

    monkeypatch.setenv("FMG_PUBLIC_DECODE_MEGAPIXELS_PER_MINUTE", "10")
    upload = blank_zip(tmp_path, 2000, 2)  # 8 megapixels
    images.zero_shot(images.UPLOAD, upload, 4, "fake")
    assert len(counted_decodes) == 2
    with pytest.raises(gr_error(), match="10 megapixels decoded in the last minute"):
        images.zero_shot(images.UPLOAD, upload, 4, "fake")
    assert len(counted_decodes) == 2


def test_targets_and_quota_are_checked_before_the_set_is_read(tmp_path, monkeypatch, counted_decodes):
    from demos.evaluation import images

    upload = blank_zip(tmp_path, 64, 4)
    with pytest.raises(gr_error(), match="None of the targets can run, so nothing was read"):
        images.zero_shot(images.UPLOAD, upload, 4, "no-such-provider")
    monkeypatch.setattr(quotas, "price_table", lambda: {"openai": {}})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "1")
    monkeypatch.setattr(quotas.Quotas, "check", lambda self, visitor: (_ for _ in ()).throw(quotas.LimitReached("no")))
    with pytest.raises(gr_error()):
        images.zero_shot(images.UPLOAD, upload, 4, "openai")
    assert counted_decodes == []


def test_heavy_jobs_run_one_per_visitor_and_a_few_in_all(monkeypatch):
    from services import heavy
    from services.visitors import Visitor

    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_PUBLIC_HEAVY_JOBS", "2")
    ann, bo, cy = Visitor("addr:1"), Visitor("addr:2"), Visitor("addr:3")
    with heavy.slot(ann, "image evaluation"):
        with pytest.raises(quotas.LimitReached, match="Your image evaluation is still running"), heavy.slot(ann, "x"):
            pass
        busy = pytest.raises(quotas.LimitReached, match="running 2 image sets, collections or evaluations")
        with heavy.slot(bo, "collection"), busy, heavy.slot(cy, "evaluation"):
            pass
    with heavy.slot(cy, "evaluation"):  # freed once they finished
        pass
