"""DVC: pin a tracked dataset at a git commit, check it was pushed, read it back.

Hashes are read at a commit, never from the working tree: a release pins what
is committed, so the md5 comes from the ``.dvc`` file (or ``dvc.lock``) in that
commit. The remote's name and settings come from the working copy's DVC
config, as DVC itself does it (relative URLs and credentials in
``.dvc/config.local`` then resolve); in a clean tree that is the committed
config. The workspace root is taken to be the DVC repository root. ``dvc`` is
imported inside the functions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from releaser.core.refs import DatasetRef
from releaser.errors import ArtifactNotFound, BadInput, ExternalUnavailable, WorkspaceError
from releaser.integrations.git_repo import resolve_commit

if TYPE_CHECKING:
    from dvc.api import DVCFileSystem

__all__ = ["dataset_is_pushed", "dataset_ref", "open_dataset", "tracked_paths"]

# DVCFileSystem takes remote settings from the working copy's DVC config (so relative
# URLs and credentials resolve) and, when no default remote is set, invents this one
# pointing at the local cache. It is not a remote anyone pushed to.
_DVC_UPSTREAM = "auto-generated-upstream"


def _repo_relative(root: Path, path: str) -> str:
    """``path`` as a POSIX path relative to ``root``; absolute paths must lie inside it."""
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            candidate = candidate.resolve().relative_to(root.resolve())
        except ValueError as exc:
            raise BadInput(
                f"dataset path {path} is outside the workspace {root}",
                hint="give the path relative to the folder holding releaser.yaml",
            ) from exc
    parts = [p for p in PurePosixPath(candidate.as_posix()).parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise BadInput(
            f"dataset path {path!r} is not a path inside the workspace",
            hint="give a repository-relative path such as data/golden.csv",
        )
    return "/".join(parts)


def _require_dvc_repo(root: Path) -> None:
    if not (root / ".dvc").is_dir():
        raise WorkspaceError(
            f"{root} is not a DVC repository (no .dvc folder)",
            hint=f"run 'dvc init' in {root}, set a default remote with "
            "'dvc remote add -d NAME URL', and commit .dvc/config",
        )


@contextmanager
def _dvcfs(root: Path, sha: str) -> Iterator[DVCFileSystem]:
    """DVC's view of the repository at commit ``sha``; DVC errors become releaser errors."""
    _require_dvc_repo(root)
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException, NotDvcRepoError

    try:
        fs = DVCFileSystem(str(root), rev=sha)
    except NotDvcRepoError as exc:
        raise WorkspaceError(
            f"{root} is not a DVC repository at commit {sha[:12]}: {exc}",
            hint="commit the .dvc folder (dvc init creates it)",
        ) from exc
    try:
        yield fs
    except DvcException as exc:
        raise WorkspaceError(
            f"DVC could not read {root} at commit {sha[:12]}: {exc}",
            hint="run 'dvc status' and 'dvc doctor' in the workspace to see what is wrong",
        ) from exc
    finally:
        fs.close()


def tracked_paths(root: Path, *, rev: str | None = None) -> list[str]:
    """Every path DVC tracks at ``rev`` (default ``HEAD``), sorted."""
    sha = resolve_commit(root, rev)
    with _dvcfs(root, sha) as fs:
        return _tracked(fs)


def _tracked(fs: DVCFileSystem) -> list[str]:
    repo = fs.repo
    return sorted(
        PurePosixPath(repo.fs.relpath(out.fs_path, repo.root_dir)).as_posix()
        for out in repo.index.outs
    )


