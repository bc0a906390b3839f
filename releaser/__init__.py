"""releaser: release manager for ML models and LLM prompts.

The public Python API. Names are imported on first use so that importing
``releaser`` (and the CLI) stays fast and loads no MLflow, DVC or git.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from releaser._version import __version__

if TYPE_CHECKING:
    from releaser.api.audit import audit_log, verify_audit
    from releaser.api.init import init_workspace, validate_config
    from releaser.api.prompts import configure_prompts
    from releaser.api.releases import (
        CreateResult,
        ReleaseDiff,
        create_release,
        diff_releases,
        get_release,
        list_releases,
    )
    from releaser.api.rollouts import (
        abort_rollout,
        advance_rollout,
        pause_rollout,
        promote_rollout,
        resume_rollout,
        rollout_status,
        start_rollout,
    )
    from releaser.api.workspace import Workspace, open_workspace
    from releaser.core.release import Release
    from releaser.errors import (
        ArtifactNotFound,
        BadInput,
        CheckFailed,
        ConfigError,
        ExternalUnavailable,
        NotFound,
        ReleaserError,
        StateConflict,
        WorkspaceError,
    )
    from releaser.router import Assignment, Router

__all__ = [
    "ArtifactNotFound",
    "Assignment",
    "BadInput",
    "CheckFailed",
    "ConfigError",
    "CreateResult",
    "ExternalUnavailable",
    "NotFound",
    "Release",
    "ReleaseDiff",
    "ReleaserError",
    "Router",
    "StateConflict",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "abort_rollout",
    "advance_rollout",
    "audit_log",
    "configure_prompts",
    "create_release",
    "diff_releases",
    "get_release",
    "init_workspace",
    "list_releases",
    "open_workspace",
    "pause_rollout",
    "promote_rollout",
    "resume_rollout",
    "rollout_status",
    "start_rollout",
    "validate_config",
    "verify_audit",
]

_WHERE = {
    "audit_log": "releaser.api.audit",
    "configure_prompts": "releaser.api.prompts",
    "verify_audit": "releaser.api.audit",
    "init_workspace": "releaser.api.init",
    "validate_config": "releaser.api.init",
    "CreateResult": "releaser.api.releases",
    "ReleaseDiff": "releaser.api.releases",
    "create_release": "releaser.api.releases",
    "diff_releases": "releaser.api.releases",
    "get_release": "releaser.api.releases",
    "list_releases": "releaser.api.releases",
    "Workspace": "releaser.api.workspace",
    "open_workspace": "releaser.api.workspace",
    "Release": "releaser.core.release",
    "Assignment": "releaser.router",
    "Router": "releaser.router",
    "abort_rollout": "releaser.api.rollouts",
    "advance_rollout": "releaser.api.rollouts",
    "pause_rollout": "releaser.api.rollouts",
    "promote_rollout": "releaser.api.rollouts",
    "resume_rollout": "releaser.api.rollouts",
    "rollout_status": "releaser.api.rollouts",
    "start_rollout": "releaser.api.rollouts",
    "ArtifactNotFound": "releaser.errors",
    "BadInput": "releaser.errors",
    "CheckFailed": "releaser.errors",
    "ConfigError": "releaser.errors",
    "ExternalUnavailable": "releaser.errors",
    "NotFound": "releaser.errors",
    "ReleaserError": "releaser.errors",
    "StateConflict": "releaser.errors",
    "WorkspaceError": "releaser.errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'releaser' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
