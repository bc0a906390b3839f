"""``releaser handover``: the pack operations and governance teams receive.

One call writes ``OUT/SERVICE-handover/`` (Markdown documents, charts as SVG,
the audit export, an ATRS record as JSON, ``index.html``),
``OUT/SERVICE-handover.zip`` and ``OUT/SERVICE-handover.html`` (the same
self-contained page). It then records the pack in the store (kind
``handover``, audited), so the next pack can say what changed since this one.
Every file passes through the redactor, and a last check refuses to write a
pack that would still contain a secret.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from releaser.api.audit import CHECKPOINT_DIR, load_checkpoint, make_checkpoint, verify_anchored
from releaser.api.context import current_actor, utc_now
from releaser.api.releases import list_releases
from releaser.api.workspace import Workspace
from releaser.core.audit import Checkpoint, EventDraft
from releaser.docs import charts, evidence
from releaser.docs.atrs import ATRS_VERSION, atrs_record
from releaser.docs.facts import Gap, collect_facts
from releaser.docs.html import markdown_to_html, render_page
from releaser.docs.runbook import RUNBOOK_TEMPLATE
from releaser.docs.secrets import Redactor
from releaser.docs.templates import render, template_env
from releaser.errors import BadInput, ReleaserError
from releaser.store.base import Write

__all__ = ["HANDOVER_KIND", "HandoverResult", "build_handover", "list_handovers"]

HANDOVER_KIND = "handover"
RECENT_EVENTS = 100


@dataclass(frozen=True)
class HandoverResult:
    """Where the pack was written, its number, what it could not fill and what changed."""

    number: int
    folder: Path
    zip_path: Path
    html_path: Path
    files: list[str]
    gaps: list[dict[str, str]]
    changes: list[str] = field(default_factory=list)
    atrs_filled: int = 0
    atrs_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The documented ``handover --json`` shape."""
        return {
            "number": self.number,
            "folder": str(self.folder),
            "zip": str(self.zip_path),
            "html": str(self.html_path),
            "files": self.files,
            "gaps": self.gaps,
            "changes": self.changes,
            "atrs": {"filled": self.atrs_filled, "total": self.atrs_total},
        }


def list_handovers(ws: Workspace, service: str) -> list[dict[str, Any]]:
    """The records of the packs built for ``service``, oldest first."""
    return [r.value for r in ws.store.list(HANDOVER_KIND, prefix=f"{service}/")]


def _summary(facts: dict[str, Any], audit_ok: bool) -> dict[str, Any]:
    """What the next pack compares against: the facts a reader would notice changing."""
    d = facts["deployed"] or {}
    model = d.get("model") or {}
    return {
        "release": d.get("id"),
        "model": f"{model['name']} v{model['version']}" if model else None,
        "prompts": {p["name"]: p["version"] for p in d.get("prompts", [])},
        "datasets": {x["path"]: x["md5"] for x in d.get("datasets", [])},
        "code": (d.get("code") or {}).get("sha"),
        "active_rollout": facts["state"]["active_rollout"],
        "known_good": facts["state"]["known_good"],
        "owners": sorted(f"{o['name']} ({o['role']})" for o in facts["owners"]),
        "escalation": [f"{e['level']}: {e['name']}" for e in facts["escalation"]],
        "slos": facts["slos"],
        "gate": None if facts["gate"] is None else bool(facts["gate"].get("passed")),
        "drill_at": (facts["drill"] or {}).get("at"),
        "phase": facts["phases"]["status"],
        "audit_ok": audit_ok,
        "gaps": len(facts["gaps"]),
    }


def _changes(
    ws: Workspace, previous: dict[str, Any] | None, summary: dict[str, Any]
) -> dict[str, Any]:
    if previous is None:
        return {"previous": None, "lines": [], "events": 0, "by_action": []}
    before = previous.get("summary", {})
    items = []
    for key in summary:
        if before.get(key) != summary[key]:
            items.append(f"{key}: {_short(before.get(key))} -> {_short(summary[key])}")
    seq = int(previous.get("audit_seq", 0))
    actions = Counter(e.action for e in ws.store.events(after_seq=seq))
    return {
        "previous": previous,
        "lines": items,
        "events": sum(actions.values()),
        "by_action": sorted(actions.items()),
    }


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path).strip("-") or "dataset"


