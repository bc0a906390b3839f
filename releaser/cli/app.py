"""The typer application: global options and the top-level commands.

Command modules import only typer and the standard library at import time;
each command imports the library function it calls inside its body, so
``releaser --help`` stays fast and loads no MLflow, DVC or git.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = ["CliState", "app", "build_command", "invoked_group", "state"]

app = typer.Typer(
    name="releaser",
    help="Release manager for ML models and LLM prompts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    epilog="Exit codes: 0 ok, 1 check failed, 2 bad input, 3 external system unavailable, "
    "4 state conflict (re-run), 70 internal error, 130 interrupted.",
)


@dataclass
class CliState:
    """Options given before the command, shared by every command."""

    config: Path | None = None
    store: str | None = None
    verbose: bool = False
    _ws: Workspace | None = None

    def workspace(self, *, settings_only: bool = False, store_only: bool = False) -> Workspace:
        """The workspace for this invocation, loaded once.

        ``settings_only`` validates just the workspace-wide keys now; ``store_only``
        also works from the store alone when releaser.yaml cannot be read, or from a
        folder without one given ``--store`` (see
        :func:`~releaser.api.workspace.open_workspace`); a warning says so.
        """
        if self._ws is None:
            from releaser.api.workspace import open_workspace

            self._ws = open_workspace(
                self.config,
                store_url=self.store,
                settings_only=settings_only or store_only,
                store_only=store_only,
            )
            if self._ws.degraded:
                from releaser.cli.output import warn

                warn(self._ws.degraded)
        return self._ws


def state(ctx: typer.Context) -> CliState:
    """The shared CLI state of this invocation."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def _version(value: bool) -> None:
    if value:
        from releaser._version import __version__

        typer.echo(f"releaser {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="releaser.yaml, or a folder to search upwards from.",
            envvar="RELEASER_CONFIG",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="State store URL (default: $RELEASER_STORE, the config, or .releaser/state.db).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Release manager for ML models and LLM prompts.

    Exit codes: 0 ok, 1 check failed, 2 bad input, 3 external system
    unavailable, 4 state conflict, 70 internal error, 130 interrupted.
    """
    ctx.obj = CliState(config=config, store=store, verbose=verbose)
    ctx.call_on_close(_close_workspace(ctx.obj))


def _close_workspace(st: CliState) -> Any:
    def close() -> None:
        if st._ws is not None:
            st._ws.close()

    return close


@app.command()
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write releaser.yaml.")] = Path(
        "."
    ),
    project: Annotated[
        str | None, typer.Option(help="Project name (default: folder name).")
    ] = None,
    service: Annotated[str, typer.Option(help="Name of the first service.")] = "case-triage",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a commented example releaser.yaml."""
    from releaser.api.init import init_workspace

    path = init_workspace(directory, project=project, service=service, force=force)
    typer.echo(f"wrote {path}")
    typer.echo("next: edit it, then run 'releaser validate'")


@app.command()
def validate(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Argument(help="The file (default: releaser.yaml found upwards).")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not ask Prometheus whether its queries work.")
    ] = False,
) -> None:
    """Check releaser.yaml and report every problem with file:line and a hint.

    Services whose metrics come from Prometheus have each query asked once, unless
    ``--offline``: exit 2 when Prometheus refuses one; a server that cannot be reached
    (e.g. from a CI runner) is a warning.
    """
    from releaser.api.init import config_warnings, validate_config
    from releaser.api.metrics_source import check_metrics_sources
    from releaser.cli.output import warn
    from releaser.config import find_config

    st = state(ctx)
    path = file or st.config or Path.cwd()
    if path.is_dir():
        path = find_config(path)
    cfg = validate_config(path)
    names = ", ".join(cfg.services)
    typer.echo(f"{path}: ok ({len(cfg.services)} service(s): {names})")
    for line in config_warnings(cfg):
        warn(line)
    if offline:
        return
    checked, unreachable = check_metrics_sources(cfg)
    for line in checked:
        typer.echo(line)
    for line in unreachable:
        warn(line)


