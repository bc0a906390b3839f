"""A prompt release: from "prompt v3 is ready" to a gated rollout, in one call.

The release pins the new prompt version and everything else as the service's
configuration resolves it now (the stable model, the other prompts, data, code).
The eval gate then runs against the stable release; only when it passes does the
rollout start, at the plan's first step. Each stage is the ordinary use case
(``create_release``, ``run_gate``, ``start_rollout``), so each is audited, crash-safe
and re-runnable as it is: running the command again after a crash finds the
release, reuses the cached predictions and starts the rollout if it is not live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from releaser.api import journal
from releaser.api.context import utc_now
from releaser.api.freeze import refuse_if_frozen
from releaser.api.gate_predict import Progress
from releaser.api.gates import GateReport, run_gate
from releaser.api.releases import create_release
from releaser.api.rollouts import TransitionResult, service_state, start_rollout
from releaser.api.workspace import Workspace
from releaser.errors import BadInput

if TYPE_CHECKING:
    from releaser.core.release import Release

__all__ = ["PromptRelease", "release_prompt"]


@dataclass(frozen=True)
class PromptRelease:
    """What a prompt release did: the release, its gate, and the rollout if it started."""

    release: Release
    created: bool
    gate: GateReport | None
    rollout: TransitionResult | None
    warnings: list[str] = field(default_factory=list)
    already_live: bool = False
    """The release's rollout was already running (a re-run): nothing new was started."""


def release_prompt(
    ws: Workspace,
    service: str,
    prompt: str,
    version: int,
    *,
    progress: Progress | None = None,
) -> PromptRelease:
    """Create the release pinning ``prompt`` at ``version``, gate it, start its rollout.

    Stops after the gate when it fails (the report says why). A service with no stable
    release is refused: a prompt release is compared with what serves today.
    """
    # What an earlier run owes lands first: a run killed after its rollout started is
    # finished by a plain re-run, which then finds the rollout live.
    journal.settle(ws, service=service)
    state = service_state(ws, service)
    if state.stable is None:
        raise BadInput(
            f"{service} has no stable release to compare prompt {prompt} v{version} with",
            hint=f"deploy a first release: 'releaser release create {service}', then "
            f"'releaser rollout start {service} --release <id> --initial'",
        )
    made = create_release(ws, service, prompt_versions={prompt: version})
    release = made.release
    if release.id == state.stable:
        raise BadInput(
            f"prompt {prompt} v{version} is already what {service}'s stable release serves",
            hint="register a new version with 'releaser prompt register', then release it",
        )
    if state.active_rollout is not None:
        from releaser.api.state import rollout_record

        live, _ = rollout_record(ws, state.active_rollout)
        if live.candidate == release.id:
            return PromptRelease(release, made.created, None, None, made.warnings, True)
    # Refused before the gate runs: the rollout could not start anyway (a re-run that
    # finds the rollout live, above, is not a new change).
    refuse_if_frozen(ws, service, utc_now(), f"release prompt {prompt} v{version}")
    spec = ws.config.service(service)
    gate: GateReport | None = None
    if spec.eval is not None:
        gate = run_gate(ws, service, release.id, progress=progress)
        if not gate.passed:
            return PromptRelease(release, made.created, gate, None, made.warnings)
    started = start_rollout(ws, service, release.id)
    return PromptRelease(release, made.created, gate, started, [*made.warnings, *started.warnings])
