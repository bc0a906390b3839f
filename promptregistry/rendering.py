"""Strict, sandboxed rendering of prompt templates.

Templates run in Jinja2's immutable sandbox with ``StrictUndefined``, no
autoescape and no loader (so no ``include``/``import`` of files). The caller
must pass exactly the declared variables, with the declared types. Compiled
templates are cached by content hash, so each version compiles once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from promptregistry.errors import InvalidPrompt, RenderError
from promptregistry.model import PromptSpec

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

__all__ = ["check_variables", "compile_template", "environment", "render", "render_compiled"]

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
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        _env = ImmutableSandboxedEnvironment(
            undefined=StrictUndefined,
            autoescape=False,
            loader=None,
            keep_trailing_newline=True,
        )
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

    try:
        return template.render(**variables)
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
