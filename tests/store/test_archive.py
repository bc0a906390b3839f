"""Store export and import: round trips between backends, and every kind of bad archive.

Real stores on both backends (PostgreSQL when ``RELEASER_TEST_POSTGRES_DSN`` is set);
the archives are real files, damaged the way a disk, a copy or an editor would.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from releaser.api.audit import verify_content
from releaser.api.store_io import export_store, import_store
from releaser.core.stats_aggregates import VariantStats
from releaser.core.unit_sketch import UnitSketch, unit_salt
from releaser.errors import BadInput, CheckFailed
from releaser.store._bulk import TABLES
from releaser.store.archive import FORMAT, MANIFEST, ArchiveReader, member_name
from releaser.store.base import MetricDelta, Store, UnitDelta, Write

from .conftest import BACKENDS, Backend, draft, make_backend

# Values whose text a careless round trip changes: exponents, -0.0, subnormals, unicode.
ODD = {"big": 7.2e246, "neg_zero": -0.0, "tiny": 5e-324, "i": 10**18, "s": "ü\u2603\n\"'"}


SALT = unit_salt(42, "svc-rollout")


def fill(store: Store, releases: int = 12) -> None:
    """A realistic history: releases, a rollout advanced and rolled back, metrics."""
    for i in range(releases):
        store.commit(
            [Write("release", f"r{i:03d}", {"id": f"r{i:03d}", "n": i, **ODD}, 0)],
            draft(f"release:r{i:03d}", "release.create"),
        )
    store.commit([Write("rollout", "svc", {"step": 0}, 0)], draft("rollout:svc", "start"))
    for step in range(1, 4):
        store.commit(
            [Write("rollout", "svc", {"step": step}, step)],
            draft("rollout:svc", "advance"),
            also=[draft("alias:svc", "alias.move", after={"to": step})],
        )
    for step in range(3):
        for variant in ("baseline", "candidate"):
            stats = VariantStats.of(
                errors=[False, True, False],
                latencies_ms=[3.0, 40.0, 900.0 + step],
                scores=[0.25, 0.5],
                slow_threshold_ms=250.0,
                tokens=[(120, 30), (0, 0), (90_000, 20_000 + step)],
            )
            sketch = UnitSketch()
            for unit in range(10 * (step + 1)):
                sketch.add(SALT, f"{variant}-{unit}")
            units = (UnitDelta("(percent)", 3, sketch),)
            store.add_metrics(
                [MetricDelta("svc-rollout", step, variant, stats, units)],
                batch_id=f"b-{step}-{variant}",
            )


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as the snapshot reads them."""
    with store.snapshot() as snap:
        return {t.name: list(snap.rows(t)) for t in TABLES}


@pytest.fixture(params=BACKENDS)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    (tmp_path / "source").mkdir()
    made = make_backend(request.param, tmp_path / "source")
    yield made
    made.cleanup()


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    (tmp_path / "target").mkdir()
    made = make_backend(request.param, tmp_path / "target")
    yield made
    made.cleanup()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """An archive of a filled sqlite store."""
    from releaser.store.sqlite import SqliteStore

    with SqliteStore(tmp_path / "made.db") as store:
        fill(store)
        export_store(store, tmp_path / "backup.zip")
    return tmp_path / "backup.zip"


