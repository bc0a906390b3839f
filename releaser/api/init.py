"""Use cases for setting up a workspace: write an example config, validate one."""

from __future__ import annotations

import re
from pathlib import Path

from releaser.config import Config, load_config
from releaser.config.template import render_init_template
from releaser.errors import BadInput

__all__ = ["config_warnings", "init_workspace", "validate_config"]

CONFIG_NAME = "releaser.yaml"
# The state store, and the embedded MLflow registry (used unless releaser.yaml names
# another): machine-local files that must not make the tree, and so a release, dirty.
# The handover pack's default folder (dist/) is generated output too: kept, it would
# make the next 'release create' refuse the tree as dirty.
GITIGNORE_LINES = (
    ".releaser/",
    "/mlflow.db",
    "/mlflow.db-wal",
    "/mlflow.db-shm",
    "/mlruns/",
    "/dist/",
)


def init_workspace(
    directory: Path,
    *,
    project: str | None = None,
    service: str = "case-triage",
    force: bool = False,
) -> Path:
    """Write a commented example ``releaser.yaml`` into ``directory``; never overwrite silently."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise BadInput(f"{directory} is not a folder", hint="create it first, or pass --dir")
    target = directory / CONFIG_NAME
    if target.exists() and not force:
        raise BadInput(f"{target} already exists", hint="edit it, or pass --force to replace it")
    text = render_init_template(project or _slug(directory.name), service, describe=False)
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    gitignore = directory / ".gitignore"
    existing = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    missing = [line for line in GITIGNORE_LINES if line not in existing]
    if missing:
        with gitignore.open("a", encoding="utf-8") as fh:
            if existing and existing[-1] != "":
                fh.write("\n")
            fh.write("\n".join(missing) + "\n")
    return target


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return slug or "my-project"


def validate_config(path: Path) -> Config:
    """Load and validate a config file; raises ConfigError listing every problem."""
    return load_config(path)


def config_warnings(config: Config) -> list[str]:
    """What a valid config still does that is deprecated, one line each (with the fix)."""
    out = []
    for name, service in config.services.items():
        deploy = service.deploy
        if deploy is not None and deploy.upstreams is not None and deploy.upstreams.by_role:
            out.append(
                f"services.{name}.deploy.upstreams: baseline/candidate URLs are deprecated and "
                "read only until the first promotion (the baseline endpoint would still serve "
                "the old release); list each endpoint's release under 'releases:' instead"
            )
    return out
