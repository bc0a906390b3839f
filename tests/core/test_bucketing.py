"""Bucketing: published vectors, split accuracy, monotonicity, seed independence, groups."""

from __future__ import annotations

import importlib.util
import inspect
import json
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import xxhash
from scipy import stats

from releaser.core.bucketing import (
    BUCKETS,
    MAX_PATTERN_CHARS,
    AttributeRule,
    Cohort,
    GroupRule,
    bucket,
    bucketer,
    cohort_matcher,
    compile_pattern,
    in_cohort,
    in_percent,
    match_groups,
    percent_threshold,
)
from releaser.errors import BadInput

VECTOR_DIR = Path(__file__).parents[1] / "vectors"
IDS = [f"user-{i}" for i in range(100_000)]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_bucketing_vectors", VECTOR_DIR / "make_bucketing_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTOR_DIR / "bucketing.json").read_text("utf-8"))
    return data


def test_vectors_recompute(vectors: dict[str, Any]) -> None:
    cases = vectors["cases"]
    assert len(cases) >= 200
    assert {c["unit_id"] for c in cases} >= {"", "caf\u00e9", "cafe\u0301", "\U0001f642"}
    for case in cases:
        seed, unit_id = case["seed"], case["unit_id"]
        message = bytes.fromhex(case["message_hex"])
        assert message == f"{seed}:{unit_id}".encode()
        assert f"{xxhash.xxh64_intdigest(message):016x}" == case["xxh64_hex"]
        assert bucket(seed, unit_id) == case["bucket"], case
        for percent, expected in case["in_percent"].items():
            assert in_percent(case["bucket"], float(percent)) is expected, case
    for row in vectors["thresholds"]:
        assert percent_threshold(row["percent"]) == row["threshold"], row


def test_vectors_file_is_what_the_committed_script_makes() -> None:
    gen = _generator()
    text = (VECTOR_DIR / "bucketing.json").read_text(encoding="utf-8")
    assert gen.render(gen.build()) == text


def test_reference_xxh64_matches_the_library_on_every_length() -> None:
    gen = _generator()
    assert gen.xxh64(b"") == 0xEF46DB3751D8E999  # the published XXH64 of the empty input
    rng = random.Random(7)
    for length in range(130):
        data = bytes(rng.randrange(256) for _ in range(length))
        assert gen.xxh64(data) == xxhash.xxh64_intdigest(data), length


def test_same_inputs_same_bucket_and_bucketer_agrees() -> None:
    assert bucket(99, "alice") == bucket(99, "alice")
    fast = bucketer(99)
    assert [fast(u) for u in IDS[:2000]] == [bucket(99, u) for u in IDS[:2000]]
    assert all(0 <= bucket(5, u) < BUCKETS for u in IDS[:2000])


