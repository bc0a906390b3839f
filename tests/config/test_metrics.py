"""The ``metrics:`` part of a service: its defaults, and problems that name the field."""

from __future__ import annotations

import pytest

from releaser.config import parse_config
from releaser.config.metrics import MetricsSpec
from releaser.errors import ConfigError
from releaser.store.redact import redact_url

BASE = """\
project: casework
owners:
  - {name: Priya, email: priya@example.org, role: service-owner}
services:
  case-triage:
    model: {name: case-triage, alias: champion}
    slos: {error_rate: 0.01}
"""


def _config(metrics: str) -> str:
    return BASE + "    metrics:\n" + "".join(f"      {line}\n" for line in metrics.splitlines())


def test_the_router_is_the_default_source() -> None:
    svc = parse_config(BASE).services["case-triage"]
    assert svc.metrics.source == "router"


def test_prometheus_defaults_fit_what_the_gateway_exports() -> None:
    svc = parse_config(_config("source: prometheus")).services["case-triage"]
    spec = svc.metrics.server
    assert spec.selector("requests", "case-triage") == (
        'releaser_gateway_requests_total{service="case-triage"}'
    )
    assert spec.selector("errors", "case-triage").startswith("releaser_gateway_upstream_errors")
    assert spec.latency is not None and "request_duration_seconds_bucket" in spec.latency
    assert spec.release_label == "release" and spec.scale_to_ms == 1000.0


def test_the_metrics_source_is_not_part_of_the_config_hash() -> None:
    plain = parse_config(BASE).services["case-triage"]
    with_prom = parse_config(_config("source: prometheus")).services["case-triage"]
    assert plain.model_dump() == with_prom.model_dump()  # what the config hash covers


@pytest.mark.parametrize(
    ("block", "path", "words"),
    [
        ("source: graphite", "metrics.source", "router"),
        (
            "source: prometheus\nprometheus:\n  requests: 'increase(x_total[5m])'",
            "metrics.prometheus.requests",
            "series selector",
        ),
        (
            "source: prometheus\nprometheus:\n  latency: 'x_seconds_sum{job=\"m\"}'",
            "metrics.prometheus",
            "_bucket",
        ),
        ("source: prometheus\nprometheus:\n  timeout_s: 0", "metrics.prometheus.timeout_s", ""),
        ("source: prometheus\nprometheus:\n  url: 'ftp://x'", "metrics.prometheus.url", ""),
        ("source: prometheus\nprometheus:\n  lables: x", "metrics.prometheus.lables", ""),
    ],
)
def test_a_bad_metrics_block_names_the_field(block: str, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(block))
    rendered = [p.render() for p in err.value.problems]
    assert any(f"services.case-triage.{path}" in r and words in r for r in rendered), rendered


def test_credentials_in_the_url_are_redacted_for_display() -> None:
    spec = MetricsSpec.model_validate(
        {"source": "prometheus", "prometheus": {"url": "https://u:p4ss@prom.example.org/x"}}
    )
    assert redact_url(spec.server.url) == "https://***@prom.example.org/x"
    assert redact_url("http://prom:9090") == "http://prom:9090"
