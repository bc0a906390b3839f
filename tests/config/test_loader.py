"""Loading releaser.yaml from disk: every problem at once, each with its line and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from releaser.config import (
    CONFIG_NAME,
    Config,
    config_hash,
    config_json_schema,
    find_config,
    load_config,
    load_settings,
    peek_service,
)
from releaser.config.settings import sqlite_store_file
from releaser.config.template import INIT_TEMPLATE, render_init_template
from releaser.core.canonical import content_hash
from releaser.errors import ConfigError, ConfigProblem, WorkspaceError

MINIMAL = """\
version: 1
project: casework
owners:
  - name: Priya Shah
    email: priya@example.org
    role: service-owner
services:
  case-triage:
    model:
      name: case-triage
      alias: champion
    slos:
      error_rate: 0.01
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based number of the line holding the ``nth`` occurrence of ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} not found {nth} times"
    return hits[nth - 1]


def problems_of(tmp_path: Path, text: str) -> list[ConfigProblem]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert all(p.file == str(path) for p in exc.value.problems)
    return exc.value.problems


def only(problems: list[ConfigProblem]) -> ConfigProblem:
    assert len(problems) == 1, [p.render() for p in problems]
    return problems[0]


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_a_valid_file_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert isinstance(cfg, Config)
    assert cfg.service("case-triage").model is not None


def test_the_init_template_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, INIT_TEMPLATE))
    assert list(cfg.services) == ["case-triage"]


def test_misspelt_key_names_key_line_and_suggestion(tmp_path: Path) -> None:
    text = edit(INIT_TEMPLATE, "    slos:\n", "    slo:\n")
    problem = only(problems_of(tmp_path, text))  # no extra "missing 'slos'" problem
    assert problem.line == line_of(text, "    slo:")
    assert problem.path == "services.case-triage.slo"
    assert problem.message == "unknown key 'slo'"
    assert problem.hint == "did you mean 'slos'?"
    assert f"{CONFIG_NAME}:{problem.line}" in problem.render()


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    text = edit(MINIMAL, "      error_rate: 0.01\n", "      error_rate: 0.01\n      zzz: 1\n")
    problem = only(problems_of(tmp_path, text))
    assert problem.line == line_of(text, "zzz:")
    assert problem.hint is not None and "allowed keys here:" in problem.hint
    assert "latency_p95_ms" in problem.hint and "quality_score" in problem.hint


def test_unknown_key_suggestion_uses_aliases(tmp_path: Path) -> None:
    text = MINIMAL + "groups:\n  staff:\n    rules:\n      - attribute: team\n        inn: [a]\n"
    problems = problems_of(tmp_path, text)
    unknown = next(p for p in problems if p.message == "unknown key 'inn'")
    assert unknown.line == line_of(text, "inn:")
    assert unknown.hint == "did you mean 'in'?"


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = INIT_TEMPLATE
    text = edit(text, "    email: sam.reid@example.org", "    email: sam.reid")
    text = edit(text, "  - level: 2", "  - level: two")
    text = edit(text, "      availability: 0.995", "      availability: 1.5")
    text = edit(text, "        role: golden", "        role: gold")
    text = edit(text, "    irreversible: false", "    irreversable: false")
    problems = problems_of(tmp_path, text)
    got = [(p.line, p.path) for p in problems]
    assert got == [
        (line_of(text, "email: sam.reid"), "owners[2].email"),
        (line_of(text, "level: two"), "escalation[1].level"),
        (line_of(text, "role: gold"), "services.case-triage.datasets[0].role"),
        (line_of(text, "availability: 1.5"), "services.case-triage.slos.availability"),
        (line_of(text, "irreversable:"), "services.case-triage.irreversable"),
    ]
    by_path = {p.path: p for p in problems}
    assert by_path["owners[2].email"].message == "'sam.reid' is not an email address"
    assert "(got 'two')" in by_path["escalation[1].level"].message
    assert by_path["services.case-triage.datasets[0].role"].hint == "did you mean 'golden'?"
    assert (
        "less than or equal to 1 (got 1.5)"
        in by_path["services.case-triage.slos.availability"].message
    )
    assert by_path["services.case-triage.irreversable"].hint == "did you mean 'irreversible'?"


