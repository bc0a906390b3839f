"""Bucketing cost per call: releaser's XXH64 bucket beside the candidate hashes it was chosen over.

The router's target is ``assign`` median <= 1 us including rule evaluation, so bucketing
should take well under half of that. Prints median and best ns/call over REPEATS passes of
10,000 ids, for: releaser's ``bucket``, ``bucketer`` (seed bound once), ``in_cohort`` with
and without named groups, ``cohort_matcher`` (everything resolved once), ``match_groups``,
and the same bucket computed with other hashes
(stdlib blake2b / sha256 / md5, xxh3, and mmh3 when installed).
"""

from __future__ import annotations

import functools
import hashlib
import statistics
import struct
import timeit
from collections.abc import Callable

import xxhash

from releaser.core.bucketing import (
    Cohort,
    GroupRule,
    bucket,
    bucketer,
    cohort_matcher,
    in_cohort,
    match_groups,
)

REPEATS = 31
SEED = 2_718_281_828
IDS = [f"user-{i:08d}" for i in range(10_000)]
TARGET_NS = 500.0
_PREFIX = f"{SEED}:".encode()
_UNPACK = struct.Struct(">Q").unpack


def _stdlib(name: str) -> Callable[[str], int]:
    # The best stdlib form found: hash the seed prefix once, copy the state per id.
    base = hashlib.blake2b(_PREFIX, digest_size=8) if name == "blake2b" else hashlib.new(name)
    if name != "blake2b":
        base.update(_PREFIX)

    def run(unit_id: str) -> int:
        h = base.copy()
        h.update(unit_id.encode())
        return int(_UNPACK(h.digest()[:8])[0]) % 10_000

    return run


def _xxh3(unit_id: str) -> int:
    return xxhash.xxh3_64_intdigest(_PREFIX + unit_id.encode()) % 10_000


def candidates() -> dict[str, Callable[[str], int]]:
    """Each way of computing a bucket that was measured."""
    found: dict[str, Callable[[str], int]] = {
        "releaser bucket (XXH64)": functools.partial(bucket, SEED),
        "releaser bucketer (XXH64)": bucketer(SEED),
        "xxh3_64": _xxh3,
        "blake2b-64, stdlib": _stdlib("blake2b"),
        "sha256[:8], stdlib": _stdlib("sha256"),
        "md5[:8], stdlib": _stdlib("md5"),
    }
    try:
        import mmh3  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        found["mmh3 x64_128[:8]"] = lambda u: (
            mmh3.hash64(_PREFIX + u.encode(), signed=False)[0] % 10_000
        )
    return found


def _pass(func: Callable[[str], object]) -> None:
    for unit_id in IDS:
        func(unit_id)


def per_call_ns(rows: list[tuple[str, Callable[[str], object]]]) -> dict[str, tuple[float, float]]:
    """Median and best ns per call of each row over REPEATS passes over IDS.

    Passes are interleaved (every row once per round, in rotating order), so a burst of
    load from elsewhere on the machine hits every row alike rather than one of them.
    """
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    for round_ in range(REPEATS):
        for i in range(len(rows)):
            name, func = rows[(i + round_) % len(rows)]
            elapsed = timeit.timeit(functools.partial(_pass, func), number=1)
            samples[name].append(elapsed / len(IDS) * 1e9)
    return {name: (statistics.median(v), min(v)) for name, v in samples.items()}


def main() -> None:
    """Measure and print."""
    groups = {
        "staff": GroupRule.build(rules=[("email", "ends_with", "@example.org")]),
        "pilots": GroupRule.build(allow=["council-017", "council-042"]),
    }
    attributes = {"email": "someone@example.com", "region": "eu-west"}
    plain = Cohort(frozenset(), 5)
    with_groups = Cohort(frozenset(groups), 5)
    matcher = cohort_matcher(with_groups, SEED, groups)
    rows: list[tuple[str, Callable[[str], object]]] = list(candidates().items()) + [
        ("in_cohort, no groups", lambda u: in_cohort(plain, SEED, u, attributes, groups)),
        ("in_cohort, 2 groups", lambda u: in_cohort(with_groups, SEED, u, attributes, groups)),
        ("cohort_matcher, 2 groups", lambda u: matcher(u, attributes)),
        ("match_groups, 2 groups", lambda u: match_groups(groups, u, attributes)),
        ("loop overhead only", lambda u: u),
    ]
    print(f"bucketing cost per call, {len(IDS):,} ids x {REPEATS} passes (ns/call)")
    print(f"{'what':<28} {'median':>8} {'best':>8}")
    results = per_call_ns(rows)
    for name, (median, best) in results.items():
        print(f"{name:<28} {median:>8.0f} {best:>8.0f}")
    chosen = results["releaser bucket (XXH64)"][0]
    verdict = "PASS" if chosen <= TARGET_NS else "FAIL"
    print(
        f"\n{verdict}  bucket median {chosen:.0f} ns <= {TARGET_NS:.0f} ns (half the assign budget)"
    )


if __name__ == "__main__":
    main()