@pytest.mark.parametrize("seed", [1, 2_718_281_828])
def test_observed_split_within_half_a_point(seed: int) -> None:
    # At 100k ids the binomial sd is at most 0.16 points, so 0.5 points is over 3 sd.
    fast = bucketer(seed)
    buckets = np.array([fast(u) for u in IDS])
    for percent in (1, 5, 25, 50):
        observed = 100 * np.mean(buckets < percent_threshold(percent))
        assert abs(observed - percent) < 0.5, (percent, observed)
    # And the buckets are uniform: chi-square over 100 groups of 100 buckets.
    counts = np.bincount(buckets // 100, minlength=100)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_widening_never_moves_a_unit_out() -> None:
    for seed in range(50):
        fast = bucketer(seed)
        for unit in IDS[:2000]:
            b = fast(unit)
            if in_percent(b, 5):
                assert in_percent(b, 25)
            if in_percent(b, 1):
                assert in_percent(b, 5)
    thresholds = [percent_threshold(p / 1000) for p in range(0, 100_001, 7)]
    assert thresholds == sorted(thresholds)
    assert percent_threshold(5) == 500 and percent_threshold(100) == BUCKETS


def test_different_seeds_give_independent_assignments() -> None:
    n = len(IDS)
    a = np.array([bucket(1, u) for u in IDS])
    b = np.array([bucket(2, u) for u in IDS])
    # Under independence r ~ N(0, 1/n): sd 0.0032 at 100k, so 0.02 is over 6 sd.
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02
    both = int(np.sum((a < 500) & (b < 500)))  # expect 0.05 * 0.05 * n = 250, sd about 16
    assert 170 < both < 330, both
    assert np.mean(a == b) < 0.001  # equal buckets happen 1 time in 10000
    assert n == 100_000


@pytest.mark.parametrize("seed", [-1, 2**64, "7", 1.5])
def test_bad_seeds_are_refused(seed: object) -> None:
    with pytest.raises(BadInput):
        bucket(seed, "someone-new")  # type: ignore[arg-type]


def test_bad_unit_ids_are_refused() -> None:
    with pytest.raises(BadInput, match="lone surrogate"):
        bucket(1, "bad\ud800")
    with pytest.raises(BadInput, match="must be a str"):
        bucket(1, 1234)  # type: ignore[arg-type]


@pytest.mark.parametrize("percent", [-0.1, 100.01, float("nan")])
def test_percent_out_of_range(percent: float) -> None:
    with pytest.raises(BadInput):
        percent_threshold(percent)
    with pytest.raises(BadInput):
        Cohort(frozenset(), percent)


def test_rule_operators() -> None:
    attrs = {"email": "ann@example.org", "region": "eu-west", "plan": "pro"}
    assert AttributeRule("plan", "equals", "pro").applies_to(attrs)
    assert not AttributeRule("plan", "equals", "Pro").applies_to(attrs)
    assert AttributeRule.of(("plan", "in", ["free", "pro"])).applies_to(attrs)
    assert not AttributeRule.of(("plan", "in", ["free"])).applies_to(attrs)
    assert AttributeRule("region", "matches", r"^eu-").applies_to(attrs)
    assert AttributeRule("region", "matches", "west").applies_to(attrs)  # search, not full
    assert not AttributeRule("region", "matches", r"^west").applies_to(attrs)
    assert AttributeRule("email", "ends_with", "@example.org").applies_to(attrs)
    assert not AttributeRule("email", "ends_with", "@example.com").applies_to(attrs)
    # A value that is not a string never equals one (str.__eq__ would say NotImplemented,
    # which is truthy).
    assert not AttributeRule("plan", "equals", "pro").applies_to({"plan": 5})  # type: ignore[dict-item]
    assert not AttributeRule("plan", "equals", "5").applies_to({"plan": 5})  # type: ignore[dict-item]
    # ends_with is literal: regex characters in the suffix mean themselves.
    assert not AttributeRule("x", "ends_with", "a.b").applies_to({"x": "zaxb"})
    assert not AttributeRule("x", "ends_with", ".org").applies_to({"x": "a.org\n"})
    assert AttributeRule("x", "ends_with", "").applies_to({"x": "anything"})
    assert not AttributeRule("missing", "equals", "").applies_to(attrs)


def test_bad_rules_are_refused() -> None:
    with pytest.raises(BadInput, match="regular expression"):
        AttributeRule("x", "matches", "(unclosed")
    with pytest.raises(BadInput, match="collection"):
        AttributeRule("x", "in", "abc")
    with pytest.raises(BadInput, match="operator"):
        AttributeRule.of(("x", "startswith", "a"))
    with pytest.raises(BadInput, match="single string"):
        AttributeRule("x", "equals", frozenset({"a"}))
    with pytest.raises(BadInput, match="rules_match"):
        GroupRule(rules_match="some")  # type: ignore[arg-type]


def test_groups_allow_list_and_rules() -> None:
    staff = GroupRule.build(
        rules=[("email", "ends_with", "@example.org"), ("role", "in", ["dev", "ops"])]
    )
    either = GroupRule.build(
        rules=[("email", "ends_with", "@example.org"), ("role", "in", ["dev", "ops"])],
        rules_match="any",
    )
    pilots = GroupRule.build(allow=["council-017", "council-042"])
    nobody = GroupRule()
    groups = {"staff": staff, "either": either, "pilots": pilots, "nobody": nobody}

    dev = {"email": "d@example.org", "role": "dev"}
    outsider = {"email": "d@example.org", "role": "sales"}
    assert match_groups(groups, "u1", dev) == frozenset({"staff", "either"})
    assert match_groups(groups, "u1", outsider) == frozenset({"either"})
    assert match_groups(groups, "council-017", {}) == frozenset({"pilots"})
    assert match_groups(groups, "u2", {}) == frozenset()


def test_in_cohort_groups_first_then_percentage() -> None:
    groups = {"pilots": GroupRule.build(allow=["council-017"])}
    seed = 31337
    nobody_else = Cohort(frozenset({"pilots"}), 0)
    assert in_cohort(nobody_else, seed, "council-017", {}, groups)
    assert not any(in_cohort(nobody_else, seed, u, {}, groups) for u in IDS[:500])

    step = Cohort(frozenset({"pilots"}), 25)
    for unit in IDS[:2000]:
        assert in_cohort(step, seed, unit, {}, groups) == (bucket(seed, unit) < 2500)
    everyone = Cohort(frozenset(), 100)
    assert all(in_cohort(everyone, seed, u, {}, {}) for u in IDS[:500])

    with pytest.raises(BadInput, match="unknown group 'staff'"):
        in_cohort(Cohort(frozenset({"staff"}), 5), seed, "u", {}, groups)


def test_cohort_threshold_is_derived() -> None:
    cohort = Cohort(frozenset({"a"}), 12.5)
    assert cohort.threshold == 1250
    assert cohort == Cohort(frozenset({"a"}), 12.5)


def test_cohort_matcher_answers_exactly_as_in_cohort() -> None:
    groups = {
        "staff": GroupRule.build(
            rules=[("email", "ends_with", "@example.org"), ("role", "in", ["dev"])]
        ),
        "eu": GroupRule.build(rules=[("region", "matches", "^eu-")], rules_match="any"),
        "pilots": GroupRule.build(allow=["user-7", "user-11"]),
    }
    people = [
        {},
        {"email": "a@example.org", "role": "dev"},
        {"email": "a@example.org", "role": "ops"},
        {"region": "eu-west"},
        {"region": "us-east", "email": "b@example.com"},
    ]
    for names in [(), ("staff",), ("staff", "eu", "pilots")]:
        for percent in (0, 5, 37.5, 100):
            cohort = Cohort(frozenset(names), percent)
            matcher = cohort_matcher(cohort, 4242, groups)
            for i, unit in enumerate(IDS[:400]):
                attrs = people[i % len(people)]
                assert matcher(unit, attrs) == in_cohort(cohort, 4242, unit, attrs, groups)
    with pytest.raises(BadInput, match="unknown group 'nobody'"):
        cohort_matcher(Cohort(frozenset({"nobody"}), 5), 1, groups)


# --- `matches` on RE2 -----------------------------------------------------------------------


def test_matches_rules_run_on_re2_through_the_native_match() -> None:
    rule = AttributeRule("email", "matches", r"^(a+)+$")
    match = inspect.getclosurevars(rule.test).nonlocals["match"]
    # The Match of a google-re2 Set: RE2's engine, not Python's re (bucketing.py says why a
    # Set rather than the compiled pattern's search()).
    assert type(match.__self__).__module__ == "re2"
    assert type(match.__self__).__name__ == "Set"
    assert GroupRule.build(rules=[rule])._tests[0][1] is rule.test


# Run in a child process, killed after a few seconds: a backtracking engine would not come
# back from these at all (2**100000 paths), so this guards against a hang; it does not time.
_ADVERSARIAL = r"""
import json
from releaser.core.bucketing import AttributeRule, Cohort, GroupRule, cohort_matcher

long = "a" * 100_000
rule = AttributeRule("email", "matches", r"^(a+)+$")
nested = AttributeRule("email", "matches", r"(x+x+)+y")
group = {"g": GroupRule.build(rules=[("email", "matches", r"^(a+)+$")])}
in_group = cohort_matcher(Cohort(groups=frozenset({"g"})), 7, group)
print(json.dumps([
    rule.applies_to({"email": long + "!"}),
    rule.applies_to({"email": long}),
    nested.applies_to({"email": "x" * 100_000}),
    nested.applies_to({"email": "x" * 100_000 + "y"}),
    in_group("u1", {"email": "a" * 30 + "!"}),
    in_group("u1", {"email": "a" * 30}),
]))
"""


def test_a_pathological_pattern_answers_on_a_100000_character_adversarial_value() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ADVERSARIAL], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [False, True, False, True, False, True]


