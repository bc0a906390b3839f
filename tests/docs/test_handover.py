"""The handover pack: its documents, the ATRS record, redaction, and changes between packs."""

from __future__ import annotations

import json
import zipfile

import pytest

from releaser.api.workspace import open_workspace
from releaser.docs.handover import build_handover, list_handovers

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
SENTINEL = "sentinel-tok-7f3a9c1e5b"


def test_pack_holds_every_document_and_records_itself(rollout_copy, cli, read_tree) -> None:
    root = rollout_copy.root
    result = cli("handover", SERVICE, "-o", "dist", cwd=root)
    assert result.code == 0, result.err
    assert "handover pack #1" in result.out
    folder = root / "dist" / f"{SERVICE}-handover"
    files = read_tree(folder)
    for name in (
        "README.md",
        "runbook.md",
        "model-card.md",
        "prompts/case-triage-system.md",
        "datasheets/data-golden.csv.md",
        "eval-report.md",
        "charts/eval.svg",
        "rollouts.md",
        "charts/rollout-timeline.svg",
        "audit.md",
        "audit-log.jsonl",
        "audit-verification.json",
        "slos.md",
        "ownership.md",
        "risk-register.md",
        "atrs.md",
        "atrs.json",
        "signoffs.md",
        "changes.md",
        "gaps.md",
        "index.html",
    ):
        assert name in files, name
    with zipfile.ZipFile(root / "dist" / f"{SERVICE}-handover.zip") as zf:
        assert {n.split("/", 1)[1] for n in zf.namelist()} == set(files)
        assert zf.read(f"{SERVICE}-handover/runbook.md") == files["runbook.md"]
    assert (root / "dist" / f"{SERVICE}-handover.html").read_bytes() == files["index.html"]

    card = files["model-card.md"].decode()
    for section in (
        "Model details",
        "Intended use",
        "Factors",
        "Metrics",
        "Evaluation data",
        "Training data",
        "Quantitative analyses",
        "Ethical considerations",
        "Caveats and recommendations",
    ):
        assert f"## {section}" in card
    report = files["eval-report.md"].decode()
    assert "Eval gate passed" in report and "| accuracy threshold | accuracy | 0.9" in report
    sheet = files["datasheets/data-golden.csv.md"].decode()
    assert "| rows | 600 |" in sheet and "**channel**" in sheet
    prompt = files["prompts/case-triage-system.md"].decode()
    assert "```text" in prompt and "case_text" in prompt
    audit = json.loads(files["audit-verification.json"])
    lines = files["audit-log.jsonl"].decode().splitlines()
    assert audit["ok"] is True and audit["count"] == len(lines)
    audit_md = files["audit.md"].decode()
    assert "every record against the entry that wrote it:\n**ok**" in audit_md
    assert "No checkpoint was found in `audit-checkpoints/`." in audit_md
    assert "carries no checkpoint of its own: no signing key is configured" in audit_md
    assert "audit-checkpoint.json" not in files
    assert "| Run rollouts |" in files["ownership.md"].decode()

    ws = open_workspace(root)
    try:
        records = list_handovers(ws, SERVICE)
    finally:
        ws.close()
    assert [r["number"] for r in records] == [1]
    assert records[0]["files"]["runbook.md"]


def test_atrs_fields_releaser_knows_are_filled_the_rest_are_gaps(rollout_copy, tmp_path) -> None:
    ws = open_workspace(rollout_copy.root)
    try:
        result = build_handover(ws, SERVICE, tmp_path)
    finally:
        ws.close()
    record = json.loads((result.folder / "atrs.json").read_text(encoding="utf-8"))
    fields = {f["ref"]: f for f in record["fields"]}
    assert record["version"] == "3.0"
    assert fields["1.1"]["value"] == SERVICE
    assert fields["1.4"]["value"] == "priya.shah@example.org"
    assert fields["2.1.3"]["value"] == "Priya Shah (service-owner)"
    assert fields["2.4.2.1"]["value"] == "case-triage" and fields["2.4.2.2"]["value"] == "1"
    assert fields["2.4.2.4"]["value"] == "text"
    assert fields["2.4.2.7"]["value"] and "accuracy" in fields["2.4.2.7"]["value"]
    assert fields["2.4.3.4"]["value"] == "600 rows, 5 columns"
    assert fields["0.4"]["value"].startswith("Pre-deployment")
    for unknown in ("0.3", "1.3", "2.1.1", "2.2.3", "2.3.4", "2.3.6", "2.4.2.3", "2.5.1"):
        assert fields[unknown]["value"] is None and fields[unknown]["filled"] is False
        assert fields[unknown]["source"] == ""
    gaps = (result.folder / "gaps.md").read_text(encoding="utf-8")
    assert "2.1.1 Organisation or department" in gaps and "1.3 Website" in gaps
    # How one person's decision is traced, for an appeal.
    atrs_md = (result.folder / "atrs.md").read_text(encoding="utf-8")
    assert f"releaser explain {SERVICE} UNIT_ID --at TIME" in atrs_md
    assert result.atrs_filled == sum(f["filled"] for f in record["fields"])
    assert 0 < result.atrs_filled < result.atrs_total


