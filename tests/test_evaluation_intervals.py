"""Confidence intervals: Wilson for proportions (pass/fail scores, accuracy, attack success), the
bootstrap for other means, and the matrix naming which one each row uses."""

from __future__ import annotations

import math

import pytest

from services.evaluation import report, stats
from services.evaluation.store import Cell


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (4, 4, 0.5101, 1.0),  # a bootstrap says 1.00-1.00, the normal approximation too
        (0, 10, 0.0, 0.2775),  # a bootstrap says 0.00-0.00
        (1, 30, 0.0059, 0.1667),  # the normal approximation goes below 0
        (15, 20, 0.5313, 0.8881),
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_wilson_matches_known_values(successes, n, low, high):
    share, got_low, got_high = stats.wilson_ci(successes, n)
    assert share == successes / n
    assert got_low == pytest.approx(low, abs=1e-4) and got_high == pytest.approx(high, abs=1e-4)


def test_wilson_widens_with_confidence_and_refuses_nonsense():
    _, low90, high90 = stats.wilson_ci(7, 20, 0.90)
    _, low99, high99 = stats.wilson_ci(7, 20, 0.99)
    assert low99 < low90 < 0.35 < high90 < high99
    assert all(math.isnan(v) for v in stats.wilson_ci(0, 0))
    with pytest.raises(ValueError):
        stats.wilson_ci(5, 4)
    with pytest.raises(ValueError):
        stats.wilson_ci(1, 4, confidence=1.0)


def test_the_bootstrap_can_draw_every_value_the_last_one_included():
    """One value in twenty is 5 and it is the last: a resampler that never draws the last value
    (numpy's integers(0, n - 1) excludes n - 1) would give 0.00-0.25, a zero-width upper side."""
    values = [0.0] * 19 + [5.0]
    mean, low, high = stats.bootstrap_ci(values, resamples=4000, seed=0)
    assert mean == 0.25
    assert low == 0.0 and high >= 0.75  # two draws of the 5 or more: about 26% of resamples
    first = stats.bootstrap_ci([5.0] + [0.0] * 19, resamples=4000, seed=0)
    assert first[2] >= 0.75  # the same where the odd value comes first


def test_interval_picks_wilson_for_shares_and_the_bootstrap_for_other_means():
    assert stats.interval([1.0, 1.0, 1.0, 1.0]) == pytest.approx((1.0, 0.5101, 1.0, "Wilson"), abs=1e-4)
    mean, low, high, method = stats.interval([0.2, 0.9, 0.4, 0.7, 1.0])
    assert method == "bootstrap" and low < mean < high
    assert stats.interval([0.0, math.nan, 1.0])[3] == "Wilson"  # NaN: an item that was not scored
    assert stats.method_label("Wilson") == "Wilson 95%"


def cell(item: str, score: float | None, variant: str = "direct", error: str | None = None, **extra) -> Cell:
    return Cell(item, "t", variant, "out", None, score, "why", 0.1, 1, 1, None, 1, 0, error, extra or None)


def test_the_matrix_names_the_method_and_stays_honest_at_the_extremes():
    cells = [cell(f"i{n}", 1.0) for n in range(4)] + [cell(f"j{n}", 0.25 * (n % 5), "judged") for n in range(10)]
    rows = {r.variant: r for r in report.matrix(cells)}
    table = {row[0]: dict(zip(report.MATRIX_COLUMNS, row, strict=True)) for row in report.table(list(rows.values()))}
    assert table["direct"]["95% CI"] == "0.51-1.00" and table["direct"]["interval"] == "Wilson 95%"
    assert table["judged"]["interval"] == "bootstrap 95%"
    assert rows["judged"].low < rows["judged"].score < rows["judged"].high


def test_attack_success_carries_its_wilson_interval():
    cells = [cell(f"i{n}", 0.0 if n == 0 else 1.0, attack=n == 0) for n in range(30)]
    row = report.matrix(cells)[0]
    assert row.attack_rate == pytest.approx(1 / 30)
    assert row.attack_low == pytest.approx(0.0059, abs=1e-4) and row.attack_high == pytest.approx(0.1667, abs=1e-4)
    assert dict(zip(report.MATRIX_COLUMNS, report.table([row])[0], strict=True))["attack success"] == "3% (1-17%)"


def test_a_row_with_no_scored_cell_has_no_interval():
    row = report.matrix([cell("a", None, error="401 Unauthorized")])[0]
    assert row.n == 0 and row.errors == 1
    shown = dict(zip(report.MATRIX_COLUMNS, report.table([row])[0], strict=True))
    assert shown["95% CI"] == "" and shown["interval"] == ""
