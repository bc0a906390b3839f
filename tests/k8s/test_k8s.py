"""Rendered Kubernetes manifests: they validate, and they carry releaser's plan and weights.

Core kinds are checked with kubernetes-validate (strict); the custom resources with the
CRDs' published JSON schemas kept under ``schemas/`` (pruned copies, see its README).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from releaser.config import parse_config
from releaser.core.routing import GroupDef, ServiceRoute
from releaser.integrations.k8s import Manifest, write_manifests
from releaser.integrations.k8s import render_manifests as render

SCHEMAS = Path(__file__).parent / "schemas"
CRD_SCHEMAS = {
    "Rollout": "rollout_v1alpha1.json",
    "HTTPRoute": "httproute_v1.json",
    "InferenceService": "inferenceservice_v1beta1.json",
    "AnalysisTemplate": "analysistemplate_v1alpha1.json",
}
K8S_VERSION = "1.37.0"

CONFIG = """\
version: 1
project: k8s-test
owners:
  - {name: Ops, email: ops@example.org, role: service-owner}
groups:
  pilot:
    allow: [council-017, council-042]
services:
  triage:
    model: {name: triage, version: 3}
    slos: {error_rate: 0.02}
    rollout:
      steps:
        - {name: pilot, groups: [pilot], percent: 0}
        - {name: canary-5, percent: 5}
        - {name: canary-25, percent: 25.5}
        - {name: full, percent: 100}
    deploy:
      target: kubernetes
      unit_header: X-Council-Id
      kubernetes:
        namespace: casework
        image: "registry.example.org/triage:{release}"
        storage_uri: "s3://models/triage/{release}"
        hostnames: [triage.example.org]
        gateway: public
        port: 8080
        model_format: mlflow
        analysis: {verdict_url: "http://releaser.casework.svc:8000", interval_s: 30}
