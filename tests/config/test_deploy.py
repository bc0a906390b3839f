"""The ``deploy:`` section of a service: targets, upstreams, unit id sources, errors."""

from __future__ import annotations

import pytest

from releaser.config import config_hash, parse_config
from releaser.errors import ConfigError

BASE = """\
version: 1
project: deploy-test
owners:
  - {name: Ops, email: ops@example.org, role: service-owner}
services:
  triage:
    prompts: [triage-system]
    slos: {error_rate: 0.02}
"""


def _with(deploy: str) -> str:
    return BASE + "".join(f"    {line}\n" for line in deploy.strip("\n").splitlines())


def test_upstreams_and_unit_sources_parse() -> None:
    cfg = parse_config(
        _with(
            """
deploy:
  upstreams:
    baseline: http://127.0.0.1:8001/
    candidate: http://127.0.0.1:8002/v1
    releases: {abc123: "http://10.0.0.5:9000"}
  unit_header: X-Council-Id
  unit_cookie: uid
  attribute_headers: {email: X-User-Email}
"""
        )
    )
    deploy = cfg.service("triage").deploy
    assert deploy is not None and deploy.target == "none"
    assert deploy.upstreams is not None
    assert deploy.upstreams.baseline == "http://127.0.0.1:8001"  # trailing slash dropped
    assert deploy.upstreams.candidate == "http://127.0.0.1:8002/v1"
    assert deploy.upstreams.releases == {"abc123": "http://10.0.0.5:9000"}
    assert (deploy.unit_header, deploy.unit_cookie) == ("X-Council-Id", "uid")
    assert deploy.attribute_headers == {"email": "X-User-Email"}


def test_docker_target_needs_no_upstreams_and_has_container_defaults() -> None:
    deploy = parse_config(_with("deploy: {target: docker}")).service("triage").deploy
    assert deploy is not None and deploy.upstreams is None
    assert deploy.container.port == 8080 and deploy.container.health_path == "/healthz"
    assert deploy.unit_header == "X-User-Id"


@pytest.mark.parametrize(
    ("deploy", "path", "words"),
    [
        ("deploy: {target: none}", "services.triage.deploy", "needs 'upstreams'"),
        ("deploy: {upstreams: {baseline: 'ftp://x'}}", "baseline", "not an http(s) base URL"),
        ("deploy: {target: docker, unit_header: 'X User'}", "unit_header", ""),
        ("deploy: {target: k8s}", "target", ""),
        ("deploy: {target: docker, container: {port: 0}}", "port", ""),
        ("deploy: {target: docker, limits: {max_body_bytes: -1}}", "max_body_bytes", ""),
        ("deploy: {target: docker, limits: {header_timeout_s: 0}}", "header_timeout_s", ""),
        ("deploy: {target: docker, limits: {max_connections: 0}}", "max_connections", ""),
        ("deploy: {target: docker, limits: {max_header_bytes: 100}}", "max_header_bytes", ""),
        ("deploy: {target: docker, limits: {max_requests: 5}}", "max_requests", ""),
        ("deploy: {upstreams: {}}", "upstreams", "names no endpoint"),
        ("deploy: {upstreams: {releases: {abc: 'http://x'}}}", "releases", "not a release id"),
        ("deploy: {upstreams: {releases: {ABCD: 'http://x'}}}", "releases", "not a release"),
        (
            "deploy: {upstreams: {releases: {abcd: 'http://x', abcd12: 'http://y'}}}",
            "releases",
            "overlap",
        ),
        ("deploy: {upstreams: {candidate: 'http://x'}}", "upstreams", "no baseline URL"),
    ],
)
def test_bad_deploy_sections_are_reported_with_their_place(
    deploy: str, path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with(deploy))
    problems = err.value.problems
    assert len(problems) == 1, [p.render() for p in problems]
    assert path in problems[0].path and words in problems[0].message
    assert problems[0].line == 9  # the deploy line of the file


def test_deploy_settings_do_not_change_the_config_hash() -> None:
    plain = parse_config(BASE).service("triage")
    deployed = parse_config(_with("deploy: {target: docker}")).service("triage")
    assert config_hash(plain) == config_hash(deployed)


def test_gateway_limits_have_bounded_defaults_and_can_be_set() -> None:
    deploy = parse_config(_with("deploy: {target: docker}")).service("triage").deploy
    assert deploy is not None
    defaults = deploy.limits
    assert defaults.max_header_bytes == 16_384 and defaults.max_body_bytes == 10 * 1_048_576
    assert defaults.header_timeout_s == 10 and defaults.body_timeout_s == 60
    assert defaults.max_concurrent_requests == 100 and defaults.max_connections == 500
    assert defaults.keep_alive_s == 5 and defaults.retry_after_s == 1
    custom = parse_config(
        _with("deploy: {target: docker, limits: {max_body_bytes: 1024, body_timeout_s: 2.5}}")
    ).service("triage")
    assert custom.deploy is not None
    assert custom.deploy.limits.max_body_bytes == 1024
    assert custom.deploy.limits.body_timeout_s == 2.5
    assert custom.deploy.limits.max_header_bytes == 16_384  # the rest keep their defaults


def test_endpoints_are_looked_up_by_release_and_by_role_only_while_trusted() -> None:
    deploy = (
        parse_config(
            _with(
                """
deploy:
  upstreams:
    baseline: http://127.0.0.1:8001
    candidate: http://127.0.0.1:8002
    releases: {38a2c1d0: "http://127.0.0.1:8003"}
"""
            )
        )
        .service("triage")
        .deploy
    )
    assert deploy is not None and deploy.served_by_gateway
    urls = deploy.upstreams
    assert urls is not None and urls.by_role
    # a release (by a prefix of its id) keeps its endpoint whatever its role
    for role in ("stable", "candidate"):
        for trusted in (True, False):
            found = urls.endpoint_for("38a2c1d0ffee", role, roles_trusted=trusted)  # type: ignore[arg-type]
            assert found == "http://127.0.0.1:8003"
    # the role form answers only while trusted (before the first promotion)
    assert urls.endpoint_for("9f01", "stable", roles_trusted=True) == "http://127.0.0.1:8001"
    assert urls.endpoint_for("9f01", "candidate", roles_trusted=True) == "http://127.0.0.1:8002"
    assert urls.endpoint_for("9f01", "stable", roles_trusted=False) is None
    assert urls.endpoint_for("9f01", "candidate", roles_trusted=False) is None


def test_per_release_upstreams_need_no_role_urls() -> None:
    deploy = (
        parse_config(_with('deploy: {upstreams: {releases: {9f01b7e4: "http://127.0.0.1:8001/"}}}'))
        .service("triage")
        .deploy
    )
    assert deploy is not None and deploy.upstreams is not None
    assert not deploy.upstreams.by_role
    assert deploy.upstreams.releases == {"9f01b7e4": "http://127.0.0.1:8001"}
    assert (
        not parse_config(_with("deploy: {target: docker}"))
        .service("triage")
        .deploy.served_by_gateway
    )  # type: ignore[union-attr]
