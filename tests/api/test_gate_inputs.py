"""Golden set checks: one clear error naming the file, line and column, before any predict;
workspace modules imported as the workspace has them now."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from releaser.api.gate_inputs import (
    MAX_CELL_CHARS,
    MAX_JSON_DEPTH,
    CsvTable,
    _csv_rows,
    _import_fresh,
    importable_from,
    parse_golden,
)
from releaser.config.service import EvalSuite
from releaser.errors import BadInput

SUITE = EvalSuite(
    dataset="data/golden.csv",
    predict="rules:predict",
    input_columns=["text"],
    label_column="queue",
    slices=["channel"],
    scorers=["accuracy"],
)


def _csv(*rows: str) -> bytes:
    return ("text,channel,queue\n" + "".join(r + "\n" for r in rows)).encode()


def test_a_good_csv_gives_rows_and_labels() -> None:
    rows, labels = parse_golden(
        "g.csv@abc", "g.csv", _csv("bin,web,waste", "loud,email,noise"), SUITE
    )
    assert labels == ["waste", "noise"] and rows[1]["channel"] == "email"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"text,channel,queue\n", "g.csv@abc has no rows"),
        (b"", "g.csv@abc has no rows"),
        (b"text,queue\nbin,waste\n", "has no column 'channel'"),
        (_csv("bin,web,waste", "loud,email,"), "line 3: the label column 'queue' is empty or NaN"),
        (_csv("bin,web,waste", "loud,email,NaN"), "line 3: the label column 'queue' is empty"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_csv_is_refused_with_a_located_message(data: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message) as err:
        parse_golden("g.csv@abc", "g.csv", data, SUITE)
    assert err.value.hint


def test_long_cells_are_read_up_to_the_bound_and_refused_past_it_with_their_line() -> None:
    # Beyond the csv module's own 131,072-character limit, within releaser's.
    long = "x" * 200_000
    rows, _ = parse_golden("g.csv@abc", "g.csv", _csv("a,web,waste", f"{long},web,noise"), SUITE)
    assert rows[1]["text"] == long
    too_long = "x" * (MAX_CELL_CHARS + 1)
    with pytest.raises(BadInput, match=r"g\.csv:3: field larger than field limit") as err:
        parse_golden("g.csv@abc", "g.csv", _csv("a,web,waste", f"{too_long},web,noise"), SUITE)
    assert err.value.hint is not None and "4,194,304 characters" in err.value.hint
    row = json.dumps({"text": too_long, "channel": "web", "queue": "x"})
    with pytest.raises(BadInput, match=r"g\.jsonl:1: the line is longer than"):
        parse_golden("g.jsonl@abc", "g.jsonl", row.encode(), SUITE)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_json_lines_nested_too_deep_are_refused_with_their_line(depth: int) -> None:
    good = b'{"text": "a", "channel": "web", "queue": "q"}\n'
    deep = b'{"text": ' + b"[" * depth + b"]" * depth + b', "channel": "web", "queue": "q"}\n'
    with pytest.raises(BadInput, match=f"g.jsonl:2: nested more than {MAX_JSON_DEPTH}"):
        parse_golden("g.jsonl@abc", "g.jsonl", good + deep, SUITE)
    # At the bound itself (the row object is one level) the row reads.
    ok = b'{"text": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1)
    rows, _ = parse_golden(
        "g.jsonl@abc", "g.jsonl", good + ok + b', "channel": "w", "queue": "q"}', SUITE
    )
    assert len(rows) == 2


def test_json_lines_with_mixed_label_types_are_refused() -> None:
    data = (
        b'{"text": "a", "channel": "web", "queue": 3}\n'
        b'{"text": "b", "channel": "web", "queue": "3"}\n'
    )
    with pytest.raises(
        BadInput, match=r"mixes types: number \(first on line 1\), text \(first on line 2\)"
    ):
        parse_golden("g.jsonl@abc", "g.jsonl", data, SUITE)
    nan = b'{"text": "a", "channel": "web", "queue": NaN}\n'
    with pytest.raises(BadInput, match="line 1: the label column 'queue' is empty or NaN"):
        parse_golden("g.jsonl@abc", "g.jsonl", nan, SUITE)


def test_numeric_scorer_needs_numeric_labels() -> None:
    suite = EvalSuite(
        dataset="d.csv",
        predict="rules:predict",
        input_columns=["text"],
        label_column="queue",
        scorers=[{"name": "numeric_tolerance", "tolerance": 0.5}],
    )
    with pytest.raises(BadInput, match="line 2: label 'waste' .* is not a number"):
        parse_golden("g.csv@abc", "g.csv", _csv("bin,web,waste"), suite)
    rows, labels = parse_golden("g.csv@abc", "g.csv", _csv("bin,web,4.5"), suite)
    assert labels == ["4.5"]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(BadInput, match="unsupported format"):
        parse_golden("g.parquet@abc", "g.parquet", b"PAR1", SUITE)


def _dict_reader_rows(text: str, dialect: str) -> list[dict[object, object]]:
    return [dict(r) for r in csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)]


@pytest.mark.parametrize("dialect", ["excel", "excel-tab"])
def test_rows_are_what_csv_dict_reader_gives(dialect: str) -> None:
    """Seeded random tables with quoting, blank lines, short and long rows: the fast
    reader gives the rows csv.DictReader gives, row for row."""
    rng = random.Random(7)
    cells = ["", "a", "b c", "x,y", "tab\there", 'say "hi"', "line\nbreak", "  ", "é"]
    for _ in range(300):
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, dialect=dialect)
        writer.writerow(["text", "channel", "queue"])
        for _ in range(rng.randint(0, 12)):
            writer.writerow([rng.choice(cells) for _ in range(rng.choice([0, 1, 2, 3, 3, 3, 5]))])
        text = buf.getvalue()
        rows = _csv_rows(csv.reader(io.StringIO(text, newline=""), dialect=dialect))
        assert rows == _dict_reader_rows(text, dialect), text


def test_columns_are_what_the_rows_hold() -> None:
    """Seeded random tables, a header name repeated in some: each column of an even table,
    read in C, is each row's value under that name (the last column of a repeated name, as
    a row's dict keeps it); an uneven table comes as plain rows."""
    rng = random.Random(13)
    for _ in range(300):
        header = [rng.choice(["text", "channel", "queue", "q"]) for _ in range(rng.randint(1, 5))]
        width = len(header)
        uneven = rng.random() < 0.2
        body = [
            [rng.choice(["", "a", "x,y", "é"]) for _ in range(width + (uneven and i == 0))]
            for i in range(rng.randint(0, 8))
        ]
        buf = io.StringIO(newline="")
        csv.writer(buf).writerows([header, *body])
        text = buf.getvalue()
        rows = _csv_rows(csv.reader(io.StringIO(text, newline="")))
        assert rows == _dict_reader_rows(text, "excel"), text
        if uneven and body:
            assert isinstance(rows, list)
            continue
        assert isinstance(rows, CsvTable)
        for name in set(header):
            assert rows.column(name) == [row[name] for row in rows]
        assert rows[1:3] == list(rows)[1:3]
        with pytest.raises(KeyError):
            rows.column("missing")