def test_secrets_never_reach_the_pack(rollout_copy, cli, monkeypatch, read_tree) -> None:
    root = rollout_copy.root
    monkeypatch.setenv("DEPLOY_API_TOKEN", SENTINEL)
    monkeypatch.setenv("MODEL_SERVER_PASSWORD", SENTINEL + "-pw")
    # The secret leaked into recorded state: a rollback reason (audit log, runbook).
    ran = cli("rollback", SERVICE, "--reason", f"token {SENTINEL} was rotated", "--yes", cwd=root)
    assert ran.code == 0, ran.err
    built = cli("handover", SERVICE, "-o", "out", cwd=root)
    assert built.code == 0, built.err
    assert SENTINEL not in built.out + built.err
    files = read_tree(root / "out")
    assert files
    for name, data in files.items():
        if name.endswith(".zip"):
            with zipfile.ZipFile(root / "out" / name) as zf:
                for inner in zf.namelist():
                    assert SENTINEL.encode() not in zf.read(inner), inner
        else:
            assert SENTINEL.encode() not in data, name
    assert b"token *** was rotated" in files[f"{SERVICE}-handover/audit-log.jsonl"]
    rb = cli("runbook", SERVICE, "--stdout", cwd=root)
    assert rb.code == 0 and SENTINEL not in rb.out and "token *** was rotated" in rb.out


def test_second_pack_says_what_changed(rollout_copy, cli) -> None:
    root = rollout_copy.root
    assert cli("handover", SERVICE, cwd=root).code == 0
    first = (root / "dist" / f"{SERVICE}-handover" / "changes.md").read_text(encoding="utf-8")
    assert "first handover pack" in first
    assert cli("rollback", SERVICE, "--reason", "bad canary", "--yes", cwd=root).code == 0
    again = cli("handover", SERVICE, "--json", cwd=root)
    assert again.code == 0, again.err
    data = json.loads(again.out)
    assert data["number"] == 2
    assert any(c.startswith("active_rollout: case-triage-1 -> ") for c in data["changes"])
    changes = (root / "dist" / f"{SERVICE}-handover" / "changes.md").read_text(encoding="utf-8")
    assert "This is pack #2; pack #1" in changes and "rollback 1" in changes


def test_pack_carries_checkpoints_and_signs_the_head(
    rollout_copy, cli, read_tree, owner_keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = rollout_copy.root
    owner_keys.enrol(root, ["priya", "sam"])
    assert cli("audit", "checkpoint", "--key", str(owner_keys.key("sam")), cwd=root).code == 0
    (committed,) = (root / "audit-checkpoints").glob("*.json")
    monkeypatch.setenv("RELEASER_SIGNING_KEY", str(owner_keys.key("priya")))
    result = cli("handover", SERVICE, "-o", "dist", cwd=root)
    assert result.code == 0, result.err
    files = read_tree(root / "dist" / f"{SERVICE}-handover")
    assert files[f"audit-checkpoints/{committed.name}"] == committed.read_bytes()
    audit_md = files["audit.md"].decode()
    assert f"- `audit-checkpoints/{committed.name}`: entries 1..{committed.stem}" in audit_md
    assert "signed by sam.reid@example.org" in audit_md and "FAILED" not in audit_md
    verification = json.loads(files["audit-verification.json"])
    assert [c["ok"] for c in verification["checkpoints"]] == [True, True]
    # The pack's own checkpoint verifies against the live store later.
    pack_cp = root / "dist" / f"{SERVICE}-handover" / "audit-checkpoint.json"
    res = cli("audit", "verify", "--checkpoint", str(pack_cp), "--checkpoint", str(committed))
    assert res.code == 0, res.err
    assert "signed by priya.shah@example.org" in res.out
