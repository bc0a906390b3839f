"""MkDocs hook: the reference pages, written at build time from the code itself.

Three pages are added to the site as generated files (nothing is written into
``docs/``), so none of them can drift from what the installed releaser does:

- ``reference/cli.md`` walks the command tree of the typer application
  (``releaser.cli.app.build_command()``, the click command ``releaser`` runs)
  and gives each command its usage line, help text, arguments and options;
- ``reference/config.md`` walks the JSON Schema that ``releaser schema`` prints
  (``releaser.config.config_json_schema()``): every field of ``releaser.yaml``
  with its type, default, description and bounds, one table per object, and
  the commented example that ``releaser init`` writes;
- ``reference/python.md`` lists every name of ``releaser.__all__`` with its
  signature and docstring.

The functions that turn a command tree, a schema or a module into Markdown are
pure (``cli_markdown``, ``config_markdown``, ``python_markdown``); the hook only
feeds them and hands their text to MkDocs.
"""

from __future__ import annotations

import html
import inspect
import json
import re
from collections.abc import Iterator
from typing import Any

CLI_PAGE = "reference/cli.md"
CONFIG_PAGE = "reference/config.md"
PYTHON_PAGE = "reference/python.md"


def on_files(files: Any, config: Any) -> Any:
    """Add the generated reference pages to the site's files."""
    from mkdocs.structure.files import File

    for path, text in (
        (CLI_PAGE, _cli_page()),
        (CONFIG_PAGE, _config_page()),
        (PYTHON_PAGE, _python_page()),
    ):
        files.append(File.generated(config, path, content=text))
    return files


# -- shared ---------------------------------------------------------------------------

_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_SPHINX_ROLE = re.compile(r":(?:func|class|meth|mod|attr|exc|data|obj):`~?([^`]+)`")


def prose(value: str) -> str:
    """Help or docstring text made safe for Markdown, line breaks kept.

    An angle bracket outside a code span would be read as an HTML tag; lines
    indented as a code block are left as they are.
    """
    lines = []
    for line in value.split("\n"):
        if line.startswith("    "):
            lines.append(line)
            continue
        out: list[str] = []
        last = 0
        for match in _CODE_SPAN.finditer(line):
            out.append(html.escape(line[last : match.start()], quote=False))
            out.append(match.group(0))
            last = match.end()
        out.append(html.escape(line[last:], quote=False))
        lines.append("".join(out))
    return "\n".join(lines)


def text(value: str) -> str:
    """Help or description text made safe for one Markdown table cell."""
    # A bar would end the cell and a newline the row.
    return " ".join(prose(value).split()).replace("|", "\\|")


def code(value: str) -> str:
    """``value`` as an inline code span, whatever backticks it holds."""
    ticks = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{ticks}{pad}{value}{pad}{ticks}".replace("|", "\\|")


# -- the CLI --------------------------------------------------------------------------


def _cli_page() -> str:
    from releaser.cli.app import build_command

    return cli_markdown(build_command())


def walk_commands(command: Any, path: list[str], parent: Any = None) -> Iterator[Any]:
    """Yield ``(path, command, context)`` for ``command`` and every visible subcommand."""
    import typer

    ctx = typer.Context(command, info_name=path[-1], parent=parent)
    yield path, command, ctx
    # Typer's groups are not click.Group subclasses in every typer release: ask for
    # the ability, not the class.
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                yield from walk_commands(sub, [*path, name], ctx)


def anchor(path: list[str]) -> str:
    """The page anchor of a command: ``releaser-rollout-start``."""
    return "-".join(path)


def _help(command: Any) -> str:
    # Click shows the docstring up to a form feed; so does the page.
    return inspect.cleandoc((command.help or "").split("\f")[0])


def _summary(command: Any) -> str:
    return command.short_help or _help(command).split("\n\n")[0].replace("\n", " ")


def _default(param: Any) -> str:
    value = param.default
    if callable(value) or value in (None, "", (), []) or getattr(param, "is_flag", False):
        return ""
    if isinstance(value, list | tuple):
        return code(", ".join(str(v) for v in value))
    return code(str(value))


def _param_rows(command: Any, ctx: Any) -> list[str]:
    rows = []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, _ = record
        described = text(getattr(param, "help", None) or "")
        notes = []
        if param.required:
            notes.append("required")
        envvar = param.envvar
        if envvar:
            envvars = [envvar] if isinstance(envvar, str) else list(envvar)
            notes.append("env " + ", ".join(code(e) for e in envvars))
        if getattr(param, "multiple", False):
            notes.append("repeatable")
        note = f" ({'; '.join(notes)})" if notes else ""
        rows.append(f"| {code(names)} | {described}{note} | {_default(param)} |")
    return rows


