"""A UK Algorithmic Transparency Recording Standard (ATRS v3) record, pre-filled.

The record follows the v3.0 template's sections: metadata, Tier 1 (overview)
and Tier 2 (owner and responsibility; description and rationale;
decision-making process; tool specification with model and data
specifications; risks, mitigations and impact assessments). releaser fills
the fields it knows from the release state and ``releaser.yaml`` and names
its source; every other field stays empty and is listed as a gap for the
team to complete. Nothing is inferred beyond the recorded facts. The ``ref``
numbers order the fields within this record; they are not the template's own
cell references, so the record tells readers to copy values by field name.

The Markdown record (``atrs.md.j2``) ends with how an individual decision is traced:
``releaser explain`` replays the routing of a past request from the route history
(:mod:`releaser.api.explain`), so an appeal can be told which release served the
person and why they were in that group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ATRS_VERSION", "AtrsField", "atrs_record"]

ATRS_VERSION = "3.0"


@dataclass(frozen=True)
class AtrsField:
    """One field of the record: its place in the template, its value (or None) and source."""

    section: str
    ref: str
    name: str
    value: str | None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "section": self.section,
            "ref": self.ref,
            "name": self.name,
            "value": self.value,
            "source": self.source,
            "filled": self.value is not None,
        }


def _owner(facts: dict[str, Any], role: str) -> dict[str, Any] | None:
    return next((o for o in facts["owners"] if o["role"] == role), None)


_ATRS_PHASE = {
    "poc": "Pre-deployment",
    "pilot": "Beta/Pilot",
    "production": "Production",
    "operations": "Production",
}
"""releaser's lifecycle phases mapped onto the phases the ATRS template offers."""


def _phase(facts: dict[str, Any]) -> str | None:
    status = facts["phases"]["status"]
    phase = status.get("phase") if isinstance(status, dict) else None
    if not isinstance(phase, str) or phase not in _ATRS_PHASE:
        return None
    return f"{_ATRS_PHASE[phase]} (releaser phase {phase})"


