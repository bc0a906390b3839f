"""Where KServe loads a release's model from: the pinned artifact location, never ``models:/``.

KServe's storage initializer downloads from object stores and URLs (``s3://``, ``gs://``,
``pvc://``, ``https://``, ...); it cannot read MLflow registry URIs (``models:/name/3``,
``runs:/id/model``) or a location on the machine that registered the model (a path,
``file://``, ``mlflow-artifacts:`` served by a local tracking server). The location comes,
in order, from ``deploy.kubernetes.storage_uri`` or from the model source the release
pinned (so render needs no MLflow call); a registry URI is resolved to the version's
artifact location, from the pin when it names that version, else through the registry. A
location KServe cannot load is refused (BadInput, exit 2) with what to configure instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from releaser.errors import BadInput, ExternalUnavailable, ReleaserError

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.deploy import KubernetesSpec
    from releaser.core.refs import ModelRef
    from releaser.core.release import Release

__all__ = ["KSERVE_SCHEMES", "ResolveModel", "mlflow_resolver", "storage_uri"]

# Storage URI schemes KServe's storage initializer downloads from.
KSERVE_SCHEMES = (
    "s3://",
    "gs://",
    "pvc://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "oci://",
    "hf://",
)
REGISTRY_SCHEMES = ("models:/", "runs:/")
_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")

ResolveModel = Callable[["ModelRef"], str]
"""The artifact location of a registered model version (an MLflow call)."""


def _redact(uri: str) -> str:
    return _PASSWORD.sub(r"\1***@", uri)


def storage_uri(
    service: str,
    k8s: KubernetesSpec,
    release_id: str,
    release: Release | None,
    resolve_model: ResolveModel | None,
) -> str | None:
    """Where KServe loads the release's model from; None if the release pins no model."""
    setting = f"services.{service}.deploy.kubernetes.storage_uri"
    model = release.content.model if release is not None else None
    if k8s.storage_uri:
        uri, origin = k8s.storage_uri.replace("{release}", release_id), setting
    elif model is not None:
        uri, origin = model.source, f"the model source release {release_id} pinned"
    else:
        return None
    if uri.startswith(REGISTRY_SCHEMES):
        if model is None:
            raise BadInput(
                f"{setting} is {uri!r}, a registry URI, but release {release_id} pins no model",
                hint=f"set {setting} to a location KServe can load (s3://, gs://, pvc://, ...)",
            )
        if uri == model.model_uri and not model.source.startswith(REGISTRY_SCHEMES):
            uri = model.source  # what the release pinned: no registry call
        elif resolve_model is not None:
            uri = resolve_model(model)
        origin = f"the artifact location of {model.model_uri}"
    if not uri.startswith(KSERVE_SCHEMES):
        raise BadInput(
            f"KServe cannot load the model of release {release_id}: {origin} is "
            f"{_redact(uri)!r}, not a location its storage initializer downloads from",
            hint="configure an MLflow artifact store KServe can read (s3://, gs://, https://, "
            f"pvc://, ...) and register the model there, or set {setting} in releaser.yaml",
        )
    return uri


def mlflow_resolver(ws: Workspace) -> ResolveModel:
    """Resolve a registry URI through the workspace's MLflow registry."""

    def resolve(model: ModelRef) -> str:
        # The registry's download URI of the version: its artifact (storage) location.
        try:
            client = ws.models.client
            uri = client.get_model_version_download_uri(model.name, str(model.version))
        except ReleaserError:
            raise
        except Exception as exc:
            raise ExternalUnavailable(
                f"could not resolve {model.model_uri} to its artifact location: "
                f"{_redact(str(exc))[:300]}",
                hint="check the MLflow registry is reachable, or set "
                "deploy.kubernetes.storage_uri in releaser.yaml",
            ) from None
        return str(uri)

    return resolve
