"""How results and failures are shown: one stats line per result, one sentence per error.

`shows_errors` wraps every event handler: project errors become a `gr.Error` with their own
message; anything unexpected is logged in full on the server and shown as one plain sentence,
so no traceback ever reaches the page.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import math
from collections.abc import Callable

import gradio as gr

from adapters.errors import FMError
from adapters.keys import redact
from adapters.types import Completion, Result
from services import boundary

log = logging.getLogger("fm_gallery.demos")
UNEXPECTED = "Something went wrong on the server; it has been logged. Try again, or pick another provider."


def user_error(err: BaseException) -> gr.Error:
    """The `gr.Error` to raise for `err`. Gradio renders its message as HTML: it is escaped, since
    messages may quote user input (a file name, a label)."""
    if isinstance(err, FMError):
        return gr.Error(html.escape(boundary.scrub(redact(str(err))), quote=False), print_exception=False)
    if isinstance(err, gr.Error):
        return err
    log.error("unexpected error: %s", redact(f"{type(err).__name__}: {err}"), exc_info=err)
    return gr.Error(UNEXPECTED, print_exception=False)


def shows_errors(fn: Callable) -> Callable:
    """Turn every exception from a handler (plain or generator) into a clear `gr.Error`."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - every failure is shown to the user as one sentence
                raise user_error(err) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - every failure is shown to the user as one sentence
            raise user_error(err) from None

    return wrapper


def stats(result: Result) -> str:
    """One line: provider and model, latency, first token, tokens, cost."""
    parts = [f"**{result.provider}** · `{boundary.shown_model(result.model)}`"]
    if result.served_by and result.served_by != result.provider:
        parts.append(f"served by {result.served_by}")
    parts.append(f"{result.latency_s:.2f} s")
    if isinstance(result, Completion) and result.ttft_s is not None:
        parts.append(f"first token {result.ttft_s:.2f} s")
    usage = result.usage
    if usage and (usage.input_tokens is not None or usage.output_tokens is not None):
        parts.append(f"{_n(usage.input_tokens)} in / {_n(usage.output_tokens)} out tokens")
    if usage and usage.images:
        parts.append(f"{usage.images} image{'s' if usage.images > 1 else ''}")
    if result.cost_usd is None:
        parts.append("cost unknown")
    else:
        parts.append("no cost" if result.cost_usd == 0 else usd(result.cost_usd))
    line = " · ".join(parts)
    if isinstance(result, Completion) and result.cut:
        line += f"\n\n⚠️ The reply was cut off: {result.cut}"
    return line


SMALLEST_USD = 1e-8  # below this an estimate shows as "<$0.00000001"


def usd(cost: float) -> str:
    """An estimated cost in dollars: three significant digits however small ("$0.00000285",
    "$0.0123", "$0.02"), cents from a dollar up ("$12.35"); below $0.00000001, "<$0.00000001".
    A fixed number of decimals would show a call of a few tokens as "$0.00000"."""
    if cost >= 1:
        return f"${cost:,.2f}"
    if cost < SMALLEST_USD:
        return f"<${SMALLEST_USD:.8f}" if cost > 0 else "$0.00"
    decimals = max(2, 2 - math.floor(math.log10(cost)))
    text = f"{cost:.{decimals}f}"
    if "." in text:  # no trailing zeros past the cents: "$0.02", not "$0.0200"
        whole, fraction = text.split(".")
        text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    return f"${text}"


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"