MAX_PACK_CHECKPOINTS = 20
"""The latest checkpoints (by entry count) from ``audit-checkpoints/`` a pack carries."""


def _checkpoints(ws: Workspace) -> tuple[list[tuple[str, Checkpoint]], dict[str, bytes]]:
    """The workspace's committed checkpoints, latest last, and their files' bytes."""
    folder = ws.root / CHECKPOINT_DIR
    found: list[tuple[int, str, Checkpoint, bytes]] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            cp = load_checkpoint(path)
        except BadInput:
            continue  # verified below only if it is a checkpoint at all
        found.append((cp.seq, path.name, cp, path.read_bytes()))
    found.sort(key=lambda f: (f[0], f[1]))
    found = found[-MAX_PACK_CHECKPOINTS:]
    return [(f"{CHECKPOINT_DIR}/{n}", cp) for _, n, cp, _ in found], {
        f"{CHECKPOINT_DIR}/{n}": data for _, n, _, data in found
    }


def _sign_head(ws: Workspace) -> tuple[tuple[str, Checkpoint] | None, bytes | None, str]:
    """A checkpoint of the head signed for the pack with the configured key, if there is one."""
    from releaser.api.approvals import signing_key

    try:
        key = signing_key(None, ws.root)
    except BadInput:
        return None, None, "no signing key is configured (RELEASER_SIGNING_KEY)"
    with tempfile.TemporaryDirectory(prefix="releaser-checkpoint-") as tmp:
        try:
            cp, path = make_checkpoint(ws, key, Path(tmp) / "audit-checkpoint.json")
        except ReleaserError as exc:
            return None, None, f"no checkpoint was signed: {exc}"
        return ("audit-checkpoint.json", cp), path.read_bytes(), ""


def _audit(
    ws: Workspace, service: str, redactor: Redactor
) -> tuple[dict[str, Any], str, dict[str, bytes]]:
    checkpoints, files = _checkpoints(ws)
    signed, signed_bytes, unsigned_reason = _sign_head(ws)
    if signed is not None and signed_bytes is not None:
        checkpoints.append(signed)
        files[signed[0]] = signed_bytes
    anchored = verify_anchored(ws, checkpoints)
    result = anchored.chain
    lines: list[str] = []
    by_action: Counter[str] = Counter()
    recent: list[dict[str, Any]] = []
    marks = (f"service:{service}", f"rollout:{service}-")
    for ev in ws.store.events():
        data = ev.to_dict()
        lines.append(json.dumps(data, sort_keys=True, ensure_ascii=False))
        by_action[ev.action] += 1
        if (
            ev.subject.startswith(marks)
            or (ev.after or {})
            and isinstance(ev.after, dict)
            and ev.after.get("service") == service
        ):
            recent.append(
                {k: data[k] for k in ("seq", "at", "actor", "action", "subject", "reason")}
            )
    summary = {
        "ok": anchored.ok,
        "count": result.count,
        "head_hash": result.head_hash,
        "bad_seq": result.bad_seq,
        "problem": result.problem,
        "checkpoints": anchored.checkpoints,
        "state_problems": anchored.state_problems,
        "problems": anchored.problems,
        "records": anchored.records,
        "unsigned": unsigned_reason,
        "by_action": sorted(by_action.items()),
        "recent": recent[-RECENT_EVENTS:][::-1],
    }
    text = redactor.text("\n".join(lines) + ("\n" if lines else ""))
    return redactor.value(summary), text, files


