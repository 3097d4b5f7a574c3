"""Files the app leaves behind, files it serves whole, and what a visitor's programs show.

a. Compare's API images: each process has its own folder (a shared one let one process's prune
   delete another's images), and pruning never fails on a file another thread removed first.
b. `/export` keeps a bounded number of files on disk (Gradio serves its own cached copy).
c. Gradio writes a content-addressed image into its cache in place, so two identical images
   (same seed) truncate each other's file while it is downloaded; `compat` makes it atomic.
d. In public mode a Reproduce program names no configured base URL and no local model path.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from gradio import processing_utils
from gradio_client import Client
from PIL import Image

import compat
from adapters import openai_api, registry
from adapters.snippets import hf as hf_snippets
from adapters.types import Task
from demos import compare, completion, history
from demos.widgets import exports, reproduce
from services import comparisons as comparison
from tests.fakes import providers as fake
from tests.fakes.http_server import FakeServer
from tests.fakes.openai_server import OpenAIFake

ROOT = Path(__file__).resolve().parents[1]


def noise(side: int = 192, seed: int = 0) -> Image.Image:
    """An image that does not compress: its PNG takes a while to write, as a generated one does."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def hammer(threads: int, fn, seconds: float | None = None, calls: int | None = None) -> list[BaseException]:
    """Run `fn` in `threads` threads started together (each `calls` times, or for `seconds`); the errors."""
    errors: list[BaseException] = []
    start, stop = threading.Barrier(threads), threading.Event()

    def loop():
        start.wait()
        done = 0
        while not stop.is_set() and (calls is None or done < calls):
            try:
                fn()
            except Exception as err:  # noqa: BLE001 - every failure is the finding
                errors.append(err)
            done += 1

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    if seconds is not None:
        time.sleep(seconds)
        stop.set()
    for worker in workers:
        worker.join(timeout=120)
    return errors


# --- a. Compare's images -----------------------------------------------------------------------------


def test_concurrent_compare_images_never_fail_and_the_newest_are_kept(monkeypatch):
    monkeypatch.setattr(compare, "KEEP_IMAGES", 3)
    image = noise(48)
    handed_out = []

    def save():
        handed_out.append(compare._image_file(image))

    errors = hammer(16, save, calls=15)
    assert errors == [], errors[:3]
    folder = compare.image_dir()
    left = sorted(folder.iterdir())
    assert 1 <= len(left) <= 3 and all(p.suffix == ".png" for p in left)  # nothing half written is left
    assert {str(p) for p in left} <= {file["path"] for file in handed_out}
    assert all(file["meta"] == {"_type": "gradio.FileData"} for file in handed_out)
    for path in left:
        with Image.open(path) as saved:
            assert saved.size == (48, 48)


def test_each_process_hands_out_images_from_its_own_folder():
    from gradio.data_classes import _StaticFiles

    mine = compare.image_dir()
    assert mine.is_dir() and mine.name.startswith(compare.IMAGE_PREFIX) and compare.image_dir() == mine
    assert mine.resolve() in _StaticFiles.all_paths  # Gradio serves it (the JSON output is not scanned)
    code = "from demos import compare; print(compare.image_dir(), flush=True)"
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr[-2000:]
    theirs = Path(child.stdout.strip())
    assert theirs.name.startswith(compare.IMAGE_PREFIX) and theirs != mine
    assert not theirs.exists()  # removed when its process ended


# --- b. /export --------------------------------------------------------------------------------------


def exports_in_tmp() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{exports.EXPORT_PREFIX}*"))


def log_a_chat(text: str) -> None:
    list(completion.chat(text, [], fake.NAME, "", "", 32, 0.7, 1.0, -1))


