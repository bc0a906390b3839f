"""The public API: every name in ``__all__`` resolves, and nothing public is missing."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["releaser", "promptregistry", "releaser.config"])
def test_all_names_resolve(package: str) -> None:
    mod = importlib.import_module(package)
    names = getattr(mod, "__all__", None)
    assert names, f"{package} has no __all__"
    assert len(names) == len(set(names)), "duplicate names in __all__"
    for name in names:
        assert getattr(mod, name) is not None, name


def test_releaser_public_api_covers_the_use_cases() -> None:
    import releaser

    for name in [
        "create_release",
        "list_releases",
        "get_release",
        "diff_releases",
        "audit_log",
        "verify_audit",
        "open_workspace",
        "start_rollout",
        "advance_rollout",
        "rollback",
        "run_drill",
        "run_gate",
        "write_runbook",
        "build_handover",
        "ReleaserError",
    ]:
        assert name in releaser.__all__
    assert releaser.ReleaserError.__module__ == "releaser.errors"


def test_unknown_attribute_is_an_attribute_error() -> None:
    import releaser

    with pytest.raises(AttributeError):
        _ = releaser.no_such_thing  # type: ignore[attr-defined]


def test_config_names_load_lazily_from_one_list() -> None:
    """releaser.config lists its model names once; each is a public name of models.py."""
    import releaser.config as config
    from releaser.config import models

    lazy = config._LAZY
    assert set(lazy) <= set(models.__all__)
    assert [n for n in config.__all__ if n in lazy] == list(lazy)
