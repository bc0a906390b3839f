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

import functools
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from promptregistry.mlflow_sqlite import prefer_wal, sqlite_path

if TYPE_CHECKING:
    import ssl

__all__ = [
    "HTTP_TIMEOUT_S",
    "IS_PROMPT_TAG",
    "ModelVersionInfo",
    "SQLITE_BUSY_TIMEOUT_S",
    "VERIFIED_REVISIONS",
    "AliasClient",
    "HttpAliasClient",
    "NeedsMlflow",
    "RegisteredModelInfo",
    "RegistryUnreachable",
    "SqliteAliasClient",
    "alias_client",
]

HTTP_TIMEOUT_S = 10.0
"""Longest wait for one REST call (connect and read); there is no retry."""

SQLITE_BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another writer of the sqlite registry (MLflow waits as long)."""

VERIFIED_REVISIONS = frozenset({"dc11669786a5"})
"""Alembic revisions of MLflow's schema whose alias and tag tables this module was checked
against (MLflow 3.17's head). A registry at any other revision goes through MlflowClient."""

IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
"""The tag (value ``true``) that makes a registered model an MLflow prompt; MlflowClient's
model calls do not see prompts, and its prompt calls see nothing else."""

WORKSPACE = "default"
"""The workspace of every row in MLflow's single-tenant mode."""

_DELETED_STAGE = "Deleted_Internal"
_ALIAS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_TAG_KEY = re.compile(r"^[\w.\- /]+$")
_REST = "/api/2.0/mlflow"
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


class NeedsMlflow(Exception):
    """This call cannot be answered here exactly as MLflow would: repeat it with MlflowClient."""


class RegistryUnreachable(Exception):
    """Nothing answered at the registry (refused, reset, timed out); ``detail`` says how."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class RegisteredModelInfo:
    """What the alias paths read of a registered model (or prompt): its aliases and tags."""

    name: str
    aliases: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_prompt(self) -> bool:
        """True for an MLflow prompt (a registered model tagged as one)."""
        return self.tags.get(IS_PROMPT_TAG) == "true"


@dataclass(frozen=True)
class ModelVersionInfo:
    """What a prompt read needs of one live model version: its text fields, tags and aliases."""

    name: str
    version: int
    description: str | None
    creation_timestamp: int | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


class AliasClient(Protocol):
    """Alias and tag calls on registered models; NeedsMlflow where MlflowClient must answer."""

    def model(self, name: str) -> RegisteredModelInfo:
        """The model's aliases and tags; NeedsMlflow when there is no such model.

        Prompts are registered models too (tagged :data:`IS_PROMPT_TAG`): callers
        that want one kind check the tag.
        """
        ...

    def model_version(self, name: str, version: int) -> ModelVersionInfo:
        """One live (not deleted) version with its tags and aliases; NeedsMlflow when missing."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``; NeedsMlflow when the version does not exist."""
        ...

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` (nothing to do when unset); NeedsMlflow for an unknown model."""
        ...

    def set_tag(self, name: str, key: str, value: str) -> None:
        """Set the model-level tag ``key``; NeedsMlflow for an unknown model."""
        ...

    def delete_tag(self, name: str, key: str) -> None:
        """Remove the model-level tag ``key`` (if set); NeedsMlflow for an unknown model."""
        ...


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


def _odd_path(text: str) -> bool:
    """True where MLflow's path check may refuse ``text`` (``..`` segments, a leading ``/``)."""
    return text.startswith("/") or ".." in text or "//" in text


def _check_names(name: str, alias: str | None = None) -> None:
    """NeedsMlflow for a name or alias MLflow refuses (MLflow's own message is the one to show)."""
    if not name.strip() or "/" in name or ":" in name or _odd_path(name):
        raise NeedsMlflow(f"model name {name!r} is refused by MLflow")
    if alias is not None and (
        not alias
        or len(alias) > 255
        or not _ALIAS.match(alias)
        or alias.lower() == "latest"
        or _VERSION_ALIAS.match(alias)
    ):
        raise NeedsMlflow(f"alias {alias!r} is refused or reserved by MLflow")


def _check_tag(key: str, value: str = "") -> None:
    """NeedsMlflow for a tag key or value MLflow may refuse (a narrower rule than MLflow's)."""
    if not _TAG_KEY.match(key) or _odd_path(key) or len(key) > 250 or len(value) > 5000:
        raise NeedsMlflow(f"tag {key[:40]!r} is left to MLflow's own checks")


class HttpAliasClient:
    """The calls over MLflow's REST API, with urllib (one attempt, bounded by a timeout)."""

    def __init__(self, uri: str, *, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        parts = urlsplit(uri)
        netloc = parts.hostname or ""
        if ":" in netloc:  # an IPv6 address
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
        self._base = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
        self._url_user = unquote(parts.username) if parts.username is not None else None
        self._url_password = unquote(parts.password or "") if parts.username is not None else None
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"HttpAliasClient({self._base!r})"

    def _authorization(self) -> str | None:
        """The Authorization header MlflowClient (through requests) would send."""
        if _header_plugins():
            raise NeedsMlflow("a plugin adds headers to MlflowClient's requests")
        # requests replaces any header with the URI's user:password when there is one.
        if self._url_user is not None:
            return _basic(self._url_user, self._url_password or "")
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if not (user and password):
            file_user, file_password = _credentials_file()
            user, password = user or file_user, password or file_password
        if user and password:
            return _basic(user, password)
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if token:
            return f"Bearer {token}"
        if _netrc_exists():
            # requests would send ~/.netrc's login for this host: MlflowClient does the call.
            raise NeedsMlflow("credentials for the server may come from a .netrc file")
        return None

    def _context(self) -> ssl.SSLContext | None:
        if not self._base.startswith("https:"):
            return None
        import ssl

        if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() == "true":
            return ssl._create_unverified_context()
        cafile = (
            os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
            or os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
        )
        if cafile is None:
            try:
                import certifi  # requests' own trust store
            except ImportError:  # pragma: no cover - requests depends on certifi
                return ssl.create_default_context()
            cafile = certifi.where()
        if os.path.isdir(cafile):
            return ssl.create_default_context(capath=cafile)
        return ssl.create_default_context(cafile=cafile)

    def _call(
        self,
        method: str,
        endpoint: str,
        *,
        query: str = "",
        body: dict[str, Any] | None = None,
        api: str = "registered-models",
    ) -> dict[str, Any]:
        """One REST call: the JSON answer; NeedsMlflow for any error answer."""
        # urllib.request (with http.client and email) costs ~8 ms to import: a sqlite
        # registry never needs it.
        import http.client
        import urllib.error
        import urllib.request

        class NoRedirects(urllib.request.HTTPRedirectHandler):
            """A redirect is an answer MlflowClient follows (or not) its own way."""

            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None  # urllib then raises HTTPError with the 3xx status

        url = f"{self._base}{_REST}/{api}/{endpoint}{'?' + query if query else ''}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        auth = self._authorization()
        if auth is not None:
            # never sent on to another URL, should a redirect be followed after all
            request.add_unredirected_header("Authorization", auth)
        handlers: list[urllib.request.BaseHandler] = [NoRedirects()]
        context = self._context()
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=self._timeout_s) as response:
                raw = response.read(1_000_001)
                short = len(raw) <= 1_000_000 and bool(response.length)  # bytes still owed
        except urllib.error.HTTPError as exc:
            # An answer, not a transport failure: MlflowClient repeats the call and
            # reports it in the words users already know.
            exc.close()
            raise NeedsMlflow(
                f"the server answered HTTP {exc.code} to {method} {endpoint}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            # refused, reset, timed out (socket and ssl errors are OSErrors), or cut short
            reason = getattr(exc, "reason", None) or exc
            raise RegistryUnreachable(f"{method} {endpoint}: {reason}") from None
        if short:
            raise RegistryUnreachable(f"{method} {endpoint}: the answer was cut short")
        if len(raw) > 1_000_000:
            raise NeedsMlflow(f"the answer to {method} {endpoint} is larger than 1 MB")
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            raise NeedsMlflow(f"the answer to {method} {endpoint} is not JSON") from None
        if not isinstance(answer, dict):
            raise NeedsMlflow(f"the answer to {method} {endpoint} is not a JSON object")
        return answer

    def model(self, name: str) -> RegisteredModelInfo:
        """The model's aliases and tags (``registered-models/get``)."""
        _check_names(name)
        found = self._call("GET", "get", query=f"name={quote(name, safe='')}")
        model = found.get("registered_model")
        if not isinstance(model, dict) or model.get("name") != name:
            raise NeedsMlflow(f"the server's answer does not describe model {name!r}")
        try:
            aliases = {str(a["alias"]): int(a["version"]) for a in model.get("aliases", [])}
            tags = {str(t["key"]): str(t.get("value", "")) for t in model.get("tags", [])}
        except (KeyError, TypeError, ValueError):
            raise NeedsMlflow(f"the server's answer for model {name!r} is not understood") from None
        return RegisteredModelInfo(name, aliases, tags)

    def model_version(self, name: str, version: int) -> ModelVersionInfo:
        """The version with its tags and aliases (``model-versions/get``)."""
        _check_names(name)
        found = self._call(
            "GET",
            "get",
            query=f"name={quote(name, safe='')}&version={int(version)}",
            api="model-versions",
        )
        mv = found.get("model_version")
        if not isinstance(mv, dict) or mv.get("name") != name:
            raise NeedsMlflow(f"the server's answer does not describe {name!r} v{version}")
        try:
            if int(mv["version"]) != int(version):
                raise ValueError("another version")
            created = mv.get("creation_timestamp")
            return ModelVersionInfo(
                name=name,
                version=int(version),
                description=mv.get("description") or None,
                creation_timestamp=int(created) if created is not None else None,
                tags={str(t["key"]): str(t.get("value", "")) for t in mv.get("tags", [])},
                aliases=sorted(str(a) for a in mv.get("aliases", [])),
            )
        except (KeyError, TypeError, ValueError):
            raise NeedsMlflow(
                f"the server's answer for {name!r} v{version} is not understood"
            ) from None

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """POST ``registered-models/alias``; the server checks that the version exists."""
        _check_names(name, alias)
        self._call("POST", "alias", body={"name": name, "alias": alias, "version": str(version)})

    def delete_alias(self, name: str, alias: str) -> None:
        """DELETE ``registered-models/alias``."""
        _check_names(name, alias)
        self._call("DELETE", "alias", body={"name": name, "alias": alias})

    def set_tag(self, name: str, key: str, value: str) -> None:
        """POST ``registered-models/set-tag``."""
        _check_names(name)
        _check_tag(key, value)
        self._call("POST", "set-tag", body={"name": name, "key": key, "value": value})

    def delete_tag(self, name: str, key: str) -> None:
        """DELETE ``registered-models/delete-tag``."""
        _check_names(name)
        _check_tag(key)
        self._call("DELETE", "delete-tag", body={"name": name, "key": key})


@functools.cache
def _header_plugins() -> bool:
    """True when a package plugs request headers into MlflowClient (an entry point of group
    ``mlflow.request_header_provider``), e.g. for single sign-on: only MlflowClient sends
    them. Reading the entry points costs tens of milliseconds, once per process, and only
    for an HTTP registry."""
    from importlib.metadata import entry_points

    return bool(entry_points(group="mlflow.request_header_provider"))


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.standard_b64encode(f"{user}:{password}".encode()).decode("ascii")


def _credentials_file() -> tuple[str | None, str | None]:
    """(username, password) from ``~/.mlflow/credentials``, as MLflow reads it."""
    path = os.path.expanduser("~/.mlflow/credentials")
    if not os.path.exists(path):
        return None, None
    import configparser

    config = configparser.ConfigParser()
    try:
        config.read(path)
    except configparser.Error:
        raise NeedsMlflow("~/.mlflow/credentials cannot be parsed here") from None
    if "mlflow" not in config:
        return None, None
    section = config["mlflow"]
    return section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")


def _netrc_exists() -> bool:
    netrc = os.environ.get("NETRC")
    candidates = [netrc] if netrc else [os.path.expanduser(f"~/{n}") for n in (".netrc", "_netrc")]
    return any(os.path.isfile(c) for c in candidates)


class SqliteAliasClient:
    """The calls on a local sqlite registry, with the stdlib's sqlite3 (see the module doc)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._wal_tried = False

    def __repr__(self) -> str:
        return f"SqliteAliasClient({str(self.path)!r})"

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction on the registry at a verified schema; NeedsMlflow for anything else."""
        if not self.path.is_file():
            raise NeedsMlflow(f"no sqlite registry at {self.path} yet")
        if not self._wal_tried:
            prefer_wal(f"sqlite:///{self.path.as_posix()}")  # as MlflowClient's path does
            self._wal_tried = True
        try:
            # mode=rw: never create a database here; autocommit, so BEGIN is ours.
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=rw",
                uri=True,
                timeout=self._busy_timeout_s,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise NeedsMlflow(f"cannot open {self.path}: {exc}") from None
        with closing(conn):
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                revisions = {r for (r,) in conn.execute("SELECT version_num FROM alembic_version")}
                if len(revisions) != 1 or not revisions <= VERIFIED_REVISIONS:
                    raise NeedsMlflow(
                        f"the registry's schema is at {sorted(revisions)}, not a verified revision"
                    )
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise NeedsMlflow(f"sqlite: {exc}") from None
                raise

    @staticmethod
    def _need_model(conn: sqlite3.Connection, name: str) -> None:
        row = conn.execute(
            "SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?", (WORKSPACE, name)
        ).fetchone()
        if row is None:
            raise NeedsMlflow(f"no registered model {name!r}")

    def model(self, name: str) -> RegisteredModelInfo:
        """The model's aliases and tags, read in one transaction."""
        _check_names(name)
        with self._transaction(write=False) as conn:
            self._need_model(conn, name)
            aliases = conn.execute(
                "SELECT alias, version FROM registered_model_aliases "
                "WHERE workspace = ? AND name = ?",
                (WORKSPACE, name),
            ).fetchall()
            tags = conn.execute(
                'SELECT "key", value FROM registered_model_tags WHERE workspace = ? AND name = ?',
                (WORKSPACE, name),
            ).fetchall()
        return RegisteredModelInfo(
            name, {str(a): int(v) for a, v in aliases}, {str(k): str(v or "") for k, v in tags}
        )

    def model_version(self, name: str, version: int) -> ModelVersionInfo:
        """The live version with its tags and the aliases pointing at it, in one transaction."""
        _check_names(name)
        with self._transaction(write=False) as conn:
            row = conn.execute(
                "SELECT description, creation_time FROM model_versions WHERE workspace = ? "
                "AND name = ? AND version = ? AND (current_stage IS NULL OR current_stage != ?)",
                (WORKSPACE, name, int(version), _DELETED_STAGE),
            ).fetchone()
            if row is None:
                raise NeedsMlflow(f"model {name!r} has no version {version}")
            tags = conn.execute(
                'SELECT "key", value FROM model_version_tags WHERE workspace = ? AND name = ? '
                "AND version = ?",
                (WORKSPACE, name, int(version)),
            ).fetchall()
            aliases = conn.execute(
                "SELECT alias FROM registered_model_aliases WHERE workspace = ? AND name = ? "
                "AND version = ?",
                (WORKSPACE, name, int(version)),
            ).fetchall()
        return ModelVersionInfo(
            name=name,
            version=int(version),
            description=row[0],
            creation_timestamp=int(row[1]) if row[1] is not None else None,
            tags={str(k): str(v or "") for k, v in tags},
            aliases=sorted(str(a) for (a,) in aliases),
        )

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Check the version is live, then insert or repoint the alias row."""
        _check_names(name, alias)
        with self._transaction(write=True) as conn:
            live = conn.execute(
                "SELECT 1 FROM model_versions WHERE workspace = ? AND name = ? AND version = ? "
                "AND (current_stage IS NULL OR current_stage != ?)",
                (WORKSPACE, name, int(version), _DELETED_STAGE),
            ).fetchone()
            if live is None:
                raise NeedsMlflow(f"model {name!r} has no version {version}")
            current = conn.execute(
                "SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ? "
                "AND alias = ?",
                (WORKSPACE, name, alias),
            ).fetchone()
            if current is not None and int(current[0]) == int(version):
                return  # already there: no write (MLflow's merge would change nothing either)
            conn.execute(
                "INSERT INTO registered_model_aliases (workspace, name, alias, version) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (workspace, name, alias) "
                "DO UPDATE SET version = excluded.version",
                (WORKSPACE, name, alias, int(version)),
            )

    def delete_alias(self, name: str, alias: str) -> None:
        """Check the model exists, then delete the alias row (if any)."""
        _check_names(name, alias)
        with self._transaction(write=True) as conn:
            self._need_model(conn, name)
            conn.execute(
                "DELETE FROM registered_model_aliases WHERE workspace = ? AND name = ? "
                "AND alias = ?",
                (WORKSPACE, name, alias),
            )

    def set_tag(self, name: str, key: str, value: str) -> None:
        """Check the model exists, then insert or replace the tag row."""
        _check_names(name)
        _check_tag(key, value)
        with self._transaction(write=True) as conn:
            self._need_model(conn, name)
            conn.execute(
                'INSERT INTO registered_model_tags (workspace, name, "key", value) '
                'VALUES (?, ?, ?, ?) ON CONFLICT (workspace, "key", name) '
                "DO UPDATE SET value = excluded.value",
                (WORKSPACE, name, key, value),
            )

    def delete_tag(self, name: str, key: str) -> None:
        """Check the model exists, then delete the tag row (if any)."""
        _check_names(name)
        _check_tag(key)
        with self._transaction(write=True) as conn:
            self._need_model(conn, name)
            conn.execute(
                'DELETE FROM registered_model_tags WHERE workspace = ? AND name = ? AND "key" = ?',
                (WORKSPACE, name, key),
            )