def build_handover(ws: Workspace, service: str, out_dir: Path) -> HandoverResult:
    """Build the handover pack of ``service`` under ``out_dir`` and record it in the store."""
    redactor = Redactor.from_environment(ws.store_url)
    facts = collect_facts(ws, service, redactor=redactor)
    gaps = [Gap(**g) for g in facts["gaps"]]
    history = evidence.rollout_history(ws, service)
    releases = [
        {
            "id": r.id,
            "created_at": r.created_at,
            "created_by": r.created_by,
            "model": f"{r.content.model.name} v{r.content.model.version}"
            if r.content.model
            else None,
            "prompts": ", ".join(f"{p.name} v{p.version}" for p in r.content.prompts),
            "code": r.content.code.sha,
        }
        for r in list_releases(ws, service)
    ]
    budget = evidence.error_budget(facts["slos"], history)
    if budget is None:
        gaps.append(
            Gap(
                "error budget",
                "no traffic was measured during rollouts",
                "the budget shows once a rollout has reported metrics",
            )
        )
    else:
        first = min(r["started_at"] for r in history if r["metrics"])
        facts["usage"] = f"{budget['requests']} requests measured during rollouts since {first}"
    datasheets = evidence.dataset_sheets(ws, facts, gaps)
    prompt_cards = evidence.prompt_cards(ws, facts, gaps)
    facts["risks"] = evidence.risk_register(facts)
    atrs = [f.to_dict() for f in atrs_record(facts, datasheets)]
    audit, audit_jsonl, checkpoint_files = _audit(ws, service, redactor)
    previous_records = list_handovers(ws, service)
    previous = previous_records[-1] if previous_records else None
    number = len(previous_records) + 1
    summary = _summary(facts, audit["ok"])
    changes = _changes(ws, previous, summary)

    # Charts: SVG files in charts/, the same SVG inlined in the page.
    svgs: dict[str, str] = {}
    chart_paths: dict[str, Any] = {"timeline": None, "eval": None, "metrics": {}}
    timeline = charts.rollout_timeline_chart(history, (facts["as_of"] or {}).get("at"))
    if timeline:
        svgs["charts/rollout-timeline.svg"] = timeline
        chart_paths["timeline"] = "charts/rollout-timeline.svg"
    if facts["gate"]:
        ev_svg = charts.eval_chart(facts["gate"])
        if ev_svg:
            svgs["charts/eval.svg"] = ev_svg
            chart_paths["eval"] = "charts/eval.svg"
    for r in history:
        svg = charts.metrics_chart(
            r["id"],
            r["metrics"],
            error_slo=facts["slos"].get("error_rate"),
            latency_slo=facts["slos"].get("latency_p95_ms"),
        )
        if svg:
            path = f"charts/metrics-{_slug(r['id'])}.svg"
            svgs[path] = svg
            chart_paths["metrics"][r["id"]] = path
    for r in history:
        chart_paths["metrics"].setdefault(r["id"], None)

    context = {
        **facts,
        "number": number,
        "history": history,
        "releases": releases,
        "budget": budget,
        "datasheets": datasheets,
        "raci": evidence.raci(facts),
        "audit": audit,
        "atrs": atrs,
        "atrs_version": ATRS_VERSION,
        "atrs_filled": sum(1 for f in atrs if f["filled"]),
        "atrs_gaps": [f"{f['ref']} {f['name']}" for f in atrs if not f["filled"]],
        "changes": changes,
        "charts": chart_paths,
    }
    context["gaps"] = [g.to_dict() for g in gaps]
    env = template_env(ws.root)
    docs: list[tuple[str, str, str]] = [
        ("runbook.md", "Runbook", RUNBOOK_TEMPLATE),
        ("model-card.md", "Model card", "model-card.md.j2"),
    ]
    texts: dict[str, str] = {}
    titles: dict[str, str] = {}
    for path, title, template in docs:
        texts[path] = render(env, template, context)
        titles[path] = title
    for card in prompt_cards:
        path = f"prompts/{_slug(card['name'])}.md"
        texts[path] = render(env, "prompt-card.md.j2", {**context, "prompt": card})
        titles[path] = f"Prompt card: {card['name']}"
    for sheet in datasheets:
        path = f"datasheets/{_slug(sheet['path'])}.md"
        texts[path] = render(env, "datasheet.md.j2", {**context, "sheet": sheet})
        titles[path] = f"Data sheet: {sheet['path']}"
    for path, title, template in (
        ("eval-report.md", "Evaluation report", "eval-report.md.j2"),
        ("rollouts.md", "Rollouts and releases", "rollouts.md.j2"),
        ("audit.md", "Audit log and verification", "audit.md.j2"),
        ("slos.md", "SLOs and error budget", "slos.md.j2"),
        ("ownership.md", "Ownership (RACI)", "ownership.md.j2"),
        ("risk-register.md", "Risk register", "risk-register.md.j2"),
        ("atrs.md", "ATRS v3 record", "atrs.md.j2"),
        ("signoffs.md", "Phase gates and sign-offs", "signoffs.md.j2"),
        ("changes.md", "Changes since the previous pack", "changes.md.j2"),
        ("gaps.md", "Gaps", "gaps.md.j2"),
    ):
        texts[path] = render(env, template, context)
        titles[path] = title
    documents = [{"path": p, "title": titles[p]} for p in texts]
    index = render(env, "handover-index.md.j2", {**context, "documents": documents})

    title = f"Handover pack #{number}: {service}"
    sections = [("overview", "Overview", markdown_to_html(index, {}))]
    for path, text in texts.items():
        anchor = _slug(path.removesuffix(".md")).replace(".", "-")
        sections.append((anchor, titles[path], markdown_to_html(text, svgs)))
    status = ("audit verified" if audit["ok"] else "audit BROKEN", bool(audit["ok"]))
    page = render_page(title, sections, status=status)

    files: dict[str, bytes] = {"README.md": index.encode()}
    files.update({p: t.encode() for p, t in texts.items()})
    files.update({p: s.encode() for p, s in svgs.items()})
    files["audit-log.jsonl"] = audit_jsonl.encode()
    files.update(checkpoint_files)
    files["audit-verification.json"] = _json(
        {
            k: audit[k]
            for k in ("ok", "count", "head_hash", "bad_seq", "problem", "checkpoints", "problems")
        }
    )
    files["atrs.json"] = _json({"standard": "ATRS", "version": ATRS_VERSION, "fields": atrs})
    if facts["prometheus"]["yaml"]:  # the runbook's alerts, ready for Prometheus
        files["alert-rules.yml"] = facts["prometheus"]["yaml"].encode()
    files["facts.json"] = _json({k: v for k, v in context.items() if k not in ("audit", "charts")})
    files["index.html"] = page.encode()
    files = {p: redactor.text(b.decode()).encode() for p, b in files.items()}
    for p, b in files.items():
        if not redactor.bytes_clean(b):  # pragma: no cover - redaction above makes this unreachable
            raise ReleaserError(f"refusing to write {p}: it still contains a secret")

    folder, zip_path, html_path = _write(out_dir, service, files)
    _record(ws, service, number, files, summary, facts, audit)
    return HandoverResult(
        number=number,
        folder=folder,
        zip_path=zip_path,
        html_path=html_path,
        files=sorted(files),
        gaps=context["gaps"],
        changes=changes["lines"],
        atrs_filled=context["atrs_filled"],
        atrs_total=len(atrs),
    )


