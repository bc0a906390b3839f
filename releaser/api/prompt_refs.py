"""Reading prompts for a release: pin configured prompts to versions, diff their text,
and turn promptregistry's errors into releaser's.

Below the modules that move aliases (:mod:`releaser.api.prompts`, the journal):
a release is created and diffed without importing them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from releaser.core.refs import PromptRef
from releaser.errors import ArtifactNotFound, BadInput, ExternalUnavailable, ReleaserError

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.service import PromptSpec as PromptEntry

__all__ = ["prompt_errors", "prompt_text_diff", "resolve_prompt_refs"]


@contextmanager
def prompt_errors() -> Iterator[None]:
    """Turn promptregistry's errors into releaser's, keeping message and hint."""
    from promptregistry import (
        BackendUnavailable,
        InvalidPrompt,
        PromptNotFound,
        PromptRegistryError,
        RenderError,
    )

    try:
        yield
    except PromptNotFound as exc:
        raise ArtifactNotFound(exc.message, hint=exc.hint) from exc
    except BackendUnavailable as exc:
        raise ExternalUnavailable(exc.message, hint=exc.hint) from exc
    except (InvalidPrompt, RenderError) as exc:
        raise BadInput(exc.message, hint=exc.hint) from exc
    except PromptRegistryError as exc:
        raise ReleaserError(exc.message, hint=exc.hint) from exc


def resolve_prompt_refs(ws: Workspace, prompts: Sequence[PromptEntry]) -> list[PromptRef]:
    """Pin each configured prompt (name + alias) to its version and content hash."""
    refs = []
    with prompt_errors():
        for entry in prompts:
            pv = ws.prompts.get(entry.name, alias=entry.alias)
            refs.append(
                PromptRef(
                    name=pv.name,
                    version=pv.version,
                    alias=entry.alias,
                    content_hash=pv.content_hash,
                )
            )
    return refs


def prompt_text_diff(ws: Workspace, name: str, a: int, b: int) -> str:
    """The rendered diff text between two versions of a prompt (for ``release diff``)."""
    with prompt_errors():
        return ws.prompts.diff(name, a, b).render_text()
