"""Read ``releaser.yaml``: find it, parse it keeping line numbers, report every problem at once.

PyYAML's safe loader builds the values; the node tree it composes first
gives each key and value its line, so each pydantic error becomes a
ConfigProblem pointing at ``file:line`` with the dotted path of the key.
Cross-references between parts (a step's groups aside) are checked once the
parts they connect are themselves valid.

Two checks look at the file itself rather than one field: no string (key or
value) may hold a control character other than tab and line feed (a ``\\0``
escape, for one, cannot be stored in PostgreSQL's JSON), and a sqlite
``store:`` must be in a folder that exists (only when loading from a file, whose
folder relative paths are read from). Neither writes anything.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

import yaml
from pydantic import BaseModel, ValidationError

from releaser.config._common import (
    EMAIL_PATTERN,
    FUNCTION_PATTERN,
    ISSUES_ERROR,
    PREDICT_PATTERN,
    PROBLEM_ERROR,
    SLUG_PATTERN,
    Issue,
)
from releaser.config.settings import WorkspaceSettings, store_folder_problem
from releaser.core.canonical import content_hash
from releaser.errors import ConfigError, ConfigProblem, WorkspaceError

if TYPE_CHECKING:
    from releaser.config.models import Config, Owner, Service

__all__ = [
    "CONFIG_NAME",
    "config_hash",
    "config_json_schema",
    "find_config",
    "load_config",
    "load_settings",
    "parse_config",
    "parse_owners",
    "peek_service",
]

CONFIG_NAME = "releaser.yaml"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_VALUE_CHARS = 40

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)
# libyaml's parser when PyYAML was built with it (about ten times faster); same nodes and marks.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Characters no string of the config may hold: C0 controls but tab and line feed, DEL,
# C1 controls and unpaired surrogates (from YAML escapes such as "\0" or "\ud800"; the
# YAML reader refuses them written raw).
_FORBIDDEN_CHAR = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

# Friendlier words for the patterns the models use.
_PATTERN_TEXT: dict[str, tuple[str, str]] = {
    SLUG_PATTERN: (
        "is not a valid name",
        "use lowercase letters, digits and '-', starting with a letter or digit "
        "(at most 63 characters)",
    ),
    EMAIL_PATTERN: ("is not an email address", "write it as name@example.org"),
    FUNCTION_PATTERN: ("is not a 'module:function' reference", "e.g. my_package.scoring:score"),
    PREDICT_PATTERN: (
        "is neither a 'models:/' URI nor 'module:function'",
        "e.g. models:/case-triage@champion or my_package.predict:predict",
    ),
}


def find_config(start: Path) -> Path:
    """The nearest ``releaser.yaml`` in ``start`` or a folder above it."""
    start = start.resolve()
    folder = start if start.is_dir() else start.parent
    for candidate_dir in (folder, *folder.parents):
        candidate = candidate_dir / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise WorkspaceError(
        f"no {CONFIG_NAME} in {folder} or any folder above it",
        hint="run 'releaser init' to write an example, or pass --config",
    )


def load_config(path: Path, *, check_store: bool = True) -> Config:
    """Load and validate ``path``; ConfigError lists every problem found, with lines.

    Beyond :func:`parse_config`, a sqlite ``store:`` is checked against the disk:
    its folder must exist (relative paths are read from the folder of ``path``).
    ``check_store=False`` skips that, for a caller whose store comes from
    elsewhere (``--store`` or ``$RELEASER_STORE``).
    """
    from releaser.config.models import Config, rollout_group_context

    return _validate(
        Config,
        _read_text(path),
        str(path),
        context=rollout_group_context,
        root=path.resolve().parent if check_store else None,
    )


def load_settings(path: Path, *, check_store: bool = True) -> WorkspaceSettings:
    """Load only the workspace-wide keys of ``path`` (store, mlflow, prompts).

    The other keys are not validated: a prompt command works while a service's
    section is being fixed. ConfigError lists every problem in these keys.
    """
    text = _read_text(path)
    root = path.resolve().parent if check_store else None
    return _validate(WorkspaceSettings, text, str(path), root=root)


def parse_config(text: str, file: str = CONFIG_NAME) -> Config:
    """Validate YAML ``text`` as a config; ``file`` only names it in problems.

    Nothing is read from disk, so a sqlite ``store:`` folder is not checked here
    (:func:`load_config` does).
    """
    from releaser.config.models import Config, rollout_group_context

    return _validate(Config, text, file, context=rollout_group_context)


def parse_owners(text: str, file: str = CONFIG_NAME) -> list[Owner]:
    """The ``owners`` of YAML ``text`` (a ``releaser.yaml`` as a commit holds it), validated.

    Only that key is read, so a file whose other keys follow an older format still
    gives its owners; ConfigError lists the problems found in them.
    """
    from releaser.config.models import OwnersSection

    return list(_validate(OwnersSection, text, file).owners)


def peek_service(path: Path, service: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the file's top level, ``service``'s mapping) as written in ``path``, NOT validated,
    when the file plainly lists the service.

    "Plainly" means: the file reads as YAML with no key given twice, and every
    top-level key and every key of the service is one the config knows. Otherwise
    (or when the service is not listed) None: the caller must load the validated
    config instead, which reports what is wrong.

    It is for the paths that only need to know whether a section is there at all
    (does the file list the service; has it deploy targets or a GitHub mirror), so
    that they neither build nor run the whole config's validation, and a broken value
    elsewhere in the file does not stand in their way. No value read here may be used
    as if it were valid.
    """
    try:
        text = _read_text(path)
    except (ConfigError, WorkspaceError):
        return None
    data = _peek_cache.get((path, text))
    if data is None:
        try:
            _node, data, duplicates = _parse(text, str(path))
        except ConfigError:
            return None
        if duplicates or not isinstance(data, dict):
            return None
        _peek_cache.clear()  # a command reads one file
        _peek_cache[(path, text)] = data
    services = data.get("services")
    spec = services.get(service) if isinstance(services, dict) else None
    if not isinstance(spec, dict):
        return None
    if not _known_keys(data, _CONFIG_KEYS) or not _known_keys(spec, _SERVICE_KEYS):
        return None
    return data, spec


