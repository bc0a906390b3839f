"""Per-variant request counters that the router fills on the request path and flushes.

``add`` costs a lock, a dict look-up and a few integer increments: plain counters per
``(rollout_id, step, variant)``, a list of latency bin counts (the fixed histogram layout of
:mod:`releaser.core.stats_aggregates`), the count, sum and sum of squares of quality
scores, and for requests that report tokens their count, the sums of prompt and completion
tokens, the sums of squares of their totals, prompt and completion tokens (exact integers)
and a list of total-token bin counts in the same layout. A call without tokens pays two
``is None`` tests for them.
``flush`` swaps the counters out and writes them as a batch of
:class:`~releaser.store.base.MetricDelta` under a fresh batch id. A batch whose write
failed is re-sent unchanged, under the same id, before anything newer, so the store adds
it exactly once even when the failure hid a commit that landed. Counts that could not be
written wait for the next flush; past ``max_pending_keys`` distinct keys the oldest are
dropped (and counted) so an outage cannot grow memory without bound.

Distinct units: given the request's unit id, ``add`` also hashes it (XXH64 under the
rollout's salt, :func:`releaser.core.unit_sketch.unit_hash`) and raises one register of
the HyperLogLog sketch of the assignment's cohort group (:attr:`Assignment.group`): 4 KiB
per (rollout_id, step, variant, group), allocated on the first unit, and never the id
itself. A pending key holds at most one sketch per group of its step, so the bound on
pending keys bounds them too. The sketches ride in their key's delta and the store merges
them register-wise with ``max`` in the batch's transaction: a re-sent batch changes
nothing.

Slow-request counts are not kept here: they need the rollout's threshold, and the
histogram already answers "how many requests took longer than X".
"""

from __future__ import annotations

import logging
import math
import operator
import threading
import uuid
from dataclasses import dataclass

from xxhash import xxh64_intdigest

from releaser.core.stats_aggregates import (
    LATENCY_BINS,
    LATENCY_BINS_PER_DECADE,
    MAX_TOKENS_PER_REQUEST,
    LatencyHistogram,
    VariantStats,
    latency_bin,
)
from releaser.core.unit_sketch import PRECISION, REGISTERS, UnitSketch, unit_hash
from releaser.router.snapshot import Assignment
from releaser.store.base import MetricDelta, Store, UnitDelta

__all__ = ["BufferCounts", "MetricsBuffer"]

logger = logging.getLogger("releaser.router")

MAX_PENDING_KEYS = 10_000
_LAST_BIN = LATENCY_BINS - 1
_BINS_PER_DECADE = LATENCY_BINS_PER_DECADE
_log10 = math.log10
_MAX_TOKENS = MAX_TOKENS_PER_REQUEST
_Key = tuple[str, int, str]
_RANK_BITS = 64 - PRECISION
_RANK_MASK = (1 << _RANK_BITS) - 1
_MAX_RANK = _RANK_BITS + 1
_hash64 = xxh64_intdigest


