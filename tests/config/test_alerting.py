"""The ``alerts:`` and ``notifications:`` blocks: every mistake named at its line, no secret
accepted in the file."""

from __future__ import annotations

import pytest

from releaser.config import parse_config
from releaser.errors import ConfigError, ConfigProblem

BASE = (
    "project: p\n"
    "owners: [{name: A, email: a@example.org, role: owner}]\n"
    "prompts: {backend: file}\n"
    "services:\n"
    "  case-triage:\n"
    "    prompts: [p]\n"
    "    slos: {availability: 0.99}\n"
)


def _problems(tail: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + tail)
    return caught.value.problems


def test_a_valid_block_loads_with_its_defaults() -> None:
    cfg = parse_config(
        BASE
        + "notifications:\n"
        + "  - {name: ops, url: 'https://hooks.example.org/x', format: slack}\n"
        + "  - {name: log, url_env: LOG_HOOK, header: Authorization, token_env: LOG_TOKEN,\n"
        + "     services: [case-triage], events: [rollout.promoted]}\n"
        + "alerts: {runbook_base_url: 'https://example.org/runbooks'}\n"
    )
    ops, log = cfg.notifications
    assert ops.format == "slack" and ops.timeout_s == 5 and ops.retries == 3
    assert "guard.breach" in ops.events and log.events == ["rollout.promoted"]
    assert cfg.alerts.requests_metric == "releaser_gateway_requests_total"
    assert parse_config(BASE).notifications == []


@pytest.mark.parametrize(
    ("tail", "path", "message"),
    [
        (
            "notifications: [{name: a, url: 'https://u:p@hooks.example.org/x'}]\n",
            "notifications[0].url",
            "the URL holds credentials",
        ),
        (
            "notifications: [{name: a, url: 'https://h.example.org', url_env: H}]\n",
            "notifications[0]",
            "give 'url' or 'url_env', not both",
        ),
        (
            "notifications: [{name: a, url: 'https://h.example.org', header: X-Token}]\n",
            "notifications[0].header",
            "'header' and 'token_env' go together",
        ),
        (
            "notifications: [{name: a, url: 'https://h.example.org', events: [rollout.done]}]\n",
            "notifications[0].events[0]",
            "unknown event 'rollout.done'",
        ),
        (
            "notifications: [{name: a, url: 'https://h.example.org', services: [case-triag]}]\n",
            "notifications[0].services[0]",
            "no service 'case-triag'",
        ),
        (
            "notifications: [{name: a, url: 'https://h.example.org', timeout_s: 600}]\n",
            "notifications[0].timeout_s",
            "less than or equal to 60",
        ),
        (
            "alerts: {latency_buckets_s: [0.5, 0.25]}\n",
            "alerts.latency_buckets_s",
            "positive and increasing",
        ),
        ("alerts: {error_codes: '5(..'}\n", "alerts.error_codes", "not a valid regular"),
    ],
)
def test_each_mistake_is_named_at_its_field(tail: str, path: str, message: str) -> None:
    found = _problems(tail)
    assert len(found) == 1, [p.render() for p in found]
    assert found[0].path == path and message in found[0].message, found[0].render()
    assert found[0].line is not None


def test_two_webhooks_of_one_name_are_refused() -> None:
    found = _problems(
        "notifications:\n"
        "  - {name: ops, url: 'https://a.example.org'}\n"
        "  - {name: ops, url: 'https://b.example.org'}\n"
    )
    assert [(p.path, p.message) for p in found] == [
        ("notifications[1].name", "the webhook name 'ops' is used twice")
    ]
