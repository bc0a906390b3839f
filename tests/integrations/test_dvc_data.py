"""dataset_ref, dataset_is_pushed and open_dataset on a real DVC repo with a local remote."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from releaser.demo.workspace import ExampleWorkspace
from releaser.errors import ArtifactNotFound, BadInput, WorkspaceError
from releaser.integrations.dvc_data import (
    dataset_is_pushed,
    dataset_ref,
    open_dataset,
    tracked_paths,
)

pytestmark = pytest.mark.slow  # the example workspace takes ~15 s to build

RunGit = Callable[..., str]


def _dvc_out(root: Path, path: str) -> dict[str, object]:
    """The single output recorded in ``path``.dvc, as DVC wrote it."""
    recorded = yaml.safe_load((root / f"{path}.dvc").read_text(encoding="utf-8"))
    out: dict[str, object] = recorded["outs"][0]
    return out


def _dvc_add_and_push(root: Path, *paths: str, push: bool = True) -> None:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.add([str(root / p) for p in paths])
        if push:
            repo.push()


def _remote_object(ws: ExampleWorkspace, md5: str) -> Path:
    return ws.remote_dir / "files" / "md5" / md5[:2] / md5[2:]


def test_md5_matches_the_dvc_file(example_workspace: ExampleWorkspace, run_git: RunGit) -> None:
    root = example_workspace.root
    ref = dataset_ref(root, "data/golden.csv")
    out = _dvc_out(root, "data/golden.csv")
    assert ref.md5 == out["md5"]
    assert ref.size == out["size"]
    assert ref.nfiles is None
    assert ref.path == "data/golden.csv"
    assert ref.rev == run_git(root, "rev-parse", "HEAD")
    assert ref.remote == "local"


def test_md5_is_the_md5_of_the_bytes_read_back(example_workspace: ExampleWorkspace) -> None:
    root = example_workspace.root
    ref = dataset_ref(root, "data/train.csv")
    data = open_dataset(root, "data/train.csv", ref.rev)
    assert hashlib.md5(data).hexdigest() == ref.md5
    assert data == (root / "data/train.csv").read_bytes()


def test_paths_are_normalised(example_workspace: ExampleWorkspace) -> None:
    root = example_workspace.root
    plain = dataset_ref(root, "data/golden.csv")
    assert dataset_ref(root, "./data//golden.csv") == plain
    assert dataset_ref(root, str(root / "data" / "golden.csv")) == plain


def test_paths_outside_the_workspace_are_refused(
    example_workspace: ExampleWorkspace, tmp_path: Path
) -> None:
    with pytest.raises(BadInput):
        dataset_ref(example_workspace.root, "../elsewhere.csv")
    with pytest.raises(BadInput):
        dataset_ref(example_workspace.root, str(tmp_path / "x.csv"))


def test_pushed_data_is_reported_as_pushed(example_workspace: ExampleWorkspace) -> None:
    root = example_workspace.root
    for path in ("data/golden.csv", "data/train.csv"):
        ref = dataset_ref(root, path)
        assert _remote_object(example_workspace, ref.md5).is_file()
        assert dataset_is_pushed(root, ref) is True


def test_tracked_paths_lists_every_output(example_workspace: ExampleWorkspace) -> None:
    assert tracked_paths(example_workspace.root) == ["data/golden.csv", "data/train.csv"]


def test_unknown_path_names_it_and_says_how_to_track_it(
    example_workspace: ExampleWorkspace,
) -> None:
    with pytest.raises(ArtifactNotFound) as info:
        dataset_ref(example_workspace.root, "data/goldn.csv")
    message = str(info.value)
    assert "data/goldn.csv" in message
    assert "does not exist" in message
    assert "did you mean data/golden.csv" in message
    assert info.value.hint is not None and "dvc add data/goldn.csv" in info.value.hint


def test_a_git_file_is_not_a_dvc_dataset(example_workspace: ExampleWorkspace) -> None:
    with pytest.raises(ArtifactNotFound, match="is not tracked by DVC"):
        dataset_ref(example_workspace.root, "model.py")


def test_new_data_gets_a_new_md5_and_the_old_commit_keeps_the_old_one(
    workspace_copy: ExampleWorkspace, run_git: RunGit
) -> None:
    root = workspace_copy.root
    before = dataset_ref(root, "data/golden.csv")
    with (root / "data/golden.csv").open("a", encoding="utf-8") as handle:
        handle.write("CT-9999-00000,My bin was not collected again,web,public,waste\n")
    _dvc_add_and_push(root, "data/golden.csv", push=False)
    run_git(root, "add", "data/golden.csv.dvc")
    run_git(root, "commit", "-q", "-m", "Golden set: one more waste case")

    after = dataset_ref(root, "data/golden.csv")
    assert after.md5 != before.md5
    assert after.md5 == _dvc_out(root, "data/golden.csv")["md5"]
    assert after.rev != before.rev
    # pinned at the old commit, the old hash and the old bytes come back
    assert dataset_ref(root, "data/golden.csv", rev=before.rev) == before
    old = open_dataset(root, "data/golden.csv", before.rev)
    assert hashlib.md5(old).hexdigest() == before.md5

    assert dataset_is_pushed(root, after) is False  # committed but not pushed yet
    _dvc_add_and_push(root, "data/golden.csv")
    assert dataset_is_pushed(root, after) is True


def test_uncommitted_data_changes_do_not_move_the_pin(workspace_copy: ExampleWorkspace) -> None:
    root = workspace_copy.root
    before = dataset_ref(root, "data/golden.csv")
    (root / "data/golden.csv").write_text("case_id,text\n", encoding="utf-8")
    _dvc_add_and_push(root, "data/golden.csv", push=False)  # .dvc changed, not committed
    assert dataset_ref(root, "data/golden.csv") == before


def test_object_missing_from_the_remote_is_not_pushed(workspace_copy: ExampleWorkspace) -> None:
    root = workspace_copy.root
    ref = dataset_ref(root, "data/train.csv")
    _remote_object(workspace_copy, ref.md5).unlink()
    assert dataset_is_pushed(root, ref) is False


def test_a_copy_uses_its_own_remote(
    example_workspace: ExampleWorkspace, workspace_copy: ExampleWorkspace
) -> None:
    shutil.rmtree(workspace_copy.remote_dir)
    ref = dataset_ref(workspace_copy.root, "data/golden.csv")
    assert dataset_is_pushed(workspace_copy.root, ref) is False
    assert dataset_is_pushed(example_workspace.root, ref) is True


def test_tracked_folder_has_nfiles_and_every_file_must_be_pushed(
    workspace_copy: ExampleWorkspace, run_git: RunGit
) -> None:
    root = workspace_copy.root
    folder = root / "data" / "extra"
    folder.mkdir()
    contents = {"a.txt": "first\n", "b.txt": "second\n", "c.txt": "third\n"}
    for name, text in contents.items():
        (folder / name).write_text(text, encoding="utf-8")
    _dvc_add_and_push(root, "data/extra")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "Extra cases")

    ref = dataset_ref(root, "data/extra")
    assert ref.md5.endswith(".dir")
    assert ref.nfiles == 3
    assert ref.size == sum(len(t) for t in contents.values())
    assert dataset_is_pushed(root, ref) is True
    assert dataset_ref(root, "data/extra/b.txt").md5 == hashlib.md5(b"second\n").hexdigest()

    _remote_object(workspace_copy, hashlib.md5(b"third\n").hexdigest()).unlink()
    assert dataset_is_pushed(root, ref) is False


def test_no_default_remote_means_not_pushed(
    workspace_copy: ExampleWorkspace, run_git: RunGit
) -> None:
    root = workspace_copy.root
    config = root / ".dvc" / "config"
    config.write_text(
        config.read_text(encoding="utf-8").replace("remote = local\n", ""), encoding="utf-8"
    )
    run_git(root, "commit", "-q", "-am", "No default remote")
    ref = dataset_ref(root, "data/golden.csv")
    assert ref.remote is None
    assert dataset_is_pushed(root, ref) is False


def test_git_repo_without_dvc_is_a_workspace_error(make_repo: Callable[..., Path]) -> None:
    root = make_repo()
    with pytest.raises(WorkspaceError) as info:
        dataset_ref(root, "data/golden.csv")
    assert info.value.hint is not None and "dvc init" in info.value.hint
    with pytest.raises(WorkspaceError):
        open_dataset(root, "data/golden.csv", "HEAD")


def test_open_dataset_of_an_unknown_path_is_not_found(example_workspace: ExampleWorkspace) -> None:
    with pytest.raises(ArtifactNotFound, match="data/nope.csv"):
        open_dataset(example_workspace.root, "data/nope.csv", "HEAD")


def test_open_dataset_fetches_from_the_remote_when_the_cache_is_empty(
    workspace_copy: ExampleWorkspace,
) -> None:
    root = workspace_copy.root
    shutil.rmtree(root / ".dvc" / "cache")
    ref = dataset_ref(root, "data/golden.csv")
    data = open_dataset(root, "data/golden.csv", ref.rev)
    assert hashlib.md5(data).hexdigest() == ref.md5


def test_open_dataset_with_data_nowhere_says_push(workspace_copy: ExampleWorkspace) -> None:
    root = workspace_copy.root
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(workspace_copy.remote_dir)
    with pytest.raises(ArtifactNotFound) as info:
        open_dataset(root, "data/golden.csv", "HEAD")
    assert "data/golden.csv" in str(info.value)
    assert info.value.hint is not None and "dvc push" in info.value.hint


def test_broken_dvc_file_is_a_workspace_error(
    workspace_copy: ExampleWorkspace, run_git: RunGit
) -> None:
    root = workspace_copy.root
    (root / "data/golden.csv.dvc").write_text("outs: [unclosed\n", encoding="utf-8")
    run_git(root, "commit", "-q", "-am", "Break the .dvc file")
    with pytest.raises(WorkspaceError, match="DVC could not read"):
        dataset_ref(root, "data/golden.csv")
