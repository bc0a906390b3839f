"""Fixtures for the demo tests: the example workspace built once, with one model version.

Treat ``built_workspace`` as read-only; copy it (``shutil.copytree``) to change it.
"""

from __future__ import annotations

import pytest

from releaser.demo.workspace import ExampleWorkspace, build_example_workspace

CONFIG_TEXT = "# releaser.yaml written by the demo tests\nversion: 1\nservices: {}\n"


@pytest.fixture(scope="session")
def built_workspace(tmp_path_factory: pytest.TempPathFactory) -> ExampleWorkspace:
    """The example workspace as ``build_example_workspace`` leaves it."""
    dest = tmp_path_factory.mktemp("demo") / "workspace"
    return build_example_workspace(dest, config_text=CONFIG_TEXT)


@pytest.fixture
def config_text() -> str:
    """The ``releaser.yaml`` text ``built_workspace`` was built with."""
    return CONFIG_TEXT
