"""Public mode: the app runs as a public Space holding the owner's keys.

On where `SPACE_ID` is set (Hugging Face Spaces sets it) or `FMG_PUBLIC=1`; `FMG_PUBLIC=0` turns
it off. Every setting comes from the environment (`FMG_PUBLIC_<NAME>`), else the `[public]`
section of the TOML config, else the defaults below; read when asked, so a test (or the owner
editing the config) changes them without a restart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from adapters import config
from adapters.errors import BadInput
from adapters.types import Task

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
# Spaces' proxy reaches the app from a private address; elsewhere no proxy is trusted by default.
SPACES_PROXIES = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"


def enabled() -> bool:
    raw = os.environ.get("FMG_PUBLIC", "").strip().lower()
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    return bool(os.environ.get("SPACE_ID", "").strip())


@dataclass(frozen=True)
class Limits:
    """What one visitor may spend and ask for in public mode."""

    calls_per_minute: int = 10  # hosted vendor calls per visitor (a 6-target Compare is 6)
    visitor_usd_per_day: float = 0.25  # estimated dollars on the owner's keys, per visitor
    global_usd_per_day: float = 5.0  # estimated dollars on the owner's keys, all visitors together
    allow_unpriced: bool = False  # may a visitor call a hosted model with no price in prices.toml?
    events_per_visitor: int = 4  # events queued or running at once per visitor
    events_per_minute: int = 60  # events a visitor may start per minute (a page load starts a few)
    votes_per_minute: int = 6
    max_tokens: int = 512
    steps: int = 4
    image_side: int = 768  # width and height of generated images
    corpus_chars: int = 40_000  # a pasted or uploaded search corpus
    evaluation_calls: int = 200  # model calls one evaluation may make (items x targets x variants x samples)
    keep_uploads: bool = False  # keep visitors' uploaded images in the run log
    trusted_proxies: str = ""  # who may set X-Forwarded-For (uvicorn's forwarded_allow_ips)
    rate_limit_storage: str = "memory://"  # or redis://host:port, shared by replicas
    admins: str = ""  # Hugging Face user names (comma separated) who see every run, besides the Space's owner
    decode_megapixels: int = 400  # pixels one request may have decoded (image sets, from their headers first)
    decode_megapixels_per_minute: int = 800  # and one visitor per minute
    scoring_seconds: int = 30  # the scorer's own time (patterns, schemas) for one whole evaluation
    heavy_jobs: int = 2  # image sets, collections and evaluations running at once, one per visitor
    upload_mb_per_hour: int = 200  # bytes a visitor may upload per hour (files wait an hour in the temp folder)
    temp_folder_mb: int = 4096  # uploads are refused while Gradio's upload folder holds this much
    ipv6_prefix: int = 64  # an IPv6 visitor's quota covers this prefix (whoever has a /64 has all of it)


def limits() -> Limits:
    section = config.config_file().get("public", {})
    values: dict[str, object] = {}
    for f in fields(Limits):
        raw = os.environ.get(f"FMG_PUBLIC_{f.name.upper()}")
        if raw is None and f.name == "rate_limit_storage":
            raw = os.environ.get("FMG_RATE_LIMIT_STORAGE")
        if raw is None and f.name == "trusted_proxies":
            raw = os.environ.get("FMG_TRUSTED_PROXIES")
        value = raw if raw is not None else section.get(f.name)
        if value is not None:
            values[f.name] = _typed(f.name, value, type(getattr(Limits, f.name)))
    if "trusted_proxies" not in values and os.environ.get("SPACE_ID", "").strip():
        values["trusted_proxies"] = SPACES_PROXIES
    return Limits(**values)  # type: ignore[arg-type]


def _typed(name: str, value: object, kind: type) -> object:
    try:
        if kind is bool:
            text = str(value).strip().lower()
            if text not in TRUE | FALSE:
                raise ValueError(text)
            return text in TRUE
        if kind is str:
            return str(value).strip()
        number = kind(value)
        if number < 0:
            raise ValueError(value)
        return number
    except (TypeError, ValueError):
        raise BadInput(
            f"The public-mode setting {name} has an unusable value {value!r}: fix FMG_PUBLIC_"
            f"{name.upper()} or [public] {name} in fm-gallery.toml."
        ) from None


def listed_models(provider: str, task: Task, default: str | None) -> set[str]:
    """The models the owner lets visitors pick for `provider` and `task`: `[public.models.<provider>]
    <task> = [...]` in the TOML config, else the provider's configured `default`."""
    listed = config.config_file().get("public", {}).get("models", {}).get(provider, {}).get(task.value)
    if isinstance(listed, str):
        listed = [listed]
    if listed:
        return {str(m).strip() for m in listed if str(m).strip()}
    return {default} if default else set()
