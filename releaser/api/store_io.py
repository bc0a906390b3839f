"""Back up a state store to a verifiable archive, and restore one into an empty store.

``export_store`` reads one consistent snapshot of every table into a zip
(format in :mod:`releaser.store.archive`), then reads the written file back and
verifies it as an import would: the audit chain against its head and every
record against the entry that last wrote it. A store that fails is not backed
up (CheckFailed): an archive that import would refuse is no backup. Only a
verified archive is renamed into place.

``import_store`` refuses a store that holds anything, checks the archive
(member names, manifest, every member's size, SHA-256 and rows), verifies its
chain and records, then writes everything in one transaction and verifies the
target from inside that transaction before it commits: a failure or a kill
leaves the target empty. Moving from sqlite to PostgreSQL is an export from one
and an import into the other.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from releaser.api.audit import AnchoredVerify, verify_content
from releaser.api.context import utc_now
from releaser.core.unit_sketch import UnitSketch
from releaser.errors import BadInput, CheckFailed
from releaser.store import TABLES, Snapshot, Store
from releaser.store.archive import ArchiveReader, member_name, write_archive

__all__ = ["ArchiveSummary", "Phase", "export_store", "import_store"]

Phase = Callable[[str], None]
"""Told each step as it starts ("reading the store", ...), for a status line."""


def _quiet(_step: str) -> None:
    """No status line."""


@dataclass(frozen=True)
class ArchiveSummary:
    """What an archive holds and where it came from (the ``store export/import --json`` shape)."""

    file: str
    store: str
    source: dict[str, Any]
    head_seq: int
    head_hash: str
    rows: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """``{"file", "store", "source", "audit_head": {"seq", "hash"}, "rows"}``."""
        return {
            "file": self.file,
            "store": self.store,
            "source": self.source,
            "audit_head": {"seq": self.head_seq, "hash": self.head_hash},
            "rows": self.rows,
        }


def export_store(
    store: Store, path: Path, *, force: bool = False, phase: Phase = _quiet
) -> ArchiveSummary:
    """Write a verified archive of ``store`` to ``path``.

    Refuses (BadInput) an existing ``path`` unless ``force``, and a folder that
    does not exist. Writes a temporary file beside ``path`` and renames it only
    once it has been read back and verified; CheckFailed, writing nothing, when
    the store's chain or records do not verify. ``phase`` is told each step.
    """
    from releaser._version import __version__

    path = Path(path)
    _check_destination(path, force)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as out:
            phase(f"reading {store.url}")
            with store.snapshot() as snap:
                manifest = write_archive(
                    snap, out, releaser_version=__version__, created_at=utc_now()
                )
            out.flush()
            os.fsync(out.fileno())
        phase("verifying the archive")
        with ArchiveReader(tmp) as reader:
            rows = reader.check_members()
            result = verify_content(reader)
        if not result.ok:
            raise CheckFailed(
                f"the state store {store.url} does not verify, so no archive was written: "
                f"{result.problems[0]}",
                hint="'releaser audit verify' lists every problem; a store that fails it "
                "cannot be restored from an archive, so restore it from an earlier backup",
            )
        _check_destination(path, force)
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except FileExistsError:
        raise BadInput(f"cannot write {tmp}: it exists", hint="retry") from None
    except OSError as exc:
        raise BadInput(
            f"cannot write the archive {path}: {exc.strerror or exc}",
            hint="check the folder exists, is writable and has space",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    head = manifest["audit_head"]
    return ArchiveSummary(str(path), store.url, manifest["source"], head["seq"], head["hash"], rows)


def import_store(store: Store, path: Path, *, phase: Phase = _quiet) -> ArchiveSummary:
    """Restore the archive at ``path`` into ``store``, which must be empty.

    BadInput, writing nothing, for a store that holds anything and for a bad
    archive (named member and line): wrong format, unknown or missing members,
    a member's size, rows or SHA-256 not the manifest's, a field of the wrong
    type, an audit chain or a record that does not verify. CheckFailed, writing
    nothing, if the target does not read back what was written. ``phase`` is told
    each step.
    """
    path = Path(path)
    with store.snapshot() as snap:
        snap.require_empty()  # fast; the import's transaction checks again
    with ArchiveReader(path) as reader:
        phase("checking the archive")
        rows = reader.check_members()
        phase("verifying the archive")
        result = verify_content(reader)
        if not result.ok:
            raise BadInput(
                f"archive {path} does not verify, so nothing was written: "
                + "; ".join(result.problems[:3]),
                hint="the archive was edited or damaged after export; use another copy",
            )
        _check_sketches(reader, path)

        def check(target: Snapshot) -> None:
            phase(f"verifying {target.url} before commit")
            _check_target(verify_content(target), reader, target, path)

        phase(f"writing into {store.url}")
        store.restore(reader, check)
        summary = ArchiveSummary(
            str(path), store.url, reader.manifest["source"], *reader.head, rows
        )
    return summary


def _check_sketches(reader: ArchiveReader, path: Path) -> None:
    """BadInput, writing nothing, for a unit sketch whose registers do not decode."""
    table = next(t for t in TABLES if t.name == "rollout_unit_sketches")
    at = table.names.index("registers")
    for line, row in enumerate(reader.rows(table), start=1):
        try:
            UnitSketch.decode(row[at])
        except BadInput as exc:
            raise BadInput(
                f"archive {path}: {member_name(table)} line {line}: {exc.message}; "
                "nothing was written",
                hint="the archive was edited or damaged after export; use another copy",
            ) from None


def _check_target(
    result: AnchoredVerify, reader: ArchiveReader, target: Snapshot, path: Path
) -> None:
    """CheckFailed (rolling the import back) unless the target verifies and holds exactly
    the archive's head and row counts."""
    problems = list(result.problems)
    if result.ok and (result.chain.count, result.chain.head_hash) != reader.audit_head():
        problems.append("the target's audit head is not the archive's")
    if result.ok and result.records != reader.rows_in(TABLES[0]):
        problems.append(
            f"the target holds {result.records} records, the archive {reader.rows_in(TABLES[0])}"
        )
    if not problems:
        for table in TABLES[2:]:
            count = sum(1 for _ in target.rows(table))
            if count != reader.rows_in(table):
                problems.append(
                    f"the target holds {count} rows of {table.name}, the archive "
                    f"{reader.rows_in(table)}"
                )
    if problems:
        raise CheckFailed(
            f"the state store {target.url} did not read back what {path} holds, so the import "
            f"was rolled back and nothing was written: {problems[0]}",
            hint="report this as a bug, with the archive's manifest.json",
        )


def _check_destination(path: Path, force: bool) -> None:
    if path.is_dir():
        raise BadInput(f"{path} is a folder", hint="name the archive file to write")
    if not path.parent.is_dir():
        raise BadInput(
            f"the folder of {path} does not exist", hint="create it first, or name another file"
        )
    if path.exists() and not force:
        raise BadInput(
            f"{path} exists; nothing was written",
            hint="pass --force to replace it, or name a new file",
        )


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform can)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
