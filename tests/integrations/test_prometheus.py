"""The Prometheus client against a real server: raw samples, refusals, down servers, bounds."""

from __future__ import annotations

import time
import uuid

import pytest

from releaser.errors import ExternalUnavailable
from releaser.integrations.prometheus import PrometheusClient, QueryFailed
from tests.conftest import free_port
from tests.integrations import prometheus_fixture
from tests.integrations.prometheus_fixture import Exporter, Prometheus

pytestmark = pytest.mark.prometheus

exporter = prometheus_fixture.exporter
prometheus = prometheus_fixture.prometheus


def test_raw_samples_are_every_scrape_of_every_series(
    exporter: Exporter, prometheus: Prometheus
) -> None:
    test = uuid.uuid4().hex[:12]
    exporter.serve(test, "r1", 10, 1, 0.02)
    exporter.serve(test, "r2", 5, 0, 0.02)
    prometheus.wait_for(f'stub_requests_total{{test="{test}"}}', {"r1": 10, "r2": 5})
    exporter.serve(test, "r1", 7, 0, 0.02)
    prometheus.wait_for(f'stub_requests_total{{test="{test}"}}', {"r1": 17, "r2": 5})
    client = PrometheusClient(prometheus.url)
    series = client.raw_samples(
        f'stub_requests_total{{test="{test}"}}', at=time.time(), window_s=60
    )
    by_release = {s.labels["release"]: s.samples for s in series}
    assert set(by_release) == {"r1", "r2"}
    values = [v for _, v in by_release["r1"]]
    assert values[0] == 10 and values[-1] == 17 and values == sorted(values)
    assert client.check(f'stub_requests_total{{test="{test}"}}', at=time.time()) == 2


def test_a_refused_query_names_the_query(prometheus: Prometheus) -> None:
    client = PrometheusClient(prometheus.url)
    with pytest.raises(QueryFailed, match=r"refused the query 'stub_requests_total\{test=") as err:
        client.check('stub_requests_total{test="x"', at=time.time())
    assert err.value.hint is not None and "metrics.prometheus" in err.value.hint


def test_an_unreachable_server_names_the_query_and_hides_credentials() -> None:
    url = f"http://reader:s3cret@127.0.0.1:{free_port()}"
    client = PrometheusClient(url, timeout_s=1)
    with pytest.raises(ExternalUnavailable) as err:
        client.raw_samples("up", at=time.time(), window_s=10)
    assert "'up'" in err.value.message and "***@127.0.0.1" in err.value.message
    assert "s3cret" not in err.value.message and "reader" not in err.value.message


def test_an_answer_over_the_size_bound_is_refused(
    exporter: Exporter, prometheus: Prometheus
) -> None:
    test = uuid.uuid4().hex[:12]
    exporter.serve(test, "r1", 1, 0, 0.02)
    prometheus.wait_for(f'stub_requests_total{{test="{test}"}}', {"r1": 1})
    client = PrometheusClient(prometheus.url, max_bytes=64)
    with pytest.raises(QueryFailed, match="larger than"):
        client.raw_samples(f'stub_requests_total{{test="{test}"}}', at=time.time(), window_s=60)
