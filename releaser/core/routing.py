"""The routing table: what routers read to decide which release a unit gets.

One :class:`ServiceRoute` record per service (store kind ``route``, key =
service name) holds everything a router needs, so a router never reads the
config, a rollout or a release on the request path: the stable release, the
candidate (if a rollout is live) with its cohort, seed and group definitions,
and the model and prompt versions of each release. Rollout transitions and
rollback rewrite it in the same store transaction as the rollout itself, so
routers switch atomically.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from releaser.core.bucketing import AttributeRule, Cohort, GroupRule
from releaser.core.shadow import ShadowPlan

__all__ = [
    "ROUTE_KIND",
    "GroupDef",
    "ReleaseArtifacts",
    "ServiceRoute",
    "compile_groups",
]

ROUTE_KIND = "route"

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class GroupDef(BaseModel):
    """A named user group as routers evaluate it (compiled to a ``GroupRule``)."""

    model_config = _FROZEN

    allow: list[str] = Field(default_factory=list)
    rules: list[tuple[str, str, str | list[str]]] = Field(
        default_factory=list,
        description="(attribute, op, value) with op in equals|in|matches|ends_with",
    )
    rules_match: Literal["all", "any"] = "all"

    def compile(self) -> GroupRule:
        """The fast, frozen rule object the router evaluates per request."""
        return GroupRule.build(
            allow=self.allow,
            rules=[AttributeRule.of((a, op, v)) for a, op, v in self.rules],
            rules_match=self.rules_match,
        )


def compile_groups(groups: dict[str, GroupDef]) -> dict[str, GroupRule]:
    """Compile every group definition."""
    return {name: g.compile() for name, g in groups.items()}


class ReleaseArtifacts(BaseModel):
    """What a release serves: its model version and prompt versions (for SDK look-ups)."""

    model_config = _FROZEN

    model: str | None = Field(default=None, description="'name/version' of the model")
    model_uri: str | None = None
    prompts: dict[str, int] = Field(default_factory=dict, description="prompt name -> version")


class ServiceRoute(BaseModel):
    """Routing state of one service: stable release and, mid-rollout, the candidate's cohort."""

    model_config = _FROZEN

    service: str
    stable: str | None = Field(description="Release everyone outside the cohort gets.")
    candidate: str | None = Field(default=None, description="Release the cohort gets, if any.")
    rollout_id: str | None = None
    step: int | None = Field(default=None, description="Index of the live step.")
    step_name: str | None = None
    seed: int = 0
    percent: float = 0.0
    groups: list[str] = Field(default_factory=list, description="Cohort groups (cumulative).")
    group_defs: dict[str, GroupDef] = Field(default_factory=dict)
    paused: bool = False
    shadow: ShadowPlan | None = Field(
        default=None, description="Set in a shadow step: mirror requests to the candidate."
    )
    artifacts: dict[str, ReleaseArtifacts] = Field(
        default_factory=dict, description="release id -> what it serves"
    )
    guard: str | None = Field(
        default=None,
        description="Under the post-promotion guard: the metrics key the stable release's "
        "requests are counted under (see releaser.core.guard).",
    )
    updated_at: str = ""

    def cohort(self) -> Cohort:
        """The live step's cohort (empty when no rollout is live)."""
        if self.candidate is None:
            return Cohort()
        return Cohort(groups=frozenset(self.groups), percent=self.percent)

    def to_value(self) -> dict[str, Any]:
        """The JSON value stored under ``route/<service>``."""
        return self.model_dump(mode="json")
