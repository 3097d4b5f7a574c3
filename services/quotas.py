"""Visitor quotas in public mode: hosted calls per minute, estimated dollars per day (per visitor
and for the owner's keys in all), votes per minute, and one local-model call at a time.

Counts live in the `limits` library's storage: in memory by default, in Redis when
`FMG_RATE_LIMIT_STORAGE=redis://…`, so replicas share them. Calls and votes use a moving window;
dollars (counted in micro-dollars) a sliding-window counter, since a moving window stores one
entry per unit. Each hosted call is charged its worst-case estimate before it is made: a call
that would pass a limit is refused with one sentence naming the limit and when it resets, and
nothing is sent to the vendor.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from adapters.errors import BadInput, FMError
from adapters.prices import FREE_PROVIDERS, price_table
from services import public
from services.visitors import Visitor

IMAGE_INPUT_TOKENS = 1_500  # what a vision model may bill for one input image, at most
CHARS_PER_TOKEN = 3  # fewer than most tokenizers average: the estimate errs high
MICRO = 1_000_000
COUNTED_SCOPES = frozenset(
    {"usd", "upload_kib", "megapixels"}
)  # large counts: a sliding-window counter, not a moving window


class LimitReached(FMError):
    """A visitor (or the Space as a whole) has used up a quota; nothing was sent to a vendor."""


@dataclass(frozen=True)
class Work:
    """What one vendor call may consume, for its worst-case cost."""

    input_chars: int = 0
    output_tokens: int = 0
    images_in: int = 0
    images_out: int = 0
    requests: int = 1  # vendor requests the call makes (an embedder splits a corpus into batches)


def estimate_usd(provider: str, model: str, work: Work) -> float | None:
    """The most the call may cost at list prices (`adapters/prices.toml`); None if unpriced."""
    if provider in FREE_PROVIDERS:
        return 0.0
    price = price_table().get(provider, {}).get(model)
    if price is None:
        return None
    tokens_in = math.ceil(work.input_chars / CHARS_PER_TOKEN) + work.images_in * IMAGE_INPUT_TOKENS
    needs = [
        (tokens_in, "input_per_1m", 1e-6),
        (work.output_tokens, "output_per_1m", 1e-6),
        (work.images_out, "per_image", 1.0),
    ]
    cost = 0.0
    for amount, name, scale in needs:
        if amount:
            if name not in price:
                return None
            cost += amount * price[name] * scale
    return cost


class Quotas:
    """The counters, in one `limits` storage (made on first use)."""

    def __init__(self, storage_uri: str):
        from limits import strategies
        from limits.storage import storage_from_string

        self.uri = storage_uri
        storage = storage_from_string(storage_uri)
        self._moving = strategies.MovingWindowRateLimiter(storage)
        self._counter = strategies.SlidingWindowCounterRateLimiter(storage)

    def charge(self, visitor: Visitor, provider: str, model: str, work: Work, own_key: bool) -> None:
        """Count one hosted call, or raise `LimitReached` (and count nothing more)."""
        from limits import RateLimitItemPerDay, RateLimitItemPerMinute

        settings = public.limits()
        per_minute = RateLimitItemPerMinute(max(1, settings.calls_per_minute))
        if not self._moving.hit(per_minute, "calls", visitor.quota_key, cost=max(1, work.requests)):
            raise LimitReached(
                f"You have made {settings.calls_per_minute} hosted calls in the last minute, the "
                f"limit on this public Space: try again in {self._wait(per_minute, visitor)}."
            )
        if own_key:
            return  # the visitor's own key pays: the owner's budgets are not touched
        estimate = estimate_usd(provider, model, work)
        if estimate is None:
            if settings.allow_unpriced:
                return
            raise LimitReached(
                f"{provider}:{model} has no price in this Space's price list, so it cannot run on "
                "the owner's key: pick another model, or type your own key for it."
            )
        cost = max(1, math.ceil(estimate * MICRO))
        mine = RateLimitItemPerDay(max(1, round(settings.visitor_usd_per_day * MICRO)))
        everyone = RateLimitItemPerDay(max(1, round(settings.global_usd_per_day * MICRO)))
        if not self._counter.test(mine, "usd", visitor.quota_key, cost=cost):
            raise LimitReached(
                f"This call may cost up to ${estimate:.4g}, more than is left of your "
                f"${settings.visitor_usd_per_day:g} daily budget on this public Space: try a "
                f"shorter request, or again in {self._wait(mine, visitor, 'usd')}."
            )
        if not self._counter.test(everyone, "usd", "all", cost=cost):
            raise LimitReached(
                f"This public Space has spent its ${settings.global_usd_per_day:g} daily budget "
                "for hosted models: use a local model, your own key, or come back tomorrow."
            )
        self._counter.hit(mine, "usd", visitor.quota_key, cost=cost)
        self._counter.hit(everyone, "usd", "all", cost=cost)

    def check(self, visitor: Visitor) -> None:
        """Refuse at once a visitor who has no hosted call left this minute (counts nothing)."""
        from limits import RateLimitItemPerMinute

        settings = public.limits()
        per_minute = RateLimitItemPerMinute(max(1, settings.calls_per_minute))
        if not self._moving.test(per_minute, "calls", visitor.quota_key):
            raise LimitReached(
                f"You have made {settings.calls_per_minute} hosted calls in the last minute, the "
                f"limit on this public Space: try again in {self._wait(per_minute, visitor)}."
            )

    def join(self, visitor: Visitor) -> str | None:
        """Count one event a visitor starts; the sentence that refuses it when over the limit."""
        from limits import RateLimitItemPerMinute

        settings = public.limits()
        item = RateLimitItemPerMinute(max(1, settings.events_per_minute))
        if self._moving.hit(item, "events", visitor.quota_key):
            return None
        return (
            f"You have started {settings.events_per_minute} requests in the last minute, the limit on this public "
            f"Space: try again in {self._wait(item, visitor, 'events')}."
        )

    def vote(self, visitor: Visitor) -> None:
        from limits import RateLimitItemPerMinute

        settings = public.limits()
        item = RateLimitItemPerMinute(max(1, settings.votes_per_minute))
        if not self._moving.hit(item, "votes", visitor.quota_key):
            raise LimitReached(
                f"You have cast {settings.votes_per_minute} votes in the last minute, the limit on "
                f"this public Space: try again in {self._wait(item, visitor, 'votes')}."
            )

    def decode(self, visitor: Visitor, pixels: int) -> None:
        """Count the megapixels a request is about to decode: at most `decode_megapixels` per
        request and `decode_megapixels_per_minute` per visitor, or refuse before any is decoded."""
        from limits import RateLimitItemPerMinute

        settings = public.limits()
        megapixels = max(1, math.ceil(pixels / 1_000_000))
        if megapixels > settings.decode_megapixels:
            raise BadInput(
                f"These images hold {megapixels:,} megapixels; one request on this public Space decodes at most "
                f"{settings.decode_megapixels:,}: use fewer or smaller images."
            )
        item = RateLimitItemPerMinute(max(1, settings.decode_megapixels_per_minute))
        if not self._counter.hit(item, "megapixels", visitor.quota_key, cost=megapixels):
            raise LimitReached(
                f"You have had {settings.decode_megapixels_per_minute:,} megapixels decoded in the last minute, "
                f"the limit on this public Space: try again in {self._wait(item, visitor, 'megapixels')}."
            )

    def upload(self, visitor: Visitor, nbytes: int) -> None:
        """Count an upload's bytes (in KiB) against the visitor's hourly budget, or refuse it."""
        from limits import RateLimitItemPerHour

        settings = public.limits()
        item = RateLimitItemPerHour(max(1, settings.upload_mb_per_hour) * 1024)
        if not self._counter.hit(item, "upload_kib", visitor.quota_key, cost=max(1, math.ceil(nbytes / 1024))):
            raise LimitReached(
                f"You have uploaded {settings.upload_mb_per_hour} MB in the last hour, the limit on this "
                f"public Space: try again in {self._wait(item, visitor, 'upload_kib')}."
            )

    def _wait(self, item: Any, visitor: Visitor, scope: str = "calls") -> str:
        strategy = self._counter if scope in COUNTED_SCOPES else self._moving
        stats = strategy.get_window_stats(item, scope, visitor.quota_key)
        seconds = max(1, math.ceil(stats.reset_time - time.time()))
        if seconds < 120:
            return f"{seconds} s"
        if seconds < 7200:
            return f"{math.ceil(seconds / 60)} minutes"
        return f"{math.ceil(seconds / 3600)} hours"


_lock = threading.Lock()
_quotas: Quotas | None = None
_local_turns: set[str] = set()


def quotas() -> Quotas:
    """The process's counters, rebuilt when the storage setting changes."""
    global _quotas
    uri = public.limits().rate_limit_storage or "memory://"
    with _lock:
        if _quotas is None or _quotas.uri != uri:
            _quotas = Quotas(uri)
        return _quotas


