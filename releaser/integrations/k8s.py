"""Kubernetes manifests that let an existing engine split a service's traffic by releaser's plan.

``releaser k8s render SERVICE`` writes, from ``releaser.yaml`` and the service's current
route in the store:

- two core ``Service`` objects, ``<service>-stable`` and ``<service>-canary``;
- an Argo Rollouts ``Rollout`` whose canary steps are the plan's steps: ``setWeight``, then
  an ``analysis`` step that asks releaser's verdict (:mod:`releaser.integrations.k8s_analysis`),
  so Argo moves to the next weight, or aborts, when releaser decides; Argo scales the canary
  ReplicaSet per step, and traffic follows the HTTPRoute weights that releaser writes (no
  Argo traffic-routing plugin needed);
- the ``AnalysisTemplate`` those steps use (a ``web`` call to ``releaser serve``, or a Job);
- a Gateway API ``HTTPRoute`` with the live weights (in 1/10000ths, the bucketing
  granularity), plus header matches that send the live step's groups to the canary:
  allow-listed units by the unit header, attribute rules by the header that carries the
  attribute (``deploy.attribute_headers``);
- a KServe ``InferenceService`` serving the candidate's model with
  ``canaryTrafficPercent`` at the live percentage (the stable model alone after promotion
  or rollback). Its ``storageUri`` is the artifact location the release pinned, or
  ``storage_uri``; a ``models:/`` or ``runs:/`` URI is resolved to the model version's
  artifact location, and one KServe cannot load (a local path, ``file://``,
  ``mlflow-artifacts:``) is refused.

No silent defaults: every setting render fills in (namespace, image, Gateway, verdict URL,
...) and every group the HTTPRoute cannot express comes back as a :class:`RenderWarning`;
``strict`` turns them into a ConfigError.

Percentages on the cluster are per request, not sticky per unit; put ``releaser serve`` in
front (or session affinity) where stickiness matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releaser.core.bucketing import Cohort
from releaser.core.routing import GroupDef, ServiceRoute
from releaser.errors import ConfigError, ConfigProblem
from releaser.integrations.k8s_analysis import (
    TEMPLATE_SUFFIX,
    RenderWarning,
    analysis_template,
    verdict_steps,
)
from releaser.integrations.k8s_storage import ResolveModel, mlflow_resolver, storage_uri

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.deploy import KubernetesSpec
    from releaser.config.service import Service
    from releaser.core.release import Release

__all__ = [
    "Manifest",
    "RenderWarning",
    "Rendered",
    "render_manifests",
    "render_service",
    "write_manifests",
]

MANAGED_BY = "releaser"
ANNOTATION = "releaser.dev"
WEIGHT_SCALE = 10_000  # HTTPRoute weights: one unit per bucket
MAX_MATCHES = 64  # Gateway API: at most 64 matches per rule


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and the file it is written to."""

    filename: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        """The object's kind."""
        return str(self.body["kind"])


@dataclass(frozen=True)
class Rendered:
    """The manifests, and the defaults and omissions render had to make."""

    manifests: list[Manifest]
    warnings: list[RenderWarning] = field(default_factory=list)


def _name(service: str, suffix: str = "") -> str:
    base = service[: 63 - len(suffix)].rstrip("-")
    return base + suffix


def _cohort(route: ServiceRoute | None) -> Cohort:
    """The live cohort (empty without a candidate); its threshold is the bucket cut."""
    return route.cohort() if route is not None else Cohort()


def _defaults(
    service: str, spec: Service, k8s: KubernetesSpec
) -> tuple[dict[str, str], list[RenderWarning]]:
    """Settings render needs: configured, or a default with its warning.

    namespace, image and Gateway have no default in the config (None); the container port,
    KServe model format and unit header do, and are warned of when releaser.yaml does not
    set them, as what they name must match the cluster. Replicas and hostnames are tuning
    and are not warned of.
    """
    key = f"services.{service}.deploy"
    chosen = {
        "namespace": k8s.namespace or "default",
        "image": k8s.image or f"{service}:{{release}}",
        "gateway": k8s.gateway or "releaser-gateway",
        "port": str(k8s.port),
        "model_format": k8s.model_format,
    }
    unset = [s for s in ("namespace", "image", "gateway") if getattr(k8s, s) is None]
    unset += [s for s in ("port", "model_format") if s not in k8s.model_fields_set]
    warnings = [
        RenderWarning(
            f"{key}.kubernetes.{setting}",
            f"{setting} not set: using {chosen[setting]!r}",
            f"set {key}.kubernetes.{setting} in releaser.yaml",
        )
        for setting in unset
    ]
    if spec.deploy is None or "unit_header" not in spec.deploy.model_fields_set:
        header = spec.deploy.unit_header if spec.deploy is not None else "X-User-Id"
        warnings.append(
            RenderWarning(
                f"{key}.unit_header",
                f"unit_header not set: the HTTPRoute matches unit ids in header {header!r}",
                f"set {key}.unit_header in releaser.yaml",
            )
        )
    return chosen, warnings


