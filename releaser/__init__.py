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
    from releaser.api.drills import DrillRecord, last_drill, run_drill
    from releaser.api.gates import GateReport, last_gate, require_gates, run_gate
    from releaser.api.init import init_workspace, validate_config
    from releaser.api.phases import (
        advance_phase,
        approvals,
        approve,
        check_phase,
        phase_status,
        record_evidence,
    )
    from releaser.api.prompts import configure_prompts
    from releaser.api.releases import (
        CreateResult,
        ReleaseDiff,
        create_release,
        diff_releases,
        get_release,
        list_releases,
    )
    from releaser.api.rollback import plan_rollback, reconcile, rollback
    from releaser.api.rollout_status import rollout_status
    from releaser.api.rollouts import (
        abort_rollout,
        advance_if_live,
        advance_rollout,
        pause_rollout,
        promote_rollout,
        resume_rollout,
        start_rollout,
    )
    from releaser.api.store_io import export_store, import_store
    from releaser.api.workspace import Workspace, open_workspace
    from releaser.core.release import Release
    from releaser.docs import build_handover, render_runbook, write_runbook
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
    "DrillRecord",
    "ExternalUnavailable",
    "GateReport",
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
    "advance_phase",
    "advance_if_live",
    "advance_rollout",
    "approvals",
    "approve",
    "audit_log",
    "build_handover",
    "check_phase",
    "configure_prompts",
    "create_release",
    "diff_releases",
    "export_store",
    "get_release",
    "import_store",
    "init_workspace",
    "last_drill",
    "last_gate",
    "list_releases",
    "open_workspace",
    "pause_rollout",
    "phase_status",
    "plan_rollback",
    "promote_rollout",
    "reconcile",
    "record_evidence",
    "render_runbook",
    "require_gates",
    "resume_rollout",
    "rollback",
    "rollout_status",
    "run_drill",
    "run_gate",
    "start_rollout",
    "validate_config",
    "verify_audit",
    "write_runbook",
]

_WHERE = {
    "GateReport": "releaser.api.gates",
    "last_gate": "releaser.api.gates",
    "require_gates": "releaser.api.gates",
    "run_gate": "releaser.api.gates",
    "advance_phase": "releaser.api.phases",
    "approvals": "releaser.api.phases",
    "approve": "releaser.api.phases",
    "check_phase": "releaser.api.phases",
    "phase_status": "releaser.api.phases",
    "record_evidence": "releaser.api.phases",
    "audit_log": "releaser.api.audit",
    "DrillRecord": "releaser.api.drills",
    "last_drill": "releaser.api.drills",
    "run_drill": "releaser.api.drills",
    "plan_rollback": "releaser.api.rollback",
    "reconcile": "releaser.api.rollback",
    "rollback": "releaser.api.rollback",
    "build_handover": "releaser.docs",
    "render_runbook": "releaser.docs",
    "write_runbook": "releaser.docs",
    "configure_prompts": "releaser.api.prompts",
    "verify_audit": "releaser.api.audit",
    "export_store": "releaser.api.store_io",
    "import_store": "releaser.api.store_io",
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
    "advance_if_live": "releaser.api.rollouts",
    "advance_rollout": "releaser.api.rollouts",
    "pause_rollout": "releaser.api.rollouts",
    "promote_rollout": "releaser.api.rollouts",
    "resume_rollout": "releaser.api.rollouts",
    "rollout_status": "releaser.api.rollout_status",
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
