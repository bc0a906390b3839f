"""Prompt versions through the CLI: register, promote, roll back, seen by a running process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SPEC = """\
name: {name}
commit_message: "{message}"
variables:
  case_text: str
parameters:
  temperature: 0.1
template: |
  {text}
  Case: {{{{ case_text }}}}
"""

CHILD = textwrap.dedent(
    """
    import sys, time
    import releaser
    releaser.configure_prompts(sys.argv[1], check_interval_ms=100)
    import promptregistry
    while True:
        p = promptregistry.load("triage-summary", alias="production")
        print(p.version, repr(p.render(case_text="bin missed")), flush=True)
        time.sleep(0.02)
    """
)


def _spec(root: Path, name: str, text: str, message: str, file: str) -> Path:
    path = root / file
    path.write_text(SPEC.format(name=name, text=text, message=message), encoding="utf-8")
    return path


@pytest.fixture
def prompt_ws(tmp_path: Path, cli) -> Path:
    root = tmp_path / "svc"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    assert cli("init", cwd=root).code == 0
    return root


class _Child:
    """A long-running process rendering production, its latest line kept."""

    def __init__(self, root: Path) -> None:
        self.errors = (root / "child-stderr.txt").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root)],
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )
        self.latest = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.latest = line.strip()

    def wait_for(self, prefix: str, deadline_s: float = 20.0) -> str:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.latest.startswith(prefix):
                return self.latest
            if self.proc.poll() is not None:
                raise AssertionError(f"child exited: {Path(self.errors.name).read_text()}")
            time.sleep(0.02)
        raise AssertionError(f"child still shows {self.latest!r}, wanted {prefix!r}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.errors.close()


def test_promote_and_rollback_reach_a_running_process(prompt_ws: Path, cli) -> None:
    v1 = _spec(prompt_ws, "triage-summary", "Summarise the case.", "first", "v1.yaml")
    v2 = _spec(
        prompt_ws, "triage-summary", "Summarise the case in two lines.", "shorter", "v2.yaml"
    )
    assert cli("prompt", "register", str(v1)).code == 0
    res = cli("prompt", "register", str(v2), "--json")
    assert res.code == 0 and json.loads(res.out)["version"]["version"] == 2
    res = cli("prompt", "register", str(v2))
    assert res.code == 0 and "nothing registered" in res.out

    res = cli("prompt", "promote", "triage-summary", "1", "--to", "production", "--reason", "pilot")
    assert res.code == 0, res.err
    child = _Child(prompt_ws)
    try:
        assert "Summarise the case." in child.wait_for("1 ")
        res = cli(
            "prompt",
            "promote",
            "triage-summary",
            "2",
            "--to",
            "production",
            "--reason",
            "shorter summaries tested well",
        )
        assert res.code == 0 and "v1 -> v2" in res.out
        assert "two lines" in child.wait_for("2 ")
        res = cli(
            "prompt",
            "rollback",
            "triage-summary",
            "--alias",
            "production",
            "--reason",
            "caseworkers want detail",
        )
        assert res.code == 0 and "v2 -> v1" in res.out
        child.wait_for("1 ")
    finally:
        child.stop()

    res = cli("prompt", "history", "triage-summary", "--json")
    moves = [(m["from"], m["to"], m["move"], m["reason"]) for m in json.loads(res.out)]
    assert moves == [
        (None, 1, "promote", "pilot"),
        (1, 2, "promote", "shorter summaries tested well"),
        (2, 1, "rollback", "caseworkers want detail"),
    ]

    import mlflow.genai

    mlflow.set_tracking_uri(f"sqlite:///{prompt_ws / 'mlflow.db'}")
    try:
        plain = mlflow.genai.load_prompt("prompts:/triage-summary@production", cache_ttl_seconds=0)
    finally:
        mlflow.set_tracking_uri(None)
    assert int(plain.version) == 1

    res = cli("prompt", "diff", "triage-summary", "1", "2")
    assert res.code == 0 and "two lines" in res.out
    res = cli("prompt", "show", "triage-summary@production")
    assert res.code == 0 and "version 1" in res.out
    assert cli("audit", "verify").code == 0


def test_bad_prompts_are_refused_and_nothing_is_written(prompt_ws: Path, cli) -> None:
    escape = _spec(prompt_ws, "sneaky", "{{ ''.__class__ }}", "escape", "bad.yaml")
    res = cli("prompt", "register", str(escape))
    assert res.code == 2 and "Traceback" not in res.err
    for bad_name in ["../etc", "a/b", "has space", "x" * 129]:
        path = prompt_ws / "bad-name.yaml"
        path.write_text(SPEC.format(name=bad_name, text="hi", message="m"), encoding="utf-8")
        res = cli("prompt", "register", str(path))
        assert res.code == 2, bad_name
    res = cli("prompt", "list", "--json")
    assert json.loads(res.out) == []
    res = cli("prompt", "promote", "sneaky", "1", "--to", "production", "--reason", "x")
    assert res.code == 2
    res = cli("audit", "log", "--json")
    assert json.loads(res.out) == []


def test_unknown_version_lists_what_exists(prompt_ws: Path, cli) -> None:
    v1 = _spec(prompt_ws, "triage-summary", "Summarise.", "first", "v1.yaml")
    assert cli("prompt", "register", str(v1)).code == 0
    res = cli("prompt", "promote", "triage-summary", "7", "--to", "production", "--reason", "x")
    assert res.code == 2 and "1" in res.err
    res = cli("prompt", "show", "triage-summary@staging")
    assert res.code == 2


def _file_backend(root: Path) -> Path:
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8")
    assert "backend: mlflow" in text
    cfg.write_text(text.replace("backend: mlflow", "backend: file", 1), encoding="utf-8")
    return cfg


def test_prompt_commands_work_while_a_service_section_is_broken(prompt_ws: Path, cli) -> None:
    # A prompt rollback must not wait for someone to fix an unrelated part of the file.
    cfg = _file_backend(prompt_ws)
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text.replace("services:\n", "services:\n  Bad_Name: 3\n", 1), encoding="utf-8")
    res = cli("validate")
    assert res.code == 2 and "services" in res.err

    v1 = _spec(prompt_ws, "triage-summary", "Summarise.", "first", "v1.yaml")
    v2 = _spec(prompt_ws, "triage-summary", "Summarise briefly.", "second", "v2.yaml")
    assert cli("prompt", "register", str(v1)).code == 0
    assert cli("prompt", "register", str(v2)).code == 0
    assert (prompt_ws / "prompts" / "triage-summary").is_dir()
    for version in ("1", "2"):
        res = cli(
            "prompt",
            "promote",
            "triage-summary",
            version,
            "--to",
            "production",
            "--reason",
            f"v{version}",
        )
        assert res.code == 0, res.err
    res = cli("prompt", "rollback", "triage-summary", "--alias", "production", "--reason", "x")
    assert res.code == 0 and "v2 -> v1" in res.out


def test_broken_prompt_settings_are_reported_with_their_line(prompt_ws: Path, cli) -> None:
    cfg = _file_backend(prompt_ws)
    lines = cfg.read_text(encoding="utf-8").splitlines()
    line_no = next(i for i, line in enumerate(lines, 1) if "backend: file" in line)
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace("backend: file", "backend: files", 1),
        encoding="utf-8",
    )
    v1 = _spec(prompt_ws, "triage-summary", "Summarise.", "first", "v1.yaml")
    res = cli("prompt", "register", str(v1))
    assert res.code == 2
    assert f"releaser.yaml:{line_no}" in res.err and "prompts.backend" in res.err
    assert "did you mean 'file'?" in res.err and "Traceback" not in res.err
    assert not (prompt_ws / "prompts").exists()
    assert not (prompt_ws / ".releaser").exists()

    # The same rule as the whole file: no password in a configured store URL.
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace("backend: files", "backend: file", 1)
        + "store: postgresql://ops:s3cret@db.internal/releaser\n",
        encoding="utf-8",
    )
    res = cli("prompt", "list")
    assert res.code == 2 and "password" in res.err and "s3cret" not in res.err
