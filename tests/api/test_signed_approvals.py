"""Forged approvals never count: real ssh-keygen keys, the owners at the release's commit.

Each test starts from a release created by 'tester' at a commit whose releaser.yaml
lists the signing keys of priya (service-owner), tom (ml-lead), sam (ops-lead) and
alex (data-protection). mallory has a key too, listed nowhere. Forgeries are tried
both through ``approve`` (refused, nothing written) and by writing an approval
record straight into the store, as someone with write access to it could (never
counted by the phase gate, which says why).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from releaser.api.approvals import approval_statement
from releaser.api.context import current_actor
from releaser.api.phases import APPROVAL_KIND, approval_checks, approvals, approve, check_phase
from releaser.api.releases import create_release
from releaser.api.workspace import Workspace, open_workspace
from releaser.core.audit import EventDraft
from releaser.core.signing import APPROVAL_NAMESPACE, CHECKPOINT_NAMESPACE
from releaser.errors import BadInput
from releaser.integrations.ssh_signing import sign
from releaser.store.base import Write

if TYPE_CHECKING:
    pass

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
TOM = "tom.okafor@example.org"


@pytest.fixture
def signed(keyed_release: tuple[Path, str]) -> tuple[Path, str]:
    """The shared gated release whose owners sign (``tests/api/conftest.py``)."""
    return keyed_release


@pytest.fixture(autouse=True)
def _not_the_creator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run as someone other than 'tester', who created the release."""
    monkeypatch.setenv("RELEASER_ACTOR", "reviewer")


@pytest.fixture
def ws(keyed_ws: Workspace) -> Workspace:
    return keyed_ws


def _pilot_item(ws: Workspace) -> tuple[bool, str]:
    item = next(i for i in check_phase(ws, SERVICE, "pilot").items if i["id"] == "ml-lead")
    return item["met"], item["detail"]


def _forge(ws: Workspace, rid: str, approval: dict[str, Any]) -> None:
    """Write an approval record straight into the store (an attacker with store access)."""
    key = f"{SERVICE}/{rid}"
    record = ws.store.get(APPROVAL_KIND, key)
    value = {"service": SERVICE, "release_id": rid, "approvals": [approval]}
    ws.store.commit(
        [Write(APPROVAL_KIND, key, value, record.version if record else 0)],
        EventDraft(actor="mallory", action="phase.approve", subject=f"release:{rid}", at="t"),
    )


def _signed_claim(
    ws: Workspace,
    rid: str,
    key: Path,
    *,
    role: str = "ml-lead",
    approver: str = TOM,
    release_id: str | None = None,
    namespace: str = APPROVAL_NAMESPACE,
) -> dict[str, Any]:
    statement = approval_statement(
        service=SERVICE,
        release_id=release_id or rid,
        phase="pilot",
        role=role,
        approver=approver,
        at="2026-12-07T10:00:00.000000Z",
        audit_head=ws.store.audit_head(),
        note="",
    )
    return {
        "service": SERVICE,
        "release_id": rid,
        "role": role,
        "approver": approver,
        "note": "",
        "at": "2026-12-07T10:00:00.000000Z",
        "phase": "pilot",
        "statement": statement,
        "signature": sign(statement.encode(), key, namespace),
    }


def test_the_owners_key_approves_and_the_gate_verifies_it(ws, signed, owner_keys) -> None:
    rid = signed[1]
    made = approve(ws, SERVICE, rid, "ml-lead", "eval reviewed", key=owner_keys.key("tom"))
    assert made.approver == TOM and made.phase == "pilot" and made.signature
    assert _pilot_item(ws) == (True, f"1 of 1 approval: {TOM}")
    [(approval, counts, why)] = approval_checks(ws, SERVICE, rid, "pilot")
    assert counts and why == f"signed by {TOM}, verified"


