"""Unit sketches in the store (schema v7): part of the Store Protocol suite, on every backend.

The max-merge runs in the metric batch's transaction: merged sketches equal the sketch of
the union, a re-sent batch changes nothing, concurrent flushers lose no unit, bad input
writes nothing, and a prune removes them with the rollout's histograms.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from releaser.core.stats_aggregates import VariantStats
from releaser.core.unit_sketch import UnitSketch, unit_salt
from releaser.errors import BadInput, ReleaserError
from releaser.store.base import MetricDelta, Store, UnitDelta

from .conftest import Backend, draft

SALT = unit_salt(99, "ro")


def sketch_of(units: range | list[str], prefix: str = "u") -> UnitSketch:
    sketch = UnitSketch()
    for unit in units:
        sketch.add(SALT, f"{prefix}{unit}")
    return sketch


def delta(
    units: UnitSketch, requests: int = 1, group: str = "(percent)", step: int = 0, **kw: Any
) -> MetricDelta:
    """A candidate delta of ``requests`` requests, all with a unit id in ``group``."""
    return MetricDelta(
        kw.get("rollout", "ro"),
        step,
        kw.get("variant", "candidate"),
        VariantStats(requests=requests),
        (UnitDelta(group, requests, units),),
    )


class TestUnitSketches:
    def test_nothing_recorded_reads_empty(self, store: Store) -> None:
        assert store.read_units("ro") == {}
        store.add_metrics([MetricDelta("ro", 0, "baseline", VariantStats(requests=2))])
        assert store.read_units("ro") == {}  # requests without unit ids count no unit

    def test_batches_merge_to_the_sketch_of_the_union(self, store: Store) -> None:
        store.add_metrics([delta(sketch_of(range(600)), 600)], batch_id="a")
        store.add_metrics([delta(sketch_of(range(400, 1000)), 700)], batch_id="b")
        store.add_metrics([delta(sketch_of(range(5)), 5, group="staff")], batch_id="c")
        got = store.read_units("ro")
        assert list(got) == [(0, "candidate", "(percent)"), (0, "candidate", "staff")]
        requests, sketch = got[(0, "candidate", "(percent)")]
        assert requests == 1300 and sketch == sketch_of(range(1000))
        assert got[(0, "candidate", "staff")] == (5, sketch_of(range(5)))
        assert store.read_metrics("ro")[(0, "candidate")].requests == 1305

    def test_deltas_of_one_key_in_one_batch_merge_too(self, store: Store) -> None:
        store.add_metrics([delta(sketch_of(range(50)), 50), delta(sketch_of(range(25, 90)), 65)])
        assert store.read_units("ro")[(0, "candidate", "(percent)")] == (115, sketch_of(range(90)))

    def test_a_re_sent_batch_counts_once(self, store: Store) -> None:
        batch = [
            delta(sketch_of(range(300)), 300),
            delta(sketch_of(range(3)), 3, variant="baseline"),
        ]
        assert store.add_metrics(batch, batch_id="once")
        before = store.read_units("ro")
        assert not store.add_metrics(batch, batch_id="once")  # a re-send after a lost ack
        assert store.read_units("ro") == before
        assert before[(0, "candidate", "(percent)")] == (300, sketch_of(range(300)))
        # Even under a new id the same units add no unit (max is idempotent); only requests.
        assert store.add_metrics(batch, batch_id="twice")
        requests, sketch = store.read_units("ro")[(0, "candidate", "(percent)")]
        assert requests == 600 and sketch == sketch_of(range(300))

    def test_rollouts_steps_and_variants_are_kept_apart(self, store: Store) -> None:
        store.add_metrics(
            [
                delta(sketch_of(range(10)), 10, step=1),
                delta(sketch_of(range(20)), 20, step=2),
                delta(sketch_of(range(30)), 30, variant="baseline", step=1),
                delta(sketch_of(range(40)), 40, rollout="other"),
            ]
        )
        got = store.read_units("ro")
        assert {k: v[0] for k, v in got.items()} == {
            (1, "baseline", "(percent)"): 30,
            (1, "candidate", "(percent)"): 10,
            (2, "candidate", "(percent)"): 20,
        }
        assert store.read_units("other")[(0, "candidate", "(percent)")][1].count() == 40

    def test_units_are_not_audited_and_do_not_move_the_token(self, store: Store) -> None:
        head, token = store.audit_head(), store.change_token()
        store.add_metrics([delta(sketch_of(range(10)), 10)])
        assert (store.audit_head(), store.change_token()) == (head, token)

    @pytest.mark.parametrize(
        ("bad", "match"),
        [
            (UnitDelta("", 1, UnitSketch()), "not a name of 1-128"),
            (UnitDelta("g" * 129, 1, UnitSketch()), "not a name of 1-128"),
            (UnitDelta("staff", -1, UnitSketch()), "is not a count"),
            (UnitDelta("staff", True, UnitSketch()), "is not a count"),  # type: ignore[arg-type]
            (UnitDelta("staff", 1, b"\0" * 4096), "not a UnitSketch"),  # type: ignore[arg-type]
            ("staff", "not a UnitDelta"),
        ],
    )
    def test_bad_units_write_nothing(self, store: Store, bad: Any, match: str) -> None:
        good = delta(sketch_of(range(5)), 5)
        store.add_metrics([good])
        before = (store.read_units("ro"), store.read_metrics("ro"))
        broken = MetricDelta("ro", 0, "baseline", VariantStats(requests=1), (bad,))
        with pytest.raises(BadInput, match=match):
            store.add_metrics([good, broken], batch_id="bad-1")
        assert (store.read_units("ro"), store.read_metrics("ro")) == before
        assert store.add_metrics([good], batch_id="bad-1")  # the refused batch kept no id

    def test_a_sketch_tampered_with_after_it_was_built_is_refused(self, store: Store) -> None:
        sketch = UnitSketch()
        sketch.registers = bytearray([200]) * 4096  # past any rank
        with pytest.raises(BadInput, match="at most 53"):
            store.add_metrics([delta(sketch)])
        assert store.read_units("ro") == {}

    def test_damaged_stored_registers_are_named(self, store: Store, backend: Backend) -> None:
        store.add_metrics([delta(sketch_of(range(5)), 5)])
        backend.sql("UPDATE rollout_unit_sketches SET registers = ?", ("hll12:????",))
        with pytest.raises(ReleaserError, match="unit sketches in .* are inconsistent"):
            store.read_units("ro")
        with pytest.raises(ReleaserError, match="unit sketches in .* are inconsistent"):
            store.add_metrics([delta(sketch_of(range(5)), 5)])

    def test_prune_removes_sketches_with_the_histograms(self, store: Store) -> None:
        store.add_metrics([delta(sketch_of(range(5)), 5, rollout="old")])
        store.add_metrics([delta(sketch_of(range(5)), 5, rollout="new")])
        store.prune([], draft("store", "store.prune"), histograms_of=["old"])
        assert store.read_units("old") == {}
        assert store.read_metrics("old")[(0, "candidate")].requests == 5  # counts stay
        assert store.read_units("new")[(0, "candidate", "(percent)")][0] == 5

    def test_concurrent_flushers_lose_no_unit(self, backend: Backend) -> None:
        """Four connections merge into the same rows at once: the result is the union."""
        workers, rounds = 4, 15
        barrier = threading.Barrier(workers)
        failures: list[BaseException] = []

        def flush(index: int) -> None:
            try:
                store = backend.open()
                try:
                    barrier.wait(timeout=30)
                    for i in range(rounds):
                        units = sketch_of(range(i * 40, i * 40 + 40), prefix=f"w{index}-")
                        store.add_metrics(
                            [delta(units, 40, group=g) for g in ("(percent)", "staff")]
                        )
                finally:
                    store.close()
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=flush, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert failures == []
        expected = UnitSketch()
        for w in range(workers):
            expected.merge(sketch_of(range(rounds * 40), prefix=f"w{w}-"))
        reader = backend.open()
        try:
            got = reader.read_units("ro")
        finally:
            reader.close()
        for group in ("(percent)", "staff"):
            assert got[(0, "candidate", group)] == (workers * rounds * 40, expected)