class _Units:
    """Requests with a unit id, and the sketch registers, of one cohort group of a key."""

    __slots__ = ("registers", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.registers = bytearray(REGISTERS)

    def absorb(self, other: _Units) -> None:
        self.requests += other.requests
        self.registers = bytearray(map(max, self.registers, other.registers))


def _odd_latency_bin(ms: object) -> int:
    """The bin of a latency outside [1, 100000) ms, or -1 if it is not a number."""
    if not isinstance(ms, int | float):
        return -1
    if ms != ms:  # NaN: like a clock glitch, counted as fastest (as latency_bin does)
        return 0
    if ms == math.inf:
        return _LAST_BIN
    return latency_bin(ms)


def _odd_unit_hash(unit_id: object, salt: int) -> int:
    """The unit hash of an id plain ``encode()`` refused: a str with a lone surrogate is
    hashed as :func:`releaser.core.unit_sketch.unit_hash` does; anything else is -1."""
    if not isinstance(unit_id, str):
        return -1
    return unit_hash(salt, unit_id)


def _token_count(value: object) -> int | None:
    """A token count given as something other than a plain int (a float 12.0, a numpy
    integer), or None when it is no count: not a whole number, negative, too large, a bool."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, float):
            if not value.is_integer():
                return None
            count = int(value)
        else:
            count = operator.index(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return count if 0 <= count <= _MAX_TOKENS else None


def _token_bin(tokens: int) -> int:
    """The histogram bin of a request's total tokens (the latency layout; 0 tokens: bin 0)."""
    if tokens < 1:
        return 0
    if tokens >= 100_000:
        return _LAST_BIN
    return 1 + int(_BINS_PER_DECADE * _log10(tokens))


class _Tally:
    """Mutable counters of one (rollout, step, variant); only touched under the lock."""

    __slots__ = (
        "bins",
        "completion_sumsq",
        "completion_tokens",
        "errors",
        "prompt_sumsq",
        "prompt_tokens",
        "quality_count",
        "quality_sum",
        "quality_sumsq",
        "requests",
        "token_bins",
        "token_requests",
        "tokens_sumsq",
        "units",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.bins = [0] * LATENCY_BINS
        self.quality_count = 0
        self.quality_sum = 0.0
        self.quality_sumsq = 0.0
        self.token_requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.tokens_sumsq = 0  # exact ints: converted to float once, in stats()
        self.prompt_sumsq = 0
        self.completion_sumsq = 0
        self.token_bins = [0] * LATENCY_BINS
        self.units: dict[str, _Units] = {}

    def count_tokens(self, prompt: int, completion: int) -> None:
        """Count one request's tokens (lock held; the slow path's twin of add's)."""
        total = prompt + completion
        self.token_requests += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.tokens_sumsq += total * total
        self.prompt_sumsq += prompt * prompt
        self.completion_sumsq += completion * completion
        self.token_bins[_token_bin(total)] += 1

    def absorb(self, other: _Tally) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.bins = [a + b for a, b in zip(self.bins, other.bins, strict=True)]
        self.quality_count += other.quality_count
        self.quality_sum += other.quality_sum
        self.quality_sumsq += other.quality_sumsq
        self.token_requests += other.token_requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.tokens_sumsq += other.tokens_sumsq
        self.prompt_sumsq += other.prompt_sumsq
        self.completion_sumsq += other.completion_sumsq
        self.token_bins = [a + b for a, b in zip(self.token_bins, other.token_bins, strict=True)]
        for group, units in other.units.items():
            kept = self.units.get(group)
            if kept is None:
                self.units[group] = units
            else:
                kept.absorb(units)

    def unit_deltas(self) -> tuple[UnitDelta, ...]:
        """The unit sketches of each cohort group, by group name."""
        return tuple(
            UnitDelta(group, u.requests, UnitSketch(u.registers))
            for group, u in sorted(self.units.items())
            if u.requests
        )

    def stats(self) -> VariantStats:
        # Float sums of many clamped scores can drift past the validator's bounds by an
        # ulp or two; clip them back to what scores in [0, 1] allow.
        n = self.quality_count
        total = min(max(self.quality_sum, 0.0), float(n))
        sumsq = min(max(self.quality_sumsq, total * total / n if n else 0.0), total)
        return VariantStats(
            requests=self.requests,
            errors=min(self.errors, self.requests),
            latency=LatencyHistogram(counts=tuple(self.bins)),
            quality_count=n,
            quality_sum=total,
            quality_sumsq=sumsq,
            token_requests=self.token_requests,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            tokens_sumsq=float(self.tokens_sumsq),
            prompt_tokens_sumsq=float(self.prompt_sumsq),
            completion_tokens_sumsq=float(self.completion_sumsq),
            tokens=LatencyHistogram(counts=tuple(self.token_bins)),
        )


_Entry = tuple[Assignment, _Tally, _Units | None]


@dataclass(frozen=True)
class BufferCounts:
    """What the buffer did since it was made (for status displays and tests)."""

    flushed_requests: int
    """Requests written to the store: baseline and candidate, and the stable release's only
    under the post-promotion guard (other stable traffic is not counted)."""
    pending_requests: int
    """Requests counted and not written yet (waiting for the next flush)."""
    clamped_scores: int
    """Scores outside [0, 1] that were clamped into it."""
    rejected_values: int
    """Scores or latencies that were not numbers (NaN, strings), and token counts that were
    not whole numbers in [0, 10**9], which were ignored (a request with a bad token count
    has none of its tokens counted)."""
    dropped_requests: int
    """Requests whose counts were dropped because flushes kept failing."""


@dataclass(frozen=True)
class _Batch:
    """Deltas written (or to be re-sent) as one unit under one id."""

    batch_id: str
    deltas: list[MetricDelta]

    @classmethod
    def of(cls, tallies: dict[_Key, _Tally]) -> _Batch:
        """A new batch, under a fresh id, of the tallies that counted requests."""
        deltas = [
            MetricDelta(rollout_id, step, variant, tally.stats(), tally.unit_deltas())
            for (rollout_id, step, variant), tally in tallies.items()
            if tally.requests
        ]
        return cls(uuid.uuid4().hex, deltas)

    @property
    def requests(self) -> int:
        """Requests counted in the batch."""
        return sum(d.stats.requests for d in self.deltas)


class MetricsBuffer:
    """Thread-safe counters per (rollout_id, step, variant), flushed to a store."""

    def __init__(self, *, max_pending_keys: int = MAX_PENDING_KEYS) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._tallies: dict[_Key, _Tally] = {}
        # id(assignment) -> (assignment, its tally, its group's units or None): the
        # request path's look-up
        self._by_assignment: dict[int, _Entry] = {}
        self._pending: dict[_Key, _Tally] = {}
        # the last batch whose write failed: re-sent as it is, under its id
        self._unconfirmed: _Batch | None = None
        self._max_pending_keys = max(1, max_pending_keys)
        self._flushed = 0
        self._clamped = 0
        self._rejected = 0
        self._dropped = 0

    def add(
        self,
        assignment: Assignment,
        latency_ms: float | None = None,
        error: bool = False,
        score: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        unit_id: str | None = None,
    ) -> None:
        """Count one request of a baseline or candidate assignment; never raises on values.

        A score outside [0, 1] is clamped into it and counted in ``clamped_scores``; a score
        or latency that is not a number is ignored and counted in ``rejected_values``, as is
        a token count that is not a whole number in [0, 10**9]. A request reports tokens
        when either count is given (a missing one counts as 0). A non-empty str
        ``unit_id`` is counted in the sketch of the assignment's cohort group (an
        assignment with no group, and any other unit id, count no unit).
        """
        if assignment.rollout_id is None:
            return  # stable traffic is in no comparison (but for the post-promotion guard)
        rank = 0  # 0: no unit to count
        if unit_id:
            try:
                # releaser.core.unit_sketch.unit_hash, inlined (the tests hold it to it):
                # plain encode() is twice as fast, and the same bytes for any valid str.
                hashed = _hash64(unit_id.encode(), assignment.unit_salt)
            except Exception:
                hashed = _odd_unit_hash(unit_id, assignment.unit_salt)
            if hashed >= 0:
                # UnitSketch.add_hash, inlined: the register the top bits choose keeps the
                # highest rank (position of the first 1 in the other bits) seen.
                register = hashed >> _RANK_BITS
                rank = _MAX_RANK - (hashed & _RANK_MASK).bit_length()
        odd = False
        bin_index = -1
        tokens = -1
        try:
            if latency_ms is not None:
                # latency_bin() inlined for the common range (the tests hold it to the same
                # bins): for 1 <= ms < 100000, floor == int and the min() never bites.
                if 1.0 <= latency_ms < 100_000.0:
                    bin_index = 1 + int(_BINS_PER_DECADE * _log10(latency_ms))
                else:
                    bin_index = _odd_latency_bin(latency_ms)
                    odd = bin_index < 0
            # Only a float in [0, 1] takes the fast path: the sums must stay floats.
            if score is not None and (score.__class__ is not float or not 0.0 <= score <= 1.0):
                odd = True
            if prompt_tokens is not None or completion_tokens is not None:
                p = 0 if prompt_tokens is None else prompt_tokens
                c = 0 if completion_tokens is None else completion_tokens
                # Only plain ints in range take the fast path; the rest goes to _add_odd.
                if (
                    p.__class__ is int
                    and c.__class__ is int
                    and 0 <= p <= _MAX_TOKENS
                    and 0 <= c <= _MAX_TOKENS
                ):
                    tokens = p + c
                    # _token_bin() inlined, as for latency (the tests hold it to the bins).
                    if 1 <= tokens < 100_000:
                        token_bin = 1 + int(_BINS_PER_DECADE * _log10(tokens))
                    else:
                        token_bin = 0 if tokens < 1 else _LAST_BIN
                else:
                    odd = True
        except Exception:  # not numbers: sorted out (and counted) by _add_odd
            odd = True
        # Assignments are built once per compiled route, so identity finds the counters;
        # the entry keeps the assignment alive, so its id cannot be reused meanwhile.
        lock = self._lock
        lock.acquire()  # not ``with``: measurably cheaper on this path
        try:
            entry = self._by_assignment.get(id(assignment))
            if entry is None or entry[0] is not assignment:
                entry = self._entry(assignment)
            tally = entry[1]
            tally.requests += 1
            if rank:
                units = entry[2]
                if units is not None:
                    units.requests += 1
                    registers = units.registers
                    if rank > registers[register]:
                        registers[register] = rank
            if error:
                tally.errors += 1
            if bin_index >= 0:
                tally.bins[bin_index] += 1
            if score is not None and not odd:
                tally.quality_count += 1
                tally.quality_sum += score
                tally.quality_sumsq += score * score
            if tokens >= 0:
                tally.token_requests += 1
                tally.prompt_tokens += p
                tally.completion_tokens += c
                tally.tokens_sumsq += tokens * tokens
                tally.prompt_sumsq += p * p
                tally.completion_sumsq += c * c
                tally.token_bins[token_bin] += 1
        finally:
            lock.release()
        if odd:
            if tokens >= 0:  # counted above: only the score or latency was odd
                prompt_tokens = completion_tokens = None
            self._add_odd(entry, latency_ms, score, prompt_tokens, completion_tokens)

    def _entry(self, assignment: Assignment) -> _Entry:
        """The counters of an assignment seen for the first time (lock held)."""
        rollout_id = assignment.rollout_id
        assert rollout_id is not None
        # The guarded stable release is counted as its rollout's candidate was.
        variant = "candidate" if assignment.variant == "stable" else assignment.variant
        key = (rollout_id, assignment.step or 0, variant)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally()
        units = None
        group = assignment.group
        if group is not None:
            units = tally.units.get(group)
            if units is None:
                units = tally.units[group] = _Units()
        entry = (assignment, tally, units)
        self._by_assignment[id(assignment)] = entry
        return entry

    def _add_odd(
        self,
        entry: _Entry,
        latency_ms: object,
        score: object,
        prompt_tokens: object = None,
        completion_tokens: object = None,
    ) -> None:
        """Count a score outside [0, 1] (clamped), token counts given other than as plain
        ints, and reject values that are not numbers (or no token counts)."""
        rejected = 0
        tokens: tuple[int, int] | None = None
        if prompt_tokens is not None or completion_tokens is not None:
            p, c = _token_count(prompt_tokens), _token_count(completion_tokens)
            if p is None or c is None:
                rejected += (p is None) + (c is None)
            else:
                tokens = p, c
        if latency_ms is not None and _odd_latency_bin(latency_ms) < 0:
            rejected += 1
        clamped = 0
        value = 0.0
        if score is not None:
            try:
                if score != score or not isinstance(score, int | float):  # NaN, str, ...
                    raise TypeError(score)
                if 0.0 <= score <= 1.0:
                    value = float(score)
                else:
                    value = 0.0 if score < 0.0 else 1.0
                    clamped = 1
            except (TypeError, ValueError):
                rejected += 1
                score = None
        with self._lock:
            if score is not None or tokens is not None:
                tally = entry[1]
                if self._by_assignment.get(id(entry[0])) is not entry:
                    tally = self._entry(entry[0])[1]  # flushed meanwhile: count in the new one
                if score is not None:
                    tally.quality_count += 1
                    tally.quality_sum += value
                    tally.quality_sumsq += value * value
                if tokens is not None:
                    tally.count_tokens(*tokens)
            self._clamped += clamped
            self._rejected += rejected

    def counts(self) -> BufferCounts:
        """Counters of what was recorded, clamped, rejected and dropped."""
        with self._lock:
            unflushed = sum(t.requests for t in self._tallies.values())
            unconfirmed = self._unconfirmed.requests if self._unconfirmed is not None else 0
            return BufferCounts(
                flushed_requests=self._flushed,
                pending_requests=unflushed
                + unconfirmed
                + sum(t.requests for t in self._pending.values()),
                clamped_scores=self._clamped,
                rejected_values=self._rejected,
                dropped_requests=self._dropped,
            )

    def flush(self, store: Store) -> int:
        """Write everything counted so far to the store; returns the deltas written.

        Each batch carries an id. A batch whose write failed is kept as it was and
        re-sent first, with the same id, by the next flush: if its commit had in
        fact landed (a connection lost after COMMIT), the store recognises the id
        and adds nothing, so no request is counted twice. Counts recorded meanwhile
        go in a batch of their own. Store errors propagate with everything kept.
        """
        with self._flush_lock:
            with self._lock:
                taken, self._tallies = self._tallies, {}
                self._by_assignment = {}
            pending = self._pending
            for key, tally in taken.items():
                kept = pending.get(key)
                if kept is None:
                    pending[key] = tally
                else:
                    kept.absorb(tally)
            written = 0
            try:
                if self._unconfirmed is not None:
                    written += self._send(store, self._unconfirmed)
                if pending:
                    self._unconfirmed = _Batch.of(pending)
                    self._pending = {}
                    written += self._send(store, self._unconfirmed)
            except BaseException:
                self._bound_pending()
                raise
            return written

    def _send(self, store: Store, batch: _Batch) -> int:
        """Write ``batch`` (flush lock held); it stays unconfirmed if this raises."""
        if batch.deltas:
            store.add_metrics(batch.deltas, batch_id=batch.batch_id)
        self._unconfirmed = None
        self._flushed += batch.requests
        return len(batch.deltas)

    def _bound_pending(self) -> None:
        """Drop the oldest kept counters past the cap (flush lock held).

        The unfinished batch's deltas are the oldest. Dropping some of them keeps
        its id: if the original write landed, the re-send is skipped as a whole
        (its counts are in); if not, what is left is added once.
        """
        unconfirmed = self._unconfirmed
        held = len(self._pending) + (len(unconfirmed.deltas) if unconfirmed else 0)
        excess = held - self._max_pending_keys
        if excess <= 0:
            return
        dropped = 0
        left = excess
        if unconfirmed is not None:
            cut = min(left, len(unconfirmed.deltas))
            dropped += sum(d.stats.requests for d in unconfirmed.deltas[:cut])
            kept = unconfirmed.deltas[cut:]
            self._unconfirmed = _Batch(unconfirmed.batch_id, kept) if kept else None
            left -= cut
        for key in list(self._pending)[:left]:
            dropped += self._pending.pop(key).requests
        with self._lock:
            self._dropped += dropped
        logger.warning(
            "releaser router: metrics could not be flushed and more than %d counters are "
            "pending; dropped the oldest %d (%d requests)",
            self._max_pending_keys,
            excess,
            dropped,
        )

    def drop_pending(self) -> int:
        """Forget the counters kept from failed flushes; returns the requests dropped."""
        with self._flush_lock:
            dropped = sum(t.requests for t in self._pending.values())
            if self._unconfirmed is not None:
                dropped += self._unconfirmed.requests
            self._pending = {}
            self._unconfirmed = None
        with self._lock:
            self._dropped += dropped
        return dropped
