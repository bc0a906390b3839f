"""The config models on their own: defaults, short forms and every cross-field rule."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from releaser.config import (
    AttributeRule,
    Config,
    LlmEndpoint,
    RolloutPlan,
    ScorerSpec,
    Service,
    UserGroup,
    WorkspaceSettings,
    default_rollout_plan,
)
from releaser.config._common import _Model
from releaser.config.deploy import DeploySpec
from releaser.core.routing import GroupDef
from releaser.errors import NotFound


def service_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": {"name": "case-triage", "alias": "champion"},
        "slos": {"error_rate": 0.01},
    }
    data.update(overrides)
    return data


def config_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project": "casework",
        "owners": [{"name": "Priya", "email": "priya@example.org", "role": "service-owner"}],
        "services": {"case-triage": service_data()},
    }
    data.update(overrides)
    return data


def messages(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


def test_minimal_config_gets_safe_defaults() -> None:
    cfg = Config.model_validate(config_data())
    svc = cfg.service("case-triage")
    assert cfg.version == 1
    assert cfg.prompts.backend == "mlflow" and cfg.prompts.path == "prompts"
    assert svc.rollout == default_rollout_plan()
    assert [s.name for s in svc.rollout.steps] == ["internal", "canary-5", "canary-25", "full"]
    assert [s.percent for s in svc.rollout.steps] == [1, 5, 25, 100]
    assert svc.rollout.comparisons == ["error_rate", "latency", "quality_score"]
    assert svc.irreversible is False
    assert svc.phases.criteria("production").approvals == []


def test_models_are_frozen() -> None:
    cfg = Config.model_validate(config_data())
    with pytest.raises(ValidationError):
        cfg.project = "other"  # type: ignore[misc]


def test_unknown_service_lists_the_known_ones() -> None:
    cfg = Config.model_validate(config_data())
    with pytest.raises(NotFound) as exc:
        cfg.service("case-triag")
    assert "case-triag" in exc.value.message
    assert exc.value.hint is not None
    assert "did you mean 'case-triage'?" in exc.value.hint
    assert "known services: case-triage" in exc.value.hint


def test_prompts_and_scorers_accept_the_short_form() -> None:
    svc = Service.model_validate(
        service_data(
            prompts=["system", {"name": "user", "alias": "staging"}],
            datasets=[{"path": "./data/golden.csv", "role": "golden"}],
            eval={
                "dataset": "data/golden.csv",
                "predict": "models:/case-triage@champion",
                "input_columns": ["text"],
                "label_column": "queue",
                "scorers": ["accuracy", {"name": "custom", "function": "pkg.scoring:politeness"}],
                "thresholds": {"accuracy": 0.8, "politeness": 0.5},
            },
        )
    )
    assert [(p.name, p.alias) for p in svc.prompts] == [
        ("system", "production"),
        ("user", "staging"),
    ]
    assert svc.datasets[0].path == "data/golden.csv"  # normalised
    assert svc.eval is not None
    assert [s.metric for s in svc.eval.scorers] == ["accuracy", "politeness"]
    assert svc.golden_dataset() == svc.datasets[0]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"name": "m", "alias": "champion", "version": 3}, "not both"),
        ({"name": "m"}, "give 'alias' or 'version'"),
        ({"name": "m", "version": 0}, "greater than or equal to 1"),
    ],
)
def test_model_needs_exactly_one_of_alias_and_version(model: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(service_data(model=model))
    assert expected in messages(exc)


def test_service_needs_a_model_or_prompts() -> None:
    with pytest.raises(ValidationError) as exc:
        Service.model_validate({"slos": {"error_rate": 0.01}})
    assert "neither a model nor prompts" in messages(exc)


def test_slos_need_at_least_one_objective_within_bounds() -> None:
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(service_data(slos={}))
    assert "at least one objective" in messages(exc)
    for bad in (
        {"availability": 0},
        {"error_rate": 1.5},
        {"latency_p95_ms": 0},
        {"quality_score": -0.1},
    ):
        with pytest.raises(ValidationError):
            Service.model_validate(service_data(slos=bad))
    ok = Service.model_validate(service_data(slos={"availability": 1, "quality_score": 0}))
    assert ok.slos.availability == 1


def test_eval_dataset_must_be_one_of_the_service_datasets() -> None:
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(
            service_data(
                datasets=[{"path": "data/golden.csv", "role": "golden"}],
                eval={
                    "dataset": "data/golden.cvs",
                    "predict": "pkg.model:predict",
                    "input_columns": ["text"],
                    "label_column": "queue",
                    "scorers": ["accuracy"],
                },
            )
        )
    text = messages(exc)
    assert "eval.dataset" in text and "'data/golden.cvs' is not one of" in text


def _eval(**overrides: Any) -> dict[str, Any]:
    suite: dict[str, Any] = {
        "dataset": "d.csv",
        "predict": "pkg.model:predict",
        "input_columns": ["text"],
        "label_column": "queue",
        "scorers": ["accuracy"],
    }
    suite.update(overrides)
    return service_data(datasets=[{"path": "d.csv"}], eval=suite)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"thresholds": {"acuracy": 0.8}}, "no scorer reports the metric 'acuracy'"),
        ({"non_regression": {"metric": "f1"}}, "no scorer reports the metric 'f1'"),
        ({"input_columns": ["text", "queue"]}, "also an input column"),
        ({"scorers": ["accuracy", "accuracy"]}, "two scorers report the metric 'accuracy'"),
        ({"scorers": ["regex"]}, "the regex scorer needs 'pattern'"),
        ({"scorers": [{"name": "accuracy", "pattern": "x"}]}, "only applies to the regex scorer"),
        ({"scorers": [{"name": "regex", "pattern": "("}]}, "not a valid regular expression"),
        ({"scorers": [{"name": "custom", "function": "not a ref"}]}, "String should match"),
        ({"predict": "predict.py"}, "String should match"),
        ({"scorers": [42]}, "expected a name, got 42"),
        ({"max_consecutive_errors": 0}, "greater than or equal to 1"),
        ({"predict_timeout": 0}, "greater than 0"),
    ],
)
def test_eval_suite_rules(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(_eval(**overrides))
    assert expected in messages(exc)


def test_predicting_stops_after_20_errors_in_a_row_unless_told_otherwise() -> None:
    default = Service.model_validate(_eval())
    assert default.eval is not None and default.eval.max_consecutive_errors == 20
    every_row = Service.model_validate(_eval(max_consecutive_errors=None))
    assert every_row.eval is not None and every_row.eval.max_consecutive_errors is None


def test_numeric_tolerance_scorer_takes_a_tolerance() -> None:
    scorer = ScorerSpec.model_validate({"name": "numeric_tolerance", "tolerance": 0.5})
    assert scorer.metric == "numeric_tolerance"


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.csv", "data/../../x.csv", "C:\\x.csv"])
def test_dataset_paths_stay_inside_the_repo(path: str) -> None:
    with pytest.raises(ValidationError):
        Service.model_validate(service_data(datasets=[{"path": path}]))


def test_eval_gate_needs_an_eval_suite() -> None:
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(service_data(phases={"production": {"eval_gate": True}}))
    assert "phases.production.eval_gate" in messages(exc)


def test_phase_checklist_ids_and_approval_roles_are_unique() -> None:
    phase = {
        "approvals": [{"role": "ops-lead"}, {"role": "ops-lead"}],
        "checklist": [{"id": "dpia", "description": "a"}, {"id": "dpia", "description": "b"}],
    }
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(service_data(phases={"operations": phase}))
    text = messages(exc)
    assert "checklist id 'dpia' is used twice" in text and "'ops-lead' is listed twice" in text


def _plan(*steps: tuple[str, float], groups: list[str] | None = None) -> dict[str, Any]:
    return {"steps": [{"name": n, "percent": p, "groups": groups or []} for n, p in steps]}


def test_rollout_percentages_must_not_decrease_and_end_at_100() -> None:
    with pytest.raises(ValidationError) as exc:
        RolloutPlan.model_validate(_plan(("a", 10), ("b", 5), ("c", 50)))
    text = messages(exc)
    assert "step 'b' goes down to 5% after 'a' at 10%" in text
    assert "the last step 'c' is at 50%, not 100%" in text
    RolloutPlan.model_validate(_plan(("a", 10), ("b", 10), ("c", 100)))  # equal is fine


def test_rollout_step_names_are_unique_and_every_step_reaches_someone() -> None:
    with pytest.raises(ValidationError) as exc:
        RolloutPlan.model_validate(_plan(("a", 0), ("a", 100)))
    text = messages(exc)
    assert "'a' is used twice" in text and "step 'a' reaches nobody" in text
    with pytest.raises(ValidationError):
        RolloutPlan.model_validate({"steps": []})
    with pytest.raises(ValidationError):
        RolloutPlan.model_validate({**_plan(("a", 100)), "alpha": 0.5})


def test_steps_may_only_name_defined_groups() -> None:
    groups = {"staff": {"rules": [{"attribute": "email", "ends_with": "@example.org"}]}}
    plan = _plan(("internal", 0), ("full", 100), groups=["stafff"])
    data = config_data(groups=groups, services={"s": service_data(rollout=plan)})
    with pytest.raises(ValidationError) as exc:
        Config.model_validate(data)
    text = messages(exc)
    assert "unknown group 'stafff'" in text
    plan = _plan(("internal", 0), ("full", 100), groups=["staff"])
    cfg = Config.model_validate(
        config_data(groups=groups, services={"s": service_data(rollout=plan)})
    )
    assert cfg.services["s"].rollout.steps[0].groups == ["staff"]


@pytest.mark.parametrize(
    "rule",
    [
        {"attribute": "email"},
        {"attribute": "email", "equals": "a", "ends_with": "b"},
        {"attribute": "email", "matches": "("},
        {"attribute": "email", "in": []},
    ],
)
def test_attribute_rule_needs_exactly_one_valid_operator(rule: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AttributeRule.model_validate(rule)


def test_group_membership() -> None:
    group = UserGroup.model_validate(
        {
            "allow": ["u-1"],
            "rules": [
                {"attribute": "email", "ends_with": "@example.org"},
                {"attribute": "council", "in": ["c-1", "c-2"]},
            ],
        }
    )
    # What routers evaluate: the route's group definition, compiled by the core.
    rule_set = GroupDef(allow=list(group.allow), rules=group.rule_triples()).compile()
    assert rule_set.contains("u-1", {})
    assert rule_set.contains("u-2", {"email": "a@example.org", "council": "c-2"})
    assert not rule_set.contains("u-2", {"email": "a@example.org", "council": "c-3"})
    assert not rule_set.contains("u-2", {"council": "c-1"})
    assert group.rule_triples() == [
        ("email", "ends_with", "@example.org"),
        ("council", "in", ["c-1", "c-2"]),
    ]
    rule = AttributeRule.model_validate({"attribute": "team", "matches": "^ops-"})
    assert rule.operator() == ("matches", "^ops-")
    ops = GroupDef(rules=UserGroup(rules=[rule]).rule_triples()).compile()
    assert ops.contains("x", {"team": "ops-night"}) and not ops.contains("x", {"team": "dev-ops-x"})
    assert AttributeRule(attribute="t", in_=["a"]).in_ == ["a"]
    with pytest.raises(ValidationError):
        UserGroup.model_validate({"description": "nobody"})


def test_escalation_is_ordered_by_level() -> None:
    contacts = [
        {"level": 2, "name": "lead", "contact": "lead@example.org"},
        {"level": 1, "name": "on-call", "contact": "#oncall", "hours": "24x7"},
    ]
    cfg = Config.model_validate(config_data(escalation=contacts))
    assert [c.name for c in cfg.escalation] == ["on-call", "lead"]
    assert cfg.escalation[1].hours == "business"


def test_owners_are_required_and_emails_checked() -> None:
    with pytest.raises(ValidationError):
        Config.model_validate(config_data(owners=[]))
    with pytest.raises(ValidationError):
        Config.model_validate(
            config_data(owners=[{"name": "P", "email": "priya at example", "role": "x"}])
        )


def test_store_url_with_a_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as exc:
        Config.model_validate(config_data(store="postgresql://bob:s3cret-pw@db/releases"))
    assert "contains a password" in messages(exc)
    assert "s3cret" not in messages(exc)
    ok = Config.model_validate(config_data(store="postgresql://bob@db/releases"))
    assert ok.store == "postgresql://bob@db/releases"


def test_service_names_are_slugs() -> None:
    with pytest.raises(ValidationError):
        Config.model_validate(config_data(services={"Case_Triage": service_data()}))
    with pytest.raises(ValidationError):
        Config.model_validate(config_data(services={}))


def _config_models() -> list[type[BaseModel]]:
    """Every model of releaser.yaml: the subclasses of the shared base, however deep."""
    import releaser.config.models  # noqa: F401 - defines the service and deploy models

    found: list[type[BaseModel]] = []
    todo: list[type[BaseModel]] = [_Model]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_config_model_refuses_infinity_and_nan() -> None:
    models = _config_models()
    assert {Config, Service, RolloutPlan, DeploySpec, WorkspaceSettings} <= set(models)
    assert [m.__name__ for m in models if m.model_config.get("allow_inf_nan") is not False] == []


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda v: RolloutPlan.model_validate(_plan(("a", 100)) | {"alpha": v}), "alpha"),
        (
            lambda v: Service.model_validate(service_data(slos={"latency_p95_ms": v})),
            "latency_p95_ms",
        ),
        (lambda v: Service.model_validate(_eval(thresholds={"accuracy": v})), "accuracy"),
        (lambda v: DeploySpec.model_validate({"target": "docker", "timeout_s": v}), "timeout_s"),
    ],
)
def test_floats_must_be_finite(build: Any, field: str, value: float) -> None:
    with pytest.raises(ValidationError) as exc:
        build(value)
    assert field in messages(exc) and "finite number" in messages(exc)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"bootstrap_samples": 10**7}, "less than or equal to 1000000"),
        ({"seed": -1}, "greater than or equal to 0"),
        ({"seed": 2**64}, "less than or equal to 18446744073709551615"),
    ],
)
def test_bootstrap_settings_are_bounded(overrides: dict[str, Any], expected: str) -> None:
    nr = {"metric": "accuracy", **overrides}
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(_eval(non_regression=nr))
    assert expected in messages(exc)


def test_counts_and_durations_are_bounded() -> None:
    for step in ({"min_samples": 10**12 + 1}, {"bake_minutes": 525_601}):
        with pytest.raises(ValidationError):
            RolloutPlan.model_validate({"steps": [{"name": "a", "percent": 100, **step}]})
    with pytest.raises(ValidationError, match="less than or equal to 86400"):
        Service.model_validate(_eval(predict_timeout=86_401))
    RolloutPlan.model_validate(
        {"steps": [{"name": "a", "percent": 100, "min_samples": 10**12, "bake_minutes": 525_600}]}
    )


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ({"name": "../../etc/passwd"}, "contains a path separator"),
        ({"name": "a\x00b"}, "contains a control character (U+0000)"),
        ({"name": "p", "alias": "../x"}, "alias '../x' is not valid"),
        ({"name": "p", "alias": "production\n"}, "is not valid"),
        ({"name": "p", "alias": "latest"}, "is reserved"),
    ],
)
def test_prompt_names_and_aliases_follow_the_registry_rules(
    prompt: dict[str, str], words: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(service_data(prompts=[prompt]))
    assert words in messages(exc)
    svc = Service.model_validate(service_data(prompts=["case-triage.system_v2", "x"]))
    assert [p.alias for p in svc.prompts] == ["production", "production"]


@pytest.mark.parametrize("path", ["../elsewhere", "/srv/prompts", "a/../../b", "C:\\prompts"])
def test_the_prompt_folder_stays_inside_the_repo(path: str) -> None:
    with pytest.raises(ValidationError):
        Config.model_validate(config_data(prompts={"backend": "file", "path": path}))
    with pytest.raises(ValidationError):
        WorkspaceSettings.model_validate({"prompts": {"backend": "file", "path": path}})
    ok = Config.model_validate(config_data(prompts={"backend": "file", "path": "a/../b/"}))
    assert ok.prompts.path == "b"


def test_a_shadow_step_comes_first_serves_nobody_and_names_a_comparison() -> None:
    shadow = {"name": "shadow", "percent": 0, "shadow": {"percent": 20, "path": "label"}}
    plan = RolloutPlan.model_validate({"steps": [shadow, {"name": "full", "percent": 100}]})
    first = plan.steps[0].shadow
    assert first is not None and (first.percent, first.compare, first.min_agreement) == (
        20.0,
        "json",
        0.95,
    )
    assert first.methods == ["GET", "POST"]
    late = {
        "steps": [
            {"name": "a", "percent": 5},
            {**shadow, "percent": 10},
            _plan(("f", 100))["steps"][0],
        ]
    }
    with pytest.raises(ValidationError) as exc:
        RolloutPlan.model_validate(late)
    text = messages(exc)
    assert "step 'shadow' is a shadow step but not the first" in text
    assert "the shadow step 'shadow' would serve users" in text
    with pytest.raises(ValidationError) as exc:
        RolloutPlan.model_validate(
            {"steps": [{**shadow, "groups": ["staff"]}, {"name": "f", "percent": 100}]}
        )
    assert "would serve users" in messages(exc)
    for bad in (
        {"compare": "fuzzy"},
        {"percent": 0},
        {"min_agreement": 1.5},
        {"methods": ["BREW"]},
        {"path": "a..b"},
        {"max_in_flight": 0},
    ):
        with pytest.raises(ValidationError):
            RolloutPlan.model_validate(
                {"steps": [{**shadow, "shadow": bad}, {"name": "f", "percent": 100}]}
            )
    ok = {"compare": "mypkg.compare:same_answer", "min_agreement": 1}
    RolloutPlan.model_validate({"steps": [{**shadow, "shadow": ok}, {"name": "f", "percent": 100}]})


def _llm_service(predict: dict[str, Any], **eval_extra: Any) -> dict[str, Any]:
    return service_data(
        model=None,
        prompts=["reply-draft"],
        datasets=[{"path": "data/golden.csv", "role": "golden"}],
        eval={
            "dataset": "data/golden.csv",
            "predict": {"llm": predict},
            "input_columns": ["message"],
            "label_column": "expected",
            "scorers": ["contains"],
            **eval_extra,
        },
    )


ENDPOINT = {"base_url": "http://127.0.0.1:8011/v1", "model": "stub-chat-1"}


def test_an_llm_endpoint_predicts_with_the_services_prompt_and_budgets_need_it() -> None:
    svc = Service.model_validate(
        _llm_service(
            {
                **ENDPOINT,
                "api_key_env": "LLM_API_KEY",
                "prices": {"input_per_1k": 0.1, "output_per_1k": 0.2},
            },
            budgets={"mean_tokens": 400, "cost_per_1k_requests": 0.5},
            scorers=[
                "contains",
                "json_valid",
                {"name": "json_schema", "schema_file": "schemas/reply.json"},
                {"name": "judge", "prompt": "reply-judge", "scale": [1, 5]},
            ],
        )
    )
    assert svc.eval is not None and svc.eval.llm is not None and svc.eval.predict_ref is None
    assert svc.eval.llm.model == "stub-chat-1" and svc.eval.llm.samples == 1
    assert [s.metric for s in svc.eval.scorers] == [
        "contains",
        "json_valid",
        "json_schema",
        "judge",
    ]
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(_llm_service({**ENDPOINT, "prompt": "reply-drafts"}))
    text = messages(exc)
    assert "'reply-drafts' is not one of the service's prompts" in text
    with pytest.raises(ValidationError, match="a cost budget needs the endpoint's prices"):
        Service.model_validate(_llm_service(ENDPOINT, budgets={"cost_per_1k_requests": 1}))
    for bad in (
        {**ENDPOINT, "api_key_env": "sk-live-1234 secret"},  # a key, not a variable's name
        {**ENDPOINT, "base_url": "ftp://x"},
        {**ENDPOINT, "samples": 0},
        {**ENDPOINT, "concurrency": 1000},
    ):
        with pytest.raises(ValidationError):
            Service.model_validate(_llm_service(bad))


def test_judge_options_belong_to_the_judge_and_need_an_endpoint() -> None:
    plain = service_data(
        datasets=[{"path": "g.csv", "role": "golden"}],
        eval={
            "dataset": "g.csv",
            "predict": "models:/case-triage@champion",
            "input_columns": ["text"],
            "label_column": "queue",
            "scorers": [
                {"name": "judge", "prompt": "grader"},
            ],
            "budgets": {"mean_tokens": 10, "p95_latency_ms": 200},
        },
    )
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(plain)
    text = messages(exc)
    assert "the judge needs an endpoint" in text
    assert "'mean_tokens' needs predictions from {llm: ...}" in text
    with pytest.raises(ValidationError, match="'scale' only applies to the judge scorer"):
        ScorerSpec.model_validate({"name": "contains", "scale": [1, 5]})
    for bad in ({"scale": [5, 1]}, {"labels": {"good": 2}}, {"alias": "a", "version": 2}):
        with pytest.raises(ValidationError):
            ScorerSpec.model_validate({"name": "judge", "prompt": "grader", **bad})
    with pytest.raises(ValidationError, match="the judge scorer needs 'prompt'"):
        ScorerSpec.model_validate({"name": "judge"})


def test_an_llm_base_url_with_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="the base URL holds credentials"):
        LlmEndpoint(base_url="https://user:sk-live-123@llm.example.org/v1", model="m")
