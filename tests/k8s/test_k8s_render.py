"""What render fills in and refuses: warnings, --strict, the model's storageUri, groups.

Plus the analysis both ways: the web metric's body is what the verdict endpoint reads, and
the Job variant validates as a core Job and reads the DSN from a Secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from releaser.config import parse_config
from releaser.core.refs import CodeRef, ModelRef
from releaser.core.release import Release, ReleaseContent
from releaser.core.routing import GroupDef, ServiceRoute
from releaser.errors import BadInput
from releaser.integrations.k8s import Rendered, render_manifests
from releaser.serve.verdict import _arguments

from .test_k8s import K8S_VERSION, SCHEMAS, _validate

MINIMAL = """\
version: 1
project: k8s-test
owners:
  - {name: Ops, email: ops@example.org, role: service-owner}
groups:
  pilot:
    allow: [council-017]
  staff:
    rules:
      - {attribute: email, ends_with: "@example.org"}
  leads:
    rules:
      - {attribute: team, equals: leads}
services:
  triage:
    model: {name: triage, version: 3}
    slos: {error_rate: 0.02}
    rollout:
      steps:
        - {name: pilot, groups: [pilot, staff, leads], percent: 0, bake_minutes: 90}
        - {name: full, percent: 100, bake_minutes: 30}
    deploy:
      target: kubernetes
      attribute_headers: {team: X-Team}
      kubernetes:
        storage_uri: "s3://models/triage/{release}"
