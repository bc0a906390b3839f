"""Canary analysis: a seeded simulation study of the anytime-valid tests in releaser.core.

Each case runs RUNS independent canaries. Traffic arrives in batches of 50 requests, each
request going to the candidate with probability 5%; after every batch the tests look at the
data (4,000 looks up to 200,000 requests) and a run stops at its first rejection. Beside
each sequential test runs the judge canary tools usually run: a fixed-horizon test
(two-proportion z-test, Mann-Whitney U, or z-test on means) re-run after every batch.

The simulation is vectorised over runs with numpy but computes the statistics with the
library's own kernels (log_lr_increment, regression_log_e, normal_mixture_log_e), and the
first run of each case is replayed through the library's state objects as a cross-check.

Usage: python bench/bench_analysis.py [--runs 5000] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from releaser.core.stats_counts import REGRESSION_ETA, log_lr_increment, regression_log_e
from releaser.core.stats_means import normal_mixture_log_e
from releaser.core.stats_state import MeanDiffState, RatioState

ALPHA = 0.01
BATCH = 50
MAX_REQUESTS = 200_000
BATCHES = MAX_REQUESTS // BATCH
SHARE = 0.05
CHUNK = 25  # runs per task for the count cases (memory: events x grid floats)
BAR = math.log(1.0 / ALPHA)
Z_ALPHA = float(stats.norm.isf(ALPHA))
# log1p(w * expm1(eta)) for every possible candidate share of a 50-request batch.
SHARE_TABLE = -log_lr_increment(0, 1, np.arange(BATCH + 1) / BATCH, REGRESSION_ETA)

# Latency: lognormal, median 200 ms, sigma 0.5; slow means over 500 ms. Coarse bins for
# the Mann-Whitney judge, with an edge at the slow threshold so both see the same data.
LAT_MEDIAN_MS, LAT_SIGMA, SLOW_MS = 200.0, 0.5, 500.0
LAT_EDGES = np.array([100.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0, 700.0, 1000.0])
SLOW_BIN = int(np.searchsorted(LAT_EDGES, SLOW_MS)) + 1  # bins from here on are slow
FEEDBACK_RATE = 0.2  # share of requests that get a thumbs-up/down score


@dataclass
class Outcome:
    """Per-run results of one case."""

    stop: list[NDArray[np.int64]] = field(default_factory=list)  # batch of rejection, -1 = none
    cand_requests: list[NDArray[np.int64]] = field(default_factory=list)
    cand_events: list[NDArray[np.int64]] = field(default_factory=list)
    total_events: list[NDArray[np.int64]] = field(default_factory=list)
    judge_stop: list[NDArray[np.int64]] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        for name in ("stop", "cand_requests", "cand_events", "total_events", "judge_stop"):
            getattr(self, name).extend(getattr(other, name))

    def arrays(self) -> dict[str, NDArray[np.int64]]:
        return {k: np.concatenate(v) for k, v in self.__dict__.items()}


def first_true(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Index of the first True along the last axis, -1 where there is none."""
    idx = mask.argmax(axis=-1)
    return np.where(mask.any(axis=-1), idx, -1).astype(np.int64)


