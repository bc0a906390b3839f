"""Workspace-wide settings: where the store, MLflow and prompts are.

These few models are all a prompt command needs, so they live apart from the
service models: the prompt commands, and the operations commands that work on
the stored state (rollback, pause, resume, abort, status), validate only this
part of ``releaser.yaml`` first (quickly, and even while another part of the
file is being fixed); the rest of the file is validated when it is used.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field

from releaser.config._common import _Model, problem

__all__ = ["MlflowSettings", "PromptSettings", "StoreUrl", "WorkspaceSettings"]


def _no_password(value: str) -> str:
    if re.search(r"://[^/@\s]*:[^/@\s]*@", value):
        raise problem(
            "the store URL contains a password",
            hint="remove the password from releaser.yaml and set RELEASER_STORE in the "
            "environment (a CI secret) instead",
        )
    return value


StoreUrl = Annotated[str, AfterValidator(_no_password)]
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
    path: str = Field(
        default="prompts", description="Folder of the file backend, relative to releaser.yaml."
    )


class WorkspaceSettings(_Model):
    """The workspace-wide keys of ``releaser.yaml``; every other key is left to ``Config``."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    mlflow: MlflowSettings | None = None
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    store: StoreUrl | None = None