def test_round_trip_between_backends_keeps_every_row_and_verifies(
    source: Backend, target: Backend, tmp_path: Path
) -> None:
    path = tmp_path / "backup.zip"
    with source.open() as store:
        fill(store)
        before = dump(store)
        head = store.audit_head()
        steps: list[str] = []
        summary = export_store(store, path, phase=steps.append)
    assert steps == [f"reading {source.url}", "verifying the archive"]
    assert summary.head_seq == head[0] == 19 and summary.head_hash == head[1]
    assert summary.rows == {t.name: len(before[t.name]) for t in TABLES}
    assert summary.rows["rollout_latency_bins"] > 0 and summary.rows["metric_batches"] == 6
    assert summary.rows["rollout_token_bins"] == 3 * 2 * 3
    assert summary.rows["rollout_unit_sketches"] == 3 * 2
    with target.open() as store:
        steps.clear()
        imported = import_store(store, path, phase=steps.append)
        assert steps == [
            "checking the archive",
            "verifying the archive",
            f"writing into {target.url}",
            f"verifying {target.url} before commit",
        ]
        assert imported.rows == summary.rows
        assert dump(store) == before
        assert store.audit_head() == head
        with store.snapshot() as snap:
            result = verify_content(snap)
        assert result.ok and result.records == 13 and result.chain.count == 19
        # The imported store works on: the next commit chains on the imported head.
        store.commit([Write("rollout", "svc", {"step": 9}, 4)], draft("rollout:svc", "advance"))
        assert store.get("release", "r000").value["big"] == 7.2e246  # type: ignore[union-attr]
        read = store.read_metrics("svc-rollout")[(2, "candidate")]
        assert read.requests == 3 and read.token_requests == 3
        assert (read.prompt_tokens, read.completion_tokens) == (90_120, 20_032)
        assert read.tokens_sumsq == 150.0**2 + 110_002.0**2
        assert read.tokens.counts[-1] == 1 and read.tokens.counts[0] == 1
        units = store.read_units("svc-rollout")
        assert units[(2, "candidate", "(percent)")][0] == 3
        expected = UnitSketch()
        for unit in range(30):
            expected.add(SALT, f"candidate-{unit}")
        assert units[(2, "candidate", "(percent)")][1] == expected
        assert store.add_metrics([], batch_id="b-0-baseline") is True  # empty: nothing to add
    # The manifest names the source, with no password.
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read(MANIFEST))
    assert manifest["format"] == FORMAT and manifest["source"]["backend"] in (
        "sqlite",
        "postgresql",
    )
    assert manifest["source"]["schema_version"] == 7
    assert manifest["audit_head"] == {"seq": head[0], "hash": head[1]}


def as_schema_5(path: Path) -> None:
    """Rewrite an archive as a releaser of schema 5 made it: no token columns or bins."""
    lines = read_member(path, "rollout_metrics.jsonl").splitlines(keepends=True)
    old = b""
    for line in lines:
        row = json.loads(line)
        for name in row.copy():
            if "token" in name:
                del row[name]
        old += json.dumps(row).encode() + b"\n"
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read(MANIFEST))
    manifest["source"]["schema_version"] = 5
    del manifest["members"]["rollout_token_bins.jsonl"]
    del manifest["members"]["rollout_unit_sketches.jsonl"]
    rewrite(
        path,
        {
            "rollout_metrics.jsonl": old,
            "rollout_token_bins.jsonl": None,
            "rollout_unit_sketches.jsonl": None,
            MANIFEST: json.dumps(manifest).encode(),
        },
    )


def as_schema_6(path: Path) -> None:
    """Rewrite an archive as a releaser of schema 6 made it: no unit sketches."""
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read(MANIFEST))
    manifest["source"]["schema_version"] = 6
    del manifest["members"]["rollout_unit_sketches.jsonl"]
    rewrite(path, {"rollout_unit_sketches.jsonl": None, MANIFEST: json.dumps(manifest).encode()})


def test_an_archive_of_schema_6_imports_with_no_unit_sketches(
    archive: Path, target: Backend, tmp_path: Path
) -> None:
    as_schema_6(archive)
    with target.open() as store:
        summary = import_store(store, archive)
        assert summary.rows["rollout_unit_sketches"] == 0 and summary.rows["rollout_metrics"] == 6
        assert store.read_units("svc-rollout") == {}
        assert store.read_metrics("svc-rollout")[(2, "candidate")].requests == 3
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("rollout_unit_sketches.jsonl", b"")
    assert "is not part of an archive of schema version 6" in refused(archive, tmp_path)


def test_an_archive_carries_sketches_not_unit_ids(archive: Path) -> None:
    text = read_member(archive, "rollout_unit_sketches.jsonl").decode()
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 6 and all(r["registers"].startswith("hll12:") for r in rows)
    everything = b"".join(read_member(archive, member_name(t)) for t in TABLES)
    assert b"candidate-7" not in everything and b"baseline-7" not in everything


def test_an_archive_of_schema_5_imports_with_no_tokens(
    archive: Path, target: Backend, tmp_path: Path
) -> None:
    as_schema_5(archive)
    with target.open() as store:
        summary = import_store(store, archive)
        assert summary.rows["rollout_token_bins"] == 0 and summary.rows["rollout_metrics"] == 6
        for (_step, _variant), stats in store.read_metrics("svc-rollout").items():
            assert stats.requests == 3 and stats.quality_count == 2
            assert stats.token_requests == stats.prompt_tokens == 0 and not any(stats.tokens.counts)
    # A schema-5 archive that carries a token member anyway is not one releaser made.
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("rollout_token_bins.jsonl", b"")
    assert "is not part of an archive of schema version 5" in refused(archive, tmp_path)


