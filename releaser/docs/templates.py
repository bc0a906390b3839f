"""The template environment: sandboxed Jinja2 over the shipped and the workspace's runbooks.

Templates are looked up first in the workspace's ``runbooks/`` folder, so a
team overrides any shipped template by writing one of the same name there,
then in the templates releaser ships (``runbooks/`` of the checkout,
``releaser/_runbooks`` of the wheel). They render in Jinja2's sandbox with
``StrictUndefined``: a template can read the facts it is given and nothing
else, and a misspelt name is an error rather than an empty string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releaser.errors import ArtifactNotFound, BadInput

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

__all__ = ["TEMPLATE_DIR", "render", "shipped_template_dir", "template_env", "tidy_markdown"]

TEMPLATE_DIR = "runbooks"
"""The folder (in the workspace and in the checkout) that holds runbook templates."""


def shipped_template_dir() -> Path:
    """The templates that ship with releaser: in the wheel first, then in the checkout."""
    package = Path(__file__).resolve().parent.parent
    candidates = [package / "_runbooks", package.parent / TEMPLATE_DIR]
    for candidate in candidates:
        if (candidate / "runbook.md.j2").is_file():
            return candidate
    raise ArtifactNotFound(
        "releaser's runbook templates are missing; looked in "
        + ", ".join(str(c) for c in candidates),
        hint="reinstall releaser (the wheel ships them as releaser/_runbooks)",
    )


def _cell(value: Any) -> str:
    """A value safe inside a Markdown table cell: one line, pipes escaped."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _num(value: Any, digits: int = 4) -> str:
    """A number without float noise (``0.1`` not ``0.1000000001``); ``-`` for none."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}g}"


def _pct(value: Any, digits: int = 3) -> str:
    """A share as a percentage (``0.995`` -> ``99.5%``); ``-`` for none."""
    if value is None:
        return "-"
    return f"{float(value) * 100:.{digits}g}%"


def shell_quote(value: Any) -> str:
    """A double-quoted shell word (what the runbook's commands use)."""
    text = str(value)
    for char in ("\\", '"', "$", "`"):
        text = text.replace(char, "\\" + char)
    return f'"{text}"'


def template_env(workspace_root: Path | None) -> SandboxedEnvironment:
    """A sandboxed environment reading the workspace's templates, then the shipped ones."""
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    paths = []
    if workspace_root is not None and (workspace_root / TEMPLATE_DIR).is_dir():
        paths.append(str(workspace_root / TEMPLATE_DIR))
    paths.append(str(shipped_template_dir()))
    env = SandboxedEnvironment(
        loader=FileSystemLoader(paths),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        cell=_cell,
        num=_num,
        pct=_pct,
        shq=shell_quote,
        tojson=lambda v: json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False),
    )
    return env


def render(env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> str:
    """Render template ``name``; a broken or overridden template gives one clear error."""
    from jinja2 import TemplateError, TemplateNotFound
    from jinja2.exceptions import SecurityError

    try:
        template = env.get_template(name)
        text = template.render(**context)
    except TemplateNotFound as exc:
        raise ArtifactNotFound(
            f"no template {name!r}", hint="reinstall releaser or add it to runbooks/"
        ) from exc
    except SecurityError as exc:
        raise BadInput(
            f"template {name} tried something the sandbox forbids: {exc}",
            hint="templates may only read the facts they are given",
        ) from exc
    except TemplateError as exc:
        where = getattr(exc, "filename", None) or name
        line = getattr(exc, "lineno", None)
        if line is None:
            # Runtime errors (an undefined name) carry their place in the traceback.
            import traceback

            frames = [
                f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(name)
            ]
            if frames:
                where, line = frames[-1].filename, frames[-1].lineno
        loc = f"{where}:{line}" if line else str(where)
        raise BadInput(
            f"{loc}: template error: {exc}",
            hint="fix the template (an override in runbooks/ wins over the shipped one)",
        ) from exc
    return tidy_markdown(text)


def tidy_markdown(text: str) -> str:
    """No trailing spaces, one blank line around headings, at most one blank line in a row.

    Template whitespace control is fiddly; tidying here keeps every template's
    output stable and readable, and the diffs of committed runbooks small.
    """
    out: list[str] = []
    fenced = False
    closed = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if closed and line and not line.startswith(" "):
            out.append("")
        closed = False
        if line.lstrip().startswith("```"):
            fenced = not fenced
            closed = not fenced
        if not fenced and line.startswith("#") and out and out[-1]:
            out.append("")
        if not line and (not out or not out[-1]) and not fenced:
            continue
        if out and out[-1].startswith("#") and line and not fenced:
            out.append("")
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"