def test_wrong_types_point_at_the_value_line(tmp_path: Path) -> None:
    text = edit(MINIMAL, "      alias: champion", "      alias: [champion]")
    text = edit(text, "      error_rate: 0.01", "      error_rate:\n        high: 1")
    problems = problems_of(tmp_path, text)
    assert [(p.path, p.line) for p in problems] == [
        ("services.case-triage.model.alias", line_of(text, "alias: [champion]")),
        ("services.case-triage.slos.error_rate", line_of(text, "error_rate:")),
    ]
    assert problems[0].message == "Input should be a valid string (got a list)"
    assert problems[1].message.endswith("(got a mapping)")


def test_a_key_left_empty(tmp_path: Path) -> None:
    text = MINIMAL + "escalation:\n"
    problem = only(problems_of(tmp_path, text))
    assert (problem.path, problem.line) == ("escalation", line_of(text, "escalation:"))
    assert problem.message == "Input should be a valid list (got None)"
    assert problem.hint is not None and "no value" in problem.hint


def test_quoted_values_hint_for_yaml_booleans(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "groups:\n  staff:\n    rules:\n      - attribute: is_staff\n        equals: yes\n"
    )
    problem = only(problems_of(tmp_path, text))
    assert problem.line == line_of(text, "equals: yes")
    assert "(got True)" in problem.message
    assert problem.hint is not None and "quotes" in problem.hint


def test_long_values_are_shortened(tmp_path: Path) -> None:
    text = edit(MINIMAL, "project: casework", "project: " + "Casework" * 20)
    problem = only(problems_of(tmp_path, text))
    assert problem.path == "project" and problem.line == 2
    value = problem.message.split(" is not a valid name")[0]
    assert len(value) == 40 and value.endswith("...")


def test_missing_keys_point_at_the_parent_key(tmp_path: Path) -> None:
    text = edit(MINIMAL, "    slos:\n      error_rate: 0.01\n", "")
    problem = only(problems_of(tmp_path, text))
    assert problem.path == "services.case-triage.slos"
    assert problem.message == "missing required key 'slos'"
    assert problem.line == line_of(text, "  case-triage:")


def test_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    text = "project: x\nowners:\n  - name: a\n   email: b\n"
    problem = only(problems_of(tmp_path, text))
    assert problem.line == 4
    assert "invalid YAML at column 4" in problem.message
    text = "project: x\nservices: [unclosed\n"
    problem = only(problems_of(tmp_path, text))
    assert problem.line == 2  # the end of the file, not a line past it
    assert "flow sequence that starts on line 2" in problem.message


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    text = edit(
        MINIMAL, "      alias: champion\n", "      alias: champion\n      alias: previous\n"
    )
    problem = only(problems_of(tmp_path, text))
    assert problem.line == line_of(text, "alias: previous")
    assert problem.path == "services.case-triage.model.alias"
    assert f"first given on line {line_of(text, 'alias: champion')}" in problem.message


