"""The state store: versioned records and the audit chain, in sqlite or PostgreSQL.

:func:`open_store` picks the backend from a URL. The sqlite backend is the
embedded default (``.releaser/state.db``); PostgreSQL is shared by teams, CI
runners and routers. psycopg is imported only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

import re
from pathlib import Path

from releaser.errors import BadInput
from releaser.store._bulk import TABLES, RestoreSource, Snapshot, Table
from releaser.store._reads import bulk_decoding
from releaser.store.base import METRIC_VARIANTS, Delete, MetricDelta, Record, Store, Write
from releaser.store.redact import redact_url

__all__ = [
    "METRIC_VARIANTS",
    "TABLES",
    "Delete",
    "MetricDelta",
    "Record",
    "RestoreSource",
    "Snapshot",
    "Store",
    "Table",
    "Write",
    "bulk_decoding",
    "default_store_url",
    "open_store",
    "redact_url",
]

_SQLITE_PREFIX = "sqlite://"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# A libpq key/value DSN ("host=db dbname=releaser ...") rather than a file path.
_KEY_VALUE_DSN = re.compile(r"^\s*[A-Za-z_]+\s*=")
_FORMS = (
    "use sqlite:///absolute/path/state.db, a plain file path, "
    "or postgresql://user:password@host:5432/dbname"
)


def default_store_url(root: Path) -> str:
    """The embedded default for a workspace: ``sqlite:///<root>/.releaser/state.db``."""
    return f"{_SQLITE_PREFIX}{(Path(root).resolve() / '.releaser' / 'state.db').as_posix()}"


def open_store(url: str) -> Store:
    """Open (creating or migrating as needed) the store at ``url``.

    A new sqlite file is created only in an existing folder, or in a folder named
    ``.releaser`` (the default location), which is created too.

    ``url`` is ``sqlite:///abs/path/state.db``, a plain file path (sqlite),
    ``postgresql://...`` / ``postgres://...`` or a libpq key/value DSN.
    Raises :class:`~releaser.errors.BadInput` for an unknown form and
    :class:`~releaser.errors.ExternalUnavailable` when the store cannot be reached.
    """
    text = url.strip()
    if not text:
        raise BadInput("no state store given", hint=_FORMS)
    if text.startswith(_POSTGRES_SCHEMES) or ("://" not in text and _KEY_VALUE_DSN.match(text)):
        from releaser.store.postgres import PostgresStore

        return PostgresStore(text)
    if text.startswith(_SQLITE_PREFIX):
        return _open_sqlite(_sqlite_path(text))
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise BadInput(f"unknown state store scheme {scheme!r} in {redact_url(text)}", hint=_FORMS)
    return _open_sqlite(Path(text).expanduser().resolve())


def _sqlite_path(url: str) -> Path:
    rest = url[len(_SQLITE_PREFIX) :]
    if "?" in rest or "#" in rest:
        raise BadInput(f"sqlite store URL {url} has options; none are supported", hint=_FORMS)
    if not rest.startswith("/") or rest == "/":
        raise BadInput(f"sqlite store URL {url} needs an absolute path", hint=_FORMS)
    # sqlite:////abs (four slashes, as SQLAlchemy writes it) means the same file.
    return Path("/" + rest.lstrip("/"))


def _open_sqlite(path: Path) -> Store:
    from releaser.store.sqlite import SqliteStore

    # A new store is created in an existing folder (or the default .releaser/ folder),
    # so a mistyped --store or RELEASER_STORE fails here instead of starting an empty
    # store somewhere unexpected, where "nothing to roll back" would be the answer.
    if not path.parent.exists() and path.parent.name != ".releaser":
        raise BadInput(
            f"the folder of the sqlite store {path} does not exist",
            hint="check --store / RELEASER_STORE / 'store:' in releaser.yaml, "
            "or create the folder first",
        )
    return SqliteStore(path)
