"""Evidence the handover pack adds to the runbook facts: history, metrics, data, prompts, risks.

Each function reads the store or the workspace and returns plain data;
anything it cannot find is returned as a gap. Only the prompt details touch
a registry (MLflow by default); a registry that is down costs a gap, not the
pack.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from releaser.api.state import ROLLOUT_KIND
from releaser.api.workspace import Workspace
from releaser.core.stats_aggregates import VariantStats
from releaser.docs.facts import Gap

__all__ = [
    "dataset_sheets",
    "error_budget",
    "prompt_cards",
    "raci",
    "risk_register",
    "rollout_history",
]

METRIC_ROLLOUTS = 3
"""Metric charts are drawn for the latest rollouts only; the timeline shows them all."""
MAX_LOCAL_DATA_BYTES = 200_000_000


def _variant(stats: VariantStats | None) -> dict[str, Any]:
    if stats is None or not stats.requests:
        return {
            "requests": 0,
            "errors": 0,
            "error_rate": None,
            "latency_p95_ms": None,
            "quality_mean": None,
        }
    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "error_rate": stats.errors / stats.requests,
        "latency_p95_ms": stats.latency.quantile(0.95),
        "quality_mean": stats.quality_sum / stats.quality_count if stats.quality_count else None,
    }


def rollout_history(ws: Workspace, service: str) -> list[dict[str, Any]]:
    """Every rollout of ``service``, oldest first; the latest ones with per-step metrics."""
    rollouts = [
        r.value
        for r in ws.store.list(ROLLOUT_KIND, prefix=f"{service}-")
        if r.value.get("service") == service
    ]
    rollouts.sort(key=lambda v: (v["started_at"], v["id"]))
    out: list[dict[str, Any]] = []
    for i, v in enumerate(rollouts):
        item = {
            k: v[k]
            for k in (
                "id",
                "baseline",
                "candidate",
                "status",
                "started_at",
                "ended_at",
                "steps",
                "decisions",
                "step",
                "forced",
            )
        }
        item["metrics"] = []
        if i >= len(rollouts) - METRIC_ROLLOUTS:
            per = ws.store.read_metrics(v["id"])
            for index, step in enumerate(v["steps"]):
                base, cand = per.get((index, "baseline")), per.get((index, "candidate"))
                if base is None and cand is None:
                    continue
                entry = {
                    "step": step["name"],
                    "baseline": _variant(base),
                    "candidate": _variant(cand),
                    "shadow": None,
                }
                plan = step.get("shadow")
                if plan is not None:
                    # The candidate's figures are its mirrored calls'; its scores agreement.
                    shown = entry["candidate"]
                    entry["shadow"] = {
                        "percent": plan["percent"],
                        "mirrored": shown["requests"],
                        "errors": shown["errors"],
                        "latency_p95_ms": shown["latency_p95_ms"],
                        "compared": cand.quality_count if cand else 0,
                        "agreement": shown["quality_mean"],
                        "min_agreement": plan["min_agreement"],
                    }
                    shown["quality_mean"] = None
                item["metrics"].append(entry)
        out.append(item)
    return out


def error_budget(slos: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Errors measured during the rollouts shown, against the error budget the SLOs allow."""
    allowed = slos.get("error_rate")
    if allowed is None and slos.get("availability") is not None:
        allowed = 1 - float(slos["availability"])
    requests = errors = 0
    for r in history:
        for m in r["metrics"]:
            # Mirrored calls in a shadow step reached no user: they spend no budget.
            for variant in ("baseline",) if m.get("shadow") else ("baseline", "candidate"):
                requests += m[variant]["requests"]
                errors += m[variant]["errors"]
    if allowed is None or not requests:
        return None
    rate = errors / requests
    return {
        "allowed_error_rate": allowed,
        "requests": requests,
        "errors": errors,
        "error_rate": rate,
        "budget_errors": allowed * requests,
        "consumed": rate / allowed if allowed else None,
    }


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_sheets(ws: Workspace, facts: dict[str, Any], gaps: list[Gap]) -> list[dict[str, Any]]:
    """A data sheet per dataset of the deployed release; contents read only if the md5 matches."""
    deployed = facts["deployed"]
    if not deployed:
        return []
    roles = {d["path"]: d["role"] for d in facts["dataset_specs"]}
    ev = facts["eval"] or {}
    sheets = []
    for d in deployed["datasets"]:
        sheet: dict[str, Any] = {
            **d,
            "role": roles.get(d["path"], "other"),
            "rows": None,
            "columns": [],
            "composition": {},
            "modality": None,
        }
        path = ws.root / d["path"]
        if path.suffix.lower() in (".csv", ".tsv"):
            sheet["modality"] = "tabular"
        if (
            path.is_file()
            and path.stat().st_size <= MAX_LOCAL_DATA_BYTES
            and _md5(path) == d["md5"]
        ):
            if path.suffix.lower() in (".csv", ".tsv"):
                delim = "\t" if path.suffix.lower() == ".tsv" else ","
                with path.open(newline="", encoding="utf-8", errors="replace") as fh:
                    reader = csv.DictReader(fh, delimiter=delim)
                    wanted = [
                        c
                        for c in [*(ev.get("slices") or []), ev.get("label_column")]
                        if c and c in (reader.fieldnames or [])
                    ]
                    counts: dict[str, Counter[str]] = {c: Counter() for c in wanted}
                    rows = 0
                    for row in reader:
                        rows += 1
                        for c in wanted:
                            counts[c][row.get(c) or ""] += 1
                sheet["rows"] = rows
                sheet["columns"] = list(reader.fieldnames or [])
                sheet["composition"] = {
                    c: sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
                    for c, cnt in counts.items()
                }
        else:
            gaps.append(
                Gap(
                    f"data sheet {d['path']}",
                    "the file's contents were not available locally at the pinned md5",
                    f"'dvc pull {d['path']}' at git rev {d['rev'][:12]} and build again",
                )
            )
        sheets.append(sheet)
    return sheets


