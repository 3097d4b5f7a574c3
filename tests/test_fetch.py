"""`python -m adapters.local fetch`: which files it picks, what it fetches, how it fails offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters import config, local
from adapters.types import Task
from local_models import fetch


def CONFIGURED(task: Task) -> str | None:
    return config.model_for("local", task)


ROOT = Path(__file__).resolve().parent.parent

CLIP_REPO = [
    ".gitattributes",
    "README.md",
    "config.json",
    "flax_model.msgpack",
    "merges.txt",
    "model.safetensors",
    "preprocessor_config.json",
    "pytorch_model.bin",
    "special_tokens_map.json",
    "tf_model.h5",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
]
SD_TURBO_REPO = [
    ".gitattributes",
    "README.md",
    "model_index.json",
    "sd_turbo.safetensors",
    "sd_turbo.fp16.safetensors",
    "output.jpg",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder/model.fp16.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.bin",
    "onnx/unet/model.onnx",
    "onnx/unet/config.json",
]


def test_select_files_keeps_configs_tokenizer_and_safetensors_only():
    assert fetch.select_files(CLIP_REPO) == [
        "config.json",
        "merges.txt",
        "model.safetensors",
        "preprocessor_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ]


def test_select_files_for_a_pipeline_skips_variants_and_single_file_checkpoints():
    chosen = fetch.select_files(SD_TURBO_REPO)
    assert chosen == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]


def test_select_files_falls_back_to_pytorch_bin_and_keeps_the_right_shard_index():
    repo = [
        "config.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
        "pytorch_model.fp16.bin",
        "training_args.bin",
        "tf_model.h5",
        "tf_model.h5.index.json",
        "spiece.model",
    ]
    assert fetch.select_files(repo) == [
        "config.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
        "spiece.model",
    ]
    sharded = [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "model.safetensors.index.fp16.json",
        "pytorch_model.bin.index.json",
    ]
    assert fetch.select_files(sharded) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]


def test_targets_default_to_the_configured_models_that_are_not_packaged(capsys):
    expected = [config.model_for("local", task) for task in (Task.ZERO_SHOT, Task.CAPTIONING, Task.IMAGE_GENERATION)]
    assert fetch.targets([], CONFIGURED) == expected
    assert fetch.targets(["zero-shot", "org/model", "zero-shot"], CONFIGURED) == [expected[0], "org/model"]
    assert fetch.targets(["completion"], CONFIGURED) == []
    assert "nothing to fetch" in capsys.readouterr().out


def test_targets_follow_the_config(monkeypatch):
    monkeypatch.setenv("FMG_MODEL_LOCAL_CAPTIONING", "nlpconnect/vit-gpt2-image-captioning")
    assert fetch.targets(["captioning"], CONFIGURED) == ["nlpconnect/vit-gpt2-image-captioning"]


def test_a_bad_argument_is_one_line_and_exit_1(capsys):
    assert local.main(["fetch", "not-a-task"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither a task" in err


def _run_fetch(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    inherited = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    full_env = {**inherited, "PYTHONPATH": str(ROOT), "HF_HUB_CACHE": str(tmp_path / "hub"), **env}
    return subprocess.run(
        [sys.executable, "-m", "adapters.local", "fetch", *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unreachable_hub_is_one_clear_line_and_exit_1(tmp_path):
    done = _run_fetch(tmp_path, HF_ENDPOINT="http://127.0.0.1:9")  # a closed port
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    assert "openai/clip-vit-base-patch32" in lines[0] and "nothing was downloaded" in lines[0]
    assert "internet" in lines[0] and "HF_ENDPOINT" in lines[0]
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").rglob("*.safetensors"))


def test_offline_mode_is_named(tmp_path):
    done = _run_fetch(tmp_path, "captioning", HF_HUB_OFFLINE="1")
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "HF_HUB_OFFLINE" in done.stderr


# --- the network-error recogniser, on the exceptions the HTTP libraries really raise -------------

CLOSED = "http://127.0.0.1:9"  # nothing listens on the discard port: a connection is refused


def raised(call) -> Exception:
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


@pytest.fixture(scope="module")
def silent_url():
    """A server that accepts connections and never answers, so that a read times out."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/"