def cli_markdown(root: Any) -> str:
    """The CLI reference page for the click command ``root`` (``releaser``)."""
    lines = [
        "# CLI reference",
        "",
        "Every command of `releaser`, with what `releaser COMMAND --help` says about it.",
        "This page is generated from the typer application when the site is built, so it",
        "always matches the code. Options given before the command (`--config`, `--store`,",
        "`--verbose`) apply to every command. Exit codes are listed on",
        "[Exit codes and JSON output](output.md).",
        "",
    ]
    for path, command, ctx in walk_commands(root, ["releaser"]):
        title = " ".join(path)
        level = "#" * min(len(path) + 1, 4)
        lines += [f"{level} {title} {{#{anchor(path)}}}", ""]
        help_text = _help(command)
        if help_text:
            lines += [prose(help_text), ""]
        usage = ctx.get_usage().removeprefix("Usage: ").strip()
        lines += ["```text", usage, "```", ""]
        rows = _param_rows(command, ctx)
        if rows:
            lines += ["| argument or option | meaning | default |", "| --- | --- | --- |"]
            lines += [*rows, ""]
        if hasattr(command, "list_commands"):
            subs = [(name, command.get_command(ctx, name)) for name in command.list_commands(ctx)]
            visible = [(n, c) for n, c in subs if c is not None and not c.hidden]
            if visible:
                lines += ["| command | what it does |", "| --- | --- |"]
                for name, sub in visible:
                    link = f"[{title} {name}](#{anchor([*path, name])})"
                    lines.append(f"| {link} | {text(_summary(sub))} |")
                lines.append("")
        epilog = getattr(command, "epilog", None)
        if epilog:
            lines += [prose(inspect.cleandoc(epilog)), ""]
    return "\n".join(lines)


# -- releaser.yaml ----------------------------------------------------------------------


def _config_page() -> str:
    from releaser.config import config_json_schema
    from releaser.config.template import INIT_TEMPLATE

    return config_markdown(config_json_schema(), example=INIT_TEMPLATE)


_BOUND_WORDS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} character{}"),
    ("maxLength", "at most {} character{}"),
    ("minItems", "at least {} item{}"),
    ("maxItems", "at most {} item{}"),
    ("minProperties", "at least {} entr{}"),
    ("maxProperties", "at most {} entr{}"),
)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _def_anchor(name: str) -> str:
    return name.lower()


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def schema_type(node: dict[str, Any]) -> str:
    """A field's type in words, with a link to the table of any object it holds."""
    if "$ref" in node:
        name = _ref_name(node["$ref"])
        return f"[{name}](#{_def_anchor(name)})"
    if "anyOf" in node:
        branches = node["anyOf"]
        kinds = [schema_type(b) for b in branches if b.get("type") != "null"]
        nullable = any(b.get("type") == "null" for b in branches)
        return " or ".join(kinds) + (" or null" if nullable else "")
    if "const" in node:
        return f"{code(json.dumps(node['const']))} only"
    if "enum" in node:
        return "one of " + ", ".join(code(json.dumps(v)) for v in node["enum"])
    kind = node.get("type")
    if kind == "array":
        items = node.get("items")
        return f"list of {schema_type(items)}" if items else "list"
    if kind == "object":
        values = [*node.get("patternProperties", {}).values()]
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            values.append(extra)
        if values:
            return f"map of name to {schema_type(values[0])}"
        return "object"
    if isinstance(kind, list):
        return " or ".join(kind)
    return {"string": "string", "integer": "integer", "number": "number"}.get(
        str(kind), str(kind) if kind else "any"
    )


def schema_bounds(node: dict[str, Any]) -> list[str]:
    """Every limit a field's value must keep, its own and its branches'."""
    found = []
    for key, words in _BOUND_WORDS:
        if key in node:
            value = node[key]
            plural = (
                ("y" if value == 1 else "ies")
                if words.endswith("entr{}")
                else ("" if value == 1 else "s")
            )
            found.append(words.format(_number(value), plural))
    if "pattern" in node:
        found.append("matches " + code(node["pattern"]))
    for key_pattern in node.get("patternProperties", {}):
        found.append("names match " + code(key_pattern))
    for branch in node.get("anyOf", []):
        found += schema_bounds(branch)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        found += [f"each {b}" for b in schema_bounds(node["items"]) if "$ref" not in node["items"]]
    return found


