"""The model registry seam, and its default implementation on the MLflow registry.

``mlflow`` costs about two seconds to import, so it is imported inside the
methods. Every client is built with explicit tracking and registry URIs:
nothing here reads or sets MLflow's process-wide defaults or depends on the
current directory.

A tracking server that is down must not stall a CI job for minutes. MLflow
retries an HTTP request seven times with exponential back-off by default and
waits up to 120 s for each, so (measured with MLflow 3.17) a request to a port
with nothing listening does not return for several minutes. Two defences:

* before the first request to an ``http(s)`` URI, a TCP connect with a short
  timeout fails fast when nothing listens;
* each call runs with bounded retries and timeout (``MLFLOW_HTTP_REQUEST_*``
  values the user has set in the environment are kept as they are).

A sqlite registry is switched to WAL mode before MLflow first opens it
(:mod:`promptregistry.mlflow_sqlite`): MLflow's commits there cost 3-5x less
than in sqlite's default journal mode.

Reading and moving an alias (what rollback does) goes first through the light
client of :mod:`promptregistry.mlflow_aliases`, which speaks to an HTTP server
or a sqlite registry without importing ``mlflow``: a rollback that moves an
alias then takes a fraction of a second instead of the two seconds ``import
mlflow`` costs. Whatever that client cannot answer exactly as MLflow would (an
unknown model or version, another URI scheme, an unverified schema) goes
through ``MlflowClient`` as before, so users read the same errors.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from promptregistry.mlflow_aliases import (
    AliasClient,
    NeedsMlflow,
    RegisteredModelInfo,
    RegistryUnreachable,
    alias_client,
)
from promptregistry.mlflow_http import bounded_http, probe
from promptregistry.mlflow_sqlite import prefer_wal
from releaser.core.refs import ModelRef
from releaser.errors import ArtifactNotFound, BadInput, ExternalUnavailable, ReleaserError
from releaser.store.redact import redact_url, scrub

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")

__all__ = [
    "MlflowModelRegistry",
    "ModelRegistry",
    "local_mlflow_uris",
    "resolve_tracking_uri",
]


class ModelRegistry(Protocol):
    """Where registered model versions and their aliases live."""

    def resolve(
        self, name: str, *, alias: str | None = None, version: int | None = None
    ) -> ModelRef:
        """Pin ``name`` at ``alias`` or ``version`` (latest version when neither is given)."""
        ...

    def tag_version(self, ref: ModelRef, key: str, value: str) -> None:
        """Set tag ``key`` on the model version ``ref`` names."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of model ``name`` at ``version``."""
        ...

    def get_alias(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, or None when the alias is not set."""
        ...


def local_mlflow_uris(root: Path) -> tuple[str, str]:
    """The embedded default: a sqlite registry and an artifact folder inside ``root``."""
    root = root.resolve()
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}", (root / "mlruns").as_uri()


def resolve_tracking_uri(root: Path, configured: str | None) -> tuple[str, str]:
    """(tracking URI, default artifact location) for the workspace at ``root``.

    ``MLFLOW_TRACKING_URI`` in the environment wins, then ``configured``
    (relative sqlite and file paths are taken relative to ``root``), then
    ``sqlite:///<root>/mlflow.db`` with artifacts in ``<root>/mlruns``. A sqlite
    registry keeps its artifacts in ``mlruns`` beside the database file; for a
    tracking server the artifact location is ``""``: the server chooses.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if not uri:
        return local_mlflow_uris(root)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_absolute():
            db = (root / db).resolve()
        return f"sqlite:///{db.as_posix()}", (db.parent / "mlruns").as_uri()
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return uri, uri
    if not parts.scheme or len(parts.scheme) == 1:  # a bare path (or a Windows drive letter)
        store = Path(uri) if Path(uri).is_absolute() else (root / uri).resolve()
        return store.as_uri(), store.as_uri()
    return uri, ""


def _probe(uri: str) -> None:
    """Fail fast with ExternalUnavailable when nothing listens at an HTTP(S) ``uri``."""
    problem = probe(uri)
    if problem is not None:
        raise ExternalUnavailable(
            f"cannot reach the MLflow server at {redact_url(uri)}: {problem}",
            hint="start the tracking server, or check MLFLOW_TRACKING_URI / mlflow.tracking_uri "
            "in releaser.yaml",
        )


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=3, cutoff=0.5)
    return f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""


def _listing(items: list[str], empty: str) -> str:
    if not items:
        return empty
    shown = ", ".join(items[:20])
    return shown + (f" and {len(items) - 20} more" if len(items) > 20 else "")


