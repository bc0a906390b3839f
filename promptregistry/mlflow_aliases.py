"""Registered-model aliases and tags in an MLflow registry, without importing ``mlflow``.

``import mlflow`` costs about two seconds, while reading or moving an alias is
one HTTP request or one small sqlite transaction. Rollback, the path operations
run under pressure, moves aliases and nothing else in MLflow, so this module
does those calls itself, and hands everything else back to ``MlflowClient``.

What it speaks, chosen by the registry URI:

``http://`` and ``https://`` (a tracking server)
    MLflow's REST API (``/api/2.0/mlflow/registered-models/...``) with the
    stdlib's urllib: ``registered-models/get`` (the model with its aliases and
    tags), ``registered-models/alias`` (POST to set, DELETE to remove),
    ``registered-models/set-tag`` and ``delete-tag``, and ``model-versions/get``
    (one version with its tags and aliases, for a prompt read). Credentials
    are sent as ``MlflowClient`` sends them: ``user:password@`` in the URI, else
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (environment, then
    ``~/.mlflow/credentials``) as basic auth, else ``MLFLOW_TRACKING_TOKEN`` as a
    bearer token (never on to a redirect, which is left to MlflowClient); TLS is
    checked against ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
    ``REQUESTS_CA_BUNDLE`` or certifi's bundle, as requests does, and
    ``MLFLOW_TRACKING_INSECURE_TLS=true`` turns the check off. One attempt of
    at most :data:`HTTP_TIMEOUT_S`; credentials never appear in an error. An
    installed plugin that adds headers to MlflowClient's requests (entry point
    group ``mlflow.request_header_provider``) leaves every call to MlflowClient.

``sqlite:///PATH`` (the embedded default)
    The five tables MLflow 3's ``SqlAlchemyStore`` reads and writes for these
    calls, with the stdlib's sqlite3, each write in one ``BEGIN IMMEDIATE``
    transaction (busy timeout :data:`SQLITE_BUSY_TIMEOUT_S`). Read from MLflow
    3.17's ``model_registry/sqlalchemy_store.py`` and ``dbmodels/models.py``:

    * ``set_registered_model_alias`` checks the model version exists and is not
      ``Deleted_Internal``, then merges the row (workspace, name, alias) ->
      version of ``registered_model_aliases``; no timestamp changes.
    * ``delete_registered_model_alias`` checks the registered model exists, then
      deletes the alias row if there is one.
    * ``set_registered_model_tag`` checks the model exists, then merges the row
      of ``registered_model_tags``; ``delete_registered_model_tag`` checks the
      model exists, then deletes the row if there is one. Neither changes a
      timestamp.
    * ``get_model_version`` reads the version unless it is ``Deleted_Internal``,
      with its tags, and the aliases that point at it.
    * every row belongs to the workspace ``default`` (MLflow's single-tenant
      mode; with ``MLFLOW_ENABLE_WORKSPACES`` or ``MLFLOW_WORKSPACE`` set this
      module stands aside).

    The schema is checked before anything is read: ``alembic_version`` must
    hold a revision in :data:`VERIFIED_REVISIONS` (the one MLflow 3.17 creates
    and upgrades to, whose tables are the ones above). Any other revision, a
    missing or damaged file, or a locked database, and the call goes to
    ``MlflowClient``, which migrates, waits or reports in its own words.

    Why not SQLAlchemy alone (without the rest of MLflow)? Importing it costs
    0.12 s, its ORM models would have to be redeclared here anyway, and the
    statements are a few lines of SQL each. Why not ``MlflowClient`` with a
    lighter import? Its registry client imports most of ``mlflow`` (pandas,
    alembic, the model flavours) on construction.

The clients are :class:`HttpAliasClient` (:mod:`promptregistry.mlflow_light_http`)
and :class:`SqliteAliasClient` (:mod:`promptregistry.mlflow_light_sqlite`);
:func:`alias_client` picks one. What they share is in
:mod:`promptregistry.mlflow_light_base`.

Any other scheme (``databricks``, ``postgresql://``, ``file:``) and any call
this module cannot answer exactly as MLflow would raise :class:`NeedsMlflow`:
the caller repeats the call through ``MlflowClient``. That includes every
answer that is not a plain success (an unknown model or version, a name MLflow
refuses, a server error), so the errors users read are ``MlflowClient``'s,
translated by the caller as before. Only a transport failure (nothing answers,
a timeout) is raised here, as :class:`RegistryUnreachable`: going round again
through ``MlflowClient`` would only wait longer.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from promptregistry.mlflow_light_base import (
    IS_PROMPT_TAG,
    AliasClient,
    ModelVersionInfo,
    NeedsMlflow,
    RegisteredModelInfo,
    RegistryUnreachable,
)
from promptregistry.mlflow_light_http import HTTP_TIMEOUT_S, HttpAliasClient
from promptregistry.mlflow_light_sqlite import (
    SQLITE_BUSY_TIMEOUT_S,
    VERIFIED_REVISIONS,
    SqliteAliasClient,
)
from promptregistry.mlflow_sqlite import sqlite_path

__all__ = [
    "HTTP_TIMEOUT_S",
    "IS_PROMPT_TAG",
    "SQLITE_BUSY_TIMEOUT_S",
    "VERIFIED_REVISIONS",
    "AliasClient",
    "HttpAliasClient",
    "ModelVersionInfo",
    "NeedsMlflow",
    "RegisteredModelInfo",
    "RegistryUnreachable",
    "SqliteAliasClient",
    "alias_client",
]

# Settings that change how MlflowClient authenticates or which rows it sees; with any of
# them set, it does the call.
_CLIENT_ONLY_ENV = (
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_ENABLE_WORKSPACES",
    "MLFLOW_WORKSPACE",
)
_FALSE = ("", "0", "false", "no", "off")


def alias_client(registry_uri: str) -> AliasClient | None:
    """The light client for ``registry_uri``, or None when MlflowClient must do every call.

    None for schemes other than http(s) and ``sqlite:///PATH``, and when the
    environment asks for an authentication or workspace MlflowClient handles
    itself (:data:`_CLIENT_ONLY_ENV`).
    """
    if any(os.environ.get(k, "").strip().lower() not in _FALSE for k in _CLIENT_ONLY_ENV):
        return None
    parts = urlsplit(registry_uri)
    if parts.scheme in ("http", "https") and parts.hostname:
        return HttpAliasClient(registry_uri)
    path = sqlite_path(registry_uri)
    if path is not None:
        return SqliteAliasClient(path)
    return None
