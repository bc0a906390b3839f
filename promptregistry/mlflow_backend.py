"""The default backend: MLflow's prompt registry (MLflow 3.x), through ``MlflowClient``.

How content maps onto MLflow, so that people using MLflow directly see the
same thing (``mlflow.genai.load_prompt("prompts:/name@production")`` resolves
to the version this backend reports):

- template            -> the prompt version's template (MLflow's own field)
- commit_message      -> the version's commit message (description)
- variables, parameters, metadata -> version tags ``promptregistry.*`` holding
  canonical JSON, so they round-trip exactly; parameters are also given to
  MLflow as ``model_config`` when MLflow's schema accepts them (for its UI)
- author, content_hash -> version tags ``promptregistry.author`` / ``.content_hash``
- aliases             -> MLflow prompt aliases
- alias history       -> one prompt-level tag per move,
  ``promptregistry.alias_history.<alias>.<microseconds since epoch>-<random>``, holding
  that move as JSON: writers never rewrite a shared value, so concurrent moves lose no
  entry; the newest ``HISTORY_KEEP`` per alias are kept

Every call goes through one ``MlflowClient`` built with explicit tracking and
registry URIs (never the process-wide defaults), and reads use the client's
direct lookups, which bypass MLflow's in-process prompt cache, so reads are
always fresh. Versions registered outside promptregistry are readable too:
their variables are taken from the template (all ``str``) and their parameters
from ``model_config``.

A sqlite store is switched to WAL mode before the client first opens it
(:mod:`promptregistry.mlflow_sqlite`), which makes each alias move's commits
3-5x cheaper.

Reading a prompt's aliases or one version by number, and moving or deleting
an alias (with its history tag), go first through the light client of
:mod:`promptregistry.mlflow_aliases`, which needs no ``import mlflow`` (two
seconds) for an HTTP server or a sqlite registry: a prompt in MLflow is a
registered model tagged ``mlflow.prompt.is_prompt=true``, its versions are
model versions holding the template in a tag, and MLflow's own prompt alias
and tag calls are its registered-model calls. Anything the light client cannot
answer as MLflow would (not a prompt, an unknown version, a version registered
outside promptregistry, another URI scheme) goes through ``MlflowClient``, so
the errors are the same; so do alias moves in a process that has already
loaded MLflow's prompt cache, which only ``MlflowClient`` invalidates.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from promptregistry.backend import (
    check_selector,
    redact_uri,
    unknown_alias,
    unknown_name,
    unknown_version,
)
from promptregistry.errors import BackendUnavailable, InvalidPrompt, PromptRegistryError
from promptregistry.mlflow_aliases import (
    IS_PROMPT_TAG,
    AliasClient,
    NeedsMlflow,
    RegisteredModelInfo,
    RegistryUnreachable,
    alias_client,
)
from promptregistry.mlflow_http import bounded_http, probe
from promptregistry.mlflow_sqlite import prefer_wal
from promptregistry.model import (
    AliasAction,
    AliasChange,
    PromptSpec,
    PromptVersion,
    canonical_json,
    name_problem,
    validate_alias,
    validate_name,
)

__all__ = ["MlflowPromptBackend"]

TAG_VARIABLES = "promptregistry.variables"
TAG_PARAMETERS = "promptregistry.parameters"
TAG_METADATA = "promptregistry.metadata"
TAG_AUTHOR = "promptregistry.author"
TAG_HASH = "promptregistry.content_hash"
TAG_HISTORY = "promptregistry.alias_history."
HISTORY_KEEP = 100  # moves kept per alias (one tag each); older ones are deleted
_HISTORY_SUFFIX = re.compile(r"^[0-9]{20}-[0-9a-f]{8}$")
_PAGE = 1000
_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}
# MLflow's version tags holding a prompt's text and kind (mlflow/prompt/constants.py)
_PROMPT_TEXT_TAG = "mlflow.prompt.text"
_PROMPT_TYPE_TAG = "_mlflow_prompt_type"

T = TypeVar("T")


@dataclass(frozen=True)
class _LightPromptVersion:
    """A prompt version read without MLflow: the fields :meth:`MlflowPromptBackend._convert`
    reads of MLflow's PromptVersion (variables and model_config are taken from our tags)."""

    name: str
    version: int
    template: str
    commit_message: str | None
    creation_timestamp: int | None
    tags: dict[str, str]
    aliases: list[str]
    variables: tuple[str, ...] = ()
    model_config: dict[str, Any] | None = None