def test_matches_keeps_its_semantics() -> None:
    rule = AttributeRule("email", "matches", r"@(example|test)\.org$")
    assert rule.applies_to({"email": "ann@example.org"})
    assert rule.applies_to({"email": "x@test.org"})
    assert not rule.applies_to({"email": "ann@example.org.evil"})
    assert not rule.applies_to({"email": "ann@EXAMPLE.org"})  # case-sensitive
    assert AttributeRule("email", "matches", r"(?i)@example\.org").applies_to(
        {"email": "ann@EXAMPLE.org"}
    )
    assert AttributeRule("x", "matches", "").applies_to({"x": ""})  # search: empty matches
    assert not AttributeRule("x", "matches", "").applies_to({})  # missing: never
    assert not AttributeRule("x", "matches", "5").applies_to({"x": 5})  # type: ignore[dict-item]
    # Non-ASCII values are matched as characters, not bytes.
    assert AttributeRule("name", "matches", r"^\pL{4}$").applies_to({"name": "Zoëé"})
    assert AttributeRule("name", "matches", r"^.{2}$").applies_to({"name": "éé"})
    # A lone surrogate (possible from the SDK) is one character, as in Python's re.
    assert AttributeRule("x", "matches", r"^.$").applies_to({"x": "\udc80"})
    assert AttributeRule("x", "matches", "a").applies_to({"x": "\udc80a"})


