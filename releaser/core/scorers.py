"""Scorers of the eval gate: one score per golden row, and how a metric aggregates them.

A scorer maps ``(prediction, label)`` to a float, 1.0 for right and 0.0 for
wrong (token F1 gives a share in between). Rows whose predict raised score
0.0 on every quality scorer: a crash is a wrong answer. Latency is not a
scorer of answers: the harness measures it per row, and the metric is the
95th percentile in milliseconds over rows that did not raise, where lower is
better. Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import math
import operator
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BUILTIN_SCORERS",
    "LOWER_IS_BETTER",
    "ScoreFn",
    "accuracy",
    "aggregate",
    "contains",
    "exact_match",
    "higher_is_better",
    "normalize_text",
    "numeric_tolerance",
    "regex_match",
    "score_rows",
    "to_number",
    "token_f1",
]

ScoreFn = Callable[[Any, Any], float]
"""``(prediction, label) -> score``."""

LOWER_IS_BETTER = frozenset({"latency"})
"""Metrics where a smaller value is better (a 'drop' is an increase)."""

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_SPACE = re.compile(r"\s+")


def higher_is_better(metric: str) -> bool:
    """True unless the metric is one where smaller is better (latency)."""
    return metric not in LOWER_IS_BETTER


def normalize_text(value: Any) -> str:
    """Lower-cased, trimmed, with runs of whitespace collapsed."""
    return _SPACE.sub(" ", str(value).strip().casefold())


def exact_match(prediction: Any, label: Any) -> float:
    """1.0 when the texts are equal ignoring case and surrounding/repeated whitespace."""
    return float(normalize_text(prediction) == normalize_text(label))


def accuracy(prediction: Any, label: Any) -> float:
    """1.0 when the prediction equals the label exactly (as text; for classes)."""
    return float(str(prediction) == str(label))


def _tokens(value: Any) -> list[str]:
    return _PUNCT.sub(" ", normalize_text(value)).split()


def token_f1(prediction: Any, label: Any) -> float:
    """F1 of the bag of words of prediction and label (SQuAD style, punctuation dropped)."""
    pred, gold = _tokens(prediction), _tokens(label)
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def contains(prediction: Any, label: Any) -> float:
    """1.0 when the expected text appears in the prediction (ignoring case)."""
    return float(normalize_text(label) in normalize_text(prediction))


def regex_match(pattern: str) -> ScoreFn:
    """A scorer giving 1.0 when ``pattern`` is found in the prediction (the label is unused)."""
    compiled = re.compile(pattern)

    def score(prediction: Any, label: Any) -> float:
        return float(compiled.search(str(prediction)) is not None)

    return score


def to_number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def numeric_tolerance(tolerance: float) -> ScoreFn:
    """A scorer giving 1.0 when the prediction is within ``tolerance`` of the numeric label."""

    def score(prediction: Any, label: Any) -> float:
        p, g = to_number(prediction), to_number(label)
        if p is None or g is None:
            return 0.0
        return float(abs(p - g) <= tolerance + 1e-12)

    return score


BUILTIN_SCORERS: dict[str, ScoreFn] = {
    "exact_match": exact_match,
    "accuracy": accuracy,
    "token_f1": token_f1,
    "contains": contains,
}
"""Scorers that need no option; regex and numeric_tolerance are built with theirs."""


def score_rows(
    fn: ScoreFn, predictions: Sequence[Any], labels: Sequence[Any], ok: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Per-row scores; rows where ``ok`` is False (predict raised) score 0.0."""
    fast = _text_scores(fn, predictions, labels)
    if fast is not None:
        return np.where(ok, fast, 0.0)
    scores = [
        float(fn(pred, label)) if good else 0.0
        for pred, label, good in zip(predictions, labels, ok.tolist(), strict=True)
    ]
    return np.asarray(scores, dtype=np.float64)


def _text_scores(
    fn: ScoreFn, predictions: Sequence[Any], labels: Sequence[Any]
) -> NDArray[np.float64] | None:
    """The scores of ``accuracy`` or ``exact_match`` when every prediction and label is
    text (a classifier's usual output), else None: the same values as scoring row by
    row, without a Python call and two conversions per row."""
    if fn is not accuracy and fn is not exact_match:
        return None
    if len(predictions) != len(labels) or {*map(type, predictions), *map(type, labels)} != {str}:
        return None
    if fn is exact_match:
        # A golden set holds few distinct answers: each is normalised once.
        norm = {v: normalize_text(v) for v in {*predictions, *labels}}
        predictions, labels = [norm[v] for v in predictions], [norm[v] for v in labels]
    same = np.fromiter(map(operator.eq, predictions, labels), dtype=bool, count=len(labels))
    return same.astype(np.float64)


def aggregate(metric: str, scores: NDArray[np.float64]) -> float:
    """The metric over rows: the mean, or for latency the 95th percentile of the known values."""
    if metric == "latency":
        known = scores[~np.isnan(scores)]
        return float(np.percentile(known, 95)) if known.size else math.nan
    return float(scores.mean()) if scores.size else math.nan
