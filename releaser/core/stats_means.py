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
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_ndtr

__all__ = [
    "MIXTURE_SCALE",
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
