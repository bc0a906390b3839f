"""Reading the Actions context: settings from the environment, the pull request number."""

from __future__ import annotations

import json
from pathlib import Path

from releaser.integrations.github import GithubEnv, pr_number_from_env


def _env(tmp_path: Path, event: dict | None = None, **extra: str) -> GithubEnv:
    values = {"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "o/r", **extra}
    if event is not None:
        path = tmp_path / "event.json"
        path.write_text(json.dumps(event))
        values["GITHUB_EVENT_PATH"] = str(path)
    env = GithubEnv.from_environ(values)
    assert env is not None
    return env


def test_settings_need_a_token_and_an_owner_slash_repo() -> None:
    assert GithubEnv.from_environ({"GITHUB_REPOSITORY": "o/r"}) is None
    assert GithubEnv.from_environ({"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "r"}) is None
    env = GithubEnv.from_environ(
        {
            "GITHUB_TOKEN": "sekret-token",
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_API_URL": "https://ghe/api/v3/",
        }
    )
    assert env is not None and env.api_url == "https://ghe/api/v3"
    assert "sekret-token" not in repr(env)


def test_pr_number_from_ref_or_event(tmp_path: Path) -> None:
    assert pr_number_from_env(_env(tmp_path, GITHUB_REF="refs/pull/31/merge")) == 31
    assert pr_number_from_env(_env(tmp_path, {"pull_request": {"number": 8}})) == 8
    comment_on_pr = {"issue": {"number": 5, "pull_request": {"url": "x"}}}
    assert pr_number_from_env(_env(tmp_path, comment_on_pr)) == 5
    assert pr_number_from_env(_env(tmp_path, {"issue": {"number": 5}})) is None
    assert pr_number_from_env(_env(tmp_path, GITHUB_REF="refs/heads/main")) is None
