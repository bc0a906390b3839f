"""The example workspace builder and the case-triage example sources it ships."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import pytest
import yaml

from releaser.demo.workspace import (
    CHAMPION_ALIAS,
    MODEL_NAME,
    ExampleWorkspace,
    build_example_workspace,
    example_dir,
    load_example_module,
)
from releaser.errors import BadInput, WorkspaceError

CONFIG_TEXT = "version: 1\n"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
    return done.stdout.strip()


# --- the example sources -------------------------------------------------------------


def test_example_dir_holds_the_service_sources() -> None:
    folder = example_dir()
    for name in ("data.py", "model.py", "README.md", "prompts/case-triage-system.yaml"):
        assert (folder / name).is_file(), name


def test_generator_is_deterministic_per_seed() -> None:
    data = load_example_module("data")
    assert data.generate(50, seed=7) == data.generate(50, seed=7)
    assert data.generate(50, seed=7) != data.generate(50, seed=8)


def test_golden_and_training_sets_cover_every_queue_channel_and_group() -> None:
    data = load_example_module("data")
    golden, train = data.golden_rows(), data.training_rows()
    assert (len(golden), len(train)) == (600, 2000)
    for rows in (golden, train):
        assert {r["queue"] for r in rows} == set(data.QUEUES)
        assert {r["channel"] for r in rows} == set(data.CHANNELS)
        assert {r["user_group"] for r in rows} == set(data.USER_GROUPS)
        assert all(r["text"].strip() for r in rows)
    assert not {r["case_id"] for r in golden} & {r["case_id"] for r in train}


def test_csv_round_trips(tmp_path: Path) -> None:
    data = load_example_module("data")
    rows = data.generate(20, seed=3)
    data.write_csv(tmp_path / "x.csv", rows)
    assert data.read_csv(tmp_path / "x.csv") == rows
    header = next(csv.reader(io.StringIO((tmp_path / "x.csv").read_text(encoding="utf-8"))))
    assert tuple(header) == data.COLUMNS


def test_prompt_declares_exactly_the_variables_its_template_uses() -> None:
    import jinja2
    import jinja2.meta

    prompt = yaml.safe_load(
        (example_dir() / "prompts" / "case-triage-system.yaml").read_text(encoding="utf-8")
    )
    assert set(prompt) == {"name", "template", "variables", "parameters", "commit_message"}
    assert prompt["name"] == "case-triage-system"
    used = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(prompt["template"]))
    assert used == set(prompt["variables"])
    assert 0.0 <= prompt["parameters"]["temperature"] <= 1.0


# --- refusing bad destinations ---------------------------------------------------------


def test_non_empty_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine\n", encoding="utf-8")
    with pytest.raises(WorkspaceError, match="not an empty folder"):
        build_example_workspace(tmp_path, config_text=CONFIG_TEXT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_destination_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(WorkspaceError):
        build_example_workspace(target, config_text=CONFIG_TEXT)


def test_zero_model_versions_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="at least 1"):
        build_example_workspace(tmp_path / "ws", config_text=CONFIG_TEXT, model_versions=0)


# --- the built workspace ---------------------------------------------------------------


@pytest.mark.slow
class TestBuiltWorkspace:
    def test_tree_is_clean_on_main_with_the_story_in_commits(
        self, built_workspace: ExampleWorkspace
    ) -> None:
        root = built_workspace.root
        assert _git(root, "status", "--porcelain") == ""
        assert _git(root, "branch", "--show-current") == "main"
        subjects = _git(root, "log", "--format=%s").splitlines()
        assert subjects == [
            "Add releaser.yaml",
            "Track the golden and training sets with DVC",
            "Initialise DVC with a local default remote",
            "Case-triage service: data generator, classifier, summary prompt",
        ]

    def test_config_text_is_written_verbatim(
        self, built_workspace: ExampleWorkspace, config_text: str
    ) -> None:
        text = (built_workspace.root / "releaser.yaml").read_text(encoding="utf-8")
        assert text == config_text
        assert "releaser.yaml" in _git(built_workspace.root, "ls-files")

    def test_service_sources_are_committed(self, built_workspace: ExampleWorkspace) -> None:
        tracked = set(_git(built_workspace.root, "ls-files").splitlines())
        assert {"data.py", "model.py", built_workspace.prompt_path} <= tracked
        assert {"data/golden.csv.dvc", "data/train.csv.dvc", ".dvc/config"} <= tracked

    def test_dvc_config_has_a_relative_default_remote_and_no_analytics(
        self, built_workspace: ExampleWorkspace
    ) -> None:
        config = (built_workspace.root / ".dvc" / "config").read_text(encoding="utf-8")
        assert "remote = local" in config
        assert "url = ../.dvc-remote" in config
        assert "analytics = false" in config.lower()

    @pytest.mark.parametrize(
        "path", ["data/golden.csv", "data/train.csv", "mlflow.db", "mlruns", ".dvc-remote"]
    )
    def test_machine_local_files_are_gitignored(
        self, built_workspace: ExampleWorkspace, path: str
    ) -> None:
        assert (built_workspace.root / path).exists()
        assert _git(built_workspace.root, "check-ignore", path) == path

    def test_data_is_pushed_to_the_local_remote(self, built_workspace: ExampleWorkspace) -> None:
        for path in (built_workspace.golden_path, built_workspace.train_path):
            dvc_file = yaml.safe_load((built_workspace.root / f"{path}.dvc").read_text())
            md5 = dvc_file["outs"][0]["md5"]
            obj = built_workspace.remote_dir / "files" / "md5" / md5[:2] / md5[2:]
            assert obj.read_bytes() == (built_workspace.root / path).read_bytes()

    def test_model_is_registered_with_the_champion_alias(
        self, built_workspace: ExampleWorkspace
    ) -> None:
        from mlflow import MlflowClient

        client = MlflowClient(built_workspace.tracking_uri, built_workspace.tracking_uri)
        model = client.get_registered_model(MODEL_NAME)
        assert model.aliases == {CHAMPION_ALIAS: 1}
        versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
        assert [int(v.version) for v in versions] == [1]
        run = client.get_run(str(versions[0].run_id))
        # realistic, not perfect: the generated data carries label noise
        assert 0.85 <= run.data.metrics["golden_accuracy"] <= 0.95
        assert run.data.tags["mlflow.source.git.commit"] == _git(
            built_workspace.root, "rev-parse", "HEAD~1"
        )

    def test_registered_model_loads_and_predicts_queues(
        self, built_workspace: ExampleWorkspace
    ) -> None:
        import mlflow.pyfunc
        from mlflow import MlflowClient

        client = MlflowClient(built_workspace.tracking_uri, built_workspace.tracking_uri)
        uri = client.get_model_version_download_uri(MODEL_NAME, "1")
        model = mlflow.pyfunc.load_model(uri)
        predict = load_example_module("model").predict
        data = load_example_module("data")
        labels = predict(
            model,
            [
                "My green bin was not collected on Tuesday.",
                "The pub plays loud music until 2am every night.",
            ],
        )
        assert labels == ["waste", "noise"]
        assert set(predict(model, ["anything at all"])) <= set(data.QUEUES)
