"""The eval gate: score a release on its golden set, against thresholds and the baseline.

``run_gate`` reads the golden set at the revision the release pins, predicts
with the release (and with the service's stable release as the baseline, on
the same rows), scores every row, and judges thresholds, non-regression with
a paired bootstrap interval, and every slice (see
:mod:`releaser.core.gate_eval`). The report is stored as evidence on the
release (record kind ``gate``, audited as ``gate.run``), then logged as an
MLflow evaluation run with the report as an artifact, whose id is then recorded on the
report (``gate.mlflow``): intent before effect, so a killed gate owes the run rather than
leaving one no record names.

``require_gates`` is what ``rollout start`` asks before it moves traffic.
"""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from releaser.api.context import current_actor, utc_now
from releaser.api.gate_inputs import check_pinned_code, eval_suite, load_golden, resolve_scorers
from releaser.api.gate_llm import LlmEvidence, row_means, sample_scores, trace_rows
from releaser.api.gate_predict import (
    MAX_STORED_BYTES,
    PREDICTIONS_KIND,
    Predictions,
    Progress,
    cache_key,
    model_uri,
    predict_release,
    resolve_function,
)
from releaser.api.gate_report import GateReport
from releaser.api.releases import (
    get_release,
    get_service_release,
    pinned_drift,
    pinned_drift_warning,
)
from releaser.core.audit import EventDraft
from releaser.core.gate_eval import NonRegressionRule, evaluate_gate
from releaser.core.release import GATE_RECORD, gate_key
from releaser.core.scorers import score_rows
from releaser.errors import BadInput, CheckFailed, StateConflict
from releaser.store.base import Record, Write

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.service import EvalSuite
    from releaser.core.release import Release

__all__ = ["GATE_KIND", "GateReport", "last_gate", "require_gates", "run_gate"]

GATE_KIND = GATE_RECORD
EXPERIMENT = "releaser-gates"
ATTEMPT_TAG = "releaser.gate_attempt"
"""The MLflow tag naming the attempt a gate run's MLflow run was logged under."""


def _baseline(ws: Workspace, release: Release) -> Release | None:
    from releaser.api.state import service_state

    stable = service_state(ws, release.service).stable
    if stable is None or stable == release.id:
        return None
    return get_release(ws, stable)


def _gate_record(ws: Workspace, release: Release | None) -> Record | None:
    if release is None:
        return None
    return ws.store.get(GATE_KIND, _key(release.service, release.id))


def _speeds(record: Record | None) -> dict[str, float]:
    """The predict speeds (ms a row by model URI) a stored gate run measured."""
    speeds = record.value.get("ms_per_row") if record else None
    if not isinstance(speeds, dict):
        return {}
    return {str(k): float(v) for k, v in speeds.items() if isinstance(v, int | float) and v > 0}


def _scores(
    preds: Predictions,
    labels: list[Any],
    scorers: dict[str, Any],
    judged: dict[str, list[list[float]]] | None = None,
    variance: dict[str, float] | None = None,
) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]:
    """Per metric, each row's score; from an LLM endpoint, the mean of the row's samples
    (``variance`` then gets each metric's mean variance between samples, when k > 1)."""
    ok = np.asarray(preds.ok, dtype=bool)
    out: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
    spread: dict[str, list[float] | None] = {}
    for metric, fn in scorers.items():
        if fn is None:  # latency: measured, not scored
            out[metric] = np.array(preds.latency_ms, dtype=np.float64)  # None -> NaN
        elif preds.calls is not None:
            means, spread[metric] = sample_scores(preds.calls, labels, fn)
            out[metric] = np.asarray(means, dtype=np.float64)
        else:
            out[metric] = score_rows(fn, preds.values, labels, ok)
    for metric, per_row in (judged or {}).items():
        means, spread[metric] = row_means(per_row)
        out[metric] = np.asarray(means, dtype=np.float64)
    if variance is not None:
        for metric, values in spread.items():
            if values is not None:
                variance[metric] = round(float(np.mean(values)), 6) if values else 0.0
    return out


def _rule(suite: EvalSuite) -> NonRegressionRule | None:
    nr = suite.non_regression
    if nr is None:
        return None
    return NonRegressionRule(nr.metric, nr.max_drop, nr.confidence, nr.bootstrap_samples, nr.seed)


