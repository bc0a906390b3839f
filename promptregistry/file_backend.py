"""A git-friendly backend: one YAML file per version in a directory tree.

Layout under ``root`` (``folder`` is ``prompts`` unless given)::

    <folder>/<name>/<version>.yaml        one immutable file per version, never overwritten
    <folder>/<name>/aliases.yaml          alias -> version
    <folder>/<name>/alias-history.jsonl   one JSON line per alias move, appended

Every write is atomic (a temporary file, then ``os.replace`` or ``os.link``).
Concurrent registrations are safe: a version file is created with ``os.link``
from a fully written temporary file, which fails if the number is taken (like
``O_EXCL``, but readers never see a half-written file), and the writer then
retries with the next number. Alias moves take an exclusive ``flock`` on the
prompt's directory. Reading a version checks its content hash, so a hand-edited
version file is reported instead of served.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from promptregistry.backend import (
    check_selector,
    unknown_alias,
    unknown_name,
    unknown_version,
)
from promptregistry.errors import BackendUnavailable, InvalidPrompt, PromptRegistryError
from promptregistry.model import (
    AliasAction,
    AliasChange,
    PromptSpec,
    PromptVersion,
    canonical_json,
    name_problem,
    validate_alias,
    validate_name,
)

__all__ = ["FilePromptBackend"]

_VERSION_FILE = re.compile(r"^([1-9][0-9]*)\.yaml$")
_ALIASES = "aliases.yaml"
_HISTORY = "alias-history.jsonl"
_MAX_REGISTER_ATTEMPTS = 1000


class FilePromptBackend:
    """Prompts as YAML files under ``root/folder`` (see the module docstring for the layout)."""

    def __init__(self, root: str | Path, *, create: bool = True, folder: str = "prompts") -> None:
        if not folder or Path(folder).name != folder or folder in (".", ".."):
            raise ValueError(f"folder must be one directory name, not {folder!r}")
        self.root = Path(root)
        self.folder = folder
        if create:
            try:
                (self.root / folder).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendUnavailable(
                    f"cannot create prompt directory {self.root}: {exc.strerror or exc}"
                ) from None

    @property
    def url(self) -> str:
        """``file://`` URL of the root directory (``?folder=`` when it is not ``prompts``)."""
        url = self.root.absolute().as_uri()
        return url if self.folder == "prompts" else f"{url}?folder={quote(self.folder)}"

    def __repr__(self) -> str:
        if self.folder == "prompts":
            return f"FilePromptBackend({str(self.root)!r})"
        return f"FilePromptBackend({str(self.root)!r}, folder={self.folder!r})"

    # paths and low-level I/O

    @property
    def _prompts(self) -> Path:
        if not self.root.is_dir():
            raise BackendUnavailable(
                f"prompt directory {self.root} does not exist or cannot be read",
                hint="check the path, the mount, or create it with FilePromptBackend(root)",
            )
        return self.root / self.folder

    def _dir(self, name: str, *, must_exist: bool = True) -> Path:
        path = self._prompts / validate_name(name)
        if must_exist and not path.is_dir():
            raise unknown_name(name, self.list_names(), self.url)
        return path

    @contextmanager
    def _locked(self, directory: Path) -> Iterator[None]:
        import fcntl

        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @staticmethod
    def _write_temp(directory: Path, text: str) -> Path:
        tmp = directory / f".tmp-{uuid.uuid4().hex}"
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def _replace(self, path: Path, text: str) -> None:
        tmp = self._write_temp(path.parent, text)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @contextmanager
    def _io(self, what: str) -> Iterator[None]:
        """Turn OS errors (other than our own not-found handling) into BackendUnavailable."""
        try:
            yield
        except PromptRegistryError:
            raise
        except OSError as exc:
            raise BackendUnavailable(
                f"{what} failed in {self.root}: {exc.strerror or exc}",
                hint="check that the prompt directory is mounted, readable and writable",
            ) from None

    # reading

    def list_names(self) -> list[str]:
        """Every prompt that has at least one version, sorted."""
        with self._io("listing prompts"):
            prompts = self._prompts
            if not prompts.is_dir():
                return []
            names = []
            for entry in prompts.iterdir():
                if name_problem(entry.name) is not None or not entry.is_dir():
                    continue  # stray files and directories (.git, notes) are not prompts
                if any(_VERSION_FILE.match(p.name) for p in entry.iterdir()):
                    names.append(entry.name)
            return sorted(names)

    def list_versions(self, name: str) -> list[int]:
        """Every version number of ``name``, ascending."""
        with self._io(f"listing versions of {name!r}"):
            versions = self._versions(self._dir(name))
            if not versions:
                raise unknown_name(name, self.list_names(), self.url)
            return versions

    @staticmethod
    def _versions(directory: Path) -> list[int]:
        found = (_VERSION_FILE.match(p.name) for p in directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` and its version."""
        with self._io(f"reading aliases of {name!r}"):
            return self._read_aliases(self._dir(name))

    def _read_aliases(self, directory: Path) -> dict[str, int]:
        import yaml

        path = directory / _ALIASES
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except yaml.YAMLError as exc:
            raise InvalidPrompt(f"{path} is not valid YAML: {exc}") from None
        data = data or {}
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in data.items()
        ):
            raise InvalidPrompt(f"{path} must map alias names to version numbers")
        return dict(sorted(data.items()))

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> PromptVersion:
        """One version by number or alias; the latest when neither is given."""
        check_selector(version, alias)
        with self._io(f"reading prompt {name!r}"):
            directory = self._dir(name)
            aliases = self._read_aliases(directory)
            if alias is not None:
                if alias not in aliases:
                    raise unknown_alias(name, alias, aliases)
                version = aliases[alias]
            elif version is None:
                versions = self._versions(directory)
                if not versions:
                    raise unknown_name(name, self.list_names(), self.url)
                version = versions[-1]
            return self._read_version(directory, name, version, aliases)

    def _read_version(
        self, directory: Path, name: str, version: int, aliases: dict[str, int]
    ) -> PromptVersion:
        import yaml
        from pydantic import ValidationError

        path = directory / f"{version}.yaml"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise unknown_version(name, version, self._versions(directory)) from None
        try:
            data = yaml.safe_load(text)
            data["aliases"] = [a for a, v in aliases.items() if v == version]
            stored = PromptVersion.model_validate(data)
        except (yaml.YAMLError, TypeError, ValidationError) as exc:
            raise InvalidPrompt(f"{path} is not a valid prompt version: {exc}") from None
        if stored.name != name or stored.version != version:
            raise InvalidPrompt(
                f"{path} holds {stored.name!r} version {stored.version}, not {name!r} v{version}"
            )
        if stored.compute_hash() != stored.content_hash:
            raise InvalidPrompt(
                f"{path} was edited after it was written: its content no longer matches "
                f"its hash {stored.content_hash[:12]}",
                hint="versions are immutable; restore the file (e.g. from git) and register "
                "the change as a new version",
            )
        return stored

    def alias_history(self, name: str, alias: str) -> list[AliasChange]:
        """Recorded moves of ``alias``, oldest first."""
        with self._io(f"reading alias history of {name!r}"):
            path = self._dir(name) / _HISTORY
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                return []
        changes = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                change = AliasChange.model_validate_json(line)
            except ValueError:
                if number == len(lines):
                    break  # a torn final line from an interrupted append; earlier lines stand
                raise InvalidPrompt(f"{path}:{number}: not a valid alias change") from None
            if change.alias == alias:
                changes.append(change)
        return changes

    # writing

    def register(self, spec: PromptSpec) -> PromptVersion:
        """Write ``spec`` as the next free version number of its name."""
        validate_name(spec.name)
        with self._io(f"registering {spec.name!r}"):
            directory = self._dir(spec.name, must_exist=False)
            directory.mkdir(parents=True, exist_ok=True)
            created_at = datetime.now(UTC)
            content_hash = spec.compute_hash()
            next_version = (self._versions(directory) or [0])[-1] + 1
            for _ in range(_MAX_REGISTER_ATTEMPTS):
                stored = PromptVersion(
                    **spec.model_dump(),
                    version=next_version,
                    content_hash=content_hash,
                    created_at=created_at,
                )
                tmp = self._write_temp(directory, _dump_version(stored))
                try:
                    os.link(tmp, directory / f"{next_version}.yaml")
                except FileExistsError:
                    next_version += 1  # someone else took this number: try the next one
                    continue
                finally:
                    tmp.unlink(missing_ok=True)
                return stored
        raise BackendUnavailable(
            f"could not find a free version number for {spec.name!r} after "
            f"{_MAX_REGISTER_ATTEMPTS} attempts"
        )

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str = "",
        actor: str = "",
        action: AliasAction = "promote",
    ) -> AliasChange:
        """Point ``alias`` at ``version`` (which must exist) and append the move to the history."""
        validate_alias(alias)
        check_selector(version, None)
        with self._io(f"setting alias {alias!r} of {name!r}"):
            directory = self._dir(name)
            with self._locked(directory):
                if not (directory / f"{version}.yaml").exists():
                    raise unknown_version(name, version, self._versions(directory))
                aliases = self._read_aliases(directory)
                change = AliasChange(
                    name=name,
                    alias=alias,
                    from_version=aliases.get(alias),
                    to_version=version,
                    reason=reason,
                    actor=actor,
                    at=datetime.now(UTC),
                    action=action,
                )
                if change.changed:
                    aliases[alias] = version
                    self._write_aliases(directory, aliases, change)
                return change

    def delete_alias(
        self, name: str, alias: str, *, reason: str = "", actor: str = ""
    ) -> AliasChange:
        """Remove ``alias`` and append the removal to the history."""
        with self._io(f"deleting alias {alias!r} of {name!r}"):
            directory = self._dir(name)
            with self._locked(directory):
                aliases = self._read_aliases(directory)
                if alias not in aliases:
                    raise unknown_alias(name, alias, aliases)
                change = AliasChange(
                    name=name,
                    alias=alias,
                    from_version=aliases.pop(alias),
                    to_version=None,
                    reason=reason,
                    actor=actor,
                    at=datetime.now(UTC),
                    action="delete",
                )
                self._write_aliases(directory, aliases, change)
                return change

    def _write_aliases(self, directory: Path, aliases: dict[str, int], change: AliasChange) -> None:
        import yaml

        self._replace(directory / _ALIASES, yaml.safe_dump(dict(sorted(aliases.items()))))
        line = canonical_json(change.model_dump(mode="json")) + "\n"
        fd = os.open(directory / _HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def _dump_version(version: PromptVersion) -> str:
    """YAML for one version file: fixed key order, multi-line text as literal blocks."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    data = version.model_dump(mode="json", exclude={"aliases"})
    order = [
        "name",
        "version",
        "content_hash",
        "created_at",
        "author",
        "commit_message",
        "metadata",
        "variables",
        "parameters",
        "template",
    ]
    ordered = {key: data[key] for key in order}
    text: str = yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    # refuse to write anything that would not read back identically
    if yaml.safe_load(text) != ordered:
        raise InvalidPrompt(f"prompt {version.name!r} cannot be stored as YAML without changes")
    return text
