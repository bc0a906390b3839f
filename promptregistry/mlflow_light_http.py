"""The light MLflow alias client over MLflow's REST API, with the stdlib's urllib.

See :mod:`promptregistry.mlflow_aliases` for what it sends, how it authenticates
and when it hands a call back to ``MlflowClient``.
"""

from __future__ import annotations

import functools
import json
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from promptregistry.mlflow_light_base import (
    ModelVersionInfo,
    NeedsMlflow,
    RegisteredModelInfo,
    RegistryUnreachable,
    check_names,
    check_tag,
)

if TYPE_CHECKING:
    import ssl

__all__ = ["HTTP_TIMEOUT_S", "HttpAliasClient"]

HTTP_TIMEOUT_S = 10.0
"""Longest wait for one REST call (connect and read); there is no retry."""

_REST = "/api/2.0/mlflow"


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
        check_names(name)
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
        check_names(name)
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
        check_names(name, alias)
        self._call("POST", "alias", body={"name": name, "alias": alias, "version": str(version)})

    def delete_alias(self, name: str, alias: str) -> None:
        """DELETE ``registered-models/alias``."""
        check_names(name, alias)
        self._call("DELETE", "alias", body={"name": name, "alias": alias})

    def set_tag(self, name: str, key: str, value: str) -> None:
        """POST ``registered-models/set-tag``."""
        check_names(name)
        check_tag(key, value)
        self._call("POST", "set-tag", body={"name": name, "key": key, "value": value})

    def delete_tag(self, name: str, key: str) -> None:
        """DELETE ``registered-models/delete-tag``."""
        check_names(name)
        check_tag(key)
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
