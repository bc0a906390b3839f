"""Walk-through: a rollout judged on Prometheus metrics (docs/concepts/metrics.md).

Builds the case-triage example workspace in a new folder, releases model version 1 as
stable and version 2 as the candidate, and serves the gateway's own Prometheus metrics
(``releaser.serve.metrics.GatewayMetrics``, the series ``releaser serve`` exports) from a
thread. A real ``prometheus`` (from PATH) scrapes them every second. The service's
releaser.yaml says ``metrics: {source: prometheus}`` with the defaults, so ``rollout
advance`` reads counter increases since each step began from Prometheus, not the store.

Run it from the repository root (about a minute; most of it builds the workspace):

    .venv/bin/python examples/prometheus_rollout.py /some/empty/folder [--bad]

``--bad`` gives the candidate three times the baseline's error rate: it is rolled back.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SERVICE = "case-triage"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _git_commit(root: Path, message: str) -> None:
    subprocess.run(["git", "commit", "-qam", message], cwd=root, check=True)


def _workspace(root: Path, prometheus_url: str) -> tuple[str, str]:
    """The example workspace with two releases: the first stable, the second gated."""
    from releaser.api.gates import run_gate
    from releaser.api.prompts import promote_prompt, register_prompt
    from releaser.api.releases import create_release
    from releaser.api.rollouts import start_rollout
    from releaser.api.workspace import open_workspace
    from releaser.config.template import render_init_template
    from releaser.demo.workspace import PROMPT_PATH, build_example_workspace

    print(f"building the example workspace in {root} ...")
    build_example_workspace(
        root, config_text=render_init_template("council-casework", SERVICE), model_versions=2
    )
    ws = open_workspace(root)
    pv = register_prompt(ws, root / PROMPT_PATH).version
    promote_prompt(ws, pv.name, pv.version, "production", "first version")
    ws.close()
    cfg = root / "releaser.yaml"
    text = re.sub(r"bake_minutes: \d+", "bake_minutes: 0", cfg.read_text(encoding="utf-8"))
    block = (
        "    metrics:\n"
        "      source: prometheus\n"
        "      prometheus:\n"
        f"        url: {prometheus_url}\n"
    )
    cfg.write_text(text.replace(f"  {SERVICE}:\n", f"  {SERVICE}:\n{block}", 1), encoding="utf-8")
    _git_commit(root, "Canary analysis reads Prometheus; no bake times for the walk-through")
    ws = open_workspace(root)
    stable = create_release(ws, SERVICE).release.id
    run_gate(ws, SERVICE, stable)
    start_rollout(ws, SERVICE, stable, initial=True)
    ws.close()
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace("alias: champion", "version: 2", 1),
        encoding="utf-8",
    )
    _git_commit(root, "Serve model version 2")
    ws = open_workspace(root)
    candidate = create_release(ws, SERVICE).release.id
    run_gate(ws, SERVICE, candidate)
    ws.close()
    return stable, candidate


def _start_prometheus(folder: Path, target_port: int) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus")
    if binary is None:
        sys.exit("no prometheus binary on PATH (apt-get install prometheus)")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: gateway\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n",
        encoding="utf-8",
    )
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.terminate()
    sys.exit("prometheus did not become ready")


def _wait_for_scrape(url: str, total: int) -> None:
    """Until Prometheus has scraped every request counted so far."""
    query = f'sum(releaser_gateway_requests_total{{service="{SERVICE}"}})'
    for _ in range(150):
        result = httpx.get(f"{url}/api/v1/query", params={"query": query}).json()["data"]["result"]
        if result and float(result[0]["value"][1]) >= total:
            return
        time.sleep(0.2)
    sys.exit("Prometheus did not scrape the gateway's counters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="An empty folder to build the workspace in.")
    parser.add_argument("--bad", action="store_true", help="Candidate at 3x the errors.")
    args = parser.parse_args()

    from prometheus_client import start_http_server

    from releaser.api.rollout_status import rollout_status
    from releaser.api.rollouts import advance_rollout, start_rollout
    from releaser.api.workspace import open_workspace
    from releaser.serve.metrics import GatewayMetrics

    gateway = GatewayMetrics(SERVICE)
    exporter_port = _free_port()
    server, _thread = start_http_server(exporter_port, "127.0.0.1", registry=gateway.registry)
    scratch = Path(tempfile.mkdtemp(prefix="prometheus-walkthrough-"))
    process, url = _start_prometheus(scratch, exporter_port)
    try:
        root = args.folder.resolve()
        stable, candidate = _workspace(root, url)
        print(f"stable {stable[:12]}, candidate {candidate[:12]}; Prometheus at {url}")
        rng = random.Random(7)
        rates = {stable: 0.005, candidate: 0.015 if args.bad else 0.005}
        total = 0

        def serve(release: str, variant: str, n: int) -> None:
            nonlocal total
            for _ in range(n):
                failed = rng.random() < rates[release]
                code = 503 if failed else 200
                gateway.observe(variant, release, code, rng.lognormvariate(-3.0, 0.4))
                if failed:
                    gateway.error(variant, release, "status_5xx")
            total += n

        serve(stable, "stable", 3000)  # before the rollout: not its evidence
        _wait_for_scrape(url, total)
        ws = open_workspace(root)
        start_rollout(ws, SERVICE, candidate)
        ws.close()
        for look in range(1, 9):
            serve(stable, "baseline", 2500)
            serve(candidate, "candidate", 2500)
            _wait_for_scrape(url, total)
            ws = open_workspace(root)
            report = rollout_status(ws, SERVICE)
            result = advance_rollout(ws, SERVICE)
            ws.close()
            b, c = report.baseline, report.candidate
            assert b is not None and c is not None
            print(
                f"look {look}: baseline {b.errors}/{b.requests} errors, candidate "
                f"{c.errors}/{c.requests} (since the rollout began, from Prometheus) -> "
                f"{result.decision.action}: {'; '.join(result.decision.reasons)}"
            )
            if result.rollout.final:
                print(f"rollout {result.rollout.id}: {result.rollout.status}")
                break
    finally:
        process.terminate()
        process.wait()
        server.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
