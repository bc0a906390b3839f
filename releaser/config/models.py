"""The shape of ``releaser.yaml``: pydantic models holding every rule a file must follow.

Each model forbids unknown keys and is frozen. Rules that connect several
fields (a rollout's percentages, an eval suite's dataset) report each finding
with its own location through :func:`raise_issues`, so the loader can point
at the exact line of every one.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from releaser.core.freeze import DatesWindow, WeeklyWindow, parse_weekly_point, zone
from releaser.errors import BadInput, NotFound

__all__ = [
    "EMAIL_PATTERN",
    "FUNCTION_PATTERN",
    "PREDICT_PATTERN",
    "SLUG_PATTERN",
    "AlertSettings",
    "ApprovalRule",
    "AttributeRule",
    "Budgets",
    "ChecklistItem",
    "Config",
    "DatasetSpec",
    "EscalationContact",
    "EvalSuite",
    "FreezeWindow",
    "GithubSettings",
    "Guardrails",
    "LlmEndpoint",
    "LlmPredict",
    "Issue",
    "MlflowSettings",
    "ModelSpec",
    "NonRegression",
    "Owner",
    "OwnersSection",
    "PhaseCriteria",
    "PhaseGates",
    "PromptSettings",
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
    "did_you_mean",
    "problem",
    "raise_issues",
    "rollout_group_context",
]


from releaser.config._common import (
    EMAIL_PATTERN,
    FUNCTION_PATTERN,
    MAX_COUNT,
    PREDICT_PATTERN,
    SLUG_PATTERN,
    Issue,
    Loc,
    Slug,
    _compile,
    _duplicates,
    _Model,
    did_you_mean,
    problem,
    raise_issues,
    unknown_group,
)
from releaser.config.alerting import AlertSettings, Webhook
from releaser.config.service import (
    ApprovalRule,
    Budgets,
    ChecklistItem,
    DatasetSpec,
    EvalSuite,
    Guardrails,
    LlmEndpoint,
    LlmPredict,
    ModelSpec,
    NonRegression,
    PhaseCriteria,
    PhaseGates,
    PromptSpec,
    RolloutPlan,
    RolloutStep,
    ScorerSpec,
    Service,
    ShadowSpec,
    Slos,
    default_rollout_plan,
)
from releaser.config.settings import (
    STORE_DESCRIPTION,
    MlflowSettings,
    PromptSettings,
    StoreUrl,
)

MAX_OWNER_KEYS = 16
"""Public keys one owner may list (old and new keys while rotating, a hardware key...)."""
GITHUB_LOGIN_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$"


class Owner(_Model):
    """A person accountable for the project and the role they answer for."""

    name: str = Field(min_length=1, description="Full name.")
    email: str = Field(pattern=EMAIL_PATTERN, description="Work email address.")
    role: str = Field(
        min_length=1,
        description="What they answer for, e.g. service-owner, ml-lead, ops-lead, "
        "data-protection. Approval rules in phases name these roles.",
    )
    team: str | None = Field(default=None, description="Team or department, if useful.")
    github: str | None = Field(
        default=None,
        pattern=GITHUB_LOGIN_PATTERN,
        description="GitHub login, so the runs they start in GitHub Actions are known as theirs.",
    )
    ssh_keys: list[str] = Field(
        default_factory=list,
        max_length=MAX_OWNER_KEYS,
        description="Public SSH keys ('ssh-ed25519 AAAA... comment', a .pub file's line) "
        "their approvals are signed with, as git's allowed_signers holds them. An approval "
        "counts only when it verifies against a key listed here at the release's commit.",
    )

    @field_validator("ssh_keys")
    @classmethod
    def _keys_parse(cls, keys: list[str]) -> list[str]:
        from releaser.core.signing import parse_public_key

        for i, key in enumerate(keys):
            try:
                parse_public_key(key)
            except ValueError as exc:
                raise problem(
                    f"ssh_keys[{i}]: {exc}",
                    hint="paste the one line of the public key file (e.g. ~/.ssh/id_ed25519.pub)",
                ) from None
        return keys


class OwnersSection(_Model):
    """Only the ``owners`` of a ``releaser.yaml``: what verifying an approval reads.

    An approval is checked against the owners at the release's commit; the rest of
    that file may follow an older or newer format and is not looked at.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    owners: list[Owner] = Field(min_length=1)


