"""Estimated cost of a call from token or image usage and the price list in `prices.toml`."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from adapters.types import Usage

PRICES_FILE = Path(__file__).with_name("prices.toml")
FREE_PROVIDERS = frozenset({"local"})


@functools.cache
def price_table() -> dict[str, dict[str, dict[str, float]]]:
    with PRICES_FILE.open("rb") as f:
        return tomllib.load(f)


def estimate_cost(provider: str, model: str, usage: Usage | None) -> float | None:
    """US dollars, or None where the price or the usage is unknown (never a silent zero)."""
    if provider in FREE_PROVIDERS:
        return 0.0
    price = price_table().get(provider, {}).get(model)
    if price is None or usage is None:
        return None
    parts = [
        (usage.input_tokens, price.get("input_per_1m"), 1e-6),
        (usage.output_tokens, price.get("output_per_1m"), 1e-6),
        (usage.images, price.get("per_image"), 1.0),
    ]
    cost, known = 0.0, False
    for amount, rate, scale in parts:
        if amount is None:
            continue
        if rate is None:
            return None  # used something we have no price for
        cost, known = cost + amount * rate * scale, True
    return cost if known else None
