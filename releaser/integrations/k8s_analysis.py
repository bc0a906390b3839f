"""The Argo Rollouts analysis that asks releaser, not a timer, when a canary step is done.

``releaser k8s render`` writes an ``AnalysisTemplate`` named ``<service>-releaser-verdict``
and, after each plan step's ``setWeight``, an inline ``analysis`` step that uses it with the
step's index and the release rolled out as arguments. Inline rather than background
analysis: a background run has one result for the whole rollout and cannot say "this step
is done, go to the next", while an inline step blocks Argo at that weight until releaser
decides, which is what releaser's plan is (its steps end on evidence, not on time).

Two providers (``deploy.kubernetes.analysis.provider``):

- ``web`` (default): Argo POSTs ``{"step": N, "release": "<id>"}`` to ``releaser serve``'s
  ``/v1/rollouts/<service>/verdict`` (:mod:`releaser.serve.verdict`) every ``interval_s``.
  ``advance``/``promote`` succeed (``consecutiveSuccessLimit: 1``: the first one ends the
  step), ``rollback`` fails (``failureLimit: 0``: Argo aborts at once), ``hold``/``none``
  are inconclusive and Argo asks again. ``inconclusiveLimit`` is the hold budget
  (``max_hold_minutes`` / interval; by default twice the longest bake time plus an hour):
  past it the run is Inconclusive and Argo pauses the rollout for a person, as releaser
  does when there is no evidence. ``consecutiveErrorLimit: 10`` lets the gateway restart
  (ten intervals) without aborting the rollout.
- ``job``: a Kubernetes Job in the releaser image runs ``releaser rollout advance --if-live
  --json SERVICE`` every ``interval_s`` until the decision is not a hold: it exits 0 on
  ``advance``/``promote`` and 1 on ``rollback`` (Argo's job metric: success or failure),
  bounded by ``activeDeadlineSeconds`` (the hold budget). The store DSN comes from a Secret
  (``secretKeyRef``), never inline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from releaser.config.deploy import KubernetesSpec
    from releaser.config.service import Service

__all__ = [
    "TEMPLATE_SUFFIX",
    "RenderWarning",
    "analysis_template",
    "hold_budget_s",
    "verdict_steps",
    "verdict_url",
]

TEMPLATE_SUFFIX = "-releaser-verdict"
METRIC = "releaser-verdict"
ERROR_LIMIT = 10
WEB_TIMEOUT_S = 30  # above the gateway's own 20 s bound on a verdict
GATEWAY_PORT = 8000  # 'releaser serve --port' default


@dataclass(frozen=True)
class RenderWarning:
    """A setting render filled with a default, or something the manifests cannot express."""

    setting: str
    """The releaser.yaml key concerned, e.g. ``services.x.deploy.kubernetes.image``."""
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}"


def _name(service: str, suffix: str = "") -> str:
    base = service[: 63 - len(suffix)].rstrip("-")
    return base + suffix


def hold_budget_s(spec: Service, k8s: KubernetesSpec) -> int:
    """How long one Argo analysis step waits on holds before it pauses for a person."""
    if k8s.analysis.max_hold_minutes is not None:
        return k8s.analysis.max_hold_minutes * 60
    longest = max((s.bake_minutes for s in spec.rollout.steps), default=0)
    return int(2 * longest * 60 + 3600)


def verdict_steps(service: str, spec: Service, release: str) -> list[dict[str, Any]]:
    """Argo canary steps: each plan step's weight, then an analysis releaser's verdict ends."""
    steps: list[dict[str, Any]] = []
    for index, step in enumerate(spec.rollout.steps):
        # Argo weights are whole percents; a fraction rounds up so a 0.5% step is not 0%.
        weight = min(100, math.ceil(step.percent)) if step.percent > 0 else 0
        steps.append({"setWeight": weight})
        steps.append(
            {
                "analysis": {
                    "templates": [{"templateName": _name(service, TEMPLATE_SUFFIX)}],
                    "args": [
                        {"name": "step", "value": str(index)},
                        {"name": "release", "value": release},
                    ],
                }
            }
        )
    return steps


def verdict_url(service: str, k8s: KubernetesSpec, namespace: str) -> tuple[str, bool]:
    """The verdict endpoint's URL, and whether it is a default."""
    path = f"/v1/rollouts/{service}/verdict"
    if k8s.analysis.verdict_url is not None:
        return k8s.analysis.verdict_url + path, False
    host = f"{_name(service, '-releaser')}.{namespace}.svc.cluster.local"
    return f"http://{host}:{GATEWAY_PORT}{path}", True