def _primary(suite: EvalSuite) -> str:
    if suite.non_regression is not None:
        return suite.non_regression.metric
    quality = [s.metric for s in suite.scorers if s.name != "latency"]
    return quality[0] if quality else suite.scorers[0].metric


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else round(v, 6)) for k, v in values.items()}


def evaluate_release(
    ws: Workspace, release: Release, *, progress: Progress | None = None, use_cache: bool = True
) -> GateReport:
    """Score ``release`` and judge it, without storing anything (``run_gate`` stores)."""
    return _evaluate(ws, release, progress, use_cache, _gate_record(ws, release))[0]


def _evaluate(
    ws: Workspace,
    release: Release,
    progress: Progress | None,
    use_cache: bool,
    previous: Record | None,
) -> tuple[GateReport, dict[str, Predictions], str | None]:
    """The report, the predictions it was judged on by their cache key (none when the
    suite keeps them out of the store), and for an LLM endpoint the candidate's rows as
    JSON lines for MLflow (None when the suite keeps predictions out of shared places).
    ``previous`` is the release's stored gate record."""
    service = release.service
    suite = eval_suite(ws, release)
    if suite is None:
        raise BadInput(
            f"release {release.id} of {service} has no eval suite",
            hint=f"add 'eval' under services.{service} in releaser.yaml and create a new release",
        )
    # Everything that can be wrong with the input is found before anything is predicted.
    scorers = resolve_scorers(ws, service, suite, release)
    custom = [scorers[s.metric] for s in suite.scorers if s.name == "custom"]
    code_warnings = check_pinned_code(ws, release, [resolve_function(ws, release, suite), *custom])
    golden = load_golden(ws.root, release, suite)
    baseline = _baseline(ws, release)
    total = len(golden.rows) * (2 if baseline is not None else 1)

    def part(offset: int) -> Progress | None:
        if progress is None:
            return None
        return lambda done, _n: progress(offset + done, total)

    # Each model's speed as measured by the last gate run of the baseline, then of the
    # release: the first predict call is sized by it rather than kept small.
    speeds = {**_speeds(_gate_record(ws, baseline)), **_speeds(previous)}
    measured: dict[str, float] = {}
    predicted: dict[str, Predictions] = {}

    def predict(rel: Release, offset: int) -> Predictions:
        uri = model_uri(rel, suite)
        preds = predict_release(
            ws,
            rel,
            golden,
            suite,
            progress=part(offset),
            use_cache=use_cache,
            ms_per_row=speeds.get(uri or ""),
        )
        speed = preds.ms_per_row if uri is not None else None
        if uri is not None and speed is not None:
            measured[uri] = float(f"{speed:.4g}")
        if suite.store_predictions:
            predicted[cache_key(rel, golden, suite)] = preds
        return preds

    cand = predict(release, 0)
    base_preds = predict(baseline, len(golden.rows)) if baseline is not None else None
    judge_specs = [s for s in suite.scorers if s.name == "judge"]
    llm = LlmEvidence(ws, release, golden, suite, judge_specs, cand, base_preds)
    variance: dict[str, float] = {}
    cand_scores = _scores(cand, golden.labels, scorers, llm.judged, variance)
    base_scores = (
        _scores(base_preds, golden.labels, scorers, llm.base_judged) if base_preds else None
    )
    outcome = evaluate_gate(
        cand_scores,
        base_scores,
        thresholds=suite.thresholds,
        non_regression=_rule(suite),
        primary_metric=_primary(suite),
        slice_columns={c: golden.text_column(c) for c in suite.slices},
        slice_max_drop=suite.slice_max_drop,
        slice_min_rows=suite.slice_min_rows,
        errors=cand.error_count,
        error_examples=cand.errors,
        baseline_ok=base_preds.ok if base_preds else None,
        baseline_error_examples=base_preds.errors if base_preds else (),
        not_predicted=cand.not_predicted,
        stopped_after=suite.max_consecutive_errors,
    )
    budget_failures = [b.explain() for b in llm.budgets if not b.passed]
    report = GateReport(
        service=service,
        release_id=release.id,
        baseline_id=baseline.id if baseline else None,
        passed=outcome.passed and not budget_failures,
        at=utc_now(),
        actor=current_actor().name,
        dataset=golden.path,
        dataset_md5=golden.md5,
        dataset_rev=golden.rev,
        rows=len(golden.rows),
        errors=cand.error_count,
        error_examples=cand.errors,
        not_predicted=cand.not_predicted,
        baseline_errors=base_preds.unanswered if base_preds else 0,
        metrics=_clean(outcome.metrics),
        baseline_metrics=_clean(outcome.baseline_metrics),
        checks=outcome.checks,
        slices=outcome.slices,
        failures=[*outcome.failures, *budget_failures],
        warnings=[*code_warnings, *outcome.warnings],
        ms_per_row=measured,
        cached=cand.cached and (base_preds is None or base_preds.cached),
        usage=llm.usage,
        baseline_usage=llm.baseline_usage,
        budgets=[b.__dict__ for b in llm.budgets],
        judges=llm.judges,
        sample_variance=variance,
        prompts=", ".join(f"{p.name}@{p.version}" for p in release.content.prompts),
    )
    traces = None
    if suite.llm is not None and suite.store_predictions and cand.calls is not None:
        traces = trace_rows(ws, release, golden, suite, cand.calls, cand_scores, llm.judged)
    return report, predicted, traces


