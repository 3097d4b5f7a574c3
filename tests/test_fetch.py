"""`python -m local_models.fetch`: which files it picks, what it fetches, how it fails offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters import config
from adapters.types import Task
from local_models import fetch

ROOT = Path(__file__).resolve().parent.parent

CLIP_REPO = [
    ".gitattributes", "README.md", "config.json", "flax_model.msgpack", "merges.txt", "model.safetensors",
    "preprocessor_config.json", "pytorch_model.bin", "special_tokens_map.json", "tf_model.h5", "tokenizer.json",
    "tokenizer_config.json", "vocab.json",
]
SD_TURBO_REPO = [
    ".gitattributes", "README.md", "model_index.json", "sd_turbo.safetensors", "sd_turbo.fp16.safetensors",
    "output.jpg", "scheduler/scheduler_config.json",
    "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors",
    "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.bin", "onnx/unet/model.onnx", "onnx/unet/config.json",
]


def test_select_files_keeps_configs_tokenizer_and_safetensors_only():
    assert fetch.select_files(CLIP_REPO) == [
        "config.json", "merges.txt", "model.safetensors", "preprocessor_config.json", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json", "vocab.json",
    ]


def test_select_files_for_a_pipeline_skips_variants_and_single_file_checkpoints():
    chosen = fetch.select_files(SD_TURBO_REPO)
    assert chosen == [
        "model_index.json", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors",
        "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    ]


def test_select_files_falls_back_to_pytorch_bin_and_keeps_the_right_shard_index():
    repo = [
        "config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json", "pytorch_model.fp16.bin", "training_args.bin", "tf_model.h5",
        "tf_model.h5.index.json", "spiece.model",
    ]
    assert fetch.select_files(repo) == [
        "config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json", "spiece.model",
    ]
    sharded = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "model.safetensors.index.json", "model.safetensors.index.fp16.json", "pytorch_model.bin.index.json"]
    assert fetch.select_files(sharded) == [
        "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]


def test_targets_default_to_the_configured_models_that_are_not_packaged(capsys):
    expected = [config.model_for("local", task) for task in (Task.ZERO_SHOT, Task.CAPTIONING, Task.IMAGE_GENERATION)]
    assert fetch.targets([]) == expected
    assert fetch.targets(["zero-shot", "org/model", "zero-shot"]) == [expected[0], "org/model"]
    assert fetch.targets(["completion"]) == []
    assert "nothing to fetch" in capsys.readouterr().out


def test_targets_follow_the_config(monkeypatch):
    monkeypatch.setenv("FMG_MODEL_LOCAL_CAPTIONING", "nlpconnect/vit-gpt2-image-captioning")
    assert fetch.targets(["captioning"]) == ["nlpconnect/vit-gpt2-image-captioning"]


def test_a_bad_argument_is_one_line_and_exit_1(capsys):
    assert fetch.main(["not-a-task"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither a task" in err


def _run_fetch(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    inherited = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    full_env = {**inherited, "PYTHONPATH": str(ROOT), "HF_HUB_CACHE": str(tmp_path / "hub"), **env}
    return subprocess.run(
        [sys.executable, "-m", "local_models.fetch", *args],
        cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=120,
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


@pytest.mark.parametrize("name", ["ConnectError", "ConnectionError", "ReadTimeout"])
def test_network_errors_are_recognised_across_http_libraries(name):
    base = {"ReadTimeout": TimeoutError}.get(name, Exception)
    assert fetch._is_network_error(type(name, (base,), {})())
    assert not fetch._is_network_error(ValueError("bad"))
