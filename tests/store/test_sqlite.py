"""What only the sqlite store does: WAL, and waiting for (or giving up on) the write lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from releaser.errors import ExternalUnavailable
from releaser.store.base import Write
from releaser.store.sqlite import SqliteStore

from . import _workers
from .conftest import draft


def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "state.db").close()
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_writer_gives_up_on_a_held_lock_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, busy_timeout_ms=50)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(ExternalUnavailable) as info:
            store.commit([Write("release", "r", {}, 0)], draft())
        assert info.value.hint and "retry" in info.value.hint
        # Readers are not blocked by a writer in WAL mode.
        assert store.get("release", "r") is None
        holder.execute("ROLLBACK")
        # Once the lock is free the same store commits normally.
        assert store.commit([Write("release", "r", {}, 0)], draft()).seq == 1
    finally:
        holder.close()
        store.close()


def test_reader_sees_commits_from_another_connection(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "state.db")
    second = SqliteStore(tmp_path / "state.db")
    try:
        first.commit([Write("release", "r", {"v": 1}, 0)], draft())
        record = second.get("release", "r")
        assert record is not None and record.value == {"v": 1}
    finally:
        first.close()
        second.close()


@pytest.mark.slow
def test_processes_opening_a_new_store_together_all_succeed(tmp_path: Path) -> None:
    # Switching a fresh file to WAL answers "database is locked" without waiting while
    # another connection does the same; before the retry about one round in ten failed,
    # so twenty rounds of four openers caught it in 9 runs out of 10.
    outcomes = _workers.run_processes(_workers.open_fresh_stores, str(tmp_path), 4)
    assert [status for _, status, _ in outcomes] == ["ok"] * 4, outcomes
    for round_ in range(_workers.FRESH_ROUNDS):
        conn = sqlite3.connect(tmp_path / f"round-{round_}.db")
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            conn.close()