def latency_bin_probs(scale: float) -> NDArray[np.float64]:
    """Probability of each coarse latency bin for lognormal latencies times ``scale``."""
    cdf = stats.norm.cdf(np.log(LAT_EDGES / (LAT_MEDIAN_MS * scale)) / LAT_SIGMA)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def multinomial_grid(
    rng: np.random.Generator, n: NDArray[np.int64], probs: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Multinomial counts for every cell of ``n`` at once, by sequential binomials."""
    out = np.zeros((*n.shape, probs.size), dtype=np.int64)
    left = n.copy()
    rest = 1.0
    for k, p in enumerate(probs[:-1]):
        out[..., k] = rng.binomial(left, min(1.0, p / rest)) if rest > 0 else 0
        left -= out[..., k]
        rest -= p
    out[..., -1] = left
    return out


@dataclass
class Carry:
    """Per-run cumulative totals carried from one block of looks to the next."""

    runs: int
    looks: int = 0
    per_share: NDArray[np.int64] = field(init=False)  # events by the batch's candidate count
    cand_requests: NDArray[np.int64] = field(init=False)
    cand_events: NDArray[np.int64] = field(init=False)
    base_events: NDArray[np.int64] = field(init=False)
    cand_bins: NDArray[np.int64] = field(init=False)
    base_bins: NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.per_share = np.zeros((self.runs, BATCH + 1), dtype=np.int64)
        self.cand_requests = np.zeros(self.runs, dtype=np.int64)
        self.cand_events = np.zeros(self.runs, dtype=np.int64)
        self.base_events = np.zeros(self.runs, dtype=np.int64)
        self.cand_bins = np.zeros((self.runs, LAT_EDGES.size + 1), dtype=np.int64)
        self.base_bins = np.zeros((self.runs, LAT_EDGES.size + 1), dtype=np.int64)

    def log_e(self) -> NDArray[np.float64]:
        """The rate-ratio test's log e-value of every run after the looks so far."""
        loglik = self.cand_events[:, None] * REGRESSION_ETA - self.per_share @ SHARE_TABLE
        return regression_log_e(loglik)


def sequential_ratio(
    xc: NDArray[np.int64], x: NDArray[np.int64], nc: NDArray[np.int64], carry: Carry
) -> NDArray[np.int64]:
    """First look in this block where the rate-ratio e-value reaches 1/alpha (-1 if none).

    Only batches with an event change the statistic, so only those are evaluated. The
    summed log likelihood is ``X_c(t) * eta - sum_n M_n(t) * log1p(n/50 * expm1(eta))``
    where ``M_n(t)`` counts events so far in batches with ``n`` candidate requests: integer
    running sums and one matrix product instead of a running sum over the grid.
    """
    runs = xc.shape[0]
    stop = np.full(runs, -1, dtype=np.int64)
    r, b = np.nonzero(x)  # row-major: grouped by run, batches ascending
    events = r.size
    if events == 0:
        return stop
    n_at = nc[r, b]
    used = np.flatnonzero(carry.per_share.any(axis=0))
    width = int(max(n_at.max(), used.max() if used.size else 0)) + 1
    per_share = np.zeros((events, width), dtype=np.int64)
    per_share[np.arange(events), n_at] = x[r, b]
    cand = xc[r, b][:, None].copy()
    first = np.searchsorted(r, np.arange(runs))
    has_prev = first > 0
    for arr, start in ((per_share, carry.per_share[:, :width]), (cand, carry.cand_events[:, None])):
        np.cumsum(arr, axis=0, out=arr)  # running sums that restart at every run (integers)
        offset = np.zeros((runs, arr.shape[1]), dtype=np.int64)
        offset[has_prev] = arr[first[has_prev] - 1]
        arr += (start - offset)[r]
    # Exact pruning: log(1 - w + w e^eta) >= w * eta (concavity of log), so every grid
    # term is at most eta * D with D = X_c - sum x * w, and the mixture is at most its
    # largest term. Rows whose bound stays under the bar cannot reject; skip them.
    excess = cand[:, 0] - per_share @ (np.arange(width) / BATCH)
    rows = np.flatnonzero(excess * REGRESSION_ETA[-1] >= BAR)
    loglik = cand[rows] * REGRESSION_ETA - per_share[rows].astype(np.float64) @ SHARE_TABLE[:width]
    maybe = rows[loglik.max(axis=1) >= BAR]
    if maybe.size:
        in_rows = np.searchsorted(rows, maybe)
        hits = maybe[regression_log_e(loglik[in_rows]) >= BAR]
        hit_runs, where = np.unique(r[hits], return_index=True)
        stop[hit_runs] = b[hits[where]]
    np.add.at(carry.per_share, (r, n_at), x[r, b])
    return stop


def repeated_z(
    nc: NDArray[np.int64], xc: NDArray[np.int64], xb: NDArray[np.int64], carry: Carry
) -> NDArray[np.int64]:
    """First look in the block where a one-sided two-proportion z-test on the totals rejects."""
    n_c = (carry.cand_requests[:, None] + np.cumsum(nc, axis=1)).astype(np.float64)
    n_b = BATCH * (carry.looks + np.arange(1, nc.shape[1] + 1)) - n_c
    x_c = carry.cand_events[:, None] + np.cumsum(xc, axis=1)
    x_b = carry.base_events[:, None] + np.cumsum(xb, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (x_c + x_b) / (n_c + n_b)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_b))
        z = (x_c / n_c - x_b / n_b) / se
    return first_true(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0) > Z_ALPHA)


