"""Pinned artifact refs: the resolved, exact versions a release is made of.

Each ref names one artifact precisely enough to fetch the same bytes again
later: a registered model version, a prompt version with its content hash, a
DVC-tracked dataset at a git revision, and the code commit. They are plain
data; the integrations under :mod:`releaser.integrations` fill them in.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CodeRef", "DatasetRef", "ModelRef", "PromptRef"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class ModelRef(BaseModel):
    """One registered model version, as the model registry resolved it."""

    model_config = _FROZEN

    name: str = Field(description="Registered model name.")
    version: int = Field(ge=1, description="Registered model version number.")
    alias: str | None = Field(
        default=None, description="The alias the version was resolved through, if any."
    )
    run_id: str | None = Field(default=None, description="Run that produced the model, if known.")
    source: str = Field(description="Artifact URI the version was registered from.")
    signature: dict[str, Any] | None = Field(
        default=None, description="Input/output schema as MLflow records it, JSON-ready."
    )
    model_uri: str = Field(description="``models:/<name>/<version>``: loads exactly this version.")


class DatasetRef(BaseModel):
    """A DVC-tracked file or folder, pinned by content hash at a git revision."""

    model_config = _FROZEN

    path: str = Field(description="Repository-relative path of the tracked file or folder.")
    md5: str = Field(description="DVC md5 of the file, or of the folder's ``.dir`` listing.")
    size: int | None = Field(default=None, description="Size in bytes, when DVC recorded it.")
    nfiles: int | None = Field(default=None, description="Number of files, for a folder.")
    rev: str = Field(description="Git commit sha the ``.dvc`` file was read at.")
    remote: str | None = Field(
        default=None, description="Name of the DVC remote the data is pushed to, if any."
    )


class CodeRef(BaseModel):
    """The code a release was built from: a commit and whether the tree matched it."""

    model_config = _FROZEN

    sha: str = Field(description="Commit sha of HEAD.")
    branch: str | None = Field(default=None, description="Branch name; None when detached.")
    dirty: bool = Field(description="True when the working tree differs from the commit.")
    remote_url: str | None = Field(
        default=None, description="URL of the 'origin' remote, credentials removed."
    )


class PromptRef(BaseModel):
    """One prompt version from the prompt registry, pinned by content hash."""

    model_config = _FROZEN

    name: str = Field(description="Prompt name in the registry.")
    version: int = Field(ge=1, description="Prompt version number.")
    alias: str | None = Field(
        default=None, description="The alias the version was resolved through, if any."
    )
    content_hash: str = Field(description="Hash of the template and its parameters.")
