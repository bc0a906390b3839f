"""The configuration layer: the models of ``releaser.yaml``, its loader and its schema.

Names load on first use (PEP 562): ``releaser.yaml``'s full model tree costs
about 0.1 s to build, and a prompt command needs only :mod:`.settings`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from releaser.config.loader import (
    CONFIG_NAME,
    config_hash,
    config_json_schema,
    find_config,
    load_config,
    load_settings,
    parse_config,
    parse_owners,
    peek_service,
)
from releaser.config.settings import MlflowSettings, PromptSettings, WorkspaceSettings

# The models load on first use; this is the one list of their public names.
_LAZY = (
    "AlertSettings",
    "ApprovalRule",
    "AttributeRule",
    "Budgets",
    "ChecklistItem",
    "Config",
    "DatasetSpec",
    "EscalationContact",
    "EvalSuite",
    "Guardrails",
    "LlmEndpoint",
    "LlmPredict",
    "ModelSpec",
    "NonRegression",
    "Owner",
    "PhaseCriteria",
    "PhaseGates",
    "PromptSpec",
    "Retention",
    "RolloutPlan",
    "RolloutStep",
    "ScorerSpec",
    "Service",
    "ShadowSpec",
    "Slos",
    "UserGroup",
    "Webhook",
    "default_rollout_plan",
)

if TYPE_CHECKING:
    from releaser.config.models import *  # noqa: F403  (the names in _LAZY, for type checkers)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("releaser.config.models"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CONFIG_NAME",
    "MlflowSettings",
    "PromptSettings",
    "WorkspaceSettings",
    "config_hash",
    "config_json_schema",
    "find_config",
    "load_config",
    "load_settings",
    "parse_config",
    "parse_owners",
    "peek_service",
    *_LAZY,
]