def _json(value: Any) -> bytes:
    return (
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    ).encode()


def _write(out_dir: Path, service: str, files: dict[str, bytes]) -> tuple[Path, Path, Path]:
    """Write folder, zip and page; the folder is replaced whole, never half-written."""
    name = f"{service}-handover"
    folder, zip_path, html_path = out_dir / name, out_dir / f"{name}.zip", out_dir / f"{name}.html"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir))
        try:
            for rel, data in sorted(files.items()):
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            zip_tmp = out_dir / f".{name}.zip.tmp"
            with zipfile.ZipFile(zip_tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for rel, data in sorted(files.items()):
                    info = zipfile.ZipInfo(f"{name}/{rel}", date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, data)
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        zip_tmp.replace(zip_path)
        html_path.write_bytes(files["index.html"])
    except OSError as exc:
        raise BadInput(
            f"cannot write the handover pack under {out_dir}: {exc.strerror or exc}",
            hint="choose another folder with -o",
        ) from exc
    return folder, zip_path, html_path


def _record(
    ws: Workspace,
    service: str,
    number: int,
    files: dict[str, bytes],
    summary: dict[str, Any],
    facts: dict[str, Any],
    audit: dict[str, Any],
) -> None:
    actor = current_actor()
    at = utc_now()
    value = {
        "service": service,
        "number": number,
        "at": at,
        "actor": actor.name,
        "release": summary["release"],
        "audit_seq": (facts["as_of"] or {}).get("seq", 0),
        "audit_ok": audit["ok"],
        "summary": summary,
        "files": {p: hashlib.sha256(b).hexdigest() for p, b in sorted(files.items())},
    }
    ws.store.commit(
        [Write(HANDOVER_KIND, f"{service}/{number:06d}", value, 0)],
        EventDraft(
            actor=actor.name,
            action="handover.build",
            subject=f"service:{service}",
            at=at,
            after={"number": number, "release": summary["release"], "gaps": summary["gaps"]},
            context=actor.context,
        ),
    )