@pytest.fixture(scope="module")
def hub_that_refuses():
    """A stand-in Hub that answers every request: 404 "RepoNotFound" for org/missing, 500 otherwise."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self):
            missing = "org/missing" in self.path
            body = b'{"error": "no"}'
            self.send_response(404 if missing else 500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if missing:
                self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_network_errors_are_recognised_across_http_libraries(silent_url, monkeypatch):
    """Raised by httpx, requests and huggingface_hub themselves (built as they build them only
    where the real cause cannot be staged here: a connect timeout needs an unroutable address)."""
    import httpx
    import requests
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    errors = {
        "httpx refused": raised(lambda: httpx.get(CLOSED)),
        "httpx read timeout": raised(lambda: httpx.get(silent_url, timeout=0.2)),
        "httpx connect timeout": httpx.ConnectTimeout("timed out", request=httpx.Request("GET", CLOSED)),
        "requests refused": raised(lambda: requests.get(CLOSED, timeout=5)),
        "requests read timeout": raised(lambda: requests.get(silent_url, timeout=0.2)),
        "requests connect timeout": requests.exceptions.ConnectTimeout(
            "timed out", request=requests.Request("GET", CLOSED).prepare()
        ),
        # fetch's own first call:
        "huggingface_hub refused": raised(lambda: HfApi(endpoint=CLOSED).model_info("org/name")),
        "builtin refused": raised(lambda: __import__("socket").create_connection(("127.0.0.1", 9), timeout=5)),
    }
    monkeypatch.setattr(constants, "is_offline_mode", lambda: True)  # as HF_HUB_OFFLINE=1 does
    errors["huggingface_hub offline"] = raised(lambda: HfApi(endpoint=CLOSED).model_info("org/name"))

    assert isinstance(errors["httpx refused"], httpx.ConnectError)
    assert isinstance(errors["httpx read timeout"], httpx.ReadTimeout)
    assert isinstance(errors["requests refused"], requests.exceptions.ConnectionError)
    assert isinstance(errors["requests read timeout"], requests.exceptions.ReadTimeout)
    assert isinstance(errors["builtin refused"], ConnectionRefusedError)
    assert isinstance(errors["huggingface_hub offline"], OfflineModeIsEnabled)
    assert [name for name, err in errors.items() if not fetch._is_network_error(err)] == []


def test_answers_and_local_misses_are_not_network_errors(hub_that_refuses, tmp_path):
    """A server that answered (even with an error) was reached; a file missing from the local
    cache with the network left out of it is not a network failure either."""
    import httpx
    import requests
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    answered = requests.Response()
    answered.status_code, answered.reason, answered.url = 503, "Service Unavailable", CLOSED
    errors = {
        "httpx 503": raised(httpx.Response(503, request=httpx.Request("GET", CLOSED)).raise_for_status),
        "requests 503": raised(answered.raise_for_status),
        "huggingface_hub 404": raised(lambda: HfApi(endpoint=hub_that_refuses).model_info("org/missing")),
        "huggingface_hub 500": raised(lambda: HfApi(endpoint=hub_that_refuses).model_info("org/broken")),
        "huggingface_hub not cached": raised(
            lambda: hf_hub_download("org/name", "config.json", cache_dir=tmp_path, local_files_only=True)
        ),
        "a bad value": ValueError("bad"),
    }
    assert isinstance(errors["httpx 503"], httpx.HTTPStatusError)
    assert isinstance(errors["requests 503"], requests.exceptions.HTTPError)
    assert isinstance(errors["huggingface_hub 404"], RepositoryNotFoundError)
    assert type(errors["huggingface_hub 500"]) is HfHubHTTPError
    assert isinstance(errors["huggingface_hub not cached"], LocalEntryNotFoundError)
    assert [name for name, err in errors.items() if fetch._is_network_error(err)] == []


def test_a_download_that_loses_the_hub_is_one_line_that_says_run_again(monkeypatch, tmp_path, capsys):
    """Once the listing has come, huggingface_hub reports a lost connection during the download as
    LocalEntryNotFoundError (caused by the connection error), which the recogniser does not take
    for a network error: fetch's download step still turns it into its one line, not a traceback."""
    from types import SimpleNamespace

    import huggingface_hub

    listing = SimpleNamespace(
        siblings=[
            SimpleNamespace(rfilename="config.json", size=10),
            SimpleNamespace(rfilename="model.safetensors", size=1000),
        ]
    )
    download = huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: SimpleNamespace(model_info=lambda repo_id, **kw: listing))
    monkeypatch.setattr(
        huggingface_hub,
        "snapshot_download",
        lambda repo_id, **kwargs: download(repo_id, cache_dir=tmp_path, endpoint=CLOSED, **kwargs),
    )
    with pytest.raises(fetch.FetchError) as failed:
        fetch.fetch("org/name")
    assert type(failed.value.__context__).__name__ == "LocalEntryNotFoundError"
    assert fetch._is_network_error(failed.value.__context__.__cause__)  # the connection error behind it
    message = str(failed.value)
    assert "\n" not in message and "org/name did not complete" in message and "run the same command again" in message
