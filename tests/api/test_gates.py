"""The eval gate on the example service: real DVC golden set, real MLflow models, real store.

Model versions: 1 (champion) and 2 (a lighter model with the same answers on the
golden set) come with the example workspace; this module registers a third,
trained on data where the pilot councils' council-tax and noise cases are
mislabelled, so it is worse on the ``user_group=pilot-councils`` slice only.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from releaser.api.audit import audit_log
from releaser.api.gate_predict import PREDICTIONS_KIND
from releaser.api.gates import last_gate, require_gates, run_gate
from releaser.api.releases import create_release, get_release
from releaser.api.rollouts import service_state, start_rollout
from releaser.api.workspace import open_workspace
from releaser.demo.gates_story import (
    pilot_regressed_rows,
    register_model_version,
    serve_model_version,
)
from releaser.demo.workspace import ExampleWorkspace
from releaser.errors import BadInput, CheckFailed, ConfigError

pytestmark = pytest.mark.slow
SERVICE = "case-triage"


@dataclass(frozen=True)
class Gated:
    root: Path
    r1: str  # champion, stable (gated, deployed)
    r2: str  # model v2: better than the pilot's v1
    r3: str  # model v3: worse on the pilot-councils slice


@pytest.fixture(scope="module")
def gated(prompted_workspace: ExampleWorkspace, tmp_path_factory: pytest.TempPathFactory) -> Gated:
    root = tmp_path_factory.mktemp("gates") / "ws"
    shutil.copytree(prompted_workspace.root, root, symlinks=True)
    regressed = register_model_version(
        root, pilot_regressed_rows(), "pilot regressed", C=4.0, max_features=20000
    )
    ws = open_workspace(root)
    try:
        r1 = create_release(ws, SERVICE).release.id
        assert run_gate(ws, SERVICE, r1).passed
        start_rollout(ws, SERVICE, r1, initial=True, reason="first deployment")
    finally:
        ws.close()
    ids = []
    for version in (2, regressed):
        serve_model_version(root, version)
        ws = open_workspace(root)
        try:
            ids.append(create_release(ws, SERVICE).release.id)
        finally:
            ws.close()
    return Gated(root, r1, ids[0], ids[1])


def _copy(gated: Gated, tmp_path: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(gated.root, dest, symlinks=True)
    return dest


def test_a_better_candidate_passes_and_is_stored_audited_and_logged(
    gated: Gated, tmp_path: Path
) -> None:
    ws = open_workspace(_copy(gated, tmp_path))
    try:
        report = run_gate(ws, SERVICE, gated.r2)
        assert report.passed, report.failures
        assert report.baseline_id == gated.r1
        assert report.rows == 600 and report.errors == 0
        # Both models' speeds are recorded, for the next run's first predict call.
        release, stable = (get_release(ws, r).content.model for r in (gated.r2, gated.r1))
        assert release is not None and stable is not None
        assert set(report.ms_per_row) == {release.model_uri, stable.model_uri}
        assert all(v > 0 for v in report.ms_per_row.values())
        # Model v2 beats the pilot's v1, and the interval says so (it excludes no change).
        assert report.metrics["accuracy"] > report.baseline_metrics["accuracy"] + 0.01
        nr = next(c for c in report.checks if c["kind"] == "non_regression")
        assert nr["passed"] and 0 < nr["ci_low"] <= nr["value"] <= nr["ci_high"]
        assert {(s["column"], s["value"]) for s in report.slices} >= {
            ("channel", "phone"),
            ("user_group", "pilot-councils"),
        }
        assert last_gate(ws, SERVICE, gated.r2) == report
        assert last_gate(ws, SERVICE) == report
        events = [e for e in audit_log(ws) if e.action == "gate.run"]
        assert events[-1].subject == f"release:{gated.r2}" and events[-1].after["passed"]

        assert report.mlflow_run_id is not None
        artifacts = {a.path for a in ws.models.client.list_artifacts(report.mlflow_run_id)}
        assert {"gate_report.md", "gate_report.json"} <= artifacts
        run = ws.models.client.get_run(report.mlflow_run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["accuracy"] == pytest.approx(report.metrics["accuracy"])
        assert run.data.metrics["baseline_accuracy"] == pytest.approx(
            report.baseline_metrics["accuracy"]
        )
        counts = ("errors", "not_predicted", "baseline_errors")
        assert {k: run.data.metrics[k] for k in counts} == dict.fromkeys(counts, 0.0)
        tags = {k: v for k, v in run.data.tags.items() if k.startswith("releaser.")}
        # The attempt it was logged under, recorded in the store before it was logged.
        attempt = tags.pop("releaser.gate_attempt")
        assert events[-1].after["mlflow_attempt"] == attempt and len(attempt) == 32
        recorded = [e for e in audit_log(ws) if e.action == "gate.mlflow"][-1]
        assert recorded.seq > events[-1].seq
        assert recorded.after["mlflow_run_id"] == report.mlflow_run_id
        assert tags == {
            "releaser.release_id": gated.r2,
            "releaser.service": SERVICE,
            "releaser.gate": "passed",
            "releaser.baseline_id": gated.r1,
            "releaser.dataset": report.dataset,
            "releaser.dataset_md5": report.dataset_md5,
            "releaser.prompts": "case-triage-system@1",
        }

        again = run_gate(ws, SERVICE, gated.r2)
        assert again.cached and not report.cached
        assert again.mlflow_run_id == report.mlflow_run_id  # same evidence: not logged twice
        assert again.metrics == report.metrics and again.checks == report.checks
        assert require_gates(ws, SERVICE, gated.r2, force=False, reason=None) == again
    finally:
        ws.close()


def test_a_candidate_worse_on_one_slice_fails_naming_the_slice(
    gated: Gated, tmp_path: Path
) -> None:
    ws = open_workspace(_copy(gated, tmp_path))
    try:
        report = run_gate(ws, SERVICE, gated.r3)
    finally:
        ws.close()
    assert not report.passed
    failing = [c for c in report.checks if not c["passed"]]
    assert [c["name"] for c in failing] == ["slice user_group=pilot-councils"]
    # Overall the candidate holds: threshold and non-regression both pass.
    overall = {c["kind"]: c["passed"] for c in report.checks if c["kind"] != "slice"}
    assert overall == {"threshold": True, "non_regression": True}
    assert len(report.failures) == 1 and "user_group=pilot-councils" in report.failures[0]
    md = report.markdown()
    assert "FAILED" in md and "| user_group=pilot-councils | 76 |" in md and "**FAIL**" in md


def test_rollout_start_refuses_an_ungated_or_failed_release_unless_forced(
    gated: Gated, tmp_path: Path
) -> None:
    ws = open_workspace(_copy(gated, tmp_path))
    try:
        with pytest.raises(CheckFailed, match="has not been through the eval gate") as err:
            start_rollout(ws, SERVICE, gated.r3)
        assert err.value.hint is not None and "releaser gate" in err.value.hint
        run_gate(ws, SERVICE, gated.r3)
        with pytest.raises(CheckFailed, match="pilot-councils"):
            start_rollout(ws, SERVICE, gated.r3)
        with pytest.raises(BadInput, match="needs a reason"):
            start_rollout(ws, SERVICE, gated.r3, force=True)
        assert service_state(ws, SERVICE).active_rollout is None
        start_rollout(ws, SERVICE, gated.r3, force=True, reason="hotfix: pilot data reviewed")
        assert service_state(ws, SERVICE).active_rollout is not None
        override = [e for e in audit_log(ws) if e.action == "gate.override"]
        assert len(override) == 1 and override[0].reason == "hotfix: pilot data reviewed"
    finally:
        ws.close()


def test_a_pass_against_an_older_baseline_must_be_rerun(gated: Gated, tmp_path: Path) -> None:
    from releaser.api.rollouts import promote_rollout

    ws = open_workspace(_copy(gated, tmp_path))
    try:
        assert run_gate(ws, SERVICE, gated.r2).baseline_id == gated.r1
        start_rollout(ws, SERVICE, gated.r2)
        promote_rollout(ws, SERVICE, reason="enough evidence")
        assert service_state(ws, SERVICE).stable == gated.r2
        # r1 passed with no baseline at its first deployment; r2 is stable now.
        with pytest.raises(CheckFailed, match=f"but the stable release is now {gated.r2}"):
            start_rollout(ws, SERVICE, gated.r1)
        again = run_gate(ws, SERVICE, gated.r1)
        # Re-run against the new stable (the better v2), the pilot's v1 is a regression.
        assert again.baseline_id == gated.r2 and not again.passed
        with pytest.raises(CheckFailed, match="failed its eval gate"):
            start_rollout(ws, SERVICE, gated.r1)
    finally:
        ws.close()


# --- bad input and per-row errors, with a module:function predict --------------------------

RULES = '''
"""A keyword router standing in for an LLM call; raises on cases mentioning a flat."""


def predict(prompt, inputs):
    text = inputs["text"].lower()
    if "flat" in text:
        raise RuntimeError("upstream timeout")
    for word, queue in (("bin", "waste"), ("noise", "noise"), ("loud", "noise"),
                        ("council tax", "council-tax"), ("planning", "planning"),
                        ("benefit", "benefits"), ("universal credit", "benefits")):
        if word in text:
            return queue
    return "housing"


def score(prediction, label):
    return float(prediction == label)
'''


def _function_release(
    gated: Gated, tmp_path: Path, edit: dict[str, str], files: dict[str, str] | None = None
) -> tuple[Path, str]:
    """A copy whose service predicts with ``rules:predict``; ``edit`` rewrites releaser.yaml,
    ``files`` are more modules (name -> text), committed with it."""
    root = _copy(gated, tmp_path)
    for name, text in {"rules.py": RULES, **(files or {})}.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8").replace(
        "predict: models:/case-triage@champion", "predict: rules:predict"
    )
    for old, new in edit.items():
        assert old in text
        text = text.replace(old, new, 1)
    cfg.write_text(text, encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "rules predict"], cwd=root, check=True)
    ws = open_workspace(root)
    try:
        rid = create_release(ws, SERVICE).release.id
    finally:
        ws.close()
    return root, rid


def test_rows_whose_predict_raises_are_counted_and_fail_the_gate(
    gated: Gated, tmp_path: Path
) -> None:
    root, rid = _function_release(gated, tmp_path, {})
    ws = open_workspace(root)
    try:
        report = run_gate(ws, SERVICE, rid)
    finally:
        ws.close()
    assert not report.passed
    flats = sum("flat" in r.lower() for r in _golden_texts(root))
    assert report.errors == flats > 0
    assert report.failures[0].startswith(f"{flats} of 600 rows raised an error in predict")
    assert "RuntimeError: upstream timeout" in report.failures[0]


FLAKY = '''
"""The keyword router behind an endpoint: while ``endpoint-down`` exists, cases about a
flat time out (every case, when the file says ``all``). Calls are counted in ``calls.txt``."""
from pathlib import Path

HERE = Path(__file__).parent


def predict(prompt, inputs):
    with (HERE / "calls.txt").open("a", encoding="utf-8") as fh:
        fh.write("call\\n")
    text = inputs["text"].lower()
    down = HERE / "endpoint-down"
    if down.exists() and ("flat" in text or down.read_text() == "all"):
        raise TimeoutError("endpoint did not answer in 30 s")
    return "housing" if "flat" in text else "waste"
'''


def test_rows_that_raised_are_predicted_again_on_a_rerun_and_only_those(
    gated: Gated, tmp_path: Path
) -> None:
    root, rid = _function_release(
        gated,
        tmp_path,
        {"predict: rules:predict": "predict: flaky_endpoint:predict"},
        {"flaky_endpoint.py": FLAKY},
    )
    (root / "endpoint-down").touch()
    calls = root / "calls.txt"
    flats = sum("flat" in r.lower() for r in _golden_texts(root))
    ws = open_workspace(root)
    try:
        down = run_gate(ws, SERVICE, rid)
        assert not down.passed and down.errors == flats > 0
        assert "TimeoutError: endpoint did not answer" in down.failures[0]
        # The baseline timed out on the same rows: they are left out of the comparison.
        assert down.baseline_errors == flats
        assert any(
            w.startswith(f"the baseline did not answer {flats} of 600 rows (first: row ")
            and w.endswith(f"uses the {600 - flats} rows it answered")
            for w in down.warnings
        ), down.warnings
        assert f"- rows whose predict raised: {flats} (baseline: {flats}," in down.markdown()
        first = len(calls.read_text().splitlines())
        assert first == 2 * 600  # candidate and baseline, every row

        (root / "endpoint-down").unlink()
        back = run_gate(ws, SERVICE, rid)
        # Only the rows that raised were predicted again (for both releases), and they
        # count now: no error is left, and the run is not reported as cached.
        assert len(calls.read_text().splitlines()) - first == 2 * flats
        assert back.errors == 0 and back.baseline_errors == 0 and not back.cached
        assert not back.warnings
        assert back.mlflow_run_id != down.mlflow_run_id
        assert not any(c["name"] == "errors" and not c["passed"] for c in back.checks)

        again = run_gate(ws, SERVICE, rid)
        assert len(calls.read_text().splitlines()) - first == 2 * flats  # all cached now
        assert again.cached and again.metrics == back.metrics
    finally:
        ws.close()


def test_an_endpoint_that_is_down_stops_predicting_after_errors_in_a_row(
    gated: Gated, tmp_path: Path
) -> None:
    root, rid = _function_release(
        gated,
        tmp_path,
        {"predict: rules:predict": "predict: flaky_all:predict"},
        {"flaky_all.py": FLAKY},
    )
    (root / "endpoint-down").write_text("all", encoding="utf-8")
    calls = root / "calls.txt"
    ws = open_workspace(root)
    try:
        down = run_gate(ws, SERVICE, rid)
        # 20 rows in a row (the default) for each release, not 600 timeouts each.
        assert len(calls.read_text().splitlines()) == 2 * 20
        assert not down.passed and down.errors == 20 and down.not_predicted == 580
        assert down.failures[1] == (
            "580 of 600 rows were not predicted: predicting stopped after 20 rows in a row raised"
        )
        errors = next(c for c in down.checks if c["name"] == "errors")
        assert errors["value"] == 600 and errors["detail"].endswith(", 580 not predicted")
        assert down.baseline_errors == 600
        assert "- rows whose predict raised: 20, not predicted: 580" in down.markdown()

        (root / "endpoint-down").unlink()
        back = run_gate(ws, SERVICE, rid)
        assert back.errors == back.not_predicted == back.baseline_errors == 0
        assert len(calls.read_text().splitlines()) == 2 * 20 + 2 * 600
    finally:
        ws.close()


HANGS_ONCE = '''
"""An endpoint whose first call never answers."""
import threading

CALLS = []


def predict(prompt, inputs):
    CALLS.append(inputs["text"])
    if len(CALLS) == 1:
        threading.Event().wait(60)
    return "housing"
'''


def test_a_row_past_the_predict_timeout_counts_as_raised(gated: Gated, tmp_path: Path) -> None:
    root, rid = _function_release(
        gated,
        tmp_path,
        {
            "predict: rules:predict": "predict: hangs_once:predict",
            "      slice_max_drop: 0.05\n": (
                "      slice_max_drop: 0.05\n      predict_timeout: 0.5\n"
            ),
        },
        {"hangs_once.py": HANGS_ONCE},
    )
    ws = open_workspace(root)
    try:
        report = run_gate(ws, SERVICE, rid)
    finally:
        ws.close()
    assert report.errors == 1 and report.not_predicted == 0
    assert report.failures[0] == (
        "1 of 600 rows raised an error in predict (first: row 0: TimeoutError: predict took "
        "longer than 0.5 s (predict_timeout))"
    )


def test_a_predict_module_edited_after_the_release_is_refused_and_nothing_is_written(
    gated: Gated, tmp_path: Path
) -> None:
    # A module name of its own, so that what earlier tests imported does not matter.
    root, rid = _function_release(
        gated, tmp_path, {"predict: rules:predict": "predict: edited:predict"}, {"edited.py": RULES}
    )
    rules = root / "edited.py"
    rules.write_text(rules.read_text().replace("upstream timeout", "fixed?"), encoding="utf-8")
    ws = open_workspace(root)
    try:
        seq_before = ws.store.audit_head()[0]
        sha = get_release(ws, rid).content.code.sha
        with pytest.raises(BadInput) as err:
            run_gate(ws, SERVICE, rid)
        assert str(err.value) == (
            f"edited.py changed since release {rid} was made (commit {sha[:12]}): the gate "
            "would judge code the release does not pin"
        )
        assert (
            err.value.hint is not None and f"git checkout {sha[:12]} -- edited.py" in err.value.hint
        )
        assert ws.store.audit_head()[0] == seq_before and last_gate(ws, SERVICE, rid) is None
        assert not (root / ".releaser" / "cache" / "gate").exists() or not any(
            p.name.startswith(rid) for p in (root / ".releaser" / "cache" / "gate").iterdir()
        )
        # Restored, the pinned code runs: not the edited copy this process imported.
        subprocess.run(["git", "checkout", "--", "edited.py"], cwd=root, check=True)
        report = run_gate(ws, SERVICE, rid)
        assert "RuntimeError: upstream timeout" in report.failures[0]
    finally:
        ws.close()


def test_a_release_made_from_a_dirty_tree_is_gated_with_a_warning(
    gated: Gated, tmp_path: Path
) -> None:
    root, _rid = _function_release(
        gated, tmp_path, {"predict: rules:predict": "predict: dirty:predict"}, {"dirty.py": RULES}
    )
    (root / "dirty.py").write_text(RULES.replace("flat", "house"), encoding="utf-8")
    ws = open_workspace(root)
    try:
        rid = create_release(ws, SERVICE, allow_dirty=True).release.id
        report = run_gate(ws, SERVICE, rid)
    finally:
        ws.close()
    assert report.warnings[0] == (
        f"release {rid} was made from a dirty working tree, so the gate cannot check that "
        "dirty.py is the code it pins"
    )


def _golden_texts(root: Path) -> list[str]:
    import csv

    with (root / "data" / "golden.csv").open(encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh)]


def test_an_unimportable_scorer_is_a_config_error_and_nothing_is_written(
    gated: Gated, tmp_path: Path
) -> None:
    root, rid = _function_release(
        gated,
        tmp_path,
        {
            "        - accuracy\n": "        - accuracy\n        - {name: custom, function: "
            "nosuchmodule.scoring:score}\n"
        },
    )
    ws = open_workspace(root)
    try:
        seq_before = ws.store.audit_head()[0]
        with pytest.raises(ConfigError) as err:
            run_gate(ws, SERVICE, rid)
        problem = err.value.problems[0]
        assert problem.path == "services.case-triage.eval.scorers[1].function"
        assert "nosuchmodule.scoring" in problem.message and problem.hint
        assert ws.store.audit_head()[0] == seq_before
        assert last_gate(ws, SERVICE, rid) is None
        assert not (root / ".releaser" / "cache" / "gate").exists() or not any(
            p.name.startswith(rid) for p in (root / ".releaser" / "cache" / "gate").iterdir()
        )
    finally:
        ws.close()


def test_a_golden_set_missing_a_slice_column_is_refused_naming_it(
    gated: Gated, tmp_path: Path
) -> None:
    root, rid = _function_release(
        gated, tmp_path, {"slices: [channel, user_group]": "slices: [channel, usergroup]"}
    )
    ws = open_workspace(root)
    try:
        with pytest.raises(BadInput, match=r"data/golden.csv@\w+ has no column 'usergroup'") as e:
            run_gate(ws, SERVICE, rid)
        assert e.value.hint is not None and "user_group" in e.value.hint
        assert last_gate(ws, SERVICE, rid) is None
    finally:
        ws.close()


def test_an_unimportable_predict_function_is_a_config_error(gated: Gated, tmp_path: Path) -> None:
    root, rid = _function_release(
        gated, tmp_path, {"predict: rules:predict": "predict: rules:predikt"}
    )
    ws = open_workspace(root)
    try:
        with pytest.raises(ConfigError) as err:
            run_gate(ws, SERVICE, rid)
        problem = err.value.problems[0]
        assert problem.path == "services.case-triage.eval.predict"
        assert "module 'rules' has no function 'predikt'" in problem.message
        assert last_gate(ws, SERVICE, rid) is None
    finally:
        ws.close()


def _predictions_record(ws_root: Path, rid: str) -> list[str]:
    """Keys of the stored predictions of release ``rid``."""
    ws = open_workspace(ws_root)
    try:
        return [r.key for r in ws.store.list(PREDICTIONS_KIND, prefix=f"{rid}-")]
    finally:
        ws.close()


def test_predictions_are_stored_with_the_report_for_runners_without_the_local_cache(
    gated: Gated, tmp_path: Path
) -> None:
    """A CI runner starts from a fresh checkout: it shares the store, not the local cache."""
    root, rid = _function_release(
        gated,
        tmp_path,
        {"predict: rules:predict": "predict: stored_endpoint:predict"},
        {"stored_endpoint.py": FLAKY},
    )
    calls = root / "calls.txt"
    fresh_checkout = lambda: shutil.rmtree(root / ".releaser" / "cache", ignore_errors=True)  # noqa: E731
    (root / "endpoint-down").touch()
    flats = sum("flat" in r.lower() for r in _golden_texts(root))
    ws = open_workspace(root)
    try:
        down = run_gate(ws, SERVICE, rid)
        assert down.errors == down.baseline_errors == flats > 0
        assert len(calls.read_text().splitlines()) == 2 * 600
        # Both releases' predictions went into the store with the report, errors included
        # (keyed by release, golden md5 and predict config: the baseline's own gate stored
        # its model's predictions under another config).
        (key,) = _predictions_record(root, rid)
        config = key.rsplit("-", 1)[1]
        assert [k.endswith(config) for k in _predictions_record(root, gated.r1)].count(True) == 1
        stale = tmp_path / "cache-with-the-errors"
        shutil.copytree(root / ".releaser" / "cache", stale)

        # Another runner, once the endpoint is back: only the rows that raised are
        # predicted again, as on the machine that has the cache.
        fresh_checkout()
        (root / "endpoint-down").unlink()
        back = run_gate(ws, SERVICE, rid)
        assert len(calls.read_text().splitlines()) == 2 * 600 + 2 * flats
        assert back.errors == back.baseline_errors == 0 and not back.cached

        # The first machine's cache still holds the outage's errors, but the store has
        # every row now: it predicts nothing either.
        shutil.rmtree(root / ".releaser" / "cache")
        shutil.copytree(stale, root / ".releaser" / "cache")
        assert run_gate(ws, SERVICE, rid).cached
        assert len(calls.read_text().splitlines()) == 2 * 600 + 2 * flats

        # And a runner after that predicts nothing: the store holds every row now, and
        # the same verdict on the same predictions is not logged to MLflow twice.
        fresh_checkout()
        again = run_gate(ws, SERVICE, rid)
        assert len(calls.read_text().splitlines()) == 2 * 600 + 2 * flats
        assert again.cached and again.metrics == back.metrics
        assert again.mlflow_run_id == back.mlflow_run_id

        # A new candidate with the same predict config: its baseline's predictions on
        # this golden set are in the store, so only the candidate's rows are predicted.
        with (root / ".gitignore").open("a", encoding="utf-8") as fh:
            fh.write("calls.txt\n")
        subprocess.run(["git", "commit", "-qam", "ignore the call log"], cwd=root, check=True)
        rid2 = create_release(ws, SERVICE).release.id
        fresh_checkout()
        second = run_gate(ws, SERVICE, rid2)
        assert second.baseline_id == gated.r1 and second.baseline_errors == 0
        assert second.metrics == again.metrics and not second.cached
        assert len(calls.read_text().splitlines()) == 2 * 600 + 2 * flats + 600
    finally:
        ws.close()


NAN_PREDICT = '''
"""A scoring endpoint that answers NaN for cases about bins."""


def predict(prompt, inputs):
    return float("nan") if "bin" in inputs["text"].lower() else "housing"
'''


def test_predictions_the_store_cannot_hold_stay_in_the_local_cache_with_a_warning(
    gated: Gated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, rid = _function_release(
        gated,
        tmp_path,
        {"predict: rules:predict": "predict: nan_endpoint:predict"},
        {"nan_endpoint.py": NAN_PREDICT},
    )
    ws = open_workspace(root)
    try:
        report = run_gate(ws, SERVICE, rid)
        # The gate is judged and stored all the same; only the predictions are not.
        assert last_gate(ws, SERVICE, rid) == report
        assert _predictions_record(root, rid) == []
        # Neither the candidate's nor the baseline's: both answered NaN on some rows.
        warned = [w for w in report.warnings if "stay in this machine's cache" in w]
        assert [w.split()[2].split("-")[0] for w in warned] == [rid, gated.r1]
        assert all(
            w.endswith(
                "(a prediction is NaN or infinite, which the store's JSON cannot hold): a "
                "gate run elsewhere predicts them again"
            )
            for w in warned
        )
        assert run_gate(ws, SERVICE, rid).cached  # the local cache has them

        # Predictions over the size limit are kept out of the store the same way.
        monkeypatch.setattr("releaser.api.gates.MAX_STORED_BYTES", 1024)
        shutil.rmtree(root / ".releaser" / "cache")
        big = run_gate(ws, SERVICE, rid)
        assert any("MB as JSON, over the store's limit of 0 MB" in w for w in big.warnings)
        assert len([w for w in big.warnings if "over the store's limit" in w]) == 2
        # The baseline has only the predictions its own gate stored (with its model).
        assert len(_predictions_record(root, gated.r1)) == 1
    finally:
        ws.close()


def test_a_suite_can_keep_its_predictions_out_of_the_store(gated: Gated, tmp_path: Path) -> None:
    private = "      slice_max_drop: 0.05\n      store_predictions: false\n"
    root, rid = _function_release(
        gated,
        tmp_path,
        {
            "predict: rules:predict": "predict: private_endpoint:predict",
            "      slice_max_drop: 0.05\n": private,
        },
        {"private_endpoint.py": FLAKY},
    )
    before = _predictions_record(root, gated.r1)
    ws = open_workspace(root)
    try:
        report = run_gate(ws, SERVICE, rid)
        assert last_gate(ws, SERVICE, rid) == report and report.errors == 0
        assert not any("store" in w for w in report.warnings)
        assert run_gate(ws, SERVICE, rid).cached  # this machine's cache has them
    finally:
        ws.close()
    assert _predictions_record(root, rid) == [] and _predictions_record(root, gated.r1) == before
