"""What the eval gate reads before it scores: the golden set, the predict entry point, scorers.

Everything here is checked before anything is predicted or written, so bad
input (a golden set with missing columns, no rows, empty labels or mixed
label types; a scorer or predict function that cannot be imported) stops
the gate with one clear error naming the file, column or field and nothing
half-written.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, overload

from releaser.config.service import EvalSuite
from releaser.core.refs import DatasetRef
from releaser.core.release import Release
from releaser.core.scorers import BUILTIN_SCORERS, ScoreFn, numeric_tolerance, regex_match
from releaser.core.scorers import to_number as _to_number
from releaser.errors import ArtifactNotFound, BadInput, ConfigError, ConfigProblem, WorkspaceError

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = [
    "CsvTable",
    "Golden",
    "check_pinned_code",
    "eval_suite",
    "golden_ref",
    "load_golden",
    "parse_golden",
    "read_dataset_bytes",
    "resolve_scorers",
]

_MISSING = {"", "nan", "na", "n/a", "null", "none"}


@dataclass(frozen=True)
class Golden:
    """The golden rows as read at the release's pinned revision."""

    path: str
    md5: str
    rev: str
    rows: Sequence[dict[str, Any]]
    """Each row as csv.DictReader (or a JSON Lines object) gives it; a CSV's are made only
    when asked for (see :class:`CsvTable`)."""
    labels: list[Any]
    _columns: dict[str, list[Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def column(self, name: str) -> list[Any]:
        """Each row's value in column ``name``, in row order; read from the rows once (both
        releases' inputs and the slices use it). The list is shared: do not change it."""
        values = self._columns.get(name)
        if values is None:
            rows = self.rows
            if isinstance(rows, CsvTable):
                values = rows.column(name)
            else:
                values = [row[name] for row in rows]
            self._columns[name] = values
        return values

    def text_column(self, name: str) -> list[str]:
        """:meth:`column` with each value as text (a CSV's already are), as slices group it."""
        values = self.column(name)
        if set(map(type, values)) <= {str}:
            return values
        return [str(v) for v in values]


def eval_suite(ws: Workspace, release: Release) -> EvalSuite | None:
    """The eval suite pinned in the release's configuration (None when it has none)."""
    raw = release.content.config.get("eval")
    if raw is None:
        return None
    return EvalSuite.model_validate(raw)


def _field(ws: Workspace, service: str, where: str) -> str:
    return f"services.{service}.eval.{where}"


def config_error(ws: Workspace, service: str, where: str, message: str, hint: str) -> ConfigError:
    """A ConfigError pointing at one field of the service's eval suite."""
    path = _field(ws, service, where)
    return ConfigError([ConfigProblem(str(ws.config_path), None, path, message, hint)])


def golden_ref(release: Release, suite: EvalSuite) -> DatasetRef:
    """The release's pinned ref of the eval dataset."""
    for ref in release.content.datasets:
        if ref.path == suite.dataset:
            return ref
    raise ArtifactNotFound(
        f"release {release.id} does not pin the eval dataset {suite.dataset}",
        hint="list it under the service's 'datasets' and create a new release",
    )


def read_dataset_bytes(root: Path, ref: DatasetRef) -> bytes:
    """The dataset's bytes: from the local DVC cache by md5 when there, else through DVC."""
    md5 = ref.md5
    if len(md5) == 32 and not md5.endswith(".dir"):
        for cached in (
            root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:],
            root / ".dvc" / "cache" / md5[:2] / md5[2:],
        ):
            if cached.is_file():
                data = cached.read_bytes()
                if hashlib.md5(data).hexdigest() == md5:  # noqa: S324 - DVC's content hash
                    return data
    from releaser.integrations.dvc_data import open_dataset

    return open_dataset(root, ref.path, ref.rev)


# Bounds on a golden set's rows: a cell (or a JSON Lines row) of 4 MiB holds a long
# document; nesting is for a value or two, not a tree.
MAX_CELL_CHARS = 4 * 1024 * 1024
MAX_JSON_DEPTH = 32


class _CsvReader(Protocol):
    """What ``csv.reader`` returns: rows of cells, and how many lines it has read."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


def _parse(
    path: str, data: bytes, *, numbered: bool = True
) -> tuple[Sequence[dict[str, Any]], list[int]]:
    """Rows, and the line of the file each row starts on (for messages).

    Without ``numbered`` a CSV's lines are not counted (the list is empty): they are
    wanted only for a message, and counting costs a sixth of reading the file.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"golden set {path} is not UTF-8 text", hint="save it as UTF-8 CSV or JSON Lines"
        ) from exc
    lower = path.lower()
    lines: list[int] = []
    if lower.endswith((".jsonl", ".ndjson")):
        rows: list[dict[str, Any]] = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if len(line) > MAX_CELL_CHARS:
                raise BadInput(
                    f"golden set {path}:{number}: the line is longer than "
                    f"{MAX_CELL_CHARS:,} characters",
                    hint="a golden row is one JSON object of questions and labels; split or "
                    "shorten it",
                )
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(
                    f"golden set {path}:{number}: not valid JSON ({exc.msg})",
                    hint="each line must be one JSON object",
                ) from exc
            except RecursionError:
                value = None  # nested too deep for the parser: reported below
            if value is None or _depth_over(value, MAX_JSON_DEPTH):
                raise BadInput(
                    f"golden set {path}:{number}: nested more than {MAX_JSON_DEPTH} levels deep",
                    hint="a golden row is a flat JSON object of columns; nest values less deeply",
                )
            if not isinstance(value, dict):
                raise BadInput(
                    f"golden set {path}:{number}: expected a JSON object per line",
                    hint='write rows as {"column": value, ...}',
                )
            rows.append(value)
            lines.append(number)
        return rows, lines
    if lower.endswith((".csv", ".tsv")):
        dialect = "excel-tab" if lower.endswith(".tsv") else "excel"
        # The csv module's own cell limit (131,072 characters) is process-wide state;
        # releaser's is set each time so a long document in a cell is read, up to a bound.
        csv.field_size_limit(MAX_CELL_CHARS)
        reader = csv.reader(io.StringIO(text, newline=""), dialect=dialect)
        try:
            return _csv_rows(reader, lines if numbered else None), lines
        except csv.Error as exc:
            raise BadInput(
                f"golden set {path}:{reader.line_num}: {exc}",
                hint=f"a cell may hold up to {MAX_CELL_CHARS:,} characters; check the quoting "
                "of the row (an unclosed quote runs to the end of the file)",
            ) from None
    raise BadInput(
        f"golden set {path}: unsupported format",
        hint="use a .csv, .tsv or .jsonl file for the eval dataset",
    )


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` holds lists or objects nested more than ``limit`` deep."""
    level: list[Any] = [value]
    for _ in range(limit + 1):
        below: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
        if not below:
            return False
        level = below
    return True


class CsvTable(Sequence[dict[str, Any]]):
    """A CSV's rows, every one as wide as its header, as csv.DictReader gives them.

    Each row is made into a dict only when it is asked for, and :meth:`column` reads a
    column in C: the eval gate of a model reads its input, label and slice columns, not
    its rows, and making a dict of every row cost about 0.4 us a row of the gate's
    overhead on ``bench/bench_gate.py`` (a fast model predicts a row in 13 us).
    """

    __slots__ = ("_columns", "_values", "header")

    def __init__(self, header: list[str], values: list[list[str]]) -> None:
        self.header = header
        self._values = values
        self._columns: list[tuple[str, ...]] | None = None

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        header = self.header
        if isinstance(index, slice):
            return [dict(zip(header, v)) for v in self._values[index]]  # noqa: B905 - as wide
        return dict(zip(header, self._values[index]))  # noqa: B905 - as wide

    def __iter__(self) -> Iterator[dict[str, Any]]:
        header = self.header
        return (dict(zip(header, v)) for v in self._values)  # noqa: B905 - as wide

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))  # noqa: B905

    __hash__ = None  # type: ignore[assignment]

    def column(self, name: str) -> list[str]:
        """Each row's value in column ``name`` (the last column of that name, as a row's
        dict keeps it); KeyError when the header has no such column."""
        if name not in self.header:
            raise KeyError(name)
        if self._columns is None:
            self._columns = list(zip(*self._values, strict=True)) or [() for _ in self.header]
        index = len(self.header) - 1 - self.header[::-1].index(name)
        return list(self._columns[index])


def _csv_rows(
    reader: _CsvReader, lines: list[int] | None = None
) -> CsvTable | list[dict[str, Any]]:
    """Rows as csv.DictReader gives them (blank lines skipped, a short row's missing
    fields None, a long row's extra fields as a list under the key None), read with
    the plain reader: about five times faster. Rows all as wide as the header come as
    a :class:`CsvTable`, whose dicts are made only when asked for.

    ``lines`` gets the line each row starts on: a quoted cell may hold line breaks,
    and blank lines are skipped, so rows and lines do not count alike.
    """
    header = next(reader, None)
    if header is None:
        return []
    width = len(header)
    rows: list[dict[str, Any]] = []
    if lines is None:
        table = list(filter(None, reader))  # a blank line reads as [], and is skipped
        if set(map(len, table)) <= {width}:
            return CsvTable(header, table)
        for values in table:
            if len(values) == width:
                rows.append(dict(zip(header, values)))  # noqa: B905 - the lengths are equal
            else:
                rows.append(_uneven_row(header, values))
        return rows
    starts: list[int] = lines
    add_row, add_start = rows.append, starts.append  # once, not per row
    last = reader.line_num
    for values in reader:
        start, last = last + 1, reader.line_num
        if len(values) == width:
            add_row(dict(zip(header, values)))  # noqa: B905 - the lengths are equal
        elif values:
            add_row(_uneven_row(header, values))
        else:
            continue  # a blank line
        add_start(start)
    return rows


def _uneven_row(header: list[str], values: list[str]) -> dict[Any, Any]:
    """A row of another width than the header, as csv.DictReader gives it."""
    width = len(header)
    row: dict[Any, Any] = dict(zip(header, values, strict=False))
    if len(values) < width:
        row.update(dict.fromkeys(header[len(values) :]))
    else:
        row[None] = values[width:]
    return row


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in _MISSING


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def load_golden(root: Path, release: Release, suite: EvalSuite) -> Golden:
    """Read and check the golden set at the release's pinned revision."""
    ref = golden_ref(release, suite)
    rows, labels = parse_golden(
        f"{ref.path}@{ref.rev[:12]}", ref.path, read_dataset_bytes(root, ref), suite
    )
    return Golden(ref.path, ref.md5, ref.rev, rows, labels)


def parse_golden(
    path: str, name: str, data: bytes, suite: EvalSuite
) -> tuple[Sequence[dict[str, Any]], list[Any]]:
    """Rows and labels of a golden file's bytes, checked against the suite.

    ``path`` names the file in messages; ``name`` (the file name) gives the format.
    """
    rows, _ = _parse(name, data, numbered=False)

    numbers: list[int] = []

    def line(i: int) -> int:
        """The line row ``i`` starts on, counted only for a message."""
        if not numbers:
            numbers.extend(_parse(name, data)[1])
        return numbers[i]

    if not rows:
        raise BadInput(
            f"golden set {path} has no rows",
            hint="add verified cases to the golden set, 'dvc add' and commit it",
        )
    present = list(rows[0].keys())
    needed = [*suite.input_columns, suite.label_column, *suite.slices]
    missing = [c for c in needed if c not in present]
    if missing:
        from releaser.config._common import did_you_mean

        close = [did_you_mean(c, present) for c in missing]
        hint = next((c for c in close if c), None) or f"its columns are: {', '.join(present)}"
        raise BadInput(
            f"golden set {path} has no column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} (needed by the eval suite)",
            hint=hint,
        )
    label = suite.label_column
    labels: list[Any] = (
        rows.column(label) if isinstance(rows, CsvTable) else [row.get(label) for row in rows]
    )
    kinds: dict[str, int] = {}
    if set(map(type, labels)) == {str}:  # always so in CSV: one cheap pass over the text
        # Each distinct label is checked once (a golden set has few), then located.
        empty = {v for v in set(labels) if v.strip().lower() in _MISSING}
        bad = next((i for i, v in enumerate(labels) if v in empty), None) if empty else None
        kinds["text"] = 0
    else:
        bad = next((i for i, v in enumerate(labels) if _is_missing(v)), None)
        for i, value in enumerate(labels):
            kinds.setdefault(_kind(value), i)
    if bad is not None:
        raise BadInput(
            f"golden set {path}, line {line(bad)}: the label column {label!r} is empty or NaN",
            hint="every golden row needs a verified answer; fix or drop the row",
        )
    if len(kinds) > 1:
        detail = ", ".join(f"{k} (first on line {line(i)})" for k, i in kinds.items())
        raise BadInput(
            f"golden set {path}: the label column {label!r} mixes types: {detail}",
            hint="give every label the same type (quote numbers meant as text)",
        )
    if any(s.name == "numeric_tolerance" for s in suite.scorers):
        for i, value in enumerate(labels):
            if _to_number(value) is None:
                raise BadInput(
                    f"golden set {path}, line {line(i)}: label {value!r} in column "
                    f"{label!r} is not a number, but the numeric_tolerance scorer needs one",
                    hint="fix the label, or use another scorer",
                )
    return rows, labels


@contextmanager
def importable_from(root: Path) -> Iterator[None]:
    """Let ``module:function`` references import modules from the workspace root."""
    entry = str(root)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            sys.path.remove(entry)


_LOADED: dict[str, tuple[str, int, int]] = {}
"""Workspace modules as ``import_function`` imported them: name -> (file, mtime_ns, size)."""


def _source(module: ModuleType) -> tuple[str, int, int] | None:
    source = getattr(module, "__file__", None)
    if not source:
        return None
    try:
        stat = os.stat(source)
    except OSError:
        return None
    return str(Path(source).resolve()), stat.st_mtime_ns, stat.st_size


def _stale(root: Path, name: str, module: ModuleType) -> bool:
    """Whether an already imported module is not the workspace's module as it is now.

    So it is when its file is in the workspace and changed since it was imported
    here (or was imported elsewhere), or when it comes from outside the workspace
    while the workspace has a module of that name (another workspace's copy).
    """
    source = _source(module)
    if source is None:
        return False
    if Path(source[0]).is_relative_to(root):
        return _LOADED.get(name) != source
    top = name.split(".", 1)[0]
    return (root / top).is_dir() or (root / f"{top}.py").is_file()


def _import_fresh(root: Path, name: str) -> ModuleType:
    """``name`` imported as the workspace has it now: a long-lived process (a notebook,
    a test session) may hold an older or another workspace's copy, which is dropped
    (with its package) and imported again."""
    module = sys.modules.get(name)
    if module is not None and _stale(root, name, module):
        top = name.split(".", 1)[0]
        for key in [k for k in sys.modules if k == top or k.startswith(f"{top}.")]:
            del sys.modules[key]
        importlib.invalidate_caches()
    module = importlib.import_module(name)
    source = _source(module)
    if source is not None and Path(source[0]).is_relative_to(root):
        _LOADED[name] = source
    return module


def import_function(
    ws: Workspace, service: str, reference: str, where: str, what: str
) -> Callable[..., Any]:
    """``module:function`` imported (from the workspace root too); ConfigError when it is not.

    A workspace module is imported as the workspace has it now, even when this
    process imported an older copy before (see ``_import_fresh``).
    """
    module_name, _, name = reference.partition(":")
    with importable_from(ws.root):
        try:
            module = _import_fresh(ws.root.resolve(), module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
            raise config_error(
                ws,
                service,
                where,
                f"cannot import module {module_name!r} for the {what}: {type(exc).__name__}: {exc}",
                f"check the module is on the Python path (the workspace root {ws.root} is) "
                "and imports cleanly",
            ) from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise config_error(
            ws,
            service,
            where,
            f"module {module_name!r} has no function {name!r} for the {what}",
            "give 'module:function' naming a function defined in that module",
        )
    return fn  # type: ignore[no-any-return]


def check_pinned_code(
    ws: Workspace, release: Release, functions: Iterable[Callable[..., Any] | None]
) -> list[str]:
    """Refuse workspace modules behind these functions that differ from the release's commit.

    ``module:function`` entry points are imported from the working tree. A module
    edited since the release was made would be judged as that release, and its
    new answers mixed with the release's cached ones. Modules from outside the
    workspace (installed packages) are not the release's code and are not checked.
    Returns warnings: a release recorded from a dirty tree, or a commit this clone
    does not have, cannot be checked.
    """
    root = ws.root.resolve()
    files: dict[Path, None] = {}
    for fn in functions:
        module = sys.modules.get(getattr(fn, "__module__", None) or "") if fn else None
        source = _source(module) if module is not None else None
        if source is not None and Path(source[0]).is_relative_to(root):
            files[Path(source[0])] = None
    if not files:
        return []
    names = ", ".join(p.relative_to(root).as_posix() for p in files)
    code = release.content.code
    if code.dirty:
        return [
            f"release {release.id} was made from a dirty working tree, so the gate cannot "
            f"check that {names} is the code it pins"
        ]
    from releaser.integrations.git_repo import changed_since

    try:
        changed = changed_since(root, code.sha, list(files))
    except WorkspaceError as exc:
        return [f"cannot check that {names} is the code release {release.id} pins: {exc}"]
    if changed:
        raise BadInput(
            f"{', '.join(changed)} changed since release {release.id} was made (commit "
            f"{code.sha[:12]}): the gate would judge code the release does not pin",
            hint="commit the change and create a new release to gate it, or restore the file "
            f"(git checkout {code.sha[:12]} -- {' '.join(changed)})",
        )
    return []


def resolve_scorers(
    ws: Workspace, service: str, suite: EvalSuite, release: Release | None = None
) -> dict[str, ScoreFn | None]:
    """Metric name -> scorer function (None for latency, which the harness measures).

    Judges are not here: they grade a whole release's answers in one batch of calls
    (:func:`releaser.api.gate_llm.judge_rows`). A json_schema scorer reads its schema at
    ``release``'s commit.
    """
    from releaser.core.structured_scorers import json_schema, json_valid

    out: dict[str, ScoreFn | None] = {}
    for i, spec in enumerate(suite.scorers):
        if spec.name == "judge":
            continue
        if spec.name == "latency":
            out[spec.metric] = None
        elif spec.name == "json_valid":
            out[spec.metric] = json_valid
        elif spec.name == "json_schema":
            if release is None:
                raise BadInput("a json_schema scorer needs the release to read its schema at")
            from releaser.api.gate_llm import schema_of

            out[spec.metric] = json_schema(schema_of(ws, release, spec))
        elif spec.name == "regex":
            out[spec.metric] = regex_match(spec.pattern or "")
        elif spec.name == "numeric_tolerance":
            out[spec.metric] = numeric_tolerance(spec.tolerance or 0.0)
        elif spec.name == "custom":
            out[spec.metric] = import_function(
                ws, service, spec.function or "", f"scorers[{i}].function", "custom scorer"
            )
        else:
            out[spec.metric] = BUILTIN_SCORERS[spec.name]
    return out
