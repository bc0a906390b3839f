"""``releaser alerts render``: a service's SLOs as Prometheus rules, written beside the config.

The rules are pure functions of ``releaser.yaml`` (SLOs, ``alerts:`` settings)
and the service's stable release in the store (its ``release`` label), so the
same state always writes the same file, and the file changes only when one of
them does: render again after a promotion or a rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from releaser.api.state import service_state
from releaser.api.workspace import Workspace
from releaser.docs.alert_rules import AlertRules, render_alert_rules
from releaser.errors import BadInput

__all__ = ["ALERTS_DIR", "AlertRulesResult", "alert_rules", "rules_path", "write_alert_rules"]

ALERTS_DIR = "alerts"
"""Default folder of the rules files, beside ``releaser.yaml``."""


@dataclass(frozen=True)
class AlertRulesResult:
    """The rules file written, its rules and what they could not express."""

    path: Path
    rules: AlertRules
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        """The documented ``alerts render --json`` shape."""
        return {
            "path": str(self.path),
            "changed": self.changed,
            "service": self.rules.service,
            "release": self.rules.release,
            "alerts": [a.to_dict() for a in self.rules.alerts],
            "recording_rules": sum(
                1 for g in self.rules.groups for r in g["rules"] if "record" in r
            ),
            "warnings": self.rules.warnings,
        }


def alert_rules(ws: Workspace, service: str) -> AlertRules:
    """The Prometheus rules of ``service``, from its SLOs and stable release (nothing written)."""
    spec = ws.config.service(service)
    stable = service_state(ws, service).stable
    return render_alert_rules(service, spec.slos, ws.config.alerts, stable)


def rules_path(ws: Workspace, service: str, out: Path | None) -> Path:
    """``OUT/SERVICE.rules.yml``, by default under ``alerts/`` beside ``releaser.yaml``."""
    folder = out if out is not None else ws.root / ALERTS_DIR
    return folder / f"{service}.rules.yml"


def write_alert_rules(ws: Workspace, service: str, out: Path | None = None) -> AlertRulesResult:
    """Render the rules of ``service`` and write them to ``OUT/SERVICE.rules.yml``.

    The file is only rewritten when its content changes, so its timestamp says
    when the rules last changed.
    """
    rules = alert_rules(ws, service)
    path = rules_path(ws, service, out)
    data = rules.to_yaml().encode("utf-8")
    changed = not path.is_file() or path.read_bytes() != data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if changed:
            path.write_bytes(data)
    except OSError as exc:
        raise BadInput(
            f"cannot write the rules to {path}: {exc.strerror or exc}",
            hint="choose another folder with --out",
        ) from exc
    return AlertRulesResult(path, rules, changed)