def test_a_short_row_has_no_label() -> None:
    with pytest.raises(BadInput, match="line 3: the label column 'queue' is empty"):
        parse_golden("g.csv@abc", "g.csv", _csv("bin,web,waste", "loud,email"), SUITE)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        # a quoted cell holding line breaks: the bad row starts on line 5, not 3
        (b'text,channel,queue\n"bin\nout\nside",web,waste\nloud,email,\n', 5),
        (b"text,channel,queue\n\nbin,web,waste\n\n\nloud,email,\n", 6),  # blank lines
        (b"text,channel,queue\r\nbin,web,waste\r\nloud,email,\r\n", 3),  # CRLF
    ],
)
def test_messages_name_the_line_the_row_starts_on(data: bytes, line: int) -> None:
    with pytest.raises(BadInput, match=f"line {line}: the label column 'queue' is empty"):
        parse_golden("g.csv@abc", "g.csv", data, SUITE)


def test_json_lines_messages_count_blank_lines() -> None:
    data = b'{"text": "a", "channel": "web", "queue": "x"}\n\n\n{"text": "b", "channel": "w"}\n'
    with pytest.raises(BadInput, match="line 4: the label column 'queue' is empty"):
        parse_golden("g.jsonl@abc", "g.jsonl", data, SUITE)


def test_start_lines_match_the_rows_on_random_tables() -> None:
    """Each row's recorded line is where csv.reader starts it (seeded random tables)."""
    rng = random.Random(11)
    cells = ["", "a", "x,y", "line\nbreak", "two\n\nbreaks", 'q "x"']
    for _ in range(200):
        lines_text: list[str] = ["text,channel,queue"]
        expected: list[int] = []
        for _ in range(rng.randint(0, 10)):
            if rng.random() < 0.2:
                lines_text.append("")  # a blank line
                continue
            buf = io.StringIO(newline="")
            csv.writer(buf, lineterminator="\n").writerow(
                [rng.choice(cells) for _ in range(rng.choice([1, 3, 3, 4]))]
            )
            expected.append(sum(t.count("\n") + 1 for t in lines_text) + 1)
            lines_text.append(buf.getvalue().removesuffix("\n"))
        text = "\n".join(lines_text) + "\n"
        found: list[int] = []
        rows = _csv_rows(csv.reader(io.StringIO(text, newline="")), found)
        assert len(rows) == len(found) and found == expected, text


@pytest.fixture
def fresh_names() -> Iterator[None]:
    """Modules these tests import are forgotten afterwards."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    stat = path.stat()  # a new mtime even within the file system's clock tick
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def _answer(root: Path, name: str) -> str:
    with importable_from(root):
        return str(_import_fresh(root.resolve(), name).answer())


def test_a_module_edited_or_from_another_workspace_is_imported_again(
    tmp_path: Path, fresh_names: None
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "gate_mod_x.py", "def answer():\n    return 'a'\n")
    _write(b / "gate_mod_x.py", "def answer():\n    return 'b'\n")
    assert _answer(a, "gate_mod_x") == "a"
    assert _answer(b, "gate_mod_x") == "b"  # not workspace a's copy
    _write(b / "gate_mod_x.py", "def answer():\n    return 'b, edited'\n")
    assert _answer(b, "gate_mod_x") == "b, edited"
    module = sys.modules["gate_mod_x"]
    assert _answer(b, "gate_mod_x") == "b, edited" and sys.modules["gate_mod_x"] is module


def test_a_package_from_another_workspace_is_dropped_whole(
    tmp_path: Path, fresh_names: None
) -> None:
    for ws in ("a", "b"):
        _write(tmp_path / ws / "gate_pkg_y" / "__init__.py", "")
        _write(tmp_path / ws / "gate_pkg_y" / "predict.py", f"def answer():\n    return {ws!r}\n")
    assert _answer(tmp_path / "a", "gate_pkg_y.predict") == "a"
    assert _answer(tmp_path / "b", "gate_pkg_y.predict") == "b"
    assert sys.modules["gate_pkg_y"].__file__ == str(tmp_path / "b" / "gate_pkg_y" / "__init__.py")
