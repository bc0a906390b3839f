"""Prometheus recording and alerting rules from a service's SLOs: multiwindow, multi-burn-rate.

Each objective has an error budget: ``1 - availability``, the ``error_rate``
itself, or, for ``latency_p95_ms``, 5% of requests slower than the threshold.
The burn rate is the share of bad requests over a window divided by the
budget. Following the SRE workbook (chapter 5, "Alerting on SLOs", table 5-8,
for a 30-day SLO period), three alerts per objective each need the burn rate
over a long and a short window above a factor:

============  =============  ==============  ============  ========
alert          budget spent   long window     short window  severity
============  =============  ==============  ============  ========
BurnFast       2% in 1 h      1h, 14.4x       5m, 14.4x     page
BurnMedium     5% in 6 h      6h, 6x          30m, 6x       page
BurnSlow       10% in 3 d     3d, 1x          6h, 1x        ticket
============  =============  ==============  ============  ========

The long window says the budget really is burning; the short one that it
still is, so an alert resets within minutes of a fix. Recording rules keep
the bad-request ratio of each window (``releaser:slo_<objective>_bad:ratio_rate<w>``),
so the alerts compare two series with ``and``.

Latency is a ratio of histogram buckets: requests slower than the threshold
are ``_count - _bucket{le=B}``, with ``B`` the smallest bucket bound at or
above the threshold. When the threshold falls between two bounds the rule
counts requests over ``B`` (a looser objective than written), and a warning
says so. A quality objective has no Prometheus series: it is left out with a
warning. Everything here is pure: no store, no clock, no files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from releaser.config.alerting import AlertSettings
from releaser.config.service import Slos
from releaser.errors import BadInput

__all__ = [
    "BURN_WINDOWS",
    "AlertRule",
    "AlertRules",
    "BurnWindow",
    "heading_anchor",
    "le_bucket",
    "render_alert_rules",
    "runbook_section",
]

LATENCY_BUDGET = 0.05
"""A p95 objective allows 5% of requests above its threshold."""


@dataclass(frozen=True)
class BurnWindow:
    """One row of the workbook's table: a burn factor over a long and a short window."""

    suffix: str
    long: str
    short: str
    factor: float
    severity: str
    for_: str
    spent: str


BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(
        "BurnFast", "1h", "5m", 14.4, "page", "2m", "2% of the 30-day budget goes in an hour"
    ),
    BurnWindow("BurnMedium", "6h", "30m", 6.0, "page", "15m", "5% of the budget goes in 6 hours"),
    BurnWindow("BurnSlow", "3d", "6h", 1.0, "ticket", "1h", "10% of the budget goes in 3 days"),
)
_WINDOWS = ("5m", "30m", "1h", "6h", "3d")


