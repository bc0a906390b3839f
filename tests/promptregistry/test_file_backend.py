"""The file backend specifically: layout, immutability, concurrency, tampering, outages."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from promptregistry import (
    BackendUnavailable,
    FilePromptBackend,
    InvalidPrompt,
    PromptNotFound,
    PromptRegistryError,
    PromptSpec,
    open_backend,
)

SpecMaker = Callable[..., PromptSpec]


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_layout_is_plain_yaml_and_jsonl(tmp_path: Path, make_spec: SpecMaker) -> None:
    backend = FilePromptBackend(tmp_path)
    backend.register(make_spec("greet", "Hello {{ who }}!\nSecond line\n", author="al"))
    backend.register(make_spec("greet", "Hi {{ who }}"))
    backend.set_alias("greet", "production", 1, reason="launch", actor="al")
    assert all_files(tmp_path) == [
        "prompts/greet/1.yaml",
        "prompts/greet/2.yaml",
        "prompts/greet/alias-history.jsonl",
        "prompts/greet/aliases.yaml",
    ]
    text = (tmp_path / "prompts/greet/1.yaml").read_text()
    assert "template: |\n  Hello {{ who }}!\n  Second line\n" in text  # readable in diffs
    data = yaml.safe_load(text)
    assert (data["name"], data["version"], data["author"]) == ("greet", 1, "al")
    assert yaml.safe_load((tmp_path / "prompts/greet/aliases.yaml").read_text()) == {
        "production": 1
    }
    [line] = (tmp_path / "prompts/greet/alias-history.jsonl").read_text().splitlines()
    assert json.loads(line)["reason"] == "launch"


def test_stray_entries_are_not_prompts(tmp_path: Path, make_spec: SpecMaker) -> None:
    backend = FilePromptBackend(tmp_path)
    backend.register(make_spec("greet"))
    (tmp_path / "prompts/.hidden").mkdir()
    (tmp_path / "prompts/.hidden/1.yaml").write_text("name: x\n")
    (tmp_path / "prompts/empty").mkdir()
    (tmp_path / "prompts/README.md").write_text("notes")
    assert backend.list_names() == ["greet"]
    with pytest.raises(PromptNotFound, match="prompts: greet"):
        backend.get("empty")


def test_version_files_are_never_rewritten(tmp_path: Path, make_spec: SpecMaker) -> None:
    backend = FilePromptBackend(tmp_path)
    backend.register(make_spec("greet"))
    first = tmp_path / "prompts/greet/1.yaml"
    before = (first.read_bytes(), first.stat().st_mtime_ns, first.stat().st_ino)
    backend.register(make_spec("greet", "other {{ who }}"))
    backend.set_alias("greet", "production", 2)
    backend.set_alias("greet", "production", 1)
    backend.delete_alias("greet", "production")
    assert (first.read_bytes(), first.stat().st_mtime_ns, first.stat().st_ino) == before


def test_hand_edited_version_is_refused(tmp_path: Path, make_spec: SpecMaker) -> None:
    backend = FilePromptBackend(tmp_path)
    backend.register(make_spec("greet"))
    path = tmp_path / "prompts/greet/1.yaml"
    path.write_text(path.read_text().replace("Hello", "Goodbye"))
    with pytest.raises(InvalidPrompt, match="was edited after it was written") as info:
        backend.get("greet", version=1)
    assert "new version" in (info.value.hint or "")


def test_misplaced_version_file_is_refused(tmp_path: Path, make_spec: SpecMaker) -> None:
    backend = FilePromptBackend(tmp_path)
    backend.register(make_spec("greet"))
    backend.register(make_spec("other"))
    (tmp_path / "prompts/greet/2.yaml").write_bytes(
        (tmp_path / "prompts/other/1.yaml").read_bytes()
    )
    with pytest.raises(InvalidPrompt, match="holds 'other' version 1"):
        backend.get("greet", version=2)
    (tmp_path / "prompts/greet/3.yaml").write_text("just: [a, list")
    with pytest.raises(InvalidPrompt, match="not a valid prompt version"):
        backend.get("greet", version=3)


def test_torn_last_history_line_is_ignored(tmp_path: Path, make_spec: SpecMaker) -> None:
    backend = FilePromptBackend(tmp_path)
    backend.register(make_spec("greet"))
    backend.set_alias("greet", "production", 1)
    history = tmp_path / "prompts/greet/alias-history.jsonl"
    with open(history, "a") as fh:
        fh.write('{"name": "greet", "alias": "prod')  # a crash mid-append
    assert [c.to_version for c in backend.alias_history("greet", "production")] == [1]
    history.write_text("garbage\n" + history.read_text())
    with pytest.raises(InvalidPrompt, match=r"alias-history.jsonl:1: not a valid alias change"):
        backend.alias_history("greet", "production")


REGISTER_WORKER = """
import sys
from promptregistry import FilePromptBackend, PromptSpec
backend = FilePromptBackend(sys.argv[1])
worker = sys.argv[2]
for i in range(int(sys.argv[3])):
    spec = PromptSpec(name="race", template=f"worker {worker} item {i}")
    print(backend.register(spec).version, flush=True)
