"""Hugging Face adapter checks that need no `huggingface_hub`: the import stays lazy, a missing SDK
is named, and every (task, model) goes to one known URL. The tests that talk to the fake router
through the SDK are in test_vendor_hf.py, which is skipped where the SDK is not installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adapters import hf_inference
from adapters.errors import ProviderUnavailable
from adapters.types import Task

EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(autouse=True)
def no_endpoint(monkeypatch):
    monkeypatch.delenv("HF_INFERENCE_ENDPOINT", raising=False)


def test_importing_the_module_does_not_import_the_sdk():
    code = "import sys, adapters.hf_inference; sys.exit('huggingface_hub' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_missing_sdk_names_the_package(monkeypatch):
    real = hf_inference.importlib.util.find_spec
    monkeypatch.setattr(
        hf_inference.importlib.util, "find_spec", lambda name, *a: None if name == "huggingface_hub" else real(name, *a)
    )
    problem = hf_inference.check(Task.EMBEDDINGS, EMBED_MODEL)
    assert isinstance(problem, ProviderUnavailable) and "pip install huggingface_hub" in str(problem)


def test_routes(monkeypatch):
    assert hf_inference.route(Task.COMPLETION, "org/m").url == "https://router.huggingface.co/v1"
    assert hf_inference.route(Task.ZERO_SHOT, "org/m").url == "https://router.huggingface.co/hf-inference/models/org/m"
    assert hf_inference.route(Task.EMBEDDINGS, "org/m").url.endswith("/models/org/m/pipeline/feature-extraction")
    monkeypatch.setenv("HF_INFERENCE_ENDPOINT", "http://proxy.local/hf/")
    assert hf_inference.route(Task.COMPLETION, "org/m").url == "http://proxy.local/hf/models/org/m"
    assert hf_inference.route(Task.CAPTIONING, "https://x.endpoints.huggingface.cloud").url == (
        "https://x.endpoints.huggingface.cloud"
    )
