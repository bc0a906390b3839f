"""Reading prompts for a release: pin configured prompts to versions, diff their text,
and turn promptregistry's errors into releaser's.

Below the modules that move aliases (:mod:`releaser.api.prompts`, the journal):
a release is created and diffed without importing them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from releaser.core.refs import PromptRef
from releaser.errors import ArtifactNotFound, BadInput, ExternalUnavailable, ReleaserError

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.service import PromptSpec as PromptEntry
    from releaser.config.service import ScorerSpec

__all__ = ["prompt_errors", "prompt_text_diff", "resolve_judge_refs", "resolve_prompt_refs"]


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


def resolve_prompt_refs(
    ws: Workspace, prompts: Sequence[PromptEntry], versions: Mapping[str, int] | None = None
) -> list[PromptRef]:
    """Pin each configured prompt (name + alias) to its version and content hash.

    ``versions`` pins the named prompts to those versions instead of their aliases
    (a prompt release: "v3 is ready"); a name the service does not use is refused.
    """
    versions = dict(versions or {})
    unknown = sorted(set(versions) - {entry.name for entry in prompts})
    if unknown:
        names = ", ".join(entry.name for entry in prompts) or "none"
        raise BadInput(
            f"the service does not use the prompt {unknown[0]!r}",
            hint=f"its prompts: {names}",
        )
    refs = []
    with prompt_errors():
        for entry in prompts:
            if entry.name in versions:
                pv = ws.prompts.get(entry.name, version=versions[entry.name])
                alias = None
            else:
                pv = ws.prompts.get(entry.name, alias=entry.alias)
                alias = entry.alias
            refs.append(
                PromptRef(
                    name=pv.name, version=pv.version, alias=alias, content_hash=pv.content_hash
                )
            )
    return refs


def resolve_judge_refs(ws: Workspace, scorers: Sequence[ScorerSpec]) -> list[PromptRef]:
    """Pin each judge scorer's prompt: its version, else its alias (default production)."""
    refs: list[PromptRef] = []
    with prompt_errors():
        for scorer in scorers:
            if scorer.name != "judge" or scorer.prompt is None:
                continue
            if scorer.version is not None:
                pv = ws.prompts.get(scorer.prompt, version=scorer.version)
                alias = None
            else:
                alias = scorer.alias or "production"
                pv = ws.prompts.get(scorer.prompt, alias=alias)
            refs.append(
                PromptRef(
                    name=pv.name, version=pv.version, alias=alias, content_hash=pv.content_hash
                )
            )
    return refs


def prompt_text_diff(ws: Workspace, name: str, a: int, b: int) -> str:
    """The rendered diff text between two versions of a prompt (for ``release diff``)."""
    with prompt_errors():
        return ws.prompts.diff(name, a, b).render_text()
