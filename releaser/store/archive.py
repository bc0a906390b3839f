"""The store archive: every table of a state store in one zip file, checkable on its own.

Format ``releaser-store-archive/1``, a zip (deflate) holding exactly these members:

- ``manifest.json``: ``format``, ``releaser_version``, ``created_at``, ``source``
  (``backend``: ``sqlite`` or ``postgresql``, ``url`` with any password redacted,
  ``schema_version``), ``audit_head`` (``seq``, ``hash``) and ``members``: for each
  member below its ``sha256``, ``bytes`` and ``rows``.
- ``records.jsonl``, ``audit_events.jsonl``, ``rollout_metrics.jsonl``,
  ``rollout_latency_bins.jsonl``, ``rollout_token_bins.jsonl``, ``metric_batches.jsonl``,
  ``rollout_unit_sketches.jsonl``: JSON Lines, one object a row, keyed by column name, in
  primary-key order (see ``releaser.store._bulk.TABLES``). An archive of an older schema
  (``schema_version``) lacks the tables and columns added since (``rollout_token_bins``
  and the token columns of ``rollout_metrics`` came with 6, ``rollout_unit_sketches`` with
  7); reading it gives those columns 0 and those tables no rows. A unit sketch's
  ``registers`` is its text form (``releaser.core.unit_sketch``), never a unit id.
  A record's ``value`` and an audit entry's ``payload`` are strings holding the exact
  text stored (the payload is what its hash covers).

Nothing outside these names is accepted (no paths: nothing is ever extracted to
disk), and every read is bounded: the manifest, each member, each line. A reader
checks every member's size, SHA-256, row count and the type of every field.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from releaser.core.audit import GENESIS_HASH, RawEvent
from releaser.errors import BadInput
from releaser.store._bulk import TABLES, Snapshot, Table

__all__ = [
    "FORMAT",
    "MANIFEST",
    "MAX_LINE_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMBER_BYTES",
    "ArchiveReader",
    "member_name",
    "write_archive",
]

FORMAT = "releaser-store-archive/1"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_MEMBER_BYTES = 64 * 1024**3
"""A member larger than this (uncompressed) is refused before it is read: 64 GiB."""
MAX_LINE_BYTES = 256 * 1024 * 1024
"""One row's line: far above any record releaser writes, far below what exhausts memory."""
_WRITE_BUFFER = 1024 * 1024
_HINT = "make a new archive with 'releaser store export'; an archive is never edited by hand"


def member_name(table: Table) -> str:
    """The archive member that carries ``table``."""
    return f"{table.name}.jsonl"


_BY_MEMBER = {member_name(t): t for t in TABLES}


@dataclass(frozen=True)
class _Written:
    sha256: str
    bytes: int
    rows: int


def write_archive(
    snapshot: Snapshot, out: IO[bytes], *, releaser_version: str, created_at: str
) -> dict[str, Any]:
    """Write every table of ``snapshot`` to ``out`` as an archive; returns its manifest.

    Rows stream from the snapshot into the zip a buffer at a time: memory stays
    bounded whatever the store's size.
    """
    members: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for table in TABLES:
            name = member_name(table)
            written = _write_member(zf, name, table, snapshot.rows(table))
            members[name] = {"sha256": written.sha256, "bytes": written.bytes, "rows": written.rows}
        seq, digest = snapshot.audit_head()
        manifest = {
            "format": FORMAT,
            "releaser_version": releaser_version,
            "created_at": created_at,
            "source": {
                "backend": snapshot.backend,
                "url": snapshot.url,
                "schema_version": snapshot.schema_version(),
            },
            "audit_head": {"seq": seq, "hash": digest},
            "members": members,
        }
        zf.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _write_member(
    zf: zipfile.ZipFile, name: str, table: Table, rows: Iterator[tuple[Any, ...]]
) -> _Written:
    sha = hashlib.sha256()
    size = count = 0
    names = table.names
    buffer = bytearray()
    with zf.open(name, "w", force_zip64=True) as member:
        for row in rows:
            line = json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False)
            # surrogateescape: a byte that is not UTF-8 in a damaged store is written as
            # that byte, so verification of the archive names the entry that holds it.
            buffer += line.encode("utf-8", "surrogateescape") + b"\n"
            count += 1
            if len(buffer) >= _WRITE_BUFFER:
                sha.update(buffer)
                member.write(buffer)
                size += len(buffer)
                buffer.clear()
        sha.update(buffer)
        member.write(buffer)
        size += len(buffer)
    return _Written(sha.hexdigest(), size, count)


