"""The public surface: exported names, cheap lazy imports, and independence from releaser."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import promptregistry
from tests.test_layers import parse_source

PACKAGE = Path(promptregistry.__file__).resolve().parent

EXPECTED = {
    "AliasChange", "BackendUnavailable", "ChangeSignal", "Client", "FileChangeSignal",
    "FilePromptBackend", "InvalidPrompt", "LintIssue", "LoadedPrompt", "MappingChanges",
    "MlflowPromptBackend", "PromptBackend", "PromptDiff", "PromptNotFound", "PromptRegistry",
    "PromptRegistryError", "PromptSpec", "PromptVersion", "RegisterResult", "RenderError",
    "ValueChange", "VariableType", "configure", "content_hash", "diff", "lint", "load",
    "load_spec_file", "open_backend", "previous_target", "render", "validate_alias",
    "validate_name",
}  # fmt: skip


def test_all_lists_exactly_the_public_names() -> None:
    assert set(promptregistry.__all__) == EXPECTED
    assert promptregistry.__all__ == sorted(promptregistry.__all__, key=str)
    for name in promptregistry.__all__:
        assert getattr(promptregistry, name) is not None
    assert callable(promptregistry.render) and callable(promptregistry.lint)
    assert callable(promptregistry.diff)  # functions, not the modules that define them
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = promptregistry.nothing


def test_errors_share_one_base() -> None:
    for name in ["InvalidPrompt", "PromptNotFound", "RenderError", "BackendUnavailable"]:
        cls = getattr(promptregistry, name)
        assert issubclass(cls, promptregistry.PromptRegistryError)
        error = cls("message", hint="do this")
        assert (str(error), error.hint) == ("message", "do this")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return {m.split(".")[0] for m in json.loads(out.strip().splitlines()[-1])}


def test_import_is_cheap() -> None:
    loaded = loaded_after("import promptregistry")
    assert not loaded & {"mlflow", "jinja2", "releaser", "pydantic", "yaml"}


@pytest.mark.parametrize(
    "code",
    [
        "from promptregistry import PromptRegistry, Client, load, configure, PromptSpec",
        "from promptregistry import FilePromptBackend, MlflowPromptBackend, FileChangeSignal",
        "import promptregistry as p; p.MlflowPromptBackend('sqlite:///x.db')",
    ],
)
def test_heavy_libraries_load_only_when_used(code: str) -> None:
    assert not loaded_after(code) & {"mlflow", "jinja2", "releaser"}


def test_the_package_never_imports_releaser() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(parse_source(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "releaser" for n in names), f"{path.name}: {names}"


def test_py_typed_ships() -> None:
    assert (PACKAGE / "py.typed").exists()