@dataclass(frozen=True)
class AlertRule:
    """One alert as the runbook describes it."""

    name: str
    objective: str
    severity: str
    expr: str
    for_: str
    summary: str
    description: str
    runbook_url: str

    @property
    def anchor(self) -> str:
        """The runbook heading's anchor (see :func:`heading_anchor`)."""
        return heading_anchor(self.name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``alerts render --json``, the runbook's facts)."""
        return {
            "name": self.name,
            "anchor": self.anchor,
            "objective": self.objective,
            "severity": self.severity,
            "expr": self.expr,
            "for": self.for_,
            "summary": self.summary,
            "description": self.description,
            "runbook_url": self.runbook_url,
        }


@dataclass(frozen=True)
class AlertRules:
    """The rule groups of one service, the alerts in them, and what could not be expressed."""

    service: str
    release: str
    groups: list[dict[str, Any]]
    alerts: list[AlertRule]
    warnings: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        """The rules file, as ``promtool check rules`` and Prometheus read it."""
        import yaml

        header = (
            f"# Prometheus rules for {self.service}, written by 'releaser alerts render "
            f"{self.service}' from releaser.yaml's SLOs. Do not edit: re-render instead.\n"
        )
        body = yaml.safe_dump({"groups": self.groups}, sort_keys=False, width=1000)
        return header + body


def heading_anchor(text: str) -> str:
    """The anchor GitHub and MkDocs give a Markdown heading of plain words (lower case,
    punctuation dropped, spaces as hyphens)."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return kept.strip().replace(" ", "-")


def _le_values(bound: float) -> str:
    """A regex matching how clients write ``bound`` in ``le`` ("1" in Go, "1.0" in Python)."""
    short = f"{bound:g}" if "e" not in f"{bound:g}" else repr(bound)
    long = repr(float(bound))
    values = [short] if short == long else [short, long]
    return "|".join(v.replace(".", "\\.") for v in values)


def le_bucket(threshold_s: float, buckets: list[float]) -> tuple[float, str | None]:
    """The smallest bucket bound at or above ``threshold_s``, and a warning if it is above."""
    above = [b for b in buckets if b >= threshold_s - 1e-12]
    if not above:
        raise BadInput(
            f"the latency objective {threshold_s * 1000:g} ms is above the histogram's "
            f"largest bucket ({buckets[-1] * 1000:g} ms): no series counts slower requests",
            hint="list the histogram's buckets in alerts.latency_buckets_s, or lower the SLO",
        )
    bound = above[0]
    if abs(bound - threshold_s) <= 1e-12:
        return bound, None
    below = [b for b in buckets if b < threshold_s]
    between = f"between the buckets {below[-1] * 1000:g} ms and " if below else "below "
    return bound, (
        f"the latency objective {threshold_s * 1000:g} ms falls {between}"
        f"{bound * 1000:g} ms: the rules count requests slower than {bound * 1000:g} ms "
        "(a looser objective); add a bucket at the threshold for an exact one"
    )


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))


def render_alert_rules(
    service: str, slos: Slos, settings: AlertSettings, release: str | None
) -> AlertRules:
    """The recording and alerting rules of ``service`` (``release``: its stable release)."""
    selector = settings.selector.replace("{service}", service).strip()
    warnings: list[str] = []
    objectives: list[tuple[str, float, str, str, str]] = []
    requests = settings.requests_metric

    def sel(extra: str = "") -> str:
        parts = [p for p in (selector, extra) if p]
        return "{" + ", ".join(parts) + "}"

    def errors(w: str) -> str:
        bad = f"sum(rate({requests}{sel(f'code=~{_q(settings.error_codes)}')}[{w}]))"
        return f"{bad} / sum(rate({requests}{sel()}[{w}]))"

    if slos.availability is not None:
        budget = 1 - slos.availability
        what = f"availability {slos.availability * 100:g}%"
        objectives.append(("availability", budget, what, "failed requests", "errors"))
    if slos.error_rate is not None:
        what = f"error rate at most {slos.error_rate * 100:g}%"
        objectives.append(("error_rate", slos.error_rate, what, "failed requests", "errors"))
    ratio: dict[str, Callable[[str], str]] = {"errors": errors}
    if slos.latency_p95_ms is not None:
        bound, warning = le_bucket(slos.latency_p95_ms / 1000, settings.latency_buckets_s)
        if warning:
            warnings.append(warning)
        hist = settings.latency_histogram
        le = f"le=~{_q(_le_values(bound))}"

        def slow(w: str) -> str:
            fast = f"sum(rate({hist}_bucket{sel(le)}[{w}]))"
            return f"1 - ({fast} / sum(rate({hist}_count{sel()}[{w}])))"

        ratio["latency"] = slow

        what = f"p95 latency at most {slos.latency_p95_ms:g} ms (bucket le={bound:g} s)"
        objectives.append(("latency", LATENCY_BUDGET, what, "slow requests", "latency"))
    if slos.quality_score is not None:
        warnings.append(
            "the quality_score objective has no Prometheus series: no rule is written for it "
            "(rollouts still check it)"
        )
    for name, budget, *_ in objectives:
        if budget <= 0:
            warnings.append(f"the {name} objective leaves no error budget: no burn-rate rule")
    objectives = [o for o in objectives if o[1] > 0]
    if not objectives:
        raise BadInput(
            f"{service} has no objective Prometheus can measure",
            hint="give the service 'slos: availability', 'error_rate' or 'latency_p95_ms'",
        )
    release_label = release or "none"
    if release is None:
        warnings.append(f"{service} has no stable release yet: the rules' release label is 'none'")
    base = settings.runbook_base_url.rstrip("/")
    recording: list[dict[str, Any]] = []
    alerting: list[dict[str, Any]] = []
    alerts: list[AlertRule] = []
    labels = {"service": service, "release": release_label}
    for objective, budget, what, bad_word, kind in objectives:
        record = f"releaser:slo_{objective}_bad:ratio_rate"
        for w in _WINDOWS:
            recording.append(
                {
                    "record": record + w,
                    "expr": ratio[kind](w),
                    "labels": {**labels, "slo": objective},
                }
            )
        for win in BURN_WINDOWS:
            name = f"Releaser{_camel(objective)}{win.suffix}"
            threshold = f"{win.factor:g} * {budget:.6g}"
            match = f'{{service="{service}", slo="{objective}"}}'
            expr = (
                f"{record}{win.long}{match} > ({threshold}) "
                f"and {record}{win.short}{match} > ({threshold})"
            )
            rule = AlertRule(
                name=name,
                objective=objective,
                severity=win.severity,
                expr=expr,
                for_=win.for_,
                summary=f"{service}: {what} is burning its error budget {win.factor:g}x too fast",
                description=(
                    f"{bad_word.capitalize()} are above {win.factor:g} times the budget "
                    f"({budget:.6g}) over {win.long} and over {win.short}: at this rate "
                    f"{win.spent}."
                ),
                runbook_url=f"{base}/{service}.md#{heading_anchor(name)}",
            )
            alerts.append(rule)
            alerting.append(
                {
                    "alert": name,
                    "expr": expr,
                    "for": win.for_,
                    "labels": {**labels, "slo": objective, "severity": win.severity},
                    "annotations": {
                        "summary": rule.summary,
                        "description": rule.description,
                        "runbook_url": rule.runbook_url,
                    },
                }
            )
    groups = [
        {"name": f"releaser-{service}-slo-recording", "rules": recording},
        {"name": f"releaser-{service}-slo-alerts", "rules": alerting},
    ]
    return AlertRules(service, release_label, groups, alerts, warnings)


def _q(text: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def runbook_section(
    service: str, slos: Slos, settings: AlertSettings, release: str | None
) -> dict[str, Any]:
    """What the runbook's "Prometheus alert rules" section shows (never raises for bad SLOs:
    a runbook is still written, saying why there are no rules)."""
    try:
        rules = render_alert_rules(service, slos, settings, release)
    except BadInput as exc:
        return {"alerts": [], "warnings": [exc.message], "yaml": ""}
    return {
        "alerts": [a.to_dict() for a in rules.alerts],
        "warnings": rules.warnings,
        "yaml": rules.to_yaml(),
    }
