"""Deterministic, sticky bucketing of units (users, sessions) into rollout cohorts.

A unit id hashes with the rollout's frozen seed to a bucket in ``[0, 10000)``:

    message = ASCII decimal of seed + ":" + UTF-8 bytes of unit_id   (seed in [0, 2**64);
                                                                      no Unicode normalisation)
    bucket  = XXH64(message, seed=0) mod 10000                       (XXH64 as a uint64)

The seed is part of the message, not XXH64's own seed argument, so any XXH64 with the
default seed reproduces it (docs/bucketing.md; vectors in tests/vectors/bucketing.json).
Modulo bias is below 10000 / 2**64, about 5e-16. A step of ``percent`` takes buckets
``0 .. round(percent * 100) - 1``, so widening a step never moves a unit out.

Cohorts take named groups first (allow-lists and attribute rules), then the percentage of
everyone else. The rule objects are frozen slotted dataclasses rather than pydantic models
because :func:`in_cohort` sits on the router's per-request path, where attribute access
must cost nanoseconds.

A ``matches`` rule runs on that same path, on values a client chose (a header at the
gateway), so it compiles with RE2 (google-re2), whose search is linear in the length of the
value whatever the pattern: Python's backtracking ``re`` took 8.9 s on ``^(a+)+$`` against 30
characters and froze the gateway's event loop. Patterns RE2 cannot run in linear time
(backreferences, lookarounds, possessive quantifiers) are refused when the rule is built,
as are patterns over :data:`MAX_PATTERN_CHARS` characters or whose program needs more than
:data:`MAX_PATTERN_MEMORY` bytes.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from xxhash import xxh64_intdigest

from releaser.errors import BadInput

__all__ = [
    "BUCKETS",
    "AttributeRule",
    "Cohort",
    "GroupRule",
    "RuleOp",
    "bucket",
    "MAX_PATTERN_CHARS",
    "MAX_PATTERN_MEMORY",
    "bucketer",
    "PERCENT_GROUP",
    "cohort_group_matcher",
    "cohort_matcher",
    "compile_pattern",
    "in_cohort",
    "in_percent",
    "match_groups",
    "percent_threshold",
]

BUCKETS = 10_000
"""Buckets per rollout: a percentage has a resolution of 0.01 points."""

PERCENT_GROUP = "(percent)"
"""The name a unit's cohort group takes when no named group decided: its bucket did (not a
slug, so no group can be named so). Unit counts are kept per group under these names."""

RuleOp = Literal["equals", "in", "matches", "ends_with"]
_OPS: tuple[str, ...] = ("equals", "in", "matches", "ends_with")

# Seed -> message prefix. Formatting an int costs more than the hash itself, and a process
# sees a handful of seeds (one per live rollout), so the prefix is memoised per seed; the
# bound keeps a pathological caller from growing it without limit.
_PREFIXES: dict[int, bytes] = {}
_MAX_PREFIXES = 4096


def _prefix(seed: int) -> bytes:
    try:
        number = operator.index(seed)
    except TypeError:
        raise BadInput(
            f"bucketing seed must be an integer, not {type(seed).__name__}",
            hint="use the release's bucketing_seed",
        ) from None
    if not 0 <= number < 2**64:
        raise BadInput(
            f"bucketing seed must be in [0, 2**64), not {number}",
            hint="use the release's bucketing_seed",
        )
    prefix = b"%d:" % number
    if len(_PREFIXES) >= _MAX_PREFIXES:
        _PREFIXES.clear()
    _PREFIXES[seed] = prefix
    return prefix


def _bad_unit(unit_id: object) -> BadInput:
    if isinstance(unit_id, str):
        return BadInput(
            "unit id is not valid Unicode (it holds a lone surrogate)",
            hint="decode the id from its source bytes with errors='strict' before routing",
        )
    return BadInput(
        f"unit id must be a str, not {type(unit_id).__name__}",
        hint="convert numeric user ids with str() the same way everywhere",
    )


def bucket(seed: int, unit_id: str) -> int:
    """The unit's bucket in ``[0, 10000)`` for a rollout seed; the same inputs, the same bucket."""
    # Subscript and try/except rather than .get(): no method call on the hot path, and
    # try costs nothing in CPython 3.11 until it raises.
    try:
        prefix = _PREFIXES[seed]
    except KeyError:
        prefix = _prefix(seed)
    try:
        data = unit_id.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        raise _bad_unit(unit_id) from None
    return xxh64_intdigest(prefix + data) % BUCKETS