def atrs_record(facts: dict[str, Any], data: list[dict[str, Any]]) -> list[AtrsField]:
    """Every ATRS v3 field, filled where releaser knows the answer."""
    cfg = "releaser.yaml"
    fields: list[AtrsField] = []

    def add(section: str, ref: str, name: str, value: str | None, source: str = "") -> None:
        fields.append(AtrsField(section, ref, name, value or None, source if value else ""))

    owner = _owner(facts, "service-owner") or (facts["owners"][0] if facts["owners"] else None)
    deployed = facts["deployed"]
    model = deployed["model"] if deployed else None
    meta, t1 = "Metadata", "Tier 1 - Overview"
    add(
        meta,
        "0.1",
        "Title",
        f"{facts['project']}: {facts['service']}",
        f"{cfg} project and service",
    )
    add(meta, "0.2", "Standard version", ATRS_VERSION, "this generator")
    add(meta, "0.3", "Organisation", None)
    add(meta, "0.4", "Phase", _phase(facts), "releaser phase status")
    add(meta, "0.5", "Region", None)
    add(meta, "0.6", "Date updated", (facts["as_of"] or {}).get("at"), "latest audit event")
    add(t1, "1.1", "Name", facts["service"], cfg)
    add(t1, "1.2", "Description", facts["description"], f"{cfg} services.*.description")
    add(t1, "1.3", "Website", None)
    add(t1, "1.4", "Contact email", owner["email"] if owner else None, f"{cfg} owners")

    s1 = "Tier 2 - 1. Owner and responsibility"
    add(s1, "2.1.1", "Organisation or department", None)
    add(s1, "2.1.2", "Team", owner.get("team") if owner else None, f"{cfg} owners (service owner)")
    add(
        s1,
        "2.1.3",
        "Senior responsible owner",
        f"{owner['name']} ({owner['role']})" if owner else None,
        f"{cfg} owners",
    )
    add(s1, "2.1.4", "Third party involvement", None)
    add(s1, "2.1.4.1", "Supplier or developer", None)
    add(s1, "2.1.4.2", "Companies House number", None)
    add(s1, "2.1.4.3", "Supplier role", None)
    add(s1, "2.1.4.4", "Procurement procedure type", None)
    add(s1, "2.1.4.5", "Data access terms", None)

    s2 = "Tier 2 - 2. Description and rationale"
    detail = None
    if deployed:
        parts = []
        if model:
            parts.append(f"model {model['name']} version {model['version']} ({model['model_uri']})")
        if deployed["prompts"]:
            parts.append(
                "prompts " + ", ".join(f"{p['name']} v{p['version']}" for p in deployed["prompts"])
            )
        if deployed["datasets"]:
            parts.append("datasets " + ", ".join(d["path"] for d in deployed["datasets"]))
        detail = f"Release {deployed['id']} serves " + "; ".join(parts) + "."
    add(s2, "2.2.1", "Detailed description", detail, "deployed release")
    add(s2, "2.2.2", "Scope", None)
    add(s2, "2.2.3", "Benefit", None)
    add(s2, "2.2.4", "Previous process", None)
    add(s2, "2.2.5", "Alternatives considered", None)

    s3 = "Tier 2 - 3. Decision-making process"
    add(s3, "2.3.1", "Process integration", None)
    output = None
    if facts["eval"]:
        output = f"a value of '{facts['eval']['label_column']}' for each input"
    add(s3, "2.3.2", "Provided information", output, f"{cfg} eval.label_column")
    add(
        s3,
        "2.3.3",
        "Frequency and scale of usage",
        facts.get("usage"),
        "router metrics in the store",
    )
    add(s3, "2.3.4", "Human decisions and review", None)
    add(s3, "2.3.5", "Required training", None)
    add(s3, "2.3.6", "Appeals and review", None)

    s4 = "Tier 2 - 4. Tool specification"
    arch = (
        "Versioned releases (model, prompts, data, code pinned by hash) reach users through "
        "staged rollouts with sequential tests and guardrails; a router assigns each request "
        "a release; one command rolls back."
    )
    add(s4, "2.4.1.1", "System architecture", arch, "releaser")
    add(s4, "2.4.1.2", "Phase", _phase(facts), "releaser phase status")
    maintenance = (
        f"Runbook generated from live state ('releaser runbook {facts['service']}'); "
        "every change is audited in a hash-chained log; rollback drills time the revert."
    )
    add(s4, "2.4.1.3", "Maintenance", maintenance, "releaser")
    models = f"{model['name']} v{model['version']}" if model else None
    add(s4, "2.4.1.4", "Models", models, "deployed release")
    m = "Tier 2 - 4.2 Model specification"
    add(m, "2.4.2.1", "Model name", model["name"] if model else None, "deployed release")
    add(m, "2.4.2.2", "Model version", str(model["version"]) if model else None, "deployed release")
    add(m, "2.4.2.3", "Model task", None)
    inputs = ", ".join(facts["eval"]["input_columns"]) if facts["eval"] else None
    add(m, "2.4.2.4", "Model input", inputs, f"{cfg} eval.input_columns")
    add(m, "2.4.2.5", "Model output", output, f"{cfg} eval.label_column")
    add(m, "2.4.2.6", "Model architecture", None)
    perf = None
    gate = facts["gate"]
    if gate and gate.get("metrics"):
        perf = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, int | float) else f"{k} {v}"
            for k, v in sorted(gate["metrics"].items())
        )
        perf += f" on {gate.get('dataset')} ({gate.get('rows')} rows)"
    add(m, "2.4.2.7", "Model performance", perf, "eval gate evidence")
    ds = ", ".join(d["path"] for d in facts["dataset_specs"]) or None
    add(m, "2.4.2.8", "Datasets", ds, f"{cfg} datasets")
    purposes = ", ".join(f"{d['path']}: {d['role']}" for d in facts["dataset_specs"]) or None
    add(m, "2.4.2.9", "Dataset purposes", purposes, f"{cfg} datasets.*.role")
    for d in data:
        sec = f"Tier 2 - 4.3 Data specification: {d['path']}"
        add(sec, "2.4.3.1", "Source data name", d["path"], "DVC")
        add(sec, "2.4.3.2", "Data modality", d.get("modality"), "file type")
        add(sec, "2.4.3.3", "Data description", None)
        quant = (
            f"{d['rows']} rows, {len(d['columns'])} columns" if d.get("rows") is not None else None
        )
        add(sec, "2.4.3.4", "Data quantities", quant, "the tracked file, md5 checked")
        add(sec, "2.4.3.5", "Sensitive attributes", None)
        add(sec, "2.4.3.6", "Data completeness and representativeness", None)
        add(sec, "2.4.3.7", "Source data URL", None)
        add(sec, "2.4.3.8", "Data collection", None)
        add(sec, "2.4.3.9", "Data cleaning", None)
        add(sec, "2.4.3.10", "Data sharing agreements", None)
        access = f"DVC remote '{d['remote']}', md5 {d['md5']}" if d.get("remote") else None
        add(sec, "2.4.3.11", "Data access and storage", access, "DVC")

    s5 = "Tier 2 - 5. Risks, mitigations and impact assessments"
    add(s5, "2.5.1", "Impact assessment", None)
    risks = "; ".join(f"{r['risk']}: {r['mitigation']}" for r in facts.get("risks", [])) or None
    add(s5, "2.5.2", "Risks", risks, "the pack's risk register")
    return fields
