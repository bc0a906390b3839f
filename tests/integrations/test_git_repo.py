"""code_ref on real git repositories: clean, dirty, detached, not a repo, no commits;
changed_since: which files differ from a commit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from releaser.errors import BadInput, WorkspaceError
from releaser.integrations.git_repo import (
    changed_since,
    code_ref,
    resolve_commit,
    strip_credentials,
)

MakeRepo = Callable[..., Path]
RunGit = Callable[..., str]


def test_clean_repo_gives_head_sha_and_branch(make_repo: MakeRepo, run_git: RunGit) -> None:
    root = make_repo()
    ref = code_ref(root)
    assert ref.sha == run_git(root, "rev-parse", "HEAD")
    assert len(ref.sha) == 40
    assert ref.branch == "main"
    assert ref.dirty is False
    assert ref.remote_url is None


def test_modified_tracked_file_is_dirty(make_repo: MakeRepo) -> None:
    root = make_repo()
    (root / "README.md").write_text("changed\n", encoding="utf-8")
    assert code_ref(root).dirty is True


def test_staged_change_is_dirty(make_repo: MakeRepo, run_git: RunGit) -> None:
    root = make_repo()
    (root / "new.py").write_text("x = 1\n", encoding="utf-8")
    run_git(root, "add", "new.py")
    assert code_ref(root).dirty is True


def test_untracked_file_that_is_not_ignored_is_dirty(make_repo: MakeRepo) -> None:
    root = make_repo()
    (root / "prompt.yaml").write_text("template: hi\n", encoding="utf-8")
    assert code_ref(root).dirty is True


def test_ignored_files_do_not_make_the_tree_dirty(make_repo: MakeRepo, run_git: RunGit) -> None:
    root = make_repo()
    (root / ".gitignore").write_text("*.log\n", encoding="utf-8")
    run_git(root, "add", ".gitignore")
    run_git(root, "commit", "-q", "-m", "ignore logs")
    (root / "debug.log").write_text("noise\n", encoding="utf-8")
    assert code_ref(root).dirty is False


def test_releaser_state_folder_never_makes_the_tree_dirty(make_repo: MakeRepo) -> None:
    root = make_repo()
    state = root / ".releaser"
    state.mkdir()
    (state / "state.db").write_bytes(b"sqlite")  # not gitignored on purpose
    assert code_ref(root).dirty is False
    (root / "other.txt").write_text("x\n", encoding="utf-8")
    assert code_ref(root).dirty is True


def test_state_folder_is_relative_to_the_workspace_not_the_repo(make_repo: MakeRepo) -> None:
    repo = make_repo()
    service = repo / "services" / "triage"
    (service / ".releaser").mkdir(parents=True)
    (service / ".releaser" / "state.db").write_bytes(b"sqlite")
    ref = code_ref(service)
    assert ref.dirty is False
    # the same folder seen from the repository root is an ordinary untracked folder
    assert code_ref(repo).dirty is True


def test_detached_head_has_no_branch(make_repo: MakeRepo, run_git: RunGit) -> None:
    root = make_repo()
    run_git(root, "checkout", "-q", "--detach")
    ref = code_ref(root)
    assert ref.branch is None
    assert ref.sha == run_git(root, "rev-parse", "HEAD")
    assert ref.dirty is False


def test_not_a_repo_says_run_git_init(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        code_ref(tmp_path)
    assert "not inside a git repository" in str(info.value)
    assert info.value.hint is not None and "git init" in info.value.hint


def test_missing_folder_is_a_workspace_error(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="not a folder"):
        code_ref(tmp_path / "nowhere")


def test_repo_without_commits_is_a_workspace_error(make_repo: MakeRepo) -> None:
    root = make_repo(commit=False)
    with pytest.raises(WorkspaceError) as info:
        code_ref(root)
    assert "no commits" in str(info.value)
    assert info.value.hint is not None and "git commit" in info.value.hint


def test_remote_url_loses_its_credentials(make_repo: MakeRepo, run_git: RunGit) -> None:
    root = make_repo()
    run_git(root, "remote", "add", "origin", "https://alice:s3cret@git.example.com/org/svc.git")
    ref = code_ref(root)
    assert ref.remote_url == "https://git.example.com/org/svc.git"
    assert "s3cret" not in ref.model_dump_json()


def test_origin_is_preferred_over_other_remotes(make_repo: MakeRepo, run_git: RunGit) -> None:
    root = make_repo()
    run_git(root, "remote", "add", "backup", "https://backup.example.com/svc.git")
    run_git(root, "remote", "add", "origin", "git@github.com:org/svc.git")
    assert code_ref(root).remote_url == "git@github.com:org/svc.git"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@host/org/r.git", "https://host/org/r.git"),
        ("https://ghp_token123@github.com/org/r.git", "https://github.com/org/r.git"),
        ("http://u:p@10.0.0.1:8080/r.git", "http://10.0.0.1:8080/r.git"),
        ("ssh://git:pw@host/r.git", "ssh://host/r.git"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("git@github.com:org/r.git", "git@github.com:org/r.git"),
        ("https://github.com/org/r.git", "https://github.com/org/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ],
)
def test_strip_credentials(url: str, expected: str) -> None:
    assert strip_credentials(url) == expected


def test_resolve_commit_accepts_branches_and_rejects_unknown_revs(
    make_repo: MakeRepo, run_git: RunGit
) -> None:
    root = make_repo()
    head = run_git(root, "rev-parse", "HEAD")
    assert resolve_commit(root) == head
    assert resolve_commit(root, "main") == head
    assert resolve_commit(root, head[:8]) == head
    with pytest.raises(BadInput, match="not a commit"):
        resolve_commit(root, "no-such-branch")


def test_changed_since_names_edited_and_new_files_not_ignored_ones(
    make_repo: MakeRepo, run_git: RunGit
) -> None:
    root = make_repo()
    pkg = root / "svc"
    pkg.mkdir()
    for name in ("predict.py", "score.py", "crlf.py"):
        (pkg / name).write_bytes(
            b"def f():\r\n    return 1\r\n" if name == "crlf.py" else b"x = 1\n"
        )
    (root / ".gitattributes").write_text("*.py text eol=crlf\n", encoding="utf-8")
    (root / ".gitignore").write_text(".venv/\n", encoding="utf-8")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-qm", "code")
    sha = run_git(root, "rev-parse", "HEAD")
    (root / ".venv").mkdir()
    installed = root / ".venv" / "lib.py"
    installed.write_text("y = 2\n", encoding="utf-8")
    new = pkg / "new.py"
    new.write_text("z = 3\n", encoding="utf-8")
    files = [pkg / "predict.py", pkg / "score.py", pkg / "crlf.py", new, installed]
    # predict.py and score.py were committed with LF and check out as CRLF (eol=crlf):
    # as checked out they are unchanged, and so is crlf.py; the ignored file is not code.
    for name in ("predict.py", "score.py"):
        (pkg / name).write_bytes(b"x = 1\r\n")
    assert changed_since(root, sha, files) == ["svc/new.py"]
    (pkg / "score.py").write_bytes(b"x = 2\r\n")
    assert changed_since(root, sha, files) == ["svc/score.py", "svc/new.py"]
    # From a subfolder of the repository, paths are given from that folder.
    assert changed_since(pkg, sha, [pkg / "score.py", pkg / "predict.py"]) == ["score.py"]


def test_changed_since_a_commit_the_clone_lacks_is_a_workspace_error(make_repo: MakeRepo) -> None:
    root = make_repo()
    with pytest.raises(WorkspaceError, match="commit 0123456789ab is not in the git clone"):
        changed_since(root, "0123456789ab" * 3 + "0123", [root / "README.md"])