class EscalationContact(_Model):
    """Who to call when a release goes wrong, and when they can be reached."""

    level: int = Field(ge=1, le=MAX_COUNT, description="Escalation level: 1 is called first.")
    name: str = Field(min_length=1, description="Person, rota or team.")
    contact: str = Field(min_length=1, description="Channel, email or phone number.")
    hours: str = Field(
        default="business", description="When they answer, e.g. 'business' or '24x7'."
    )


# --- user groups ------------------------------------------------------------------------

_OPERATORS = ("equals", "in", "matches", "ends_with")


class AttributeRule(_Model):
    """A test on one request attribute; exactly one operator per rule."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True)

    attribute: str = Field(min_length=1, description="Attribute name, e.g. email or council.")
    equals: str | None = Field(default=None, description="The attribute equals this value.")
    in_: list[str] | None = Field(
        default=None, alias="in", min_length=1, description="The attribute is one of these."
    )
    matches: str | None = Field(
        default=None,
        description="The attribute contains a match of this regular expression, in RE2 "
        "syntax (linear time: no backreferences, lookarounds or possessive quantifiers; at "
        "most 1,000 characters). Anchor with ^...$ for the whole value.",
    )
    ends_with: str | None = Field(default=None, description="The attribute ends with this.")

    @field_validator("matches")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value

    @model_validator(mode="after")
    def _one_operator(self) -> AttributeRule:
        given = [op for op, v in zip(_OPERATORS, self._values(), strict=True) if v is not None]
        if len(given) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            raise problem(
                f"a rule needs exactly one operator{got}",
                hint="use one of: equals, in, matches, ends_with; put several rules in a list",
            )
        return self

    def _values(self) -> tuple[object, ...]:
        return (self.equals, self.in_, self.matches, self.ends_with)

    def operator(self) -> tuple[str, str | list[str]]:
        """``(op, value)`` of the one operator this rule uses."""
        for op, value in zip(_OPERATORS, self._values(), strict=True):
            if isinstance(value, str | list):
                return op, value
        raise AssertionError("validated: a rule has exactly one operator")


class UserGroup(_Model):
    """A named set of users for rollouts: an allow-list of unit ids and/or attribute rules."""

    description: str = Field(default="", description="Who is in this group, in words.")
    allow: list[str] = Field(
        default_factory=list, description="Unit ids (user or session ids) always in the group."
    )
    rules: list[AttributeRule] = Field(
        default_factory=list,
        description="Attribute rules; a unit matches when ALL rules hold. "
        "List several groups in a rollout step to combine them with OR.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> UserGroup:
        if not self.allow and not self.rules:
            raise problem(
                "a group needs 'allow' (unit ids) or 'rules' (attribute rules)",
                hint="add 'allow: [some-user-id]' or a rule such as "
                "'{attribute: email, ends_with: \"@example.org\"}'",
            )
        return self

    def rule_triples(self) -> list[tuple[str, str, str | list[str]]]:
        """Each rule as ``(attribute, op, value)``, the form routers compile."""
        return [(rule.attribute, *rule.operator()) for rule in self.rules]


# --- registries ---------------------------------------------------------------------------


MAX_RETENTION_DAYS = 36_500


class Retention(_Model):
    """How long the store keeps what only speeds things up or draws charts.

    ``releaser store prune`` removes what these allow (dry run by default). Nothing a
    gate, an explanation or an audit needs is ever pruned: releases, gate reports,
    rollouts and their decisions, approvals, the audit log, and the predictions of
    each service's stable, known-good, live and latest releases stay whatever their age.
    """

    gate_predictions_days: int = Field(
        default=90,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Stored gate predictions (the cache that spares a re-gate predicting "
        "again, about 36 kB per 1,000 golden rows) of other releases are pruned this many "
        "days after they were written.",
    )
    keep_releases: int = Field(
        default=10,
        ge=1,
        le=MAX_COUNT,
        description="The latest releases of each service whose predictions are kept "
        "whatever their age.",
    )
    route_history_days: int = Field(
        default=400,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Versions of each service's routing record (kept so 'releaser explain' "
        "can say which release a unit got at a past time, and why) are pruned once they "
        "stopped applying this many days ago; the version in force is always kept.",
    )
    rollout_histograms_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Latency histograms of rollouts that ended this many days ago are "
        "pruned (their request, error and quality counts stay; handover charts then show "
        "no p95 for them). Default: kept.",
    )


MAX_FREEZE_DATES = 366
"""Most dates one freeze window may list."""


class FreezeWindow(_Model):
    """A recurring change freeze: weekly (``from``/``to``) or on listed dates.

    During it, rollouts do not start or widen and prompts are not promoted; a rollback,
    a pause and an abort always work (docs/operations/freezes.md).
    """

    model_config = ConfigDict(populate_by_name=True)

    name: Slug = Field(description="Name shown in refusals, holds and status.")
    from_: str | None = Field(
        default=None,
        alias="from",
        description="Weekly start: a weekday and a 24-hour time, e.g. 'Fri 16:00'.",
    )
    to: str | None = Field(default=None, description="Weekly end, e.g. 'Mon 08:00'.")
    dates: list[date] = Field(
        default_factory=list,
        max_length=MAX_FREEZE_DATES,
        description="Whole local days frozen (public holidays), e.g. 2026-12-25.",
    )
    timezone: str = Field(default="UTC", description="IANA time zone of the times and dates.")
    services: list[Slug] = Field(
        default_factory=list, description="Services it applies to; default: every service."
    )
    reason: str = Field(default="", max_length=500, description="Why, shown with the freeze.")

    @field_validator("from_", "to")
    @classmethod
    def _weekly_point(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parse_weekly_point(value)
        except BadInput as exc:
            raise problem(exc.message, exc.hint) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zone(value)
        except BadInput as exc:
            raise problem(exc.message, exc.hint) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> FreezeWindow:
        weekly = self.from_ is not None or self.to is not None
        issues: list[Issue] = []
        if weekly and self.dates:
            issues.append(
                Issue(
                    ("dates",),
                    "a window is weekly (from/to) or on dates, not both",
                    "split it into two windows",
                )
            )
        elif weekly and (self.from_ is None or self.to is None):
            missing = "to" if self.to is None else "from"
            issues.append(
                Issue(
                    (missing,),
                    f"a weekly window needs '{missing}' too",
                    "e.g. from: 'Fri 16:00', to: 'Mon 08:00'",
                )
            )
        elif weekly and parse_weekly_point(str(self.from_)) == parse_weekly_point(str(self.to)):
            issues.append(
                Issue(
                    ("to",),
                    "the window ends when it starts",
                    "give a different end; a freeze for good is a long manual one",
                )
            )
        elif not weekly and not self.dates:
            issues.append(
                Issue(
                    ("dates",),
                    "a window needs from/to or dates",
                    "e.g. dates: [2026-12-25, 2026-12-26]",
                )
            )
        raise_issues(issues)
        return self

    def window(self) -> WeeklyWindow | DatesWindow:
        """The pure window the freeze checks evaluate."""
        if self.dates:
            return DatesWindow(self.name, frozenset(self.dates), self.timezone, self.reason)
        return WeeklyWindow(
            self.name,
            parse_weekly_point(str(self.from_)),
            parse_weekly_point(str(self.to)),
            self.timezone,
            self.reason,
        )

    def applies_to(self, service: str) -> bool:
        """Whether the window freezes ``service``."""
        return not self.services or service in self.services


class GithubSettings(_Model):
    """What releaser mirrors to GitHub (active only with GITHUB_TOKEN and GITHUB_REPOSITORY)."""

    environment: str = Field(
        default="production",
        min_length=1,
        description="GitHub environment of the deployments; '{service}' becomes the service name.",
    )
    deployments: bool = Field(
        default=True, description="Mirror rollouts as GitHub Deployments with statuses."
    )
    gate_status: Literal["status", "check_run"] = Field(
        default="status", description="Publish gates as a commit status or a check run."
    )
    pr_comments: bool = Field(
        default=True, description="Keep one comment per service on the pull request."
    )
    release_on_production: bool = Field(
        default=True,
        description="Create a GitHub Release with the handover pack when a release is promoted.",
    )


# --- services -----------------------------------------------------------------------------


class Config(_Model):
    """The whole of ``releaser.yaml``."""

    # pydantic would echo the whole input in messages, store URL included.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    version: Literal[1] = Field(default=1, description="Format version of this file.")
    project: Slug = Field(description="Project name: lowercase letters, digits and '-'.")
    owners: list[Owner] = Field(min_length=1, description="Who is accountable (at least one).")
    escalation: list[EscalationContact] = Field(
        default_factory=list, description="Escalation contacts, in order of level."
    )
    groups: dict[Slug, UserGroup] = Field(
        default_factory=dict, description="Named user groups that rollout steps reach first."
    )
    mlflow: MlflowSettings | None = Field(
        default=None, description="MLflow settings; default: a local sqlite store."
    )
    prompts: PromptSettings = Field(
        default_factory=PromptSettings, description="Where prompts are versioned."
    )
    github: GithubSettings | None = Field(
        default=None, description="GitHub mirroring (deployments, gate statuses, PR comments)."
    )
    store: StoreUrl | None = Field(default=None, description=STORE_DESCRIPTION)
    retention: Retention = Field(
        default_factory=Retention,
        description="How long the store keeps prediction caches and latency histograms.",
    )
    freezes: list[FreezeWindow] = Field(
        default_factory=list,
        max_length=100,
        description="Recurring change freezes (weekly windows, dates); see also 'releaser freeze'.",
    )
    services: dict[Slug, Service] = Field(
        min_length=1, description="The services this repo releases, by name."
    )
    alerts: AlertSettings = Field(
        default_factory=AlertSettings,
        description="How 'releaser alerts render' writes Prometheus rules from the SLOs.",
    )
    notifications: list[Webhook] = Field(
        default_factory=list,
        max_length=20,
        description="Webhooks told about rollout transitions (started, advanced, held, "
        "promoted, rolled back, guard breach, owed side effects, failed drills).",
    )

    @field_validator("escalation")
    @classmethod
    def _by_level(cls, value: list[EscalationContact]) -> list[EscalationContact]:
        return sorted(value, key=lambda c: c.level)

    @model_validator(mode="after")
    def _groups_exist(self) -> Config:
        issues: list[Issue] = []
        for name, svc in self.services.items():
            for i, step in enumerate(svc.rollout.steps):
                for j, group in enumerate(step.groups):
                    if group not in self.groups:
                        loc: Loc = ("services", name, "rollout", "steps", i, "groups", j)
                        issues.append(Issue(loc, *unknown_group(group, self.groups)))
        for i, hook in enumerate(self.notifications):
            issues += [
                Issue(
                    ("notifications", i, "services", j),
                    f"no service {s!r}",
                    did_you_mean(s, self.services),
                )
                for j, s in enumerate(hook.services)
                if s not in self.services
            ]
        issues += [
            Issue(("notifications", i, "name"), f"the webhook name {v!r} is used twice")
            for i, v in _duplicates(h.name for h in self.notifications)
        ]
        names: set[str] = set()
        for i, window in enumerate(self.freezes):
            if window.name in names:
                issues.append(
                    Issue(
                        ("freezes", i, "name"),
                        f"the freeze {window.name!r} is listed twice",
                        "give each window its own name",
                    )
                )
            names.add(window.name)
            for j, svc_name in enumerate(window.services):
                if svc_name not in self.services:
                    close = did_you_mean(svc_name, self.services)
                    issues.append(
                        Issue(("freezes", i, "services", j), f"no service {svc_name!r}", close)
                    )
        raise_issues(issues)
        return self

    def service(self, name: str) -> Service:
        """The service called ``name``; NotFound (listing the known ones) otherwise."""
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services)) or "none"
            close = did_you_mean(name, self.services)
            hint = f"{close} known services: {known}" if close else f"known services: {known}"
            raise NotFound(f"no service {name!r} in releaser.yaml", hint=hint) from None


def rollout_group_context(data: Any) -> dict[str, Any]:
    """Validation context naming the groups a raw config defines (read by RolloutStep)."""
    groups = data.get("groups") if isinstance(data, dict) else None
    return {"group_names": [str(k) for k in groups]} if isinstance(groups, dict) else {}