_CONFIG_KEYS = frozenset(
    {
        "version",
        "project",
        "owners",
        "escalation",
        "groups",
        "mlflow",
        "prompts",
        "github",
        "store",
        "retention",
        "freezes",
        "services",
        "alerts",
        "notifications",
    }
)
"""The top-level keys of ``releaser.yaml`` (the fields of ``Config``; a test keeps them so),
written out so that :func:`peek_service` does not import the whole model tree."""

_SERVICE_KEYS = frozenset(
    {
        "description",
        "model",
        "prompts",
        "datasets",
        "eval",
        "slos",
        "rollout",
        "phases",
        "irreversible",
        "deploy",
        "metrics",
    }
)
"""The keys of a service (the fields of ``Service``; a test keeps them so), written out
for the same reason."""

_peek_cache: dict[tuple[Path, str], dict[Any, Any]] = {}


def _known_keys(data: dict[Any, Any], names: Collection[str]) -> bool:
    """Whether every key of ``data`` is one of ``names``."""
    return all(isinstance(key, str) and key in names for key in data)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WorkspaceError(
            f"{path} does not exist", hint="run 'releaser init' to write an example"
        ) from None
    except OSError as exc:
        raise WorkspaceError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problem = ConfigProblem(str(path), line, "", "the file is not UTF-8 text")
        raise ConfigError([problem]) from None


def _validate(
    model: type[M],
    text: str,
    file: str,
    *,
    context: Callable[[Any], dict[str, Any]] | None = None,
    root: Path | None = None,
) -> M:
    """Parse YAML ``text`` and validate it as ``model``, every problem located by line.

    ``root`` is the folder of the file, for the checks that look at the disk.
    """
    node, data, duplicates = _parse(text, file)
    if node is None or data is None:
        raise ConfigError(
            [
                ConfigProblem(
                    file, None, "", "the file is empty", "run 'releaser init' for an example"
                )
            ]
        )
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(
            [
                ConfigProblem(
                    file,
                    node.start_mark.line + 1,
                    "",
                    f"the top level must be a mapping of keys (found a {kind})",
                    "start with 'version: 1' and 'project: <name>'",
                )
            ]
        )
    # A model that ignores unknown keys (the workspace settings) looks at its own keys only.
    own_keys = set(model.model_fields) if model.model_config.get("extra") == "ignore" else None
    characters = _control_characters(node, file, own_keys)
    problems = [*duplicates, *characters]
    lines = _LineIndex(node)
    try:
        result = model.model_validate(data, context=context(data) if context else None)
    except ValidationError as exc:
        errors = _drop_missing_misspelt(exc.errors(), model)
        # A value already reported for its control character is not reported twice.
        reported = {p.path for p in characters}
        found = [p for err in errors for p in _problems(err, lines, file, model)]
        problems += [p for p in found if p.path not in reported]
    if root is not None and "store" in model.model_fields:
        problems += _store_folder(data, root, lines, file, problems)
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0, p.path))
        raise ConfigError(problems)
    return result