"""


@pytest.mark.slow
def test_concurrent_registrations_get_distinct_versions(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    workers, each = 4, 10
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER_WORKER, str(tmp_path), str(w), str(each)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        for w in range(workers)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * workers
    claimed = sorted(int(v) for out in outputs for v in out.split())
    assert claimed == list(range(1, workers * each + 1))
    backend = FilePromptBackend(tmp_path)
    assert backend.list_versions("race") == claimed
    templates = {backend.get("race", version=v).template for v in claimed}
    assert templates == {f"worker {w} item {i}" for w in range(workers) for i in range(each)}
    assert not [p for p in (tmp_path / "prompts/race").iterdir() if p.name.startswith(".")]


ALIAS_WORKER = """
import sys
from promptregistry import FilePromptBackend
backend = FilePromptBackend(sys.argv[1])
for i in range(int(sys.argv[3])):
    backend.set_alias("race", "production", 1 + i % 2, actor=sys.argv[2])
"""


@pytest.mark.slow
def test_concurrent_alias_moves_keep_a_whole_history(
    tmp_path: Path, make_spec: SpecMaker, child_env: dict[str, str]
) -> None:
    backend = FilePromptBackend(tmp_path)
    backend.register(make_spec("race", "one {{ who }}"))
    backend.register(make_spec("race", "two {{ who }}"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ALIAS_WORKER, str(tmp_path), f"w{w}", "10"], env=child_env
        )
        for w in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    history = backend.alias_history("race", "production")
    assert history, "no moves recorded"
    # every recorded move starts where the previous one ended: no lost or interleaved writes
    for before, after in zip(history, history[1:], strict=False):
        assert after.from_version == before.to_version
    assert backend.aliases("race") == {"production": history[-1].to_version}


def test_missing_root_is_backend_unavailable(tmp_path: Path, make_spec: SpecMaker) -> None:
    backend = FilePromptBackend(tmp_path / "root")
    backend.register(make_spec("greet"))
    (tmp_path / "root").rename(tmp_path / "moved")
    for call in (
        lambda: backend.get("greet"),
        backend.list_names,
        lambda: backend.aliases("greet"),
        lambda: backend.set_alias("greet", "production", 1),
    ):
        with pytest.raises(BackendUnavailable, match="does not exist"):
            call()
    with pytest.raises(BackendUnavailable, match="does not exist"):
        FilePromptBackend(tmp_path / "root", create=False).get("greet")


def test_unwritable_root_is_backend_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BackendUnavailable, match="cannot create prompt directory"):
        FilePromptBackend(blocker / "root")


def test_open_backend_from_uri(tmp_path: Path) -> None:
    backend = open_backend((tmp_path / "reg").as_uri())
    assert isinstance(backend, FilePromptBackend)
    assert backend.root == tmp_path / "reg"
    assert backend.url == (tmp_path / "reg").as_uri()
    with pytest.raises(PromptRegistryError, match="cannot tell which backend"):
        open_backend("just-a-word")


def test_another_folder_name_and_its_uri(tmp_path: Path, make_spec: SpecMaker) -> None:
    backend = FilePromptBackend(tmp_path, folder="llm-prompts")
    backend.register(make_spec("greet"))
    assert all_files(tmp_path) == ["llm-prompts/greet/1.yaml"]
    assert backend.url == f"{tmp_path.as_uri()}?folder=llm-prompts"
    reopened = open_backend(backend.url)
    assert isinstance(reopened, FilePromptBackend)
    assert (
        reopened.get("greet", version=1).content_hash
        == backend.get("greet", version=1).content_hash
    )
    assert FilePromptBackend(tmp_path).list_names() == []  # the default folder is another one


@pytest.mark.parametrize("folder", ["", ".", "..", "a/b"])
def test_folder_is_one_directory_name(tmp_path: Path, folder: str) -> None:
    with pytest.raises(ValueError, match="one directory name"):
        FilePromptBackend(tmp_path, folder=folder)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("query", ["?folder=a%2Fb", "?dir=x", "?folder=a&folder=b"])
def test_bad_file_uri_query_is_refused(tmp_path: Path, query: str) -> None:
    with pytest.raises(PromptRegistryError, match="file URI"):
        open_backend(tmp_path.as_uri() + query)
    assert list(tmp_path.iterdir()) == []
