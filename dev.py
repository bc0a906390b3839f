#!/usr/bin/env python3
"""Set up .venv and run a project task, from plain Python 3.11 + pip + git.

    python3 dev.py demo     # set up, then run `releaser demo` (the end-to-end story)
    python3 dev.py test     # set up, then run the test suite
    python3 dev.py lint     # ruff + mypy
    python3 dev.py bench    # every benchmark under bench/
    python3 dev.py docs     # build the documentation site (strict) into site/
    python3 dev.py setup    # only set up .venv

Set-up is skipped when .venv is newer than pyproject.toml. It installs uv into
.venv with pip, then the project (editable, with dev tools) with uv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".installed"


def sh(*args: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command in the repo root; stop with its exit code if it fails."""
    print("+ " + " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT, env=env)
    if code != 0:
        sys.exit(code)


def setup() -> None:
    """Create .venv and install the project into it, unless already up to date."""
    if sys.version_info < (3, 11):  # noqa: UP036 - runs before the venv, on any python3
        sys.exit(f"releaser needs Python >= 3.11; this is {sys.version.split()[0]}")
    pyproject = ROOT / "pyproject.toml"
    if STAMP.exists() and STAMP.stat().st_mtime >= pyproject.stat().st_mtime:
        return
    if not PY.exists():
        print(f"+ python -m venv {VENV.name}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not (BIN / "uv").exists():
        sh(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "uv")
    sh(
        BIN / "uv",
        "pip",
        "install",
        "--quiet",
        "--python",
        PY,
        "--compile-bytecode",
        "-e",
        ".[dev,bench]",
    )
    # The project itself is installed editable, so --compile-bytecode skips it; compiled
    # here, a CLI call does not recompile releaser's modules where bytecode writes are off.
    sh(PY, "-m", "compileall", "-q", "releaser", "promptregistry")
    STAMP.touch()


def main(argv: list[str]) -> None:
    """Dispatch ``argv[0]`` (demo, test, lint, bench, docs, setup); extra args pass through."""
    task, rest = (argv[0], argv[1:]) if argv else ("setup", [])
    setup()
    if task == "setup":
        return
    if task == "demo":
        sh(BIN / "releaser", "demo", *rest)
    elif task == "test":
        sh(PY, "-m", "pytest", "-n", "2", "-q", *rest)
    elif task == "lint":
        sh(BIN / "ruff", "check", ".")
        sh(BIN / "ruff", "format", "--check", ".")
        sh(BIN / "mypy")
    elif task == "bench":
        for script in sorted((ROOT / "bench").glob("bench_*.py")):
            sh(PY, script, *rest)
    elif task == "docs":
        # Strict: a broken link or anchor, or a page missing from the nav, fails the build.
        # The theme's notice about its own future is not ours to show on every build.
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        sh(BIN / "mkdocs", "build", "--strict", *rest, env=env)
    else:
        sys.exit(f"unknown task {task!r}: use demo, test, lint, bench, docs or setup")


if __name__ == "__main__":
    main(sys.argv[1:])
