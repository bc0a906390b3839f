"""Start-up stays fast: the CLI loads no heavy library until a command needs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = [
    "mlflow",
    "dvc",
    "docker",
    "git",
    "github3",
    "jinja2",
    "matplotlib",
    "pandas",
    "httpx",
    "uvicorn",
    "prometheus_client",
    "uvloop",
]


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return {m.split(".")[0] for m in json.loads(out.strip().splitlines()[-1])}


@pytest.mark.parametrize(
    "code",
    [
        "import releaser.cli",
        "import releaser",
        "import promptregistry",
        # building the whole command tree (what --help does) must stay light too
        "from releaser.cli.app import build_command; build_command()",
    ],
)
def test_import_loads_no_heavy_modules(code: str) -> None:
    loaded = _loaded_after(code)
    assert not loaded & set(HEAVY), f"{code!r} loaded {sorted(loaded & set(HEAVY))}"


def test_help_runs_without_heavy_modules() -> None:
    probe = (
        "import sys\n"
        "from releaser.cli import run\n"
        "code = run(['--help'])\n"
        f"heavy = sorted(set(m.split('.')[0] for m in sys.modules) & set({HEAVY!r}))\n"
        "print('HEAVY', heavy, 'CODE', code)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert "HEAVY [] CODE 0" in out
    assert "release" in out and "audit" in out
