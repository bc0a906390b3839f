"""Where canary analysis reads its counts: the store (router and gateway) or Prometheus.

One analysis, two sources of the same evidence, behind :class:`MetricsSource`: per rollout
step and variant, a :class:`~releaser.core.stats_aggregates.VariantStats`.

- :class:`StoreMetrics` reads what the router SDK and the gateway wrote to the store.
- :class:`PrometheusMetricsSource` reads the raw counter samples of the service's series
  (``metrics.prometheus`` in releaser.yaml) from the rollout's start to now (one query per
  selector and window of :data:`CHUNK_S`), and splits them at the steps' start times
  (``releaser.core.prom_counts``). The
  series' release label tells the variants apart: the rollout's baseline release id is the
  baseline, its candidate release id the candidate; other releases are left out.

The post-promotion guard reads one release's increases in one window through
:meth:`PrometheusMetricsSource.read_release` (the stable release since the guard's last
check), with the same reset handling and the same rule on missing series.

No evidence is never good news: Prometheus down or slow, a refused query, or a requests or
latency query that matches no series of the baseline's or the candidate's release raises
:class:`NoEvidence`, and the decision holds (see
``releaser.api.rollout_status.decide_step``). An errors query that matches no series is
taken as no error yet, since prometheus-client exports a labelled counter only after its
first increment; ``releaser validate`` still checks it parses.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from releaser.core.prom_counts import step_boundaries, summed_increases, variant_stats
from releaser.core.rollout import Rollout
from releaser.core.stats_aggregates import VariantStats
from releaser.errors import ExternalUnavailable, ReleaserError

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config import Config
    from releaser.config.metrics import PrometheusMetrics
    from releaser.integrations.prometheus import PrometheusClient, Series
    from releaser.store.base import Store

__all__ = [
    "Metrics",
    "MetricsSource",
    "NoEvidence",
    "PrometheusMetricsSource",
    "StoreMetrics",
    "check_metrics_sources",
    "metrics_source",
]

Metrics = Mapping[tuple[int, str], VariantStats]
"""A rollout's aggregates by (step, variant)."""

CHUNK_S = 6 * 3600.0
"""Longest window one query asks for (6 h of 15-second scrapes of 200 series: ~8 MB)."""
MIN_CHUNK_S = 60.0
"""Shortest window a too-large answer is split down to before the read gives up."""


class NoEvidence(ExternalUnavailable):
    """The metrics source gave no usable evidence; a decision on it holds."""


class MetricsSource(Protocol):
    """Reads a rollout's per-step, per-variant aggregates."""

    def read(self, rollout: Rollout, now: str) -> Metrics:
        """Aggregates of each step so far, the live one up to ``now``."""
        ...


class StoreMetrics:
    """The counts the router and gateway wrote to the store (``metrics.source: router``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(self, rollout: Rollout, now: str) -> Metrics:
        """The store's aggregates of the rollout (``now`` is not needed: they are live)."""
        return self.store.read_metrics(rollout.id)