def repeated_mwu(
    cand: NDArray[np.int64], base: NDArray[np.int64], carry: Carry
) -> NDArray[np.int64]:
    """First look in the block where a one-sided Mann-Whitney U test on binned latency rejects.

    Ties (every request in a bin is tied) enter through the usual variance correction.
    """
    c = (carry.cand_bins[:, None, :] + np.cumsum(cand, axis=1)).astype(np.float64)
    bb = (carry.base_bins[:, None, :] + np.cumsum(base, axis=1)).astype(np.float64)
    below = np.cumsum(bb, axis=2) - bb  # baseline counts in strictly faster bins
    u = (c * (below + 0.5 * bb)).sum(axis=2)
    n_c, n_b = c.sum(axis=2), bb.sum(axis=2)
    n = n_c + n_b
    ties = ((c + bb) ** 3 - (c + bb)).sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = n_c * n_b / 12.0 * ((n + 1) - ties / (n * (n - 1)))
        z = (u - n_c * n_b / 2.0) / np.sqrt(var)
    return first_true(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0) > Z_ALPHA)


BLOCK = 400  # looks simulated at a time; a case stops early once every run has stopped


def count_chunk(task: tuple[str, int, int, float, float]) -> Outcome:
    """One chunk of an error-rate or latency case."""
    kind, seed, runs, base_p, cand_p = task
    rng = np.random.default_rng(seed)
    carry = Carry(runs)
    stop = np.full(runs, -1, dtype=np.int64)
    judge = np.full(runs, -1, dtype=np.int64)
    at = {name: np.full(runs, -1, dtype=np.int64) for name in ("req", "cand", "all")}
    replay: list[tuple[int, int, int]] = []
    while carry.looks < BATCHES:
        looks = min(BLOCK, BATCHES - carry.looks)
        nc = rng.binomial(BATCH, SHARE, (runs, looks))
        if kind == "errors":
            xc = rng.binomial(nc, cand_p)
            xb = rng.binomial(BATCH - nc, base_p)
            found = repeated_z(nc, xc, xb, carry)
        else:  # latency: base_p / cand_p are latency scale factors
            cand_bins = multinomial_grid(rng, nc, latency_bin_probs(cand_p))
            base_bins = multinomial_grid(rng, BATCH - nc, latency_bin_probs(base_p))
            xc = cand_bins[..., SLOW_BIN:].sum(axis=2)
            xb = base_bins[..., SLOW_BIN:].sum(axis=2)
            found = repeated_mwu(cand_bins, base_bins, carry)
            carry.cand_bins += cand_bins.sum(axis=1)
            carry.base_bins += base_bins.sum(axis=1)
        x = xc + xb
        seq = sequential_ratio(xc, x, nc, carry)
        newly = (stop < 0) & (seq >= 0)
        rows, cols = np.flatnonzero(newly), seq[newly]
        for name, arr, start in (
            ("req", nc, carry.cand_requests),
            ("cand", xc, carry.cand_events),
            ("all", x, carry.cand_events + carry.base_events),
        ):
            at[name][rows] = start[rows] + np.cumsum(arr[rows], axis=1)[np.arange(rows.size), cols]
        stop[rows] = carry.looks + cols
        judged = (judge < 0) & (found >= 0)
        judge[judged] = carry.looks + found[judged]
        if seed % 1000 == 0:  # first chunk of a case: keep run 0 to replay through RatioState
            replay += [(int(nc[0, i]), int(xc[0, i]), int(xb[0, i])) for i in range(looks)]
        carry.cand_requests += nc.sum(axis=1)
        carry.cand_events += xc.sum(axis=1)
        carry.base_events += xb.sum(axis=1)
        carry.looks += looks
        if (stop >= 0).all() and (judge >= 0).all():
            break
    if replay:
        cross_check_ratio(replay, float(carry.log_e()[0]))
    out = Outcome()
    out.stop.append(stop)
    out.cand_requests.append(at["req"])
    out.cand_events.append(at["cand"])
    out.total_events.append(at["all"])
    out.judge_stop.append(judge)
    return out


def cross_check_ratio(batches: list[tuple[int, int, int]], log_e: float) -> None:
    """The vectorised statistic equals RatioState fed look by look (to float rounding)."""
    from releaser.core.stats_counts import regression_log_e_from_grid

    state = RatioState()
    cn = cx = bn = bx = 0
    for nc, xc, xb in batches:
        cn, cx, bn, bx = cn + nc, cx + xc, bn + BATCH - nc, bx + xb
        state = state.update(cn, cx, bn, bx)
    replay = regression_log_e_from_grid(state.loglik)
    assert abs(replay - log_e) < 1e-6 * max(1.0, abs(replay)), (replay, log_e)


