"""The commented example ``releaser.yaml`` that ``releaser init`` writes."""

from __future__ import annotations

import re

from releaser.config._common import SLUG_PATTERN
from releaser.errors import BadInput

__all__ = ["EXAMPLE_PROJECT", "EXAMPLE_SERVICE", "INIT_TEMPLATE", "render_init_template"]

EXAMPLE_PROJECT = "council-casework"
EXAMPLE_SERVICE = "case-triage"

INIT_TEMPLATE = """\
# releaser.yaml: how this repository's AI services are released.
# Check it with 'releaser validate'; 'releaser schema' prints a JSON Schema for editors.

# Format version of this file.
version: 1
# Project name: lowercase letters, digits and '-'.
project: council-casework

# Who is accountable; phase approvals below name these roles.
owners:
  - name: Priya Shah
    email: priya.shah@example.org
    role: service-owner
    team: Digital Services
  - name: Tom Okafor
    email: tom.okafor@example.org
    role: ml-lead
    team: Data Science
  - name: Sam Reid
    email: sam.reid@example.org
    role: ops-lead
    team: IT Operations
  - name: Alex Morgan
    email: dpo@example.org
    role: data-protection

# Who to call when a release goes wrong, level 1 first; runbooks list them.
escalation:
  - level: 1
    name: Service desk on-call
    contact: "#case-triage-oncall"
    hours: 24x7
  - level: 2
    name: Tom Okafor
    contact: tom.okafor@example.org
    hours: business

# Named user groups that rollout steps reach before any percentage of everyone else.
groups:
  # Council staff, recognised by the domain of their email attribute.
  staff:
    description: Council staff, by work email
    rules:
      - attribute: email
        ends_with: "@example.org"
  # Unit ids (here: council ids) always in the group.
  pilot-councils:
    description: Councils that volunteered for the pilot
    allow:
      - council-017
      - council-042

# MLflow tracking server and registry; without this, a local sqlite store is used.
# mlflow:
#   tracking_uri: https://mlflow.example.org
#   registry_uri: https://mlflow.example.org
#   artifact_location: s3://example-mlflow-artifacts

# Where prompt templates are versioned: the MLflow prompt registry, or YAML files.
prompts:
  backend: mlflow
  path: prompts

# State store: sqlite by default (.releaser/state.db). A path is read from this file's
# folder (or give sqlite:///absolute/path/state.db); its folder must exist. For a shared
# postgresql:// store, set RELEASER_STORE in the environment (a CI secret): never write
# a password here.
# store: .releaser/state.db

# GitHub mirrors (optional; active in GitHub Actions when GITHUB_TOKEN and
# GITHUB_REPOSITORY are set): deployment statuses that follow every rollout step,
# a commit status or check run per gate, one PR comment per service, and a GitHub
# Release with the handover pack once a release reaches production.
# github:
#   environment: production
#   deployments: true
#   gate_status: check_run     # or status
#   pr_comments: true
#   release_on_production: true

# The services this repository releases, by name.
services:
  case-triage:
    description: Routes council casework (emails, web forms) to the team that handles it
    # The registered model served: by alias (follows the registry) or a pinned version.
    model:
      name: case-triage
      alias: champion
    # Prompts, by name (alias production), or as {name: ..., alias: ...}.
    prompts:
      - case-triage-system
    # DVC-tracked datasets; role golden marks the set the gate evaluates on.
    datasets:
      - path: data/golden.csv
        role: golden
    # The evaluation the gate runs on the golden set, against thresholds and the baseline.
    eval:
      dataset: data/golden.csv
      predict: models:/case-triage@champion
      input_columns: [text]
      label_column: queue
      slices: [channel, user_group]
      scorers:
        - accuracy
      thresholds:
        accuracy: 0.8
      non_regression:
        metric: accuracy
        max_drop: 0.02
        confidence: 0.95
      slice_max_drop: 0.05
    # Service level objectives; a rollout step that breaks them stops.
    slos:
      latency_p95_ms: 800
      availability: 0.995
      error_rate: 0.01
    # Rollout steps: named groups first, then a percentage of everyone else, up to 100.
    rollout:
      alpha: 0.01
      guardrails:
        error_rate: 0.02
        latency_p95_ms: 1500
      steps:
        - name: internal
          groups: [staff]
          percent: 0
          bake_minutes: 60
          min_samples: 100
        - name: canary-5
          groups: [pilot-councils]
          percent: 5
          bake_minutes: 120
          min_samples: 300
        - name: canary-25
          percent: 25
          bake_minutes: 240
          min_samples: 1000
        - name: full
          percent: 100
          bake_minutes: 60
    # Entry criteria per phase: poc -> pilot -> production -> operations.
    phases:
      pilot:
        eval_gate: true
        approvals:
          - role: ml-lead
      production:
        eval_gate: true
        min_days_in_previous: 14
        approvals:
          - role: service-owner
          - role: data-protection
        checklist:
          - id: dpia
            description: Data protection impact assessment signed off
          - id: model-card
            description: Model card published (purpose, data, limits, evaluation)
          - id: runbook
            description: Runbook written and reviewed by operations
          - id: on-call
            description: On-call rota covers the service 24x7
      operations:
        min_days_in_previous: 30
        approvals:
          - role: ops-lead
        checklist:
          - id: handover
            description: Handover pack accepted by operations
    # Set to true when a release cannot be rolled back (e.g. it migrated data).
    irreversible: false
    # How HTTP traffic reaches the releases (optional): 'releaser serve' reads the unit
    # id from a header and proxies to these upstreams; target: docker runs one
    # model-server container per release instead; 'releaser k8s render' writes
    # manifests for an engine on Kubernetes.
    # deploy:
    #   target: none               # none, docker or kubernetes
    #   upstreams:
    #     releases:                # release id (or 4+ first characters) -> its endpoint
    #       38a2c1d0: http://127.0.0.1:8001
    #   unit_header: X-User-Id
"""


_EXAMPLE_DESCRIPTION = (
    "description: Routes council casework (emails, web forms) to the team that handles it"
)
_NEW_DESCRIPTION = (
    'description: "TODO: what this service does and for whom (runbooks and packs show it)"'
)


def render_init_template(project: str, service: str, *, describe: bool = True) -> str:
    """The example config with its project and service renamed.

    ``describe=False`` (what ``releaser init`` writes for a new project) leaves the
    service's description for the team to write instead of the example's.
    """
    for what, name in (("project", project), ("service", service)):
        if not re.match(SLUG_PATTERN, name):
            raise BadInput(
                f"{name!r} is not a valid {what} name",
                hint="use lowercase letters, digits and '-', starting with a letter or digit",
            )
    text = INIT_TEMPLATE.replace(f"project: {EXAMPLE_PROJECT}", f"project: {project}", 1)
    if not describe:
        text = text.replace(_EXAMPLE_DESCRIPTION, _NEW_DESCRIPTION, 1)
    # The model and prompt names follow the service name, as in the example.
    return text.replace(EXAMPLE_SERVICE, service)