@pytest.mark.parametrize(
    ("pattern", "reason", "hint"),
    [
        (
            r"^(a)\1$",
            r"invalid escape sequence: \1",
            r"RE2 has no backreferences: rewrite without \1",
        ),
        (r"(?P<n>a)(?P=n)", "invalid perl operator", "RE2 syntax"),
        (r"^(?=admin)", "invalid perl operator: (?=", "RE2 has no lookaheads"),
        (r"^(?!guest)", "invalid perl operator: (?!", "RE2 has no lookaheads"),
        (r"(?<=@)example", "invalid perl operator: (?<=", "RE2 has no lookbehinds"),
        (r"(?<!test)\.org", "invalid perl operator: (?<!", "RE2 has no lookbehinds"),
        (r"a++b", "bad repetition operator: ++", "RE2 has no possessive quantifiers"),
        (r"(?>a+)b", "invalid perl operator: (?>", "RE2 has no atomic groups"),
        (r"\.org\Z", r"invalid escape sequence: \Z", r"write \z (or $)"),
        (r"a{1001}", "invalid repetition size", "at most 1000 times"),
        (r"\pL{100}", "pattern too large", "1 MiB"),
        ("(unclosed", "missing )", "RE2 syntax"),
    ],
)
def test_what_re2_cannot_run_is_refused_with_its_reason_and_a_hint(
    pattern: str, reason: str, hint: str
) -> None:
    with pytest.raises(BadInput) as exc:
        AttributeRule("email", "matches", pattern)
    assert exc.value.message.startswith("rule on 'email': RE2 cannot compile")
    assert reason in exc.value.message
    assert exc.value.hint is not None and hint in exc.value.hint


def test_a_pattern_over_the_length_bound_is_refused_before_compiling() -> None:
    assert compile_pattern("a" * MAX_PATTERN_CHARS)("a" * MAX_PATTERN_CHARS)
    with pytest.raises(BadInput, match="1,001 characters long") as exc:
        compile_pattern("a" * (MAX_PATTERN_CHARS + 1))
    assert exc.value.hint is not None and "ends_with" in exc.value.hint
    with pytest.raises(BadInput, match="not valid Unicode"):
        compile_pattern("\udc80")
