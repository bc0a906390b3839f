"""The post-promotion guard: false rollbacks and time to detect, by seeded simulation.

Traffic: the promoted release serves PER_CHECK requests per 5 minutes (2 requests/s by
default); a healthy release fails BASE_RATE (0.3%) of them, as the previous release did
(its PREVIOUS requests during the rollout drawn at that rate); the SLO allows 1%. A 24 h
window is judged every 5 minutes (288 checks) by the library's own ``observe`` with the
default alpha (0.01). A regressed release fails 2x or 5x as often from the promotion on.

Targets: false rollbacks <= 1% of healthy windows (the issue's figure); 5x detected within
30 minutes at p95 (a regression that large burns a day's error budget in hours, so it must
be caught within a few checks); 2x within 6 hours at p95 (a quarter of the window: a 2x
regression stays under a 1% SLO, so no SLO alert would ever catch it, and a day of it is
what the guard exists to prevent).

Baselines, on the same simulated traffic of the same run:

- naive: roll back when a 5-minute check's error rate exceeds twice the previous release's
  rate (a fixed threshold looked at every 5 minutes);
- SRE workbook multiwindow, multi-burn-rate alert on the 1% SLO: 14.4x over 1 h and 5 min,
  or 6x over 6 h and 30 min.

Usage: python bench/bench_guard.py [--windows 1000] [--per-check 600]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from releaser.core.guard import GuardCounts, observe, start_guard

BASE_RATE = 0.003
SLO = 0.01
PREVIOUS = 100_000
CHECKS = 288
T0 = datetime(2030, 1, 1, tzinfo=UTC)
NOW = [(T0 + timedelta(minutes=5 * k)).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for k in range(289)]


@dataclass
class Window:
    """One simulated window: the previous release's errors and each check's counts."""

    previous_errors: int
    requests: NDArray[np.int64]
    errors: NDArray[np.int64]


def simulate(seed: int, per_check: int, factor: float) -> Window:
    rng = np.random.default_rng(seed)
    previous = int(rng.binomial(PREVIOUS, BASE_RATE))
    requests = rng.poisson(per_check, CHECKS).astype(np.int64)
    errors = rng.binomial(requests, min(1.0, BASE_RATE * factor)).astype(np.int64)
    return Window(previous, requests, errors)


def guard_minutes(w: Window) -> int | None:
    """Minutes from the promotion to the guard's breach, or None."""
    state = start_guard(
        rollout_id="svc-1",
        release="new",
        previous="old",
        now=NOW[0],
        window_s=24 * 3600,
        check_s=300,
        alpha=0.01,
        slo_rates={"error_rate": SLO},
        previous_counts=GuardCounts(requests=PREVIOUS, errors=w.previous_errors),
        slow_threshold_ms=None,
    )
    requests = np.cumsum(w.requests)
    errors = np.cumsum(w.errors)
    for k in range(CHECKS):
        counts = GuardCounts(requests=int(requests[k]), errors=int(errors[k]))
        check = observe(state, counts, NOW[k + 1])
        state = check.state
        if check.verdict == "breach":
            return 5 * (k + 1)
    return None


def naive_minutes(w: Window) -> int | None:
    reference = w.previous_errors / PREVIOUS
    rate = w.errors / np.maximum(w.requests, 1)
    fired = np.flatnonzero(rate > 2 * reference)
    return 5 * (int(fired[0]) + 1) if fired.size else None


def _window_rate(requests: NDArray[np.int64], errors: NDArray[np.int64], checks: int) -> NDArray:
    r = np.convolve(requests, np.ones(checks), mode="full")[: len(requests)]
    e = np.convolve(errors, np.ones(checks), mode="full")[: len(errors)]
    out: NDArray[np.float64] = e / np.maximum(r, 1)
    return out


def sre_minutes(w: Window) -> int | None:
    burn = {n: _window_rate(w.requests, w.errors, n) / SLO for n in (1, 6, 12, 72)}
    fired = np.flatnonzero(
        ((burn[12] > 14.4) & (burn[1] > 14.4)) | ((burn[72] > 6) & (burn[6] > 6))
    )
    return 5 * (int(fired[0]) + 1) if fired.size else None


RULES = {"guard": guard_minutes, "naive 2x threshold": naive_minutes, "SRE burn rate": sre_minutes}


def _quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def _duration(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def run(windows: int, per_check: int, detect_windows: int) -> bool:
    ok = True
    started = time.perf_counter()
    healthy = [simulate(10_000 + i, per_check, 1.0) for i in range(windows)]
    print(
        f"healthy windows: {windows} x 24 h, {per_check} requests per 5-min check, "
        f"{BASE_RATE:.1%} errors (previous release: {PREVIOUS} requests at the same rate)"
    )
    for name, rule in RULES.items():
        fired = sum(rule(w) is not None for w in healthy)
        rate = fired / windows
        target = " (target <= 1%)" if name == "guard" else " (baseline)"
        print(f"  false rollbacks, {name}: {fired}/{windows} = {rate:.2%}{target}")
        if name == "guard" and rate > 0.01:
            ok = False
    for factor, target_min in ((5.0, 30), (2.0, 360)):
        bad = [
            simulate(20_000 + int(factor) * 1000 + i, per_check, factor)
            for i in range(detect_windows)
        ]
        print(f"{factor:g}x the errors from the promotion ({detect_windows} windows):")
        for name, rule in RULES.items():
            found = [m for w in bad if (m := rule(w)) is not None]
            if not found:
                print(f"  {name}: detected 0/{detect_windows}")
                if name == "guard":
                    ok = False
                continue
            p95 = _quantile(found, 0.95) if len(found) == detect_windows else float("inf")
            line = (
                f"  {name}: detected {len(found)}/{detect_windows}, median "
                f"{_duration(statistics.median(found))}, p95 "
                f"{_duration(p95) if p95 != float('inf') else 'never (some undetected)'}"
            )
            if name == "guard":
                line += f" (target p95 <= {_duration(target_min)})"
                ok = ok and p95 <= target_min
            print(line)
    print(f"({time.perf_counter() - started:.0f} s)")
    print("PASS" if ok else "FAIL")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1000, help="healthy 24 h windows")
    parser.add_argument("--detect-windows", type=int, default=200, help="windows per regression")
    parser.add_argument("--per-check", type=int, default=600, help="requests per 5 minutes")
    args = parser.parse_args()
    raise SystemExit(0 if run(args.windows, args.per_check, args.detect_windows) else 1)


if __name__ == "__main__":
    main()
