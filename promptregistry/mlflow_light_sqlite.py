"""The light MLflow alias client on a local sqlite registry, with the stdlib's sqlite3.

See :mod:`promptregistry.mlflow_aliases` for which statements MLflow's store
runs for each call, and when this client hands a call back to ``MlflowClient``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from promptregistry.mlflow_light_base import (
    WORKSPACE,
    ModelVersionInfo,
    NeedsMlflow,
    RegisteredModelInfo,
    check_names,
    check_tag,
)
from promptregistry.mlflow_sqlite import prefer_wal

__all__ = ["SQLITE_BUSY_TIMEOUT_S", "VERIFIED_REVISIONS", "SqliteAliasClient"]

SQLITE_BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another writer of the sqlite registry (MLflow waits as long)."""

VERIFIED_REVISIONS = frozenset({"dc11669786a5"})
"""Alembic revisions of MLflow's schema whose alias and tag tables this module was checked
against (MLflow 3.17's head). A registry at any other revision goes through MlflowClient."""

_DELETED_STAGE = "Deleted_Internal"


class SqliteAliasClient:
    """The calls on a local sqlite registry, with the stdlib's sqlite3 (see the module doc)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._wal_tried = False

    def __repr__(self) -> str:
        return f"SqliteAliasClient({str(self.path)!r})"

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction on the registry at a verified schema; NeedsMlflow for anything else."""
        if not self.path.is_file():
            raise NeedsMlflow(f"no sqlite registry at {self.path} yet")
        if not self._wal_tried:
            prefer_wal(f"sqlite:///{self.path.as_posix()}")  # as MlflowClient's path does
            self._wal_tried = True
        try:
            # mode=rw: never create a database here; autocommit, so BEGIN is ours.
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=rw",
                uri=True,
                timeout=self._busy_timeout_s,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise NeedsMlflow(f"cannot open {self.path}: {exc}") from None
        with closing(conn):
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                revisions = {r for (r,) in conn.execute("SELECT version_num FROM alembic_version")}
                if len(revisions) != 1 or not revisions <= VERIFIED_REVISIONS:
                    raise NeedsMlflow(
                        f"the registry's schema is at {sorted(revisions)}, not a verified revision"
                    )
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise NeedsMlflow(f"sqlite: {exc}") from None
                raise

    @staticmethod
    def _need_model(conn: sqlite3.Connection, name: str) -> None:
        row = conn.execute(
            "SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?", (WORKSPACE, name)
        ).fetchone()
        if row is None:
            raise NeedsMlflow(f"no registered model {name!r}")

    def model(self, name: str) -> RegisteredModelInfo:
        """The model's aliases and tags, read in one transaction."""
        check_names(name)
        with self._transaction(write=False) as conn:
            self._need_model(conn, name)
            aliases = conn.execute(
                "SELECT alias, version FROM registered_model_aliases "
                "WHERE workspace = ? AND name = ?",
                (WORKSPACE, name),
            ).fetchall()
            tags = conn.execute(
                'SELECT "key", value FROM registered_model_tags WHERE workspace = ? AND name = ?',
                (WORKSPACE, name),
            ).fetchall()
        return RegisteredModelInfo(
            name, {str(a): int(v) for a, v in aliases}, {str(k): str(v or "") for k, v in tags}
        )

    def model_version(self, name: str, version: int) -> ModelVersionInfo:
        """The live version with its tags and the aliases pointing at it, in one transaction."""
        check_names(name)
        with self._transaction(write=False) as conn:
            row = conn.execute(
                "SELECT description, creation_time FROM model_versions WHERE workspace = ? "
                "AND name = ? AND version = ? AND (current_stage IS NULL OR current_stage != ?)",
                (WORKSPACE, name, int(version), _DELETED_STAGE),
            ).fetchone()
            if row is None:
                raise NeedsMlflow(f"model {name!r} has no version {version}")
            tags = conn.execute(
                'SELECT "key", value FROM model_version_tags WHERE workspace = ? AND name = ? '
                "AND version = ?",
                (WORKSPACE, name, int(version)),
            ).fetchall()
            aliases = conn.execute(
                "SELECT alias FROM registered_model_aliases WHERE workspace = ? AND name = ? "
                "AND version = ?",
                (WORKSPACE, name, int(version)),
            ).fetchall()
        return ModelVersionInfo(
            name=name,
            version=int(version),
            description=row[0],
            creation_timestamp=int(row[1]) if row[1] is not None else None,
            tags={str(k): str(v or "") for k, v in tags},
            aliases=sorted(str(a) for (a,) in aliases),
        )

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Check the version is live, then insert or repoint the alias row."""
        check_names(name, alias)
        with self._transaction(write=True) as conn:
            live = conn.execute(
                "SELECT 1 FROM model_versions WHERE workspace = ? AND name = ? AND version = ? "
                "AND (current_stage IS NULL OR current_stage != ?)",
                (WORKSPACE, name, int(version), _DELETED_STAGE),
            ).fetchone()
            if live is None:
                raise NeedsMlflow(f"model {name!r} has no version {version}")
            current = conn.execute(
                "SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ? "
                "AND alias = ?",
                (WORKSPACE, name, alias),
            ).fetchone()
            if current is not None and int(current[0]) == int(version):
                return  # already there: no write (MLflow's merge would change nothing either)
            conn.execute(
                "INSERT INTO registered_model_aliases (workspace, name, alias, version) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (workspace, name, alias) "
                "DO UPDATE SET version = excluded.version",
                (WORKSPACE, name, alias, int(version)),
            )

    def delete_alias(self, name: str, alias: str) -> None:
        """Check the model exists, then delete the alias row (if any)."""
        check_names(name, alias)
        with self._transaction(write=True) as conn:
            self._need_model(conn, name)
            conn.execute(
                "DELETE FROM registered_model_aliases WHERE workspace = ? AND name = ? "
                "AND alias = ?",
                (WORKSPACE, name, alias),
            )

    def set_tag(self, name: str, key: str, value: str) -> None:
        """Check the model exists, then insert or replace the tag row."""
        check_names(name)
        check_tag(key, value)
        with self._transaction(write=True) as conn:
            self._need_model(conn, name)
            conn.execute(
                'INSERT INTO registered_model_tags (workspace, name, "key", value) '
                'VALUES (?, ?, ?, ?) ON CONFLICT (workspace, "key", name) '
                "DO UPDATE SET value = excluded.value",
                (WORKSPACE, name, key, value),
            )

    def delete_tag(self, name: str, key: str) -> None:
        """Check the model exists, then delete the tag row (if any)."""
        check_names(name)
        check_tag(key)
        with self._transaction(write=True) as conn:
            self._need_model(conn, name)
            conn.execute(
                'DELETE FROM registered_model_tags WHERE workspace = ? AND name = ? AND "key" = ?',
                (WORKSPACE, name, key),
            )
