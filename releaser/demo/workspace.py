"""Build the example workspace: a real service repo with git, DVC and an MLflow registry.

The workspace holds the case-triage example's sources, its generated golden
and training sets tracked by DVC and pushed to a local DVC remote, the model
trained on them and registered in an MLflow sqlite registry, and the
``releaser.yaml`` the caller passes in. Everything is committed, so the tree
is clean when the builder returns.

Layout (everything not listed is committed)::

    dest/
      .dvc/ .dvcignore          DVC, with the default remote "local" in .dvc/config
      .dvc-remote/              the local DVC remote (gitignored; see REMOTE_DIR)
      data/golden.csv.dvc       golden set (600 rows), data itself gitignored
      data/train.csv.dvc        training set (2,000 rows)
      data.py model.py          the example service's generator and classifier
      prompts/                  the LLM summary prompt
      mlflow.db mlruns/         MLflow registry and artifacts (gitignored)
      releaser.yaml

MLflow records artifact locations as absolute paths, so a copy of the folder
still reads the original's ``mlruns`` (and new versions logged in a copy land
there too). The DVC remote and cache are relative and move with the folder.

The example sources live in ``examples/case_triage`` of the repository and in
``releaser/_examples/case_triage`` of the wheel; they are loaded from their
files, never imported as a package.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from releaser.errors import ArtifactNotFound, BadInput, WorkspaceError
from releaser.integrations.mlflow_models import local_mlflow_uris

__all__ = [
    "CHALLENGER_ALIAS",
    "CHAMPION_ALIAS",
    "ExampleWorkspace",
    "MODEL_NAME",
    "build_example_workspace",
    "copy_workspace",
    "example_dir",
    "load_example_module",
    "track_and_push",
]

MODEL_NAME = "case-triage"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
EXPERIMENT_NAME = "case-triage"
REMOTE_NAME = "local"
REMOTE_DIR = ".dvc-remote"
"""The local DVC remote lives inside the workspace (gitignored) rather than beside it,
so the workspace is one self-contained folder: deleting it removes everything, and a
copy carries its own remote, addressed by a relative URL in the committed DVC config."""
GOLDEN_PATH = "data/golden.csv"
TRAIN_PATH = "data/train.csv"
PROMPT_PATH = "prompts/case-triage-system.yaml"

DEMO_USER_NAME = "releaser demo"
DEMO_USER_EMAIL = "demo@releaser.invalid"

GITIGNORE = """\
# MLflow registry and artifacts (machine-local; the registry pins what a release used)
/mlflow.db
/mlflow.db-wal
/mlflow.db-shm
/mlruns/
# the local DVC remote (stands in for S3/GCS/Azure in the demo)
/.dvc-remote/
# releaser's embedded state store
/.releaser/
__pycache__/
"""

# Hyperparameters of model versions 1, 2, 3, ...: version 1 is the pilot's champion, a
# heavily regularised model (golden accuracy ~0.90); version 2 a better tuned, lighter one
# (~0.92, the ceiling the golden set's label noise allows); version 3 over-regularised
# (~0.84) so a quality gate has something to stop.
VERSION_VARIANTS: tuple[dict[str, Any], ...] = (
    {"C": 0.08, "max_features": 2000, "ngram_max": 1},
    {"C": 1.0, "max_features": 5000, "ngram_max": 1},
    {"C": 0.05, "max_features": 2000, "ngram_max": 1},
)

_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "data", "mlruns", "mlflow.db")


@dataclass(frozen=True)
class ExampleWorkspace:
    """Where the example workspace is and how to reach its registry and DVC remote."""

    root: Path
    tracking_uri: str
    artifact_location: str
    remote_dir: Path
    model_name: str = MODEL_NAME
    model_versions: int = 1
    golden_path: str = GOLDEN_PATH
    train_path: str = TRAIN_PATH
    prompt_path: str = PROMPT_PATH


def example_dir() -> Path:
    """The case-triage example's sources: in the wheel first, then in the checkout."""
    package = Path(__file__).resolve().parent.parent
    candidates = [
        package / "_examples" / "case_triage",
        package.parent / "examples" / "case_triage",
    ]
    for candidate in candidates:
        if (candidate / "data.py").is_file() and (candidate / "model.py").is_file():
            return candidate
    raise ArtifactNotFound(
        "the case-triage example sources are missing; looked in "
        + ", ".join(str(c) for c in candidates),
        hint="reinstall releaser (the wheel ships them as releaser/_examples)",
    )