def bucketer(seed: int) -> Callable[[str], int]:
    """``bucket`` with the seed bound once, for hot loops over many units of one rollout."""
    prefix = _PREFIXES.get(seed) or _prefix(seed)

    def bucket_of(unit_id: str) -> int:
        try:
            data = unit_id.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            raise _bad_unit(unit_id) from None
        return xxh64_intdigest(prefix + data) % BUCKETS

    return bucket_of


def percent_threshold(percent: float) -> int:
    """First bucket outside ``percent``: ``round(percent * 100)``, half to even, in 0..10000."""
    if not 0.0 <= percent <= 100.0:  # also rejects NaN
        raise BadInput(
            f"percent must be between 0 and 100, not {percent!r}",
            hint="a step's percent is a share of everyone else, e.g. 5 for 5%",
        )
    return round(percent * 100)


def in_percent(bucket: int, percent: float) -> bool:
    """Whether a bucket falls in the first ``percent`` of buckets (5% = buckets 0..499)."""
    return bucket < percent_threshold(percent)


MAX_PATTERN_CHARS = 1_000
"""Longest regular expression a ``matches`` rule accepts, in characters."""
MAX_PATTERN_MEMORY = 1 << 20
"""RE2's memory per pattern in bytes (program and search cache); a larger program is refused."""

# What RE2's parser says -> what to do instead. RE2 refuses every construct that needs
# backtracking; its messages name the construct but not the way round it.
_RE2_HINTS: tuple[tuple[str, str], ...] = (
    (
        "invalid perl operator: (?=",
        "RE2 has no lookaheads: match the text itself, or split the rule in two",
    ),
    (
        "invalid perl operator: (?!",
        "RE2 has no lookaheads: list what is allowed instead of what is not",
    ),
    (
        "invalid perl operator: (?<=",
        "RE2 has no lookbehinds: match the text itself, or split the rule in two",
    ),
    (
        "invalid perl operator: (?<!",
        "RE2 has no lookbehinds: list what is allowed instead of what is not",
    ),
    (
        "invalid perl operator: (?>",
        "RE2 has no atomic groups: write a plain group (?:...), RE2 never backtracks",
    ),
    (
        "invalid perl operator: (?x",
        "RE2 has no verbose mode: write the pattern without its spaces and comments",
    ),
    (
        "bad repetition operator: ++",
        "RE2 has no possessive quantifiers: write + (RE2 never backtracks)",
    ),
    (
        "bad repetition operator: *+",
        "RE2 has no possessive quantifiers: write * (RE2 never backtracks)",
    ),
    (
        "bad repetition operator: ?+",
        "RE2 has no possessive quantifiers: write ? (RE2 never backtracks)",
    ),
    ("invalid escape sequence: \\Z", "write \\z (or $) for the end of the value"),
    (
        "invalid repetition size",
        "RE2 repeats at most 1000 times, {n,m} included: use + or * instead",
    ),
    (
        "pattern too large",
        "the compiled pattern exceeds RE2's 1 MiB budget: repeat less ({n}) "
        "and narrow Unicode classes such as \\pL",
    ),
)
# A string, compiled on first use (by re's cache): only a refused pattern needs it.
_BACKREFERENCE = r"invalid escape sequence: (\\[1-9]\d*|\\g)"
_SYNTAX_HINT = "rules use RE2 syntax (https://github.com/google/re2/wiki/Syntax)"

# The RE2 options every rule compiles with (built once, on first use: importing re2 loads
# a native library that `releaser --help` does not need).
_re2_options: Any = None