def test_duplicate_keys_are_reported_with_other_problems(tmp_path: Path) -> None:
    text = MINIMAL + "project: other\nstore: 12\n"
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.path) for p in problems] == [
        (line_of(text, "project: other"), "project"),
        (line_of(text, "store: 12"), "store"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- a\n- b\n", "the top level must be a mapping of keys (found a list)"),
        ("just words\n", "the top level must be a mapping of keys (found a str)"),
    ],
)
def test_empty_or_non_mapping_files(tmp_path: Path, text: str, expected: str) -> None:
    assert only(problems_of(tmp_path, text)).message == expected


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_bytes(b"project: x\nowners: \xff\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert only(exc.value.problems).line == 2


def test_a_missing_file_hints_init(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as exc:
        load_config(tmp_path / CONFIG_NAME)
    assert exc.value.hint is not None and "releaser init" in exc.value.hint


def test_non_increasing_percentages_name_the_step(tmp_path: Path) -> None:
    text = edit(INIT_TEMPLATE, "          percent: 25\n", "          percent: 3\n")
    problem = only(problems_of(tmp_path, text))
    assert problem.path == "services.case-triage.rollout.steps[2].percent"
    assert problem.line == line_of(text, "percent: 3")
    assert problem.message == "step 'canary-25' goes down to 3% after 'canary-5' at 5%"


def test_unknown_group_in_a_step_suggests_the_right_one(tmp_path: Path) -> None:
    text = edit(INIT_TEMPLATE, "groups: [pilot-councils]", "groups: [pilot-council]")
    problem = only(problems_of(tmp_path, text))
    assert problem.path == "services.case-triage.rollout.steps[1].groups[0]"
    assert problem.line == line_of(text, "groups: [pilot-council]")
    assert problem.message == "unknown group 'pilot-council'"
    assert problem.hint == "did you mean 'pilot-councils'?"


def test_unknown_group_is_reported_alongside_unrelated_problems(tmp_path: Path) -> None:
    text = edit(INIT_TEMPLATE, "groups: [staff]", "groups: [staf]")
    text = edit(text, "      latency_p95_ms: 800", "      latency_p95_ms: -1")
    paths = [p.path for p in problems_of(tmp_path, text)]
    assert paths == [
        "services.case-triage.slos.latency_p95_ms",
        "services.case-triage.rollout.steps[0].groups[0]",
    ]


def test_model_with_alias_and_version(tmp_path: Path) -> None:
    text = edit(
        INIT_TEMPLATE, "      alias: champion\n", "      alias: champion\n      version: 3\n"
    )
    problem = only(problems_of(tmp_path, text))
    assert problem.path == "services.case-triage.model"
    assert problem.line == line_of(text, "    model:")
    assert "not both" in problem.message


def test_eval_dataset_not_among_the_datasets(tmp_path: Path) -> None:
    text = edit(INIT_TEMPLATE, "      dataset: data/golden.csv", "      dataset: data/gold.csv")
    problem = only(problems_of(tmp_path, text))
    assert problem.path == "services.case-triage.eval.dataset"
    assert problem.line == line_of(text, "dataset: data/gold.csv")
    assert problem.hint == "did you mean 'data/golden.csv'?"


def test_invalid_service_name_points_at_the_key(tmp_path: Path) -> None:
    text = edit(MINIMAL, "  case-triage:", "  Case_Triage:")
    problem = only(problems_of(tmp_path, text))
    assert problem.line == line_of(text, "Case_Triage:")
    assert problem.message == "'Case_Triage' is not a valid name"


def test_store_password_never_appears_in_problems(tmp_path: Path) -> None:
    text = MINIMAL + "store: postgresql://bob:s3cret-pw@db.example.org/releases\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "s3cret" not in str(exc.value)
    assert only(exc.value.problems).hint is not None
    # Any value echoed back has URL passwords hidden.
    text = edit(MINIMAL, "version: 1", "version: http://bob:s3cret@h")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "s3cret" not in str(exc.value) and "bob:***@" in str(exc.value)


def test_find_config_walks_up(tmp_path: Path) -> None:
    config = write(tmp_path, MINIMAL)
    deep = tmp_path / "src" / "pkg" / "sub"
    deep.mkdir(parents=True)
    assert find_config(deep) == config.resolve()
    (deep / "module.py").write_text("")
    assert find_config(deep / "module.py") == config.resolve()
    assert find_config(tmp_path) == config.resolve()


def test_find_config_stops_at_the_root_with_a_hint(tmp_path: Path) -> None:
    # tmp_path's ancestors hold no releaser.yaml on a test machine; check that first.
    if any((p / CONFIG_NAME).exists() for p in tmp_path.parents):
        pytest.skip("a releaser.yaml exists above the temporary folder")
    with pytest.raises(WorkspaceError) as exc:
        find_config(tmp_path)
    assert exc.value.hint is not None and "releaser init" in exc.value.hint


def test_config_hash_follows_the_service_content(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    svc = cfg.service("case-triage")
    assert config_hash(svc) == content_hash(svc.model_dump(mode="json", by_alias=True))
    same = load_config(write(tmp_path, MINIMAL.replace("project: casework", "project: other")))
    assert config_hash(same.service("case-triage")) == config_hash(svc)
    changed = load_config(write(tmp_path, MINIMAL.replace("0.01", "0.02")))
    assert config_hash(changed.service("case-triage")) != config_hash(svc)


def test_json_schema_is_valid_and_accepts_the_template() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = config_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "releaser.yaml"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(INIT_TEMPLATE))) == []
    assert list(validator.iter_errors(yaml.safe_load(MINIMAL))) == []
    rule = schema["$defs"]["AttributeRule"]["properties"]
    assert "in" in rule and "in_" not in rule
    assert "description" in schema["properties"]["services"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    slos:", "    slo:"),
        ("  case-triage:", "  Case_Triage:"),
        ("      alias: champion", "      alias: 3"),
    ],
)
def test_json_schema_rejects_what_the_loader_rejects(old: str, new: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    validator = jsonschema.Draft202012Validator(config_json_schema())
    assert list(validator.iter_errors(yaml.safe_load(edit(MINIMAL, old, new))))


# --- what the file may point at, and what it may hold ---------------------------------------


def test_the_rendered_init_template_still_validates(tmp_path: Path) -> None:
    text = render_init_template("housing-repairs", "repair-classifier")
    path = write(tmp_path, text)
    cfg = load_config(path)
    assert list(cfg.services) == ["repair-classifier"]
    assert cfg.prompts.path == "prompts"
    assert load_settings(path).prompts == cfg.prompts
    # Its store example, uncommented, names the default file inside the repository
    # (the folder is created by the first command that opens the store, not by validation).
    text = edit(text, "# store: ", "store: ")
    cfg = load_config(write(tmp_path, text))
    assert cfg.store is not None
    assert sqlite_store_file(cfg.store, tmp_path) == tmp_path / ".releaser" / "state.db"
    assert not (tmp_path / ".releaser").exists()


@pytest.mark.parametrize(
    ("old", "new", "path", "words"),
    [
        (
            "  path: prompts\n",
            "  path: ../../elsewhere\n",
            "prompts.path",
            "outside the repository",
        ),
        (
            "  path: prompts\n",
            "  path: prompts/../../x\n",
            "prompts.path",
            "outside the repository",
        ),
        ("  path: prompts\n", "  path: /srv/prompts\n", "prompts.path", "is absolute"),
        (
            "      - path: data/golden.csv\n",
            "      - path: ../data/golden.csv\n",
            "services.case-triage.datasets[0].path",
            "outside the repository",
        ),
        (
            "      dataset: data/golden.csv\n",
            "      dataset: /data/golden.csv\n",
            "services.case-triage.eval.dataset",
            "is absolute",
        ),
        (
            "    irreversible: false\n",
            "    irreversible: false\n    deploy: {target: docker, container: {context: ../srv}}\n",
            "services.case-triage.deploy.container.context",
            "outside the repository",
        ),
    ],
)
def test_paths_must_stay_inside_the_repository(
    tmp_path: Path, old: str, new: str, path: str, words: str
) -> None:
    text = edit(INIT_TEMPLATE, old, new)
    problem = only(problems_of(tmp_path, text))
    assert problem.path == path
    assert problem.line == line_of(text, new.split()[-1].strip("{}"))  # the path's line
    assert words in problem.message
    assert problem.hint is not None and "releaser.yaml" in problem.hint


@pytest.mark.parametrize("folder", ["prompts/team-a", "./prompts", "data/../prompts", "."])
def test_relative_prompt_folders_inside_the_repository_still_load(
    tmp_path: Path, folder: str
) -> None:
    text = edit(INIT_TEMPLATE, "  path: prompts\n", f"  path: {folder}\n")
    cfg = load_config(write(tmp_path, text))
    assert not cfg.prompts.path.startswith(("/", ".."))


@pytest.mark.parametrize(
    ("prompts", "field", "words"),
    [
        ("      - ../../etc/passwd\n", "name", "contains a path separator"),
        ("      - {name: a..b}\n", "name", "contains '..'"),
        ("      - {name: case-triage-system, alias: ../x}\n", "alias", "alias '../x' is not valid"),
        ("      - {name: case-triage-system, alias: a/b}\n", "alias", "is not valid"),
        # A line feed is allowed in strings, but not at the end of an alias.
        ('      - {name: case-triage-system, alias: "prod\\n"}\n', "alias", "is not valid"),
    ],
)
def test_prompt_names_and_aliases_must_be_safe_identifiers(
    tmp_path: Path, prompts: str, field: str, words: str
) -> None:
    text = edit(INIT_TEMPLATE, "      - case-triage-system\n", prompts)
    problem = only(problems_of(tmp_path, text))
    assert problem.path == f"services.case-triage.prompts[0].{field}"
    assert problem.line == line_of(text, prompts.strip())
    assert words in problem.message
    assert problem.hint is not None


@pytest.mark.parametrize(
    "store",
    ["{tmp}/missing/state.db", "sqlite://{tmp}/missing/state.db", "missing/state.db"],
    ids=["absolute", "url", "relative"],
)
def test_a_sqlite_store_in_a_missing_folder_is_refused_and_nothing_is_created(
    tmp_path: Path, store: str
) -> None:
    text = MINIMAL + f"store: {store.format(tmp=tmp_path.as_posix())}\n"
    problem = only(problems_of(tmp_path, text))
    assert (problem.path, problem.line) == ("store", line_of(text, "store:"))
    assert f"{tmp_path / 'missing'}, does not exist" in problem.message
    assert problem.hint is not None and "create the folder" in problem.hint
    with pytest.raises(ConfigError):  # the commands that read only the settings too
        load_settings(tmp_path / CONFIG_NAME)
    assert not (tmp_path / "missing").exists()


def test_a_store_given_elsewhere_is_used_while_the_files_folder_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from releaser.api.workspace import open_workspace

    write(tmp_path, MINIMAL + "store: missing/state.db\n")
    elsewhere = str(tmp_path / "other.db")
    # --store (or $RELEASER_STORE) replaces the file's store, so its folder is not needed...
    for kwargs in ({"store_url": elsewhere}, {"store_url": elsewhere, "settings_only": True}):
        ws = open_workspace(tmp_path, **kwargs)  # type: ignore[arg-type]
        assert ws.store_url == elsewhere
        assert ws.config.store == "missing/state.db"
    monkeypatch.setenv("RELEASER_STORE", elsewhere)
    assert open_workspace(tmp_path).store_url == elsewhere
    # ...but without one, the file's store is the one used, and it is refused.
    monkeypatch.delenv("RELEASER_STORE")
    with pytest.raises(ConfigError, match="does not exist"):
        open_workspace(tmp_path)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "store",
    [
        ".releaser/state.db",  # the default folder: releaser creates it
        "state/x.db",
        "sqlite://{tmp}/state/x.db",
        "{tmp}/state/x.db",
        "postgresql://ops@db.example.org/releaser",  # not a file: not looked for
        "host=db dbname=releaser",
    ],
)
def test_sqlite_stores_in_existing_or_default_folders_load(tmp_path: Path, store: str) -> None:
    (tmp_path / "state").mkdir()
    text = MINIMAL + f"store: {store.format(tmp=tmp_path.as_posix())}\n"
    assert load_config(write(tmp_path, text)).store
    assert not (tmp_path / ".releaser").exists()