class PrometheusMetricsSource:
    """Counter and histogram increases per step from Prometheus (``source: prometheus``)."""

    def __init__(
        self,
        service: str,
        spec: PrometheusMetrics,
        client: PrometheusClient | None = None,
        *,
        store: Store | None = None,
        chunk_s: float = CHUNK_S,
        min_chunk_s: float = MIN_CHUNK_S,
    ) -> None:
        from releaser.integrations.prometheus import PrometheusClient

        self.service = service
        self.spec = spec
        self.client = client or PrometheusClient(spec.url, timeout_s=spec.timeout_s)
        self.store = store
        """Where a shadow step's mirrored calls are counted (only the gateway sees them)."""
        self.chunk_s, self.min_chunk_s = chunk_s, min_chunk_s

    def read(self, rollout: Rollout, now: str) -> Metrics:
        """Each step's increases per variant; raises :class:`NoEvidence` when there are none."""
        bounds = step_boundaries(rollout, now)
        sides = {rollout.candidate: "candidate"}
        if rollout.baseline is not None:
            sides[rollout.baseline] = "baseline"
        fetched = {name: self._fetch(name, bounds) for name in self.queries()}
        label = self.spec.release_label
        # Only the gateway sees a shadow step's candidate (its figures come from the store).
        needed = [r for r, v in sides.items() if v == "baseline" or rollout.current.shadow is None]
        for name in ("requests", "latency"):
            present = {s.labels.get(label) for s in fetched.get(name, [])}
            missing = [r for r in needed if r not in present]
            if name in fetched and missing:
                raise NoEvidence(
                    f"the {name} query {self.spec.selector(name, self.service)!r} matches no "
                    f"series with {label}={' or '.join(missing)} at Prometheus "
                    f"{self.client.shown_url}",
                    hint=f"the {label!r} label must hold the release id; the rollout holds "
                    "until that release's series are scraped",
                )
        out: dict[tuple[int, str], VariantStats] = {}
        for release, variant in sides.items():
            for step, stats in enumerate(self._windows(fetched, release, bounds)):
                out[(step, variant)] = stats
        shadows = [i for i in range(len(bounds) - 1) if rollout.steps[i].shadow is not None]
        if shadows and self.store is not None:
            # A shadow step's candidate serves nobody: its mirrored calls and their
            # agreement are what the gateway counted in the store.
            stored = self.store.read_metrics(rollout.id)
            for i in shadows:
                out[(i, "candidate")] = stored.get((i, "candidate"), VariantStats())
        return out

    def read_release(self, release: str, start: float, end: float) -> VariantStats:
        """One release's increases in the window (start, end] (unix seconds), all its series
        added up; raises :class:`NoEvidence` when there are none.

        What the post-promotion guard reads for the stable release since its last check
        (:mod:`releaser.api.guard`): requests, errors and latency, no quality scores.
        Consecutive windows partition the counts, as the steps of a rollout do.
        """
        bounds = [start, max(start, end)]
        names = [n for n in self.queries() if not n.startswith("quality.")]
        fetched = {name: self._fetch(name, bounds) for name in names}
        label = self.spec.release_label
        for name in ("requests", "latency"):
            if name in fetched and not any(s.labels.get(label) == release for s in fetched[name]):
                raise NoEvidence(
                    f"the {name} query {self.spec.selector(name, self.service)!r} matches no "
                    f"series with {label}={release} at Prometheus {self.client.shown_url}",
                    hint=f"the {label!r} label must hold the release id; the guard checks "
                    "nothing until that release's series are scraped",
                )
        return self._windows(fetched, release, bounds)[0]

    def _windows(
        self, fetched: Mapping[str, Sequence[Series]], release: str, bounds: Sequence[float]
    ) -> list[VariantStats]:
        """One release's stats in each window between ``bounds``, from its series only."""
        label = self.spec.release_label
        mine = {
            name: [s for s in series if s.labels.get(label) == release]
            for name, series in fetched.items()
        }
        per = {
            name: summed_increases((s.samples for s in series), bounds)
            for name, series in mine.items()
            if name != "latency"
        }
        buckets = _bucket_increases(mine.get("latency", []), bounds)
        out = []
        for step in range(len(bounds) - 1):
            quality = {
                k: per[f"quality.{k}"][step]
                for k in ("sum", "count", "sumsq")
                if f"quality.{k}" in per
            }
            out.append(
                variant_stats(
                    requests=per["requests"][step],
                    errors=per["errors"][step],
                    buckets=buckets[step] if self.spec.latency else None,
                    scale_to_ms=self.spec.scale_to_ms,
                    quality_sum=quality.get("sum"),
                    quality_count=quality.get("count"),
                    quality_sumsq=quality.get("sumsq"),
                )
            )
        return out

    def queries(self) -> list[str]:
        """The names of the series read: requests, errors, latency, quality.* when set."""
        names = ["requests", "errors"]
        if self.spec.latency is not None:
            names.append("latency")
        if self.spec.quality is not None:
            names += ["quality.sum", "quality.count"]
            if self.spec.quality.sumsq is not None:
                names.append("quality.sumsq")
        return names

    def _fetch(self, name: str, bounds: Sequence[float]) -> list[Series]:
        """The series of one selector, samples from a lookback before the first step on."""
        selector = self.spec.selector(name, self.service)
        start = bounds[0] - self.spec.lookback_s
        try:
            series = self._samples(selector, start, bounds[-1])
        except ReleaserError as exc:
            raise NoEvidence(exc.message, hint=exc.hint) from None
        label = self.spec.release_label
        if name != "errors" and not any(label in s.labels for s in series):
            raise NoEvidence(
                f"the {name} query {selector!r} matches no series with a "
                f"{label!r} label at Prometheus {self.client.shown_url}",
                hint="check the selector and that the release label is exported; the "
                "rollout holds until there is evidence",
            )
        return series

    def _samples(self, selector: str, start: float, end: float) -> list[Series]:
        """Raw samples in (start, end], in windows of at most ``chunk_s``, each halved
        while its answer is too large (a long rollout scraped often), joined per series."""
        from releaser.integrations.prometheus import ResponseTooLarge, Series

        joined: dict[tuple[tuple[str, str], ...], dict[float, float]] = {}
        pending = [
            (max(start, end - self.chunk_s * (k + 1)), end - self.chunk_s * k)
            for k in range(max(1, math.ceil((end - start) / self.chunk_s)))
        ]
        while pending:
            lo, hi = pending.pop()
            try:
                part = self.client.raw_samples(selector, at=hi, window_s=hi - lo)
            except ResponseTooLarge:
                if hi - lo <= self.min_chunk_s:
                    raise
                pending += [((lo + hi) / 2, hi), (lo, (lo + hi) / 2)]
                continue
            for s in part:
                # Windows overlap by under a millisecond: a sample seen twice is one sample.
                joined.setdefault(tuple(sorted(s.labels.items())), {}).update(s.samples)
        return [Series(dict(key), sorted(samples.items())) for key, samples in joined.items()]


