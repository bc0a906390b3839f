"""Generate tests/vectors/bucketing.json: reference assignments other languages can test against.

Each case is computed twice, with a plain-Python XXH64 written from the xxHash
specification (below) and with releaser's own ``bucket``; the script refuses to write if
they ever disagree. Run from the repository root:

    python tests/vectors/make_bucketing_vectors.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VECTORS = Path(__file__).with_name("bucketing.json")
BUCKETS = 10_000
PERCENTS = (1, 5, 25, 50, 100)
MASK = (1 << 64) - 1
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F
P3 = 0x165667B19E3779F9
P4 = 0x85EBCA77C2B2AE63
P5 = 0x27D4EB2F165667C5


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * P2) & MASK, 31) * P1) & MASK


def _merge(acc: int, value: int) -> int:
    return ((acc ^ _round(0, value)) * P1 + P4) & MASK


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 of ``data`` as an unsigned 64-bit integer (xxHash specification, v0.1.1)."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & MASK, (seed + P2) & MASK, seed, (seed - P1) & MASK]
        while i + 32 <= n:
            for lane in range(4):
                v[lane] = _round(v[lane], int.from_bytes(data[i : i + 8], "little"))
                i += 8
        acc = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & MASK
        for lane in v:
            acc = _merge(acc, lane)
    else:
        acc = (seed + P5) & MASK
    acc = (acc + n) & MASK
    while i + 8 <= n:
        acc ^= _round(0, int.from_bytes(data[i : i + 8], "little"))
        acc = (_rotl(acc, 27) * P1 + P4) & MASK
        i += 8
    if i + 4 <= n:
        acc ^= (int.from_bytes(data[i : i + 4], "little") * P1) & MASK
        acc = (_rotl(acc, 23) * P2 + P3) & MASK
        i += 4
    while i < n:
        acc ^= (data[i] * P5) & MASK
        acc = (_rotl(acc, 11) * P1) & MASK
        i += 1
    acc ^= acc >> 33
    acc = (acc * P2) & MASK
    acc ^= acc >> 29
    acc = (acc * P3) & MASK
    return acc ^ (acc >> 32)


def message(seed: int, unit_id: str) -> bytes:
    """The bytes that are hashed: ASCII decimal seed, ':', UTF-8 unit id."""
    return str(seed).encode("ascii") + b":" + unit_id.encode("utf-8")


def reference_bucket(seed: int, unit_id: str) -> int:
    """The bucket by the specification alone."""
    return xxh64(message(seed, unit_id)) % BUCKETS


def threshold(percent: float) -> int:
    """First bucket outside ``percent``: round half to even of percent * 100."""
    return round(percent * 100)


SEEDS = (0, 1, 42, 65_536, 2_718_281_828, 4_294_967_295, 2**63 - 1, 2**64 - 1)
UNIT_IDS = (
    "",
    " ",
    "0",
    "1",
    "42",
    "user-1",
    "user-2",
    "user-00001234",
    "USER-1",
    "alice@example.org",
    "council-017",
    "a:b",
    ":",
    "12345678",  # exactly 8 bytes
    "123456789012345678901234567890ab",  # exactly 32 bytes: one stripe
    "550e8400-e29b-41d4-a716-446655440000",  # a UUID: 36 bytes
    "x" * 100,
    "caf\u00e9",  # NFC e-acute
    "cafe\u0301",  # NFD: a different id, a different bucket (no normalisation)
    "\u7528\u6237-\u4e03",  # CJK
    "\U0001f642",  # emoji, 4 UTF-8 bytes
    "\u05de\u05e9\u05ea\u05de\u05e9",  # Hebrew, right to left
    "tab\there",
    "line\nbreak",
    "nul\x00byte",
    "\u00e9",
    "Zo\u00eb \u00c5str\u00f6m",
)
PERCENT_EXAMPLES = (0, 0.01, 0.004, 0.005, 0.015, 0.5, 1, 2.5, 5, 12.345, 25, 33.33, 50, 99.99, 100)


def build() -> dict[str, object]:
    """All vectors, checked against releaser's implementation."""
    from releaser.core.bucketing import bucket, percent_threshold

    cases = []
    for seed in SEEDS:
        for unit_id in UNIT_IDS:
            expected = reference_bucket(seed, unit_id)
            actual = bucket(seed, unit_id)
            if actual != expected:
                raise SystemExit(f"mismatch for {seed}, {unit_id!r}: {actual} != {expected}")
            cases.append(
                {
                    "seed": seed,
                    "unit_id": unit_id,
                    "message_hex": message(seed, unit_id).hex(),
                    "xxh64_hex": f"{xxh64(message(seed, unit_id)):016x}",
                    "bucket": expected,
                    "in_percent": {str(p): expected < threshold(p) for p in PERCENTS},
                }
            )
    thresholds = []
    for p in PERCENT_EXAMPLES:
        if percent_threshold(p) != threshold(p):
            raise SystemExit(f"threshold mismatch at {p}")
        thresholds.append({"percent": p, "threshold": threshold(p)})
    return {
        "algorithm": "releaser bucketing v1",
        "spec": "docs/bucketing.md",
        "bucket": "XXH64(ascii(seed) + ':' + utf8(unit_id), seed=0) mod 10000",
        "in_percent": "bucket < round_half_even(percent * 100)",
        "buckets": BUCKETS,
        "xxh64_empty_hex": f"{xxh64(b''):016x}",
        "thresholds": thresholds,
        "cases": cases,
    }


def render(vectors: dict[str, object]) -> str:
    """JSON with one case per line, so a diff shows which assignment changed."""
    lines = ["{"]
    for key, value in vectors.items():
        if isinstance(value, list):
            items = ",\n".join("  " + json.dumps(x, ensure_ascii=False) for x in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ],")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines) + "\n}\n"


def main() -> None:
    """Write the vectors file."""
    VECTORS.write_text(render(build()), encoding="utf-8")
    print(f"wrote {VECTORS} ({len(SEEDS) * len(UNIT_IDS)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