def load_example_module(name: str) -> ModuleType:
    """Load ``data`` or ``model`` from the example folder by file path."""
    path = example_dir() / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_releaser_example_case_triage_{name}", path)
    if spec is None or spec.loader is None:
        raise ArtifactNotFound(f"cannot load {path}", hint="reinstall releaser")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git(root: Path, *args: str) -> str:
    """Run git in ``root``; a failure becomes a WorkspaceError carrying git's message."""
    try:
        done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        raise WorkspaceError(
            f"git {' '.join(args)} failed in {root}: {detail.strip()}",
            hint="check that git is installed and works in that folder",
        ) from exc
    return done.stdout.strip()


def _init_git(root: Path) -> None:
    import git

    repo = git.Repo.init(root, initial_branch="main")
    try:
        reader = repo.config_reader()
        has_name = reader.has_option("user", "name")
        has_email = reader.has_option("user", "email")
        if not (has_name and has_email):
            # A fresh CI runner or container has no identity; commits would fail.
            with repo.config_writer() as writer:
                writer.set_value("user", "name", DEMO_USER_NAME)
                writer.set_value("user", "email", DEMO_USER_EMAIL)
    finally:
        repo.close()


def _commit_all(root: Path, message: str) -> None:
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "--no-verify", "-m", message)


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Keep a library's INFO chatter out of the caller's output for the duration.

    DVC and MLflow install their own log handlers when imported (DVC's write to
    stdout), so the demo command's own progress output would be interleaved.
    """
    import logging

    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _init_dvc(root: Path) -> None:
    from dvc.config_schema import RelPath
    from dvc.repo import Repo

    with _quiet("dvc"), Repo.init(str(root)) as repo, repo.config.edit() as conf:
        conf["core"]["analytics"] = False
        conf["core"]["remote"] = REMOTE_NAME
        # Marked relative, DVC saves the path relative to .dvc/ (as 'dvc remote add' does),
        # so the workspace folder can be moved or copied with its remote.
        conf["remote"][REMOTE_NAME] = {"url": RelPath(str(root / REMOTE_DIR))}


def track_and_push(root: Path, paths: list[str]) -> None:
    """Track ``paths`` (relative to ``root``) with DVC and push them to the default remote."""
    from dvc.repo import Repo

    with _quiet("dvc"), Repo(str(root)) as repo:
        repo.add([str(root / p) for p in paths])
        repo.push()


def _register_models(
    root: Path,
    ws: ExampleWorkspace,
    data_mod: ModuleType,
    model_mod: ModuleType,
    versions: int,
) -> None:
    """Train ``versions`` models and register them, all through an explicit client."""
    import tempfile

    import mlflow.sklearn
    import sklearn
    from mlflow import MlflowClient

    from promptregistry.mlflow_sqlite import prefer_wal

    prefer_wal(ws.tracking_uri)  # as releaser's own clients do; registering commits often
    with _quiet("mlflow"):
        client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.tracking_uri)
        client.search_experiments(max_results=1)  # creates the database: logs at INFO
    experiment_id = client.create_experiment(
        EXPERIMENT_NAME, artifact_location=ws.artifact_location
    )
    client.create_registered_model(
        MODEL_NAME,
        description="Routes council casework to a queue (housing, benefits, waste, noise, "
        "council-tax, planning). TF-IDF + logistic regression.",
    )
    train_rows = data_mod.read_csv(root / TRAIN_PATH)
    golden_rows = data_mod.read_csv(root / GOLDEN_PATH)
    commit = _git(root, "rev-parse", "HEAD")
    example = model_mod.frame([r["text"] for r in golden_rows[:3]])
    requirements = [f"scikit-learn=={sklearn.__version__}", "pandas"]
    for number in range(1, versions + 1):
        params = VERSION_VARIANTS[(number - 1) % len(VERSION_VARIANTS)]
        run = client.create_run(
            experiment_id,
            run_name=f"train-v{number}",
            tags={"mlflow.source.git.commit": commit, "dataset": TRAIN_PATH},
        )
        run_id = run.info.run_id
        pipeline = model_mod.train(train_rows, **params)
        scores = model_mod.evaluate(pipeline, golden_rows)
        for key, value in params.items():
            client.log_param(run_id, key, value)
        client.log_metric(run_id, "golden_accuracy", scores["accuracy"])
        logged = client.create_logged_model(
            experiment_id, name="model", source_run_id=run_id, model_type="sklearn"
        )
        with tempfile.TemporaryDirectory(prefix="releaser-demo-model-") as tmp:
            target = Path(tmp) / "model"
            mlflow.sklearn.save_model(
                pipeline, str(target), input_example=example, pip_requirements=requirements
            )
            client.log_model_artifacts(logged.model_id, str(target))
        client.finalize_logged_model(logged.model_id, "READY")
        # The artifact location rather than models:/<model_id>: MLflow 3.17's sqlite registry
        # resolves a models:/ source through the process-wide default client, not this one.
        client.create_model_version(
            MODEL_NAME,
            source=logged.artifact_location,
            run_id=run_id,
            model_id=logged.model_id,
            description=f"golden accuracy {scores['accuracy']:.3f}",
        )
        client.set_terminated(run_id)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, "1")
    if versions > 1:
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, str(versions))


def build_example_workspace(
    dest: Path, *, config_text: str, model_versions: int = 1
) -> ExampleWorkspace:
    """Build the case-triage example workspace in ``dest`` (absent or empty).

        Version 1 of the registered model ``case-triage`` gets the alias
        ``champion``; with ``model_versions`` > 1 the last version gets
        ``challenger``. Takes 10-15 s for one version (about 2 s more for each further
    version), most of it importing MLflow, scikit-learn and skops and creating
    MLflow's database.
    """
    if model_versions < 1:
        raise BadInput(f"model_versions must be at least 1, not {model_versions}")
    root = dest.resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise WorkspaceError(
            f"{root} already exists and is not an empty folder",
            hint="remove it or choose another folder",
        )
    root.mkdir(parents=True, exist_ok=True)
    tracking_uri, artifact_location = local_mlflow_uris(root)
    ws = ExampleWorkspace(
        root=root,
        tracking_uri=tracking_uri,
        artifact_location=artifact_location,
        remote_dir=root / REMOTE_DIR,
        model_versions=model_versions,
    )
    source = example_dir()
    data_mod = load_example_module("data")
    model_mod = load_example_module("model")

    _init_git(root)
    shutil.copytree(source, root, ignore=_SKIP, dirs_exist_ok=True)
    (root / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    _commit_all(root, "Case-triage service: data generator, classifier, summary prompt")

    _init_dvc(root)
    _commit_all(root, "Initialise DVC with a local default remote")

    data_mod.write_csv(root / GOLDEN_PATH, data_mod.golden_rows())
    data_mod.write_csv(root / TRAIN_PATH, data_mod.training_rows())
    track_and_push(root, [GOLDEN_PATH, TRAIN_PATH])
    _commit_all(root, "Track the golden and training sets with DVC")

    _register_models(root, ws, data_mod, model_mod, model_versions)

    (root / "releaser.yaml").write_text(config_text, encoding="utf-8")
    _commit_all(root, "Add releaser.yaml")
    status = _git(root, "status", "--porcelain")
    if status.strip():
        raise WorkspaceError(
            f"the example workspace at {root} is unexpectedly dirty:\n{status}",
            hint="this is a bug in releaser's demo builder; please report it",
        )
    return ws


def add_golden_cases(ws: ExampleWorkspace, count: int, *, seed: int) -> int:
    """Append ``count`` newly verified cases to the golden set, push them with DVC, commit.

    Returns the number of rows in the golden set afterwards. The tree is clean again
    when it returns, so a release can be created from the new commit.
    """
    data_mod = load_example_module("data")
    path = ws.root / GOLDEN_PATH
    rows = data_mod.read_csv(path) + data_mod.generate(count, seed=seed, label_noise=0.0)
    data_mod.write_csv(path, rows)
    track_and_push(ws.root, [GOLDEN_PATH])
    _commit_all(ws.root, f"Golden set: add {count} cases verified by caseworkers")
    return len(rows)


def copy_workspace(example: ExampleWorkspace, dest: Path) -> ExampleWorkspace:
    """A private copy of an example workspace, with its own MLflow db and DVC remote.

    MLflow stores artifact locations as absolute paths, so the copy still reads
    model files from the original's ``mlruns``; registry writes go to the copy.
    """
    import dataclasses
    import shutil

    from releaser.integrations.mlflow_models import local_mlflow_uris

    shutil.copytree(example.root, dest, symlinks=True)
    tracking_uri, artifact_location = local_mlflow_uris(dest)
    return dataclasses.replace(
        example,
        root=dest,
        tracking_uri=tracking_uri,
        artifact_location=artifact_location,
        remote_dir=dest / example.remote_dir.name,
    )