def test_exports_leave_a_bounded_number_of_files(monkeypatch, fake_provider):
    monkeypatch.setattr(exports, "KEEP_EXPORTS", 3)
    log_a_chat("hello")
    before = exports_in_tmp()
    paths = [Path(history.export("CSV" if i % 2 else "JSONL")) for i in range(12)]
    assert len(exports_in_tmp() - before) <= 1  # one folder for the process, not one per export
    folder = exports.export_dir()
    assert len(list(folder.iterdir())) <= 3 and len(list(folder.rglob("*"))) <= 6
    assert paths[-1].is_file() and "hello" in paths[-1].read_text(encoding="utf-8")
    assert len({p.parent for p in paths}) == 12  # two exports in one second never share a file

    old = paths[-1].parent
    os.utime(old, (time.time() - exports.EXPORT_TTL_S - 5,) * 2)
    history.export("CSV")
    assert not old.exists()  # older than the TTL: gone at the next export


@pytest.mark.e2e
def test_gradio_serves_an_export_after_the_app_removed_its_file(monkeypatch, fake_provider):
    """Gradio copies a returned file into its cache before serving it, so the app's own file may
    go: with one export kept, each earlier export's download still works."""
    monkeypatch.setattr(exports, "KEEP_EXPORTS", 1)
    monkeypatch.setattr(exports, "EXPORT_TTL_S", 0)
    log_a_chat("a logged answer")
    demo = history.build()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False, download_files=False)
        served = [client.predict("CSV", api_name="/export") for _ in range(3)]
        assert len(list(exports.export_dir().iterdir())) == 1
        for file in served:
            assert not Path(file["path"]).is_relative_to(exports.export_dir())
            body = httpx.get(file["url"], timeout=30)
            assert body.status_code == 200 and "a logged answer" in body.text
    finally:
        demo.close()


# --- c. Gradio's image cache -------------------------------------------------------------------------


@pytest.fixture
def upstream_cache_writer(monkeypatch):
    """Gradio's own save_pil_to_cache, restored after the test whatever it patches."""
    current = processing_utils.save_pil_to_cache
    upstream = getattr(current, "upstream", current)
    monkeypatch.setattr(processing_utils, "save_pil_to_cache", upstream)
    return upstream


def concurrent_saves_and_reads(cache_dir: Path, seconds: float = 1.5) -> tuple[int, list[str]]:
    """Writers save one image through Gradio's function (as `gr.Image` postprocess does for
    every identical result) while readers open the file and decode it whole; (reads, failures)."""
    image = noise()
    path = processing_utils.save_pil_to_cache(image, cache_dir=str(cache_dir), format="png")
    reads, failures = [0], []

    def write():
        assert processing_utils.save_pil_to_cache(image, cache_dir=str(cache_dir), format="png") == path

    def read():
        with open(path, "rb") as f:
            data = f.read()
        try:
            with Image.open(io.BytesIO(data)) as decoded:
                decoded.load()
        except Exception as err:  # noqa: BLE001
            failures.append(f"{len(data)} bytes: {err!r}"[:120])
        reads[0] += 1

    done = threading.Event()
    writers = threading.Thread(target=lambda: (hammer(4, write, seconds=seconds), done.set()))
    writers.start()
    errors = hammer(4, read, seconds=seconds)
    writers.join()
    assert errors == [], errors[:3]
    return reads[0], failures


def test_identical_images_saved_at_once_are_never_read_truncated(upstream_cache_writer, tmp_path, caplog):
    caplog.set_level("INFO", logger="fm_gallery.compat")
    assert compat.install()["atomic_image_cache"] is True
    assert "compat patch atomic_image_cache applied" in caplog.text
    reads, failures = concurrent_saves_and_reads(tmp_path)
    assert reads > 50 and failures == [], failures[:3]
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["image.png"]  # no staging file left


