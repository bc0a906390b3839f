"""Anytime-valid tests on means of scores bounded in [0, 1] (quality or feedback scores).

Both tests use Hoeffding's lemma: a score in [0, 1] minus its mean is sub-Gaussian with
variance proxy 1/4, whatever its distribution. That is exact for thumbs-up/down feedback
(variance up to 1/4) and conservative for judge scores with smaller spread.

Two samples (candidate mean lower than baseline mean). Between two looks the new scores
form a batch with ``n_c`` candidate scores summing to ``s_c`` and ``n_b`` baseline scores
summing to ``s_b``. With weight ``c = n_c * n_b / (n_c + n_b)``, the batch statistic::

    c * (s_b / n_b - s_c / n_c)

has mean ``c * (mu_b - mu_c)`` and is sub-Gaussian with proxy ``c / 4``. Summing over
batches gives ``T`` and ``C = sum c``; for every ``lambda >= 0`` the process
``exp(lambda * T - lambda**2 * C / 8)`` is a test supermartingale while ``mu_c >= mu_b``.
Under a constant traffic split ``T`` is exactly the cumulative difference of means
times the effective sample size; when the split changes between steps the per-batch
weights keep it a martingale, which a plain cumulative difference would not be. A batch
in which one variant has no scores is carried into the next (the choice depends only on
counts, never on score values). The e-value mixes over ``lambda`` with a half-normal
prior (scale 1), in closed form.

One sample (guardrail: mean below a floor). Cumulative count ``n`` and sum ``s``:
``T = n * floor - s``, proxy ``n / 4``, the same closed form.

One sample, unbounded above (guardrail: mean tokens or cost per request above a limit).
Token counts have no upper bound, so Hoeffding does not apply; they are non-negative, and
that is the one assumption used (besides each request's conditional mean being at most the
limit ``L`` under the null). With ``Y = X / L - 1 >= -1``, Fan, Grama and Liu's inequality
(2015, Lemma 4.1), ``exp(lam * y - psi(lam) * y**2) <= 1 + lam * y`` for ``y >= -1`` and
``0 <= lam < 1``, ``psi(lam) = -log(1 - lam) - lam``, makes
``exp(lam * S - psi(lam) * V)`` a test supermartingale for every such ``lam``, where
``S = sum Y`` and ``V = sum Y**2``. Both follow from the cumulative count ``n``, sum ``T``
and sum of squares ``Q`` of the values: ``S = (T - n L) / L``,
``V = (Q - 2 L T + n L**2) / L**2``. ``Q`` may be any upper bound of the sum of squares
(a larger ``V`` only shrinks the e-value). The e-value is the
average over a fixed grid of ``lam`` (:data:`UNBOUNDED_MEAN_GRID`), so no cap on tokens
per request is needed, and the test adapts to the spread the values show.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_ndtr, logsumexp

__all__ = [
    "MIXTURE_SCALE",
    "UNBOUNDED_MEAN_GRID",
    "mean_above_limit_log_e",
    "mean_below_floor_log_e",
    "normal_mixture_log_e",
    "normal_mixture_radius",
]

MIXTURE_SCALE = 1.0
"""Standard deviation of the normal mixing prior on the betting rate ``lambda``."""


def normal_mixture_log_e(
    t: ArrayLike, v: ArrayLike, scale: float = MIXTURE_SCALE
) -> NDArray[np.float64]:
    """Log of the one-sided (half-normal) mixture of ``exp(lam * t - lam**2 * v / 2)``, lam >= 0.

    ``v`` is the summed variance proxy. Vectorised over ``t`` and ``v``.
    """
    t_arr = np.asarray(t, dtype=np.float64)
    grow = 1.0 + scale * scale * np.asarray(v, dtype=np.float64)
    z = scale * t_arr / np.sqrt(grow)
    out: NDArray[np.float64] = math.log(2.0) - 0.5 * np.log(grow) + 0.5 * z * z + log_ndtr(z)
    return out


def normal_mixture_radius(v: float, alpha: float, scale: float = MIXTURE_SCALE) -> float:
    """Half-width for ``T - mean`` of the two-sided normal-mixture confidence sequence.

    ``|T - truth| < radius`` holds at all times with probability >= 1 - alpha.
    """
    grow = 1.0 + scale * scale * v
    return math.sqrt(grow / (scale * scale) * (2.0 * math.log(1.0 / alpha) + math.log(grow)))


def mean_below_floor_log_e(count: int, total: float, floor: float) -> float:
    """Log e-value against "the mean score is at least ``floor``" from cumulative sums."""
    if count == 0:
        return 0.0
    return float(normal_mixture_log_e(count * floor - total, count / 4.0))


UNBOUNDED_MEAN_GRID = tuple(0.95 * 2.0 ** (-k / 2) for k in range(40))
"""Betting rates ``lam`` of the unbounded-mean test, 0.95 down to about 1.3e-6 (factors of
sqrt 2), equally weighted. The best rate is about the effect over the spread, both in units
of the limit, so the small rates serve values with a large spread or far above the limit
(a cost limit set per request by mistake); the price of the wide grid is log(40), about
3.7, on the log e-value."""
_GRID = np.asarray(UNBOUNDED_MEAN_GRID)[:, None]
_PSI = -np.log1p(-_GRID) - _GRID
_LOG_K = math.log(len(UNBOUNDED_MEAN_GRID))


def mean_above_limit_log_e(
    count: ArrayLike, total: ArrayLike, sumsq: ArrayLike, limit: float
) -> NDArray[np.float64]:
    """Log e-value against "the mean of non-negative values is at most ``limit``".

    From the cumulative ``count``, ``total`` and ``sumsq`` (the sum of squares, or an upper
    bound of it); see the module docstring. Vectorised over the three; 0 where ``count`` is 0.
    """
    if not limit > 0:
        raise ValueError(f"the limit must be positive, not {limit}")
    n = np.atleast_1d(np.asarray(count, dtype=np.float64))
    t = np.atleast_1d(np.asarray(total, dtype=np.float64))
    q = np.atleast_1d(np.asarray(sumsq, dtype=np.float64))
    s = (t - n * limit) / limit
    # Rounding in q - 2LT + nL^2 is covered by a relative slack; the sum of squares of the
    # Y is never below S^2 / n (Cauchy-Schwarz), so raising it there is conservative.
    v = (q - 2.0 * limit * t + n * limit * limit) / (limit * limit) + 1e-12 * q / (limit * limit)
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = np.where(n > 0, s * s / np.maximum(n, 1.0), 0.0)
    v = np.maximum(v, floor)
    terms = _GRID * s[None, :] - _PSI * v[None, :]
    out: NDArray[np.float64] = np.where(n > 0, logsumexp(terms, axis=0) - _LOG_K, 0.0)
    return out
