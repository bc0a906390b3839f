"""SLO alert rules: promtool accepts them, they fire when (and only when) the budget burns,
they read what the gateway exports, and their runbook links land on real sections."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from releaser.config import parse_config
from releaser.config.alerting import DEFAULT_LATENCY_BUCKETS_S, AlertSettings
from releaser.config.service import Slos
from releaser.docs.alert_rules import AlertRules, heading_anchor, le_bucket, render_alert_rules
from releaser.errors import BadInput, ConfigError

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)"
)
SVC = "svc"
REQ = "releaser_gateway_requests_total"
HIST = "releaser_gateway_request_duration_seconds"


def _rules(**slos: float) -> AlertRules:
    return render_alert_rules(SVC, Slos(**slos), AlertSettings(), "rel-1")


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _expect(rules: AlertRules, name: str) -> dict[str, Any]:
    """The alert ``name`` as promtool's exp_alerts states it: every label and annotation."""
    rule = next(r for g in rules.groups for r in g["rules"] if r.get("alert") == name)
    return {"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}


def _run_unit_test(
    tmp_path: Path, rules: AlertRules, series: list[dict[str, str]], checks: list[dict[str, Any]]
) -> None:
    (tmp_path / "rules.yml").write_text(rules.to_yaml(), encoding="utf-8")
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False), encoding="utf-8")
    ran = _promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def _requests(ok: str, errors: str) -> list[dict[str, str]]:
    return [
        {"series": f'{REQ}{{service="{SVC}", variant="stable", code="200"}}', "values": ok},
        {"series": f'{REQ}{{service="{SVC}", variant="stable", code="503"}}', "values": errors},
        # Another service's errors must not count against this one.
        {
            "series": f'{REQ}{{service="other", variant="stable", code="500"}}',
            "values": "0+900x300",
        },
    ]


def _none(at: str, *names: str) -> list[dict[str, Any]]:
    return [{"eval_time": at, "alertname": n, "exp_alerts": []} for n in names]


