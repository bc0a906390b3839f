"""Strict, sandboxed rendering of prompt templates.

Templates run in Jinja2's immutable sandbox with ``StrictUndefined``, no
autoescape and no loader (so no ``include``/``import`` of files). The caller
must pass exactly the declared variables, with the declared types. Compiled
templates are cached by content hash, so each version compiles once.

A template that passes lint can still loop for hours or build a string of
gigabytes (``{% for i in range(100000) %}{% for j in range(100000) %}``,
``{{ x * 100000000 }}``). Every render therefore runs on a budget
(:data:`LIMITS`): loop iterations and calls together count as steps, the
output is counted as it is produced, and the clock is read every few hundred
steps. Before an operation that would make a large value (``*``, ``**``,
``%``, a filter or string method given a huge width, a format string with a
huge width) its size is checked, so the limit is hit before the memory is
spent. Going over any limit is a RenderError naming the limit.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptregistry.errors import InvalidPrompt, RenderError
from promptregistry.model import PromptSpec

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "LIMITS",
    "RenderLimits",
    "check_variables",
    "compile_template",
    "environment",
    "render",
    "render_compiled",
]


@dataclass(frozen=True)
class RenderLimits:
    """What one render may use. A prompt goes to a model: a million characters is far
    beyond any context window, and a million steps far beyond any real template."""

    steps: int = 1_000_000
    chars: int = 1_000_000
    seconds: float = 2.0


LIMITS = RenderLimits()
_LOOP_FILTER = "releaser_loop_budget"  # wraps the iterable of every {% for %}
_CLOCK_EVERY = 256  # steps between readings of the clock
_BIG_WIDTH = re.compile(r"\d{7,}")  # a width of a million or more in a format string
_MAX_INT_BITS = 4096  # ints from ** and * on ints; far beyond any count or id


class _OverBudget(Exception):
    """A render went over one of its limits (turned into RenderError by render_compiled)."""


class _Budget:
    __slots__ = ("chars", "deadline", "steps")

    def __init__(self, limits: RenderLimits) -> None:
        self.steps = limits.steps
        self.chars = limits.chars
        self.deadline = time.monotonic() + limits.seconds

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise _OverBudget(f"more than {LIMITS.steps:,} loop iterations and calls")
        if self.steps % _CLOCK_EVERY == 0 and time.monotonic() > self.deadline:
            raise _OverBudget(f"longer than {LIMITS.seconds:g} s")

    def size(self, n: int) -> None:
        if n > LIMITS.chars:
            raise _OverBudget(f"a value of more than {LIMITS.chars:,} characters")


_budget: ContextVar[_Budget | None] = ContextVar("promptregistry_render_budget", default=None)


def _current() -> _Budget:
    budget = _budget.get()
    if budget is None:  # a compiled template rendered outside render_compiled
        budget = _Budget(LIMITS)
        _budget.set(budget)
    return budget


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _current()
    for item in iterable:
        budget.step()
        yield item


def _check_value(budget: _Budget, value: Any) -> None:
    if isinstance(value, str | list | tuple | dict):
        budget.size(len(value))
    elif isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise _OverBudget(f"an integer of more than {_MAX_INT_BITS} bits")


def _check_format(budget: _Budget, fmt: Any) -> None:
    if isinstance(fmt, str) and _BIG_WIDTH.search(fmt):
        raise _OverBudget("a format with a width of a million characters or more")


def _check_widths(budget: _Budget, args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > LIMITS.chars:
            raise _OverBudget(f"a width or count of more than {LIMITS.chars:,}")


def _bounded_filter(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``func`` checking its arguments first: no huge widths, no huge format strings."""

    @functools.wraps(func)  # keeps jinja's pass_context/pass_environment marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _current()
        budget.step()
        _check_widths(budget, args[1:])
        _check_widths(budget, kwargs.values())
        if name == "format":
            for arg in args:
                _check_format(budget, arg)
        return func(*args, **kwargs)

    return bounded


_CACHE_SIZE = 512
_cache: dict[str, Template] = {}
_cache_lock = threading.Lock()
_env: SandboxedEnvironment | None = None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPE_CHECKS: dict[str, Callable[[object], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": _is_int,
    "float": _is_float,
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list | tuple),
    "dict": lambda v: isinstance(v, Mapping),
}