def _re2_hint(reason: str) -> str:
    backreference = re.search(_BACKREFERENCE, reason)
    if backreference:
        return f"RE2 has no backreferences: rewrite without {backreference.group(1)}"
    for start, hint in _RE2_HINTS:
        if reason.startswith(start):
            return hint
    return _SYNTAX_HINT


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A linear-time test: whether ``pattern`` (RE2 syntax) is found anywhere in a string.

    Raises :class:`BadInput` with RE2's reason and a hint when the pattern is longer than
    :data:`MAX_PATTERN_CHARS`, uses what RE2 refuses (backreferences, lookarounds,
    possessive quantifiers, atomic groups) or compiles past :data:`MAX_PATTERN_MEMORY`.
    The test answers False for a value that is not a ``str``.
    """
    global _re2_options
    if not isinstance(pattern, str):
        raise BadInput(
            f"a regular expression must be a str, not {type(pattern).__name__}",
            hint="quote the pattern",
        )
    if len(pattern) > MAX_PATTERN_CHARS:
        raise BadInput(
            f"the regular expression is {len(pattern):,} characters long, "
            f"more than the {MAX_PATTERN_CHARS:,} a rule accepts",
            hint="match a shorter distinguishing part, or use 'in' or 'ends_with'",
        )
    import re2

    if _re2_options is None:
        options = re2.Options()
        options.max_mem = MAX_PATTERN_MEMORY
        options.log_errors = False  # the reason comes back in the exception
        options.never_capture = True  # a rule needs whether, not where: no groups kept
        _re2_options = options
    try:
        # compile() first: it reports RE2's reason; a Set's Add() only says it failed.
        re2.compile(pattern, _re2_options)
        searcher = re2.Set.SearchSet(_re2_options)
        searcher.Add(pattern)
        searcher.Compile()
    except re2.error as exc:
        said = exc.args[0] if exc.args else exc  # google-re2 gives RE2's message as bytes
        reason = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
        raise BadInput(
            f"RE2 cannot compile the regular expression {pattern!r}: {reason}",
            hint=_re2_hint(reason),
        ) from None
    except UnicodeEncodeError:
        raise BadInput(
            f"the regular expression {pattern!r} is not valid Unicode (it holds a lone surrogate)",
            hint="write the pattern as text; match any character with . instead",
        ) from None
    # A one-pattern RE2::Set answers only whether the pattern occurs, which is all a rule
    # needs: 0.5 us a call against 3.7 us for the compiled pattern's search(), a generator
    # that maps every match's byte offsets back to characters.
    match = searcher.Match

    def search(value: str) -> bool:
        try:
            # Bytes, not str: the Set would encode strictly and raise on a lone surrogate
            # (possible from the SDK); surrogatepass makes it one character, as in re.
            data = value.encode("utf-8", "surrogatepass")
        except AttributeError:
            return False
        return match(data) is not None

    return search


@dataclass(frozen=True, slots=True)
class AttributeRule:
    """One test on a request attribute; a missing attribute never matches.

    ``equals``: the value is exactly ``value``; ``in``: the value is one of ``value``
    (a collection); ``matches``: the regular expression ``value`` (RE2 syntax, see
    :func:`compile_pattern`) is found anywhere in the value (anchor with ``^...$`` for a
    whole match); ``ends_with``: the value ends with ``value``. All comparisons are
    case-sensitive, on the exact string.
    """

    attribute: str
    op: RuleOp
    value: str | frozenset[str]
    test: Callable[[str], object] = field(init=False, repr=False, compare=False)
    """The compiled test on the attribute's value (truthy when it holds)."""

    def __post_init__(self) -> None:
        op, value = self.op, self.value
        if op not in _OPS:
            raise BadInput(f"unknown rule operator {op!r}", hint=f"use one of: {', '.join(_OPS)}")
        test: Callable[[str], object]
        if op == "in":
            if isinstance(value, str):
                raise BadInput(
                    f"rule on {self.attribute!r}: 'in' needs a collection of values",
                    hint="give a list, e.g. ['a', 'b']",
                )
            members = frozenset(value)
            object.__setattr__(self, "value", members)
            test = members.__contains__
        elif not isinstance(value, str):
            raise BadInput(f"rule on {self.attribute!r}: {op!r} needs a single string")
        elif op == "equals":
            # Not value.__eq__: that answers NotImplemented (truthy) for a non-str value.
            test = frozenset((value,)).__contains__
        elif op == "ends_with":
            # A C-level callable: a Python closure would cost a frame on every request.
            test = re.compile(re.escape(value) + r"\Z").search
        else:
            try:
                test = compile_pattern(value)
            except BadInput as exc:
                raise BadInput(
                    f"rule on {self.attribute!r}: {exc.message}", hint=exc.hint
                ) from None
        object.__setattr__(self, "test", test)

    @classmethod
    def of(cls, rule: AttributeRule | tuple[str, str, str | Iterable[str]]) -> AttributeRule:
        """A rule from itself or an ``(attribute, op, value)`` triple."""
        if isinstance(rule, AttributeRule):
            return rule
        attribute, op, value = rule
        if op not in _OPS:
            raise BadInput(f"unknown rule operator {op!r}", hint=f"use one of: {', '.join(_OPS)}")
        given = value if isinstance(value, str) else frozenset(value)
        return cls(attribute, op, given)  # type: ignore[arg-type]  # op checked above

    def applies_to(self, attributes: Mapping[str, str]) -> bool:
        """Whether ``attributes`` satisfy this rule."""
        actual = attributes.get(self.attribute)
        return actual is not None and bool(self.test(actual))