def test_the_patch_keeps_to_its_versions_and_its_opt_out(upstream_cache_writer, monkeypatch, caplog):
    caplog.set_level("INFO", logger="fm_gallery.compat")
    monkeypatch.setattr(compat, "_version", lambda package: (7, 0))
    assert compat.install()["atomic_image_cache"] is False
    assert processing_utils.save_pil_to_cache is upstream_cache_writer
    assert "skipped: written for gradio >= 6.0, < 7.0; installed: 7.0" in caplog.text

    monkeypatch.undo()
    monkeypatch.setattr(processing_utils, "save_pil_to_cache", upstream_cache_writer)
    monkeypatch.setenv("FMG_COMPAT_ATOMIC_IMAGE_CACHE", "off")
    assert compat.install()["atomic_image_cache"] is False
    assert processing_utils.save_pil_to_cache is upstream_cache_writer

    monkeypatch.delenv("FMG_COMPAT_ATOMIC_IMAGE_CACHE")
    assert compat.install()["atomic_image_cache"] is True
    patched = processing_utils.save_pil_to_cache
    assert compat.install()["atomic_image_cache"] is True and processing_utils.save_pil_to_cache is patched


def test_the_app_installs_the_patch(upstream_cache_writer):
    import app

    app.build()
    assert getattr(processing_utils.save_pil_to_cache, "fmg_compat", False)


# --- d. Reproduce programs in public mode ------------------------------------------------------------

PRIVATE = {
    "OPENAI_BASE_URL": "http://10.1.2.3:8000/v1",
    "CO_API_URL": "http://10.7.7.7:9000",
    "HF_INFERENCE_ENDPOINT": "http://10.5.5.5:8080",
}
COMPATIBLE_URL = "http://10.4.4.4:1234/v1"
ABSENT_FOLDER = "/models/clip-Zq9"  # a configured folder that need not exist here
GGUF_FILE = "/srv/weights/qwen-Zq9.gguf"
INPUTS = {
    "messages": [{"role": "user", "content": "hi"}],
    "prompt": "a fox",
    "labels": ["a cat", "a dog"],
    "query": "foxes",
    "documents": ["foxes run", "cats sit"],
}
PARAMS = {"max_tokens": 16, "seed": 7, "steps": 2, "width": 64, "height": 64, "top_k": 2}


@pytest.fixture
def configured(monkeypatch, tmp_path):
    """Base URLs in the environment and a TOML endpoint; returns the local folder that exists."""
    for var, url in PRIVATE.items():
        monkeypatch.setenv(var, url)
    endpoint = openai_api.endpoint_from_table(
        "zeta", {"base_url": COMPATIBLE_URL, "api_key_env": "ZETA_API_KEY", "models": {"completion": "zeta-chat"}}
    )
    registry.register(openai_api.provider_for(endpoint))
    folder = tmp_path / "private-weights" / "minilm-Zq9"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    yield str(folder)
    registry.unregister("zeta")


def cases(folder: str) -> list[tuple[str, Task, str, str]]:
    """(provider, task, model, what only the server's configuration says)."""
    out = [("openai", task, "gpt-4o-mini", PRIVATE["OPENAI_BASE_URL"]) for task in Task]
    out += [("zeta", Task.COMPLETION, "zeta-chat", COMPATIBLE_URL)]
    out += [("cohere", task, "command-r", PRIVATE["CO_API_URL"]) for task in Task if task is not Task.IMAGE_GENERATION]
    out += [("hf", task, "org/model-Zq9", PRIVATE["HF_INFERENCE_ENDPOINT"]) for task in Task]
    out += [("local", task, ABSENT_FOLDER, ABSENT_FOLDER) for task in Task if task is not Task.COMPLETION]
    out += [("local", Task.COMPLETION, GGUF_FILE, GGUF_FILE), ("local", Task.EMBEDDINGS, folder, folder)]
    return out


def logged_run(provider: str, task: Task, model: str) -> dict:
    return {"task": task.value, "provider": provider, "model": model, "inputs": INPUTS, "params": PARAMS}


