"""``releaser serve``, ``k8s render`` and ``containers``: what a user sees."""

from __future__ import annotations

from pathlib import Path

import yaml

CONFIG = """\
version: 1
project: serve-cli
owners:
  - {name: Ops, email: ops@example.org, role: service-owner}
prompts: {backend: file}
services:
  assist:
    prompts: [assist-system]
    slos: {error_rate: 0.02}
    deploy:
      target: kubernetes
      container: {engine: "unix://%s"}
      kubernetes: {namespace: assist-ns}
"""


def _workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "releaser.yaml").write_text(CONFIG % (tmp_path / "no-engine.sock"))
    return root


def test_k8s_render_writes_manifests(tmp_path: Path, cli) -> None:
    root = _workspace(tmp_path)
    res = cli("k8s", "render", "assist", "-o", str(tmp_path / "out"), cwd=root)
    assert res.code == 0, res.err
    assert "kubectl apply -f" in res.out
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    # no release yet, and a prompt-only service: no InferenceService, and a warning says so
    assert files == [
        "analysistemplate.yaml",
        "httproute.yaml",
        "rollout.yaml",
        "service-canary.yaml",
        "service-stable.yaml",
    ]
    rollout = yaml.safe_load((tmp_path / "out" / "rollout.yaml").read_text())
    assert rollout["metadata"]["namespace"] == "assist-ns"
    for setting in ("image", "gateway", "analysis.verdict_url", "storage_uri"):
        assert f"warning: services.assist.deploy.kubernetes.{setting}:" in res.err
    assert "kubernetes.namespace" not in res.err  # set: no warning
    # the default plan: 1% -> 5% -> 25% -> 100%
    weights = [
        s["setWeight"] for s in rollout["spec"]["strategy"]["canary"]["steps"] if "setWeight" in s
    ]
    assert weights == [1, 5, 25, 100]


def test_k8s_render_of_an_unknown_service_is_bad_input(tmp_path: Path, cli) -> None:
    res = cli("k8s", "render", "asist", cwd=_workspace(tmp_path))
    assert res.code == 2
    assert "asist" in res.err and "assist" in res.err


def test_serve_without_upstreams_says_what_to_add(tmp_path: Path, cli) -> None:
    res = cli("serve", "assist", "--port", "0", cwd=_workspace(tmp_path))
    assert res.code == 2
    assert "no upstreams" in res.err and "deploy:" in res.err


def test_containers_without_an_engine_is_unavailable(tmp_path: Path, cli) -> None:
    res = cli("containers", "down", "assist", cwd=_workspace(tmp_path))
    assert res.code == 3
    assert "Docker Engine API" in res.err and "DOCKER_HOST" in res.err
