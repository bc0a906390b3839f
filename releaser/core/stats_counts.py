"""Anytime-valid tests on event counts: candidate/baseline rate ratio, and a rate against a limit.

Rate ratio (errors, slow requests). Between two looks the traffic gives a batch with
``n_c`` candidate and ``n_b`` baseline requests, ``x_c`` and ``x_b`` events, and candidate
share ``w = n_c / (n_c + n_b)``. Conditional on the batch's request counts and its total
events ``x = x_c + x_b``, with per-request event rates in ratio ``rho`` (candidate/baseline)::

    x_c ~ Binomial(x, rho * w / (rho * w + 1 - w))               (Poisson model)

so the batch's log likelihood ratio against ``rho = 1`` is, with ``eta = log rho``::

    l(eta) = x_c * eta - x * log(1 + w * (exp(eta) - 1))

Summed over batches it is the log of a martingale for every ``eta``, whatever the shares
and the baseline rate do from batch to batch; the share is the realised one, so unequal
and changing traffic (5% then 25%) is handled by conditioning, and a common shock (an
upstream outage) shifts ``x``, not the label split. For Bernoulli requests the true null
law is hypergeometric, which is smaller in convex order than the binomial (Hoeffding
1963), so each factor still has mean <= 1: the test is valid, slightly conservative. For
``rho <= 1`` (no regression) each factor with ``eta > 0`` has mean <= 1 (monotone
likelihood ratio), so the null is composite.

The e-value mixes ``exp(l)`` over ``eta`` on a fixed grid (``ETA_GRID``) with a half-normal
prior (scale 1) on ``eta > 0``: a finite mixture of test supermartingales, so by Ville's
inequality P(ever >= 1/alpha | no regression) <= alpha. The state is the grid of summed
log likelihoods, which is what the caller stores between runs.

Rate against a limit (guardrails). One-sample Bernoulli counts, H0 ``p <= p0``: a mixture
over a Beta(1, (1 - p0) / p0) prior truncated to ``(p0, 1)``, in closed form through the
regularised incomplete beta function; a function of the cumulative counts only.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc, betaln

__all__ = [
    "ETA_GRID",
    "REGRESSION_ETA",
    "log_lr_increment",
    "rate_above_limit_log_e",
    "ratio_confidence_sequence",
    "regression_log_e",
    "regression_log_e_from_grid",
]

ETA_GRID: NDArray[np.float64] = np.linspace(-4.0, 4.0, 161)
"""log rate ratios, -4..4 in steps of 0.05 (ratios about 0.018 to 55, 5% apart)."""

REGRESSION_ETA: NDArray[np.float64] = ETA_GRID[ETA_GRID > 1e-12]
"""The part of the grid the one-sided regression test mixes over (ratio > 1)."""

_REGRESSION_INDEX = int(np.argmax(ETA_GRID > 1e-12))
_PRIOR_SCALE = 1.0
_LOG_PRIOR = -0.5 * (REGRESSION_ETA / _PRIOR_SCALE) ** 2
_LOG_PRIOR -= np.log(np.exp(_LOG_PRIOR).sum())


def log_lr_increment(
    x_candidate: ArrayLike,
    x_total: ArrayLike,
    share: ArrayLike,
    eta: NDArray[np.float64] = ETA_GRID,
) -> NDArray[np.float64]:
    """One batch's log likelihood ratio against ratio 1, at each ``eta``.

    Inputs broadcast; the result has a trailing axis over ``eta``.
    """
    xc = np.asarray(x_candidate, dtype=np.float64)[..., None]
    x = np.asarray(x_total, dtype=np.float64)[..., None]
    w = np.asarray(share, dtype=np.float64)[..., None]
    result: NDArray[np.float64] = xc * eta - x * np.log1p(w * np.expm1(eta))
    return result


def regression_log_e(loglik_positive: ArrayLike) -> NDArray[np.float64]:
    """Log e-value for "candidate rate > baseline rate" from log likelihoods on REGRESSION_ETA.

    Works on the last axis, so many runs can be evaluated at once.
    """
    terms = np.asarray(loglik_positive, dtype=np.float64) + _LOG_PRIOR
    top = terms.max(axis=-1, keepdims=True)
    out: NDArray[np.float64] = top[..., 0] + np.log(np.exp(terms - top).sum(axis=-1))
    return out


def regression_log_e_from_grid(loglik: ArrayLike) -> float:
    """Log e-value for a regression from log likelihoods on the whole ETA_GRID."""
    return float(regression_log_e(np.asarray(loglik)[_REGRESSION_INDEX:]))


def ratio_confidence_sequence(loglik: ArrayLike, alpha: float) -> tuple[float, float] | None:
    """An anytime-valid (1 - alpha) confidence sequence for the rate ratio, at grid resolution.

    Each grid ratio ``rho0`` is tested with a normal mixture (scale 1) over ``log rho``
    centred on it; the sequence spans the ratios not rejected, widened by one grid step on
    each side so that a true ratio between grid points is covered too. An end at the edge
    of the grid is open (0 or infinity). None when every grid point is rejected.
    """
    ll = np.asarray(loglik, dtype=np.float64)
    diff = ETA_GRID[None, :] - ETA_GRID[:, None]
    log_w = -0.5 * (diff / _PRIOR_SCALE) ** 2
    log_w -= np.log(np.exp(log_w).sum(axis=1, keepdims=True))
    terms = log_w + ll[None, :] - ll[:, None]
    top = terms.max(axis=1, keepdims=True)
    log_e = top[:, 0] + np.log(np.exp(terms - top).sum(axis=1))
    kept = np.flatnonzero(log_e < math.log(1.0 / alpha))
    if kept.size == 0:
        return None
    lo_i, hi_i = int(kept[0]), int(kept[-1])
    low = 0.0 if lo_i == 0 else math.exp(float(ETA_GRID[lo_i - 1]))
    high = math.inf if hi_i == ETA_GRID.size - 1 else math.exp(float(ETA_GRID[hi_i + 1]))
    return low, high


def rate_above_limit_log_e(events: float, trials: int, limit: float) -> float:
    """Log e-value against "the event rate is at most ``limit``" from cumulative counts.

    Large when the rate is credibly above ``limit``. A limit of 0 is broken by one event;
    a limit of 1 never is. ``events`` may be a sum of fractional events in [0, 1] each
    (e.g. disagreement scores): each likelihood ratio is convex in the observation, so
    its mean under a mean at most ``limit`` is still at most 1 and the mixture stays an
    e-process.
    """
    if limit >= 1.0 or trials == 0:
        return 0.0
    if limit <= 0.0:
        return math.inf if events > 0 else 0.0
    a, b = 1.0, (1.0 - limit) / limit
    x, y = float(events), float(trials - events)
    # Upper tails of the posterior and the prior beyond the limit: P(p > limit).
    post_tail = float(betainc(b + y, a + x, 1.0 - limit))
    prior_tail = float(betainc(b, a, 1.0 - limit))
    if post_tail <= 0.0:
        return -math.inf
    return (
        float(betaln(a + x, b + y) - betaln(a, b))
        + math.log(post_tail)
        - math.log(prior_tail)
        - x * math.log(limit)
        - y * math.log1p(-limit)
    )
