"""One fault policy for every hosted vendor.

- One deadline per call (`Settings.timeout_s`) covering every attempt and every wait; streams
  have a first-token deadline instead (`first_token_timeout_s`), then an idle deadline per chunk.
- Retries only for retryable faults (429, 408, 409, 5xx, connection errors, timeouts), at most
  `max_attempts` in total; the SDKs' own retries must be switched off (`max_retries=0`).
- Backoff doubles from 0.5 s, capped, with jitter; a server's Retry-After (seconds, or an HTTP
  date read against the response's `Date`) wins when it fits inside the deadline. No retry for
  400/401/403/404/422.
- Every fault becomes a `ProviderError` whose message is one sentence naming the provider and
  what to do; any key that might appear in it is redacted.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from adapters import config, keys
from adapters.errors import FMError, ProviderError, ProviderTimeout

log = logging.getLogger("fm_gallery.faults")
T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def message_for(
    label: str, status: int | None, key_var: str | None = None, detail: str = "", retry_after: float | None = None
) -> str:
    """The one sentence a user sees for an HTTP status from `label` (e.g. "OpenAI"); a 429 says
    how long to wait when the server said (`retry_after`, seconds)."""
    detail = keys.redact(" ".join(detail.split()))[:200]
    if status in (401, 403):
        fix = f"check {key_var}" if key_var else "check the API key"
        return f"{label} rejected the API key ({status}): {fix}."
    if status == 404:
        return f"{label} does not know that model or endpoint (404): check the model name{_tail(detail)}."
    if status == 429:
        return f"{label} is rate limiting requests (429): {_wait(retry_after)} and try again{_tail(detail)}."
    if status in (400, 413, 422):
        return f"{label} rejected the request ({status}){_tail(detail, ': ')}."
    if status is not None and status >= 500:
        return f"{label} had a server error ({status}): try again later."
    if status is not None:
        return f"{label} answered with an error ({status}){_tail(detail, ': ')}."
    return f"{label} failed{_tail(detail, ': ')}."


def _tail(detail: str, sep: str = " - ") -> str:
    return f"{sep}{detail.rstrip('.')}" if detail else ""


def _wait(seconds: float | None) -> str:
    """How long to wait, in the words of a rate-limit message: the server's Retry-After if given."""
    if seconds is None:
        return "wait a minute"
    if seconds < 1:
        return "wait a second"
    if seconds < 90:
        return f"wait {math.ceil(seconds)} s"
    return f"wait about {math.ceil(seconds / 60)} min"


def http_error(
    label: str, status: int, *, key_var: str | None = None, detail: str = "", retry_after: float | None = None
) -> ProviderError:
    return ProviderError(
        message_for(label, status, key_var, detail, retry_after),
        provider=label,
        status=status,
        retryable=status in RETRYABLE_STATUS,
        retry_after=retry_after,
    )


def timeout_error(label: str, seconds: float, what: str = "answer", setting: str = "FMG_TIMEOUT_S") -> ProviderTimeout:
    return ProviderTimeout(
        f"{label} did not {what} within {seconds:g} s: try again, or raise the deadline with {setting}.",
        provider=label,
    )


def connection_error(label: str) -> ProviderError:
    return ProviderError(
        f"Could not connect to {label}: check the network and the base URL, then try again.",
        provider=label,
        retryable=True,
    )


def cut_error(label: str) -> ProviderError:
    """The server answered but closed the connection before the reply was complete."""
    return ProviderError(
        f"{label} closed the connection before the answer was complete: try again.",
        provider=label,
        retryable=True,
    )


def stalled_error(label: str, idle_s: float) -> ProviderTimeout:
    """A stream that sent part of its answer, then nothing for `idle_s` (its idle deadline)."""
    return ProviderTimeout(f"{label} stopped sending for {math.ceil(idle_s)} s mid-answer: try again.", provider=label)


def malformed_error(label: str) -> ProviderError:
    return ProviderError(f"{label} sent a response this app could not read: try again later.", provider=label)