class _Missing(Exception):
    """MLflow said the thing asked for does not exist (turned into PromptNotFound by callers)."""


class _Exists(Exception):
    """MLflow said the thing to create already exists."""


class MlflowPromptBackend:
    """Prompts in an MLflow prompt registry (``sqlite:///...``, ``http://...``, ``postgresql://``)."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self._client_obj: Any = None
        self._client_lock = threading.Lock()
        self._light: AliasClient | None = None
        self._light_ready = False

    @property
    def url(self) -> str:
        """The registry URI, password redacted."""
        return redact_uri(self.registry_uri)

    def __repr__(self) -> str:
        return f"MlflowPromptBackend({self.url!r})"

    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            with self._client_lock:
                if self._client_obj is None:
                    from mlflow import MlflowClient

                    # A dead server would make MLflow retry for minutes: fail fast instead,
                    # and probe again on the next call (the client is not kept).
                    for uri in dict.fromkeys((self.tracking_uri, self.registry_uri)):
                        problem = probe(uri)
                        if problem is not None:
                            raise BackendUnavailable(
                                f"cannot reach the MLflow server at {redact_uri(uri)}: {problem}",
                                hint="start the tracking server or check the tracking URI",
                            )
                        prefer_wal(uri)  # sqlite: commits 3-5x cheaper in WAL mode

                    self._client_obj = MlflowClient(
                        tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
                    )
        return self._client_obj

    def _lightly(self, call: Callable[[AliasClient], T]) -> tuple[bool, T | None]:
        """(True, answer) from the light alias client; (False, None) when MlflowClient must answer.

        The server is probed first, as for MlflowClient; a transport failure after
        that is BackendUnavailable at once.
        """
        if not self._light_ready:
            light = alias_client(self.registry_uri)
            if light is not None:
                problem = probe(self.registry_uri)
                if problem is not None:
                    raise BackendUnavailable(
                        f"cannot reach the MLflow server at {self.url}: {problem}",
                        hint="start the tracking server or check the tracking URI",
                    )
            self._light, self._light_ready = light, True
        if self._light is None:
            return False, None
        try:
            return True, call(self._light)
        except NeedsMlflow:
            return False, None
        except RegistryUnreachable as exc:
            raise self._unavailable(RuntimeError(exc.detail)) from None

    def _light_prompt(self, name: str) -> RegisteredModelInfo | None:
        """The prompt's aliases and tags from the light client; None when MlflowClient must say."""
        done, info = self._lightly(lambda light: light.model(name))
        if not done or info is None or not info.is_prompt:
            return None  # not a prompt (or unknown): MlflowClient's path names the problem
        return info

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the MLflow client; _Missing on not-found, BackendUnavailable when unreachable."""
        from mlflow.exceptions import MlflowException

        try:
            import sqlalchemy.exc

            transient: tuple[type[BaseException], ...] = (OSError, sqlalchemy.exc.SQLAlchemyError)
        except ImportError:  # pragma: no cover - MLflow depends on SQLAlchemy
            transient = (OSError,)
        try:
            with bounded_http():
                return fn(*args, **kwargs)
        except PromptRegistryError:
            raise
        except MlflowException as exc:
            if exc.error_code in _NOT_FOUND_CODES:
                raise _Missing(exc.message) from None
            if exc.error_code == "RESOURCE_ALREADY_EXISTS":
                raise _Exists(exc.message) from None
            raise self._unavailable(exc) from None
        except transient as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        detail = redact_uri(str(exc)).strip().splitlines()
        text = detail[0][:300] if detail else type(exc).__name__
        return BackendUnavailable(
            f"MLflow prompt registry at {self.url} failed: {text}",
            hint="check that the tracking server or database is reachable and the URI is right",
        )

    # reading

    def list_names(self) -> list[str]:
        """Every prompt in the registry whose name promptregistry accepts, sorted."""
        names: list[str] = []
        token = None
        while True:
            page = self._call(self._client.search_prompts, max_results=_PAGE, page_token=token)
            names.extend(p.name for p in page if name_problem(p.name) is None)
            token = page.token
            if not token:
                return sorted(names)

    def _prompt(self, name: str) -> Any:
        validate_name(name)
        try:
            prompt = self._call(self._client.get_prompt, name)
        except _Missing:
            prompt = None
        if prompt is None:
            raise unknown_name(name, self.list_names(), self.url)
        return prompt

    def list_versions(self, name: str) -> list[int]:
        """Every version number of ``name``, ascending."""
        self._prompt(name)
        versions: list[int] = []
        token = None
        while True:
            try:
                page = self._call(
                    self._client.search_prompt_versions, name, max_results=_PAGE, page_token=token
                )
            except _Missing:
                raise unknown_name(name, self.list_names(), self.url) from None
            versions.extend(int(v.version) for v in page)
            token = page.token
            if not token:
                return sorted(versions)

    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` and its version."""
        validate_name(name)
        info = self._light_prompt(name)
        if info is not None:
            return dict(sorted(info.aliases.items()))
        self._prompt(name)
        # MlflowClient has no public "list a prompt's aliases" call; the registry client's
        # registered model carries them (MLflow is pinned to 3.17.*, and the conformance
        # suite checks this still works).
        registry = self._client._get_registry_client()
        try:
            model = self._call(registry.get_registered_model, name)
        except _Missing:
            raise unknown_name(name, self.list_names(), self.url) from None
        return {alias: int(v) for alias, v in sorted(model.aliases.items())}

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> PromptVersion:
        """One version by number or alias; the latest when neither is given."""
        check_selector(version, alias)
        validate_name(name)
        if alias is not None:
            validate_alias(alias)
        if alias is None and version is not None:
            light = self._light_version(name, version)
            if light is not None:
                return self._convert(light)
        try:
            if alias is not None:
                found = self._call(self._client.get_prompt_version_by_alias, name, alias)
            else:
                if version is None:
                    latest = self._call(self._client.search_prompt_versions, name, max_results=1)
                    if not latest:
                        raise _Missing(name)
                    version = int(latest[0].version)
                found = self._call(self._client.get_prompt_version, name, version)
        except _Missing:
            found = None
        if found is None:
            raise self._not_found(name, version, alias)
        return self._convert(found)

    def _light_version(self, name: str, version: int) -> _LightPromptVersion | None:
        """Version ``version`` of prompt ``name`` from the light client, or None.

        Only a text prompt registered by promptregistry (its variables, parameters
        and metadata in our tags) is read this way; for anything else MLflow's own
        conversion decides, through MlflowClient.
        """
        if self._light_prompt(name) is None:
            return None
        done, mv = self._lightly(lambda light: light.model_version(name, version))
        if not done or mv is None:
            return None
        tags = mv.tags
        if (
            tags.get(IS_PROMPT_TAG) != "true"
            or _PROMPT_TEXT_TAG not in tags
            or tags.get(_PROMPT_TYPE_TAG, "text") != "text"
            or not {TAG_VARIABLES, TAG_PARAMETERS, TAG_METADATA} <= tags.keys()
        ):
            return None
        return _LightPromptVersion(
            name=name,
            version=mv.version,
            template=tags[_PROMPT_TEXT_TAG],
            commit_message=mv.description,
            creation_timestamp=mv.creation_timestamp,
            tags=tags,
            aliases=mv.aliases,
        )

    def _not_found(self, name: str, version: int | None, alias: str | None) -> PromptRegistryError:
        self._prompt(name)  # raises the "unknown prompt" error when the name is the problem
        if alias is not None:
            return unknown_alias(name, alias, self.aliases(name))
        if version is not None:
            return unknown_version(name, version, self.list_versions(name))
        return unknown_name(name, self.list_names(), self.url)

    def _convert(self, pv: Any) -> PromptVersion:
        if not isinstance(pv.template, str):
            raise InvalidPrompt(
                f"prompt {pv.name!r} v{pv.version} is an MLflow chat prompt; promptregistry "
                "handles text templates only"
            )
        tags: dict[str, str] = dict(pv.tags or {})
        try:
            if TAG_VARIABLES in tags:
                variables = json.loads(tags[TAG_VARIABLES])
            else:
                variables = {v: "str" for v in sorted(pv.variables)}
            if TAG_PARAMETERS in tags:
                parameters = json.loads(tags[TAG_PARAMETERS])
            else:
                parameters = pv.model_config or {}
            if TAG_METADATA in tags:
                metadata = json.loads(tags[TAG_METADATA])
            else:
                metadata = {
                    k: v
                    for k, v in tags.items()
                    if not k.startswith(("mlflow.", "_", "promptregistry."))
                }
            spec = PromptSpec(
                name=pv.name,
                template=pv.template,
                variables=variables,
                parameters=parameters,
                metadata=metadata,
                commit_message=pv.commit_message or None,
                author=tags.get(TAG_AUTHOR),
            )
        except ValueError as exc:  # bad JSON in a tag, or content our model refuses
            raise InvalidPrompt(f"prompt {pv.name!r} v{pv.version} cannot be read: {exc}") from None
        computed = spec.compute_hash()
        if TAG_HASH in tags and tags[TAG_HASH] != computed:
            raise InvalidPrompt(
                f"prompt {pv.name!r} v{pv.version} was changed after it was registered: its "
                f"content no longer matches its hash {tags[TAG_HASH][:12]}",
                hint="register the change as a new version instead of editing tags",
            )
        return PromptVersion(
            **spec.model_dump(),
            version=int(pv.version),
            content_hash=computed,
            created_at=datetime.fromtimestamp((pv.creation_timestamp or 0) / 1000, UTC),
            aliases=sorted(pv.aliases or []),
        )

    def alias_history(self, name: str, alias: str) -> list[AliasChange]:
        """Moves of ``alias`` recorded in the prompt's history tags, oldest first."""
        tags = self._prompt(name).tags
        changes: list[AliasChange] = []
        for key in _history_keys(tags, alias):
            try:
                changes.append(AliasChange.model_validate(json.loads(tags[key])))
            except (ValueError, TypeError) as exc:
                raise InvalidPrompt(
                    f"alias history of {name!r}@{alias} is unreadable (tag {key}): {exc}"
                ) from None
        return changes

    # writing

    def register(self, spec: PromptSpec) -> PromptVersion:
        """Create the prompt if needed, then a new version with our tags."""
        name = validate_name(spec.name)
        client = self._client
        try:
            exists = self._call(client.get_prompt, name) is not None
        except _Missing:
            exists = False
        if not exists:
            self._create_prompt(name)
        tags = {
            TAG_VARIABLES: canonical_json(dict(spec.variables)),
            TAG_PARAMETERS: canonical_json(spec.parameters),
            TAG_METADATA: canonical_json(dict(spec.metadata)),
            TAG_HASH: spec.compute_hash(),
        }
        if spec.author:
            tags[TAG_AUTHOR] = spec.author
        try:
            created = self._call(
                client.create_prompt_version,
                name=name,
                template=spec.template,
                description=spec.commit_message,
                tags=tags,
                model_config=_model_config(spec.parameters),
            )
        except _Missing as exc:
            raise InvalidPrompt(f"MLflow refused prompt {name!r}: {exc}") from None
        return self._convert(created)

    def _create_prompt(self, name: str) -> None:
        try:
            self._call(self._client.create_prompt, name)
        except _Exists:
            # a concurrent registration may have created the prompt first, which is fine;
            # otherwise the name belongs to a registered model
            try:
                exists = self._call(self._client.get_prompt, name) is not None
            except _Missing:
                exists = False
            if not exists:
                raise InvalidPrompt(
                    f"{name!r} is already an MLflow registered model, not a prompt",
                    hint="MLflow does not allow a prompt and a model to share a name",
                ) from None
        except _Missing as exc:
            raise InvalidPrompt(f"MLflow refused prompt name {name!r}: {exc}") from None

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str = "",
        actor: str = "",
        action: AliasAction = "promote",
    ) -> AliasChange:
        """Point ``alias`` at ``version`` and append the move to the history tag."""
        validate_alias(alias)
        check_selector(version, None)
        current = self.aliases(name)
        change = AliasChange(
            name=name,
            alias=alias,
            from_version=current.get(alias),
            to_version=version,
            reason=reason,
            actor=actor,
            at=datetime.now(UTC),
            action=action,
        )
        if not change.changed:
            return change
        done = False
        if not _mlflow_prompt_cache_loaded():
            done, _ = self._lightly(lambda light: light.set_alias(name, alias, version))
        if not done:
            try:
                # set_prompt_alias checks the version exists and drops MLflow's cached alias
                self._call(self._client.set_prompt_alias, name, alias, version)
            except _Missing:
                raise unknown_version(name, version, self.list_versions(name)) from None
        self._append_history(change)
        return change

    def delete_alias(
        self, name: str, alias: str, *, reason: str = "", actor: str = ""
    ) -> AliasChange:
        """Remove ``alias`` and append the removal to the history tag."""
        current = self.aliases(name)
        if alias not in current:
            raise unknown_alias(name, alias, current)
        change = AliasChange(
            name=name,
            alias=alias,
            from_version=current[alias],
            to_version=None,
            reason=reason,
            actor=actor,
            at=datetime.now(UTC),
            action="delete",
        )
        done = False
        if not _mlflow_prompt_cache_loaded():
            done, _ = self._lightly(lambda light: light.delete_alias(name, alias))
        if not done:
            try:
                self._call(self._client.delete_prompt_alias, name, alias)
            except _Missing:
                raise unknown_alias(name, alias, self.aliases(name)) from None
        self._append_history(change)
        return change

    def _append_history(self, change: AliasChange) -> None:
        # One new tag per move: concurrent writers never overwrite each other's entries.
        stamp = int(change.at.timestamp() * 1_000_000)
        key = f"{TAG_HISTORY}{change.alias}.{stamp:020d}-{uuid.uuid4().hex[:8]}"
        value = json.dumps(change.model_dump(mode="json"))
        name = change.name
        done, _ = self._lightly(lambda light: light.set_tag(name, key, value))
        if not done:
            self._call(self._client.set_prompt_tag, name, key, value)
        info = self._light_prompt(name)
        tags = info.tags if info is not None else self._prompt(name).tags
        for old in _history_keys(tags, change.alias)[:-HISTORY_KEEP]:
            self._delete_tag(name, old)

    def _delete_tag(self, name: str, key: str) -> None:
        """Remove a prompt-level tag; one already gone is fine."""
        done, _ = self._lightly(lambda light: light.delete_tag(name, key))
        if done:
            return
        try:
            self._call(self._client.delete_prompt_tag, name, key)
        except _Missing:
            pass  # another writer trimmed it first


def _mlflow_prompt_cache_loaded() -> bool:
    """True when this process has MLflow's prompt cache, which only MlflowClient's alias
    calls invalidate (``mlflow.genai.load_prompt`` in the same process would read a stale
    alias for a while): alias moves then go through MlflowClient, already imported."""
    return "mlflow.prompt.registry_utils" in sys.modules


def _history_keys(tags: dict[str, str], alias: str) -> list[str]:
    """The history tag keys of ``alias``, oldest first (their suffix sorts by time)."""
    prefix = f"{TAG_HISTORY}{alias}."
    return sorted(
        key for key in tags if key.startswith(prefix) and _HISTORY_SUFFIX.match(key[len(prefix) :])
    )


def _model_config(parameters: dict[str, Any]) -> dict[str, Any] | None:
    """``parameters`` as an MLflow model_config when its schema accepts them, else None."""
    if not parameters:
        return None
    from mlflow.entities.model_registry import PromptModelConfig

    try:
        config: dict[str, Any] = PromptModelConfig.from_dict(dict(parameters)).to_dict()
    except (ValueError, TypeError):
        return None  # e.g. a negative temperature: ours keeps it, MLflow's UI will not show it
    return config