def quality_task(task: tuple[int, int, float, float]) -> Outcome:
    """One chunk of a quality case (thumbs-up/down scores), time-major over looks."""
    seed, runs, base_mu, cand_mu = task
    rng = np.random.default_rng(seed)
    t = np.zeros(runs)
    c = np.zeros(runs)
    pend = np.zeros((4, runs))  # pending candidate n, s and baseline n, s (carried over)
    tot = np.zeros((4, runs))  # cumulative, for the judge
    stop = np.full(runs, -1, dtype=np.int64)
    judge = np.full(runs, -1, dtype=np.int64)
    cand_req = np.zeros(runs, dtype=np.int64)
    stop_req = np.full(runs, -1, dtype=np.int64)
    stop_scores = np.full(runs, -1, dtype=np.int64)
    trace: list[tuple[int, float, int, float]] = []
    for first in range(0, BATCHES, BLOCK):
        looks = min(BLOCK, BATCHES - first)
        nc_blk = rng.binomial(BATCH, SHARE, (looks, runs))
        sn_c = rng.binomial(nc_blk, FEEDBACK_RATE)
        sn_b = rng.binomial(BATCH - nc_blk, FEEDBACK_RATE)
        new_blk = np.stack(
            [sn_c, rng.binomial(sn_c, cand_mu), sn_b, rng.binomial(sn_b, base_mu)], axis=1
        ).astype(np.float64)
        for i in range(looks):
            step = first + i
            new = new_blk[i]
            cand_req += nc_blk[i]
            pend += new
            tot += new
            if seed % 1000 == 0:
                trace.append((int(tot[0, 0]), float(tot[1, 0]), int(tot[2, 0]), float(tot[3, 0])))
            ready = np.flatnonzero((pend[0] > 0) & (pend[2] > 0))
            if ready.size:
                pn_c, ps_c, pn_b, ps_b = pend[:, ready]
                w = pn_c * pn_b / (pn_c + pn_b)
                t[ready] += w * (ps_b / pn_b - ps_c / pn_c)
                c[ready] += w
                pend[:, ready] = 0.0
                log_e = normal_mixture_log_e(t[ready], c[ready] / 4.0)
                newly = ready[(stop[ready] < 0) & (log_e >= BAR)]
                stop[newly] = step
                stop_req[newly] = cand_req[newly]
                stop_scores[newly] = tot[0, newly].astype(np.int64)
            n_c, s_c, n_b, s_b = tot
            with np.errstate(divide="ignore", invalid="ignore"):
                m_c, m_b = s_c / n_c, s_b / n_b
                se = np.sqrt(m_c * (1 - m_c) / n_c + m_b * (1 - m_b) / n_b)
                z = (m_b - m_c) / se
            judged = (judge < 0) & (n_c >= 2) & (z > Z_ALPHA)  # NaN compares False
            judge[judged] = step
        if (stop >= 0).all() and (judge >= 0).all():
            break
    if seed % 1000 == 0:
        state = MeanDiffState()
        for cn, cs, bn, bs in trace:
            state = state.update(cn, cs, bn, bs)
        assert abs(state.t - t[0]) < 1e-6 and abs(state.c - c[0]) < 1e-6, (state, t[0], c[0])
    out = Outcome()
    out.stop.append(stop)
    out.cand_requests.append(stop_req)
    out.cand_events.append(stop_scores)
    out.total_events.append(np.full(runs, -1, dtype=np.int64))
    out.judge_stop.append(judge)
    return out


