"""``releaser serve``, ``releaser k8s render`` and ``releaser containers up|down``.

Serving the rollout over HTTP: the gateway in front of model endpoints, Kubernetes
manifests for an engine that splits traffic, and model-server containers per release.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from releaser.cli.app import app, state

ServiceArg = Annotated[str, typer.Argument(help="Service name from releaser.yaml.")]

k8s_app = typer.Typer(
    help="Kubernetes manifests (Argo Rollouts, Gateway API, KServe).", no_args_is_help=True
)
containers_app = typer.Typer(
    help="Model-server containers per release (Docker Engine API).", no_args_is_help=True
)


@app.command("serve")
def serve(
    ctx: typer.Context,
    service: ServiceArg,
    port: Annotated[
        int, typer.Option("--port", "-p", help="Port to listen on (1-65535; 0: a free port).")
    ] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn log level (debug, info, warning).")
    ] = "warning",
) -> None:
    """Run the HTTP gateway: each request goes to the release its unit id gets.

    Request sizes, times and concurrency are bounded by the service's deploy.limits. The
    gateway also answers /v1/rollouts/SERVICE/verdict, which Argo Rollouts' analysis asks
    for releaser's decision on a step (see the Kubernetes page of the docs).
    Exits 2 for a port out of range or one that cannot be listened on, and when a release
    of the live route has no endpoint (deploy.upstreams.releases, or a running container).
    """
    from releaser.cli.output import say
    from releaser.serve import run_gateway

    ws = state(ctx).workspace()

    def listening(url: str) -> None:
        say(f"releaser gateway for {service} on {url} (Ctrl-C to stop)")

    run_gateway(ws, service, host=host, port=port, log_level=log_level, on_listening=listening)


@k8s_app.command("render")
def k8s_render(
    ctx: typer.Context,
    service: ServiceArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the manifests into.")
    ] = Path("k8s"),
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse to render (exit 2) rather than fill a setting with a default or "
            "leave a group out; every such setting is named.",
        ),
    ] = False,
) -> None:
    """Write the Rollout, AnalysisTemplate, HTTPRoute, InferenceService and Services.

    Each default render fills in (namespace, image, Gateway, verdict URL, ...) and each
    group the HTTPRoute cannot express is printed as a warning naming the releaser.yaml
    setting. A model location KServe cannot load exits 2 with nothing written.
    """
    from releaser.cli.output import say, warn
    from releaser.integrations.k8s import render_service, write_manifests

    ws = state(ctx).workspace()
    rendered = render_service(ws, service, strict=strict)
    for warning in rendered.warnings:
        warn(f"{warning.setting}: {warning}")
    for path in write_manifests(rendered.manifests, out):
        say(f"wrote {path}")
    say(
        f"apply with: kubectl apply -f {out}  (render again after a rollout start, promote or "
        "rollback; Argo moves step by step on releaser's verdict)"
    )


@containers_app.command("up")
def containers_up(
    ctx: typer.Context,
    service: ServiceArg,
    release: Annotated[
        list[str] | None,
        typer.Option(
            "--release", "-r", help="Release id to run (repeatable; default: the live route)."
        ),
    ] = None,
) -> None:
    """Build and start the containers of the stable and candidate releases; wait for health.

    Run it with --release CANDIDATE before 'releaser rollout start', so the candidate is
    healthy before any traffic moves.
    """
    from releaser.cli.output import say
    from releaser.integrations.docker_target import containers_up as up

    for line in up(state(ctx).workspace(), service, release or None):
        say(line)


@containers_app.command("down")
def containers_down(ctx: typer.Context, service: ServiceArg) -> None:
    """Stop and remove every container of the service."""
    from releaser.cli.output import say
    from releaser.integrations.docker_target import containers_down as down

    removed = down(state(ctx).workspace(), service)
    say(f"removed {len(removed)} container(s)" + (f": {', '.join(removed)}" if removed else ""))