@app.command()
def schema() -> None:
    """Print the JSON Schema of releaser.yaml (for editors)."""
    from releaser.cli.output import emit_json
    from releaser.config import config_json_schema

    emit_json(config_json_schema())


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to build the demo workspace.")
    ] = Path("demo-workspace"),
    keep: Annotated[
        bool, typer.Option("--keep", help="Reuse an existing demo workspace instead of rebuilding.")
    ] = False,
) -> None:
    """Run the end-to-end story on an example service in a fresh workspace."""
    from releaser.cli.demo_cmd import run_demo

    run_demo(directory, keep=keep)


# Sub-apps by command name, in help order: (module under releaser.cli, attribute).
_GROUPS: dict[str, tuple[str, str]] = {
    "release": ("release_cmds", "app"),
    "k8s": ("serve_cmds", "k8s_app"),
    "containers": ("serve_cmds", "containers_app"),
    "rollout": ("rollout_cmds", "app"),
    "prompt": ("prompt_cmds", "app"),
    "audit": ("audit_cmds", "app"),
    "gate": ("gate_cmds", "app"),
    "phase": ("gate_cmds", "phase_app"),
    "github": ("github_cmds", "app"),
    "store": ("store_cmds", "app"),
    "alerts": ("alerts_cmds", "app"),
    "notify": ("alerts_cmds", "notify_app"),
}
# Modules that add top-level commands to ``app`` when imported.
_TOP_LEVEL_MODULES = (
    "rollback_cmds",
    "docs_cmds",
    "gate_cmds",
    "serve_cmds",
    "freeze_cmds",
    "explain_cmds",
)
# Sub-app name -> its typer group info, made once per process (build_command).
_GROUP_INFOS: dict[str, Any] = {}
# Global options that take a value (the token after them is not the command).
_VALUE_OPTIONS = frozenset({"--config", "-c", "--store"})


def _invoked_word(args: Sequence[str]) -> str | None:
    """The first word of ``args`` that is not a global option or its value: the command name
    (None before it for ``--help`` and ``--version``)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif arg.startswith("-"):
            if arg in ("--help", "--version"):
                return None
        else:
            return arg
    return None


def invoked_group(args: Sequence[str]) -> str | None:
    """The sub-app ``args`` run (``prompt`` in ``releaser -v prompt promote ...``), if any."""
    word = _invoked_word(args)
    return word if word in _GROUPS else None


def _top_level_names() -> set[str]:
    """The names of the top-level commands attached to ``app`` so far."""
    return {
        info.name or typer.main.get_command_name(info.callback.__name__)
        for info in app.registered_commands
        if info.callback is not None
    }


def build_command(args: Sequence[str] | None = None) -> Any:
    """The click command behind the app.

    With ``args`` that run a sub-app (``releaser prompt promote ...``), only that
    sub-app is built: the other command modules are neither imported nor
    converted, which keeps a prompt promotion's start-up short. With ``args``
    that run a top-level command (``releaser rollback ...``), no sub-app is
    built (converting them all costs ~20 ms of a rollback). Otherwise
    (``--help``, no command, a mistyped one) every command is attached, so
    click can list them and suggest the closest.
    """
    word = _invoked_word(args) if args is not None else None
    group = word if word in _GROUPS else None
    wanted = [group] if group is not None else list(_GROUPS)
    if group is None:
        for module in _TOP_LEVEL_MODULES:
            importlib.import_module(f"releaser.cli.{module}")
        if word is not None and word in _top_level_names():
            wanted = []
    infos = _GROUP_INFOS
    for name in wanted:
        if name not in infos:
            module, attr = _GROUPS[name]
            sub = getattr(importlib.import_module(f"releaser.cli.{module}"), attr)
            app.add_typer(sub, name=name)  # builds the group's info as usual ...
            infos[name] = app.registered_groups.pop()  # ... kept aside, attached below
    # Always in _GROUPS order, whatever an earlier call in this process attached.
    app.registered_groups = [infos[name] for name in _GROUPS if name in wanted]
    return typer.main.get_command(app)