@dataclass
class Case:
    """A simulated scenario and its summary."""

    name: str
    kind: str  # errors, latency, quality
    base: float
    cand: float
    seed: int
    result: dict[str, NDArray[np.int64]] = field(default_factory=dict)

    def tasks(self, runs: int) -> Iterator[tuple[str, tuple[object, ...]]]:
        step = CHUNK if self.kind != "quality" else max(1, runs // 4)
        for i, first in enumerate(range(0, runs, step)):
            n = min(step, runs - first)
            seed = self.seed * 1000 + i
            if self.kind == "quality":
                yield "quality", (seed, n, self.base, self.cand)
            else:
                yield "count", (self.kind, seed, n, self.base, self.cand)


def run_task(item: tuple[str, tuple[object, ...]]) -> Outcome:
    """Dispatch one task (module-level so worker processes can pickle it)."""
    kind, args = item
    if kind == "quality":
        return quality_task(args)  # type: ignore[arg-type]
    return count_chunk(args)  # type: ignore[arg-type]


def fixed_horizon() -> dict[str, float]:
    """Fixed-horizon sample size for 1% -> 2% errors at a 5% step, alpha 0.01, power 0.9."""
    p_b, p_c, w = 0.01, 0.02, SHARE
    z_a, z_b = Z_ALPHA, float(stats.norm.isf(0.10))
    k = (1 - w) / w  # baseline requests per candidate request
    pbar = (p_c + k * p_b) / (1 + k)
    n_c = (
        (
            z_a * math.sqrt(pbar * (1 - pbar) * (1 + 1 / k))
            + z_b * math.sqrt(p_c * (1 - p_c) + p_b * (1 - p_b) / k)
        )
        / (p_c - p_b)
    ) ** 2
    # Exact conditional test on the split of errors: x_c | x ~ Binomial(x, p0) under H0.
    p0 = w
    p1 = 2 * w / (2 * w + 1 - w)
    exact_x = 0
    for x in range(1, 5000):
        crit = int(stats.binom.ppf(1 - ALPHA, x, p0)) + 1  # reject when x_c >= crit
        if stats.binom.sf(crit - 1, x, p0) <= ALPHA and stats.binom.sf(crit - 1, x, p1) >= 0.9:
            exact_x = x
            break
    rate = w * p_c + (1 - w) * p_b
    exact_total = exact_x / rate
    return {
        "z_cand_requests": n_c,
        "z_cand_errors": n_c * p_c,
        "z_total_requests": n_c * (1 + k),
        "z_total_errors": n_c * (1 + k) * rate,
        "exact_total_errors": exact_x,
        "exact_total_requests": exact_total,
        "exact_cand_requests": exact_total * w,
        "exact_cand_errors": exact_total * w * p_c,
        "pbar": pbar,
        "p1": p1,
    }


def upper95(k: int, n: int) -> float:
    """Clopper-Pearson 95% upper bound of a rate from k of n."""
    return 1.0 if k >= n else float(stats.beta.ppf(0.95, k + 1, n - k))


def med(values: NDArray[np.int64]) -> float:
    kept = values[values >= 0]
    return float(np.median(kept)) if kept.size else math.nan


def main() -> None:
    """Run every case, print the table and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runs = args.runs
    cases = [
        Case("errors A/A 1% vs 1%", "errors", 0.01, 0.01, 1),
        Case("errors 2x 1% -> 2%", "errors", 0.01, 0.02, 2),
        Case("errors 5x 1% -> 5%", "errors", 0.01, 0.05, 3),
        Case("latency A/A", "latency", 1.0, 1.0, 4),
        Case("latency x1.3 slower", "latency", 1.0, 1.3, 5),
        Case("quality A/A 0.80", "quality", 0.8, 0.8, 6),
        Case("quality 0.80 -> 0.70", "quality", 0.8, 0.7, 7),
    ]
    started = time.perf_counter()
    items = [(case, item) for case in cases for item in case.tasks(runs)]
    merged = {case.name: Outcome() for case in cases}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for (case, _), outcome in zip(
            items, pool.map(run_task, [item for _, item in items], chunksize=4), strict=True
        ):
            merged[case.name].add(outcome)
    for case in cases:
        case.result = merged[case.name].arrays()
    elapsed = time.perf_counter() - started

    fh = fixed_horizon()
    print(
        f"Canary analysis simulation: {runs} runs per case, alpha {ALPHA}, candidate share "
        f"{SHARE:.0%}, a look every {BATCH} requests, up to {MAX_REQUESTS:,} requests "
        f"({elapsed:.0f} s on {args.workers} workers)\n"
    )
    head = (
        f"{'case':<22} {'rollback':>9} {'95% up':>7} {'med cand req':>12} "
        f"{'med cand ev':>11} {'med all ev':>10} {'repeated judge':>14}"
    )
    print(head)
    print("-" * len(head))
    rates: dict[str, tuple[float, float, float]] = {}
    for case in cases:
        r = case.result
        k = int((r["stop"] >= 0).sum())
        judge = float((r["judge_stop"] >= 0).mean())
        rates[case.name] = (k / runs, upper95(k, runs), judge)
        print(
            f"{case.name:<22} {k / runs:>9.2%} {upper95(k, runs):>7.2%} "
            f"{med(r['cand_requests']):>12,.0f} {med(r['cand_events']):>11,.0f} "
            f"{med(r['total_events']):>10,.0f} {judge:>14.2%}"
        )
    print(
        "\n(events = errors, slow requests, or candidate scores for quality; 'repeated judge' ="
        " z-test / Mann-Whitney U / z-test on means re-run after every batch at alpha 0.01)"
    )

    print("\nFixed-horizon test for 1% -> 2% at a 5% step, one-sided alpha 0.01, power 90%:")
    print(
        "  two-proportion z-test: n_c = ((z_a*sqrt(pbar(1-pbar)(1+1/k))"
        " + z_b*sqrt(pc qc + pb qb/k)) / (pc-pb))^2"
        f" with k = 19, pbar = {fh['pbar']:.4f}, z_a = {Z_ALPHA:.3f}, z_b = 1.282"
    )
    print(
        f"    = {fh['z_cand_requests']:,.0f} candidate requests ({fh['z_cand_errors']:.0f} "
        f"candidate errors); {fh['z_total_requests']:,.0f} requests and "
        f"{fh['z_total_errors']:.0f} errors in all"
    )
    print(
        f"  exact conditional binomial test on the error split (p0 = 0.05, p1 = {fh['p1']:.4f}):"
        f" {fh['exact_total_errors']:.0f} errors in all = {fh['exact_total_requests']:,.0f} "
        f"requests = {fh['exact_cand_requests']:,.0f} candidate requests "
        f"({fh['exact_cand_errors']:.0f} candidate errors)"
    )

    two = cases[1].result
    five = cases[2].result
    verdicts = [
        (
            "A/A error false rollback <= 1%",
            rates[cases[0].name][0] <= ALPHA,
            f"{rates[cases[0].name][0]:.2%} (95% upper {rates[cases[0].name][1]:.2%}); "
            f"repeated z-test {rates[cases[0].name][2]:.2%}",
        ),
        (
            "2x: median candidate requests below fixed horizon",
            med(two["cand_requests"]) < min(fh["z_cand_requests"], fh["exact_cand_requests"]),
            f"{med(two['cand_requests']):,.0f} vs {fh['z_cand_requests']:,.0f} (z) / "
            f"{fh['exact_cand_requests']:,.0f} (exact); errors in all "
            f"{med(two['total_events']):.0f} "
            f"vs {fh['z_total_errors']:.0f} / {fh['exact_total_errors']:.0f}; detected "
            f"{(two['stop'] >= 0).mean():.2%}",
        ),
        (
            "5x: median errors to detect <= 60",
            med(five["total_events"]) <= 60,
            f"{med(five['total_events']):.0f} errors in all "
            f"({med(five['cand_events']):.0f} candidate, "
            f"{med(five['cand_requests']):.0f} candidate requests); detected "
            f"{(five['stop'] >= 0).mean():.2%}",
        ),
        (
            "latency A/A false rollback <= 1%",
            rates[cases[3].name][0] <= ALPHA,
            f"{rates[cases[3].name][0]:.2%}; repeated Mann-Whitney {rates[cases[3].name][2]:.2%}",
        ),
        (
            "latency x1.3 detected in >= 99% of runs",
            rates[cases[4].name][0] >= 0.99,
            f"{rates[cases[4].name][0]:.2%}, median {med(cases[4].result['cand_requests']):,.0f} "
            "candidate requests",
        ),
        (
            "quality A/A false rollback <= 1%",
            rates[cases[5].name][0] <= ALPHA,
            f"{rates[cases[5].name][0]:.2%}; "
            f"repeated z-test on means {rates[cases[5].name][2]:.2%}",
        ),
        (
            "quality 0.80 -> 0.70 detected in >= 99% of runs",
            rates[cases[6].name][0] >= 0.99,
            f"{rates[cases[6].name][0]:.2%}, median {med(cases[6].result['cand_events']):,.0f} "
            "candidate scores",
        ),
    ]
    print()
    for label, ok, detail in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {detail}")


if __name__ == "__main__":
    main()