def environment() -> SandboxedEnvironment:
    """The shared sandboxed Jinja2 environment (created on first use)."""
    global _env
    if _env is None:
        from jinja2 import StrictUndefined, nodes
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class BoundedEnvironment(ImmutableSandboxedEnvironment):
            """The immutable sandbox, with every loop, call and big operator on a budget."""

            intercepted_binops = frozenset({"*", "**", "%"})

            def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
                tree = super()._parse(source, name, filename)
                for loop in tree.find_all(nodes.For):
                    loop.iter = nodes.Filter(
                        loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno
                    )
                return tree

            def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
                budget = _current()
                budget.step()
                for arg in (*args, *kwargs.values()):
                    _check_value(budget, arg)
                owner = getattr(__obj, "__self__", None)
                if isinstance(owner, str):  # str methods: center, ljust, zfill, format, ...
                    _check_widths(budget, args)
                    _check_widths(budget, kwargs.values())
                    if getattr(__obj, "__name__", "") in ("format", "format_map"):
                        _check_format(budget, owner)
                return super().call(__context, __obj, *args, **kwargs)

            def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
                # str.format and str.format_map: the sandbox wraps them at attribute access.
                wrapped = super().wrap_str_format(value)
                if wrapped is not None:
                    _check_format(_current(), value.__self__)
                return wrapped

            def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
                budget = _current()
                if operator == "*":
                    for seq, n in ((left, right), (right, left)):
                        if isinstance(seq, str | list | tuple) and isinstance(n, int):
                            budget.size(len(seq) * max(n, 0))
                    if isinstance(left, int) and isinstance(right, int):
                        if left.bit_length() + right.bit_length() > _MAX_INT_BITS:
                            raise _OverBudget(f"an integer of more than {_MAX_INT_BITS} bits")
                elif operator == "**":
                    if isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
                        if right * abs(left).bit_length() > _MAX_INT_BITS:
                            raise _OverBudget(f"an integer of more than {_MAX_INT_BITS} bits")
                elif operator == "%":
                    _check_format(budget, left)
                result = super().call_binop(context, operator, left, right)
                _check_value(budget, result)
                return result

        _env = BoundedEnvironment(
            undefined=StrictUndefined,
            autoescape=False,
            loader=None,
            keep_trailing_newline=True,
        )
        for name, func in list(_env.filters.items()):
            _env.filters[name] = _bounded_filter(func, name)
        _env.filters[_LOOP_FILTER] = _counted
        # namespace() is the one mutable object a template can make: a value that grows
        # on every iteration. Prompts have no use for it.
        _env.globals.pop("namespace", None)
    return _env


def compile_template(spec: PromptSpec, *, key: str | None = None) -> Template:
    """The compiled template of ``spec``, compiled once per content hash and cached."""
    cache_key = key or getattr(spec, "content_hash", None) or spec.compute_hash()
    template = _cache.get(cache_key)
    if template is not None:
        return template
    from jinja2 import TemplateSyntaxError

    try:
        template = environment().from_string(spec.template)
    except TemplateSyntaxError as exc:
        raise InvalidPrompt(
            f"prompt {spec.name!r}: template syntax error on line {exc.lineno}: {exc.message}",
            hint="run lint on the spec to see every problem",
        ) from None
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            # drop the oldest entry; dicts keep insertion order
            _cache.pop(next(iter(_cache)))
        _cache[cache_key] = template
    return template


def check_variables(spec: PromptSpec, variables: Mapping[str, object]) -> None:
    """Raise RenderError unless ``variables`` are exactly the declared ones, of declared types."""
    declared = spec.variables
    missing = sorted(set(declared) - set(variables))
    if missing:
        raise RenderError(
            f"prompt {spec.name!r}: missing variable(s): {', '.join(missing)}",
            hint=f"declared variables: {_describe(declared)}",
        )
    unexpected = sorted(set(variables) - set(declared))
    if unexpected:
        raise RenderError(
            f"prompt {spec.name!r}: unexpected variable(s): {', '.join(unexpected)}",
            hint=f"declared variables: {_describe(declared)}",
        )
    for var, type_name in declared.items():
        value = variables[var]
        if not _TYPE_CHECKS[type_name](value):
            raise RenderError(
                f"prompt {spec.name!r}: variable {var!r} must be {type_name}, "
                f"got {type(value).__name__}",
            )


def _describe(declared: Mapping[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(declared.items())) or "(none)"


def render(spec: PromptSpec, /, **variables: Any) -> str:
    """Render ``spec`` with exactly its declared variables; RenderError on any problem."""
    check_variables(spec, variables)
    template = compile_template(spec)
    return render_compiled(spec, template, variables)


def render_compiled(spec: PromptSpec, template: Template, variables: Mapping[str, Any]) -> str:
    """Render an already compiled template, turning every failure into RenderError."""
    from jinja2 import TemplateError
    from jinja2.exceptions import SecurityError

    budget = _Budget(LIMITS)
    token = _budget.set(budget)
    try:
        out: list[str] = []
        for chunk in template.generate(**variables):
            budget.chars -= len(chunk)
            if budget.chars < 0:
                raise _OverBudget(f"more than {LIMITS.chars:,} characters of output")
            out.append(chunk)
        return "".join(out)
    except _OverBudget as exc:
        raise RenderError(
            f"prompt {spec.name!r}: the render stopped: {exc}",
            hint="a prompt template renders text for a model; loop over the variables you "
            "pass, not over large ranges, and do not build huge strings",
        ) from None
    except RecursionError:
        raise RenderError(
            f"prompt {spec.name!r}: the render stopped: macros call each other too deeply",
            hint="a macro that calls itself needs a condition that ends the recursion",
        ) from None
    except MemoryError:
        raise RenderError(
            f"prompt {spec.name!r}: the render stopped: out of memory",
            hint="do not build huge strings or lists in a template",
        ) from None
    except SecurityError as exc:
        raise RenderError(
            f"prompt {spec.name!r}: refused by the sandbox: {exc}",
            hint="templates may not reach Python internals (names starting with '_')",
        ) from None
    except TemplateError as exc:
        raise RenderError(f"prompt {spec.name!r}: {exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        # errors raised by the template's own expressions (1/0, bad filters, no loader)
        raise RenderError(f"prompt {spec.name!r}: {type(exc).__name__}: {exc}") from None
    finally:
        _budget.reset(token)
