"""Every setting of `--workers` mode, with its default, in one place (README: "Running for many people").

Each is read from the environment when the launcher starts (`FMG_PROXY_<NAME>`, or the variable
named in `ENV_NAMES`). Rates are nginx's (`20r/s`, `30r/m`); sizes are nginx's (`25m`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields

PUBLIC_HOST, PUBLIC_PORT = "127.0.0.1", 7860  # Gradio's own defaults
ENV_NAMES = {"host": "GRADIO_SERVER_NAME", "port": "GRADIO_SERVER_PORT", "workers": "FMG_WORKERS"}
RATE = re.compile(r"^[1-9]\d*r/[sm]$")


@dataclass(frozen=True)
class Settings:
    """What the launcher and the proxy do; the comments are the README's table."""

    workers: int = 2  # Gradio worker processes, when FMG_WORKERS is how `--workers` mode was asked for
    host: str = PUBLIC_HOST  # the proxy's public address (GRADIO_SERVER_NAME)
    port: int = PUBLIC_PORT  # the proxy's public port (GRADIO_SERVER_PORT)
    rate: str = "20r/s"  # requests per client address, any path but static assets
    burst: int = 100  # requests above `rate` accepted at once before 429
    join_rate: str = "5r/s"  # queue joins (/gradio_api/queue/join, /gradio_api/call/) per address
    join_burst: int = 30  # joins above `join_rate` accepted at once (20 sessions submitting together fit)
    upload_rate: str = "2r/s"  # uploads (/gradio_api/upload) per address
    upload_burst: int = 10  # uploads above `upload_rate` accepted at once
    connections: int = 64  # open connections per address (each page or client session holds 1-2 streams)
    body_max: str = ""  # largest request body; empty: the app's own upload limit (app.MAX_UPLOAD)
    read_timeout_s: int = 3600  # how long a stream may stay silent (SSE sends heartbeats every 15 s)
    fail_timeout_s: int = 10  # a worker that fails a connection gets no new requests for this long
    processes: int = 1  # nginx worker processes (1 serves thousands of connections)
    access_log: bool = False  # nginx's access log, in the launcher's output
    worker_start_s: int = 180  # how long a worker may take to answer before the launcher gives up

    def env_name(self, name: str) -> str:
        return ENV_NAMES.get(name, f"FMG_PROXY_{name.upper()}")


def from_env(environ: dict[str, str] | None = None, **given: object) -> Settings:
    """Settings from the environment; `given` (e.g. workers from the command line) wins."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = env.get(Settings().env_name(f.name), "").strip()
        if f.name in given and given[f.name] is not None:
            values[f.name] = given[f.name]
        elif raw:
            values[f.name] = _typed(Settings().env_name(f.name), raw, type(getattr(Settings, f.name)))
    settings = Settings(**values)  # type: ignore[arg-type]
    for name in ("rate", "join_rate", "upload_rate"):
        if not RATE.match(getattr(settings, name)):
            raise ValueError(
                f"{settings.env_name(name)} must look like 20r/s or 30r/m, not {getattr(settings, name)!r}."
            )
    if settings.workers < 1:
        raise ValueError(f"--workers (or FMG_WORKERS) must be at least 1, not {settings.workers}.")
    return settings


def _typed(name: str, raw: str, kind: type) -> object:
    if kind is bool:
        if raw.lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            raise ValueError(f"{name} must be 1 or 0, not {raw!r}.")
        return raw.lower() in {"1", "true", "yes", "on"}
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name} must be a whole number, not {raw!r}.") from None
    return raw


def table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the README's table is made from this."""
    import inspect

    source = inspect.getsource(Settings)
    out = []
    for f in fields(Settings):
        line = next(x for x in source.splitlines() if x.strip().startswith(f"{f.name}:"))
        meaning = line.split("#", 1)[1].strip() if "#" in line else ""
        out.append((Settings().env_name(f.name), str(getattr(Settings, f.name)), meaning))
    return out
