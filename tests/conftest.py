"""Shared fixtures: an isolated environment and the fake provider (layer 1)."""

from __future__ import annotations

import os

import pytest

from adapters import registry
from tests.fakes import providers as fake
from tests.fixtures.postgres import db_url, postgres_server  # noqa: F401 - fixtures for every test module

VENDOR_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "CO_API_KEY",
    "COHERE_API_KEY",
    "CO_API_URL",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path_factory):
    """No real keys, no developer config file, no stray model overrides or public-mode settings
    leak into a test, and no run or vote lands in the developer's own run log or leaderboard."""
    for var in VENDOR_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FMG_CONFIG", str(tmp_path_factory.getbasetemp() / "no-such-config.toml"))
    run_log = tmp_path_factory.mktemp("run-log")
    monkeypatch.setenv("FMG_RUN_LOG", str(run_log / "runs.sqlite3"))
    monkeypatch.setenv("FMG_LEADERBOARD", str(run_log / "leaderboard.sqlite3"))
    monkeypatch.delenv("FMG_DATABASE_URL", raising=False)  # only `db_url` puts a test on PostgreSQL
    for var in [v for v in os.environ if v.startswith("FMG_PUBLIC") or v in ("SPACE_ID", "FMG_RATE_LIMIT_STORAGE")]:
        monkeypatch.delenv(var)
    for var in [v for v in os.environ if v.startswith("FMG_MODEL_")]:
        monkeypatch.delenv(var)
    for var in ("FMG_LOCAL_CHAT_URL", "FMG_LOCAL_THREADS"):  # a worker's shared llama.cpp server, a core count
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake_provider():
    registry.register(fake.provider())
    yield fake.NAME
    registry.unregister(fake.NAME)
