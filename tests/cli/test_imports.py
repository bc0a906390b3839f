"""Start-up stays fast: the CLI loads no heavy library until a command needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    "re2",  # a native library: loaded when a group's `matches` rule is compiled
]


def _probe(code: str) -> Any:
    """Run ``code`` in a fresh interpreter; it prints JSON last, which is returned."""
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _loaded_after(code: str) -> set[str]:
    modules = _probe(f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))")
    return {m.split(".")[0] for m in modules}


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


@pytest.mark.parametrize(
    ("args", "group"),
    [
        (["prompt", "promote", "x", "2"], "prompt"),
        (["-v", "--store", "sqlite:///s.db", "prompt", "list"], "prompt"),
        (["--config", "rollout", "rollout", "status"], "rollout"),  # the option's value is skipped
        (["-c", "x.yaml", "audit", "verify"], "audit"),
        (["rollback", "svc"], None),  # a top-level command
        (["--help", "prompt"], None),
        (["--version"], None),
        (["promt", "list"], None),  # unknown: everything is built, click says what exists
        ([], None),
    ],
)
def test_invoked_group(args: list[str], group: str | None) -> None:
    from releaser.cli.app import invoked_group

    assert invoked_group(args) == group


def test_a_prompt_command_builds_only_its_group() -> None:
    # `releaser prompt promote` must start fast: no other command module, no service models.
    probe = (
        "import json, sys\n"
        "from releaser.cli.app import build_command\n"
        "cmd = build_command(['prompt', 'promote', 'x', '1'])\n"
        "full = build_command(['--help'])\n"
        "print(json.dumps([sorted(cmd.commands), sorted(full.commands), sorted(sys.modules)]))\n"
    )
    only, everything, modules = _probe(probe)
    assert "prompt" in only and not {"rollout", "release", "rollback", "serve"} & set(only)
    assert {"prompt", "rollout", "release", "rollback", "serve", "github"} <= set(everything)
    # Built after the prompt-only command, the full one still has every group.
    assert len(everything) > len(only)
    assert "releaser.cli.rollout_cmds" in modules  # imported by the second build only


def test_a_top_level_command_builds_no_sub_app() -> None:
    # `releaser rollback` must start fast: the sub-apps are neither imported nor converted.
    probe = (
        "import json, sys\n"
        "from releaser.cli.app import build_command\n"
        "cmd = build_command(['-v', 'rollback', 'svc', '--reason', 'x'])\n"
        "modules = sorted(sys.modules)\n"
        "typo = build_command(['rollbak', 'svc'])\n"
        "print(json.dumps([sorted(cmd.commands), modules, sorted(typo.commands)]))\n"
    )
    only, modules, typo = _probe(probe)
    assert {"rollback", "reconcile", "validate"} <= set(only)
    assert not set(only) & {"prompt", "rollout", "release", "audit", "github"}
    assert "releaser.cli.prompt_cmds" not in modules
    assert "releaser.cli.rollout_cmds" not in modules
    # A mistyped command gets every command, for click's "did you mean".
    assert {"rollback", "prompt", "rollout"} <= set(typo)


def test_settings_only_workspace_skips_the_service_models(tmp_path: Path) -> None:
    from releaser.config.template import render_init_template

    text = render_init_template("demo", "case-triage")
    (tmp_path / "releaser.yaml").write_text(text, encoding="utf-8")
    probe = (
        "import json, sys\n"
        "from releaser.api.workspace import open_workspace\n"
        f"ws = open_workspace({str(tmp_path)!r}, settings_only=True)\n"
        "print(json.dumps([ws.settings.prompts.backend, sorted(sys.modules)]))\n"
    )
    backend, modules = _probe(probe)
    assert backend == "mlflow"
    assert "releaser.config.models" not in modules
    assert "releaser.config.service" not in modules
