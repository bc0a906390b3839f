"""Checks run before a prompt is registered: syntax, variables, size and sandbox safety.

Each issue carries the template line it concerns (when there is one). Errors
block registration; warnings are reported and kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from promptregistry.model import PromptSpec

if TYPE_CHECKING:
    from jinja2 import nodes

__all__ = ["DEFAULT_MAX_CHARS", "LintIssue", "errors_only", "lint"]

DEFAULT_MAX_CHARS = 20_000

Severity = Literal["error", "warning"]


class LintIssue(BaseModel):
    """One problem found in a spec: severity, a stable code, a message and the line."""

    model_config = ConfigDict(frozen=True)

    severity: Severity
    code: str
    message: str
    line: int | None = None

    def render(self) -> str:
        """``line N: error[code]: message`` on one line."""
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.severity}[{self.code}]: {self.message}"


def errors_only(issues: list[LintIssue]) -> list[LintIssue]:
    """The issues that block registration."""
    return [i for i in issues if i.severity == "error"]


def lint(spec: PromptSpec, *, max_chars: int = DEFAULT_MAX_CHARS) -> list[LintIssue]:
    """Check ``spec`` and return every issue found, sorted by line."""
    from jinja2 import TemplateSyntaxError, meta

    from promptregistry.rendering import environment

    issues: list[LintIssue] = []
    template = spec.template
    if not template.strip():
        issues.append(LintIssue(severity="error", code="empty", message="template is empty"))
        return issues
    if len(template) > max_chars:
        issues.append(
            LintIssue(
                severity="error",
                code="too-long",
                message=f"template is {len(template)} characters; the limit is {max_chars}",
            )
        )
    env = environment()
    try:
        ast = env.parse(template)
    except TemplateSyntaxError as exc:
        issues.append(
            LintIssue(
                severity="error", code="syntax", message=exc.message or str(exc), line=exc.lineno
            )
        )
        return issues

    used = meta.find_undeclared_variables(ast) - set(env.globals)
    first_line = _first_load_lines(ast)
    for var in sorted(used - set(spec.variables), key=lambda v: (first_line.get(v, 0), v)):
        issues.append(
            LintIssue(
                severity="error",
                code="undeclared-variable",
                message=f"variable {var!r} is used but not declared in 'variables'",
                line=first_line.get(var),
            )
        )
    for var in sorted(set(spec.variables) - used):
        issues.append(
            LintIssue(
                severity="warning",
                code="unused-variable",
                message=f"variable {var!r} is declared but the template never uses it",
            )
        )
    issues.extend(_unsafe_access(ast))
    issues.extend(_file_access(ast))
    return sorted(issues, key=lambda i: (i.line or 0, i.code))


def _first_load_lines(ast: nodes.Template) -> dict[str, int]:
    from jinja2 import nodes

    lines: dict[str, int] = {}
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load" and node.name not in lines:
            lines[node.name] = node.lineno
    return lines


def _unsafe(name: object) -> bool:
    return isinstance(name, str) and name.startswith("_")


def _unsafe_access(ast: nodes.Template) -> list[LintIssue]:
    """Attribute or item access to names starting with '_' (how sandbox escapes begin)."""
    from jinja2 import nodes

    found: list[tuple[int, str]] = []
    for getattr_node in ast.find_all(nodes.Getattr):
        if _unsafe(getattr_node.attr):
            found.append((getattr_node.lineno, getattr_node.attr))
    for getitem in ast.find_all(nodes.Getitem):
        if isinstance(getitem.arg, nodes.Const) and _unsafe(getitem.arg.value):
            found.append((getitem.lineno, str(getitem.arg.value)))
    for filt in ast.find_all(nodes.Filter):
        if filt.name == "attr" and filt.args and isinstance(filt.args[0], nodes.Const):
            if _unsafe(filt.args[0].value):
                found.append((filt.lineno, str(filt.args[0].value)))
    return [
        LintIssue(
            severity="error",
            code="unsafe-attribute",
            message=f"access to {attr!r} is not allowed (names starting with '_' are refused "
            "by the sandbox)",
            line=line,
        )
        for line, attr in found
    ]


def _file_access(ast: nodes.Template) -> list[LintIssue]:
    """include / import / extends: there is no loader, so these can never work."""
    from jinja2 import nodes

    kinds = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
    return [
        LintIssue(
            severity="error",
            code="no-file-access",
            message=f"'{type(node).__name__.lower()}' is not allowed: prompts cannot load "
            "other templates or files",
            line=node.lineno,
        )
        for node in ast.find_all(kinds)
    ]