class ArchiveReader:
    """An archive opened for checking and reading: every member's rows, checked as read.

    Opening checks the member names and the manifest. :meth:`rows` checks every
    line's fields and, at the member's end, its size, row count and SHA-256; so a
    full read of a member proves it is the one the manifest describes. Also an
    audit source (``audit_head``, ``raw_events``, ``record_links``) for
    verification, and a restore source for ``Store.restore``.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_member_bytes: int = MAX_MEMBER_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = Path(path)
        self._max_member = max_member_bytes
        self._max_line = max_line_bytes
        try:
            self._zip = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise BadInput(f"archive {self.path} does not exist") from None
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise BadInput(
                f"{self.path} is not a complete store archive (a zip file): {exc}",
                hint="a truncated copy looks like this; copy the archive again, or " + _HINT,
            ) from None
        try:
            self._check_names()
            self.manifest = self._read_manifest()
        except BaseException:
            self._zip.close()
            raise

    def close(self) -> None:
        """Close the archive file."""
        self._zip.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the manifest says -------------------------------------------------

    @property
    def head(self) -> tuple[int, str]:
        """The (seq, hash) of the last audit entry, as the manifest records it."""
        head = self.manifest["audit_head"]
        return int(head["seq"]), str(head["hash"])

    @property
    def schema_version(self) -> int:
        """The schema version of the store the archive was made from."""
        return int(self.manifest["source"]["schema_version"])

    def rows_in(self, table: Table) -> int:
        """How many rows of ``table`` the manifest says the archive holds."""
        entry = self.manifest["members"].get(member_name(table))
        return 0 if entry is None else int(entry["rows"])

    # -- sources ------------------------------------------------------------------

    def audit_head(self) -> tuple[int, str]:
        """The manifest's audit head; (0, genesis) for an archive with no entries."""
        seq, digest = self.head
        return (seq, digest) if seq else (0, GENESIS_HASH)

    def raw_events(self) -> Iterator[RawEvent]:
        """The archive's audit entries as stored, in archive order."""
        for seq, prev, digest, payload, _subject in self.rows(_table("audit_events")):
            yield RawEvent(seq, prev, digest, payload)

    def record_links(self) -> Iterator[tuple[str, str, int, str, int | None]]:
        """Each record as (kind, key, version, value text, the entry that last wrote it)."""
        for kind, key, version, value, _at, seq in self.rows(_table("records")):
            yield kind, key, version, value, seq

    def rows(self, table: Table) -> Iterator[tuple[Any, ...]]:
        """Every row of ``table``, each field checked; the member's size, row count and
        SHA-256 are checked against the manifest when its end is reached."""
        name = member_name(table)
        if table.since > self.schema_version:
            return  # made before the table existed
        want = self.manifest["members"][name]
        info = self._zip.getinfo(name)
        sha = hashlib.sha256()
        size = count = 0
        with self._open(name, info) as member:
            while True:
                line = member.readline(self._max_line + 1)
                if not line:
                    break
                if len(line) > self._max_line:
                    raise self._bad(name, f"line {count + 1} is longer than {self._max_line} bytes")
                sha.update(line)
                size += len(line)
                count += 1
                yield self._row(name, table, count, line)
        if size != want["bytes"] or count != want["rows"]:
            raise self._bad(
                name,
                f"holds {count} rows in {size} bytes, the manifest says {want['rows']} rows in "
                f"{want['bytes']} bytes (truncated or edited)",
            )
        if sha.hexdigest() != want["sha256"]:
            raise self._bad(name, "its SHA-256 is not the one the manifest records (edited?)")

    def check_members(self) -> dict[str, int]:
        """Read every member to its end (sizes, hashes, rows, fields); rows per table."""
        counts = {}
        for table in TABLES:
            counts[table.name] = sum(1 for _ in self.rows(table))
        return counts

    # -- internals ------------------------------------------------------------------

    def _open(self, name: str, info: zipfile.ZipInfo) -> _GuardedMember:
        return _GuardedMember(self, name, info)

    def _bad(self, member: str, problem: str) -> BadInput:
        return BadInput(f"archive {self.path}, member {member}: {problem}", hint=_HINT)

    def _check_names(self) -> None:
        names = [i.filename for i in self._zip.infolist()]
        known = {MANIFEST, *_BY_MEMBER}
        for name in names:
            if name not in known:
                raise self._bad(
                    name[:200],
                    "is not part of a store archive (only manifest.json and the "
                    "table members are); nothing was read from it",
                )
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise self._bad(name, "appears twice in the archive")
            seen.add(name)
        for info in self._zip.infolist():
            limit = MAX_MANIFEST_BYTES if info.filename == MANIFEST else self._max_member
            if info.file_size > limit:
                raise self._bad(
                    info.filename, f"is {info.file_size} bytes, more than the {limit} allowed"
                )

    def _read_manifest(self) -> dict[str, Any]:
        try:
            with self._zip.open(MANIFEST) as f:
                text = f.read(MAX_MANIFEST_BYTES + 1)
            data = json.loads(text.decode("utf-8"))
        except (OSError, zipfile.BadZipFile, ValueError, EOFError, zlib.error) as exc:
            raise self._bad(MANIFEST, f"cannot be read: {exc}") from None
        if not isinstance(data, dict):
            raise self._bad(MANIFEST, "is not a JSON object")
        if data.get("format") != FORMAT:
            raise self._bad(
                MANIFEST,
                f"format {str(data.get('format'))[:80]!r} is not {FORMAT!r}, the format this "
                "releaser reads",
            )
        from releaser.store.migrations import SQLITE_MIGRATIONS

        source = data.get("source")
        schema = source.get("schema_version") if isinstance(source, dict) else None
        if (
            not isinstance(schema, int)
            or isinstance(schema, bool)
            or schema > len(SQLITE_MIGRATIONS)
        ):
            raise self._bad(
                MANIFEST,
                f"source.schema_version {schema!r} is not one this releaser knows "
                f"(up to {len(SQLITE_MIGRATIONS)})",
            )
        expected = {MANIFEST, *_members(schema)}
        missing = sorted(expected - set(self._zip.namelist()))
        if missing:
            raise BadInput(
                f"archive {self.path} has no member {missing[0]}: it is not a complete store "
                "archive",
                hint=_HINT,
            )
        extra = sorted(set(self._zip.namelist()) - expected)
        if extra:
            raise self._bad(extra[0], f"is not part of an archive of schema version {schema}")
        head = data.get("audit_head")
        if (
            not isinstance(head, dict)
            or not _is_int(head.get("seq"))
            or int(head["seq"]) < 0
            or not isinstance(head.get("hash"), str)
        ):
            raise self._bad(MANIFEST, "audit_head is not {seq, hash}")
        members = data.get("members")
        if not isinstance(members, dict) or set(members) != _members(schema):
            raise self._bad(MANIFEST, f"members does not list exactly {sorted(_members(schema))}")
        for name, entry in members.items():
            ok = (
                isinstance(entry, dict)
                and isinstance(entry.get("sha256"), str)
                and all(_is_int(entry.get(k)) and entry[k] >= 0 for k in ("bytes", "rows"))
            )
            if not ok:
                raise self._bad(MANIFEST, f"the entry of {name} is not {{sha256, bytes, rows}}")
        return data

    def _row(self, name: str, table: Table, number: int, line: bytes) -> tuple[Any, ...]:
        where = f"line {number}"
        try:
            data = json.loads(line.decode("utf-8", "surrogateescape"))
        except ValueError as exc:
            raise self._bad(name, f"{where} is not JSON: {exc}") from None
        schema = self.schema_version
        fields = [c.name for c in table.columns if c.since <= schema]
        if not isinstance(data, dict) or set(data) != set(fields):
            raise self._bad(name, f"{where} does not have exactly the fields {fields}")
        row: list[Any] = []
        for column in table.columns:
            if column.since > schema:
                row.append(column.default)  # made before the column existed
                continue
            value = data[column.name]
            if value is None and column.nullable:
                row.append(None)
                continue
            good = isinstance(value, column.type) and not isinstance(value, bool)
            if column.type is float and _is_int(value):
                value, good = float(value), True
            if not good:
                raise self._bad(
                    name,
                    f"{where}: {column.name} is {type(value).__name__}, not {column.type.__name__}",
                )
            row.append(value)
        return tuple(row)


def _members(schema: int) -> set[str]:
    """The members an archive of a store at schema version ``schema`` holds."""
    return {member_name(t) for t in TABLES if t.since <= schema}


def _table(name: str) -> Table:
    return next(t for t in TABLES if t.name == name)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _GuardedMember:
    """A member opened for reading, with its damage reported as the archive's fault."""

    def __init__(self, reader: ArchiveReader, name: str, info: zipfile.ZipInfo) -> None:
        self._reader = reader
        self._name = name
        self._info = info
        self._file: IO[bytes] | None = None

    def __enter__(self) -> _GuardedMember:
        try:
            self._file = self._reader._zip.open(self._info)
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise self._reader._bad(self._name, f"cannot be read: {exc}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def readline(self, limit: int) -> bytes:
        assert self._file is not None
        try:
            return self._file.readline(limit)
        except (OSError, zipfile.BadZipFile, EOFError, ValueError, zlib.error) as exc:
            raise self._reader._bad(
                self._name, f"is damaged (truncated or edited): {exc}"
            ) from None