@pytest.mark.parametrize(
    ("store", "words"),
    [
        ("sqlite://relative.db", "needs an absolute path"),
        ("sqlite:///x.db?mode=ro", "has options"),
        ("mysql://db/releaser", "unknown state store scheme 'mysql'"),
    ],
)
def test_store_urls_open_store_would_refuse_are_refused(
    tmp_path: Path, store: str, words: str
) -> None:
    text = MINIMAL + f"store: {store}\n"
    problem = only(problems_of(tmp_path, text))
    assert problem.path == "store" and words in problem.message
    assert problem.hint is not None and "sqlite:///" in problem.hint


@pytest.mark.parametrize(
    ("old", "new", "path", "words"),
    [
        (
            "          min_samples: 100\n",
            "          min_samples: 99999999999999999999999999999\n",
            "services.case-triage.rollout.steps[0].min_samples",
            "less than or equal to 1000000000000",
        ),
        (
            "          percent: 25\n          bake_minutes: 240\n",
            "          percent: 25\n          bake_minutes: .inf\n",
            "services.case-triage.rollout.steps[2].bake_minutes",
            "finite number (got inf)",
        ),
        (
            "      latency_p95_ms: 800\n",
            "      latency_p95_ms: .inf\n",
            "services.case-triage.slos.latency_p95_ms",
            "finite number (got inf)",
        ),
        (
            "        latency_p95_ms: 1500\n",
            "        latency_p95_ms: 1.0e+400\n",
            "services.case-triage.rollout.guardrails.latency_p95_ms",
            "finite number (got inf)",
        ),
        (
            "        accuracy: 0.8\n",
            "        accuracy: .nan\n",
            "services.case-triage.eval.thresholds.accuracy",
            "finite number (got nan)",
        ),
        (
            "        max_drop: 0.02\n",
            "        max_drop: .NaN\n",
            "services.case-triage.eval.non_regression.max_drop",
            "finite number (got nan)",
        ),
        (
            "      error_rate: 0.01\n",
            "      error_rate: .nan\n",
            "services.case-triage.slos.error_rate",
            "finite number (got nan)",
        ),
        (
            "        min_days_in_previous: 14\n",
            "        min_days_in_previous: -.inf\n",
            "services.case-triage.phases.production.min_days_in_previous",
            "finite number (got -inf)",
        ),
    ],
)
def test_numbers_must_be_finite_and_in_range(
    tmp_path: Path, old: str, new: str, path: str, words: str
) -> None:
    text = edit(INIT_TEMPLATE, old, new)
    problem = only(problems_of(tmp_path, text))
    assert problem.path == path
    assert problem.line == line_of(text, new.strip().splitlines()[-1])
    assert words in problem.message
    if "finite" in words:
        assert problem.hint is not None and ".inf" in problem.hint