def session_aware(
    classify: Callable[[BaseException], FMError], api_key: str | None
) -> Callable[[BaseException], FMError]:
    """With a key typed for this session, a rejected key points at that key, not an env var."""
    if not api_key:
        return classify

    def converted(exc: BaseException) -> FMError:
        err = classify(exc)
        if isinstance(err, ProviderError) and err.status in (401, 403):
            return ProviderError(
                message_for(err.provider, err.status, "the key typed for this session"),
                provider=err.provider,
                status=err.status,
            )
        return err

    return converted


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None.

    An HTTP date is counted from the response's own `Date` header where it has one, so that both
    times come from the server's clock: against this machine's clock, a server whose clock is
    behind would ask for a wait that is already over and the retry would come at once."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = _http_date(value)
    if when is None:
        return None
    now = _http_date(date) if date else None
    return max(0.0, when - (now if now is not None else time.time()))


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The wait a response's headers ask for (`Retry-After`, with `Date` for an HTTP date), or None.
    `headers`: any mapping whose `get` finds lower-case names (httpx headers, a lower-cased dict)."""
    if not headers:
        return None
    return parse_retry_after(headers.get("retry-after"), headers.get("date"))


def _http_date(value: str) -> float | None:
    """A POSIX timestamp from an HTTP date (IMF-fixdate, RFC 850 or asctime; always UTC), or None."""
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime dates carry no zone: HTTP dates are UTC
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def backoff(attempt: int, cap: float) -> float:
    """Wait before retry number `attempt` (1-based): 0.5, 1, 2, ... s with +-20 % jitter."""
    return min(cap, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


def call(
    label: str,
    attempt: Callable[[float], T],
    classify: Callable[[BaseException], FMError],
    *,
    timeout_s: float | None = None,
    what: str = "answer",
    setting: str = "FMG_TIMEOUT_S",
    settings: config.Settings | None = None,
) -> T:
    """Run `attempt(seconds_left)` under the policy; `classify` turns SDK exceptions into ours.
    `settings`: the caller's, if it has just read them (reading them costs a stat and env look-ups)."""
    settings = settings or config.settings()
    budget = timeout_s if timeout_s is not None else settings.timeout_s
    deadline = time.monotonic() + budget
    for number in range(1, settings.max_attempts + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            raise timeout_error(label, budget, what, setting)
        try:
            return attempt(left)
        except FMError as err:
            error = err
        except Exception as exc:  # noqa: BLE001 - every SDK exception is converted here
            error = classify(exc)
        if isinstance(error, ProviderTimeout):
            raise timeout_error(label, budget, what, setting)  # the attempt had all the time left
        if not (isinstance(error, ProviderError) and error.retryable) or number == settings.max_attempts:
            raise error
        wait = error.retry_after if error.retry_after is not None else backoff(number, settings.max_backoff_s)
        if time.monotonic() + wait >= deadline:
            raise error
        log.info("%s: attempt %d failed (%s); retrying in %.2f s", label, number, error.status or "no status", wait)
        time.sleep(wait)
    raise AssertionError("unreachable")


def stream(
    label: str,
    open_stream: Callable[[float], Iterator[T]],
    classify: Callable[[BaseException], FMError],
) -> Iterator[T]:
    """Open a stream under the policy and yield its events.

    Opening and the first event are retried like `call`, within `first_token_timeout_s`; once an
    event has been yielded nothing is retried: a later fault is raised as a `ProviderError`, and
    `CompletionStream` keeps the text received so far and marks it as cut.
    """
    settings = config.settings()
    idle_s = settings.first_token_timeout_s

    def first(seconds_left: float) -> tuple[Iterator[T], list[T]]:
        nonlocal idle_s
        idle_s = seconds_left  # the per-read timeout of the attempt that answers: the idle deadline
        events = iter(open_stream(seconds_left))
        try:
            return events, [next(events)]
        except StopIteration:
            return events, []

    events, head = call(
        label,
        first,
        classify,
        timeout_s=settings.first_token_timeout_s,
        settings=settings,
        what="start answering",
        setting="FMG_FIRST_TOKEN_TIMEOUT_S",
    )
    yield from head
    try:
        yield from events
    except FMError:
        raise
    except Exception as exc:  # noqa: BLE001
        error = classify(exc)
        if isinstance(error, ProviderTimeout):  # a read timed out after the stream had started
            error = stalled_error(label, idle_s)
        raise error from None
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