def test_public_programs_name_no_base_url_or_local_path(configured, monkeypatch):
    for provider, task, model, private in cases(configured):
        monkeypatch.setenv("FMG_PUBLIC", "0")
        shown = reproduce.for_run(logged_run(provider, task, model))
        assert private in shown, (provider, task)  # the owner still sees where the app calls
        monkeypatch.setenv("FMG_PUBLIC", "1")
        code = reproduce.for_run(logged_run(provider, task, model))
        compile(code, "<snippet>", "exec")
        assert not code.startswith("# No"), code
        leaked = [
            s
            for s in (
                *PRIVATE.values(),
                COMPATIBLE_URL,
                ABSENT_FOLDER,
                GGUF_FILE,
                configured,
                str(Path(configured).parent),
                "/models/clip",
                "/srv/weights",
            )
            if s in code
        ]
        assert leaked == [], (provider, task, code)
        if provider == "local":
            assert "model_path = 'path/to/" in code and f"model {Path(model).name!r}" in code
        else:  # the program reads the SDK's variable instead
            var = {
                "openai": "OPENAI_BASE_URL",
                "zeta": "OPENAI_BASE_URL",
                "cohere": "CO_API_URL",
                "hf": "HF_INFERENCE_ENDPOINT",
            }[provider]
            assert var in code, code


def test_public_programs_show_the_vendors_public_defaults(configured, monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC", "1")
    openai = reproduce.for_run(logged_run("openai", Task.COMPLETION, "gpt-4o-mini"))
    assert "base_url=os.environ.get('OPENAI_BASE_URL', 'https://api.openai.com/v1')" in openai
    zeta = reproduce.for_run(logged_run("zeta", Task.COMPLETION, "zeta-chat"))
    assert "base_url=os.environ['OPENAI_BASE_URL'], api_key=os.environ['ZETA_API_KEY']" in zeta
    cohere = reproduce.for_run(logged_run("cohere", Task.COMPLETION, "command-r"))
    assert "base_url=os.environ.get('CO_API_URL', 'https://api.cohere.com')" in cohere
    hf = reproduce.for_run(logged_run("hf", Task.ZERO_SHOT, "org/model-Zq9"))
    assert "model='https://router.huggingface.co/hf-inference/models/org/model-Zq9'" in hf
    repo = reproduce.for_run(logged_run("local", Task.ZERO_SHOT, "openai/clip-vit-base-patch32"))
    assert "model_path = 'openai/clip-vit-base-patch32'" in repo  # a repo id is no server path


def test_the_public_hf_url_is_the_route_without_the_endpoint(monkeypatch):
    monkeypatch.delenv("HF_INFERENCE_ENDPOINT", raising=False)
    from adapters import hf_inference

    for task in Task:
        for model in ("org/model-Zq9", "https://my-endpoint.example/x"):
            assert hf_snippets.public_url(task, model) == hf_inference.route(task, model).url


def test_every_caller_in_demos_passes_the_mode(configured, monkeypatch):
    adapter = SimpleNamespace(provider="openai", model="gpt-4o-mini", api_key=None)
    job = SimpleNamespace(params=PARAMS, call=INPUTS, inputs={})
    for mode, shows in (("0", True), ("1", False)):
        monkeypatch.setenv("FMG_PUBLIC", mode)
        programs = [
            reproduce.of(Task.COMPLETION, adapter, INPUTS, PARAMS),
            comparison._snippet(Task.COMPLETION, job, adapter, SimpleNamespace()),
            reproduce.for_run(logged_run("openai", Task.COMPLETION, "gpt-4o-mini")),
        ]
        assert [PRIVATE["OPENAI_BASE_URL"] in code for code in programs] == [shows] * 3, programs


def test_a_public_program_runs_against_the_server_its_variable_names(monkeypatch, tmp_path):
    key = "sk-env-PUBLIC-PROGRAM-4d1e"
    with FakeServer(OpenAIFake(key=key)) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        monkeypatch.setenv("FMG_PUBLIC", "1")
        code = reproduce.for_run(logged_run("openai", Task.COMPLETION, "gpt-4o-mini"))
        assert server.url not in code
        (tmp_path / "program.py").write_text(code)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "CO_", "HF_", "FMG_"))}
        out = subprocess.run(
            [sys.executable, "program.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=clean | {"OPENAI_API_KEY": key, "OPENAI_BASE_URL": f"{server.url}/v1"},
            timeout=180,
            check=False,
        )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("Echo from gpt-4o-mini: hi"), out.stdout