def _parse(text: str, file: str) -> tuple[yaml.Node | None, Any, list[ConfigProblem]]:
    """(node tree, values, keys given twice) of YAML ``text``; ConfigError if it is not YAML."""
    try:
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            duplicates = _duplicate_keys(node, file) if node is not None else []
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(exc, file, text)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(file, None, "", f"not valid YAML: {exc}")]) from None
    except ValueError as exc:  # a date YAML reads as one but the calendar has not (2026-02-30)
        line = _bad_timestamp_line(node)
        raise ConfigError(
            [ConfigProblem(file, line, "", f"not a valid date or time: {exc}", "e.g. 2026-12-25")]
        ) from None
    return node, data, duplicates


def _bad_timestamp_line(node: Any) -> int | None:
    """The line of the first timestamp scalar under ``node`` that is not a real date."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, yaml.ScalarNode) and item.tag.endswith(":timestamp"):
            try:
                yaml.SafeLoader("").construct_yaml_timestamp(item)
            except ValueError:
                return int(item.start_mark.line) + 1
        elif isinstance(item, yaml.SequenceNode):
            stack.extend(reversed(item.value))
        elif isinstance(item, yaml.MappingNode):
            stack.extend(v for pair in reversed(item.value) for v in pair)
    return None


def _store_folder(
    data: dict[Any, Any], root: Path, lines: _LineIndex, file: str, known: list[ConfigProblem]
) -> list[ConfigProblem]:
    """The missing folder of a sqlite ``store:``, unless the value has a problem already."""
    store = data.get("store")
    if not isinstance(store, str) or any(p.path == "store" for p in known):
        return []
    found = store_folder_problem(store, root)
    if found is None:
        return []
    return [_locate(lines, file, ("store",), *found, on_key=False)]


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``releaser.yaml``, for editors and ``releaser schema``."""
    from releaser.config.models import Config

    schema = Config.model_json_schema(by_alias=True)
    _close_pattern_maps(schema)
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "releaser.yaml"}


def _close_pattern_maps(node: Any) -> None:
    # pydantic writes name-constrained maps as patternProperties; without this, a
    # misspelt service name would still pass the schema.
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_maps(value)


def config_hash(service: Service) -> str:
    """Content hash of a service's configuration, as recorded in its releases."""
    return content_hash(service.model_dump(mode="json", by_alias=True))


# --- YAML structure ----------------------------------------------------------------------


def _yaml_problem(exc: yaml.MarkedYAMLError, file: str, text: str) -> ConfigProblem:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or "not valid YAML"
    if exc.context:
        started = exc.context_mark
        where = f" that starts on line {started.line + 1}" if started is not None else ""
        what = f"{what} ({exc.context}{where})"
    line = column = None
    if mark is not None:
        # At the end of the stream the mark sits past the last line: point at the last one.
        line = min(mark.line + 1, max(len(text.splitlines()), 1))
        column = mark.column + 1 if line == mark.line + 1 else None
    at = f" at column {column}" if column is not None else ""
    return ConfigProblem(
        file, line, "", f"invalid YAML{at}: {what}", "check indentation, quotes and brackets"
    )


def _duplicate_keys(node: yaml.Node, file: str, path: Loc = ()) -> list[ConfigProblem]:
    """Every key given twice in one mapping (PyYAML would silently keep the last)."""
    found: list[ConfigProblem] = []
    seen: set[int] = set()

    def walk(n: yaml.Node, at: Loc) -> None:
        if id(n) in seen:  # anchors and aliases share nodes
            return
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in n.value:
                if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                    continue
                line = key.start_mark.line + 1
                if key.value in first:
                    found.append(
                        ConfigProblem(
                            file,
                            line,
                            _dotted((*at, key.value)),
                            f"duplicate key {key.value!r} (first given on line {first[key.value]})",
                            "remove one of them: YAML keeps only the last",
                        )
                    )
                else:
                    first[key.value] = line
                walk(value, (*at, key.value))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*at, i))

    walk(node, path)
    return found


