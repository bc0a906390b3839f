"""Unit sketches in the SQL stores: batch checks, the max-merge, reading back.

A metric batch's :class:`~releaser.store.base.UnitDelta` are merged per (rollout, step,
variant, group) in Python first, then, in the batch's transaction, into
``rollout_unit_sketches``: the row is made if missing (``ON CONFLICT DO NOTHING``), read
under a row lock (``FOR UPDATE`` on PostgreSQL; sqlite's ``BEGIN IMMEDIATE`` already holds
the whole database), merged register-wise with ``max`` and written back. Keys are taken in
sorted order, so concurrent flushers cannot deadlock. The unit ids themselves never reach
the store: only the sketch's registers (see :mod:`releaser.core.unit_sketch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from releaser.core.unit_sketch import UnitSketch
from releaser.errors import BadInput, ReleaserError
from releaser.store._writes import Execute
from releaser.store.base import MetricDelta, UnitCounts, UnitDelta

__all__ = [
    "MAX_GROUP_CHARS",
    "PreparedUnits",
    "merge_units",
    "prepare_units",
    "units_from_rows",
]

MAX_GROUP_CHARS = 128
"""Longest cohort group name a unit sketch may carry."""
_MAX_COUNT = 2**53


@dataclass(frozen=True)
class PreparedUnits:
    """The checked unit deltas of one (rollout, step, variant, group) of a batch, merged."""

    rollout_id: str
    step: int
    variant: str
    group: str
    requests: int
    sketch: UnitSketch

    @property
    def key(self) -> tuple[str, int, str, str]:
        """(rollout_id, step, variant, group): the row's primary key."""
        return (self.rollout_id, self.step, self.variant, self.group)


def prepare_units(batch: Sequence[MetricDelta]) -> list[PreparedUnits]:
    """Check every delta's unit sketches, then merge those of one key (sorted by key).

    Call after :func:`releaser.store.metrics.prepare_metrics`, which checks the rest of
    each delta. BadInput, so nothing of the batch is written, for a malformed one.
    """
    merged: dict[tuple[str, int, str, str], tuple[int, UnitSketch]] = {}
    for index, delta in enumerate(batch):
        units = delta.units
        if not isinstance(units, tuple | list):
            raise BadInput(f"metric delta #{index}: units must be a tuple of UnitDelta")
        for unit in units:
            where = f"metric delta #{index} for {delta.rollout_id!r} step {delta.step}"
            group, requests, sketch = _checked(unit, where)
            key = (delta.rollout_id, delta.step, delta.variant, group)
            kept = merged.get(key)
            if kept is None:
                merged[key] = (requests, sketch.copy())
            else:
                kept[1].merge(sketch)
                merged[key] = (kept[0] + requests, kept[1])
    return [PreparedUnits(*key, *value) for key, value in sorted(merged.items())]


def _checked(unit: object, where: str) -> tuple[str, int, UnitSketch]:
    if not isinstance(unit, UnitDelta):
        raise BadInput(f"{where}: a unit count is a {type(unit).__name__}, not a UnitDelta")
    group, requests, sketch = unit.group, unit.requests, unit.sketch
    if not isinstance(group, str) or not 0 < len(group) <= MAX_GROUP_CHARS:
        raise BadInput(
            f"{where}: unit group {group!r} is not a name of 1-{MAX_GROUP_CHARS} characters",
            hint="a unit group is the cohort group the unit matched, or '(percent)'",
        )
    if type(requests) is not int or not 0 <= requests <= _MAX_COUNT:
        raise BadInput(f"{where}: unit group {group!r}: requests {requests!r} is not a count")
    if not isinstance(sketch, UnitSketch):
        raise BadInput(
            f"{where}: unit group {group!r}: the sketch is a {type(sketch).__name__}, "
            "not a UnitSketch"
        )
    # Re-checked as data: a sketch whose registers were replaced after it was built.
    return group, requests, UnitSketch(bytes(sketch.registers))


def merge_units(
    execute: Execute, prepared: Sequence[PreparedUnits], *, ph: str, lock: str, now: str, url: str
) -> None:
    """Merge prepared sketches into ``rollout_unit_sketches`` in the open transaction.

    ``lock`` is the row-lock clause (``FOR UPDATE`` or empty), ``now`` the SQL of the
    database's timestamp text. The caller rolls back on error.
    """
    where = f"rollout_id = {ph} AND step = {ph} AND variant = {ph} AND cohort_group = {ph}"
    empty = UnitSketch().encode()
    for p in prepared:
        execute(
            "INSERT INTO rollout_unit_sketches (rollout_id, step, variant, cohort_group, "
            f"requests, registers, updated_at) VALUES ({ph}, {ph}, {ph}, {ph}, 0, {ph}, {now}) "
            "ON CONFLICT (rollout_id, step, variant, cohort_group) DO NOTHING",
            (*p.key, empty),
        )
        row = execute(
            f"SELECT requests, registers FROM rollout_unit_sketches WHERE {where} {lock}", p.key
        ).fetchone()
        requests, sketch = _stored(row, p, url)
        sketch.merge(p.sketch)
        execute(
            f"UPDATE rollout_unit_sketches SET requests = {ph}, registers = {ph}, "
            f"updated_at = {now} WHERE {where}",
            (requests + p.requests, sketch.encode(), *p.key),
        )


def _stored(row: Any, p: PreparedUnits, url: str) -> tuple[int, UnitSketch]:
    if row is None:  # just inserted in this transaction: cannot happen but by tampering
        raise _damaged(url, f"the row of {p.key} vanished inside the transaction")
    try:
        return int(row[0]), UnitSketch.decode(row[1])
    except BadInput as exc:
        raise _damaged(url, f"{p.key}: {exc.message}") from None


def units_from_rows(rows: Sequence[tuple[Any, ...]], *, url: str) -> UnitCounts:
    """(step, variant, group, requests, registers) rows as :data:`UnitCounts`."""
    out: UnitCounts = {}
    for step, variant, group, requests, registers in rows:
        try:
            sketch = UnitSketch.decode(registers)
        except BadInput as exc:
            raise _damaged(url, f"step {step} {variant} {group}: {exc.message}") from None
        out[(int(step), str(variant), str(group))] = (int(requests), sketch)
    return out


def _damaged(url: str, problem: str) -> ReleaserError:
    return ReleaserError(
        f"the unit sketches in {url} are inconsistent: {problem}",
        hint="the metrics tables were altered outside releaser; restore them from a backup",
    )
