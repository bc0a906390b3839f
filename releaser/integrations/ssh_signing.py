"""Sign and verify statements with ``ssh-keygen -Y``, as git does for signed commits.

``sign`` runs ``ssh-keygen -Y sign -f KEY -n NAMESPACE`` on the statement's bytes
and returns the armored signature (``-----BEGIN SSH SIGNATURE-----``). ``KEY``
is a private key file, or a public key file whose private half is held by the
ssh-agent (``SSH_AUTH_SOCK``). ssh-keygen runs without a terminal, so a key
protected by a passphrase and not in the agent fails at once instead of
waiting for someone to type it.

``verify`` runs ``ssh-keygen -Y verify`` against an allowed-signers file
written by ``releaser.core.signing.allowed_signers_text`` and says which
principal signed, or why nothing verified. Private keys never leave ssh-keygen:
releaser only ever holds the statement, the signature and public keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from releaser.errors import BadInput, ExternalUnavailable

__all__ = [
    "MAX_SIGNATURE_CHARS",
    "Verified",
    "find_principals",
    "public_key_of",
    "sign",
    "verify",
]

# An ed25519 signature is about 300 characters armored, RSA-4096 about 1,000.
MAX_SIGNATURE_CHARS = 8192
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Verified:
    """What ``ssh-keygen -Y verify`` said: ``ok`` and, when not, a short reason."""

    ok: bool
    reason: str = ""


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise ExternalUnavailable(
            "ssh-keygen is not installed",
            hint="install OpenSSH's client tools (Debian: openssh-client; macOS has it)",
        )
    return found


def _run(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            [_ssh_keygen(), *args],
            input=data,
            capture_output=True,
            timeout=_TIMEOUT_S,
            start_new_session=True,  # no terminal: a passphrase prompt fails instead of waiting
            env={**os.environ, "SSH_ASKPASS_REQUIRE": "never"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExternalUnavailable(
            f"ssh-keygen did not answer within {_TIMEOUT_S:.0f} s",
            hint="check the ssh-agent (SSH_AUTH_SOCK) or a hardware key waiting for a touch",
        ) from None


def _last_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"


def sign(statement: bytes, key_file: Path, namespace: str) -> str:
    """The armored SSH signature of ``statement`` in ``namespace``, made with ``key_file``.

    BadInput names the key file when it is missing or ssh-keygen refuses it (a
    passphrase with no agent, a public key whose private half is not in the agent).
    """
    key = Path(key_file).expanduser()
    if not key.is_file():
        raise BadInput(
            f"signing key {key} does not exist",
            hint="pass --key with your SSH private key, or its .pub file when the ssh-agent "
            "holds the key (or set RELEASER_SIGNING_KEY)",
        )
    done = _run(["-Y", "sign", "-f", str(key), "-n", namespace], statement)
    signature = done.stdout.decode("ascii", "replace")
    if done.returncode != 0 or "BEGIN SSH SIGNATURE" not in signature:
        raise BadInput(
            f"ssh-keygen could not sign with {key}: {_last_line(done.stderr)}",
            hint="a key with a passphrase must be in the ssh-agent (ssh-add), and then --key "
            "may name its .pub file",
        )
    return signature


def verify(
    statement: bytes, signature: str, allowed_signers: str, principal: str, namespace: str
) -> Verified:
    """Whether ``signature`` over ``statement`` is ``principal``'s, per ``allowed_signers``."""
    if not signature or len(signature) > MAX_SIGNATURE_CHARS:
        return Verified(False, "no signature" if not signature else "signature too long")
    if not allowed_signers.strip():
        return Verified(False, f"no key is on record for {principal}")
    with tempfile.TemporaryDirectory(prefix="releaser-verify-") as tmp:
        signers = Path(tmp, "allowed_signers")
        signers.write_text(allowed_signers, encoding="utf-8")
        sig = Path(tmp, "statement.sig")
        sig.write_text(signature, encoding="ascii", errors="replace")
        args = ["-Y", "verify", "-f", str(signers), "-I", principal, "-n", namespace]
        done = _run([*args, "-s", str(sig)], statement)
    if done.returncode == 0:
        return Verified(True)
    return Verified(False, "signature does not verify: " + _last_line(done.stderr))


def find_principals(signature: str, allowed_signers: str) -> list[str]:
    """The principals of ``allowed_signers`` whose key made ``signature`` (any namespace)."""
    if not signature or len(signature) > MAX_SIGNATURE_CHARS or not allowed_signers.strip():
        return []
    with tempfile.TemporaryDirectory(prefix="releaser-verify-") as tmp:
        signers = Path(tmp, "allowed_signers")
        signers.write_text(allowed_signers, encoding="utf-8")
        sig = Path(tmp, "statement.sig")
        sig.write_text(signature, encoding="ascii", errors="replace")
        done = _run(["-Y", "find-principals", "-f", str(signers), "-s", str(sig)], b"")
    if done.returncode != 0:
        return []
    return [ln.strip() for ln in done.stdout.decode("utf-8", "replace").splitlines() if ln]


def public_key_of(key_file: Path) -> str:
    """The public key line of ``key_file``: a ``.pub`` file, the ``.pub`` beside a private
    key, or what ``ssh-keygen -y`` derives from the private key.

    BadInput names the file when none of these gives a key (a passphrase-protected
    key with no ``.pub`` beside it cannot be read without a terminal).
    """
    key = Path(key_file).expanduser()
    candidates = [key] if key.suffix == ".pub" else [key.with_name(key.name + ".pub")]
    for candidate in candidates:
        if candidate.is_file() and candidate.stat().st_size <= MAX_SIGNATURE_CHARS:
            text = candidate.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text.splitlines()[0]
    if key.suffix == ".pub" or not key.is_file():
        raise BadInput(
            f"signing key {key} does not exist",
            hint="pass --key with your SSH private key, or its .pub file when the ssh-agent "
            "holds the key (or set RELEASER_SIGNING_KEY)",
        )
    done = _run(["-y", "-f", str(key)], b"")
    if done.returncode != 0:
        raise BadInput(
            f"ssh-keygen could not read the public half of {key}: {_last_line(done.stderr)}",
            hint=f"put its public key beside it as {key.name}.pub",
        )
    return done.stdout.decode("ascii", "replace").strip()