def charge(visitor: Visitor, provider: str, model: str, work: Work, own_key: bool) -> None:
    """Public mode: count a call before it is made (local calls cost nothing); private: nothing."""
    if public.enabled() and provider not in FREE_PROVIDERS:
        quotas().charge(visitor, provider, model, work, own_key)


def check(visitor: Visitor, provider: str) -> None:
    """Public mode: refuse before any work (decoding an image, say) a call that would be refused."""
    if public.enabled() and provider not in FREE_PROVIDERS:
        quotas().check(visitor)


def vote(visitor: Visitor) -> None:
    if public.enabled():
        quotas().vote(visitor)


@contextmanager
def local_turn(visitor: Visitor, uses_local: bool = True) -> Iterator[None]:
    """Public mode: at most one local-model call per visitor at a time, so one visitor cannot
    queue up the one device slot that everyone shares; a second is refused at once."""
    if not (uses_local and public.enabled()):
        yield
        return
    with _lock:
        if visitor.quota_key in _local_turns:
            raise LimitReached(
                "Your previous local-model call is still running, and this public Space runs one "
                "at a time per visitor: wait for it to finish."
            )
        _local_turns.add(visitor.quota_key)
    try:
        yield
    finally:
        with _lock:
            _local_turns.discard(visitor.quota_key)


def upload(visitor: Visitor, nbytes: int) -> None:
    """Public mode: count an upload's bytes before Gradio writes them (private mode: nothing)."""
    if public.enabled():
        quotas().upload(visitor, nbytes)


def decode(visitor: Visitor, pixels: int) -> None:
    """Public mode: admit `pixels` to be decoded for this visitor, or refuse (private: nothing)."""
    if public.enabled():
        quotas().decode(visitor, pixels)
