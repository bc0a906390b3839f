"""Rollout metrics in the SQL stores: batch checks, additive upserts, reading back.

Both backends sum a batch of :class:`MetricDelta` per (rollout, step, variant)
in Python, then merge it into ``rollout_metrics``, ``rollout_latency_bins`` and
``rollout_token_bins`` with additive upserts; a slow threshold that differs from the stored one
rolls the whole batch back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from releaser.core.stats_aggregates import LATENCY_BINS, LatencyHistogram, VariantStats
from releaser.errors import BadInput, ReleaserError
from releaser.store._writes import Execute
from releaser.store.base import METRIC_VARIANTS, MetricDelta

__all__ = [
    "BATCH_ID_RETENTION_S",
    "METRIC_COLUMNS",
    "PreparedMetric",
    "check_batch_id",
    "claim_batch_id",
    "find_threshold_conflict",
    "metric_upserts",
    "prepare_metrics",
    "stats_from_rows",
    "threshold_conflict",
]


BATCH_ID_RETENTION_S = 7 * 24 * 3600
"""How long a batch id is remembered: longer than any outage a router retries through."""
_MAX_BATCH_ID = 128


def check_batch_id(batch_id: object) -> str:
    """``batch_id`` if it is a usable id (1-128 printable ASCII characters); BadInput otherwise."""
    if (
        not isinstance(batch_id, str)
        or not 0 < len(batch_id) <= _MAX_BATCH_ID
        or not batch_id.isascii()
        or not batch_id.isprintable()
    ):
        raise BadInput(
            f"metric batch id {batch_id!r} is not 1-{_MAX_BATCH_ID} printable ASCII characters",
            hint="use a fresh uuid4().hex per batch, and the same one when re-sending it",
        )
    return batch_id


def claim_batch_id(execute: Execute, batch_id: str, *, ph: str, now_s: str) -> bool:
    """Record ``batch_id`` in the open transaction; False if it was added before.

    ``now_s`` is the SQL for unix seconds by the database clock. Ids older than
    :data:`BATCH_ID_RETENTION_S` are dropped on the way.
    """
    cur = execute(
        f"INSERT INTO metric_batches (batch_id, applied_at) VALUES ({ph}, {now_s}) "
        "ON CONFLICT (batch_id) DO NOTHING",
        (batch_id,),
    )
    if cur.rowcount == 0:
        return False
    execute(
        f"DELETE FROM metric_batches WHERE applied_at < {now_s} - {ph}", (BATCH_ID_RETENTION_S,)
    )
    return True


# Counts above this are a bug upstream, not traffic; it also keeps sums inside 64-bit columns.
_MAX_DELTA_COUNT = 2**53
# Postgres INTEGER.
_MAX_STEP = 2**31 - 1
_INT_FIELDS = (
    "requests",
    "errors",
    "slow",
    "quality_count",
    "token_requests",
    "prompt_tokens",
    "completion_tokens",
)


@dataclass(frozen=True)
class PreparedMetric:
    """The checked deltas of one (rollout, step, variant) of a batch, summed, ready for SQL."""

    rollout_id: str
    step: int
    variant: str
    requests: int
    errors: int
    slow: int
    slow_threshold_ms: float | None
    quality_count: int
    quality_sum: float
    quality_sumsq: float
    bins: tuple[tuple[int, int], ...]
    """(bin, count) of the non-empty latency bins, by bin."""
    token_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_sumsq: float = 0.0
    prompt_tokens_sumsq: float = 0.0
    completion_tokens_sumsq: float = 0.0
    token_bins: tuple[tuple[int, int], ...] = ()
    """(bin, count) of the non-empty total-token bins, by bin."""

    def row(self) -> tuple[Any, ...]:
        """(rollout_id, step, variant, requests, errors, slow, slow_threshold_ms,
        quality_count, quality_sum, quality_sumsq, token_requests, prompt_tokens,
        completion_tokens, tokens_sumsq, prompt_tokens_sumsq, completion_tokens_sumsq), the
        column order of the upsert."""
        return (
            self.rollout_id,
            self.step,
            self.variant,
            self.requests,
            self.errors,
            self.slow,
            self.slow_threshold_ms,
            self.quality_count,
            self.quality_sum,
            self.quality_sumsq,
            self.token_requests,
            self.prompt_tokens,
            self.completion_tokens,
            self.tokens_sumsq,
            self.prompt_tokens_sumsq,
            self.completion_tokens_sumsq,
        )

    def bin_rows(self) -> list[tuple[str, int, str, int, int]]:
        """(rollout_id, step, variant, bin, count) for each non-empty latency bin."""
        return [(self.rollout_id, self.step, self.variant, b, n) for b, n in self.bins]

    def token_bin_rows(self) -> list[tuple[str, int, str, int, int]]:
        """(rollout_id, step, variant, bin, count) for each non-empty total-token bin."""
        return [(self.rollout_id, self.step, self.variant, b, n) for b, n in self.token_bins]


def prepare_metrics(batch: Sequence[MetricDelta]) -> list[PreparedMetric]:
    """Check every delta, then sum those of the same key (bad input writes nothing).

    The result is sorted by (rollout_id, step, variant): writers that lock rows in
    one global order cannot deadlock one another.
    """
    sums: dict[tuple[str, int, str], _Sum] = {}
    for index, delta in enumerate(batch):
        key = _checked_key(delta, index)
        where = f"metrics for {key[0]!r} step {key[1]} {key[2]}"
        stats = _checked_stats(delta.stats, where)
        acc = sums.get(key)
        if acc is None:
            sums[key] = acc = _Sum()
        acc.add(stats, where)
    return [acc.prepared(key) for key, acc in sorted(sums.items())]


def threshold_conflict(where: str, stored: float | None, given: float | None) -> BadInput:
    """The error for a slow threshold that differs from the one already counted against."""
    return BadInput(
        f"{where}: slow requests were counted over {stored} ms, this delta counts them over "
        f"{given} ms; nothing of the batch was written",
        hint="count slow requests against one threshold for the whole rollout step",
    )


METRIC_COLUMNS = (
    "step, variant, requests, errors, slow, slow_threshold_ms, quality_count, quality_sum, "
    "quality_sumsq, token_requests, prompt_tokens, completion_tokens, tokens_sumsq, "
    "prompt_tokens_sumsq, completion_tokens_sumsq"
)
"""The ``rollout_metrics`` columns :func:`stats_from_rows` reads, in its order."""


def stats_from_rows(
    metric_rows: Sequence[tuple[Any, ...]],
    bin_rows: Sequence[tuple[Any, ...]],
    token_bin_rows: Sequence[tuple[Any, ...]] = (),
    *,
    url: str,
) -> dict[tuple[int, str], VariantStats]:
    """Stored aggregates as :class:`VariantStats` by (step, variant), ordered by key.

    ``metric_rows`` are the :data:`METRIC_COLUMNS`; ``bin_rows`` and ``token_bin_rows``
    are (step, variant, bin, count) of the latency and total-token histograms.
    """
    fields: dict[tuple[int, str], dict[str, Any]] = {}
    for row in metric_rows:
        step, variant, requests, errors, slow, threshold, q_count, q_sum, q_sumsq = row[:9]
        t_requests, t_prompt, t_completion, t_sumsq, p_sumsq, c_sumsq = row[9:]
        fields[(int(step), str(variant))] = {
            "requests": int(requests),
            "errors": int(errors),
            "slow": int(slow),
            "slow_threshold_ms": None if threshold is None else float(threshold),
            "quality_count": int(q_count),
            "quality_sum": float(q_sum),
            "quality_sumsq": float(q_sumsq),
            "token_requests": int(t_requests),
            "prompt_tokens": int(t_prompt),
            "completion_tokens": int(t_completion),
            "tokens_sumsq": float(t_sumsq),
            "prompt_tokens_sumsq": float(p_sumsq),
            "completion_tokens_sumsq": float(c_sumsq),
        }
    bins = _histograms(bin_rows, "latency", url)
    token_bins = _histograms(token_bin_rows, "token", url)
    empty = [0] * LATENCY_BINS
    result: dict[tuple[int, str], VariantStats] = {}
    for key in sorted(fields.keys() | bins.keys() | token_bins.keys()):
        data = fields.get(key, {})
        data["latency"] = {"counts": tuple(bins.get(key, empty))}
        data["tokens"] = {"counts": tuple(token_bins.get(key, empty))}
        try:
            result[key] = VariantStats.model_validate(data)
        except ValidationError as exc:
            raise _damaged(url, f"step {key[0]} {key[1]}: {_describe(exc)}") from None
    return result


def _histograms(
    rows: Sequence[tuple[Any, ...]], what: str, url: str
) -> dict[tuple[int, str], list[int]]:
    bins: dict[tuple[int, str], list[int]] = {}
    for step, variant, bin_, count in rows:
        key = (int(step), str(variant))
        if not 0 <= int(bin_) < LATENCY_BINS:
            raise _damaged(url, f"{what} bin {bin_} of step {step} {variant} is out of range")
        bins.setdefault(key, [0] * LATENCY_BINS)[int(bin_)] = int(count)
    return bins


class _Sum:
    """Deltas of one key added up in Python, so the batch needs one upsert per key."""

    def __init__(self) -> None:
        self.requests = self.errors = self.slow = self.quality_count = 0
        self.quality_sum = self.quality_sumsq = 0.0
        self.token_requests = self.prompt_tokens = self.completion_tokens = 0
        self.tokens_sumsq = self.prompt_tokens_sumsq = self.completion_tokens_sumsq = 0.0
        self.threshold: float | None = None
        self.bins: Sequence[int] = ()
        self.token_bins: Sequence[int] = ()

    def add(self, stats: VariantStats, where: str) -> None:
        given = stats.slow_threshold_ms
        if given is not None:
            if self.threshold is not None and self.threshold != given:
                raise threshold_conflict(where, self.threshold, given)
            self.threshold = given
        self.requests += stats.requests
        self.errors += stats.errors
        self.slow += stats.slow
        self.quality_count += stats.quality_count
        self.quality_sum += stats.quality_sum
        self.quality_sumsq += stats.quality_sumsq
        self.token_requests += stats.token_requests
        self.prompt_tokens += stats.prompt_tokens
        self.completion_tokens += stats.completion_tokens
        self.tokens_sumsq += stats.tokens_sumsq
        self.prompt_tokens_sumsq += stats.prompt_tokens_sumsq
        self.completion_tokens_sumsq += stats.completion_tokens_sumsq
        self.bins = _added(self.bins, stats.latency.counts)
        self.token_bins = _added(self.token_bins, stats.tokens.counts)

    def prepared(self, key: tuple[str, int, str]) -> PreparedMetric:
        return PreparedMetric(
            *key,
            requests=self.requests,
            errors=self.errors,
            slow=self.slow,
            slow_threshold_ms=self.threshold,
            quality_count=self.quality_count,
            quality_sum=self.quality_sum,
            quality_sumsq=self.quality_sumsq,
            bins=tuple([(b, n) for b, n in enumerate(self.bins) if n]),
            token_requests=self.token_requests,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            tokens_sumsq=self.tokens_sumsq,
            prompt_tokens_sumsq=self.prompt_tokens_sumsq,
            completion_tokens_sumsq=self.completion_tokens_sumsq,
            token_bins=tuple([(b, n) for b, n in enumerate(self.token_bins) if n]),
        )


def _added(kept: Sequence[int], counts: Sequence[int]) -> Sequence[int]:
    # Most keys get one delta a batch: its counts are taken as they are.
    return [a + b for a, b in zip(kept, counts, strict=True)] if kept else counts


def _checked_key(delta: object, index: int) -> tuple[str, int, str]:
    if not isinstance(delta, MetricDelta):
        raise BadInput(f"metric delta #{index} is a {type(delta).__name__}, not a MetricDelta")
    rollout_id, step, variant = delta.rollout_id, delta.step, delta.variant
    if not isinstance(rollout_id, str) or not rollout_id:
        raise BadInput(f"metric delta #{index}: rollout_id must be a non-empty string")
    # bool is an int subclass; True is no step number.
    if type(step) is not int or not 0 <= step <= _MAX_STEP:
        raise BadInput(
            f"metric delta #{index} for {rollout_id!r}: step {step!r} is not a step index",
            hint="steps are numbered 0, 1, 2, ... in rollout order",
        )
    if variant not in METRIC_VARIANTS:
        raise BadInput(
            f"metric delta #{index} for {rollout_id!r} step {step}: unknown variant {variant!r}",
            hint=f"a variant is one of: {', '.join(METRIC_VARIANTS)}",
        )
    return rollout_id, step, variant


def _checked_stats(stats: object, where: str) -> VariantStats:
    """A validated copy of ``stats``: catches deltas built with ``model_construct``."""
    if not isinstance(stats, VariantStats):
        raise BadInput(f"{where}: stats is a {type(stats).__name__}, not a VariantStats")
    data: dict[str, Any] = {name: getattr(stats, name) for name in VariantStats.model_fields}
    # Nested models are not re-validated unless passed as data.
    for name in ("latency", "tokens"):
        histogram = data[name]
        data[name] = {
            "counts": histogram.counts if isinstance(histogram, LatencyHistogram) else histogram
        }
    try:
        checked = VariantStats.model_validate(data)
    except ValidationError as exc:
        raise BadInput(
            f"{where}: {_describe(exc)}; nothing of the batch was written",
            hint="report deltas of non-negative counts, as VariantStats.of builds them",
        ) from None
    counts = [getattr(checked, name) for name in _INT_FIELDS]
    counts += list(checked.latency.counts) + list(checked.tokens.counts)
    if max(counts) > _MAX_DELTA_COUNT:
        raise BadInput(
            f"{where}: a count above {_MAX_DELTA_COUNT} in one delta; nothing was written",
            hint="flush metrics more often",
        )
    return checked


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'stats'}: {error['msg']}"
        for error in exc.errors()
    )


def _damaged(url: str, problem: str) -> ReleaserError:
    return ReleaserError(
        f"the rollout metrics in {url} are inconsistent: {problem}",
        hint="the metrics tables were altered outside releaser; restore them from a backup",
    )


def metric_upserts(metrics_source: str, bins_source: str) -> tuple[str, str, str]:
    """The additive upserts of aggregate rows, of latency bins and of total-token bins,
    fed by the given sources.

    ``metrics_source`` yields (rollout_id, step, variant, requests, errors, slow,
    slow_threshold_ms, quality_count, quality_sum, quality_sumsq, token_requests,
    prompt_tokens, completion_tokens, tokens_sumsq, prompt_tokens_sumsq,
    completion_tokens_sumsq, updated_at) rows: ``VALUES (...)``
    or a ``SELECT``; ``bins_source`` yields (rollout_id, step, variant, bin, count) for
    either histogram. A source must not repeat a key (batches are summed per key
    first). An aggregate row whose slow threshold differs from the stored one is
    not updated, so fewer rows change than were given: callers compare the row
    count and roll back.
    """
    metrics = f"""INSERT INTO rollout_metrics AS m (
            rollout_id, step, variant, requests, errors, slow, slow_threshold_ms,
            quality_count, quality_sum, quality_sumsq, token_requests, prompt_tokens,
            completion_tokens, tokens_sumsq, prompt_tokens_sumsq, completion_tokens_sumsq,
            updated_at
        ) {metrics_source}
        ON CONFLICT (rollout_id, step, variant) DO UPDATE SET
            requests = m.requests + excluded.requests,
            errors = m.errors + excluded.errors,
            slow = m.slow + excluded.slow,
            slow_threshold_ms = coalesce(m.slow_threshold_ms, excluded.slow_threshold_ms),
            quality_count = m.quality_count + excluded.quality_count,
            quality_sum = m.quality_sum + excluded.quality_sum,
            quality_sumsq = m.quality_sumsq + excluded.quality_sumsq,
            token_requests = m.token_requests + excluded.token_requests,
            prompt_tokens = m.prompt_tokens + excluded.prompt_tokens,
            completion_tokens = m.completion_tokens + excluded.completion_tokens,
            tokens_sumsq = m.tokens_sumsq + excluded.tokens_sumsq,
            prompt_tokens_sumsq = m.prompt_tokens_sumsq + excluded.prompt_tokens_sumsq,
            completion_tokens_sumsq = m.completion_tokens_sumsq + excluded.completion_tokens_sumsq,
            updated_at = excluded.updated_at
        WHERE m.slow_threshold_ms IS NULL OR excluded.slow_threshold_ms IS NULL
            OR m.slow_threshold_ms = excluded.slow_threshold_ms"""
    bins = f"""INSERT INTO rollout_latency_bins AS b (rollout_id, step, variant, bin, count)
        {bins_source}
        ON CONFLICT (rollout_id, step, variant, bin)
        DO UPDATE SET count = b.count + excluded.count"""
    token_bins = f"""INSERT INTO rollout_token_bins AS b (rollout_id, step, variant, bin, count)
        {bins_source}
        ON CONFLICT (rollout_id, step, variant, bin)
        DO UPDATE SET count = b.count + excluded.count"""
    return metrics, bins, token_bins


def find_threshold_conflict(
    prepared: Sequence[PreparedMetric], stored: Callable[[PreparedMetric], float | None]
) -> ReleaserError:
    """The error for the first key whose stored slow threshold differs from the batch's.

    Called after an upsert changed fewer rows than it was given, inside the same
    transaction; ``stored`` reads a key's stored threshold.
    """
    for p in prepared:
        if p.slow_threshold_ms is None:
            continue
        current = stored(p)
        if current is not None and current != p.slow_threshold_ms:
            where = f"metrics for {p.rollout_id!r} step {p.step} {p.variant}"
            return threshold_conflict(where, current, p.slow_threshold_ms)
    return ReleaserError(
        "rollout metrics were not all written, and no slow threshold conflict explains it",
        hint="nothing of the batch was written; retry the flush",
    )