def _control_characters(
    node: yaml.Node, file: str, only: set[str] | None = None
) -> list[ConfigProblem]:
    """Every key or string holding a character no config string may hold (see _FORBIDDEN_CHAR).

    With ``only``, just those top-level keys (and what is below them) are looked at.
    """
    found: list[ConfigProblem] = []
    seen: set[int] = set()

    def check(text: str, at: Loc, line: int, what: str) -> None:
        bad = _FORBIDDEN_CHAR.search(text)
        if bad is None:
            return
        code = ord(bad.group())
        kind = "an unpaired surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
        found.append(
            ConfigProblem(
                file,
                line,
                _dotted(at),
                f"the {what} contains {kind} (U+{code:04X})",
                "remove it: strings in releaser.yaml may hold tabs and line breaks but no "
                "other control characters (a \\0 escape, for one, cannot be stored)",
            )
        )

    def walk(n: yaml.Node, at: Loc, top: bool = False) -> None:
        if id(n) in seen:  # anchors and aliases share nodes
            return
        seen.add(id(n))
        if isinstance(n, yaml.ScalarNode) and isinstance(n.value, str):
            check(n.value, at, n.start_mark.line + 1, "value")
        elif isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                if top and only is not None and name not in only:
                    continue
                here = (*at, str(name))
                if isinstance(key, yaml.ScalarNode):
                    check(str(key.value), here, key.start_mark.line + 1, "key")
                else:
                    walk(key, here)
                walk(value, here)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*at, i))

    walk(node, (), top=True)
    return found


def _printable(text: str) -> str:
    """``text`` with forbidden characters written as escapes, for paths in problems."""
    return _FORBIDDEN_CHAR.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


@dataclass(frozen=True)
class _Where:
    """Where a location landed in the file: the deepest node found and its key's line."""

    found: int  # how many loc parts matched nodes
    key_line: int | None
    value_line: int | None
    value_is_scalar: bool


class _LineIndex:
    """Maps a path of keys and indexes to the lines of the YAML node tree."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root

    def locate(self, path: Loc) -> _Where:
        node = self.root
        key_line: int | None = None
        found = 0
        for part in path:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key, value in reversed(node.value):
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        child, key_line = value, key.start_mark.line + 1
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if 0 <= part < len(node.value):
                    child = node.value[part]
                    key_line = child.start_mark.line + 1
            if child is None:
                break
            node, found = child, found + 1
        value_line = node.start_mark.line + 1 if found else None
        return _Where(found, key_line, value_line, isinstance(node, yaml.ScalarNode))


def _dotted(path: Loc) -> str:
    out = ""
    for part in path:
        name = _printable(str(part))
        out += f"[{part}]" if isinstance(part, int) else (f".{name}" if out else name)
    return out


# --- from pydantic errors to problems -----------------------------------------------------


def _problems(err: Any, lines: _LineIndex, file: str, root: type[BaseModel]) -> list[ConfigProblem]:
    """One ConfigProblem per pydantic error (several for a bundle of cross-field issues)."""
    path, leaf, key_error = _clean_loc(tuple(err["loc"]), root)
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == ISSUES_ERROR:
        issues: list[Issue] = list(ctx.get("issues", ()))
        out = []
        for issue in issues:
            sub, _, _ = _clean_loc(tuple(err["loc"]) + issue.loc, root)
            out.append(_locate(lines, file, sub, issue.message, issue.hint, on_key=False))
        return out
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = _allowed_keys(tuple(err["loc"])[:-1], root)
        close = _closest_key(key, allowed)
        hint = (
            f"did you mean '{close}'?"
            if close
            else (f"allowed keys here: {', '.join(allowed)}" if allowed else None)
        )
        return [_locate(lines, file, path, f"unknown key {key!r}", hint, on_key=True)]
    if kind == "missing":
        missing = str(path[-1])
        return [_locate(lines, file, path, f"missing required key {missing!r}", None, on_key=True)]
    message, hint = _describe(err, leaf)
    return [_locate(lines, file, path, message, hint, on_key=key_error)]


def _closest_key(key: str, allowed: list[str]) -> str | None:
    """The allowed key ``key`` was probably meant to be: close in spelling, or a prefix."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return close[0]
    prefixed = [a for a in allowed if len(a) >= 3 and (key.startswith(a) or a.startswith(key))]
    return prefixed[0] if len(prefixed) == 1 else None


