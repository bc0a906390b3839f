"""Prompt versions through the CLI: register, promote, roll back, seen by a running process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
RELEASER = Path(sys.executable).parent / "releaser"

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


def _versions(root: Path, cli, name: str, count: int) -> None:
    for v in range(1, count + 1):
        spec = _spec(root, name, f"Summarise the case, take {v}.", f"take {v}", f"v{v}.yaml")
        res = cli("prompt", "register", str(spec), "--json")
        assert res.code == 0 and json.loads(res.out)["version"]["version"] == v, res.err


def _production(cli, name: str) -> int:
    """Where the prompt backend points ``name@production`` now."""
    res = cli("prompt", "show", f"{name}@production", "--json")
    assert res.code == 0, res.err
    return int(json.loads(res.out)["version"])


def _moves(cli, name: str) -> list[tuple[int | None, int]]:
    """The recorded moves of ``name@production``, in audit order."""
    res = cli("prompt", "history", name, "--json")
    assert res.code == 0, res.err
    rows = sorted(json.loads(res.out), key=lambda r: r["seq"])
    return [(r["from"], r["to"]) for r in rows if r["alias"] == "production"]


def _promote(name: str, version: int, *extra: str) -> list[str]:
    """``releaser prompt promote`` of ``name`` ``version`` to production, as a command line."""
    return [
        str(RELEASER),
        *("prompt", "promote", name, str(version), "--to", "production"),
        *("--reason", f"race for v{version}", "--json", *extra),
    ]


def _race(root: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Start every command before waiting for any; each one's exit code and output."""
    procs = [
        subprocess.Popen(c, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    done = []
    for c, p in zip(commands, procs, strict=True):
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return done


def test_racing_promotions_of_one_alias_record_and_apply_one_chain_of_moves(
    prompt_ws: Path, cli
) -> None:
    name = "triage-summary"
    _file_backend(prompt_ws)
    _versions(prompt_ws, cli, name, 9)
    res = cli("prompt", "promote", name, "1", "--to", "production", "--reason", "first")
    assert res.code == 0, res.err

    # Round 1: eight moves, each only if the alias is still at v1. One can win.
    runs = _race(prompt_ws, [_promote(name, v, "--expect-current", "1") for v in range(2, 10)])
    codes = [r.returncode for r in runs]
    assert sorted(codes) == [0] + [4] * 7, [(r.returncode, r.stderr[-300:]) for r in runs]
    won = json.loads(next(r.stdout for r in runs if r.returncode == 0))
    winner = won["to_version"]
    assert won["from_version"] == 1 and winner in range(2, 10)
    for r in runs:
        if r.returncode == 4:
            assert "nothing" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _moves(cli, name) == [(None, 1), (1, winner)]
    assert _production(cli, name) == winner

    # Round 2: eight unconditional moves. Each is recorded and applied, or refused whole;
    # the recorded moves chain, and the last one is where the alias is.
    runs = _race(prompt_ws, [_promote(name, v) for v in range(1, 10) if v != winner])
    assert {r.returncode for r in runs} <= {0, 4}, [(r.returncode, r.stderr[-300:]) for r in runs]
    assert 0 in {r.returncode for r in runs}
    moved = [json.loads(r.stdout) for r in runs if r.returncode == 0]
    reported = sorted(
        (m["from_version"], m["to_version"]) for m in moved if m["from_version"] != m["to_version"]
    )
    moves = _moves(cli, name)[2:]
    assert sorted(moves) == reported
    chain = [winner] + [to for _from, to in moves]
    assert [f for f, _to in moves] == chain[:-1], moves
    assert _production(cli, name) == chain[-1]
    assert cli("audit", "verify").code == 0


def test_a_promotion_that_cannot_write_the_store_moves_nothing_and_a_retry_does(
    prompt_ws: Path, cli
) -> None:
    from releaser.store.sqlite import BUSY_TIMEOUT_MS

    name = "triage-summary"
    _file_backend(prompt_ws)
    _versions(prompt_ws, cli, name, 2)
    res = cli("prompt", "promote", name, "1", "--to", "production", "--reason", "first")
    assert res.code == 0, res.err
    db = prompt_ws / ".releaser" / "state.db"
    assert db.is_file()
    # Another writer holds the store's write lock for longer than the busy timeout
    # (fixed at BUSY_TIMEOUT_MS; nothing shortens it): the move must not get ahead of its record.
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        res = subprocess.run(
            _promote(name, 2), cwd=prompt_ws, capture_output=True, text=True, timeout=90
        )
        waited = time.monotonic() - started
        assert _production(cli, name) == 1  # read while the lock is still held
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert res.returncode == 3, res.stdout + res.stderr
    assert "write lock" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert waited >= BUSY_TIMEOUT_MS / 1000 - 1
    assert _production(cli, name) == 1
    assert _moves(cli, name) == [(None, 1)]

    res = subprocess.run(
        _promote(name, 2), cwd=prompt_ws, capture_output=True, text=True, timeout=90
    )
    assert res.returncode == 0, res.stderr
    assert (json.loads(res.stdout)["from_version"], json.loads(res.stdout)["to_version"]) == (1, 2)
    assert _production(cli, name) == 2
    assert _moves(cli, name) == [(None, 1), (1, 2)]
    assert cli("audit", "verify").code == 0


def test_prompt_release_pins_the_version_gates_it_and_starts_the_canary(release_ws, cli) -> None:
    """The recommended path: `prompt release NAME V --service S` creates the release that
    pins v2 (the model and everything else as stable), gates it, starts the rollout and
    names the next command; a re-run finds it running; nothing else is asked."""
    root = release_ws.root
    service = "case-triage"
    r1 = json.loads(cli("release", "create", service, "--json", cwd=root).out)["release"]["id"]
    assert cli("gate", service, "--release", r1).code == 0
    assert cli("rollout", "start", service, "--release", r1, "--initial").code == 0
    spec = root / "prompts" / "case-triage-system.yaml"
    spec.write_text(spec.read_text().replace("casework assistant", "careful casework assistant"))
    reg = cli("prompt", "register", str(spec), "--json")
    assert reg.code == 0, reg.err
    assert json.loads(reg.out)["version"]["version"] == 2
    subprocess.run(["git", "commit", "-qam", "prompt v2"], cwd=root, check=True)
    res = cli("prompt", "release", "case-triage-system", "2", "--service", service)
    assert res.code == 0, res.out + res.err
    assert "pins case-triage-system v2 (created)" in res.out
    assert "eval gate against stable" in res.out and "PASSED" in res.out
    assert "started at step 1/4 'internal'" in res.out
    assert f"next: 'releaser rollout advance {service}'" in res.out
    status = json.loads(cli("rollout", "status", service, "--json").out)
    candidate = status["rollout"]["candidate"]
    shown = json.loads(cli("release", "show", candidate, "--json").out)
    prompts = shown["content"]["prompts"]
    assert [(p["name"], p["version"], p["alias"]) for p in prompts] == [
        ("case-triage-system", 2, None)
    ]
    again = cli("prompt", "release", "case-triage-system", "2", "--service", service, "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["already_live"] is True
    unknown = cli("prompt", "release", "other-prompt", "1", "--service", service)
    assert unknown.code == 2 and "does not use the prompt 'other-prompt'" in unknown.err
