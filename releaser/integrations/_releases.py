"""A release read from the store, for the deploy integrations (below ``api/``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from releaser.core.release import RELEASE_RECORD, Release
from releaser.errors import NotFound

if TYPE_CHECKING:
    from releaser.store.base import Store


def stored_release(store: Store, release_id: str) -> Release:
    """The release ``release_id`` (a full id) as the store holds it."""
    record = store.get(RELEASE_RECORD, release_id)
    if record is None:
        raise NotFound(
            f"release {release_id} is not in the state store {store.url}",
            hint="'releaser release list' shows the releases the store holds",
        )
    return Release.model_validate(record.value)
