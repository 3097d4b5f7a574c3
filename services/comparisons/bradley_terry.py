"""Bradley-Terry ratings from blind votes, with bootstrap 95% intervals.

One maximum-likelihood fit over every stored vote, so unlike online Elo the result does not
depend on the order in which the votes came. A vote expands into pairwise results as the Elo
update does: a win beats every other target of its comparison, a tie is a draw (half a win each
way) between every pair. A prior of one virtual draw per target against a reference at the
scale's centre keeps every rating finite (a target with only wins or only losses included).
Ratings are on the Elo scale: 400 / ln 10 points per logit, mean 1000.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np

SCALE = 400.0 / math.log(10.0)  # Elo points per logit: a 400-point gap is 10:1 odds
CENTRE = 1000.0
PRIOR = 1.0  # virtual draws per target against the reference
RESAMPLES = 200
TOLERANCE = 1e-9  # largest Newton step (in logits) at which a fit counts as converged
MAX_STEPS = 100
BATCH_CELLS = 4_000_000  # resamples fitted together are cut so their win matrices stay this small

Pair = tuple[str, str, float]  # (a, b, a's score: 1 a won, 0.5 a draw, 0 b won)
Vote = tuple[Sequence[str], str | None]  # (the compared targets, the winner; None for a tie)


def expand(vote: Vote) -> list[Pair]:
    """One vote's pairwise results: the winner against every other target, or a draw between every pair."""
    targets, winner = vote
    names = list(dict.fromkeys(targets))
    if winner is None:
        return [(a, b, 0.5) for a, b in itertools.combinations(names, 2)]
    if winner not in names:
        raise ValueError(f"The winner {winner!r} is not one of the compared targets.")
    return [(winner, other, 1.0) for other in names if other != winner]


def fit(pairs: Iterable[Pair], prior: float = PRIOR) -> dict[str, float]:
    """Each target's rating (Elo scale, mean 1000), best first, from pairwise results."""
    listed = list(pairs)
    names = sorted({name for a, b, _ in listed for name in (a, b)})
    if not names:
        return {}
    index = {name: i for i, name in enumerate(names)}
    wins = np.zeros((1, len(names), len(names)))
    for a, b, score in listed:
        wins[0, index[a], index[b]] += score
        wins[0, index[b], index[a]] += 1.0 - score
    ratings = _elo(_solve(wins, prior))[0]
    return dict(sorted(zip(names, ratings.tolist(), strict=True), key=lambda item: (-item[1], item[0])))


def fit_votes(votes: Iterable[Vote], prior: float = PRIOR) -> dict[str, float]:
    """`fit` over the pairwise results of whole votes."""
    return fit((pair for vote in votes for pair in expand(vote)), prior)


def bootstrap(
    votes: Sequence[Vote], resamples: int = RESAMPLES, seed: int = 0, prior: float = PRIOR
) -> dict[str, tuple[float, float]]:
    """Each target's 95% interval (2.5th and 97.5th percentile ratings) over `resamples` refits
    on the votes drawn with replacement. The votes are put in a canonical order first, so the
    intervals, like the fit, do not depend on the order they are given in. A target missing
    from a resample keeps the prior alone there (rating at the centre of that resample)."""
    canonical = sorted(
        ((tuple(dict.fromkeys(targets)), winner) for targets, winner in votes),
        key=lambda vote: (sorted(vote[0]), vote[1] is not None, vote[1] or "", vote[0]),
    )
    names = sorted({name for targets, _ in canonical for name in targets})
    if not names or resamples < 1:
        return {}
    index = {name: i for i, name in enumerate(names)}
    n, size = len(canonical), len(names)
    # every pairwise result once, as (vote, cell of the flattened win matrix, score)
    game_vote, game_cell, game_score = [], [], []
    for v, vote in enumerate(canonical):
        for a, b, score in expand(vote):
            i, j = index[a], index[b]
            game_vote += [v, v]
            game_cell += [i * size + j, j * size + i]
            game_score += [score, 1.0 - score]
    votes_of, cells, scores = np.array(game_vote), np.array(game_cell), np.array(game_score)
    rng = np.random.default_rng(seed)
    batch = max(1, BATCH_CELLS // (size * size))
    ratings = []
    for start in range(0, resamples, batch):
        count = min(batch, resamples - start)
        drawn = rng.multinomial(n, np.full(n, 1.0 / n), size=count)  # times each vote is drawn, per resample
        weights = drawn[:, votes_of] * scores  # (count, games)
        offsets = (np.arange(count) * size * size)[:, None]
        wins = np.bincount((offsets + cells).ravel(), weights.ravel(), minlength=count * size * size)
        ratings.append(_elo(_solve(wins.reshape(count, size, size), prior)))
    low, high = np.percentile(np.concatenate(ratings), [2.5, 97.5], axis=0)
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(names, low, high, strict=True)}


def _elo(theta: np.ndarray) -> np.ndarray:
    return CENTRE + SCALE * (theta - theta.mean(axis=-1, keepdims=True))


def _solve(wins: np.ndarray, prior: float) -> np.ndarray:
    """Log-strengths (logits) maximising the penalised likelihood, for a batch of win matrices
    (`wins[r, i, j]`: how often i beat j in batch item r). Damped Newton steps: they converge
    quadratically, where the MM iteration crawls once a target has only wins or the prior alone
    pins the overall level."""
    batch, size, _ = wins.shape
    games = wins + wins.transpose(0, 2, 1)
    won = wins.sum(axis=2)
    theta = np.zeros((batch, size))
    value = _objective(theta, wins, prior)
    eye = np.eye(size)
    for _ in range(MAX_STEPS):
        diff = theta[:, :, None] - theta[:, None, :]
        p = _sigmoid(diff)  # p[r, i, j]: chance that i beats j
        q = _sigmoid(theta)  # chance of beating the reference
        gradient = won - (games * p).sum(axis=2) + prior * (0.5 - q)
        weight = games * p * (1.0 - p)
        curvature = (
            eye * (weight.sum(axis=2) + prior * q * (1.0 - q))[:, :, None] - weight
        )  # minus the Hessian: positive definite thanks to the prior
        step = np.linalg.solve(curvature, gradient[:, :, None])[:, :, 0]
        scale = np.ones(batch)
        for _ in range(60):  # halve the step where it would lower the likelihood
            trial = theta + scale[:, None] * step
            trial_value = _objective(trial, wins, prior)
            worse = trial_value < value - 1e-12 * np.abs(value)
            if not worse.any():
                break
            scale = np.where(worse, scale / 2.0, scale)
        theta, value = trial, trial_value
        if np.abs(scale[:, None] * step).max() < TOLERANCE:
            break
    return theta


def _objective(theta: np.ndarray, wins: np.ndarray, prior: float) -> np.ndarray:
    """The penalised log-likelihood per batch item."""
    diff = theta[:, :, None] - theta[:, None, :]
    data = -(wins * np.logaddexp(0.0, -diff)).sum(axis=(1, 2))
    reference = -0.5 * prior * (np.logaddexp(0.0, -theta) + np.logaddexp(0.0, theta)).sum(axis=1)
    return data + reference


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