"""


def _spec() -> Any:
    return parse_config(CONFIG).service("triage")


def _mid_rollout(percent: float = 25.5) -> ServiceRoute:
    return ServiceRoute(
        service="triage",
        stable="relstable0000001",
        candidate="relcandidate0002",
        rollout_id="ro-1",
        step=2,
        step_name="canary-25",
        percent=percent,
        groups=["pilot"],
        group_defs={"pilot": GroupDef(allow=["council-017", "council-042"])},
        seed=11,
    )


def render_manifests(*args: Any, **kwargs: Any) -> list[Manifest]:
    """The manifests of a fully configured service: render warns of nothing."""
    rendered = render(*args, **kwargs)
    assert rendered.warnings == []
    return rendered.manifests


def _by_kind(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {
        m.kind + (m.body["metadata"]["name"] if m.kind == "Service" else ""): m.body
        for m in manifests
    }


def _validate(body: dict[str, Any]) -> None:
    """Raise if ``body`` is not a valid object of its kind."""
    kind = body["kind"]
    if kind in CRD_SCHEMAS:
        schema = json.loads((SCHEMAS / CRD_SCHEMAS[kind]).read_text())
        jsonschema.Draft7Validator(schema).validate(body)
        if kind == "Rollout":
            # The pod template is a core PodTemplateSpec: check it as a Deployment's.
            spec = body["spec"]
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": body["metadata"]["name"]},
                "spec": {"selector": spec["selector"], "template": spec["template"]},
            }
            kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    else:
        kubernetes_validate.validate(body, K8S_VERSION, strict=True)


@pytest.mark.parametrize("percent", [25.5, 0.0, 100.0])
def test_mid_rollout_manifests_validate_and_carry_the_plan(percent: float) -> None:
    manifests = render_manifests("triage", _spec(), _mid_rollout(percent))
    assert sorted(m.kind for m in manifests) == [
        "AnalysisTemplate",
        "HTTPRoute",
        "InferenceService",
        "Rollout",
        "Service",
        "Service",
    ]
    for m in manifests:
        _validate(m.body)
    kinds = _by_kind(manifests)
    steps = kinds["Rollout"]["spec"]["strategy"]["canary"]["steps"]
    # setWeight per plan step, then an analysis of that step: releaser decides when to move
    assert steps[::2] == [{"setWeight": 0}, {"setWeight": 5}, {"setWeight": 26}, {"setWeight": 100}]
    for index, step in enumerate(steps[1::2]):
        assert step["analysis"]["templates"] == [{"templateName": "triage-releaser-verdict"}]
        assert step["analysis"]["args"] == [
            {"name": "step", "value": str(index)},
            {"name": "release", "value": "relcandidate0002"},
        ]
    template = kinds["Rollout"]["spec"]["template"]
    assert (
        template["spec"]["containers"][0]["image"] == "registry.example.org/triage:relcandidate0002"
    )
    rules = kinds["HTTPRoute"]["spec"]["rules"]
    # allow-listed units of the step's groups go to the canary by header
    assert [h["headers"][0]["value"] for h in rules[0]["matches"]] == [
        "council-017",
        "council-042",
    ]
    assert rules[0]["matches"][0]["headers"][0]["name"] == "X-Council-Id"
    weights = {b["name"]: b["weight"] for b in rules[1]["backendRefs"]}
    canary = round(percent * 100)
    assert weights == {"triage-stable": 10_000 - canary, "triage-canary": canary}
    predictor = kinds["InferenceService"]["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == round(percent)
    assert predictor["model"]["storageUri"] == "s3://models/triage/relcandidate0002"
    assert kinds["Rollout"]["metadata"]["namespace"] == "casework"


def test_after_rollback_everything_points_at_the_stable_release() -> None:
    route = ServiceRoute(service="triage", stable="relstable0000001", seed=11)
    kinds = _by_kind(render_manifests("triage", _spec(), route))
    for body in kinds.values():
        _validate(body)
    rules = kinds["HTTPRoute"]["spec"]["rules"]
    assert len(rules) == 1  # no header matches once no candidate is live
    weights = {b["name"]: b["weight"] for b in rules[0]["backendRefs"]}
    assert weights == {"triage-stable": 10_000, "triage-canary": 0}
    predictor = kinds["InferenceService"]["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor
    assert predictor["model"]["storageUri"] == "s3://models/triage/relstable0000001"
    image = kinds["Rollout"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":relstable0000001")


@pytest.mark.parametrize(
    ("kind", "path", "bad"),
    [
        ("Rollout", ("spec", "strategy", "canary", "steps", 0, "setWeight"), "ten"),
        ("Rollout", ("spec", "strategy", "canary", "stepz"), []),
        ("HTTPRoute", ("spec", "rules", 1, "backendRefs", 0, "weight"), 2_000_000),
        ("HTTPRoute", ("spec", "hostnames", 0), "Not_A_Host"),
        ("InferenceService", ("spec", "predictor", "model", "modelFormat", "nam"), "x"),
        ("Servicetriage-stable", ("spec", "ports", 0, "port"), "eighty"),
        ("Rollout", ("spec", "strategy", "canary", "steps", 1, "analysis", "templatez"), []),
        ("AnalysisTemplate", ("spec", "metrics", 0, "provider", "web", "timeoutSeconds"), "30s"),
        ("AnalysisTemplate", ("spec", "metrics", 0, "provider", "web", "jsonpath"), "$"),
    ],
)
def test_the_schemas_reject_broken_manifests(kind: str, path: tuple[Any, ...], bad: Any) -> None:
    body = copy.deepcopy(_by_kind(render_manifests("triage", _spec(), _mid_rollout()))[kind])
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        _validate(body)


def test_write_manifests_writes_yaml_that_reads_back(tmp_path: Path) -> None:
    manifests = render_manifests("triage", _spec(), _mid_rollout())
    paths = write_manifests(manifests, tmp_path / "out")
    assert sorted(p.name for p in paths) == [
        "analysistemplate.yaml",
        "httproute.yaml",
        "inferenceservice.yaml",
        "rollout.yaml",
        "service-canary.yaml",
        "service-stable.yaml",
    ]
    for path, manifest in zip(paths, manifests, strict=True):
        assert yaml.safe_load(path.read_text()) == manifest.body
