"""``releaser k8s render`` on a real workspace: warnings printed, --strict, a refused model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from releaser.demo.workspace import ExampleWorkspace

pytestmark = pytest.mark.slow

SERVICE = "case-triage"


def _deploy(root: Path, kubernetes: str) -> None:
    """Set the service's deploy section (target kubernetes; the file's last) and commit it."""
    cfg = root / "releaser.yaml"
    marker = "    irreversible: false\n"
    head, found, _ = cfg.read_text().partition(marker)
    assert found
    block = "    deploy:\n      target: kubernetes\n" + "".join(
        f"      {line}\n" for line in kubernetes.strip("\n").splitlines()
    )
    cfg.write_text(head + marker + block)
    subprocess.run(["git", "commit", "-qam", "deploy settings"], cwd=root, check=True)


def _released(root: Path, cli: Any) -> str:
    out = cli("release", "create", SERVICE, "--json", cwd=root)
    assert out.code == 0, out.err
    rid: str = json.loads(out.out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", rid).code == 0
    started = cli("rollout", "start", SERVICE, "--release", rid, "--initial")
    assert started.code == 0, started.err
    return rid


def test_render_prints_each_default_strict_refuses_and_a_local_model_is_refused(
    release_ws: ExampleWorkspace, cli: Any
) -> None:
    root = release_ws.root
    _deploy(root, "kubernetes: {port: 8080}")
    rid = _released(root, cli)
    out = root / "k8s"
    # the example registers its model in a local mlruns folder: KServe cannot load it
    refused = cli("k8s", "render", SERVICE, "-o", str(out))
    assert refused.code == 2
    assert f"KServe cannot load the model of release {rid}" in refused.err
    assert "storage_uri" in refused.err and not out.exists()

    _deploy(root, 'kubernetes: {storage_uri: "s3://models/case-triage/{release}"}')
    rendered = cli("k8s", "render", SERVICE, "-o", str(out))
    assert rendered.code == 0, rendered.err
    for setting in ("namespace", "image", "gateway", "port", "analysis.verdict_url"):
        assert f"services.{SERVICE}.deploy.kubernetes.{setting}:" in rendered.err
    assert f"services.{SERVICE}.deploy.unit_header:" in rendered.err
    rollout = yaml.safe_load((out / "rollout.yaml").read_text())
    assert rollout["metadata"]["namespace"] == "default"
    template = yaml.safe_load((out / "analysistemplate.yaml").read_text())
    assert template["kind"] == "AnalysisTemplate"
    isvc = yaml.safe_load((out / "inferenceservice.yaml").read_text())
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"s3://models/case-triage/{rid}"

    strict = cli("k8s", "render", SERVICE, "-o", str(root / "strict"), "--strict")
    assert strict.code == 2
    for setting in ("namespace", "image", "gateway", "analysis.verdict_url"):
        assert f"services.{SERVICE}.deploy.kubernetes.{setting}" in strict.err
    assert "releaser.yaml" in strict.err and not (root / "strict").exists()

    _deploy(
        root,
        """unit_header: X-Case-Worker
kubernetes:
  namespace: casework
  image: "registry.example.org/case-triage:{release}"
  gateway: public
  port: 8080
  model_format: mlflow
  storage_uri: "s3://models/case-triage/{release}"
  analysis: {verdict_url: "http://releaser.casework.svc:8000"}""",
    )
    clean = cli("k8s", "render", SERVICE, "-o", str(root / "clean"), "--strict")
    assert clean.code == 0, clean.err
    assert "warning" not in clean.err.lower()
