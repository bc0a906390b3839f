"""The documentation site: it builds strictly, the strict build bites, and the
generated reference pages cover every command and every ``releaser.yaml`` field.

CI runs these with the rest of the suite, so a broken link, a missing anchor or a
page left out of the nav fails CI; the broken copies below prove the check is real.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from releaser.cli.app import build_command
from releaser.config import config_json_schema

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "_hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of the project at ``project``, as ``dev.py docs`` runs it."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # Not -q: it silences the warnings that --strict counts, and a broken site passes.
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_site_builds_strictly_with_the_generated_pages(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = build(ROOT, site)
    assert done.returncode == 0, done.stdout + done.stderr
    cli = (site / "reference/cli/index.html").read_text(encoding="utf-8")
    assert 'id="releaser-rollout-start"' in cli and "--reason" in cli
    config = (site / "reference/config/index.html").read_text(encoding="utf-8")
    assert "bake_minutes" in config and "525,600" in config
    python = (site / "reference/python/index.html").read_text(encoding="utf-8")
    assert 'id="rollback"' in python and "last known-good release" in python
    assert (site / "bucketing/index.html").exists()


def _copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(DOCS, project / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    return project


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        pytest.param(
            lambda docs: _append(docs / "concepts/rollouts.md", "[gone](no-such-page.md)"),
            "no-such-page.md",
            id="link-to-a-missing-page",
        ),
        pytest.param(
            lambda docs: _append(docs / "index.md", "[gone](concepts/rollouts.md#no-such-part)"),
            "no-such-part",
            id="link-to-a-missing-anchor",
        ),
        pytest.param(
            lambda docs: _append(docs / "index.md", "[gone](reference/cli.md#releaser-nope)"),
            "releaser-nope",
            id="link-to-a-command-that-does-not-exist",
        ),
        pytest.param(
            lambda docs: (docs / "orphan.md").write_text("# Orphan\n", encoding="utf-8"),
            "orphan.md",
            id="page-left-out-of-the-nav",
        ),
    ],
)
def test_a_broken_site_fails_the_strict_build(tmp_path: Path, break_it: Any, message: str) -> None:
    project = _copy(tmp_path)
    break_it(project / "docs")
    done = build(project, tmp_path / "site")
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


def _append(page: Path, line: str) -> None:
    page.write_text(page.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_cli_reference_has_every_command_and_option() -> None:
    hook = _hook()
    root = build_command()
    page = hook.cli_markdown(root)
    commands = list(hook.walk_commands(root, ["releaser"]))
    assert len(commands) > 40
    for path, command, _ in commands:
        assert f"{{#{'-'.join(path)}}}" in page, path
        for param in command.params:
            for opt in param.opts:
                assert opt in page, (path, opt)


def test_the_config_reference_has_every_field_of_every_object() -> None:
    hook = _hook()
    schema = config_json_schema()
    page = hook.config_markdown(schema, example="version: 1\n")
    objects = [schema, *schema["$defs"].values()]
    for node in objects:
        for field, prop in node.get("properties", {}).items():
            rows = [r for r in page.splitlines() if r.startswith(f"| `{field}` |")]
            assert rows, field
            if "description" in prop:
                assert any(prop["description"].split()[0] in r for r in rows), field
    for name in schema["$defs"]:
        assert f"{{#{name.lower()}}}" in page, name
    # Bounds come through, in the field's own row.
    assert re.search(r"\| `percent` \|.*≥ 0; ≤ 100 \|", page)


def test_the_readme_starts_with_the_two_commands_and_links_only_existing_pages() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    opening = readme.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in opening] == [
        "python3 dev.py demo",
        "python3 dev.py test",
    ]
    assert readme.index("```sh") < readme.index("\n## ")
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links
    for link in links:
        assert (ROOT / link).is_file(), link