def _log_mlflow(
    ws: Workspace, report: GateReport, traces: str | None = None, attempt: str = ""
) -> tuple[str | None, str | None]:
    """Log the report as an MLflow evaluation run; (run id, warning).

    For an LLM endpoint the run also holds ``eval_rows.jsonl``: each golden row's inputs,
    rendered prompt, answers, tokens, latency and scores, and is tagged with the prompt
    versions the release pins.
    """
    import json

    files = {
        "gate_report.md": report.markdown(),
        "gate_report.json": json.dumps(report.to_dict(), indent=2),
    }
    if traces is not None:
        files["eval_rows.jsonl"] = traces
    values = {k: v for k, v in report.metrics.items() if v is not None}
    values |= {f"baseline_{k}": v for k, v in report.baseline_metrics.items() if v is not None}
    values["errors"] = float(report.errors)
    values["not_predicted"] = float(report.not_predicted)
    values["baseline_errors"] = float(report.baseline_errors)
    try:
        _, artifact_location = ws.mlflow_uris()
        run_id = ws.models.log_run(
            EXPERIMENT,
            artifact_location=artifact_location,
            run_name=f"gate-{report.service}-{report.release_id}",
            tags={
                "releaser.release_id": report.release_id,
                "releaser.service": report.service,
                "releaser.gate": "passed" if report.passed else "failed",
                "releaser.baseline_id": report.baseline_id or "",
                "releaser.dataset": report.dataset,
                "releaser.dataset_md5": report.dataset_md5,
                "releaser.prompts": report.prompts,
                ATTEMPT_TAG: attempt,
            },
            metrics=values,
            files=files,
        )
        return run_id, None
    except Exception as exc:  # noqa: BLE001 - the store holds the evidence; MLflow mirrors it
        return None, f"could not log the gate to MLflow: {type(exc).__name__}: {exc}"


def _same_outcome(a: GateReport, b: GateReport) -> bool:
    fields = (
        "baseline_id",
        "dataset_md5",
        "passed",
        "metrics",
        "checks",
        "slices",
        "errors",
        "not_predicted",
        "baseline_errors",
    )
    return b.cached and all(getattr(a, f) == getattr(b, f) for f in fields)


