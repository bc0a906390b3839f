"""The workspace: a repo with a ``releaser.yaml``, its store and its registries."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from releaser.config import WorkspaceSettings, find_config, load_config, load_settings
from releaser.errors import ConfigError, ConfigProblem, WorkspaceError
from releaser.store import default_store_url, open_store

if TYPE_CHECKING:
    from promptregistry import PromptRegistry
    from releaser.config import Config
    from releaser.integrations.github import GitHost, GithubEnv
    from releaser.integrations.mlflow_models import MlflowModelRegistry
    from releaser.store.base import Store

__all__ = ["Workspace", "open_workspace"]

CONFIG_NAME = "releaser.yaml"


@dataclass
class Workspace:
    """A loaded ``releaser.yaml`` with lazily opened store and registries.

    ``settings`` (store, MLflow, prompts) are always validated; ``config``, the
    whole file, is validated when the workspace opens or, for a workspace opened
    with ``settings_only``, on first use. ``degraded`` says why a workspace opened
    with ``store_only`` works from the store alone (releaser.yaml unreadable or
    absent); its MLflow and prompt registries then refuse with that reason, so
    effects that need them stay owed instead of going to a default registry.
    """

    root: Path
    config_path: Path
    settings: WorkspaceSettings
    store_url: str
    _config: Config | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)
    _models: MlflowModelRegistry | None = field(default=None, repr=False)
    _prompts: PromptRegistry | None = field(default=None, repr=False)
    _github: dict[tuple[str, str, str], GitHost] = field(default_factory=dict, repr=False)
    degraded: str | None = None

    def _need_config_file(self) -> None:
        if self.degraded is not None:
            raise ConfigError(
                [ConfigProblem(str(self.config_path), None, "", self.degraded)],
                hint=f"fix {self.config_path.name} (or run from the folder that holds it); "
                "what waits for it is finished by 'releaser reconcile SERVICE'",
            )

    @property
    def config(self) -> Config:
        """The whole ``releaser.yaml``, validated (ConfigError lists every problem)."""
        self._need_config_file()
        if self._config is None:
            # The store was settled when the workspace opened (settings checked its folder).
            self._config = load_config(self.config_path, check_store=False)
        return self._config

    @property
    def store(self) -> Store:
        """The state store, opened on first use."""
        if self._store is None:
            self._store = open_store(self.store_url)
        return self._store

    def mlflow_uris(self) -> tuple[str, str]:
        """(tracking URI, default artifact location) for this workspace."""
        from releaser.integrations.mlflow_models import resolve_tracking_uri

        mlflow = self.settings.mlflow
        configured = mlflow.tracking_uri if mlflow else None
        return resolve_tracking_uri(self.root, configured)

    @property
    def models(self) -> MlflowModelRegistry:
        """The MLflow model registry client, created on first use."""
        self._need_config_file()
        if self._models is None:
            from releaser.integrations.mlflow_models import MlflowModelRegistry

            tracking_uri, _ = self.mlflow_uris()
            mlflow = self.settings.mlflow
            registry_uri = mlflow.registry_uri if mlflow else None
            self._models = MlflowModelRegistry(tracking_uri, registry_uri)
        return self._models

    @property
    def prompts(self) -> PromptRegistry:
        """The prompt registry (MLflow by default, or the file backend), on first use."""
        self._need_config_file()
        if self._prompts is None:
            from releaser.api.prompt_registry import open_prompt_registry

            self._prompts = open_prompt_registry(self)
        return self._prompts

    def github(self, env: GithubEnv) -> GitHost:
        """The GitHub repository ``env`` names, one client per workspace and identity:
        the GitHub effects of one command share its HTTP session and repository look-up."""
        key = (env.api_url, env.repository, env.token)
        host = self._github.get(key)
        if host is None:
            from releaser.integrations.github import Github3Host

            host = self._github[key] = Github3Host(env)
        return host

    def close(self) -> None:
        """Close the store connection, if one was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None


def open_workspace(
    path: Path | str | None = None,
    *,
    store_url: str | None = None,
    settings_only: bool = False,
    store_only: bool = False,
) -> Workspace:
    """Find and load ``releaser.yaml`` from ``path`` (a file or a folder; default cwd).

    The whole file is validated now, or with ``settings_only`` just its
    workspace-wide keys (the rest on first use of ``Workspace.config``): prompt
    commands, and rollback, pause, resume, abort and status, open this way, so
    they start fast and keep working while another part of the file is broken.

    With ``store_only`` (rollback, pause, resume, abort, status) a file that
    cannot be read at all (a bad merge's conflict markers, invalid YAML or
    settings), or no file where a store URL is given, still opens: the workspace
    works from the store alone and says why in ``degraded``. Its store is then
    ``store_url`` or ``$RELEASER_STORE``, else an existing ``.releaser/state.db``.

    The store URL is, in order: ``store_url``, ``$RELEASER_STORE``, the
    config's ``store``, then ``.releaser/state.db`` beside the config.
    """
    start = Path(path) if path is not None else Path.cwd()
    explicit = store_url or os.environ.get("RELEASER_STORE")
    try:
        config_path = start if start.is_file() else find_config(start)
    except WorkspaceError as exc:
        if not (store_only and explicit):
            raise
        folder = start if start.is_dir() else start.parent
        return _from_store(folder.resolve() / CONFIG_NAME, explicit, f"{exc.message}")
    config_path = config_path.resolve()
    config: Config | None = None
    if settings_only:
        try:
            settings = load_settings(config_path, check_store=explicit is None)
        except ConfigError as exc:
            if not store_only:
                raise
            return _from_store(config_path, explicit, f"{config_path.name}: {exc.first()}")
    else:
        config = load_config(config_path, check_store=explicit is None)
        settings = WorkspaceSettings(
            mlflow=config.mlflow, prompts=config.prompts, store=config.store
        )
    root = config_path.parent
    url = explicit
    if not url and settings.store:
        url = settings.store
        if "://" not in url and "=" not in url and not Path(url).is_absolute():
            # A plain relative path in the config is relative to the config file.
            url = str((root / url).resolve())
    return Workspace(
        root=root,
        config_path=config_path,
        settings=settings,
        store_url=url or default_store_url(root),
        _config=config,
    )


def _from_store(config_path: Path, explicit: str | None, problem: str) -> Workspace:
    """A workspace on the store alone, for when releaser.yaml cannot be read."""
    root = config_path.parent
    url = explicit or default_store_url(root)
    if explicit is None and not (root / ".releaser" / "state.db").exists():
        raise ConfigError(
            [
                ConfigProblem(
                    str(config_path),
                    None,
                    "",
                    f"{problem}; no store is at the default path to work from without it",
                )
            ],
            hint="fix the file, or pass --store URL (or set RELEASER_STORE) to work from "
            "the store alone",
        )
    return Workspace(
        root=root,
        config_path=config_path,
        settings=WorkspaceSettings(),
        store_url=url,
        degraded=f"working from the store alone ({problem}); aliases and deploy targets "
        "that need the file stay owed",
    )
