"""GitHub Actions ``${{ }}`` expressions: a tokenizer, a parser and an evaluator.

The subset the workflows use, with GitHub's semantics: literals (strings in single
quotes with ``''`` as the escape, numbers, ``true``, ``false``, ``null``), context
access (``a.b``, ``a['b']``, ``a.*.b``), ``!``, ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``
(loose: strings compare case-insensitively, other mixes compare as numbers), ``&&``
and ``||`` (which return an operand, not a bool), and the functions in
:data:`FUNCTIONS`. A context or function outside the known ones is an
:class:`ExpressionError`, so a workflow cannot use one the harness does not model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

STATUS_FUNCTIONS = frozenset({"success", "failure", "always", "cancelled"})
FUNCTIONS = frozenset(
    {"contains", "startsWith", "endsWith", "format", "join", "toJSON", "fromJSON"}
    | STATUS_FUNCTIONS
)
MAX_EXPRESSION = 10_000  # GitHub's own limit on an expression's length is 21,000 characters


class ExpressionError(ValueError):
    """An expression that does not parse, or names an unknown context or function."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?))"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,*])|(?P<id>[A-Za-z_][A-Za-z0-9_-]*))"
)


@dataclass(frozen=True)
class Token:
    """One token: kind is str, num, op or id."""

    kind: str
    text: str


def tokenize(source: str) -> list[Token]:
    """The tokens of an expression (without the ``${{ }}``)."""
    if len(source) > MAX_EXPRESSION:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION} characters")
    tokens, pos = [], 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise ExpressionError(f"unexpected character at {pos} in {source!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append(Token(kind, match.group(kind)))
        pos = match.end()
    return tokens


# The tree: tuples ("lit", value) | ("ctx", name) | ("get", obj, key) | ("star", obj)
# | ("call", name, args) | ("not", x) | ("bin", op, a, b).
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, text: str | None = None) -> Token:
        tok = self.peek()
        if tok is None or (text is not None and tok.text != text):
            raise ExpressionError(f"expected {text or 'more'} in {self.source!r}")
        self.pos += 1
        return tok

    def parse(self) -> Node:
        node = self.binary(0)
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()!r} in {self.source!r}")
        return node

    _LEVELS: tuple[frozenset[str], ...] = (
        frozenset({"||"}),
        frozenset({"&&"}),
        frozenset({"==", "!="}),
        frozenset({"<", "<=", ">", ">="}),
    )

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while (
            (tok := self.peek()) is not None
            and tok.kind == "op"
            and tok.text in self._LEVELS[level]
        ):
            self.pos += 1
            node = ("bin", tok.text, node, self.binary(level + 1))
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok.text == "!":
            self.pos += 1
            return ("not", self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "str":
            return ("lit", tok.text[1:-1].replace("''", "'"))
        if tok.kind == "num":
            value = float(int(tok.text, 16)) if "x" in tok.text.lower() else float(tok.text)
            return ("lit", value)
        if tok.text == "(":
            node = self.binary(0)
            self.take(")")
            return node
        if tok.kind != "id":
            raise ExpressionError(f"unexpected {tok.text!r} in {self.source!r}")
        if tok.text in ("true", "false"):
            return ("lit", tok.text == "true")
        if tok.text == "null":
            return ("lit", None)
        nxt = self.peek()
        if nxt is not None and nxt.text == "(":
            self.pos += 1
            args: list[Node] = []
            while (t := self.peek()) is not None and t.text != ")":
                args.append(self.binary(0))
                if (t := self.peek()) is not None and t.text == ",":
                    self.pos += 1
            self.take(")")
            return ("call", tok.text, args)
        return ("ctx", tok.text)

    def postfix(self, node: Node) -> Node:
        while (tok := self.peek()) is not None and tok.text in (".", "["):
            self.pos += 1
            if tok.text == ".":
                name = self.take()
                if name.text == "*":
                    node = ("star", node)
                elif name.kind == "id":
                    node = ("get", node, ("lit", name.text))
                else:
                    raise ExpressionError(f"bad property {name.text!r} in {self.source!r}")
            else:
                if (t := self.peek()) is not None and t.text == "*":
                    self.pos += 1
                    node = ("star", node)
                else:
                    node = ("get", node, self.binary(0))
                self.take("]")
        return node


def parse(source: str) -> Node:
    """The syntax tree of an expression."""
    return _Parser(source).parse()


def names_used(node: Node) -> Iterator[tuple[str, str]]:
    """Every ("context", name) and ("function", name) an expression tree uses."""
    kind = node[0]
    if kind == "ctx":
        yield ("context", node[1])
    elif kind == "call":
        yield ("function", node[1])
        for arg in node[2]:
            yield from names_used(arg)
    elif kind in ("get", "bin", "not", "star"):
        for child in node[1:]:
            if isinstance(child, tuple):
                yield from names_used(child)


def truthy(value: Any) -> bool:
    """GitHub's truthiness: false, 0, -0, NaN, '' and null are false."""
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, "")


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip() or 0)
        except ValueError:
            return math.nan
    return math.nan


