"""init, validate and schema as a user runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def _git_repo(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_init_then_validate_in_an_empty_git_repo(tmp_path: Path, cli) -> None:
    repo = _git_repo(tmp_path / "svc")
    res = cli("init", cwd=repo)
    assert res.code == 0, res.err
    assert (repo / "releaser.yaml").exists()
    assert ".releaser/" in (repo / ".gitignore").read_text()
    res = cli("validate", cwd=repo)
    assert res.code == 0, res.err
    assert "ok" in res.out and "case-triage" in res.out
    # The service's description is the team's to write, not the example's.
    text = (repo / "releaser.yaml").read_text()
    assert "council casework" not in text and "TODO: what this service does" in text


def test_init_ignores_the_embedded_registry_files(tmp_path: Path, cli) -> None:
    repo = _git_repo(tmp_path / "svc")
    (repo / ".gitignore").write_text("*.log")  # the user's own, without a final newline
    assert cli("init", cwd=repo).code == 0
    local = ["mlflow.db", "mlflow.db-wal", "mlflow.db-shm", "mlruns/1/meta.yaml"]
    local += [".releaser/state.db", "dist/case-triage/handover.html"]  # the pack's default
    for path in [*local, "debug.log"]:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text("x")
    (repo / "model.db").write_text("x")  # not the registry: stays visible
    done = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    assert sorted(line[3:] for line in done.stdout.splitlines()) == [
        ".gitignore",
        "model.db",
        "releaser.yaml",
    ]
    assert cli("init", "--force", cwd=repo).code == 0  # a second init adds nothing twice
    lines = (repo / ".gitignore").read_text().splitlines()
    assert lines[0] == "*.log" and len(lines) == len(set(lines))


def test_init_refuses_to_overwrite(tmp_path: Path, cli) -> None:
    repo = _git_repo(tmp_path / "svc")
    assert cli("init", cwd=repo).code == 0
    (repo / "releaser.yaml").write_text("project: mine\n")
    res = cli("init", cwd=repo)
    assert res.code == 2
    assert "already exists" in res.err and "--force" in res.err
    assert (repo / "releaser.yaml").read_text() == "project: mine\n"


def test_misspelt_key_names_key_and_line(tmp_path: Path, cli) -> None:
    repo = _git_repo(tmp_path / "svc")
    assert cli("init", cwd=repo).code == 0
    cfg = repo / "releaser.yaml"
    lines = cfg.read_text().splitlines()
    idx = next(i for i, line in enumerate(lines) if line.strip() == "slos:")
    lines[idx] = lines[idx].replace("slos:", "slo:")
    cfg.write_text("\n".join(lines) + "\n")
    res = cli("validate", cwd=repo)
    assert res.code == 2
    assert f"releaser.yaml:{idx + 1}" in res.err
    assert "'slo'" in res.err and "did you mean 'slos'" in res.err
    assert "Traceback" not in res.err


def test_malformed_yaml_is_a_clean_error(tmp_path: Path, cli) -> None:
    cfg = tmp_path / "releaser.yaml"
    cfg.write_text("project: x\nservices: [unclosed\n")
    res = cli("validate", str(cfg))
    assert res.code == 2
    assert "releaser.yaml:" in res.err and "Traceback" not in res.err


def test_no_config_found_hints_init(tmp_path: Path, cli) -> None:
    res = cli("validate", cwd=tmp_path)
    assert res.code == 2
    assert "releaser init" in res.err


def test_schema_is_json_schema(cli) -> None:
    res = cli("schema")
    assert res.code == 0
    schema = json.loads(res.out)
    assert "services" in schema["properties"]


def test_version_and_help(cli) -> None:
    from releaser import __version__

    res = cli("--version")
    assert res.code == 0 and __version__ in res.out
    res = cli("--help")
    assert res.code == 0 and "release" in res.out


def test_unknown_command_is_usage_error(cli) -> None:
    res = cli("no-such-command")
    assert res.code == 2


def test_validate_refuses_a_backreference_and_a_lookaround_with_line_and_hint(
    tmp_path: Path, cli
) -> None:
    repo = _git_repo(tmp_path / "svc")
    assert cli("init", cwd=repo).code == 0
    cfg = repo / "releaser.yaml"
    text = cfg.read_text().replace(
        '        ends_with: "@example.org"\n',
        "        matches: '^(\\w+)@\\1$'\n"
        "      - attribute: council\n"
        "        matches: '^(?!test-)'\n",
    )
    cfg.write_text(text)
    lines = text.splitlines()
    backref = 1 + next(i for i, line in enumerate(lines) if "\\1$'" in line)
    lookahead = 1 + next(i for i, line in enumerate(lines) if "(?!test-)" in line)
    res = cli("validate", cwd=repo)
    assert res.code == 2
    assert f"releaser.yaml:{backref}" in res.err and f"releaser.yaml:{lookahead}" in res.err
    assert "invalid escape sequence: \\1" in res.err
    assert "RE2 has no backreferences: rewrite without \\1" in res.err
    assert "invalid perl operator: (?!" in res.err and "RE2 has no lookaheads" in res.err
    assert "Traceback" not in res.err


def test_validate_warns_that_role_keyed_upstreams_are_read_only_until_a_promotion(
    tmp_path: Path, cli
) -> None:
    repo = _git_repo(tmp_path / "svc")
    assert cli("init", cwd=repo).code == 0
    cfg = repo / "releaser.yaml"
    marker = "    irreversible: false\n"
    role_form = "    deploy: {upstreams: {baseline: 'http://127.0.0.1:8001'}}\n"
    cfg.write_text(cfg.read_text().replace(marker, marker + role_form, 1))
    res = cli("validate", cwd=repo)
    assert res.code == 0, res.err
    assert "warning: services.case-triage.deploy.upstreams: baseline/candidate" in res.err
    assert "until the first promotion" in res.err and "'releases:'" in res.err
    per_release = "    deploy: {upstreams: {releases: {38a2c1d0: 'http://127.0.0.1:8001'}}}\n"
    cfg.write_text(cfg.read_text().replace(role_form, per_release, 1))
    res = cli("validate", cwd=repo)
    assert res.code == 0 and "warning" not in res.err