def _storable(
    predicted: dict[str, Predictions],
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The predictions to store (JSON-ready: all but those the store holds already and
    those it cannot hold), and a warning for each one it cannot hold."""
    storable: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for key, preds in predicted.items():
        if preds.stored:
            continue
        size = preds.json_size()
        why = None
        if size > MAX_STORED_BYTES:
            why = (
                f"about {size / 2**20:.0f} MB as JSON, over the store's limit of "
                f"{MAX_STORED_BYTES // 2**20} MB"
            )
        elif any(issubclass(t, float) for t in set(map(type, preds.values))) and any(
            isinstance(v, float) and not math.isfinite(v) for v in preds.values
        ):
            why = "a prediction is NaN or infinite, which the store's JSON cannot hold"
        if why is None:
            storable[key] = preds.to_json()
        else:
            warnings.append(
                f"the predictions {key} stay in this machine's cache only, not in the store "
                f"({why}): a gate run elsewhere predicts them again"
            )
    return storable, warnings


def _prediction_writes(ws: Workspace, storable: dict[str, dict[str, Any]]) -> list[Write]:
    """Writes for the predictions the store does not hold as they are."""
    writes = []
    for key, value in storable.items():
        existing = ws.store.get(PREDICTIONS_KIND, key)
        if existing is None or existing.value != value:
            writes.append(Write(PREDICTIONS_KIND, key, value, existing.version if existing else 0))
    return writes


_key = gate_key


def run_gate(
    ws: Workspace,
    service: str,
    release_id: str,
    *,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> GateReport:
    """Run the eval gate on a release; store the report as evidence and log it to MLflow.

    Returns the report whether it passed or not (the CLI turns a failure into
    exit code 1). Bad input raises before anything is predicted or written.
    ``use_cache=False`` predicts every row of both releases again; the store then
    keeps the new predictions.

    Intent before effect: the report and its predictions are committed first (``gate.run``),
    naming the MLflow run still owed (``mlflow_attempt``, a tag the run is logged under);
    then the run is logged; then its id is recorded (``gate.mlflow``). A run killed between
    the two leaves the MLflow run owed, and the next gate run on the release finds the run
    by its tag rather than logging a second one.
    """
    ws.config.service(service)
    release = get_service_release(ws, service, release_id)
    record = _gate_record(ws, release)
    report, predicted, traces = _evaluate(ws, release, progress, use_cache, record)
    storable, unstored = _storable(predicted)
    previous = GateReport.model_validate(record.value) if record else None
    drift = pinned_drift_warning("eval suite", release.id, pinned_drift(ws, release, "eval"))
    warnings = [*([drift] if drift else []), *report.warnings, *unstored]
    report = report.model_copy(update={"warnings": warnings})
    same = previous if previous is not None and _same_outcome(previous, report) else None
    if same is not None and same.mlflow_run_id:
        # A re-run on cached predictions that judged the same: the MLflow run already
        # holds this evidence, so it is not logged twice (and MLflow is not imported).
        report = report.model_copy(update={"mlflow_run_id": same.mlflow_run_id})
        _store(ws, release, report, storable)
        return report
    # The same verdict whose MLflow run is still owed keeps its attempt: the run may
    # have been logged by a process killed before it could record it.
    resumed = same.mlflow_attempt if same is not None else None
    attempt = resumed or uuid.uuid4().hex
    owed = report.model_copy(update={"mlflow_attempt": attempt})
    version = _store(ws, release, owed, storable)
    run_id, warning = _logged_before(ws, resumed) if resumed else (None, None)
    if run_id is None and warning is None:
        run_id, warning = _log_mlflow(ws, report, traces, attempt)
    if run_id is not None:
        report = report.model_copy(update={"mlflow_run_id": run_id})
    else:  # still owed, with why
        report = owed.model_copy(update={"warnings": [*warnings, *([warning] if warning else [])]})
    _record_run(ws, release, report, version, run_id, warning)
    return report


def _store(
    ws: Workspace, release: Release, report: GateReport, storable: dict[str, dict[str, Any]]
) -> int:
    """Commit ``report`` and the predictions to store, audited ``gate.run``; its version."""
    key = _key(release.service, release.id)
    for _attempt in range(3):
        existing = ws.store.get(GATE_KIND, key)
        event = EventDraft(
            actor=report.actor,
            action="gate.run",
            subject=f"release:{release.id}",
            at=report.at,
            before={"passed": existing.value.get("passed")} if existing else None,
            after={
                "service": release.service,
                "release_id": release.id,
                "baseline_id": report.baseline_id,
                "passed": report.passed,
                "metrics": report.metrics,
                "failures": report.failures,
                "dataset_md5": report.dataset_md5,
                "mlflow_run_id": report.mlflow_run_id,
                **({"mlflow_attempt": report.mlflow_attempt} if report.mlflow_attempt else {}),
            },
            context=current_actor().context,
        )
        expected = existing.version if existing else 0
        write = Write(GATE_KIND, key, report.to_dict(), expected)
        try:
            ws.store.commit([write, *_prediction_writes(ws, storable)], event)
            return expected + 1
        except StateConflict:
            continue  # another gate run on the same release committed first: record ours after
    raise StateConflict(
        f"the gate record of {release.id} kept changing while this run tried to store it",
        hint="run the gate again",
    )


def _record_run(
    ws: Workspace,
    release: Release,
    report: GateReport,
    version: int,
    run_id: str | None,
    warning: str | None,
) -> None:
    """Record the MLflow run's id (or why it is still owed) on the stored report, audited
    ``gate.mlflow``. Skipped when another gate run on the release has stored since: its
    report is the newer evidence, and this run's id is in the audit log either way."""
    key = _key(release.service, release.id)
    event = EventDraft(
        actor=report.actor,
        action="gate.mlflow",
        subject=f"release:{release.id}",
        at=utc_now(),
        after={
            "mlflow_run_id": run_id,
            "mlflow_attempt": report.mlflow_attempt if run_id is None else None,
            **({"error": warning} if warning else {}),
        },
        context=current_actor().context,
    )
    try:
        ws.store.commit([Write(GATE_KIND, key, report.to_dict(), version)], event)
    except StateConflict:
        pass


def _logged_before(ws: Workspace, attempt: str) -> tuple[str | None, str | None]:
    """(the run an earlier, interrupted gate run logged under ``attempt``, or None; a warning
    when MLflow cannot be searched)."""
    try:
        return ws.models.finished_run(EXPERIMENT, ATTEMPT_TAG, attempt), None
    except Exception as exc:  # noqa: BLE001 - the store holds the evidence; MLflow mirrors it
        return None, f"could not log the gate to MLflow: {type(exc).__name__}: {exc}"


def last_gate(ws: Workspace, service: str, release_id: str | None = None) -> GateReport | None:
    """The latest stored gate report of a release (or of any release of the service)."""
    if release_id is not None:
        rid = get_release(ws, release_id).id
        record = ws.store.get(GATE_KIND, _key(service, rid))
        return GateReport.model_validate(record.value) if record else None
    records = ws.store.list(GATE_KIND, prefix=f"{service}/")
    if not records:
        return None
    latest = max(records, key=lambda r: (str(r.value.get("at", "")), r.key))
    return GateReport.model_validate(latest.value)


def gate_required(ws: Workspace, release: Release) -> bool:
    """Whether the release must pass the eval gate before a rollout: it has an eval suite,
    or a phase's criteria ask for the eval gate."""
    config = release.content.config
    if config.get("eval") is not None:
        return True
    phases = config.get("phases") or {}
    return any(isinstance(v, dict) and v.get("eval_gate") for v in phases.values())


def _stale_baseline(ws: Workspace, release: Release, report: GateReport) -> str | None:
    """The current stable release when the report was judged against another one."""
    from releaser.api.state import service_state

    stable = service_state(ws, release.service).stable
    if stable is None or stable == release.id or report.baseline_id == stable:
        return None
    return stable


def require_gates(
    ws: Workspace, service: str, release_id: str, *, force: bool, reason: str | None
) -> GateReport | None:
    """Refuse (CheckFailed) a release whose eval gate has not passed, unless forced with a reason.

    Nothing is required of a release without an eval suite (and no phase asking
    for the gate). A forced start is audited as ``gate.override`` with the reason.
    Returns the passing report, or None when nothing was required or it was forced.
    """
    release = get_release(ws, release_id)
    if not gate_required(ws, release):
        return None
    report = last_gate(ws, service, release.id)
    stale = _stale_baseline(ws, release, report) if report is not None else None
    if report is not None and report.passed and stale is None:
        return report
    if not force:
        if report is None:
            raise CheckFailed(
                f"release {release.id} of {service} has not been through the eval gate",
                hint=f"run 'releaser gate {service} --release {release.id}' first, or pass "
                "--force --reason 'why' to start anyway (audited)",
            )
        if report.passed:
            against = report.baseline_id or "no baseline"
            raise CheckFailed(
                f"release {release.id} passed its eval gate against {against}, but the stable "
                f"release is now {stale}",
                hint=f"run 'releaser gate {service} --release {release.id}' again to compare "
                "with the current baseline",
            )
        raise CheckFailed(
            f"release {release.id} of {service} failed its eval gate: "
            + "; ".join(report.failures[:3]),
            hint="fix the release and gate a new one, or pass --force --reason 'why' "
            "to start anyway (audited)",
        )
    if not reason or not reason.strip():
        raise BadInput(
            "--force needs a reason: starting a release that has not passed its gate is audited",
            hint="pass --reason 'why this release may go out ungated'",
        )
    actor = current_actor()
    ws.store.commit(
        [],
        EventDraft(
            actor=actor.name,
            action="gate.override",
            subject=f"release:{release.id}",
            at=utc_now(),
            before={"passed": report.passed if report else None},
            after={"service": service, "release_id": release.id, "forced": True},
            reason=reason,
            context=actor.context,
        ),
    )
    return None