"""


def _spec(text: str = MINIMAL) -> Any:
    return parse_config(text).service("triage")


def _route() -> ServiceRoute:
    return ServiceRoute(
        service="triage",
        stable="aaaa0001",
        candidate="bbbb0002",
        rollout_id="triage-1",
        step=0,
        step_name="pilot",
        percent=0,
        groups=["pilot", "staff", "leads"],
        group_defs={
            "pilot": GroupDef(allow=["council-017"]),
            "staff": GroupDef(rules=[("email", "ends_with", "@example.org")]),
            "leads": GroupDef(rules=[("team", "equals", "leads")]),
        },
        seed=3,
    )


def _kinds(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {m.kind: m.body for m in rendered.manifests}


def test_every_default_and_every_left_out_group_is_a_warning_naming_its_setting() -> None:
    rendered = render_manifests("triage", _spec(), _route())
    settings = [w.setting for w in rendered.warnings]
    assert settings == [
        "services.triage.deploy.kubernetes.namespace",
        "services.triage.deploy.kubernetes.image",
        "services.triage.deploy.kubernetes.gateway",
        "services.triage.deploy.kubernetes.port",
        "services.triage.deploy.kubernetes.model_format",
        "services.triage.deploy.unit_header",
        "services.triage.deploy.kubernetes.analysis.verdict_url",
        "services.triage.deploy.attribute_headers",
    ]
    texts = [str(w) for w in rendered.warnings]
    assert "'default'" in texts[0] and "'triage:{release}'" in texts[1]
    assert "'8080'" in texts[3] and "'X-User-Id'" in texts[5]
    assert "group 'staff' is left out" in texts[7]  # email carried by no header
    kinds = _kinds(rendered)
    for body in kinds.values():
        _validate(body)
    assert kinds["Rollout"]["metadata"]["namespace"] == "default"
    # the group whose attribute has a header is expressed; the allow list too
    matches = kinds["HTTPRoute"]["spec"]["rules"][0]["matches"]
    assert {"headers": [{"type": "Exact", "name": "X-Team", "value": "leads"}]} in matches
    assert {"headers": [{"type": "Exact", "name": "X-User-Id", "value": "council-017"}]} in matches
    assert not any(h["name"].lower() == "email" for m in matches for h in m["headers"])


def test_a_header_for_the_attribute_expresses_an_ends_with_rule() -> None:
    text = MINIMAL.replace("{team: X-Team}", "{team: X-Team, email: X-User-Email}")
    rendered = render_manifests("triage", _spec(text), _route())
    assert not any("left out" in w.message for w in rendered.warnings)
    matches = _kinds(rendered)["HTTPRoute"]["spec"]["rules"][0]["matches"]
    assert {
        "headers": [
            {"type": "RegularExpression", "name": "X-User-Email", "value": r".*@example\.org$"}
        ]
    } in matches


def test_the_web_analysis_asks_the_verdict_endpoint_with_a_body_it_reads() -> None:
    template = _kinds(render_manifests("triage", _spec(), _route()))["AnalysisTemplate"]
    metric = template["spec"]["metrics"][0]
    web = metric["provider"]["web"]
    assert web["method"] == "POST" and web["jsonPath"] == "{$.decision}"
    assert web["url"] == (
        "http://triage-releaser.default.svc.cluster.local:8000/v1/rollouts/triage/verdict"
    )
    body = web["body"].replace("{{args.step}}", "1").replace("{{args.release}}", "bbbb0002")
    assert _arguments(body.encode()) == (1, "bbbb0002")
    assert metric["successCondition"] == "result == 'advance' || result == 'promote'"
    assert metric["failureCondition"] == "result == 'rollback'"
    # holds are inconclusive: the budget is twice the longest bake (90 min) plus an hour,
    # in 60 s asks; the first success ends the step, the first failure aborts
    assert metric["interval"] == "60s" and metric["inconclusiveLimit"] == 240
    assert metric["consecutiveSuccessLimit"] == 1 and metric["failureLimit"] == 0


def test_the_job_analysis_reads_the_dsn_from_a_secret_and_validates_as_a_job() -> None:
    text = MINIMAL.replace(
        'storage_uri: "s3://models/triage/{release}"',
        'storage_uri: "s3://models/triage/{release}"\n'
        "        analysis: {provider: job, releaser_image: ghcr.io/example/releaser:1, "
        "max_hold_minutes: 120}",
    )
    rendered = render_manifests("triage", _spec(text), _route())
    assert "services.triage.deploy.kubernetes.analysis.store_secret" in [
        w.setting for w in rendered.warnings
    ]
    template = _kinds(rendered)["AnalysisTemplate"]
    schema = json.loads((SCHEMAS / "analysistemplate_v1alpha1.json").read_text())
    jsonschema.Draft7Validator(schema).validate(template)
    job = template["spec"]["metrics"][0]["provider"]["job"]
    kubernetes_validate.validate(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "v"}, **job},
        K8S_VERSION,
        strict=True,
    )
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/example/releaser:1"
    assert container["env"] == [
        {
            "name": "RELEASER_STORE",
            "valueFrom": {"secretKeyRef": {"name": "triage-releaser-store", "key": "dsn"}},
        }
    ]
    assert "rollout advance --if-live --json" in container["command"][2]


def _release(source: str) -> Release:
    model = ModelRef(name="triage", version=3, source=source, model_uri="models:/triage/3")
    content = ReleaseContent(
        service="triage",
        model=model,
        code=CodeRef(sha="0" * 40, dirty=False),
        config={},
        config_hash="0" * 64,
    )
    release = Release.build(content, created_at="2030-01-01T00:00:00Z", created_by="tests")
    return release.model_copy(update={"id": "bbbb0002"})  # the id the route names


def _storage(text: str, source: str, resolve: Any = None) -> str:
    route = ServiceRoute(service="triage", stable="bbbb0002", seed=3)
    rendered = render_manifests(
        "triage", _spec(text), route, {"bbbb0002": _release(source)}, resolve_model=resolve
    )
    return str(_kinds(rendered)["InferenceService"]["spec"]["predictor"]["model"]["storageUri"])


NO_URI = MINIMAL.replace('storage_uri: "s3://models/triage/{release}"', "replicas: 2")
MODELS_URI = MINIMAL.replace('"s3://models/triage/{release}"', '"models:/triage/3"')


def _never(model: ModelRef) -> str:
    raise AssertionError("the registry was asked although the release pinned the location")


def test_a_models_uri_resolves_to_the_location_the_release_pinned_without_mlflow() -> None:
    assert _storage(MODELS_URI, "s3://bucket/triage/3", _never) == "s3://bucket/triage/3"
    assert _storage(NO_URI, "gs://bucket/triage/3", _never) == "gs://bucket/triage/3"


def test_a_registry_source_is_resolved_through_the_registry() -> None:
    asked: list[str] = []

    def resolve(model: ModelRef) -> str:
        asked.append(model.model_uri)
        return "s3://mlflow-artifacts/1/models/m-1/artifacts"

    uri = _storage(NO_URI, "models:/m-1", resolve)
    assert uri == "s3://mlflow-artifacts/1/models/m-1/artifacts" and asked == ["models:/triage/3"]


@pytest.mark.parametrize(
    "source",
    ["/home/me/mlruns/1/models/m-1/artifacts", "file:///srv/mlruns/1", "mlflow-artifacts:/1/m"],
)
def test_a_location_kserve_cannot_load_is_refused_with_a_hint(source: str) -> None:
    with pytest.raises(BadInput) as err:
        _storage(NO_URI, source, _never)
    assert "KServe cannot load the model of release bbbb0002" in err.value.message
    assert "artifact store KServe can read" in (err.value.hint or "")
    assert "services.triage.deploy.kubernetes.storage_uri" in (err.value.hint or "")


def test_a_password_in_a_refused_location_is_not_shown() -> None:
    with pytest.raises(BadInput) as err:
        _storage(NO_URI, "ftp://user:s3cret@host/model", _never)
    assert "s3cret" not in err.value.message and "***" in err.value.message


def test_the_mlflow_resolver_asks_a_real_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from releaser.integrations.k8s_storage import mlflow_resolver
    from releaser.integrations.mlflow_models import MlflowModelRegistry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # models:/ sources resolve via the default
    client = MlflowClient(uri)
    experiment = client.create_experiment("k8s", artifact_location="s3://team-models/k8s")
    logged = client.create_logged_model(experiment, name="model")
    client.create_registered_model("triage")
    client.create_model_version(
        "triage", source=f"models:/{logged.model_id}", model_id=logged.model_id
    )

    class Ws:
        models = MlflowModelRegistry(uri)

    ref = ModelRef(
        name="triage", version=1, source=f"models:/{logged.model_id}", model_uri="models:/triage/1"
    )
    location = mlflow_resolver(Ws())(ref)  # type: ignore[arg-type]
    assert location.startswith("s3://team-models/k8s/") and logged.model_id in location
