"""Workspace-wide settings: where the store, MLflow and prompts are.

These few models are all a prompt command needs, so they live apart from the
service models: the prompt commands, and the operations commands that work on
the stored state (rollback, pause, resume, abort, status), validate only this
part of ``releaser.yaml`` first (quickly, and even while another part of the
file is being fixed); the rest of the file is validated when it is used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field

from releaser.config._common import RepoPath, _Model, problem

__all__ = [
    "MlflowSettings",
    "PromptSettings",
    "StoreUrl",
    "WorkspaceSettings",
    "sqlite_store_file",
    "store_folder_problem",
]

# The forms releaser.store.open_store accepts; these checks mirror its rules so a
# wrong 'store:' is reported by 'releaser validate', not by the first command that
# opens the store.
_SQLITE_PREFIX = "sqlite://"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_KEY_VALUE_DSN = re.compile(r"^\s*[A-Za-z_]+\s*=")
_STORE_FORMS = (
    "use sqlite:///absolute/path/state.db, a plain file path (relative to the folder of "
    "releaser.yaml), or postgresql://user@host:5432/dbname"
)


def _no_password(value: str) -> str:
    if re.search(r"://[^/@\s]*:[^/@\s]*@", value):
        raise problem(
            "the store URL contains a password",
            hint="remove the password from releaser.yaml and set RELEASER_STORE in the "
            "environment (a CI secret) instead",
        )
    return value


def _known_form(value: str) -> str:
    text = value.strip()
    if text.startswith(_SQLITE_PREFIX):
        rest = text[len(_SQLITE_PREFIX) :]
        if "?" in rest or "#" in rest:
            raise problem("the sqlite store URL has options; none are supported", _STORE_FORMS)
        if not rest.startswith("/") or rest == "/":
            raise problem("a sqlite store URL needs an absolute path", _STORE_FORMS)
    elif "://" in text and not text.startswith(_POSTGRES_SCHEMES):
        scheme = text.split("://", 1)[0]
        raise problem(f"unknown state store scheme {scheme!r}", _STORE_FORMS)
    return value


def sqlite_store_file(value: str, root: Path) -> Path | None:
    """The sqlite file a ``store:`` value names, or None when it names PostgreSQL.

    A relative plain path is relative to ``root``, the folder of releaser.yaml
    (as ``open_workspace`` reads it).
    """
    text = value.strip()
    if not text or text.startswith(_POSTGRES_SCHEMES):
        return None
    if text.startswith(_SQLITE_PREFIX):
        return Path("/" + text[len(_SQLITE_PREFIX) :].lstrip("/"))
    if "://" in text or _KEY_VALUE_DSN.match(text):
        return None
    path = Path(text)
    return path if path.is_absolute() else root / path


def store_folder_problem(value: str, root: Path) -> tuple[str, str] | None:
    """Message and hint when the folder of a sqlite ``store:`` is missing; None when fine.

    ``open_store`` creates a new sqlite file only in an existing folder, or in a
    missing folder named ``.releaser`` (the default), so a mistyped path does not
    start an empty store. This only looks: it creates nothing.
    """
    path = sqlite_store_file(value, root)
    if path is None:
        return None
    folder = path.parent
    if folder.is_dir():
        return None
    if folder.name == ".releaser" and folder.parent.is_dir():
        return None  # releaser creates the default folder on first use
    if folder.exists():
        return (
            f"the folder of the sqlite store, {folder}, is not a folder",
            "point 'store:' at a file in an existing folder",
        )
    return (
        f"the folder of the sqlite store, {folder}, does not exist",
        "create the folder first, or point 'store:' at a file in an existing folder "
        "(a relative path is read from the folder of releaser.yaml); without 'store:' "
        "releaser uses .releaser/state.db",
    )


StoreUrl = Annotated[str, AfterValidator(_no_password), AfterValidator(_known_form)]
"""A store URL as written in ``releaser.yaml``: never with a password in it."""

STORE_DESCRIPTION = (
    "State store URL (sqlite:///path or postgresql://...); $RELEASER_STORE wins. Never put a "
    "password here: give a DSN with a password through $RELEASER_STORE instead."
)


class MlflowSettings(_Model):
    """Where the MLflow tracking server and model registry are."""

    tracking_uri: str = Field(
        min_length=1,
        description="MLflow tracking URI, e.g. http://mlflow:5000 or sqlite:///mlflow.db.",
    )
    registry_uri: str | None = Field(
        default=None, description="Model registry URI when it differs from the tracking URI."
    )
    artifact_location: str | None = Field(
        default=None, description="Default artifact location for runs releaser creates."
    )


class PromptSettings(_Model):
    """Where prompt templates are versioned."""

    backend: Literal["mlflow", "file"] = Field(
        default="mlflow", description="mlflow: the MLflow prompt registry; file: YAML files."
    )
    path: RepoPath = Field(
        default="prompts",
        description="Folder of the file backend, relative to releaser.yaml and inside its folder.",
    )


class WorkspaceSettings(_Model):
    """The workspace-wide keys of ``releaser.yaml``; every other key is left to ``Config``."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    mlflow: MlflowSettings | None = None
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    store: StoreUrl | None = None
