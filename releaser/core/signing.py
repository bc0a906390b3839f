"""SSH public keys and allowed-signers files, as git uses them to sign commits.

releaser signs statements (an approval, an audit checkpoint) with
``ssh-keygen -Y sign`` and checks them with ``ssh-keygen -Y verify`` against an
*allowed signers* file (``ssh-keygen(1)``, section ALLOWED SIGNERS): one line per
key, ``<principal> namespaces="<ns>" <key type> <base64 key>``. This module holds
the pure parts: checking a public key line's shape and writing that file. The
subprocess calls live in ``releaser.integrations.ssh_signing``.

A namespace keeps a signature made for one purpose from being accepted for
another: an approval signature cannot pass as an audit checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "APPROVAL_NAMESPACE",
    "CHECKPOINT_NAMESPACE",
    "KEY_TYPES",
    "AllowedSigner",
    "PublicKey",
    "allowed_signers_text",
    "parse_public_key",
]

APPROVAL_NAMESPACE = "releaser-approval@releaser"
CHECKPOINT_NAMESPACE = "releaser-audit-checkpoint@releaser"

# Key types ssh-keygen signs with; DSA and RSA-with-SHA1 are not among them.
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
# Far beyond any real key (an RSA 16384-bit key is about 2.8 kB of base64).
_MAX_KEY_CHARS = 8192
_PRINCIPAL = re.compile(r"^[^\s\"',*?!]{1,254}$")


@dataclass(frozen=True)
class PublicKey:
    """An OpenSSH public key: its type and base64 blob (the comment is not kept)."""

    type: str
    blob: str

    def line(self) -> str:
        """``<type> <base64>``, as an allowed-signers entry or ``.pub`` file holds it."""
        return f"{self.type} {self.blob}"


@dataclass(frozen=True)
class AllowedSigner:
    """One line of an allowed-signers file: who (``principal``) signs with which key."""

    principal: str
    key: PublicKey


def parse_public_key(text: str) -> PublicKey:
    """Check an OpenSSH public key line (``ssh-ed25519 AAAA... comment``) and return it.

    Raises ValueError with a sentence saying what is wrong: an unknown key type,
    a blob that is not base64, or a blob whose own type name disagrees with the
    line's (a key pasted with the wrong prefix). A private key is refused by name.
    """
    if "PRIVATE KEY" in text:
        raise ValueError("this is a private key; give the public key (the .pub file's line)")
    parts = text.strip().split(maxsplit=2)
    if len(parts) < 2:
        raise ValueError("expected '<key type> <base64 key> [comment]'")
    kind, blob = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise ValueError(f"key type {kind[:40]!r} is not one of {', '.join(KEY_TYPES)}")
    if len(blob) > _MAX_KEY_CHARS:
        raise ValueError(f"the key is longer than {_MAX_KEY_CHARS} characters")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not valid base64") from None
    # The blob starts with its own type name as an SSH string (uint32 length, bytes).
    if len(raw) < 4:
        raise ValueError("the key is too short to be an SSH public key")
    (size,) = struct.unpack(">I", raw[:4])
    if raw[4 : 4 + size].decode("ascii", "replace") != kind:
        raise ValueError(f"the key's data is not a {kind} key")
    return PublicKey(kind, blob)


def allowed_signers_text(signers: Iterable[AllowedSigner], namespace: str) -> str:
    """An allowed-signers file letting each signer sign in ``namespace`` only."""
    lines = []
    for signer in signers:
        if not _PRINCIPAL.match(signer.principal):
            raise ValueError(f"principal {signer.principal!r} cannot be written to the file")
        lines.append(f'{signer.principal} namespaces="{namespace}" {signer.key.line()}\n')
    return "".join(lines)
