"""Opening stores by URL, safe-to-print URLs, and failures that name the cause."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import releaser.store
from releaser.errors import BadInput, ExternalUnavailable
from releaser.store import default_store_url, open_store, redact_url
from releaser.store.base import Write

from .conftest import draft


def test_exported_names() -> None:
    assert sorted(releaser.store.__all__) == [
        "Delete",
        "METRIC_VARIANTS",
        "MetricDelta",
        "Record",
        "RestoreSource",
        "Snapshot",
        "Store",
        "TABLES",
        "Table",
        "Write",
        "bulk_decoding",
        "default_store_url",
        "open_store",
        "redact_url",
    ]


class TestSqliteUrls:
    def test_default_url_creates_its_directory(self, tmp_path: Path) -> None:
        url = default_store_url(tmp_path)
        assert url == f"sqlite://{tmp_path.resolve().as_posix()}/.releaser/state.db"
        store = open_store(url)
        try:
            store.commit([Write("release", "r", {}, 0)], draft())
        finally:
            store.close()
        assert (tmp_path / ".releaser" / "state.db").is_file()
        assert store.url == url

    @pytest.mark.parametrize(
        "form", ["sqlite://{p}", "sqlite:///{p}", "{p}"], ids=["three", "four", "plain"]
    )
    def test_url_forms_name_the_same_file(self, tmp_path: Path, form: str) -> None:
        (tmp_path / "deep").mkdir()
        path = (tmp_path / "deep" / "state.db").as_posix()
        first = open_store(f"sqlite://{path}")
        first.commit([Write("release", "r", {}, 0)], draft())
        first.close()
        again = open_store(form.format(p=path))
        try:
            assert again.get("release", "r") is not None
        finally:
            again.close()

    def test_relative_plain_path_is_resolved(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "sub").mkdir()
        store = open_store("sub/state.db")
        store.close()
        assert store.url == f"sqlite://{(tmp_path / 'sub' / 'state.db').resolve().as_posix()}"

    @pytest.mark.parametrize(
        "url", ["sqlite://relative.db", "sqlite://", "sqlite:///x.db?mode=ro", "   "]
    )
    def test_bad_sqlite_urls(self, url: str) -> None:
        with pytest.raises(BadInput) as info:
            open_store(url)
        assert info.value.hint and "sqlite:///" in info.value.hint

    @pytest.mark.parametrize("form", ["sqlite://{p}", "{p}"])
    def test_a_missing_folder_is_refused_not_created(self, tmp_path: Path, form: str) -> None:
        # A mistyped --store must not start an empty store that answers "nothing there".
        path = (tmp_path / "typo" / "state.db").as_posix()
        with pytest.raises(BadInput, match="does not exist") as info:
            open_store(form.format(p=path))
        assert info.value.hint and "RELEASER_STORE" in info.value.hint
        assert list(tmp_path.iterdir()) == []

    def test_directory_that_cannot_exist(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        with pytest.raises(ExternalUnavailable) as info:
            open_store(f"sqlite://{blocker.as_posix()}/state.db")
        assert "cannot open the state store" in str(info.value)
        assert info.value.hint

    def test_file_that_is_not_a_database(self, tmp_path: Path) -> None:
        junk = tmp_path / "state.db"
        junk.write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(ExternalUnavailable, match="not a database"):
            open_store(str(junk))


class TestUnknownAndUnreachable:
    def test_unknown_scheme(self) -> None:
        with pytest.raises(BadInput) as info:
            open_store("mysql://root:hunter2@db/releaser")
        assert "mysql" in str(info.value) and "hunter2" not in str(info.value)
        assert info.value.hint and "postgresql://" in info.value.hint

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql://u:s3cret@127.0.0.1:1/x",
            "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=5",
            "host=127.0.0.1 port=1 user=u password=s3cret dbname=x",
        ],
    )
    def test_unreachable_postgres_hides_the_password(self, url: str) -> None:
        with pytest.raises(ExternalUnavailable) as info:
            open_store(url)
        text = f"{info.value} {info.value.hint}"
        assert "s3cret" not in text
        assert "***" in str(info.value)
        assert "127.0.0.1" in str(info.value)

    def test_invalid_postgres_url_hides_the_password(self) -> None:
        with pytest.raises(BadInput) as info:
            open_store("postgresql://u:s3cret@127.0.0.1:1/x?bogus=1")
        assert "s3cret" not in f"{info.value} {info.value.hint}"
        assert "bogus" in str(info.value)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://:s3cret@h/db", "postgres://:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://h/db?user=u&password=s3cret&x=1",
            "postgresql://h/db?user=u&password=***&x=1",
        ),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("host=h password=s3cret dbname=d", "host=h password=*** dbname=d"),
        ("host=h password = 'se cr\\'et' dbname=d", "host=h password = *** dbname=d"),
        ("https://t0ken@prom.example.org/x", "https://***@prom.example.org/x"),
        ("sqlite:///tmp/state.db", "sqlite:///tmp/state.db"),
        ("/tmp/state.db", "/tmp/state.db"),
    ],
)
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe


def test_importing_the_store_does_not_import_psycopg() -> None:
    code = (
        "import sys, releaser.store, releaser.store.sqlite; "
        "sys.exit(1 if 'psycopg' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