@pytest.mark.parametrize(
    ("old", "new", "path", "code"),
    [
        (
            "    description: Routes council casework (emails, web forms) to the team that "
            "handles it\n",
            '    description: "a\\0b"\n',
            "services.case-triage.description",
            "U+0000",
        ),
        (
            "    description: Council staff, by work email\n",
            '    description: "staff \\e[31m"\n',
            "groups.staff.description",
            "U+001B",
        ),
        ("    role: ml-lead\n", '    role: "ml-lead\\r"\n', "owners[1].role", "U+000D"),
        (
            "      - council-017\n",
            '      - "council-017\\x7f"\n',
            "groups.pilot-councils.allow[0]",
            "U+007F",
        ),
        ("  path: prompts\n", '  path: "prom\\x01pts"\n', "prompts.path", "U+0001"),
    ],
)
def test_strings_with_control_characters_are_refused_with_their_place(
    tmp_path: Path, old: str, new: str, path: str, code: str
) -> None:
    text = edit(INIT_TEMPLATE, old, new)
    problem = only(problems_of(tmp_path, text))
    assert problem.path == path
    assert problem.line == line_of(text, new.strip().splitlines()[0])
    assert f"contains a control character ({code})" in problem.message
    assert problem.hint is not None and "tabs and line breaks" in problem.hint