class MlflowModelRegistry:
    """The MLflow model registry (sqlite file or tracking server) as a :class:`ModelRegistry`."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        # Explicitly the tracking URI when unset, so MLFLOW_REGISTRY_URI can never sneak in.
        self.registry_uri = registry_uri or tracking_uri
        self._client: MlflowClient | None = None
        self._light: AliasClient | None = None
        self._light_ready = False  # the light client chosen and its server probed
        self._experiments: dict[str, str] = {}  # experiment name -> id, as looked up

    def __repr__(self) -> str:
        return f"MlflowModelRegistry({redact_url(self.tracking_uri)!r})"

    @property
    def client(self) -> MlflowClient:
        """The MLflow client, created (and the server probed) on first use."""
        if self._client is None:
            for uri in dict.fromkeys((self.tracking_uri, self.registry_uri)):
                _probe(uri)
                prefer_wal(uri)  # a sqlite registry commits 3-5x cheaper in WAL mode
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
            )
        return self._client

    @contextmanager
    def _calling(self, what: str) -> Iterator[MlflowClient]:
        """Bound retries, and turn MLflow's failures into releaser errors with hints."""
        with bounded_http():
            try:
                # Opening a sqlite registry reads its schema: a corrupt file fails here.
                client = self.client
            except Exception as exc:
                translated = self._translate(exc, what)
                if translated is exc:
                    raise
                raise translated from exc
            try:
                yield client
            except ReleaserError:
                raise
            except Exception as exc:
                translated = self._translate(exc, what)
                if translated is exc:
                    raise
                raise translated from exc

    def _translate(self, exc: Exception, what: str) -> Exception:
        from mlflow.exceptions import MlflowException

        where = redact_url(self.registry_uri)
        # MLflow puts the request URL, password included, into its error messages.
        secrets = [urlsplit(u).password or "" for u in (self.tracking_uri, self.registry_uri)]
        broken = _database_error(exc)
        if broken is not None:
            return ExternalUnavailable(
                f"the MLflow registry database at {where} cannot be read while {what}: "
                f"{scrub(broken, secrets)}",
                hint="the file is damaged or is not an MLflow database: restore it from a "
                "backup (or point mlflow.registry_uri at the right one); the release state in "
                "releaser's store is untouched",
            )
        if _is_transport_error(exc):
            return ExternalUnavailable(
                f"MLflow at {where} failed while {what}: {scrub(str(exc), secrets)}",
                hint="check that the tracking server is up and reachable, then retry",
            )
        if isinstance(exc, MlflowException):
            if exc.error_code == "INVALID_PARAMETER_VALUE":
                return BadInput(
                    f"MLflow rejected the request while {what}: {scrub(exc.message, secrets)}",
                    hint="check the model name, version and alias in releaser.yaml",
                )
            return ExternalUnavailable(
                f"MLflow at {where} failed while {what}: {scrub(exc.message, secrets)}",
                hint="check the registry (for a sqlite file: 'mlflow db upgrade URI' after an "
                "MLflow upgrade; for a server: its logs and your credentials)",
            )
        return exc

    def _registered_model(self, client: MlflowClient, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        names = sorted(m.name for m in client.search_registered_models(max_results=1000))
        raise ArtifactNotFound(
            f"no registered model named {name!r} in {redact_url(self.registry_uri)}; "
            f"{_did_you_mean(name, names)}registered models: "
            f"{_listing(names, '(none)')}",
            hint="register the model first (mlflow.register_model or log_model with "
            "registered_model_name), or fix the model name in releaser.yaml",
        )

    def _versions(self, client: MlflowClient, name: str) -> list[int]:
        quote = '"' if "'" in name else "'"
        found = client.search_model_versions(f"name = {quote}{name}{quote}")
        return sorted(int(v.version) for v in found)

    def _not_found(
        self, client: MlflowClient, name: str, what: str, aliases: dict[str, int]
    ) -> ArtifactNotFound:
        versions = [str(v) for v in self._versions(client, name)]
        alias_text = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items()))
        return ArtifactNotFound(
            f"model {name!r} has no {what}; versions: {_listing(versions, '(none)')}; "
            f"aliases: {alias_text or '(none)'}",
            hint="pin one of the versions or aliases listed in releaser.yaml, or point the "
            "alias at a version (MLflow UI, or MlflowClient.set_registered_model_alias)",
        )

    def resolve(
        self, name: str, *, alias: str | None = None, version: int | None = None
    ) -> ModelRef:
        """Pin ``name`` at ``alias`` or ``version``; with neither, the highest version.

        With both, the alias must currently point at that version.
        """
        with self._calling(f"resolving model {name!r}") as client:
            model = self._registered_model(client, name)
            aliases = {a: int(v) for a, v in dict(model.aliases or {}).items()}
            if alias is not None:
                if alias not in aliases:
                    raise self._not_found(client, name, f"alias {alias!r}", aliases)
                if version is not None and aliases[alias] != version:
                    raise BadInput(
                        f"alias {alias!r} of model {name!r} points at version "
                        f"{aliases[alias]}, not {version}",
                        hint="pin either the alias or the version, or move the alias",
                    )
                number = aliases[alias]
            elif version is not None:
                number = version
            else:
                versions = self._versions(client, name)
                if not versions:
                    raise self._not_found(client, name, "versions at all", aliases)
                number = versions[-1]
            mv = self._model_version(client, name, number, aliases)
            download_uri = client.get_model_version_download_uri(name, str(number))
            return ModelRef(
                name=name,
                version=number,
                alias=alias,
                run_id=mv.run_id or None,
                source=str(mv.source),
                signature=self._signature(download_uri),
                model_uri=f"models:/{name}/{number}",
            )

    def _model_version(
        self, client: MlflowClient, name: str, number: int, aliases: dict[str, int]
    ) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return client.get_model_version(name, str(number))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        raise self._not_found(client, name, f"version {number}", aliases)

    def _signature(self, download_uri: str) -> dict[str, Any] | None:
        """The model's signature from its MLmodel file, with the JSON strings parsed."""
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(
            download_uri, tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
        )
        with tempfile.TemporaryDirectory(prefix="releaser-mlmodel-") as tmp:
            try:
                local = repo.download_artifacts("MLmodel", dst_path=tmp)  # type: ignore[no-untyped-call]
            except (MlflowException, OSError):
                return None  # not an MLflow-format model (e.g. a bare file registered as source)
            signature = Model.load(local).signature
        if signature is None:
            return None
        out: dict[str, Any] = {}
        for key, value in signature.to_dict().items():
            if value is not None:
                out[key] = json.loads(value) if isinstance(value, str) else value
        return out

    def tag_version(self, ref: ModelRef, key: str, value: str) -> None:
        """Set tag ``key`` = ``value`` on the model version ``ref`` names."""
        with self._calling(f"tagging {ref.model_uri}") as client:
            model = self._registered_model(client, ref.name)
            aliases = {a: int(v) for a, v in dict(model.aliases or {}).items()}
            self._model_version(client, ref.name, ref.version, aliases)
            client.set_model_version_tag(ref.name, str(ref.version), key, value)

    def _lightly(self, what: str, call: Callable[[AliasClient], T]) -> tuple[bool, T | None]:
        """(True, answer) from the light alias client; (False, None) when MlflowClient must answer.

        The server is probed first, as for MlflowClient, so a dead server reads the
        same; a transport failure after that is ExternalUnavailable at once.
        """
        if not self._light_ready:
            light = alias_client(self.registry_uri)
            if light is not None:
                _probe(self.registry_uri)
            self._light, self._light_ready = light, True
        if self._light is None:
            return False, None
        try:
            return True, call(self._light)
        except NeedsMlflow:
            return False, None
        except RegistryUnreachable as exc:
            secrets = [urlsplit(self.registry_uri).password or ""]
            raise ExternalUnavailable(
                f"MLflow at {redact_url(self.registry_uri)} failed while {what}: "
                f"{scrub(exc.detail, secrets)}",
                hint="check that the tracking server is up and reachable, then retry",
            ) from None

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of model ``name`` at ``version`` (idempotent)."""
        what = f"setting alias {alias!r} of {name!r}"

        def light_set(light: AliasClient) -> None:
            if _model(light, name).aliases.get(alias) == version:
                return
            light.set_alias(name, alias, version)

        done, _ = self._lightly(what, light_set)
        if done:
            return
        with self._calling(what) as client:
            model = self._registered_model(client, name)
            aliases = {a: int(v) for a, v in dict(model.aliases or {}).items()}
            if aliases.get(alias) == version:
                return
            self._model_version(client, name, version, aliases)
            client.set_registered_model_alias(name, alias, str(version))

    def get_alias(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, or None; an unknown model is ArtifactNotFound."""
        what = f"reading alias {alias!r} of {name!r}"
        done, found = self._lightly(what, lambda light: _model(light, name).aliases.get(alias))
        if done:
            return found
        with self._calling(what) as client:
            model = self._registered_model(client, name)
            value = dict(model.aliases or {}).get(alias)
            return int(value) if value is not None else None

    def log_run(
        self,
        experiment: str,
        *,
        artifact_location: str,
        run_name: str,
        tags: dict[str, str],
        metrics: dict[str, float],
        files: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> str:
        """Log a finished MLflow run in ``experiment`` (created when missing); its run id.

        ``files`` maps artifact names to text. Four requests: create the run with
        its tags, log metrics (and params) in one batch, write the artifacts, mark
        it finished; a run whose logging fails is marked FAILED. Tags cost least:
        MLflow writes them with the run, while params take a session of their own.
        The experiment id is looked up on first use and remembered by this
        registry object; when that id stops working (the experiment was deleted
        meanwhile) it is looked up again, once.
        """
        with self._calling(f"logging a run in experiment {experiment!r}") as client:

            def create() -> Any:
                experiment_id = self._experiment_id(client, experiment, artifact_location)
                return client.create_run(experiment_id, run_name=run_name, tags=tags)

            try:
                run = create()
            except Exception:  # noqa: BLE001 - a remembered id that has gone: look it up again
                if self._experiments.pop(experiment, None) is None:
                    raise
                run = create()
            run_id: str = run.info.run_id
            from mlflow.entities import Metric, Param

            stamp = run.info.start_time
            try:
                client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()],
                    params=[Param(k, v) for k, v in (params or {}).items()],
                )
                repository = self._artifacts(run.info.artifact_uri)
                with tempfile.TemporaryDirectory(prefix="releaser-run-") as tmp:
                    for name, text in files.items():
                        (Path(tmp) / name).write_text(text, encoding="utf-8")
                    repository.log_artifacts(tmp)
            except BaseException:
                with suppress(Exception):  # the first failure is the one to report
                    client.set_terminated(run_id, "FAILED")
                raise
            client.set_terminated(run_id, "FINISHED")
            return run_id

    def finished_run(self, experiment: str, tag: str, value: str) -> str | None:
        """The id of a FINISHED run in ``experiment`` tagged ``tag = value``, or None.

        How a re-run finds the run a killed process logged before it could record it. A
        run still RUNNING (its logger killed mid-way) or FAILED does not count.
        """
        with self._calling(f"searching experiment {experiment!r} for a run") as client:
            experiment_id = self._experiments.get(experiment)
            if experiment_id is None:
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    return None  # nothing was ever logged in it
                experiment_id = found.experiment_id
            quoted = value.replace("'", "")
            runs = client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{tag}` = '{quoted}' and attributes.status = 'FINISHED'",
                max_results=1,
            )
            return str(runs[0].info.run_id) if runs else None

    def _experiment_id(self, client: MlflowClient, name: str, artifact_location: str) -> str:
        known = self._experiments.get(name)
        if known is not None:
            return known
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                known = client.create_experiment(name, artifact_location=artifact_location or None)
            except Exception:  # noqa: BLE001 - maybe another run created it just now
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise ExternalUnavailable(
                    f"the MLflow experiment {name!r} is deleted",
                    hint=f"restore it (mlflow experiments restore --experiment-id "
                    f"{experiment.experiment_id}) or delete it for good (mlflow gc)",
                )
            known = str(experiment.experiment_id)
        assert known is not None
        self._experiments[name] = known
        return known

    def _artifacts(self, artifact_uri: str) -> Any:
        # The run's artifact repository from the URI create_run returned: what
        # MlflowClient.log_artifacts builds after fetching the run again.
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

        uri = add_databricks_profile_info_to_artifact_uri(artifact_uri, self.tracking_uri)  # type: ignore[no-untyped-call]
        return get_artifact_repository(uri, tracking_uri=self.tracking_uri)


def _model(light: AliasClient, name: str) -> RegisteredModelInfo:
    """The model's aliases and tags from the light client; NeedsMlflow for a prompt, which
    MLflow keeps as a registered model but MlflowClient's model calls do not see."""
    info = light.model(name)
    if info.is_prompt:
        raise NeedsMlflow(f"{name!r} is a prompt, not a model")
    return info


def _database_error(exc: BaseException) -> str | None:
    """The driver's message when ``exc`` comes from a database that cannot be read."""
    import sqlite3

    seen: BaseException | None = exc
    while seen is not None:
        # Not OperationalError ("database is locked" passes) nor IntegrityError (an answer).
        if isinstance(seen, sqlite3.DatabaseError) and not isinstance(
            seen, sqlite3.OperationalError | sqlite3.IntegrityError
        ):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _is_transport_error(exc: BaseException) -> bool:
    """True for failures to talk to the server at all, as opposed to answers from it."""
    seen: BaseException | None = exc
    while seen is not None:
        # requests' ConnectionError, Timeout and retry exhaustion are all OSError subclasses.
        if isinstance(seen, OSError) and not isinstance(seen, FileNotFoundError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "Max retries exceeded" in text or "Failed to establish a new connection" in text
