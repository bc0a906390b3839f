"""Kubernetes manifests that let an existing engine split a service's traffic by releaser's plan.

``releaser k8s render SERVICE`` writes, from ``releaser.yaml`` and the service's current
route in the store:

- two core ``Service`` objects, ``<service>-stable`` and ``<service>-canary``;
- an Argo Rollouts ``Rollout`` whose canary steps are the plan's steps (``setWeight`` then
  an indefinite ``pause`` each: releaser, not a timer, decides when a step is done); Argo
  scales the canary ReplicaSet per step, and traffic follows the HTTPRoute weights that
  releaser writes (no Argo traffic-routing plugin needed);
- a Gateway API ``HTTPRoute`` with the live weights (in 1/10000ths, the bucketing
  granularity), plus header matches that send allow-listed units of the live step's groups
  to the canary;
- a KServe ``InferenceService`` serving the candidate's model with
  ``canaryTrafficPercent`` at the live percentage (the stable model alone after promotion
  or rollback).

How releaser drives them on a cluster: after every traffic change (``rollout start``,
``rollout advance`` to the next step, ``promote``, ``rollback``) render again and apply
(``kubectl apply -f DIR``, or commit DIR for a GitOps controller). The HTTPRoute weights and
``canaryTrafficPercent`` follow the store at once; for the Argo Rollout,
``kubectl argo rollouts promote <service>`` moves one step and
``kubectl argo rollouts abort <service>`` sends everything back to the stable ReplicaSet.
Percentages on the cluster are per request, not sticky per unit; put ``releaser serve`` in
front (or session affinity) where stickiness matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.service import Service
    from releaser.core.release import Release

from releaser.core.bucketing import Cohort
from releaser.core.routing import ServiceRoute

__all__ = ["Manifest", "render_manifests", "render_service", "write_manifests"]

MANAGED_BY = "releaser"
ANNOTATION = "releaser.dev"
WEIGHT_SCALE = 10_000  # HTTPRoute weights: one unit per bucket
MAX_HEADER_MATCHES = 64  # Gateway API: at most 64 matches per rule


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and the file it is written to."""

    filename: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        """The object's kind."""
        return str(self.body["kind"])


def _name(service: str, suffix: str = "") -> str:
    base = service[: 63 - len(suffix)].rstrip("-")
    return base + suffix


def _image(template: str | None, service: str, release: str) -> str:
    return (template or f"{service}:{{release}}").replace("{release}", release)


def _cohort(route: ServiceRoute | None) -> Cohort:
    """The live cohort (empty without a candidate); its threshold is the bucket cut."""
    return route.cohort() if route is not None else Cohort()


def render_manifests(
    service: str,
    spec: Service,
    route: ServiceRoute | None,
    releases: dict[str, Release] | None = None,
) -> list[Manifest]:
    """The manifests of ``service`` at its current route (pure; no cluster, no store)."""
    from releaser.config.deploy import KubernetesSpec

    k8s = spec.deploy.kubernetes if spec.deploy is not None else KubernetesSpec()
    releases = releases or {}
    stable = route.stable if route is not None else None
    candidate = route.candidate if route is not None else None
    live = candidate or stable or "unreleased"
    header = spec.deploy.unit_header if spec.deploy is not None else "X-User-Id"
    labels = {"app.kubernetes.io/name": _name(service), "app.kubernetes.io/managed-by": MANAGED_BY}
    annotations = {
        f"{ANNOTATION}/service": service,
        f"{ANNOTATION}/stable-release": stable or "",
        f"{ANNOTATION}/candidate-release": candidate or "",
        f"{ANNOTATION}/step": (route.step_name or "") if route is not None else "",
    }

    def meta(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": k8s.namespace,
            "labels": dict(labels),
            "annotations": dict(annotations),
        }

    services = [
        Manifest(
            f"service-{role}.yaml",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(_name(service, f"-{role}")),
                "spec": {
                    "selector": {"app.kubernetes.io/name": _name(service)},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            },
        )
        for role in ("stable", "canary")
    ]
    return [
        *services,
        Manifest("rollout.yaml", _rollout(service, spec, k8s, live, meta)),
        Manifest("httproute.yaml", _http_route(service, k8s, route, header, meta)),
        Manifest("inferenceservice.yaml", _inference_service(service, k8s, route, releases, meta)),
    ]