def prompt_cards(ws: Workspace, facts: dict[str, Any], gaps: list[Gap]) -> list[dict[str, Any]]:
    """A card per prompt of the deployed release, with its template from the registry."""
    deployed = facts["deployed"]
    cards = []
    for p in deployed["prompts"] if deployed else []:
        card: dict[str, Any] = {
            **p,
            "template": None,
            "variables": {},
            "parameters": {},
            "metadata": {},
            "author": None,
            "created_at": None,
        }
        try:
            pv = ws.prompts.get(p["name"], version=p["version"])
        except Exception as exc:  # noqa: BLE001 - a registry problem is a gap in one card
            gaps.append(
                Gap(
                    f"prompt card {p['name']}",
                    f"the template could not be read from the registry ({type(exc).__name__})",
                    "check the registry is reachable and build the pack again",
                )
            )
        else:
            if pv.content_hash != p["content_hash"]:
                gaps.append(
                    Gap(
                        f"prompt card {p['name']}",
                        "the registry's content no longer matches the release's hash",
                        f"'releaser reconcile {facts['service']}' and investigate",
                    )
                )
            card.update(
                template=pv.template,
                variables=dict(pv.variables),
                parameters=dict(pv.parameters),
                metadata=dict(pv.metadata),
                author=pv.author,
                created_at=pv.created_at.isoformat(),
            )
        cards.append(card)
    return cards


_RESPONSIBLE = {
    "Create and gate releases": ("ml-lead",),
    "Refresh data and prompts": ("ml-lead",),
    "Run rollouts": ("ops-lead", "ml-lead"),
    "Roll back and respond to alerts": ("ops-lead",),
    "Keep the runbook current": ("ops-lead",),
    "Data protection (DPIA, personal data)": ("data-protection",),
}


def raci(facts: dict[str, Any]) -> dict[str, Any]:
    """Who is Responsible, Accountable, Consulted, Informed, derived from the roles declared.

    The rule is stated in the document: the service owner is accountable for
    everything; the role named for an activity is responsible; roles that
    approve a phase are consulted; everyone else is informed.
    """
    roles = sorted({o["role"] for o in facts["owners"]})
    approvers = {
        a["role"]
        for crit in (facts["phase_criteria"] or {}).values()
        if crit
        for a in crit.get("approvals", [])
    }
    rows = []
    for activity, responsible in _RESPONSIBLE.items():
        cells = {}
        for role in roles:
            if role in responsible:
                cells[role] = "R"
            elif role == "service-owner":
                cells[role] = "A"
            elif role in approvers:
                cells[role] = "C"
            else:
                cells[role] = "I"
        if "service-owner" in cells and cells["service-owner"] == "R":
            cells["service-owner"] = "A/R"
        rows.append(
            {
                "activity": activity,
                "cells": cells,
                "unassigned": not any(r in roles for r in responsible),
            }
        )
    return {"roles": roles, "rows": rows}


def risk_register(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """Risks every AI service carries, each with the control releaser evidences and its state."""
    gate, drill, ev = facts["gate"], facts["drill"], facts["eval"]
    service = facts["service"]
    risks: list[dict[str, Any]] = [
        {
            "risk": "A new release answers worse than the one it replaces",
            "mitigation": "eval gate on the golden set with non-regression against the baseline; "
            "staged rollout with anytime-valid tests",
            "evidence": (
                f"last gate {'passed' if gate.get('passed') else 'FAILED'}"
                if gate
                else "no gate evidence stored (gap)"
            ),
        },
        {
            "risk": "A release is worse for one group of users only",
            "mitigation": "per-slice evaluation"
            + (f" on {', '.join(ev['slices'])}" if ev and ev.get("slices") else "")
            + "; named user groups reached first in rollouts",
            "evidence": "slices configured"
            if ev and ev.get("slices")
            else "no slices configured (gap)",
        },
        {
            "risk": "An outage or slow responses after a change",
            "mitigation": "SLOs and guardrails stop rollouts; one-command rollback",
            "evidence": (
                f"last drill reverted in {drill['time_to_revert_ms']} ms"
                if drill and drill.get("time_to_revert_ms") is not None
                else "no drill recorded (gap)"
            ),
        },
        {
            "risk": "A change reaches users without a record (edited prompt, data or model)",
            "mitigation": "releases pin content hashes; every change is audited; "
            f"'releaser reconcile {service} --check' reports alias drift",
            "evidence": "audit chain verification in this pack",
        },
        {
            "risk": "A release cannot be undone",
            "mitigation": "releases that migrate data are marked irreversible; rollback refuses "
            "them without --force",
            "evidence": "marked irreversible" if facts["irreversible"] else "not irreversible",
        },
        {
            "risk": "Personal data in the golden or training sets",
            "mitigation": "a data-protection owner and a DPIA checklist item before production",
            "evidence": (
                "data-protection owner named"
                if any(o["role"] == "data-protection" for o in facts["owners"])
                else "no data-protection owner named (gap)"
            ),
        },
        {
            "risk": "Credentials leak through generated documents",
            "mitigation": "token-like environment values and store passwords are redacted",
            "evidence": "redaction applied to every file of this pack",
        },
    ]
    return [
        {**r, "id": f"R{i}", "likelihood": None, "impact": None} for i, r in enumerate(risks, 1)
    ]
