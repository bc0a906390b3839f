"""The actor recorded in audit events, locally and in GitHub Actions."""

from __future__ import annotations

from releaser.api.context import current_actor, utc_now


def test_github_actions_actor_and_run_url() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_REPOSITORY": "org/repo",
        "GITHUB_RUN_ID": "42",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_SERVER_URL": "https://ghe.example",
        "GITHUB_SHA": "abc",
    }
    actor = current_actor(env)
    assert actor.name == "github:octocat"
    assert actor.context["run_url"] == "https://ghe.example/org/repo/actions/runs/42/attempts/2"
    assert actor.context["sha"] == "abc"


def test_explicit_actor_wins_and_keeps_os_user() -> None:
    actor = current_actor({"RELEASER_ACTOR": "priya"})
    assert actor.name == "priya"
    assert "@" in actor.context["os_actor"]


def test_utc_now_is_iso_z() -> None:
    now = utc_now()
    assert now.endswith("Z") and now[10] == "T"
