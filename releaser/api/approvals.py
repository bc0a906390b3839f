"""Signed approvals: who approved a release is proven by an SSH signature, not claimed.

``releaser approve`` signs a statement (service, release, phase, role, the
approver, the time and the audit head it saw) with the approver's SSH key,
``ssh-keygen -Y sign`` in the approval namespace, as git signs commits. A phase
gate counts an approval only when the signature verifies (``ssh-keygen -Y
verify``) against a key that ``releaser.yaml`` lists for an owner holding that
role **at the release's commit**: a key added to the working tree, or to the
store, after the release was cut proves nothing. The approver must not be the
person who created the release.

Why the release's commit: the owners file is then as trustworthy as the
repository's history (protected branches, reviews), and an attacker who can
write to the store alone can add an approval record but cannot make it verify.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releaser.core.canonical import canonical_json
from releaser.core.signing import (
    APPROVAL_NAMESPACE,
    AllowedSigner,
    allowed_signers_text,
    parse_public_key,
)
from releaser.errors import BadInput, ConfigError, ReleaserError

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.models import Owner
    from releaser.core.release import Release

__all__ = [
    "STATEMENT_TYPE",
    "ApprovalCheck",
    "OwnersAtCommit",
    "approval_statement",
    "check_signed_approval",
    "is_release_creator",
    "owners_at_release",
    "signing_key",
]

STATEMENT_TYPE = "releaser-approval/1"
"""The ``type`` of a signed approval statement (its format version)."""
SIGNING_KEY_ENV = "RELEASER_SIGNING_KEY"


@dataclass(frozen=True)
class OwnersAtCommit:
    """The owners ``releaser.yaml`` named at a release's commit, or why they are unknown."""

    sha: str
    owners: list[Owner] = field(default_factory=list)
    problem: str | None = None

    def with_role(self, role: str) -> list[Owner]:
        """The owners holding ``role``."""
        return [o for o in self.owners if o.role == role]

    def by_key(self, key_line: str) -> list[Owner]:
        """The owners that list the public key ``key_line`` (any of their roles)."""
        try:
            blob = parse_public_key(key_line).blob
        except ValueError:
            return []
        found = []
        for owner in self.owners:
            if any(parse_public_key(k).blob == blob for k in owner.ssh_keys):
                found.append(owner)
        return found


@dataclass(frozen=True)
class ApprovalCheck:
    """Whether one stored approval counts, and why not when it does not."""

    counts: bool
    reason: str


def owners_at_release(ws: Workspace, release: Release) -> OwnersAtCommit:
    """The owners in ``releaser.yaml`` as the release's commit holds it.

    Never raises for what it cannot read: ``problem`` says why (the commit is not
    in this clone, the file did not exist or does not parse), and then no
    approval of the release can verify.
    """
    from releaser.config.loader import parse_owners
    from releaser.integrations.git_repo import file_at_commit

    sha = release.content.code.sha
    name = ws.config_path.name
    try:
        text = file_at_commit(ws.config_path.parent, sha, ws.config_path)
        return OwnersAtCommit(sha, parse_owners(text, f"{name}@{sha[:12]}"))
    except ConfigError as exc:
        first = exc.problems[0] if exc.problems else None
        detail = f"{first.message} (line {first.line})" if first and first.line else str(exc)
        problem = f"the owners in {name} at {sha[:12]} are invalid: {detail}"
        return OwnersAtCommit(sha, problem=problem)
    except (ReleaserError, ValueError) as exc:
        return OwnersAtCommit(sha, problem=str(exc))


def approval_statement(
    *,
    service: str,
    release_id: str,
    phase: str,
    role: str,
    approver: str,
    at: str,
    audit_head: tuple[int, str],
    note: str,
) -> str:
    """The canonical JSON text an approver signs."""
    return canonical_json(
        {
            "type": STATEMENT_TYPE,
            "service": service,
            "release_id": release_id,
            "phase": phase,
            "role": role,
            "approver": approver,
            "at": at,
            "audit_head": {"seq": audit_head[0], "hash": audit_head[1]},
            "note": note,
        }
    )