def test_a_control_character_in_a_key_is_named_printably(tmp_path: Path) -> None:
    text = MINIMAL + 'groups:\n  "sta\\x01ff": {allow: [a]}\n'
    problems = problems_of(tmp_path, text)
    # Reported once (not also as an invalid group name), without the raw character.
    assert [(p.path, p.line) for p in problems] == [("groups.sta\\x01ff", line_of(text, "sta"))]
    assert "\x01" not in problems[0].render()


def test_tabs_and_line_breaks_are_allowed_in_strings(tmp_path: Path) -> None:
    text = edit(MINIMAL, "  case-triage:\n", '  case-triage:\n    description: "a\\tb\\nc"\n')
    assert load_config(write(tmp_path, text)).service("case-triage").description == "a\tb\nc"


def test_settings_only_loading_looks_for_control_characters_in_its_own_keys(
    tmp_path: Path,
) -> None:
    text = edit(MINIMAL, "  case-triage:\n", '  case-triage:\n    description: "a\\0b"\n')
    path = write(tmp_path, text)
    assert load_settings(path).prompts.path == "prompts"  # the services part is not read
    write(tmp_path, text + 'prompts: {backend: file, path: "p\\0"}\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert [p.path for p in exc.value.problems] == ["prompts.path"]


def test_an_owners_ssh_key_is_checked_where_it_is_written(tmp_path: Path) -> None:
    good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMr1Vq5N0oHfZbV4c8vKQ4wq7cH7JvE0yVnT3XK5bQ2p alex"
    base = edit(
        MINIMAL, "    role: service-owner\n", "    role: service-owner\n    ssh_keys: [KEY]\n"
    )
    assert load_config(write(tmp_path, base.replace("KEY", f'"{good}"'))).owners[0].ssh_keys
    for key, message in (
        ('"ssh-dss AAAAB3NzaC1kc3M="', "key type 'ssh-dss' is not one of"),
        ('"ssh-ed25519 not*base64"', "the key is not valid base64"),
        (
            '"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIMr1Vq5N0oHfZbV4c8vKQ4wq7cH7JvE0yVnT3XK5bQ2p"',
            "the key's data is not a ssh-rsa key",
        ),
        ('"-----BEGIN OPENSSH PRIVATE KEY-----"', "this is a private key"),
    ):
        text = base.replace("KEY", key)
        problem = only(problems_of(tmp_path, text))
        assert problem.path == "owners[0].ssh_keys"
        assert problem.line == line_of(text, "ssh_keys:")
        assert f"ssh_keys[0]: {message}" in problem.message
        assert problem.hint is not None and ".pub" in problem.hint
    text = edit(
        MINIMAL, "    role: service-owner\n", "    role: service-owner\n    github: -bad-\n"
    )
    assert only(problems_of(tmp_path, text)).path == "owners[0].github"


@pytest.mark.parametrize(
    ("pattern", "reason", "hint"),
    [
        (r"^(\w+)@\1\.org$", r"invalid escape sequence: \1", "RE2 has no backreferences"),
        (r"^(?!guest)", "invalid perl operator: (?!", "RE2 has no lookaheads"),
        (r"(?<=@)example\.org", "invalid perl operator: (?<=", "RE2 has no lookbehinds"),
        (r"a++", "bad repetition operator: ++", "RE2 has no possessive quantifiers"),
        ("a" * 1001, "1,001 characters long", "ends_with"),
    ],
)
def test_a_rule_pattern_re2_cannot_run_names_its_line_reason_and_hint(
    tmp_path: Path, pattern: str, reason: str, hint: str
) -> None:
    # The router and the gateway run `matches` on RE2, in linear time: what RE2 refuses is
    # refused here, at load time, rather than when a router builds the rule.
    text = edit(INIT_TEMPLATE, '        ends_with: "@example.org"', f"        matches: '{pattern}'")
    problem = only(problems_of(tmp_path, text))
    assert problem.path == "groups.staff.rules[0].matches"
    assert problem.line == line_of(text, "matches: '")
    assert reason in problem.message
    assert problem.hint is not None and hint in problem.hint


def test_a_rule_pattern_in_re2_syntax_loads(tmp_path: Path) -> None:
    text = edit(
        INIT_TEMPLATE,
        '        ends_with: "@example.org"',
        r"        matches: '(?i)@(example|test)\.org$'",
    )
    config = load_config(write(tmp_path, text))
    assert config.groups["staff"].rules[0].operator() == ("matches", r"(?i)@(example|test)\.org$")


def test_peek_service_gives_the_sections_as_written_without_validating(tmp_path: Path) -> None:
    # A broken value elsewhere does not stop the peek: only which keys are there counts.
    path = write(tmp_path, MINIMAL.replace("priya@example.org", "not an address"))
    with pytest.raises(ConfigError):
        load_config(path)
    peeked = peek_service(path, "case-triage")
    assert peeked is not None
    top, spec = peeked
    assert set(top) == {"version", "project", "owners", "services"}
    assert set(spec) == {"model", "slos"}


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL + "servces: {}\n",  # an unknown top-level key may be a misspelt section
        MINIMAL.replace("    slos:", "    deplyo: {}\n    slos:"),  # so may a service's
        MINIMAL + "project: again\n",  # a key given twice
        MINIMAL + "  - [unclosed\n",  # not YAML
        MINIMAL.replace("case-triage:", "other:"),  # the service is not listed
        MINIMAL.replace("services:\n  case-triage:", "services:\n  case-triage: 1\n  x:"),
        "- a list\n",
    ],
)
def test_peek_service_cannot_tell_when_the_file_is_not_plain(tmp_path: Path, text: str) -> None:
    assert peek_service(write(tmp_path, text), "case-triage") is None


def test_peek_service_of_a_missing_file_cannot_tell(tmp_path: Path) -> None:
    assert peek_service(tmp_path / CONFIG_NAME, "case-triage") is None


def test_the_keys_peek_service_knows_are_the_models() -> None:
    from releaser.config import Service
    from releaser.config.loader import _CONFIG_KEYS, _SERVICE_KEYS

    assert _CONFIG_KEYS == {info.alias or name for name, info in Config.model_fields.items()}
    assert _SERVICE_KEYS == {info.alias or name for name, info in Service.model_fields.items()}
