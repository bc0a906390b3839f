from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from releaser.core.signing import (
    APPROVAL_NAMESPACE,
    CHECKPOINT_NAMESPACE,
    AllowedSigner,
    allowed_signers_text,
    parse_public_key,
)
from releaser.errors import BadInput
from releaser.integrations.ssh_signing import find_principals, sign, verify


def keygen(folder: Path, name: str, passphrase: str = "") -> Path:
    """A fresh ed25519 key pair made by ssh-keygen; returns the private key's path."""
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)],
        check=True,
    )
    return key


def signer(principal: str, key: Path) -> AllowedSigner:
    return AllowedSigner(principal, parse_public_key(key.with_suffix(".pub").read_text()))


def test_a_signature_verifies_for_its_signer_namespace_and_statement_only(
    tmp_path: Path,
) -> None:
    alice, bob = keygen(tmp_path, "alice"), keygen(tmp_path, "bob")
    allowed = allowed_signers_text(
        [signer("alice@example.org", alice), signer("bob@example.org", bob)], APPROVAL_NAMESPACE
    )
    statement = b'{"release":"3f2a9c1e","role":"ml-lead"}'
    signature = sign(statement, alice, APPROVAL_NAMESPACE)
    assert "BEGIN SSH SIGNATURE" in signature and "PRIVATE" not in signature

    assert verify(statement, signature, allowed, "alice@example.org", APPROVAL_NAMESPACE).ok
    assert find_principals(signature, allowed) == ["alice@example.org"]
    # Another principal, another statement, another namespace: none verifies.
    assert not verify(statement, signature, allowed, "bob@example.org", APPROVAL_NAMESPACE).ok
    changed = statement.replace(b"ml-lead", b"ops-lead")
    result = verify(changed, signature, allowed, "alice@example.org", APPROVAL_NAMESPACE)
    assert not result.ok and result.reason.startswith("signature does not verify")
    assert not verify(statement, signature, allowed, "alice@example.org", CHECKPOINT_NAMESPACE).ok
    # A signature made in the wrong namespace does not pass in this one either.
    other = sign(statement, alice, CHECKPOINT_NAMESPACE)
    assert not verify(statement, other, allowed, "alice@example.org", APPROVAL_NAMESPACE).ok
    assert not verify(statement, "", allowed, "alice@example.org", APPROVAL_NAMESPACE).ok


def test_a_key_that_cannot_sign_is_named_and_nothing_waits_for_a_passphrase(
    tmp_path: Path,
) -> None:
    locked = keygen(tmp_path, "locked", passphrase="correct horse")
    with pytest.raises(BadInput, match="could not sign with") as err:
        sign(b"x", locked, APPROVAL_NAMESPACE)
    assert err.value.hint is not None and "ssh-agent" in err.value.hint
    with pytest.raises(BadInput, match="does not exist"):
        sign(b"x", tmp_path / "missing", APPROVAL_NAMESPACE)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("ssh-dss AAAAB3NzaC1kc3M=", "is not one of"),
        ("ssh-ed25519 not*base64", "not valid base64"),
        ("ssh-ed25519", "expected '<key type> <base64 key>"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),
        # An RSA key's data under an ed25519 label.
        ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==", "is not a ssh-ed25519 key"),
    ],
)
def test_public_key_lines_of_the_wrong_shape_are_refused(line: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_public_key(line)


def test_principals_that_would_break_the_file_are_refused(tmp_path: Path) -> None:
    key = parse_public_key(keygen(tmp_path, "k").with_suffix(".pub").read_text())
    for bad in ("a b@example.org", 'x" namespaces="*', "*"):
        with pytest.raises(ValueError, match="cannot be written"):
            allowed_signers_text([AllowedSigner(bad, key)], APPROVAL_NAMESPACE)


def test_a_public_key_signs_through_the_ssh_agent_holding_its_private_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = keygen(tmp_path, "agent-held")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        # The public half alone, in a folder without the private key.
        (tmp_path / "public").mkdir()
        public = tmp_path / "public" / "agent-held.pub"
        public.write_text(key.with_suffix(".pub").read_text())
        with pytest.raises(BadInput):  # not in the agent yet
            sign(b"statement", public, APPROVAL_NAMESPACE)
        subprocess.run(["ssh-add", "-q", str(key)], check=True, env={"SSH_AUTH_SOCK": str(sock)})
        signature = sign(b"statement", public, APPROVAL_NAMESPACE)
    finally:
        agent.terminate()
        agent.wait()
    allowed = allowed_signers_text([signer("ops@example.org", key)], APPROVAL_NAMESPACE)
    assert verify(b"statement", signature, allowed, "ops@example.org", APPROVAL_NAMESPACE).ok
