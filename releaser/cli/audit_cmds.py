"""``releaser audit ...``: read and verify the hash-chained audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from releaser.cli.app import state

app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@app.command("log")
def log(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Show the latest N events (0: all).")] = 50,
    subject: Annotated[
        str | None, typer.Option(help="Only events about this subject, e.g. release:ID.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show audit events, oldest first."""
    from releaser.api.audit import audit_log_json, audit_log_rows
    from releaser.cli.output import emit_json_list, say, table
    from releaser.errors import BadInput

    if limit < 0:
        raise BadInput(
            f"--limit must be 0 or more, got {limit}",
            hint="pass --limit N for the latest N events, or --limit 0 for all of them",
        )
    ws = state(ctx).workspace()
    if as_json:
        emit_json_list(audit_log_json(ws, limit=limit or None, subject=subject))
        return
    rows = audit_log_rows(ws, limit=limit or None, subject=subject)
    if not rows:
        say("no audit events yet")
        return
    table(
        ["seq", "at", "actor", "action", "subject", "reason"],
        [
            (seq, at, actor, action, subj, reason or "")
            for seq, at, actor, action, subj, reason in rows
        ],
    )


def _expected_head(text: str) -> tuple[int, str]:
    from releaser.errors import BadInput

    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        from releaser.api.audit import load_checkpoint

        cp = load_checkpoint(path)
        return cp.seq, cp.hash
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise BadInput(
            f"--expect-head {text[:80]!r} is not SEQ:HASH or a checkpoint file",
            hint="pass the head another system recorded, e.g. 120:3f2a...(64 hex digits), "
            "or the latest checkpoint file",
        )
    return int(seq), digest.lower()


@app.command("verify")
def verify(
    ctx: typer.Context,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="A checkpoint file ('releaser audit checkpoint'); repeat for several. "
            "Proves the prefix it anchors is intact.",
        ),
    ] = None,
    allowed_signers: Annotated[
        Path | None,
        typer.Option(
            "--allowed-signers",
            help="Keys to check checkpoint signatures with, in git's allowed_signers format "
            "(default: the owners' ssh_keys in releaser.yaml).",
        ),
    ] = None,
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            help="SEQ:HASH (or a checkpoint file) the head must be: entries appended after "
            "it, a rewind or a rewrite fail.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Verify the hash chain (and checkpoints); exit 1 naming what is wrong."""
    from releaser.api.audit import load_checkpoint, verify_anchored
    from releaser.cli.output import emit_json, err, say
    from releaser.errors import BadInput

    cps = [(str(p), load_checkpoint(p)) for p in checkpoint or []]
    signers = None
    if allowed_signers is not None:
        try:
            signers = allowed_signers.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read {allowed_signers}: {exc}") from None
    head = _expected_head(expect_head) if expect_head else None
    result = verify_anchored(state(ctx).workspace(), cps, allowed_signers=signers, expect_head=head)
    chain = result.chain
    if as_json:
        emit_json(result.to_dict())
    elif result.ok:
        say(
            f"audit chain ok: {chain.count} events, head {chain.head_hash[:16]}; "
            f"{result.records} records match the entries that wrote them"
        )
        for c in result.checkpoints:
            say(f"checkpoint {c['file']}: entries 1..{c['seq']} intact (signed by {c['signer']})")
        if head is not None:
            say(f"head is the expected one (entry {head[0]})")
    else:
        if not chain.ok:
            err(f"audit chain BROKEN at entry {chain.bad_seq}: {chain.problem}")
        for c in result.checkpoints:
            if not c["ok"]:
                err(f"checkpoint {c['file']} FAILED: {c['problem']}")
        if result.head_problem:
            err(f"expected head FAILED: {result.head_problem}")
        for problem in result.state_problems:
            err(f"state FAILED: {problem}")
        err(
            "hint: inspect with 'releaser audit log --limit 0' and restore the store from a "
            "backup; the checkpoints and the git history say what it held"
        )
    if not result.ok:
        raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint_cmd(
    ctx: typer.Context,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="An owner's SSH key to sign with (default: $RELEASER_SIGNING_KEY, else "
            "git's user.signingkey when gpg.format is ssh).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="File to write (default: audit-checkpoints/<seq>.json)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Sign the audit head so that a later rewrite of the log is detected.

    Keep the file outside the store: commit it, attach it to a GitHub release or
    deployment. 'releaser audit verify --checkpoint FILE' checks it.
    """
    from releaser.api.audit import make_checkpoint
    from releaser.cli.output import emit_json, say

    cp, path = make_checkpoint(state(ctx).workspace(), key, out)
    if as_json:
        emit_json({"file": str(path), "seq": cp.seq, "hash": cp.hash, "signer": cp.signer})
    else:
        say(f"checkpoint of entries 1..{cp.seq} (head {cp.hash[:16]}) signed by {cp.signer}")
        say(f"written to {path}: commit it or attach it to the release")