def analysis_template(
    service: str,
    spec: Service,
    k8s: KubernetesSpec,
    namespace: str,
    meta: dict[str, Any],
    warnings: list[RenderWarning],
) -> dict[str, Any]:
    """The AnalysisTemplate the Rollout's analysis steps use (appends default warnings)."""
    key = f"services.{service}.deploy.kubernetes.analysis"
    interval = k8s.analysis.interval_s
    budget = hold_budget_s(spec, k8s)
    metric: dict[str, Any] = {"name": METRIC}
    if k8s.analysis.provider == "web":
        url, defaulted = verdict_url(service, k8s, namespace)
        if defaulted:
            warnings.append(
                RenderWarning(
                    f"{key}.verdict_url",
                    f"the AnalysisTemplate asks releaser serve at {url} (a default)",
                    f"set {key}.verdict_url in releaser.yaml to the gateway's in-cluster URL",
                )
            )
        metric.update(
            {
                "interval": f"{interval}s",
                # The hold budget in asks; one more bounds the run however Argo counts.
                "count": math.ceil(budget / interval) + 1,
                "consecutiveSuccessLimit": 1,
                "failureLimit": 0,
                "inconclusiveLimit": math.ceil(budget / interval),
                "consecutiveErrorLimit": ERROR_LIMIT,
                "successCondition": "result == 'advance' || result == 'promote'",
                "failureCondition": "result == 'rollback'",
                "provider": {
                    "web": {
                        "method": "POST",
                        "url": url,
                        "headers": [{"key": "Content-Type", "value": "application/json"}],
                        "body": '{"step": {{args.step}}, "release": "{{args.release}}"}',
                        "jsonPath": "{$.decision}",
                        "timeoutSeconds": WEB_TIMEOUT_S,
                    }
                },
            }
        )
    else:
        metric.update(
            {"failureLimit": 0, "provider": {"job": _job(service, k8s, budget, key, warnings)}}
        )
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": meta,
        "spec": {
            "args": [{"name": "step"}, {"name": "release"}],
            "metrics": [metric],
        },
    }


# Loops on 'rollout advance' until a decision that is not a hold; the service and interval
# come in as $1 and $2 (never spliced into the script).
_JOB_SCRIPT = """\
while true; do
  action=$(releaser rollout advance --if-live --json "$1" \\
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["decision"]["action"])') \\
    || exit 2
  case "$action" in
    advance|promote) echo "releaser: $action"; exit 0 ;;
    rollback) echo "releaser: rollback"; exit 1 ;;
  esac
  sleep "$2"
done
"""


def _job(
    service: str, k8s: KubernetesSpec, budget: int, key: str, warnings: list[RenderWarning]
) -> dict[str, Any]:
    a = k8s.analysis
    image = a.releaser_image
    if image is None:
        image = "releaser:latest"
        warnings.append(
            RenderWarning(
                f"{key}.releaser_image",
                f"the analysis Job runs image {image!r} (a default)",
                f"set {key}.releaser_image in releaser.yaml to an image holding releaser and "
                "this repository's releaser.yaml",
            )
        )
    secret = a.store_secret
    if secret is None:
        secret = _name(service, "-releaser-store")
        warnings.append(
            RenderWarning(
                f"{key}.store_secret",
                f"the analysis Job reads the store DSN from Secret {secret!r} (a default)",
                f"set {key}.store_secret in releaser.yaml to the Secret holding the DSN",
            )
        )
    container = {
        "name": "releaser",
        "image": image,
        "command": ["sh", "-c", _JOB_SCRIPT, "releaser-verdict", service, str(a.interval_s)],
        "env": [
            {
                "name": "RELEASER_STORE",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": a.store_secret_key}},
            }
        ],
    }
    return {
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": budget,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        }
    }
