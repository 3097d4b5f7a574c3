"""No API key reaches a log: not in a message, its args, a traceback (chained or not), or a stack.

Each test logs through a handler of its own, added after `install_log_redaction()`, so that only
the record factory it installs can be what scrubs the output.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters import keys

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-LOGREDACT-7c1e9a0b5d3f2468"


@pytest.fixture(autouse=True)
def redaction(monkeypatch):
    """A known key and redaction installed; the record factory and root filters restored after."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    factory = logging.getLogRecordFactory()
    root = logging.getLogger()
    filters = {h: list(h.filters) for h in root.handlers}
    keys.install_log_redaction()
    yield
    logging.setLogRecordFactory(factory)
    for handler, kept in filters.items():
        handler.filters[:] = kept


@pytest.fixture
def log(request):
    """A fresh logger writing, with a plain Formatter, into `log.out` (a StringIO)."""
    logger = logging.getLogger(f"test_log_redaction.{request.node.name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.out = io.StringIO()
    handler = logging.StreamHandler(logger.out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)


def chained(implicit: bool = False) -> RuntimeError:
    """A RuntimeError whose cause (or, if `implicit`, context) is a ValueError quoting the key."""
    try:
        try:
            raise ValueError(f"invalid api token {KEY}")
        except ValueError as err:
            if implicit:
                raise RuntimeError("vendor call failed")  # noqa: B904 - the implicit context is the point
            raise RuntimeError("vendor call failed") from err
    except RuntimeError as err:
        return err


def test_message_args_are_redacted(log):
    log.info("calling with %r", {"api_key": KEY})
    assert KEY not in log.out.getvalue()
    assert "calling with {'api_key': '[redacted]'}" in log.out.getvalue()


def test_an_exception_message_in_exc_info_is_redacted(log):
    log.error("x", exc_info=ValueError(f"invalid api token {KEY}"))
    out = log.out.getvalue()
    assert KEY not in out
    assert "ValueError: invalid api token [redacted]" in out


@pytest.mark.parametrize("implicit", [False, True], ids=["from", "context"])
def test_a_chained_cause_is_redacted(log, implicit):
    log.error("x", exc_info=chained(implicit))
    out = log.out.getvalue()
    assert KEY not in out
    assert "ValueError: invalid api token [redacted]" in out and "RuntimeError: vendor call failed" in out
    assert ("During handling" if implicit else "direct cause") in out


def test_log_exception_is_redacted(log):
    try:
        raise ConnectionError(f"refused for {KEY}")
    except ConnectionError:
        log.exception("call failed")
    out = log.out.getvalue()
    assert KEY not in out
    assert "Traceback" in out and "ConnectionError: refused for [redacted]" in out


def test_stack_info_is_redacted(log, tmp_path):
    source = tmp_path / "keyed_module.py"
    source.write_text(f"def where(log):\n    log.warning('here', stack_info=True)  # {KEY}\n")
    spec = importlib.util.spec_from_file_location("keyed_module", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.where(log)
    out = log.out.getvalue()
    assert KEY not in out
    assert "Stack (most recent call last)" in out and "# [redacted]" in out


def test_a_root_handler_added_after_install_is_redacted(monkeypatch):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])  # alone: pytest's, filtered, would scrub first
    logging.getLogger("test_log_redaction.late").error("key %s", KEY, exc_info=chained())
    assert KEY not in out.getvalue()
    assert "key [redacted]" in out.getvalue() and "ValueError" in out.getvalue()


def test_install_is_idempotent():
    factory = logging.getLogRecordFactory()
    keys.install_log_redaction()
    assert logging.getLogRecordFactory() is factory
    assert all(sum(isinstance(f, keys.RedactingFilter) for f in h.filters) <= 1 for h in logging.getLogger().handlers)


def test_the_filter_alone_scrubs_a_record_made_elsewhere():
    """A record built by `makeLogRecord` (as a socket log server does) is scrubbed by the filter."""
    record = logging.makeLogRecord(
        {"msg": "token %r", "args": (KEY,), "levelno": logging.ERROR, "exc_info": (ValueError, ValueError(KEY), None)}
    )
    keys.RedactingFilter().filter(record)
    out = logging.Formatter().format(record)
    assert KEY not in out and "ValueError: [redacted]" in out


def test_the_app_logging_setup_keeps_keys_out_of_stderr():
    """`app.main()`'s setup in a real process: a vendor error echoing the key, logged with its traceback."""
    code = (
        "import logging, os\n"
        "import adapters.keys\n"
        "logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')\n"
        "adapters.keys.install_log_redaction()\n"
        "try:\n"
        "    try:\n"
        "        raise ValueError('invalid api token ' + os.environ['OPENAI_API_KEY'])\n"
        "    except ValueError as err:\n"
        "        raise RuntimeError('vendor call failed') from err\n"
        "except RuntimeError as err:\n"
        "    logging.getLogger('fm_gallery.demos').error('unexpected error: %r', err, exc_info=err)\n"
    )
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert KEY not in done.stderr + done.stdout
    assert "Traceback" in done.stderr and "ValueError: invalid api token [redacted]" in done.stderr
    assert "RuntimeError: vendor call failed" in done.stderr
