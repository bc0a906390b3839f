"""Choosing a prompt backend from a URI (above the backends, which import the Protocol)."""

from __future__ import annotations

from promptregistry.backend import PromptBackend, redact_uri
from promptregistry.errors import PromptRegistryError

__all__ = ["open_backend"]


def open_backend(uri: str) -> PromptBackend:
    """A backend from a URI: ``file:///dir[?folder=NAME]`` for files, anything else for MLflow.

    MLflow URIs are used as both tracking and registry URI (``sqlite:///mlflow.db``,
    ``http://mlflow:5000``, ``postgresql://...``, ``databricks``).
    """
    if uri.startswith("file:"):
        from urllib.parse import parse_qs, unquote, urlparse

        from promptregistry.file_backend import FilePromptBackend

        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise PromptRegistryError(
                f"file URI {uri!r} names a host; use file:///absolute/path",
            )
        query = parse_qs(parsed.query)
        unknown = sorted(set(query) - {"folder"})
        if unknown or len(query.get("folder", [])) > 1:
            raise PromptRegistryError(
                f"file URI {uri!r}: unknown query {', '.join(unknown) or 'folder (twice)'}",
                hint="the only query a file URI takes is ?folder=NAME",
            )
        folder = query.get("folder", ["prompts"])[0]
        try:
            return FilePromptBackend(unquote(parsed.path), folder=folder)
        except ValueError as exc:
            raise PromptRegistryError(f"file URI {uri!r}: {exc}") from None
    if "://" not in uri and uri != "databricks":
        raise PromptRegistryError(
            f"cannot tell which backend {redact_uri(uri)!r} means",
            hint="use file:///path for a prompt directory or an MLflow tracking URI "
            "(sqlite:///mlflow.db, http://host:5000)",
        )
    from promptregistry.mlflow_backend import MlflowPromptBackend

    return MlflowPromptBackend(uri)
