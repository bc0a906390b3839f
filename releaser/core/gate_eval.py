"""The eval gate's verdict from per-row scores: thresholds, non-regression, slices.

Input: one array of per-row scores per metric for the candidate (and, when
there is a baseline release, for the baseline on the same rows), the slice
column values per row, and the number of rows whose predict raised. Output:
the checks, per-slice results and human-readable failures. Pure: no I/O.

Rules:

- **errors**: any row whose predict raised fails the gate (with the count), and so
  does any row left unpredicted because too many rows in a row raised.
- **baseline rows that raised** are left out of every comparison with the
  baseline (non-regression, slices, the baseline's metrics), with a warning
  giving the count: scored as wrong, they would make the baseline look worse
  and let a regression through. Compared on no row at all, non-regression fails.
- **threshold**: the metric must reach its threshold (latency: stay at or under it).
- **non_regression**: the paired bootstrap interval of ``candidate - baseline``
  must rule out a drop larger than ``max_drop`` (see :mod:`releaser.core.bootstrap`).
- **slice**: per value of each slice column, the observed drop of the primary
  metric against the baseline must not exceed ``slice_max_drop``; a slice that
  regresses fails the gate even when the overall score holds. Slices with
  fewer than ``slice_min_rows`` rows are reported but not judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from releaser.core.bootstrap import paired_bootstrap
from releaser.core.scorers import aggregate, higher_is_better

__all__ = ["GateOutcome", "NonRegressionRule", "evaluate_gate"]


@dataclass(frozen=True)
class NonRegressionRule:
    """Compare ``metric`` with the baseline; allow at most ``max_drop``."""

    metric: str
    max_drop: float = 0.0
    confidence: float = 0.95
    samples: int = 2000
    seed: int = 0


@dataclass
class GateOutcome:
    """Metrics, checks, slices and failures of one gate evaluation."""

    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    checks: list[dict[str, Any]] = field(default_factory=list)
    slices: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c["passed"] for c in self.checks)


def _fmt(metric: str, value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.1f} ms" if metric == "latency" else f"{value:.4f}"


def _check(
    name: str, kind: str, metric: str, value: float | None, limit: float | None, passed: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "metric": metric,
        "value": value,
        "limit": limit,
        "ci_low": None,
        "ci_high": None,
        "passed": passed,
        "detail": "",
    }


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def evaluate_gate(
    candidate: Mapping[str, NDArray[np.float64]],
    baseline: Mapping[str, NDArray[np.float64]] | None,
    *,
    thresholds: Mapping[str, float],
    non_regression: NonRegressionRule | None,
    primary_metric: str,
    slice_columns: Mapping[str, Sequence[str]],
    slice_max_drop: float | None,
    slice_min_rows: int = 20,
    errors: int = 0,
    error_examples: Sequence[str] = (),
    baseline_ok: Sequence[bool] | None = None,
    baseline_error_examples: Sequence[str] = (),
    not_predicted: int = 0,
    stopped_after: int | None = None,
) -> GateOutcome:
    """Judge the candidate's per-row scores (and the baseline's) against the suite's rules.

    ``baseline_ok`` marks the rows the baseline answered (None: all of them); the
    comparison with the baseline is made on those rows only. ``not_predicted``
    candidate rows were never tried, predicting having stopped after
    ``stopped_after`` errors in a row.
    """
    metrics = {m: aggregate(m, s) for m, s in candidate.items()}
    rows = len(next(iter(candidate.values()))) if candidate else 0
    compared = candidate
    warnings: list[str] = []
    if baseline is not None and baseline_ok is not None and not all(baseline_ok):
        keep = np.asarray(baseline_ok, dtype=bool)
        first = f" (first: {baseline_error_examples[0]})" if baseline_error_examples else ""
        warnings.append(
            f"the baseline did not answer {int((~keep).sum())} of {rows} rows{first}; "
            f"the comparison with the baseline uses the {int(keep.sum())} rows it answered"
        )
        compared = {m: s[keep] for m, s in candidate.items()}
        baseline = {m: s[keep] for m, s in baseline.items()}
        slice_columns = {
            c: [v for v, k in zip(vals, keep.tolist(), strict=True) if k]
            for c, vals in slice_columns.items()
        }
    base_metrics = {m: aggregate(m, s) for m, s in (baseline or {}).items()}
    out = GateOutcome(metrics, base_metrics, warnings=warnings)

    missing = errors + not_predicted
    check = _check("errors", "threshold", "errors", float(missing), 0.0, missing == 0)
    check["detail"] = f"{errors} of {rows} rows raised in predict" + (
        f", {not_predicted} not predicted" if not_predicted else ""
    )
    out.checks.append(check)
    if errors:
        first = f" (first: {error_examples[0]})" if error_examples else ""
        out.failures.append(f"{errors} of {rows} rows raised an error in predict{first}")
    if not_predicted:
        out.failures.append(
            f"{not_predicted} of {rows} rows were not predicted: predicting stopped after "
            f"{stopped_after} rows in a row raised"
        )

    for metric, limit in thresholds.items():
        value = metrics.get(metric, math.nan)
        up = higher_is_better(metric)
        ok = not math.isnan(value) and (value >= limit if up else value <= limit)
        check = _check(f"{metric} threshold", "threshold", metric, _clean(value), limit, ok)
        check["detail"] = f"{_fmt(metric, value)} {'>=' if up else '<='} {_fmt(metric, limit)}"
        out.checks.append(check)
        if not ok:
            word = "below the minimum" if up else "above the maximum"
            out.failures.append(f"{metric} {_fmt(metric, value)} is {word} {_fmt(metric, limit)}")

    if non_regression is not None and baseline is not None:
        _non_regression(out, compared, baseline, non_regression)

    if slice_columns:
        _slices(
            out, compared, baseline, primary_metric, slice_columns, slice_max_drop, slice_min_rows
        )
    return out


def _non_regression(
    out: GateOutcome,
    candidate: Mapping[str, NDArray[np.float64]],
    baseline: Mapping[str, NDArray[np.float64]],
    rule: NonRegressionRule,
) -> None:
    metric = rule.metric
    up = higher_is_better(metric)
    ci = paired_bootstrap(
        candidate[metric],
        baseline[metric],
        samples=rule.samples,
        confidence=rule.confidence,
        seed=rule.seed,
        percentile=None if up else 95.0,
    )
    limit = -rule.max_drop if up else rule.max_drop
    bound = ci.low if up else ci.high
    ok = not math.isnan(bound) and (bound >= limit if up else bound <= limit)
    check = _check(
        f"{metric} non-regression", "non_regression", metric, _clean(ci.delta), limit, ok
    )
    check["ci_low"], check["ci_high"] = _clean(ci.low), _clean(ci.high)
    pct = f"{rule.confidence:.0%}"
    check["detail"] = (
        f"change {ci.delta:+.4f}, {pct} CI [{ci.low:+.4f}, {ci.high:+.4f}], "
        f"allowed drop {rule.max_drop:g}"
    )
    out.checks.append(check)
    if ci.n == 0:
        check["detail"] = "the baseline answered no row: nothing to compare"
        out.failures.append(
            f"{metric} cannot be compared with the baseline: the baseline answered no row"
        )
    elif not ok:
        out.failures.append(
            f"{metric} may have regressed against the baseline: change {ci.delta:+.4f}, "
            f"{pct} CI [{ci.low:+.4f}, {ci.high:+.4f}] does not rule out a drop larger than "
            f"{rule.max_drop:g}"
        )


def _groups(values: Sequence[Any]) -> list[tuple[str, NDArray[np.bool_]]]:
    """Each distinct value of a slice column as text, in sorted order, with the mask of
    its rows: one pass over the rows, whatever the number of values."""
    texts = values if set(map(type, values)) <= {str} else [str(v) for v in values]
    code_of = {v: i for i, v in enumerate(dict.fromkeys(texts))}
    codes = np.fromiter(map(code_of.__getitem__, texts), dtype=np.intp, count=len(texts))
    return [(value, codes == code_of[value]) for value in sorted(code_of)]


def _slices(
    out: GateOutcome,
    candidate: Mapping[str, NDArray[np.float64]],
    baseline: Mapping[str, NDArray[np.float64]] | None,
    metric: str,
    slice_columns: Mapping[str, Sequence[str]],
    max_drop: float | None,
    min_rows: int,
) -> None:
    up = higher_is_better(metric)
    cand = candidate[metric]
    base = baseline.get(metric) if baseline is not None else None
    for column, values in slice_columns.items():
        for value, mask in _groups(values):
            n = int(mask.sum())
            c = aggregate(metric, cand[mask])
            b = aggregate(metric, base[mask]) if base is not None else math.nan
            delta = c - b
            drop = (-delta if up else delta) if not math.isnan(delta) else math.nan
            judged = max_drop is not None and base is not None and n >= min_rows
            ok = not judged or (not math.isnan(drop) and drop <= (max_drop or 0.0) + 1e-12)
            row = {
                "column": column,
                "value": value,
                "n": n,
                "metric": metric,
                "candidate": _clean(c),
                "baseline": _clean(b),
                "delta": _clean(delta),
                "passed": ok,
            }
            out.slices.append(row)
            if max_drop is None or base is None:
                continue
            check = _check(
                f"slice {column}={value}",
                "slice",
                metric,
                _clean(delta),
                -max_drop if up else max_drop,
                ok,
            )
            check["detail"] = (
                f"{_fmt(metric, c)} vs baseline {_fmt(metric, b)} on {n} rows"
                if judged
                else f"{n} rows: too few to judge (minimum {min_rows})"
            )
            out.checks.append(check)
            if not ok:
                out.failures.append(
                    f"slice {column}={value} regressed: {metric} {_fmt(metric, c)} against "
                    f"{_fmt(metric, b)} for the baseline ({delta:+.4f} on {n} rows; "
                    f"allowed drop {max_drop:g})"
                )