def render_manifests(
    service: str,
    spec: Service,
    route: ServiceRoute | None,
    releases: dict[str, Release] | None = None,
    *,
    resolve_model: ResolveModel | None = None,
) -> Rendered:
    """The manifests of ``service`` at its current route (no cluster, no store).

    ``resolve_model`` is asked only for a release whose pinned model source is a registry
    URI (``models:/``, ``runs:/``). BadInput when the model's location is one KServe cannot
    load.
    """
    from releaser.config.deploy import KubernetesSpec

    k8s = spec.deploy.kubernetes if spec.deploy is not None else KubernetesSpec()
    chosen, warnings = _defaults(service, spec, k8s)
    namespace = chosen["namespace"]
    releases = releases or {}
    stable = route.stable if route is not None else None
    candidate = route.candidate if route is not None else None
    live = candidate or stable or "unreleased"
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
            "namespace": namespace,
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
    image = chosen["image"].replace("{release}", live)
    template = analysis_template(
        service, spec, k8s, namespace, meta(_name(service, TEMPLATE_SUFFIX)), warnings
    )
    manifests = [
        *services,
        Manifest("rollout.yaml", _rollout(service, spec, k8s, live, image, meta)),
        Manifest("analysistemplate.yaml", template),
        Manifest(
            "httproute.yaml", _http_route(service, spec, chosen["gateway"], route, meta, warnings)
        ),
    ]
    inference = _inference_service(service, k8s, route, releases, resolve_model, meta, warnings)
    if inference is not None:
        manifests.append(Manifest("inferenceservice.yaml", inference))
    return Rendered(manifests, warnings)


def _rollout(
    service: str, spec: Service, k8s: KubernetesSpec, release: str, image: str, meta: Any
) -> dict[str, Any]:
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
                            "image": image,
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
                    "steps": verdict_steps(service, spec, release),
                }
            },
        },
    }


def _rule_headers(
    rule: tuple[str, str, str | list[str]], headers: dict[str, str]
) -> list[dict[str, str]] | None:
    """Header matches any one of which satisfies ``rule``; None if no header carries it."""
    attribute, op, value = rule
    header = headers.get(attribute)
    if header is None:
        return None
    if op == "equals" and isinstance(value, str):
        return [{"type": "Exact", "name": header, "value": value}]
    if op == "in" and not isinstance(value, str):
        return [{"type": "Exact", "name": header, "value": v} for v in sorted(value)]
    if op == "ends_with" and isinstance(value, str):
        return [{"type": "RegularExpression", "name": header, "value": f".*{re.escape(value)}$"}]
    if op == "matches" and isinstance(value, str):
        return [{"type": "RegularExpression", "name": header, "value": value}]
    return None


def _group_matches(group: GroupDef, unit_header: str, headers: dict[str, str]) -> list[Any] | None:
    """HTTPRoute matches for a group's rules (its allow list aside); None if inexpressible."""
    if not group.rules:
        return []
    per_rule = [_rule_headers(rule, headers) for rule in group.rules]
    if any(h is None for h in per_rule):
        return None
    if group.rules_match == "any":
        return [{"headers": [h]} for hs in per_rule if hs for h in hs]
    # all: one match ANDs its headers; a rule with several alternatives cannot be ANDed.
    if any(hs is not None and len(hs) != 1 for hs in per_rule):
        return None
    return [{"headers": [hs[0] for hs in per_rule if hs]}]