def test_spoofing_releaser_actor_does_not_make_an_approval(
    ws, signed, owner_keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = signed[1]
    monkeypatch.setenv("RELEASER_ACTOR", TOM)
    with pytest.raises(BadInput, match="approvals are signed") as err:
        approve(ws, SERVICE, rid, "ml-lead", "")
    assert err.value.hint is not None and "--key" in err.value.hint
    with pytest.raises(BadInput, match="may not approve as ml-lead .* no owner lists it"):
        approve(ws, SERVICE, rid, "ml-lead", "", key=owner_keys.key("mallory"))
    assert approvals(ws, SERVICE, rid) == []
    assert _pilot_item(ws) == (False, "0 of 1 approval")


def test_a_right_key_for_the_wrong_role_is_refused(ws, signed, owner_keys) -> None:
    rid = signed[1]
    with pytest.raises(
        BadInput, match=r"it is the key of priya.shah@example.org \(service-owner\)"
    ):
        approve(ws, SERVICE, rid, "ml-lead", "", key=owner_keys.key("priya"))
    # Forged in the store: priya signs a statement saying she approves as ml-lead.
    _forge(
        ws, rid, _signed_claim(ws, rid, owner_keys.key("priya"), approver="priya.shah@example.org")
    )
    met, detail = _pilot_item(ws)
    assert not met
    assert detail == (
        "0 of 1 approval; not counted: priya.shah@example.org "
        f"(priya.shah@example.org is not the ml-lead in the owners at commit {_sha(ws, rid)})"
    )


def test_a_wrong_key_does_not_verify(ws, signed, owner_keys) -> None:
    rid = signed[1]
    _forge(ws, rid, _signed_claim(ws, rid, owner_keys.key("mallory")))
    met, detail = _pilot_item(ws)
    assert not met and detail.startswith(
        f"0 of 1 approval; not counted: {TOM} (signature does not verify"
    )


def test_an_unsigned_approval_does_not_count(ws, signed) -> None:
    rid = signed[1]
    _forge(
        ws,
        rid,
        {
            "service": SERVICE,
            "release_id": rid,
            "role": "ml-lead",
            "approver": TOM,
            "note": "",
            "at": "2026-12-07T10:00:00.000000Z",
        },
    )
    assert _pilot_item(ws) == (False, f"0 of 1 approval; not counted: {TOM} (unsigned)")


def test_a_signature_is_bound_to_its_release_and_namespace(ws, signed, owner_keys) -> None:
    rid = signed[1]
    _forge(ws, rid, _signed_claim(ws, rid, owner_keys.key("tom"), release_id="0" * 16))
    assert _pilot_item(ws) == (
        False,
        f"0 of 1 approval; not counted: {TOM} (it was signed for release_id "
        f"'0000000000000000', not '{rid}')",
    )
    # A signature made for an audit checkpoint is not an approval.
    _forge(ws, rid, _signed_claim(ws, rid, owner_keys.key("tom"), namespace=CHECKPOINT_NAMESPACE))
    met, detail = _pilot_item(ws)
    assert not met and "signature does not verify" in detail


def test_a_signed_approval_is_anchored_in_the_audit_log(ws, signed, owner_keys) -> None:
    rid = signed[1]
    claim = _signed_claim(ws, rid, owner_keys.key("tom"))
    claim_text = claim["statement"].replace('"seq":', '"seq": ', 1)  # any edit breaks it
    _forge(ws, rid, {**claim, "statement": claim_text})
    met, detail = _pilot_item(ws)
    assert not met and "signature does not verify" in detail


def test_a_key_added_after_the_release_commit_does_not_count(
    ws, signed, owner_keys, tmp_path: Path
) -> None:
    """mallory lists her key as the ml-lead's in the working tree and commits it: too late."""
    rid = signed[1]
    config = ws.config_path
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace(owner_keys.public("tom"), owner_keys.public("mallory")), encoding="utf-8"
    )
    subprocess.run(["git", "commit", "-qam", "rotate"], cwd=ws.root, check=True)
    with pytest.raises(
        BadInput, match=f"no owner lists it in releaser.yaml at commit {_sha(ws, rid)}"
    ):
        approve(ws, SERVICE, rid, "ml-lead", "", key=owner_keys.key("mallory"))


def test_the_release_creator_may_not_approve_it(
    signed, owner_keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "ws"
    shutil.copytree(signed[0], dest, symlinks=True)
    (dest / "NOTES.md").write_text("tom's change\n", encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(["git", "commit", "-qm", "tom's change"], cwd=dest, check=True)
    monkeypatch.setenv("RELEASER_ACTOR", TOM)
    ws = open_workspace(dest)
    try:
        rid = create_release(ws, SERVICE).release.id
        monkeypatch.setenv("RELEASER_ACTOR", "tom-on-another-laptop")
        with pytest.raises(BadInput, match=f"{TOM} created release {rid} and may not approve it"):
            approve(ws, SERVICE, rid, "ml-lead", "", key=owner_keys.key("tom"))
        _forge(ws, rid, _signed_claim(ws, rid, owner_keys.key("tom")))
        assert _pilot_item(ws) == (
            False,
            f"0 of 1 approval; not counted: {TOM} ({TOM} created the release (no self-approval))",
        )
    finally:
        ws.close()


def test_in_github_actions_the_run_actor_is_not_replaced_by_releaser_actor() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_REPOSITORY": "council/casework",
        "GITHUB_RUN_ID": "42",
        "RELEASER_ACTOR": "mallory@evil.example",
    }
    actor = current_actor(env)
    assert actor.name == "github:octocat"
    assert actor.context["claimed_actor"] == "mallory@evil.example"
    assert actor.context["run_url"] == "https://github.com/council/casework/actions/runs/42"


def _sha(ws: Workspace, rid: str) -> str:
    from releaser.api.releases import get_release

    return get_release(ws, rid).content.code.sha[:12]


def test_signoffs_say_which_approvals_count_and_why(ws, signed, owner_keys) -> None:
    from releaser.docs.facts import _phases, collect_facts
    from releaser.docs.templates import render, template_env

    rid = signed[1]
    approve(ws, SERVICE, rid, "ml-lead", "eval reviewed", key=owner_keys.key("tom"))
    record = ws.store.get(APPROVAL_KIND, f"{SERVICE}/{rid}")
    forged = _signed_claim(
        ws, rid, owner_keys.key("mallory"), role="service-owner", approver="priya.shah@example.org"
    )
    forged["phase"] = "production"
    value = {**record.value, "approvals": [*record.value["approvals"], forged]}
    ws.store.commit(
        [Write(APPROVAL_KIND, f"{SERVICE}/{rid}", value, record.version)],
        EventDraft(actor="mallory", action="phase.approve", subject=f"release:{rid}", at="t"),
    )
    facts = collect_facts(ws, SERVICE)
    facts["phases"] = _phases(ws, SERVICE, rid, [])
    facts["deployed"] = {"id": rid}
    text = render(template_env(None), "signoffs.md.j2", facts)
    assert (
        f"- **ml-lead** (entering pilot): Tom Okafor <{TOM}>" in text
        and f'"eval reviewed": counts (signed by {TOM}, verified)' in text
    )
    assert (
        "- **service-owner** (entering production):  <priya.shah@example.org>" in text
        and "**does not count**: it was signed for phase 'pilot', not 'production'" in text
    )
    assert "None" not in text