@dataclass(frozen=True, slots=True)
class GroupRule:
    """A named group's membership: allow-listed unit ids, or attribute rules.

    A unit is in the group if its id is in ``allow``, or if the rules hold: all of them
    when ``rules_match`` is ``"all"`` (the default, as releaser.yaml documents: list
    several groups in a step to OR them), any one of them when it is ``"any"``. A group
    with no allow-list and no rules contains nobody.
    """

    allow: frozenset[str] = frozenset()
    rules: tuple[AttributeRule, ...] = ()
    rules_match: Literal["all", "any"] = "all"
    _tests: tuple[tuple[str, Callable[[str], object]], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.rules_match not in ("all", "any"):
            raise BadInput(f"rules_match must be 'all' or 'any', not {self.rules_match!r}")
        rules = tuple(AttributeRule.of(r) for r in self.rules)
        object.__setattr__(self, "allow", frozenset(self.allow))
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "_tests", tuple((r.attribute, r.test) for r in rules))

    @classmethod
    def build(
        cls,
        allow: Iterable[str] = (),
        rules: Iterable[AttributeRule | tuple[str, str, str | Iterable[str]]] = (),
        rules_match: Literal["all", "any"] = "all",
    ) -> GroupRule:
        """A group from any iterable of ids and rules or ``(attribute, op, value)`` triples."""
        return cls(frozenset(allow), tuple(AttributeRule.of(r) for r in rules), rules_match)

    def contains(self, unit_id: str, attributes: Mapping[str, str]) -> bool:
        """Whether the unit belongs to the group."""
        if unit_id in self.allow:
            return True
        tests = self._tests
        # Plain loops, not all()/any() over a generator: this runs on every routed request.
        if self.rules_match == "all":
            for attribute, test in tests:
                actual = attributes.get(attribute)
                if actual is None or not test(actual):
                    return False
            return bool(tests)
        for attribute, test in tests:
            actual = attributes.get(attribute)
            if actual is not None and test(actual):
                return True
        return False


def match_groups(
    groups: Mapping[str, GroupRule], unit_id: str, attributes: Mapping[str, str]
) -> frozenset[str]:
    """Names of every group the unit belongs to."""
    return frozenset(name for name, group in groups.items() if group.contains(unit_id, attributes))


