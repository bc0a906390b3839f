"""``releaser store ...``: back up the state store, restore or move it, and prune it.

Each command parses its options, calls one function of ``releaser.api.store_io`` (or
``releaser.api.retention``) and renders the result; a new store command is one more
function here.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from releaser.cli.app import state

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from releaser.api.store_io import ArchiveSummary
    from releaser.store.base import Store

app = typer.Typer(
    help="The state store: back it up, restore it, move it to another backend, prune it.",
    no_args_is_help=True,
)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="The store to use (default: the global --store, $RELEASER_STORE, the config, "
        "or .releaser/state.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _store(ctx: typer.Context, url: str | None) -> Store:
    """The store the command works on: ``--store`` here, the global ``--store`` or
    ``$RELEASER_STORE``, else the workspace's (from releaser.yaml's settings alone).

    A store given outright is opened without releaser.yaml: a move to PostgreSQL
    runs from any folder.
    """
    import os

    st = state(ctx)
    explicit = url or st.store or os.environ.get("RELEASER_STORE")
    if not explicit:
        return st.workspace(settings_only=True).store
    from releaser.store import open_store

    store = open_store(explicit)
    ctx.call_on_close(store.close)
    return store


@contextmanager
def _status() -> Iterator[Callable[[str], None]]:
    """A status line on stderr for each step, on a terminal only (a log gets the result)."""
    import os
    import sys

    if not (sys.stderr.isatty() and os.environ.get("TERM") != "dumb"):
        yield lambda _step: None
        return
    from rich.console import Console
    from rich.markup import escape

    from releaser.cli.output import safe

    with Console(stderr=True).status("") as status:
        yield lambda step: status.update(escape(safe(step)) + " ...")


def _render(summary: ArchiveSummary, verb: str, as_json: bool) -> None:
    from releaser.cli.output import emit_json, say

    if as_json:
        emit_json(summary.to_dict())
        return
    rows = summary.rows
    say(
        f"{verb}: {rows['records']} records, {rows['audit_events']} audit entries "
        f"(head {summary.head_seq}, {summary.head_hash[:16]}), "
        f"{rows['rollout_metrics']} metric rows, {rows['rollout_latency_bins']} latency bins, "
        f"{rows['metric_batches']} batch ids"
    )


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The archive to write (a zip file).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a verified archive of every record, the audit chain and the metrics.

    One consistent snapshot is read; the chain and every record are verified
    before the file is renamed into place (exit 1, nothing written, if they fail).
    """
    from releaser.api.store_io import export_store
    from releaser.cli.output import say

    source = _store(ctx, store)
    with _status() as phase:
        summary = export_store(source, file, force=force, phase=phase)
    _render(summary, f"exported {source.url} to {file}", as_json)
    if not as_json:
        say(f"restore or move it with: releaser store import {file} --store URL")


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An archive written by 'releaser store export'.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Restore an archive into an empty store, in one transaction, verified.

    The archive is checked (manifest, every member's SHA-256, the audit chain, every
    record) before anything is written, and the target is verified before the
    transaction commits: a refused or interrupted import leaves the store empty.
    """
    from releaser.api.store_io import import_store
    from releaser.cli.output import say

    target = _store(ctx, store)
    with _status() as phase:
        summary = import_store(target, file, phase=phase)
    _render(summary, f"imported {file} into {target.url}", as_json)
    if not as_json:
        say("the audit chain and every record verify on the target")


@app.command("prune")
def prune_cmd(
    ctx: typer.Context,
    apply: Annotated[
        bool, typer.Option("--apply", help="Remove what the dry run lists (audited).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List what the retention settings let go (a dry run); --apply removes it.

    Only prediction caches of releases no gate can still want, and, when
    'retention.rollout_histograms_days' is set, the latency histograms of old rollouts.
    Releases, gate reports, rollouts, approvals and the audit log are never pruned.
    """
    from releaser.api.retention import plan_prune, prune_store
    from releaser.cli.output import emit_json, say

    ws = state(ctx).workspace()
    result = prune_store(ws) if apply else plan_prune(ws)
    if as_json:
        emit_json(result.to_dict())
        return
    verb = "removed" if result.applied else "would remove"
    if result.empty:
        say(f"nothing to prune ({result.kept_predictions} stored gate predictions kept)")
        return
    say(
        f"{verb} {len(result.predictions)} stored gate predictions and the latency "
        f"histograms of {len(result.histograms)} rollouts; kept {result.kept_predictions} "
        "stored gate predictions"
    )
    for p in result.predictions[:20]:
        say(f"  gate predictions of release {p['release_id']} (written {p['written_at']})")
    if len(result.predictions) > 20:
        say(f"  ... and {len(result.predictions) - 20} more")
    for h in result.histograms:
        say(f"  latency histogram of rollout {h['rollout_id']} (ended {h['ended_at']})")
    if result.route_history:
        say(f"  {len(result.route_history)} old route version(s) (explain cannot replay them)")
    if result.notices:
        say(f"  {len(result.notices)} notification notice(s) told or expired over a week ago")
    if result.applied:
        say(f"audited as entry {result.audit_seq} (store.prune)")
    else:
        say("dry run: nothing was removed; run again with --apply")