def dataset_ref(root: Path, path: str, *, rev: str | None = None) -> DatasetRef:
    """Pin the DVC-tracked ``path`` (file or folder) at commit ``rev`` (default ``HEAD``)."""
    sha = resolve_commit(root, rev)
    rel = _repo_relative(root, path)
    with _dvcfs(root, sha) as fs:
        try:
            info: dict[str, Any] = fs.info(rel)
        except FileNotFoundError:
            info = {}
        dvc_info = info.get("dvc_info") or {}
        md5 = dvc_info.get("md5")
        if not info or not md5:
            tracked = _tracked(fs)
            close = difflib.get_close_matches(rel, tracked, n=3, cutoff=0.75)
            state = "does not exist" if not info else "is not tracked by DVC"
            suggestion = f"did you mean {', '.join(close)}? " if close else ""
            raise ArtifactNotFound(
                f"dataset {rel} {state} at commit {sha[:12]}; {suggestion}"
                f"DVC tracks: {', '.join(tracked) if tracked else '(nothing)'}",
                hint=f"fix the path, or track the data: run 'dvc add {rel}', commit the .dvc "
                f"file (git add {rel}.dvc && git commit) and run 'dvc push'",
            )
        entry = dvc_info.get("entry")
        meta = getattr(entry, "meta", None)
        size = dvc_info.get("size")
        nfiles = getattr(meta, "nfiles", None)
        remote = fs.repo.config["core"].get("remote")
        if remote == _DVC_UPSTREAM:
            remote = None
        return DatasetRef(
            path=rel,
            md5=str(md5),
            size=int(size) if size is not None else None,
            nfiles=int(nfiles) if nfiles is not None else None,
            rev=sha,
            remote=str(remote) if remote else None,
        )


def dataset_is_pushed(root: Path, ref: DatasetRef) -> bool:
    """True when ``ref``'s data is in its DVC remote (every file, for a folder).

    For a local remote this is a file check under ``files/md5/xx/yyyy``. A
    remote that cannot be reached raises ExternalUnavailable; no remote is False.
    """
    if ref.remote is None:
        return False
    with _dvcfs(root, ref.rev) as fs:
        try:
            odb = fs.repo.cloud.get_remote_odb(ref.remote, hash_name="md5")
        except Exception as exc:
            raise WorkspaceError(
                f"DVC remote {ref.remote!r} is not configured at commit {ref.rev[:12]}: {exc}",
                hint="add it with 'dvc remote add -d NAME URL' and commit .dvc/config",
            ) from exc
        try:
            if not odb.exists(ref.md5):
                return False
            if not ref.md5.endswith(".dir"):
                return True
            import json

            with odb.fs.open(odb.oid_to_path(ref.md5), "r") as handle:
                listing = json.load(handle)
            wanted = [entry["md5"] for entry in listing]
            return len(set(odb.oids_exist(wanted))) == len(set(wanted))
        except (OSError, ValueError) as exc:
            raise ExternalUnavailable(
                f"cannot check DVC remote {ref.remote!r} for {ref.path}: {exc}",
                hint="check the remote is reachable and your credentials ('dvc remote list')",
            ) from exc


def open_dataset(root: Path, path: str, rev: str) -> bytes:
    """The bytes of the DVC-tracked file ``path`` as of commit ``rev``.

    Comes from the local DVC cache, or is fetched from the remote when missing.
    """
    sha = resolve_commit(root, rev)
    rel = _repo_relative(root, path)
    _require_dvc_repo(root)
    import dvc.api
    from dvc.exceptions import DvcException, FileMissingError, PathMissingError

    try:
        data: bytes = dvc.api.read(rel, repo=str(root), rev=sha, mode="rb")
    except (FileNotFoundError, PathMissingError) as exc:
        if isinstance(exc.__cause__, FileMissingError):
            # DVC reports "tracked, but in neither the cache nor the remote" this way.
            raise ArtifactNotFound(
                f"dataset {rel} at commit {sha[:12]} is in neither the local DVC cache "
                "nor the remote",
                hint="run 'dvc push' where the data was added, or check the remote "
                "('dvc remote list')",
            ) from exc
        raise ArtifactNotFound(
            f"dataset {rel} does not exist at commit {sha[:12]}",
            hint=f"check the path; 'dvc list . --dvc-only --rev {sha[:12]} -R' shows what is "
            "tracked",
        ) from exc
    except DvcException as exc:
        raise ExternalUnavailable(
            f"cannot read dataset {rel} at commit {sha[:12]}: {exc}",
            hint="check that the DVC remote is reachable and your credentials work "
            "('dvc pull' shows the details)",
        ) from exc
    return data