@dataclass(frozen=True, slots=True)
class Cohort:
    """Who a rollout step reaches: members of named groups, then ``percent`` of everyone else."""

    groups: frozenset[str] = frozenset()
    percent: float = 0.0
    threshold: int = field(default=0, init=False, compare=False)
    """First bucket outside the percentage (derived: ``percent_threshold(percent)``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", frozenset(self.groups))
        object.__setattr__(self, "threshold", percent_threshold(self.percent))


def in_cohort(
    cohort: Cohort,
    seed: int,
    unit_id: str,
    attributes: Mapping[str, str],
    groups: Mapping[str, GroupRule],
) -> bool:
    """Whether the unit is in the cohort: a named group first, then its bucket.

    Raises :class:`BadInput` if the cohort names a group that ``groups`` does not define.
    """
    for name in cohort.groups:
        group = groups.get(name)
        if group is None:
            known = ", ".join(sorted(groups)) or "none"
            raise BadInput(
                f"the cohort names the unknown group {name!r}",
                hint=f"define it under 'groups' (defined: {known})",
            )
        if group.contains(unit_id, attributes):
            return True
    threshold = cohort.threshold
    if threshold == 0:
        return False
    # No shortcut at 100%: an id with no UTF-8 form is refused at every percentage.
    return bucket(seed, unit_id) < threshold


def cohort_matcher(
    cohort: Cohort, seed: int, groups: Mapping[str, GroupRule]
) -> Callable[[str, Mapping[str, str]], bool]:
    """``in_cohort`` with the cohort, seed and groups resolved once, for the router's hot path.

    The returned function answers exactly as :func:`in_cohort` would; build it when the
    rollout snapshot changes, not per request. Unknown groups raise here, once.
    """
    which = cohort_group_matcher(cohort, seed, groups)

    def matches(unit_id: str, attributes: Mapping[str, str]) -> bool:
        return which(unit_id, attributes) is not None

    return matches


def cohort_group_matcher(
    cohort: Cohort, seed: int, groups: Mapping[str, GroupRule]
) -> Callable[[str, Mapping[str, str]], str | None]:
    """Why a unit is in the cohort: the group it matched, :data:`PERCENT_GROUP`, or None.

    The returned function tests allow-lists first (a unit on two lists is in the first
    group by name), then each group's rules in name order, then ``bucket < threshold``
    (:data:`PERCENT_GROUP`); None means outside the cohort. It is in the cohort exactly
    when :func:`in_cohort` says so. Unknown groups raise here, once.
    """
    chosen: list[tuple[str, GroupRule]] = []
    for name in sorted(cohort.groups):
        group = groups.get(name)
        if group is None:
            known = ", ".join(sorted(groups)) or "none"
            raise BadInput(
                f"the cohort names the unknown group {name!r}",
                hint=f"define it under 'groups' (defined: {known})",
            )
        chosen.append((name, group))
    allowed: dict[str, str] = {}
    for name, group in chosen:
        for unit in group.allow:
            allowed.setdefault(unit, name)
    allow_get = allowed.get
    ruled = tuple((name, g._tests, g.rules_match == "all") for name, g in chosen if g._tests)
    threshold = cohort.threshold
    prefix = _PREFIXES.get(seed) or _prefix(seed)
    percent = PERCENT_GROUP

    def which(unit_id: str, attributes: Mapping[str, str]) -> str | None:
        name = allow_get(unit_id)
        if name is not None:
            return name
        for name, tests, need_all in ruled:
            if need_all:
                for attribute, test in tests:
                    actual = attributes.get(attribute)
                    if actual is None or not test(actual):
                        break
                else:
                    return name
            else:
                for attribute, test in tests:
                    actual = attributes.get(attribute)
                    if actual is not None and test(actual):
                        return name
        if threshold == 0:
            return None
        # No shortcut at 100%: an id with no UTF-8 form is refused at every percentage.
        try:
            data = unit_id.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            raise _bad_unit(unit_id) from None
        return percent if xxh64_intdigest(prefix + data) % BUCKETS < threshold else None

    return which
