"""``releaser validate`` asks Prometheus each query of a service that reads its metrics there."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integrations import prometheus_fixture
from tests.integrations.prometheus_fixture import Exporter, Prometheus

pytestmark = pytest.mark.prometheus

exporter = prometheus_fixture.exporter
prometheus = prometheus_fixture.prometheus


def _repo(tmp_path: Path, cli, metrics: str) -> Path:
    repo = tmp_path / "svc"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert cli("init", cwd=repo).code == 0
    cfg = repo / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8")
    marker = "  case-triage:\n"
    cfg.write_text(text.replace(marker, marker + metrics, 1), encoding="utf-8")
    return repo


def _block(url: str, requests: str) -> str:
    return (
        "    metrics:\n      source: prometheus\n      prometheus:\n"
        f"        url: {url}\n        requests: '{requests}'\n        timeout_s: 2\n"
    )


def test_validate_lists_each_query_and_what_it_matches(
    tmp_path: Path, cli, exporter: Exporter, prometheus: Prometheus
) -> None:
    test = uuid.uuid4().hex[:12]
    exporter.serve(test, "r1", 3, 0, 0.02)
    prometheus.wait_for(f'stub_requests_total{{test="{test}"}}', {"r1": 3})
    repo = _repo(tmp_path, cli, _block(prometheus.url, f'stub_requests_total{{test="{test}"}}'))
    res = cli("validate", cwd=repo)
    assert res.code == 0, res.err
    assert (
        f"metrics.prometheus.requests: 'stub_requests_total{{test=\"{test}\"}}': 1 series"
        in res.out
    )
    assert "metrics.prometheus.errors" in res.out and "no series yet" in res.out
    assert cli("validate", "--offline", cwd=repo).out.count("metrics.prometheus") == 0


def test_validate_names_a_query_prometheus_refuses(
    tmp_path: Path, cli, prometheus: Prometheus
) -> None:
    # A selector releaser accepts but Prometheus does not: an unknown matcher operator.
    repo = _repo(tmp_path, cli, _block(prometheus.url, 'stub_requests_total{test=~~"x"}'))
    res = cli("validate", cwd=repo)
    assert res.code == 2
    assert "refused the query 'stub_requests_total{test=~~\"x\"}'" in res.err


def test_validate_warns_naming_the_query_when_prometheus_is_down(tmp_path: Path, cli) -> None:
    # A CI runner often cannot reach production's Prometheus: the config is still valid.
    url = f"http://ops:hunter2@127.0.0.1:{free_port()}"
    repo = _repo(tmp_path, cli, _block(url, "stub_requests_total"))
    res = cli("validate", cwd=repo)
    assert res.code == 0, res.err
    assert "services.case-triage.metrics.prometheus:" in res.err and "were not checked" in res.err
    assert "did not answer the query 'stub_requests_total'" in res.err
    assert "hunter2" not in res.err + res.out and "***@127.0.0.1" in res.err