@needs_promtool
def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    rules = _rules(availability=0.995, error_rate=0.01, latency_p95_ms=500)
    path = tmp_path / "rules.yml"
    path.write_text(rules.to_yaml(), encoding="utf-8")
    ran = _promtool("check", "rules", str(path), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # 3 objectives x 5 windows of recording rules, 3 objectives x 3 alerts
    assert "SUCCESS: 24 rules found" in ran.stdout
    for alert in rules.alerts:
        assert alert.runbook_url == f"runbooks/{SVC}.md#{alert.name.lower()}"


@needs_promtool
def test_a_fast_burn_pages_within_minutes_and_not_before(tmp_path: Path) -> None:
    """0.1% errors for an hour, then a third of requests fail (~100x the 0.5% budget)."""
    rules = _rules(availability=0.995)
    series = _requests("0+1000x300", "0+1x60 61+500x240")
    fast, medium, slow = (
        f"ReleaserAvailability{s}" for s in ("BurnFast", "BurnMedium", "BurnSlow")
    )
    checks = [
        *_none("59m", fast, medium, slow),
        # 5 minutes in, the 1-hour window has not yet spent 14.4x the budget
        *_none("65m", fast),
        {"eval_time": "80m", "alertname": fast, "exp_alerts": [_expect(rules, fast)]},
        {"eval_time": "90m", "alertname": medium, "exp_alerts": [_expect(rules, medium)]},
    ]
    _run_unit_test(tmp_path, rules, series, checks)


@needs_promtool
def test_healthy_traffic_fires_nothing(tmp_path: Path) -> None:
    """0.2% errors against a 0.5% budget, for five hours: no page, no ticket."""
    rules = _rules(availability=0.995, latency_p95_ms=500)
    hist = [
        {"series": f'{HIST}_bucket{{service="{SVC}", le="0.5"}}', "values": "0+990x300"},
        {"series": f'{HIST}_count{{service="{SVC}"}}', "values": "0+1000x300"},
    ]
    series = _requests("0+1000x300", "0+2x300") + hist
    names = [a.name for a in rules.alerts]
    assert len(names) == 6
    checks = [c for at in ("30m", "2h", "5h") for c in _none(at, *names)]
    _run_unit_test(tmp_path, rules, series, checks)


@needs_promtool
def test_a_slow_burn_opens_a_ticket_and_pages_nobody(tmp_path: Path) -> None:
    """2% errors against a 1% error-rate objective (2x burn) for three hours."""
    rules = _rules(error_rate=0.01)
    series = _requests("0+980x200", "0+20x200")
    fast, medium, slow = (f"ReleaserErrorRate{s}" for s in ("BurnFast", "BurnMedium", "BurnSlow"))
    checks = [
        *_none("30m", slow),  # above the factor, but not yet for the rule's hour
        {"eval_time": "150m", "alertname": slow, "exp_alerts": [_expect(rules, slow)]},
        *_none("150m", fast, medium),
    ]
    assert _expect(rules, slow)["exp_labels"]["severity"] == "ticket"
    _run_unit_test(tmp_path, rules, series, checks)


@needs_promtool
def test_latency_burn_counts_requests_over_the_threshold_bucket(tmp_path: Path) -> None:
    """p95 <= 500 ms; after an hour 90% of requests take longer than 0.5 s (18x the 5%)."""
    rules = _rules(latency_p95_ms=500)
    assert rules.warnings == []
    series = [
        {"series": f'{HIST}_bucket{{service="{SVC}", le="0.25"}}', "values": "0+500x200"},
        {
            "series": f'{HIST}_bucket{{service="{SVC}", le="0.5"}}',
            "values": "0+990x60 59400+100x140",
        },
        {"series": f'{HIST}_bucket{{service="{SVC}", le="+Inf"}}', "values": "0+1000x200"},
        {"series": f'{HIST}_count{{service="{SVC}"}}', "values": "0+1000x200"},
    ]
    fast = "ReleaserLatencyBurnFast"
    checks = [
        *_none("60m", fast),
        *_none("100m", fast),  # the hour's share of slow requests is still below 72%
        {"eval_time": "115m", "alertname": fast, "exp_alerts": [_expect(rules, fast)]},
    ]
    _run_unit_test(tmp_path, rules, series, checks)


def test_threshold_between_buckets_uses_the_bucket_above_and_says_so() -> None:
    buckets = list(DEFAULT_LATENCY_BUCKETS_S)
    assert le_bucket(0.5, buckets) == (0.5, None)
    bound, warning = le_bucket(0.3, buckets)
    assert bound == 0.5
    assert warning is not None and "between the buckets 250 ms and 500 ms" in warning
    rules = _rules(latency_p95_ms=300)
    assert any("300 ms falls between" in w for w in rules.warnings)
    assert 'le=~"0\\\\.5"' in rules.to_yaml()
    with pytest.raises(BadInput, match="above the histogram's largest bucket"):
        _rules(latency_p95_ms=60_000)


def test_objectives_without_a_series_or_a_budget_are_named() -> None:
    rules = _rules(availability=0.999, quality_score=0.8)
    assert [a.objective for a in rules.alerts] == ["availability"] * 3
    assert any("quality_score" in w for w in rules.warnings)
    with pytest.raises(BadInput, match="no objective Prometheus can measure"):
        _rules(quality_score=0.8)
    assert render_alert_rules(SVC, Slos(availability=0.99), AlertSettings(), None).release == "none"


def test_the_rules_read_the_series_the_gateway_exports() -> None:
    """The default names, labels and le values are those of ``releaser serve``'s metrics."""
    from releaser.serve import metrics

    assert tuple(metrics._BUCKETS) == DEFAULT_LATENCY_BUCKETS_S
    gateway = metrics.GatewayMetrics(SVC)
    gateway.observe("stable", "rel-1", 503, 0.3)
    text = gateway.exposition()[0].decode()
    text_yaml = _rules(availability=0.99, latency_p95_ms=1000).to_yaml()
    assert f'{REQ}{{code="503",release="rel-1",service="{SVC}",variant="stable"}} 1.0' in text
    le = re.search(r'le=~"([^"]+)"', text_yaml)
    assert le is not None
    pattern = le.group(1).replace("\\\\", "\\")
    exported = re.findall(rf'{HIST}_bucket\{{le="([^"]+)"', text)
    assert [v for v in exported if re.fullmatch(pattern, v)] == ["1.0"]
    assert f"{HIST}_count{{" in text


def test_settings_override_metrics_selector_and_runbook_url() -> None:
    settings = AlertSettings(
        requests_metric="http_requests_total",
        selector='job="api", app="{service}"',
        runbook_base_url="https://example.org/runbooks/",
    )
    rules = render_alert_rules(SVC, Slos(availability=0.99), settings, "r")
    text = rules.to_yaml()
    assert f'http_requests_total{{job="api", app="{SVC}", code=~"5.."}}' in text
    assert REQ not in text
    assert rules.alerts[0].runbook_url == (
        f"https://example.org/runbooks/{SVC}.md#releaseravailabilityburnfast"
    )


def test_a_bad_alerts_block_is_reported_with_its_field() -> None:
    text = (
        "project: p\nowners: [{name: A, email: a@example.org, role: owner}]\n"
        "services:\n  s:\n    prompts: [p]\n    slos: {availability: 0.99}\n"
        "alerts:\n  selector: 'service=={service}'\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    found = caught.value.problems
    assert [(p.path, p.line) for p in found] == [("alerts.selector", 8)]
    assert "is not a label matcher" in found[0].message


@pytest.mark.slow
def test_runbook_lists_the_rules_and_every_runbook_url_lands_on_a_heading(
    rollout_copy, cli, tmp_path
) -> None:
    root = rollout_copy.root
    ran = cli("alerts", "render", "case-triage", "--out", str(tmp_path), "--json", cwd=root)
    assert ran.code == 0, ran.err
    out = yaml.safe_load(ran.out)
    assert out["release"] == rollout_copy.stable
    assert out["recording_rules"] > 0 and out["alerts"]
    rules_file = tmp_path / "case-triage.rules.yml"
    assert Path(out["path"]) == rules_file
    if PROMTOOL is not None:
        assert _promtool("check", "rules", str(rules_file), cwd=tmp_path).returncode == 0
    again = cli("alerts", "render", "case-triage", "--out", str(tmp_path), cwd=root)
    assert again.code == 0 and "unchanged" in again.out
    assert cli("runbook", "case-triage", cwd=root).code == 0
    text = (root / "runbooks" / "case-triage.md").read_text(encoding="utf-8")
    headings = {heading_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}
    for alert in out["alerts"]:
        path, _, anchor = alert["runbook_url"].partition("#")
        assert path == "runbooks/case-triage.md"
        assert anchor in headings, anchor
        assert alert["expr"] in text
    assert "## Prometheus alert rules" in text


@pytest.mark.slow
def test_the_handover_pack_carries_the_rules(rollout_copy, cli, tmp_path) -> None:
    ran = cli("handover", "case-triage", "-o", str(tmp_path), cwd=rollout_copy.root)
    assert ran.code == 0, ran.err
    pack = tmp_path / "case-triage-handover"
    rules = yaml.safe_load((pack / "alert-rules.yml").read_text(encoding="utf-8"))
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert {a["labels"]["release"] for a in alerts} == {rollout_copy.stable}
    assert "## Prometheus alert rules" in (pack / "runbook.md").read_text(encoding="utf-8")


def test_alerts_render_refuses_an_objective_no_bucket_can_measure(tmp_path: Path, cli) -> None:
    config = tmp_path / "releaser.yaml"
    config.write_text(
        "project: p\nowners: [{name: A, email: a@example.org, role: owner}]\n"
        "prompts: {backend: file}\n"
        "services:\n  s:\n    prompts: [p]\n    slos: {latency_p95_ms: 60000}\n",
        encoding="utf-8",
    )
    refused = cli("alerts", "render", "s", cwd=tmp_path)
    assert refused.code == 2
    assert "60000 ms is above the histogram's largest bucket (30000 ms)" in refused.err
    assert "alerts.latency_buckets_s" in refused.err and "Traceback" not in refused.err
    assert not (tmp_path / "alerts").exists()
    config.write_text(config.read_text().replace("60000", "250"), encoding="utf-8")
    done = cli("alerts", "render", "s", cwd=tmp_path)
    assert done.code == 0, done.err
    assert "wrote " in done.out and "ReleaserLatencyBurnFast [page]" in done.out
    assert "no stable release yet" in done.err
    assert (tmp_path / "alerts" / "s.rules.yml").is_file()