def _bucket_increases(
    series: Sequence[Series], bounds: Sequence[float]
) -> list[dict[float, float]]:
    """Per step, the increase of each ``le`` bucket, summed over series (each reset-handled)."""
    by_le: dict[float, list[Series]] = defaultdict(list)
    for s in series:
        try:
            by_le[float(s.labels.get("le", "nan"))].append(s)
        except ValueError:
            continue
    steps: list[dict[float, float]] = [{} for _ in range(max(0, len(bounds) - 1))]
    for le, group in by_le.items():
        if le != le:  # NaN: a series without a usable 'le' label is not a bucket
            continue
        for step, inc in enumerate(summed_increases((s.samples for s in group), bounds)):
            steps[step][le] = inc
    return steps


def metrics_source(ws: Workspace, service: str) -> MetricsSource:
    """The source releaser.yaml names for ``service`` (the store unless it says Prometheus)."""
    spec = ws.config.service(service).metrics
    if spec.source == "prometheus":
        return PrometheusMetricsSource(service, spec.server, store=ws.store)
    return StoreMetrics(ws.store)


def check_metrics_sources(
    config: Config, *, now: float | None = None
) -> tuple[list[str], list[str]]:
    """Each Prometheus query of the config, asked once: (one line per service and query,
    warnings).

    A query Prometheus refuses raises, naming it: the config is wrong wherever it runs. A
    server that does not answer is a warning naming the service and the query, and that
    service's other queries are not asked: ``validate`` often runs where production's
    Prometheus cannot be reached (a CI runner), and ``rollout advance`` holds, saying why,
    while it cannot be.
    """
    from releaser.errors import ExternalUnavailable
    from releaser.integrations.prometheus import PrometheusClient

    at = time.time() if now is None else now
    lines: list[str] = []
    warnings: list[str] = []
    for name, svc in config.services.items():
        if svc.metrics.source != "prometheus":
            continue
        spec = svc.metrics.server
        client = PrometheusClient(spec.url, timeout_s=spec.timeout_s)
        for which in PrometheusMetricsSource(name, spec, client).queries():
            selector = spec.selector(which, name)
            try:
                found = client.check(selector, at=at)
            except ExternalUnavailable as exc:
                warnings.append(
                    f"services.{name}.metrics.prometheus: {exc.message}; its queries were not "
                    "checked (rollout advance holds while Prometheus cannot be reached)"
                )
                break
            note = f"{found} series" if found else "no series yet"
            lines.append(f"services.{name}.metrics.prometheus.{which}: {selector!r}: {note}")
    return lines, warnings