def _rollout(service: str, spec: Service, k8s: Any, release: str, meta: Any) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for step in spec.rollout.steps:
        # Argo weights are whole percents; a fraction rounds up so a 0.5% step is not 0%.
        weight = min(100, math.ceil(step.percent)) if step.percent > 0 else 0
        steps.append({"setWeight": weight})
        if step is not spec.rollout.steps[-1]:
            steps.append({"pause": {}})
    health = spec.deploy.container.health_path if spec.deploy is not None else "/healthz"
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": meta(_name(service)),
        "spec": {
            "replicas": k8s.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app.kubernetes.io/name": _name(service)}},
            "template": {
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/name": _name(service),
                        f"{ANNOTATION}/release": release,
                    }
                },
                "spec": {
                    "containers": [
                        {
                            "name": "model-server",
                            "image": _image(k8s.image, service, release),
                            "ports": [{"name": "http", "containerPort": k8s.port}],
                            "readinessProbe": {"httpGet": {"path": health, "port": "http"}},
                        }
                    ]
                },
            },
            "strategy": {
                "canary": {
                    "canaryService": _name(service, "-canary"),
                    "stableService": _name(service, "-stable"),
                    "steps": steps,
                }
            },
        },
    }


def _http_route(
    service: str, k8s: Any, route: ServiceRoute | None, header: str, meta: Any
) -> dict[str, Any]:
    canary_weight = _cohort(route).threshold  # WEIGHT_SCALE buckets: the router's own cut

    def backend(role: str, weight: int) -> dict[str, Any]:
        return {"name": _name(service, f"-{role}"), "port": 80, "weight": weight}

    rules: list[dict[str, Any]] = []
    if route is not None and route.candidate is not None:
        allow = sorted(
            {unit for g in route.groups for unit in route.group_defs.get(g, _NO_GROUP).allow}
        )
        if allow:
            rules.append(
                {
                    "matches": [
                        {"headers": [{"type": "Exact", "name": header, "value": unit}]}
                        for unit in allow[:MAX_HEADER_MATCHES]
                    ],
                    "backendRefs": [backend("canary", 1)],
                }
            )
    rules.append(
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                backend("stable", WEIGHT_SCALE - canary_weight),
                backend("canary", canary_weight),
            ],
        }
    )
    spec: dict[str, Any] = {
        "parentRefs": [{"name": k8s.gateway}],
        "rules": rules,
    }
    if k8s.hostnames:
        spec["hostnames"] = list(k8s.hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta(_name(service)),
        "spec": spec,
    }


class _NoGroup:
    allow: list[str] = []


_NO_GROUP = _NoGroup()


def _inference_service(
    service: str,
    k8s: Any,
    route: ServiceRoute | None,
    releases: dict[str, Release],
    meta: Any,
) -> dict[str, Any]:
    candidate = route.candidate if route is not None else None
    stable = route.stable if route is not None else None
    serving = candidate or stable
    storage = None
    if k8s.storage_uri and serving:
        storage = k8s.storage_uri.replace("{release}", serving)
    elif serving and serving in releases and releases[serving].content.model is not None:
        model = releases[serving].content.model
        assert model is not None
        storage = model.source
    predictor: dict[str, Any] = {
        "model": {
            "modelFormat": {"name": k8s.model_format},
            "storageUri": storage or f"pvc://{_name(service)}-models/{serving or 'none'}",
        }
    }
    if candidate is not None:
        predictor["canaryTrafficPercent"] = round(_cohort(route).percent)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta(_name(service)),
        "spec": {"predictor": predictor},
    }


def render_service(ws: Workspace, service: str) -> list[Manifest]:
    """The manifests of a workspace's service at the route the store holds now."""
    from releaser.core.routing import ROUTE_KIND, ServiceRoute
    from releaser.integrations._releases import stored_release

    spec = ws.config.service(service)
    record = ws.store.get(ROUTE_KIND, service)
    route = ServiceRoute.model_validate(record.value) if record is not None else None
    releases = {}
    if route is not None:
        for rid in (route.stable, route.candidate):
            if rid is not None:
                releases[rid] = stored_release(ws.store, rid)
    return render_manifests(service, spec, route, releases)


def write_manifests(manifests: list[Manifest], out_dir: Path) -> list[Path]:
    """Write each manifest as YAML into ``out_dir`` (created); returns the paths."""
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in manifests:
        path = out_dir / m.filename
        path.write_text(
            "# rendered by releaser k8s render; apply with kubectl apply -f .\n"
            + yaml.safe_dump(m.body, sort_keys=False)
        )
        paths.append(path)
    return paths