def _compare(op: str, a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.casefold()
        y: Any = b.casefold()
    elif type(a) is type(b) and isinstance(a, dict | list):
        if op not in ("==", "!="):
            return False
        return (a is b) == (op == "==")
    else:
        x, y = _number(a), _number(b)
    if op == "==":
        return bool(x == y)
    if op == "!=":
        return bool(x != y)
    return bool({"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op])


def to_string(value: Any) -> str:
    """How a value is written into a string: null is '', numbers lose a trailing .0."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2)
    return str(value)


def _format(template: str, *args: Any) -> str:
    def field(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        index = int(match.group(1))
        if index >= len(args):
            raise ExpressionError(f"format: no argument {index} for {template!r}")
        return to_string(args[index])

    return re.sub(r"\{\{|\}\}|\{(\d+)\}", field, template)


def _contains(haystack: Any, needle: Any) -> bool:
    if isinstance(haystack, list):
        return any(_compare("==", item, needle) for item in haystack)
    return to_string(needle).casefold() in to_string(haystack).casefold()


_PURE: dict[str, Callable[..., Any]] = {
    "contains": _contains,
    "startsWith": lambda a, b: to_string(a).casefold().startswith(to_string(b).casefold()),
    "endsWith": lambda a, b: to_string(a).casefold().endswith(to_string(b).casefold()),
    "format": lambda t, *a: _format(to_string(t), *a),
    "join": lambda a, sep=",": (
        to_string(sep).join(map(to_string, a)) if isinstance(a, list) else to_string(a)
    ),
    "toJSON": lambda a: json.dumps(a, indent=2),
    "fromJSON": lambda a: json.loads(to_string(a)),
}


def evaluate(node: Node, contexts: Mapping[str, Any], status: Mapping[str, bool]) -> Any:
    """The value of a tree. ``status`` answers success(), failure(), always(), cancelled()."""
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ctx":
        if node[1] not in contexts:
            raise ExpressionError(f"unknown context {node[1]!r} (known: {sorted(contexts)})")
        return contexts[node[1]]
    if kind == "get":
        obj, key = evaluate(node[1], contexts, status), evaluate(node[2], contexts, status)
        if isinstance(obj, dict):
            lowered = {str(k).casefold(): v for k, v in obj.items()}
            return lowered.get(to_string(key).casefold())
        if isinstance(obj, list) and isinstance(key, float) and key.is_integer():
            return obj[int(key)] if 0 <= key < len(obj) else None
        return None
    if kind == "star":
        obj = evaluate(node[1], contexts, status)
        return list(obj.values()) if isinstance(obj, dict) else list(obj or [])
    if kind == "not":
        return not truthy(evaluate(node[1], contexts, status))
    if kind == "bin":
        op, left = node[1], evaluate(node[2], contexts, status)
        if op == "&&":
            return evaluate(node[3], contexts, status) if truthy(left) else left
        if op == "||":
            return left if truthy(left) else evaluate(node[3], contexts, status)
        return _compare(op, left, evaluate(node[3], contexts, status))
    if kind == "call":
        name, args = node[1], node[2]
        if name in STATUS_FUNCTIONS:
            if args:
                raise ExpressionError(f"{name}() takes no arguments")
            return status[name]
        if name not in _PURE:
            raise ExpressionError(f"unknown function {name!r} (known: {sorted(FUNCTIONS)})")
        return _PURE[name](*(evaluate(a, contexts, status) for a in args))
    raise ExpressionError(f"bad node {node!r}")


_OPEN = "${{"


def template_parts(text: str) -> Iterator[tuple[bool, str]]:
    """Split a string into (is_expression, text) parts; quotes inside ``${{ }}`` may hold ``}}``."""
    pos = 0
    while (start := text.find(_OPEN, pos)) != -1:
        if start > pos:
            yield False, text[pos:start]
        i, quoted = start + len(_OPEN), False
        while i < len(text):
            if text[i] == "'":
                quoted = not quoted
            elif not quoted and text.startswith("}}", i):
                break
            i += 1
        else:
            raise ExpressionError(f"unclosed ${{{{ in {text!r}")
        yield True, text[start + len(_OPEN) : i].strip()
        pos = i + 2
    if pos < len(text):
        yield False, text[pos:]


def interpolate(text: str, contexts: Mapping[str, Any], status: Mapping[str, bool]) -> Any:
    """A string with its ``${{ }}`` expressions replaced; a lone expression keeps its type."""
    parts = list(template_parts(text))
    if len(parts) == 1 and parts[0][0]:
        return evaluate(parse(parts[0][1]), contexts, status)
    return "".join(
        to_string(evaluate(parse(t), contexts, status)) if is_expr else t for is_expr, t in parts
    )


def condition(text: Any) -> Node:
    """The tree of an ``if:`` (with or without ``${{ }}``), with GitHub's implicit success()."""
    if isinstance(text, bool):
        return ("lit", text)
    source = str(text).strip()
    if source.startswith(_OPEN) and source.endswith("}}"):
        source = source[len(_OPEN) : -2].strip()
    tree = parse(source)
    if not any(kind == "function" and n in STATUS_FUNCTIONS for kind, n in names_used(tree)):
        tree = ("bin", "&&", ("call", "success", []), tree)
    return tree
