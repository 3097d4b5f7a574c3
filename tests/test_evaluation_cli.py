"""The command line: the evaluation id comes before the first call (so a killed run can be resumed),
and --min-score fails a run with errors or with nothing scored, not only a low score."""

from __future__ import annotations

import json

import pytest

from adapters import registry
from adapters.errors import ProviderError
from adapters.registry import Provider
from adapters.tasks import Completer
from adapters.types import Finish, Task
from services.evaluation import __main__ as cli
from services.evaluation import report

seen_before_first_call: list[str] = []


class Refusing(Completer):
    """Every call fails as a vendor answering 401 would."""

    def _stream(self, messages, params):
        raise ProviderError("401 Unauthorized: the API key was refused.", provider="refusing")
        yield  # a generator


class Answering(Completer):
    def _stream(self, messages, params):
        yield "The answer is 4."
        yield Finish("stop")


@pytest.fixture(autouse=True)
def providers(capsys):
    class Watching(Answering):
        def _stream(self, messages, params):
            if not seen_before_first_call:
                seen_before_first_call.append(capsys.readouterr().err)
            yield from super()._stream(messages, params)

    for name, adapter in (("refusing", Refusing), ("answering", Watching)):
        registry.register(Provider(name=name, label=name, adapters={Task.COMPLETION: adapter}, models=lambda t: "m"))
    seen_before_first_call.clear()
    yield
    for name in ("refusing", "answering"):
        registry.unregister(name)


def write(tmp_path, target: str, items: list[dict]) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"dataset": {"items": items}, "targets": [target], "scorer": "numeric"}))
    return str(path)


def test_the_id_is_printed_before_the_first_call(tmp_path, capsys):
    assert cli.main([write(tmp_path, "answering", [{"input": "2+2?", "answer": "4"}])]) == 0
    early = seen_before_first_call[0]
    evaluation_id = early.split("evaluation ")[1].split(" ")[0]
    assert f"--resume {evaluation_id}" in early
    assert f"evaluation {evaluation_id}: done" in capsys.readouterr().out


def test_min_score_fails_a_run_whose_every_call_failed(tmp_path, capsys):
    spec = write(tmp_path, "refusing", [{"input": "2+2?", "answer": "4"}, {"input": "3+3?", "answer": "6"}])
    assert cli.main([spec, "--min-score", "0.5"]) == 1
    assert "had 2 errors" in capsys.readouterr().err


def test_min_score_fails_rows_with_no_score_and_passes_good_ones():
    def row(variant: str, target: str, score: float, n: int) -> report.Row:
        return report.Row(variant, target, score, score, score, n, 0, None, 0.1, 0.1, None, None, None, None, 0, n)

    good, empty, low = row("v", "t", 1.0, 4), row("v", "u", float("nan"), 0), row("w", "t", 0.25, 4)
    assert cli.below([good], 0.8) == []
    assert cli.below([good, empty, low], 0.8) == ["v x u scored no item", "w x t scored 0.250"]
    assert cli.below([], 0.8) == ["no cell was run"]
