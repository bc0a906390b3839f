"""Git: the commit a release is built from, and whether the working tree matches it.

gitpython is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from releaser.core.refs import CodeRef
from releaser.errors import BadInput, WorkspaceError

if TYPE_CHECKING:
    from git import Repo

__all__ = [
    "MAX_FILE_AT_COMMIT_BYTES",
    "STATE_DIR",
    "changed_since",
    "code_ref",
    "file_at_commit",
    "open_repo",
    "resolve_commit",
    "strip_credentials",
]

STATE_DIR = ".releaser"
"""Folder of the workspace's own state (the sqlite store); never makes a tree dirty."""


def open_repo(root: Path) -> Repo:
    """The git repository containing ``root`` (``root`` may be a subfolder of it)."""
    try:
        import git
    except ImportError as exc:  # gitpython raises ImportError when no git executable is found
        raise WorkspaceError(
            f"git is not usable: {exc}", hint="install git and make sure it is on PATH"
        ) from exc
    if not root.is_dir():
        raise WorkspaceError(f"{root} is not a folder", hint="check the path")
    try:
        return git.Repo(root, search_parent_directories=True)
    except git.InvalidGitRepositoryError as exc:
        raise WorkspaceError(
            f"{root} is not inside a git repository",
            hint=f"run 'git init' in {root} and commit your files, or run releaser from a checkout",
        ) from exc


def _head_sha(repo: Repo) -> str:
    if not repo.head.is_valid():
        raise WorkspaceError(
            f"the git repository at {repo.working_dir} has no commits yet",
            hint="commit your files first: git add -A && git commit -m 'First commit'",
        )
    return str(repo.head.commit.hexsha)


def resolve_commit(root: Path, rev: str | None = None) -> str:
    """The full sha of ``rev`` (a sha, branch or tag; default ``HEAD``) in ``root``'s repo."""
    repo = open_repo(root)
    try:
        if rev is None:
            return _head_sha(repo)
        from git.exc import BadName

        try:
            return str(repo.commit(rev).hexsha)
        except (BadName, ValueError) as exc:
            raise BadInput(
                f"{rev!r} is not a commit, branch or tag in {repo.working_dir}",
                hint="check the revision with 'git log --oneline'",
            ) from exc
    finally:
        repo.close()


def strip_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` (or an HTTP token) in it.

    ``git@github.com:org/repo.git`` and ``ssh://git@host/repo`` are kept as they
    are: the user name there is not a secret.
    """
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    if ":" in userinfo or parts.scheme in ("http", "https"):
        return urlunsplit(parts._replace(netloc=host))
    return url


def _remote_url(repo: Repo) -> str | None:
    remotes = {r.name: r for r in repo.remotes}
    remote = remotes.get("origin") or next(iter(remotes.values()), None)
    if remote is None:
        return None
    urls = list(remote.urls)
    return strip_credentials(urls[0]) if urls else None


def _is_dirty(repo: Repo, root: Path) -> bool:
    """True when the tree differs from HEAD in a way that could change the release.

    Staged and unstaged changes to tracked files count. Untracked files count
    too unless git ignores them: a new module or prompt file that is not yet
    committed can be picked up by the service or the gate, so the release would
    not be reproducible from the commit alone. Files that belong nowhere in the
    release should be listed in ``.gitignore``. The workspace's own state folder
    (``.releaser/``) is exempt, since releaser itself writes there.
    """
    if repo.is_dirty(index=True, working_tree=True, untracked_files=False, submodules=True):
        return True
    state_dir = (root / STATE_DIR).resolve()
    worktree = Path(str(repo.working_tree_dir)).resolve()
    try:
        prefix = state_dir.relative_to(worktree).as_posix() + "/"
    except ValueError:
        prefix = None
    return any(prefix is None or not p.startswith(prefix) for p in repo.untracked_files)


def code_ref(root: Path) -> CodeRef:
    """The commit ``root`` is at, its branch, whether the tree is dirty, and the remote URL."""
    repo = open_repo(root)
    try:
        sha = _head_sha(repo)
        branch = None if repo.head.is_detached else repo.active_branch.name
        return CodeRef(
            sha=sha, branch=branch, dirty=_is_dirty(repo, root), remote_url=_remote_url(repo)
        )
    finally:
        repo.close()


def changed_since(root: Path, sha: str, files: list[Path]) -> list[str]:
    """Which of ``files`` (under ``root``) differ from commit ``sha``, as paths from ``root``.

    A file counts as changed when its bytes differ from the commit's blob as git
    would check it out (eol and other filters applied), or when the commit does
    not have it, unless git ignores it (an installed package in a virtualenv
    inside the workspace is not the repository's code). WorkspaceError when the
    commit cannot be read (not in this clone, say a shallow one). Plain ``git``
    processes, one per file: gitpython is not needed.
    """
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)

    try:
        if git("cat-file", "-e", f"{sha}^{{commit}}").returncode != 0:
            raise WorkspaceError(
                f"commit {sha[:12]} is not in the git clone at {root}",
                hint="fetch it (a shallow clone may not have it: git fetch --unshallow)",
            )
        changed: list[str] = []
        for path in files:
            rel = path.relative_to(root).as_posix()
            blob = git("cat-file", "--filters", f"{sha}:./{rel}")
            if blob.returncode == 0:
                if blob.stdout != path.read_bytes():
                    changed.append(rel)
            elif git("check-ignore", "-q", rel).returncode != 0:
                changed.append(rel)  # not in the commit, and not ignored: new since
        return changed
    except OSError as exc:
        raise WorkspaceError(
            f"git could not be run in {root}: {exc}", hint="install git and put it on PATH"
        ) from exc


MAX_FILE_AT_COMMIT_BYTES = 1 << 20
"""Largest file :func:`file_at_commit` reads (a ``releaser.yaml`` is a few kB)."""


def file_at_commit(root: Path, sha: str, path: Path) -> str:
    """The text of ``path`` (a file under ``root``) as commit ``sha`` holds it.

    WorkspaceError names the commit and the file when the clone does not have the
    commit (a shallow clone), the commit does not have the file, or the file is
    larger than :data:`MAX_FILE_AT_COMMIT_BYTES` or not UTF-8. One plain ``git``
    process; gitpython is not needed.
    """
    import subprocess

    rel = path.resolve().relative_to(root.resolve()).as_posix()
    where = f"{rel} at commit {sha[:12]}"

    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)

    try:
        if git("cat-file", "-e", f"{sha}^{{commit}}").returncode != 0:
            raise WorkspaceError(
                f"commit {sha[:12]} is not in the git clone at {root}",
                hint="fetch it: a shallow clone does not have older commits (git fetch "
                "--unshallow, or actions/checkout with fetch-depth: 0)",
            )
        size = git("cat-file", "-s", f"{sha}:./{rel}")
        if size.returncode != 0:
            raise WorkspaceError(f"{where} does not exist", hint="was the file added later?")
        if int(size.stdout.strip() or b"0") > MAX_FILE_AT_COMMIT_BYTES:
            raise WorkspaceError(f"{where} is larger than {MAX_FILE_AT_COMMIT_BYTES} bytes")
        blob = git("cat-file", "blob", f"{sha}:./{rel}")
    except OSError as exc:
        raise WorkspaceError(
            f"git could not be run in {root}: {exc}", hint="install git and put it on PATH"
        ) from exc
    if blob.returncode != 0:
        raise WorkspaceError(f"git could not read {where}: {blob.stderr.decode(errors='replace')}")
    try:
        return blob.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkspaceError(f"{where} is not UTF-8 text") from None
