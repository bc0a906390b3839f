"""The alerts a service's runbook covers, derived from its SLOs and rollout guardrails.

Each alert says what it means, where to look, how severe it is, how to
verify it, the exact rollback command and who to escalate to. The commands
are complete and copy-pasteable: a test runs the runbook's rollback command
as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from releaser.config.models import EscalationContact, Service
from releaser.docs.templates import shell_quote

__all__ = ["build_alerts", "rollback_command"]


def rollback_command(service: str, reason: str) -> str:
    """The one command that sends all of ``service``'s traffic to the last known-good release."""
    return f"releaser rollback {service} --reason {shell_quote(reason)} --yes"


def _escalation(contacts: Sequence[EscalationContact], first_level: int) -> list[str]:
    chosen = [c for c in contacts if c.level >= first_level] or list(contacts)
    return [f"level {c.level}: {c.name} ({c.contact}, {c.hours})" for c in chosen]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def build_alerts(
    service: str, spec: Service, contacts: Sequence[EscalationContact]
) -> list[dict[str, Any]]:
    """One alert per SLO and guardrail, plus releaser's own operational alerts."""
    status = f"releaser rollout status {service} --json"
    audit = "releaser audit log --limit 20"
    alerts: list[dict[str, Any]] = []

    def add(
        alert_id: str,
        title: str,
        severity: str,
        condition: str,
        meaning: str,
        look: list[str],
        verify: str,
        rollback: bool,
        escalate_from: int,
    ) -> None:
        alerts.append(
            {
                "id": alert_id,
                "title": title,
                "severity": severity,
                "condition": condition,
                "meaning": meaning,
                "where_to_look": look,
                "verify": verify,
                "rollback": rollback_command(service, f"{alert_id}: {condition}")
                if rollback
                else None,
                "escalation": _escalation(contacts, escalate_from),
            }
        )

    slos = spec.slos
    if slos.error_rate is not None:
        add(
            "slo-error-rate",
            "Error rate above the SLO",
            "sev-2",
            f"error rate above {_fmt(slos.error_rate * 100)}%",
            "More requests fail than the service promises; users see errors.",
            [status, audit, "the gateway or model-server logs for the failing requests"],
            f"'{status}': variants.*.error_rate above {_fmt(slos.error_rate)}",
            True,
            1,
        )
    if slos.availability is not None:
        add(
            "slo-availability",
            "Availability below the SLO",
            "sev-1",
            f"availability below {_fmt(slos.availability * 100)}%",
            "The service answers fewer requests than promised; it may be down.",
            [status, "the health of the gateway and of the model containers"],
            "the share of successful requests over the last hour, from the gateway's metrics",
            True,
            1,
        )
    if slos.latency_p95_ms is not None:
        add(
            "slo-latency-p95",
            "p95 latency above the SLO",
            "sev-2",
            f"p95 latency above {_fmt(slos.latency_p95_ms)} ms",
            "Responses are slow; callers may time out.",
            [status, "CPU and memory of the model containers", "the size of recent inputs"],
            f"'{status}': variants.*.latency_p95_ms above {_fmt(slos.latency_p95_ms)}",
            True,
            1,
        )
    if slos.quality_score is not None:
        add(
            "slo-quality",
            "Quality score below the SLO",
            "sev-3",
            f"mean quality score below {_fmt(slos.quality_score)}",
            "Answers are judged worse than promised (feedback or scorer).",
            [status, "recent user feedback", f"'releaser gate {service} --release ID'"],
            f"'{status}': variants.*.quality_mean below {_fmt(slos.quality_score)}",
            True,
            2,
        )
    guard = spec.rollout.guardrails
    breaches = [
        (name, limit)
        for name, limit in (
            ("error rate", guard.error_rate),
            ("p95 latency (ms)", guard.latency_p95_ms),
            ("quality score", guard.quality_score),
        )
        if limit is not None
    ]
    if breaches:
        limits = ", ".join(f"{n} {_fmt(v)}" for n, v in breaches)
        add(
            "rollout-guardrail",
            "A rollout stopped on a guardrail",
            "sev-3",
            f"a candidate broke a guardrail ({limits})",
            "releaser rolled the candidate back by itself; traffic is on the stable release. "
            "Nothing is broken for users now, but the candidate must not be retried as is.",
            [audit, "releaser release diff STABLE CANDIDATE"],
            f"'{status}': rollout.status is rolled_back and stable is the known-good release",
            False,
            2,
        )
    add(
        "side-effects-pending",
        "Side effects of a switch are pending",
        "sev-3",
        "a rollback or promotion left aliases or deploy targets unfinished",
        "Traffic is where releaser says, but MLflow or prompt aliases or a deploy target "
        "still point at the old release.",
        [f"releaser reconcile {service} --check", audit],
        f"'releaser reconcile {service} --check' exits 1 and lists the drift",
        False,
        2,
    )
    add(
        "audit-chain-broken",
        "The audit chain does not verify",
        "sev-2",
        "'releaser audit verify' exits 1",
        "An audit entry was altered, removed or reordered: the record of changes cannot be "
        "trusted past the named entry.",
        ["releaser audit verify --json", "the store's backups"],
        "'releaser audit verify' names the first bad entry",
        False,
        2,
    )
    return alerts
