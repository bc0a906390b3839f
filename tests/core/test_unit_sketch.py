"""The distinct-unit sketch: seeded simulations of its error, merging, and its text form.

The stated error is the sketch's relative standard error, 1.04 / sqrt(4096) = 1.625 %.
Each simulation counts fresh, seeded unit ids; an estimate is required within three
standard errors (a true estimator misses that about 0.3 % of the time, so the fixed seeds
here pass or fail for good), and a handful of units exactly.
"""

from __future__ import annotations

import base64
import random
import statistics
import zlib

import pytest

from releaser.core.unit_sketch import (
    PRECISION,
    REGISTERS,
    RELATIVE_ERROR,
    UnitSketch,
    unit_hash,
    unit_salt,
)
from releaser.errors import BadInput


def sketch_of(units: list[str], salt: int) -> UnitSketch:
    sketch = UnitSketch()
    for unit in units:
        sketch.add(salt, unit)
    return sketch


def fresh_units(n: int, seed: int) -> list[str]:
    """``n`` distinct unit ids, unrelated across seeds."""
    rng = random.Random(seed)
    return [f"case-{rng.getrandbits(64):016x}-{i}" for i in range(n)]


def test_precision_and_error_are_what_the_docs_state() -> None:
    assert (PRECISION, REGISTERS) == (12, 4096)
    assert RELATIVE_ERROR == pytest.approx(0.01625)
    assert len(UnitSketch().registers) == 4096  # fixed bytes, whatever is counted


def test_an_empty_sketch_counts_nothing() -> None:
    assert UnitSketch().estimate() == 0.0 and UnitSketch().is_empty()


@pytest.mark.parametrize("seed", range(5))
def test_ten_units_are_counted_exactly(seed: int) -> None:
    salt = unit_salt(seed, "ro-1")
    units = fresh_units(10, seed)
    assert sketch_of(units, salt).count() == 10
    # Counting every unit many times changes nothing.
    assert sketch_of(units * 50, salt).count() == 10


@pytest.mark.parametrize(("n", "trials"), [(1_000, 20), (10_000, 5), (100_000, 3)])
def test_the_estimate_is_within_the_stated_error(n: int, trials: int) -> None:
    errors = []
    for trial in range(trials):
        salt = unit_salt(1_000 + trial, f"ro-{trial}")
        estimate = sketch_of(fresh_units(n, trial), salt).estimate()
        errors.append(estimate / n - 1)
    assert max(abs(e) for e in errors) <= 3 * RELATIVE_ERROR, errors
    if trials >= 20:
        # The spread is the stated error's, not merely inside the bound.
        assert statistics.pstdev(errors) <= 1.5 * RELATIVE_ERROR, errors
        assert abs(statistics.mean(errors)) <= RELATIVE_ERROR, errors


def test_merging_gives_the_sketch_of_the_union() -> None:
    salt = unit_salt(7, "ro-7")
    units = fresh_units(30_000, 7)
    a, b = units[:20_000], units[10_000:]  # 10,000 units in both
    left, right = sketch_of(a, salt), sketch_of(b, salt)
    merged = left.copy()
    merged.merge(right)
    assert merged == sketch_of(units, salt)
    assert abs(merged.estimate() / 30_000 - 1) <= 3 * RELATIVE_ERROR
    # Idempotent and commutative: merging again, or the other way round, changes nothing.
    again = merged.copy()
    again.merge(right)
    other = right.copy()
    other.merge(left)
    assert again == merged == other


def test_the_salt_separates_rollouts() -> None:
    units = fresh_units(2_000, 3)
    one = sketch_of(units, unit_salt(5, "ro-1"))
    two = sketch_of(units, unit_salt(5, "ro-2"))
    three = sketch_of(units, unit_salt(6, "ro-1"))
    assert one != two and one != three
    # Registers of the same units under two salts agree no more than chance would.
    same = sum(x == y and x > 0 for x, y in zip(one.registers, two.registers, strict=True))
    assert same < 0.5 * sum(x > 0 for x in one.registers)


def test_add_follows_the_documented_algorithm() -> None:
    from xxhash import xxh64_intdigest

    salt = unit_salt(2_718_281_828, "case-triage-3")
    assert salt == xxh64_intdigest(b"2718281828:case-triage-3")
    h = unit_hash(salt, "user-1")
    assert h == xxh64_intdigest(b"user-1", salt)
    sketch = UnitSketch()
    sketch.add(salt, "user-1")
    index = h >> 52
    rank = 53 - (h & (2**52 - 1)).bit_length()
    assert sketch.registers[index] == rank and sum(sketch.registers) == rank


def test_text_round_trips_and_small_sketches_are_small() -> None:
    salt = unit_salt(1, "ro")
    for n in (0, 3, 5_000):
        sketch = sketch_of(fresh_units(n, n), salt)
        text = sketch.encode()
        assert text.startswith("hll12:") and UnitSketch.decode(text) == sketch
    assert len(sketch_of(fresh_units(3, 0), salt).encode()) < 100


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (None, "does not start with"),
        ("hll10:AAAA", "does not start with"),
        ("hll12:not base64!", "not valid"),
        ("hll12:" + base64.b64encode(b"not zlib").decode(), "not valid"),
        ("hll12:" + base64.b64encode(zlib.compress(bytes(100))).decode(), "4096 registers"),
        ("hll12:" + base64.b64encode(zlib.compress(bytes([54]) * 4096)).decode(), "at most 53"),
        # A stream that inflates far past 4 KiB is refused without inflating it all.
        ("hll12:" + base64.b64encode(zlib.compress(bytes(10**7))).decode(), "not valid"),
        ("hll12:" + "A" * 20_000, "more than"),
    ],
)
def test_bad_text_is_refused(text: object, match: str) -> None:
    with pytest.raises(BadInput, match=match):
        UnitSketch.decode(text)
