"""Put a local sqlite MLflow store into WAL mode before MLflow opens it.

MLflow opens a sqlite store in sqlite's default rollback-journal mode, where
every commit writes and syncs a journal file beside the database and then the
database itself: 0.85-3.9 ms a commit measured on a 2-core CI machine (the
spread is the disk's), and one MLflow call commits once or twice (an eval
gate's MLflow run commits five times). In WAL mode a commit appends to one log
file (0.25-0.75 ms there, 3-5x less), and readers no longer wait for a writer.
The mode is stored in the database file, so the switch is made once and every
later connection, MLflow's included, uses it.
releaser's own sqlite state store runs in WAL mode too.

WAL needs the file on a local disk, as every sqlite WAL database does (not on
a network share), and it keeps two files beside the database while it is open:
``NAME-wal`` and ``NAME-shm``. A switch that cannot be made now (a read-only
folder, another process writing at that moment) is skipped: MLflow works in
either mode, and the next process to open the store tries again.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

__all__ = ["prefer_wal", "sqlite_path"]


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI; None for anything else.

    In-memory databases and URIs with query options (which may ask for a
    read-only or shared-cache open) give None: those are left as they are.
    """
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri.removeprefix("sqlite:///")
    if not rest or "?" in rest or rest == ":memory:":
        return None
    return Path(rest)


def prefer_wal(uri: str) -> bool:
    """Switch the sqlite store at ``uri`` to WAL mode; True when it is in WAL mode now.

    A missing database file is created (empty, in WAL mode) when its folder
    exists, so MLflow creates its tables in WAL mode from the start; a missing
    folder is left for MLflow to report. Never raises for sqlite or file-system
    trouble: the store stays as it was and MLflow opens it as before.
    """
    path = sqlite_path(uri)
    if path is None or not path.parent.is_dir() or (path.exists() and not path.is_file()):
        return False
    try:
        # Autocommit: the journal mode cannot change inside a transaction. sqlite answers
        # "database is locked" at once (without the busy timeout) while another connection
        # writes; that is one of the skips above.
        with closing(sqlite3.connect(path, isolation_level=None, timeout=0.2)) as conn:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            return str(mode).lower() == "wal"
    except (sqlite3.Error, OSError):
        return False