def test_an_empty_store_round_trips(backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "empty.zip"
    with backend.open() as store:
        summary = export_store(store, path)
    assert summary.head_seq == 0 and set(summary.rows.values()) == {0}
    from releaser.store.sqlite import SqliteStore

    with SqliteStore(tmp_path / "t.db") as store:
        import_store(store, path)
        assert store.audit_head()[0] == 0


def test_import_refuses_a_store_that_is_not_empty(backend: Backend, archive: Path) -> None:
    with backend.open() as store:
        store.add_metrics(
            [MetricDelta("x", 0, "baseline", VariantStats.of(errors=[False]))], batch_id="b"
        )
        before = dump(store)
        with pytest.raises(
            BadInput,
            match=r"is not empty \(it holds rollout_metrics.*nothing "
            r"was written",
        ):
            import_store(store, archive)
        assert dump(store) == before
        store.commit([Write("release", "r", {}, 0)], draft("release:r", "create"))
        with pytest.raises(BadInput, match="holds records, audit_events"):
            import_store(store, archive)


@pytest.mark.postgres
def test_the_password_never_reaches_the_archive(tmp_path: Path) -> None:
    from .conftest import PostgresBackend, postgres_dsn, with_params

    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip("needs RELEASER_TEST_POSTGRES_DSN")
    backend = PostgresBackend(dsn)
    try:
        secret = "s3cret-pw-do-not-write"
        from releaser.store.postgres import PostgresStore

        with PostgresStore(with_params(backend.url, password=secret)) as store:
            fill(store, releases=2)
            summary = export_store(store, tmp_path / "b.zip")
        assert "***" in summary.store and secret not in summary.store
        with zipfile.ZipFile(tmp_path / "b.zip") as zf:
            for info in zf.infolist():
                assert secret.encode() not in zf.read(info), info.filename
            assert "password=***" in json.loads(zf.read(MANIFEST))["source"]["url"]
    finally:
        backend.cleanup()


def test_export_refuses_to_overwrite_unless_forced(backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "b.zip"
    path.write_bytes(b"keep me")
    with backend.open() as store:
        with pytest.raises(BadInput, match="exists; nothing was written"):
            export_store(store, path)
        assert path.read_bytes() == b"keep me"
        export_store(store, path, force=True)
        with pytest.raises(BadInput, match="does not exist"):
            export_store(store, tmp_path / "no" / "b.zip")
    assert zipfile.is_zipfile(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_export_refuses_a_broken_store_and_writes_nothing(backend: Backend, tmp_path: Path) -> None:
    with backend.open() as store:
        fill(store, releases=3)
    backend.unguard()
    backend.sql("UPDATE audit_events SET payload = replace(payload, 'r001', 'rXXX') WHERE seq = 2")
    path = tmp_path / "b.zip"
    with backend.open() as store, pytest.raises(CheckFailed) as caught:
        export_store(store, path)
    assert "does not verify, so no archive was written" in caught.value.message
    assert "entry 2: entry 2 has been altered" in caught.value.message
    assert list(tmp_path.glob("*b.zip*")) == []


# -- bad archives ---------------------------------------------------------------------


def rewrite(path: Path, change: dict[str, bytes | None], *, fix_manifest: bool = True) -> None:
    """Rewrite the archive with members replaced (None: removed), the manifest's hashes
    recomputed as an attacker who knows the format would."""
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    for name, data in change.items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    if fix_manifest:
        manifest = json.loads(members[MANIFEST])
        for name, entry in manifest["members"].items():
            if name in members:
                data = members[name]
                entry.update(
                    sha256=hashlib.sha256(data).hexdigest(),
                    bytes=len(data),
                    rows=data.count(b"\n"),
                )
        members[MANIFEST] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def read_member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


def refused(path: Path, tmp_path: Path) -> str:
    """Import ``path`` into a new sqlite store; the error message, the store left empty."""
    from releaser.store.sqlite import SqliteStore

    with SqliteStore(tmp_path / f"target-{len(list(tmp_path.iterdir()))}.db") as store:
        with pytest.raises(BadInput) as caught:
            import_store(store, path)
        assert dump(store) == {t.name: [] for t in TABLES}
        assert store.audit_head()[0] == 0
    return caught.value.message


def test_a_truncated_archive_is_refused(archive: Path, tmp_path: Path) -> None:
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert "is not a complete store archive" in refused(archive, tmp_path)


def test_an_edited_member_is_named(archive: Path, tmp_path: Path) -> None:
    text = read_member(archive, "records.jsonl")
    assert b'"key": "r003"' in text
    text = text.replace(b'"key": "r003"', b'"key": "r00X"')
    rewrite(archive, {"records.jsonl": text}, fix_manifest=False)
    message = refused(archive, tmp_path)
    assert "member records.jsonl" in message and "SHA-256 is not the one" in message


def test_a_dropped_row_is_named(archive: Path, tmp_path: Path) -> None:
    lines = read_member(archive, "rollout_metrics.jsonl").splitlines(keepends=True)
    rewrite(archive, {"rollout_metrics.jsonl": b"".join(lines[1:])}, fix_manifest=False)
    message = refused(archive, tmp_path)
    assert "member rollout_metrics.jsonl: holds 5 rows" in message and "says 6 rows" in message


def test_an_edited_payload_with_the_manifest_recomputed_is_caught_by_the_chain(
    archive: Path, tmp_path: Path
) -> None:
    lines = read_member(archive, "audit_events.jsonl").splitlines(keepends=True)
    row = json.loads(lines[4])
    row["payload"] = row["payload"].replace("release.create", "release.delete")
    lines[4] = (json.dumps(row, ensure_ascii=False) + "\n").encode()
    rewrite(archive, {"audit_events.jsonl": b"".join(lines)})
    message = refused(archive, tmp_path)
    assert "does not verify, so nothing was written" in message
    assert "entry 5: entry 5 has been altered" in message


def test_a_rehashed_chain_still_fails_on_the_records_it_vouched_for(
    archive: Path, tmp_path: Path
) -> None:
    """An attacker who edits a record and re-hashes: the entry's digest names the record."""
    lines = read_member(archive, "records.jsonl").splitlines(keepends=True)
    row = json.loads(lines[0])
    row["value"] = row["value"].replace('"n":0', '"n":1')
    lines[0] = (json.dumps(row, ensure_ascii=False) + "\n").encode()
    rewrite(archive, {"records.jsonl": b"".join(lines)})
    message = refused(archive, tmp_path)
    assert "record release/r000" in message and "is not the value audit entry 1 wrote" in message


def test_a_dropped_tail_does_not_match_the_manifest_head(archive: Path, tmp_path: Path) -> None:
    lines = read_member(archive, "audit_events.jsonl").splitlines(keepends=True)
    rewrite(archive, {"audit_events.jsonl": b"".join(lines[:-2])})
    message = refused(archive, tmp_path)
    assert "entries 18..19 are missing" in message


def test_a_wrong_format_version_is_refused(archive: Path, tmp_path: Path) -> None:
    manifest = json.loads(read_member(archive, MANIFEST))
    manifest["format"] = "releaser-store-archive/9"
    rewrite(archive, {MANIFEST: json.dumps(manifest).encode()}, fix_manifest=False)
    message = refused(archive, tmp_path)
    assert "member manifest.json: format 'releaser-store-archive/9' is not" in message


@pytest.mark.parametrize("name", ["../../etc/cron.d/x", "/abs/records.jsonl", "extra.jsonl"])
def test_a_member_that_is_not_part_of_an_archive_is_refused(
    archive: Path, tmp_path: Path, name: str
) -> None:
    rewrite(archive, {name: b"{}\n"}, fix_manifest=False)
    message = refused(archive, tmp_path)
    assert f"member {name}: is not part of a store archive" in message


def test_a_missing_or_doubled_member_is_refused(archive: Path, tmp_path: Path) -> None:
    rewrite(archive, {"metric_batches.jsonl": None}, fix_manifest=False)
    assert "has no member metric_batches.jsonl" in refused(archive, tmp_path)
    with zipfile.ZipFile(archive, "a") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("records.jsonl", b"")
    assert "member records.jsonl: appears twice" in refused(archive, tmp_path)


def test_an_oversized_member_and_line_are_refused(archive: Path) -> None:
    with pytest.raises(BadInput, match="member records.jsonl: is [0-9]+ bytes, more than the 100"):
        ArchiveReader(archive, max_member_bytes=100)
    with (
        ArchiveReader(archive, max_line_bytes=64) as reader,
        pytest.raises(BadInput, match="member records.jsonl: line 1 is longer than 64 bytes"),
    ):
        reader.check_members()
    manifest = read_member(archive, MANIFEST)
    rewrite(archive, {MANIFEST: manifest + b" " * (1024 * 1024)}, fix_manifest=False)
    with pytest.raises(BadInput, match="member manifest.json: is [0-9]+ bytes, more than"):
        ArchiveReader(archive)


def test_a_field_of_the_wrong_type_names_the_line(archive: Path, tmp_path: Path) -> None:
    lines = read_member(archive, "rollout_latency_bins.jsonl").splitlines(keepends=True)
    row = json.loads(lines[2])
    row["count"] = "many"
    lines[2] = (json.dumps(row) + "\n").encode()
    rewrite(archive, {"rollout_latency_bins.jsonl": b"".join(lines)})
    message = refused(archive, tmp_path)
    assert "member rollout_latency_bins.jsonl: line 3: count is str, not int" in message


def test_a_failed_check_of_the_target_rolls_everything_back(
    backend: Backend, archive: Path
) -> None:
    """The target is verified inside the import's transaction: a failure leaves it empty."""
    with backend.open() as store, ArchiveReader(archive) as reader:

        def check(snap: Any) -> None:
            assert verify_content(snap).ok  # what was written reads back and verifies
            raise CheckFailed("stop here")

        with pytest.raises(CheckFailed, match="stop here"):
            store.restore(reader, check)
        assert dump(store) == {t.name: [] for t in TABLES}
        assert store.audit_head()[0] == 0


def test_reimport_of_an_export_of_an_import_is_byte_identical(
    archive: Path, tmp_path: Path
) -> None:
    from releaser.store.sqlite import SqliteStore

    with SqliteStore(tmp_path / "x.db") as store:
        import_store(store, archive)
        export_store(store, tmp_path / "again.zip")
    for table in TABLES:
        name = member_name(table)
        assert read_member(archive, name) == read_member(tmp_path / "again.zip", name)


KILLED_IMPORT = """
import sys, time
from releaser.store import open_store
from releaser.store.archive import ArchiveReader
store = open_store(sys.argv[1])
def check(snap):
    print(snap.audit_head()[0], flush=True)  # every row written, not committed
    time.sleep(600)
with ArchiveReader(sys.argv[2]) as reader:
    store.restore(reader, check)
"""


def test_an_import_killed_before_it_commits_leaves_the_target_empty(
    backend: Backend, archive: Path
) -> None:
    import signal
    import subprocess
    import sys

    with backend.open():
        pass  # the schema exists before the child opens it
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_IMPORT, backend.url, str(archive)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "19"  # the child's transaction holds it all
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    with backend.open() as store:
        assert dump(store) == {t.name: [] for t in TABLES}
        assert store.audit_head()[0] == 0
        import_store(store, archive)  # and the store takes the import afterwards
        assert store.audit_head()[0] == 19


def test_export_names_an_entry_holding_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    """sqlite keeps whatever bytes are written: the snapshot reads them, verification names
    the entry, and no archive is written."""
    from .conftest import SqliteBackend

    backend = SqliteBackend(tmp_path / "state.db")
    with backend.open() as store:
        fill(store, releases=3)
    backend.unguard()
    [(payload,)] = backend.sql("SELECT CAST(payload AS BLOB) FROM audit_events WHERE seq = 2")
    broken = bytes(payload).replace(b"release.create", b"release.cr\xffate")
    backend.sql("UPDATE audit_events SET payload = CAST(? AS TEXT) WHERE seq = 2", (broken,))
    with backend.open() as store, pytest.raises(CheckFailed) as caught:
        export_store(store, tmp_path / "b.zip")
    assert "entry 2 holds bytes that are not UTF-8 text" in caught.value.message
    assert not (tmp_path / "b.zip").exists()


def test_an_archive_with_a_damaged_sketch_is_refused(archive: Path, tmp_path: Path) -> None:
    lines = read_member(archive, "rollout_unit_sketches.jsonl").splitlines(keepends=True)
    row = json.loads(lines[2])
    row["registers"] = "hll12:" + "QUFBQQ=="  # base64 of a stream that is no zlib
    lines[2] = json.dumps(row).encode() + b"\n"
    rewrite(archive, {"rollout_unit_sketches.jsonl": b"".join(lines)})
    message = refused(archive, tmp_path)
    assert "rollout_unit_sketches.jsonl line 3" in message and "not valid" in message