def _drop_missing_misspelt(errors: list[Any], root: type[BaseModel]) -> list[Any]:
    """Leave out "missing 'slos'" when the same mapping has an unknown key 'slo'.

    The unknown key's own problem already says "did you mean 'slos'?".
    """
    meant: set[Loc] = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = tuple(err["loc"])
            close = _closest_key(str(loc[-1]), _allowed_keys(loc[:-1], root))
            if close is not None:
                meant.add((*loc[:-1], close))
    return [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"]) in meant)]


def _locate(
    lines: _LineIndex, file: str, path: Loc, message: str, hint: str | None, *, on_key: bool
) -> ConfigProblem:
    where = lines.locate(path)
    if where.found == len(path) and not on_key and where.value_is_scalar:
        line = where.value_line
    else:
        # An unknown or missing key, or a whole mapping or list: point at the key.
        line = where.key_line if where.key_line is not None else where.value_line
    return ConfigProblem(file, line, _dotted(path), message, hint)


def _describe(err: Any, leaf: Any) -> tuple[str, str | None]:
    """A human message (with the offending value) and a hint for an ordinary error."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    hint: str | None = None
    if kind == PROBLEM_ERROR:
        return str(ctx.get("message", err["msg"])), ctx.get("hint")
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_TEXT:
        text, pattern_hint = _PATTERN_TEXT[ctx["pattern"]]
        return f"{_shorten(value)} {text}", pattern_hint
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "literal_error" and isinstance(value, str):
        choices = [str(a) for a in typing.get_args(leaf)] if _is_literal(leaf) else []
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else None
    elif value is None:
        hint = "the key has no value: fill it in or remove the key"
    elif kind == "string_type" and isinstance(value, bool | int | float):
        hint = "YAML read this as a number or true/false: put it in quotes"
    elif kind == "finite_number":
        hint = "give a finite number: .inf, .nan and numbers beyond 1e308 are not allowed"
    return f"{message} (got {_shorten(value)})", hint


_PASSWORD_IN_URL = re.compile(r"(://[^/@\s:]*:)[^/@\s]*@")


def _shorten(value: Any) -> str:
    """repr of ``value``, passwords in URLs hidden, at most MAX_VALUE_CHARS characters."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = _PASSWORD_IN_URL.sub(r"\1***@", repr(value))
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


# --- walking the models along a pydantic loc -----------------------------------------------


def _clean_loc(loc: Loc, root: type[BaseModel]) -> tuple[Loc, Any, bool]:
    """Drop pydantic's union and validator tags from ``loc``, using aliases for fields.

    Returns the path as the file spells it, the annotation found at its end
    (for literal choices) and whether the error is about a mapping key.
    """
    tp: Any = root
    out: list[str | int] = []
    for i, part in enumerate(loc):
        tp = _unwrap(tp)
        last = i == len(loc) - 1
        if part == "[key]":
            return tuple(out), None, True
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = _field(tp, part)
            if field is None:
                if last:  # an unknown key
                    out.append(part)
                continue  # a tag
            name, tp = field
            out.append(name)
            continue
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is dict and args:
            out.append(part)
            tp = args[1]
        elif origin in (list, tuple) and args and isinstance(part, int):
            out.append(part)
            tp = args[0]
        elif _is_union(tp):
            continue  # a union member tag; the member is not known for sure
        else:
            out.append(part)
            tp = Any
    return tuple(out), _unwrap(tp), False


def _field(model: type[BaseModel], part: str | int) -> tuple[str, Any] | None:
    for name, info in model.model_fields.items():
        if part in (name, info.alias):
            return info.alias or name, info.annotation
    return None


def _allowed_keys(loc: Loc, root: type[BaseModel]) -> list[str]:
    """Field names (aliases preferred) of the model at ``loc`` below ``root``."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = _field(tp, part)
            if field is not None:
                tp = field[1]
            continue
        args = typing.get_args(tp)
        if typing.get_origin(tp) is dict and args:
            tp = args[1]
        elif typing.get_origin(tp) in (list, tuple) and args:
            tp = args[0]
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [info.alias or name for name, info in tp.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional so the interesting type is left."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if _is_union(tp):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal
