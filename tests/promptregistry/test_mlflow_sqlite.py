"""prefer_wal: sqlite MLflow stores in WAL mode, everything else left exactly as it was."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from promptregistry import MlflowPromptBackend, PromptSpec
from promptregistry.mlflow_sqlite import prefer_wal, sqlite_path


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve().as_posix()}"


def journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def rollback_journal_db(path: Path) -> None:
    """A sqlite database in the default (rollback-journal) mode with one row in it."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES ('kept')")
        conn.commit()
    assert journal_mode(path) == "delete"


def test_a_new_store_is_created_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    assert prefer_wal(sqlite_uri(db)) is True
    assert db.is_file() and journal_mode(db) == "wal"


def test_an_existing_store_is_switched_and_keeps_its_data(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    rollback_journal_db(db)
    assert prefer_wal(sqlite_uri(db)) is True
    assert journal_mode(db) == "wal"
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]
    assert prefer_wal(sqlite_uri(db)) is True  # already WAL: nothing to do


def test_a_store_another_process_is_writing_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    rollback_journal_db(db)
    with closing(sqlite3.connect(db, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO t VALUES ('in flight')")
        assert prefer_wal(sqlite_uri(db)) is False  # no error, no wait for the writer
        writer.execute("COMMIT")
    assert journal_mode(db) == "delete"
    assert prefer_wal(sqlite_uri(db)) is True  # the next opener switches it


def test_a_file_that_is_not_a_database_is_not_touched(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_bytes(b"not a sqlite database, just some text\n" * 200)
    before = db.read_bytes()
    assert prefer_wal(sqlite_uri(db)) is False
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:5000",
        "https://mlflow.example.org",
        "databricks",
        "postgresql://mlflow@localhost/mlflow",
        "sqlite:///:memory:",
        "sqlite://",
        "file:///tmp/mlruns",
    ],
)
def test_other_uris_are_ignored(uri: str) -> None:
    assert sqlite_path(uri) is None
    assert prefer_wal(uri) is False


def test_a_uri_with_options_is_left_as_the_user_wrote_it(tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    rollback_journal_db(db)
    assert prefer_wal(f"{sqlite_uri(db)}?mode=ro") is False
    assert journal_mode(db) == "delete"


def test_a_missing_folder_is_left_for_mlflow_to_report(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "mlflow.db"
    assert prefer_wal(sqlite_uri(db)) is False
    assert not db.parent.exists()


def test_a_relative_path_is_taken_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite:///rel/mlflow.db") == Path("rel/mlflow.db")
    (tmp_path / "rel").mkdir()
    assert prefer_wal("sqlite:///rel/mlflow.db") is True
    assert journal_mode(tmp_path / "rel" / "mlflow.db") == "wal"


@pytest.mark.slow
def test_the_prompt_backend_opens_mlflow_on_a_wal_store(tmp_path: Path) -> None:
    """MLflow creates its tables in the empty WAL database and works as usual."""
    db = tmp_path / "prompts.db"
    backend = MlflowPromptBackend(sqlite_uri(db))
    spec = PromptSpec(name="wal-check", template="Hi {{ who }}", variables={"who": "str"})
    version = backend.register(spec)
    backend.set_alias("wal-check", "production", version.version)
    assert journal_mode(db) == "wal"
    again = MlflowPromptBackend(sqlite_uri(db))  # a second client (another process, say)
    assert again.aliases("wal-check") == {"production": version.version}
    assert again.get("wal-check", alias="production").template == "Hi {{ who }}"