def _http_route(
    service: str,
    spec: Service,
    gateway: str,
    route: ServiceRoute | None,
    meta: Any,
    warnings: list[RenderWarning],
) -> dict[str, Any]:
    canary_weight = _cohort(route).threshold  # WEIGHT_SCALE buckets: the router's own cut
    deploy = spec.deploy
    unit_header = deploy.unit_header if deploy is not None else "X-User-Id"
    attribute_headers = dict(deploy.attribute_headers) if deploy is not None else {}

    def backend(role: str, weight: int) -> dict[str, Any]:
        return {"name": _name(service, f"-{role}"), "port": 80, "weight": weight}

    rules: list[dict[str, Any]] = []
    if route is not None and route.candidate is not None:
        matches: list[Any] = []
        allow: set[str] = set()
        for g in route.groups:
            group = route.group_defs.get(g, GroupDef())
            allow.update(group.allow)
            by_rules = _group_matches(group, unit_header, attribute_headers)
            if by_rules is None:
                warnings.append(
                    RenderWarning(
                        f"services.{service}.deploy.attribute_headers",
                        f"group {g!r} is left out of the HTTPRoute: its rules test attributes "
                        "no request header carries (or combine alternatives)",
                        "map each attribute it tests to a header in deploy.attribute_headers, "
                        "or put releaser serve in front, which evaluates every rule",
                    )
                )
            else:
                matches.extend(by_rules)
        matches.extend(
            {"headers": [{"type": "Exact", "name": unit_header, "value": unit}]}
            for unit in sorted(allow)
        )
        if len(matches) > MAX_MATCHES:
            warnings.append(
                RenderWarning(
                    f"services.{service}.groups",
                    f"{len(matches) - MAX_MATCHES} of {len(matches)} group matches are left "
                    f"out of the HTTPRoute (Gateway API allows {MAX_MATCHES} per rule)",
                    "use fewer allow-listed units or rules, or put releaser serve in front",
                )
            )
        if matches:
            rules.append({"matches": matches[:MAX_MATCHES], "backendRefs": [backend("canary", 1)]})
    rules.append(
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                backend("stable", WEIGHT_SCALE - canary_weight),
                backend("canary", canary_weight),
            ],
        }
    )
    k8s = deploy.kubernetes if deploy is not None else None
    route_spec: dict[str, Any] = {"parentRefs": [{"name": gateway}], "rules": rules}
    if k8s is not None and k8s.hostnames:
        route_spec["hostnames"] = list(k8s.hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta(_name(service)),
        "spec": route_spec,
    }


def _inference_service(
    service: str,
    k8s: KubernetesSpec,
    route: ServiceRoute | None,
    releases: dict[str, Release],
    resolve_model: ResolveModel | None,
    meta: Any,
    warnings: list[RenderWarning],
) -> dict[str, Any] | None:
    candidate = route.candidate if route is not None else None
    stable = route.stable if route is not None else None
    serving = candidate or stable
    storage = (
        storage_uri(service, k8s, serving, releases.get(serving), resolve_model)
        if serving is not None
        else None
    )
    if storage is None:
        why = "no release is live yet" if serving is None else f"release {serving} pins no model"
        warnings.append(
            RenderWarning(
                f"services.{service}.deploy.kubernetes.storage_uri",
                f"no InferenceService rendered: {why}",
                "roll a release with a model out first, or set "
                f"services.{service}.deploy.kubernetes.storage_uri in releaser.yaml",
            )
        )
        return None
    predictor: dict[str, Any] = {
        "model": {"modelFormat": {"name": k8s.model_format}, "storageUri": storage}
    }
    if candidate is not None:
        predictor["canaryTrafficPercent"] = round(_cohort(route).percent)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta(_name(service)),
        "spec": {"predictor": predictor},
    }


def render_service(ws: Workspace, service: str, *, strict: bool = False) -> Rendered:
    """The manifests of a workspace's service at the route the store holds now.

    With ``strict``, ConfigError (exit 2) naming every setting render would fill with a
    default and every group it would leave out, and how to set each.
    """
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
    rendered = render_manifests(service, spec, route, releases, resolve_model=mlflow_resolver(ws))
    if strict and rendered.warnings:
        raise ConfigError(
            [
                ConfigProblem(
                    "releaser.yaml", None, w.setting, "k8s render --strict: " + w.message, w.hint
                )
                for w in rendered.warnings
            ],
            hint="set each of these in releaser.yaml, or render without --strict",
        )
    return rendered


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
