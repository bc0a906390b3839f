"""The example releaser.yaml that 'releaser init' writes: it loads and it explains itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from releaser.config import CONFIG_NAME, Config, load_config
from releaser.config.template import (
    EXAMPLE_PROJECT,
    EXAMPLE_SERVICE,
    INIT_TEMPLATE,
    render_init_template,
)
from releaser.core.routing import GroupDef
from releaser.errors import BadInput


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_template_loads_with_the_example_content(tmp_path: Path) -> None:
    cfg = load(tmp_path, INIT_TEMPLATE)
    assert cfg.project == EXAMPLE_PROJECT
    assert {o.role for o in cfg.owners} >= {
        "service-owner",
        "ml-lead",
        "ops-lead",
        "data-protection",
    }
    assert [c.level for c in cfg.escalation] == [1, 2]
    staff = GroupDef(rules=cfg.groups["staff"].rule_triples()).compile()
    assert staff.contains("anyone", {"email": "jo@example.org"})
    assert cfg.groups["pilot-councils"].allow
    assert cfg.mlflow is None  # commented out in the example
    svc = cfg.service(EXAMPLE_SERVICE)
    assert svc.model is not None and (svc.model.name, svc.model.alias) == (
        "case-triage",
        "champion",
    )
    assert [p.name for p in svc.prompts] == ["case-triage-system"]
    assert svc.eval is not None
    assert svc.eval.predict == "models:/case-triage@champion"
    assert svc.eval.slices == ["channel", "user_group"]
    assert svc.eval.thresholds == {"accuracy": 0.8}
    assert svc.eval.non_regression is not None and svc.eval.non_regression.max_drop == 0.02
    steps = svc.rollout.steps
    assert [(s.name, s.groups, s.percent) for s in steps][0] == ("internal", ["staff"], 0)
    assert [s.name for s in steps] == ["internal", "canary-5", "canary-25", "full"]
    assert steps[-1].percent == 100
    production = svc.phases.criteria("production")
    assert {c.id for c in production.checklist} == {"dpia", "model-card", "runbook", "on-call"}
    assert production.approvals and production.eval_gate
    assert svc.phases.pilot is not None and svc.phases.operations is not None


def test_every_section_has_a_comment_above_it() -> None:
    lines = INIT_TEMPLATE.splitlines()
    data = yaml.safe_load(INIT_TEMPLATE)
    service_keys = set(data["services"][EXAMPLE_SERVICE])
    for i, line in enumerate(lines):
        key = line.strip().split(":")[0]
        top = line[:1].isalpha()
        in_service = line.startswith("    ") and not line.startswith("     ")
        if top or (in_service and key in service_keys and lines[i - 1].startswith("    ")):
            above = lines[i - 1].strip()
            assert above.startswith("#"), f"no comment above line {i + 1}: {line!r}"


def test_rendered_template_uses_the_given_names(tmp_path: Path) -> None:
    text = render_init_template("housing-repairs", "repair-classifier")
    assert EXAMPLE_SERVICE not in text and EXAMPLE_PROJECT not in text
    cfg = load(tmp_path, text)
    assert cfg.project == "housing-repairs"
    svc = cfg.service("repair-classifier")
    assert svc.model is not None and svc.model.name == "repair-classifier"
    assert svc.eval is not None and svc.eval.predict == "models:/repair-classifier@champion"


def test_rendering_the_example_names_gives_the_template() -> None:
    assert render_init_template(EXAMPLE_PROJECT, EXAMPLE_SERVICE) == INIT_TEMPLATE


@pytest.mark.parametrize(("project", "service"), [("My Project", "svc"), ("proj", "Svc_1")])
def test_rendering_refuses_names_that_would_not_load(project: str, service: str) -> None:
    with pytest.raises(BadInput) as exc:
        render_init_template(project, service)
    assert exc.value.hint is not None


def test_commented_github_and_deploy_examples_are_valid_once_uncommented(tmp_path: Path) -> None:
    import re

    keys = (
        "github:|  environment|  deployments|  gate_status|  pr_comments|  release_on_production"
        "|deploy:|  target|  upstreams|    releases|      38a2c1d0|  unit_header"
    )
    text = re.sub(rf"^(\s*)# ({keys})", r"\1\2", INIT_TEMPLATE, flags=re.M)
    assert text != INIT_TEMPLATE
    (tmp_path / "releaser.yaml").write_text(text)
    cfg = load_config(tmp_path / "releaser.yaml")
    assert cfg.github is not None and cfg.github.gate_status == "check_run"
    deploy = cfg.services["case-triage"].deploy
    assert deploy is not None and deploy.upstreams is not None