def signing_key(explicit: Path | None, root: Path) -> Path:
    """The key to sign with: ``--key``, else ``$RELEASER_SIGNING_KEY``, else git's SSH
    signing key (``user.signingkey`` when ``gpg.format`` is ``ssh``).

    BadInput when none is set: approvals are always signed.
    """
    if explicit is not None:
        return explicit.expanduser()
    env = os.environ.get(SIGNING_KEY_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    configured = _git_signing_key(root)
    if configured is not None:
        return configured
    raise BadInput(
        "approvals are signed, and no signing key was given",
        hint="pass --key with your SSH private key (or its .pub when the ssh-agent holds it), "
        "set RELEASER_SIGNING_KEY, or configure git's SSH commit signing (gpg.format ssh, "
        "user.signingkey); its public key must be in your owners entry's ssh_keys",
    )


def _git_signing_key(root: Path) -> Path | None:
    def config(name: str) -> str:
        try:
            done = subprocess.run(
                ["git", "config", "--get", name], cwd=root, capture_output=True, check=False
            )
        except OSError:
            return ""
        return done.stdout.decode("utf-8", "replace").strip() if done.returncode == 0 else ""

    if config("gpg.format") != "ssh":
        return None
    value = config("user.signingkey")
    if not value or value.startswith("key::"):
        return None  # a literal key cannot name a file to sign with
    return Path(value).expanduser()


def is_release_creator(owner: Owner, created_by: str) -> bool:
    """True when the release's recorded creator is ``owner`` (by email, name or GitHub login)."""
    names = {owner.email.lower(), owner.name.lower()}
    if owner.github:
        names.add(f"github:{owner.github.lower()}")
    return created_by.strip().lower() in names


def check_signed_approval(
    ws: Workspace,
    approval: dict[str, Any],
    *,
    release: Release,
    phase: str,
    owners: OwnersAtCommit,
) -> ApprovalCheck:
    """Whether a stored approval counts for ``phase``: signed, verified, by that role's owner.

    Checks, in order: it is signed; its statement is the one signed and says what
    the record says (service, release, phase, role, approver); the approver is an
    owner holding the role at the release's commit and did not create the
    release; ``ssh-keygen -Y verify`` accepts the signature with that owner's
    keys; the audit entry the approver saw is still in the chain.
    """
    from releaser.integrations.ssh_signing import verify

    approver = str(approval.get("approver", ""))
    role = str(approval.get("role", ""))
    statement = approval.get("statement")
    signature = approval.get("signature")
    if not statement or not signature:
        return ApprovalCheck(False, "unsigned")
    try:
        said = json.loads(statement)
    except (TypeError, ValueError):
        return ApprovalCheck(False, "its signed statement is not JSON")
    if not isinstance(said, dict) or said.get("type") != STATEMENT_TYPE:
        return ApprovalCheck(False, "its signed statement is not a releaser approval")
    expected = {
        "service": release.content.service,
        "release_id": release.id,
        "phase": phase,
        "role": role,
        "approver": approver,
    }
    for key, value in expected.items():
        if said.get(key) != value:
            return ApprovalCheck(False, f"it was signed for {key} {said.get(key)!r}, not {value!r}")
    if owners.problem is not None:
        return ApprovalCheck(False, f"cannot verify: {owners.problem}")
    holders = [o for o in owners.with_role(role) if o.email == approver]
    if not holders:
        return ApprovalCheck(
            False, f"{approver} is not the {role} in the owners at commit {owners.sha[:12]}"
        )
    if any(is_release_creator(o, release.created_by) for o in holders):
        return ApprovalCheck(False, f"{approver} created the release (no self-approval)")
    signers = [AllowedSigner(approver, parse_public_key(k)) for o in holders for k in o.ssh_keys]
    if not signers:
        return ApprovalCheck(
            False, f"no ssh_keys for {approver} in the owners at commit {owners.sha[:12]}"
        )
    try:
        verified = verify(
            statement.encode("utf-8"),
            str(signature),
            allowed_signers_text(signers, APPROVAL_NAMESPACE),
            approver,
            APPROVAL_NAMESPACE,
        )
    except ReleaserError as exc:
        return ApprovalCheck(False, f"cannot verify: {exc}")
    if not verified.ok:
        return ApprovalCheck(False, verified.reason)
    head = said.get("audit_head") or {}
    problem = _audit_anchor_problem(ws, head)
    if problem:
        return ApprovalCheck(False, problem)
    return ApprovalCheck(True, f"signed by {approver}, verified")


def _audit_anchor_problem(ws: Workspace, head: dict[str, Any]) -> str | None:
    """Why the audit entry a statement names is no longer in the chain, or None."""
    seq, digest = head.get("seq"), head.get("hash")
    if not isinstance(seq, int) or not isinstance(digest, str):
        return "its statement names no audit head"
    if seq == 0:
        return None
    found = next(iter(ws.store.events(after_seq=seq - 1, limit=1)), None)
    if found is None or found.seq != seq or found.hash != digest:
        return f"audit entry {seq} it was signed after has changed (the log was rewritten)"
    return None