def _children(node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each schema a field holds, with the path step that reaches it."""
    if "$ref" in node:
        yield "", node
    for branch in node.get("anyOf", []):
        yield from _children(branch)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        for step, child in _children(node["items"]):
            yield "[]" + step, child
    for value in node.get("patternProperties", {}).values():
        for step, child in _children(value):
            yield ".<name>" + step, child
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for step, child in _children(extra):
            yield ".<name>" + step, child


def _object_order(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Objects in the order a reader meets them from the top, with where each sits."""
    defs = schema.get("$defs", {})
    order: list[tuple[str, str]] = []
    seen: set[str] = set()
    queue: list[tuple[str, dict[str, Any]]] = [("", schema)]
    while queue:
        where, node = queue.pop(0)
        for field, prop in node.get("properties", {}).items():
            for step, child in _children(prop):
                name = _ref_name(child["$ref"])
                if name in seen:
                    continue
                seen.add(name)
                path = f"{where}.{field}{step}".lstrip(".")
                order.append((name, path))
                queue.append((path, defs[name]))
    order += [(name, "") for name in sorted(defs) if name not in seen]
    return order


def _field_rows(node: dict[str, Any]) -> list[str]:
    required = set(node.get("required", []))
    rows = []
    for field, prop in node.get("properties", {}).items():
        if "default" in prop:
            default = code(json.dumps(prop["default"]))
        elif field in required:
            default = "required"
        else:
            default = ""
        bounds = "; ".join(schema_bounds(prop))
        described = text(prop.get("description", ""))
        rows.append(f"| {code(field)} | {schema_type(prop)} | {default} | {described} | {bounds} |")
    return rows


def config_markdown(schema: dict[str, Any], *, example: str) -> str:
    """The ``releaser.yaml`` reference page for ``schema`` (``releaser schema``)."""
    header = "| field | type | default | description | bounds |"
    rule = "| --- | --- | --- | --- | --- |"
    lines = [
        "# releaser.yaml reference",
        "",
        "Every field of `releaser.yaml`, generated from the JSON Schema that",
        "`releaser schema` prints when the site is built, so it always matches the code.",
        "Fields marked *required* have no default. An object does not accept fields",
        "it does not list. [Configuration](../configuration.md) explains the file",
        "section by section.",
        "",
        "## The top level {#top-level}",
        "",
        text(schema.get("description", "")),
        "",
        header,
        rule,
        *_field_rows(schema),
        "",
    ]
    defs = schema.get("$defs", {})
    for name, path in _object_order(schema):
        node = defs[name]
        title = code(path) if path else name
        lines += [f"## {title} {{#{_def_anchor(name)}}}", ""]
        about = f"*{name}*" + (f": {text(node['description'])}" if node.get("description") else ".")
        lines += [about, ""]
        if node.get("properties"):
            lines += [header, rule, *_field_rows(node), ""]
        else:
            lines += [f"Type: {schema_type(node)}.", ""]
    lines += [
        "## The example `releaser init` writes {#example}",
        "",
        "```yaml",
        example.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


# -- the Python API -------------------------------------------------------------------


def _python_page() -> str:
    import releaser

    return python_markdown(releaser)


def _docstring(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return _SPHINX_ROLE.sub(lambda m: f"`{m.group(1)}`", doc).replace("``", "`")


_QUOTED = re.compile(r"(: |-> )'([^']*)'")


def signature_text(head: str, obj: Any, width: int = 88) -> str:
    """``head(params) -> return`` as code would write it, one parameter a line if long."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{head}(...)"
    if inspect.isclass(obj):
        signature = signature.replace(return_annotation=inspect.Signature.empty)
    # Postponed annotations are strings; written unquoted they read as in the source.
    flat = _QUOTED.sub(r"\1\2", f"{head}{signature}")
    if len(flat) <= width:
        return flat
    values = list(signature.parameters.values())
    positional_only = [p for p in values if p.kind is p.POSITIONAL_ONLY]
    bare_star = not any(p.kind is p.VAR_POSITIONAL for p in values)
    params: list[str] = []
    for param in values:
        if param.kind is param.KEYWORD_ONLY and bare_star:
            params.append("*")
            bare_star = False
        params.append(_QUOTED.sub(r"\1\2", str(param)))
        if positional_only and param is positional_only[-1]:
            params.append("/")
    tail = _QUOTED.sub(r"\1\2", str(signature).rsplit(")", 1)[1])
    body = "".join(f"    {p},\n" for p in params)
    return f"{head}(\n{body}){tail}"


def python_markdown(module: Any) -> str:
    """The Python reference page: each name of ``module.__all__``, signature and docstring."""
    lines = [
        "# Python reference",
        "",
        f"Every public name of `{module.__name__}` (its `__all__`), with its signature and",
        "docstring, generated when the site is built. [Python API](../python-api.md) shows",
        "how the parts fit together.",
        "",
    ]
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        kind = "class" if inspect.isclass(obj) else "function"
        head = f"{kind if kind == 'class' else 'def'} {module.__name__}.{name}"
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            declaration = head
        else:
            declaration = signature_text(head, obj)
        lines += [
            f"## {name} {{#{name.lower()}}}",
            "",
            "```python",
            declaration,
            "```",
            "",
            prose(_docstring(obj)),
            "",
        ]
    return "\n".join(lines)
