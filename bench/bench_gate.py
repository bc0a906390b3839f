"""Eval gate figures on a 1,000-row golden set (the example service, real DVC and MLflow).

1. Harness overhead over the raw predict loop (target <= 10%), cold prediction cache
   (the local cache emptied and the predictions the store holds forgotten before each
   run), candidate and baseline both predicted:
   a. the example's MLflow pyfunc model (fast: ~0.03 ms a row plus ~4 ms a call, so
      fixed costs show). "raw" is what a user writes without releaser: read the golden
      file (csv.DictReader), load each release's model the way the gate does and call
      ``predict`` once on a table of all the golden inputs. The target line gates a new
      release each time (a fresh commit, the same model v2), so the candidate's speed
      is unknown and its first call is small, as on a release's first gate; the
      baseline's speed is known from its own gate run. Also printed: a re-gate of the
      same release (both speeds known: one call per release, as in the raw loop), and a
      release's first gate while the golden set is unchanged: the baseline's predictions
      on it are in the store from its own gate run, so only the candidate is predicted
      (the raw loop still predicts both: by hand, you would).
   b. a ``module:function`` predict that waits 2 ms per row, standing in for a model
      server or LLM call; "raw" calls it once per row.
   "harness" is ``run_gate`` end to end (golden read, prediction, scoring, bootstrap,
   store write, MLflow run logging).
2. A cached re-run of ``run_gate`` (target <= 1 s): in-process, and as a fresh
   ``releaser gate`` process (which pays Python and MLflow imports).

The machine is shared and its speed drifts by 20% or more from one second to the
next, so every figure is taken over interleaved pairs (a raw loop, then run_gate,
back to back) and printed as the median and quartiles of the paired ratios.

Everything lives in a temporary directory; nothing outside it is touched.
"""

from __future__ import annotations

import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from releaser.api import gates as gates_module  # noqa: E402
from releaser.api.gate_inputs import eval_suite, load_golden  # noqa: E402
from releaser.api.gate_predict import (  # noqa: E402
    CACHE_DIR,
    PREDICTIONS_KIND,
    _download_uri,
    _model_uri,
)
from releaser.api.gates import run_gate  # noqa: E402
from releaser.api.prompts import promote_prompt, register_prompt  # noqa: E402
from releaser.api.releases import create_release, get_release  # noqa: E402
from releaser.api.rollouts import start_rollout  # noqa: E402
from releaser.api.workspace import Workspace, open_workspace  # noqa: E402
from releaser.config.template import render_init_template  # noqa: E402
from releaser.core.audit import EventDraft  # noqa: E402
from releaser.demo.workspace import (  # noqa: E402
    PROMPT_PATH,
    add_golden_cases,
    build_example_workspace,
)
from releaser.store.base import Write  # noqa: E402

SERVICE = "case-triage"
REPEATS = 5  # cached re-runs
SLOW_PREDICT = """
import time


def predict(prompt, inputs):
    time.sleep(0.002)
    text = inputs["text"].lower()
    for word, queue in (("bin", "waste"), ("loud", "noise"), ("council tax", "council-tax"),
                        ("planning", "planning"), ("benefit", "benefits")):
        if word in text:
            return queue
    return "housing"
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _setup(root: Path) -> tuple[str, str]:
    """Workspace with a 1,000-row golden set, r1 stable (gated), r2 (model v2) to gate."""
    example = build_example_workspace(
        root, config_text=render_init_template("council-casework", SERVICE), model_versions=2
    )
    rows = add_golden_cases(example, 400, seed=99)
    assert rows == 1000, rows
    ws = open_workspace(root)
    pv = register_prompt(ws, root / PROMPT_PATH).version
    promote_prompt(ws, pv.name, pv.version, "production", "bench")
    r1 = create_release(ws, SERVICE).release.id
    run_gate(ws, SERVICE, r1)
    start_rollout(ws, SERVICE, r1, initial=True, reason="bench")
    ws.close()
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("alias: champion", "version: 2", 1))
    _git(root, "commit", "-qam", "serve v2")
    ws = open_workspace(root)
    r2 = create_release(ws, SERVICE).release.id
    ws.close()
    return r1, r2


def _clear_cache(root: Path) -> None:
    shutil.rmtree(root / CACHE_DIR, ignore_errors=True)


def _forget_stored(ws: Workspace, ids: list[str]) -> None:
    """Make the store's predictions of these releases unreadable (the store has no delete:
    an empty record reads as no predictions), so the next gate predicts them again."""
    writes = [
        Write(PREDICTIONS_KIND, r.key, {}, r.version)
        for rid in ids
        for r in ws.store.list(PREDICTIONS_KIND, prefix=f"{rid}-")
        if r.value
    ]
    if writes:
        ws.store.commit(
            writes,
            EventDraft(
                actor="bench", action="bench.forget", subject="bench", at="2030-01-01T00:00:00Z"
            ),
        )


def _raw_model_loop(ws: Workspace, ids: list[str]) -> float:
    """Read the golden file, then load each release's model and predict the golden rows
    in one call."""
    import mlflow.pyfunc
    import pandas as pd

    release = get_release(ws, ids[0])
    suite = eval_suite(ws, release)
    assert suite is not None
    pinned = [_model_uri(get_release(ws, rid), suite) for rid in ids]
    began = time.perf_counter()
    with (ws.root / suite.dataset).open(encoding="utf-8", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    for uri in pinned:
        model = mlflow.pyfunc.load_model(_download_uri(ws, uri))
        model.predict(pd.DataFrame({"text": texts}))
    return time.perf_counter() - began


def _per_row(ws: Workspace, ids: list[str], pairs: int, *, known: bool) -> None:
    """The harness's predict loop against one bare predict call, on models already loaded.

    Both take a few tens of milliseconds, so many interleaved pairs fit; what the
    harness adds here is its extra calls (the first small one, unless the model's
    speed is ``known``), its output checks and its bookkeeping per row.
    """
    import mlflow.pyfunc
    import pandas as pd

    from releaser.api.gate_predict import _run_model

    release = get_release(ws, ids[0])
    suite = eval_suite(ws, release)
    assert suite is not None
    golden = load_golden(ws.root, release, suite)
    models = [
        mlflow.pyfunc.load_model(_download_uri(ws, _model_uri(get_release(ws, rid), suite)))
        for rid in ids
    ]

    def bare() -> None:
        for model in models:
            model.predict(pd.DataFrame({"text": [r["text"] for r in golden.rows]}))

    speeds = [_run_model(m, golden, suite, None).ms_per_row if known else None for m in models]

    def harness() -> None:
        for model, speed in zip(models, speeds, strict=True):
            _run_model(model, golden, suite, None, ms_per_row=speed)

    ratios, added = [], []
    for _ in range(pairs):
        began = time.perf_counter()
        bare()
        middle = time.perf_counter()
        harness()
        ended = time.perf_counter()
        ratios.append((ended - middle) / (middle - began) - 1.0)
        added.append((ended - middle) - (middle - began))
    quartiles = statistics.quantiles(ratios, n=4)
    print(
        f"1a predict part, {pairs} pairs, speeds {'known' if known else 'unknown'}: the "
        "harness's predict loop against one bare predict call per release, models loaded: "
        f"median {statistics.median(ratios):+.1%} "
        f"({statistics.median(added) * 1000:+.1f} ms), quartiles {quartiles[0]:+.1%} to "
        f"{quartiles[2]:+.1%}"
    )


def _raw_function_loop(ws: Workspace, n_releases: int) -> float:
    sys.path.insert(0, str(ws.root))
    import slow_predict

    release = get_release(ws, ws.store.list("release")[0].key)
    suite = eval_suite(ws, release)
    assert suite is not None
    golden = load_golden(ws.root, release, suite)
    began = time.perf_counter()
    for _ in range(n_releases):
        for row in golden.rows:
            slow_predict.predict(None, {"text": row["text"]})
    return time.perf_counter() - began


PREDICT_S: list[float] = []
MLFLOW_S: list[float] = []


def _timing(name: str, into: list[float]) -> None:
    """Record the time run_gate spends in ``gates.<name>``."""
    original = getattr(gates_module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - began)

    setattr(gates_module, name, timed)


def _timing_predict() -> None:
    """Time predict_release (model load + predict calls) and the MLflow run logging."""
    _timing("predict_release", PREDICT_S)
    _timing("_log_mlflow", MLFLOW_S)


def _timed_gate(ws: Workspace, rid: str, forget: list[str]) -> float:
    """run_gate on ``rid``, from an empty local cache and with the stored predictions of
    the releases in ``forget`` made unreadable (outside the timing)."""
    _clear_cache(ws.root)
    _forget_stored(ws, forget)
    PREDICT_S.clear()
    MLFLOW_S.clear()
    began = time.perf_counter()
    report = run_gate(ws, SERVICE, rid)
    elapsed = time.perf_counter() - began
    assert report.rows == 1000 and report.baseline_id is not None, report
    return elapsed


def _new_release(ws: Workspace, root: Path) -> str:
    """A release never gated: a new (empty) commit, the same config, model and data."""
    _git(root, "commit", "-q", "--allow-empty", "-m", "bench: a new release")
    return create_release(ws, SERVICE).release.id


def _measure(
    label: str, raw_fn: Any, gate_fn: Any, repeats: int, release: Any = lambda: ""
) -> None:
    """Interleave raw and harness runs and print the paired figures.

    The overhead is taken per pair (a raw loop, then run_gate, back to back), and the
    median and quartiles of those paired figures are printed, with the time run_gate
    spends outside predict_release (its fixed part) and, of that, in MLflow run logging.
    ``release()`` gives the release id each pair runs on (made outside the timing).
    """
    raw, harness, inside, mirror = [], [], [], []
    for _ in range(repeats):
        rid = release()
        raw.append(raw_fn(rid))
        harness.append(gate_fn(rid))
        inside.append(sum(PREDICT_S))
        mirror.append(sum(MLFLOW_S))
    ratios = [(h - r) / r for h, r in zip(harness, raw, strict=True)]
    bare = [(h - m - r) / r for h, m, r in zip(harness, mirror, raw, strict=True)]
    quartiles = statistics.quantiles(ratios, n=4)
    fixed = statistics.median(h - p for h, p in zip(harness, inside, strict=True))
    r, h, p = statistics.median(raw), statistics.median(harness), statistics.median(inside)
    m = statistics.median(mirror)
    print(
        f"{label}, {repeats} pairs: raw {r * 1000:6.0f} ms, run_gate {h * 1000:6.0f} ms "
        f"(predict_release {p * 1000:6.0f} ms; outside it {fixed * 1000:3.0f} ms, of which "
        f"MLflow run logging {m * 1000:3.0f} ms); overhead per pair: median "
        f"{statistics.median(ratios):+.1%}, quartiles {quartiles[0]:+.1%} to "
        f"{quartiles[2]:+.1%}; without the MLflow run: median {statistics.median(bare):+.1%}"
    )


def main() -> None:
    """Print the figures."""
    with tempfile.TemporaryDirectory(prefix="releaser-bench-gate-") as tmp:
        root = Path(tmp) / "ws"
        began = time.perf_counter()
        r1, r2 = _setup(root)
        print(
            f"setup (workspace, 1,000-row golden set, r1 gated and stable): "
            f"{time.perf_counter() - began:.1f} s"
        )
        _timing_predict()
        ws = open_workspace(root)
        # Warm both paths once (imports, first model load), untimed.
        _raw_model_loop(ws, [r2, r1])
        _timed_gate(ws, r2, [r2, r1])
        _measure(
            "1a pyfunc model, 2 x 1,000 rows, a release's first gate, against one predict "
            "call per release (target)",
            lambda rid: _raw_model_loop(ws, [rid, r1]),
            lambda rid: _timed_gate(ws, rid, [r1]),
            repeats=31,
            release=lambda: _new_release(ws, root),
        )
        _measure(
            "1a the same, re-gating one release (both models' speeds known)",
            lambda _: _raw_model_loop(ws, [r2, r1]),
            lambda _: _timed_gate(ws, r2, [r2, r1]),
            repeats=31,
        )
        _timed_gate(ws, r2, [r2])  # the baseline's predictions go back into the store
        _measure(
            "1a a release's first gate, golden set unchanged: the baseline's predictions "
            "read from the store (only the candidate predicted), against the raw loop "
            "predicting both",
            lambda rid: _raw_model_loop(ws, [rid, r1]),
            lambda rid: _timed_gate(ws, rid, []),
            repeats=31,
            release=lambda: _new_release(ws, root),
        )
        _per_row(ws, [r2, r1], pairs=31, known=False)
        _per_row(ws, [r2, r1], pairs=31, known=True)

        cached = []
        for _ in range(REPEATS):
            began = time.perf_counter()
            report = run_gate(ws, SERVICE, r2)
            cached.append(time.perf_counter() - began)
            assert report.cached
        print(
            f"2  cached re-run, in-process: median {statistics.median(cached) * 1000:.0f} ms "
            f"(target <= 1000 ms)"
        )
        env = {**os.environ, "NO_COLOR": "1"}
        exe = str(Path(sys.executable).with_name("releaser"))
        cli = []
        for _ in range(REPEATS):
            began = time.perf_counter()
            subprocess.run(
                [exe, "gate", SERVICE, "--release", r2],
                cwd=root,
                env=env,
                check=True,
                capture_output=True,
            )
            cli.append(time.perf_counter() - began)
        print(
            f"2  cached re-run, fresh 'releaser gate' process: median "
            f"{statistics.median(cli) * 1000:.0f} ms (Python start-up and imports included)"
        )
        ws.close()

        # 1b: module:function predict that costs 2 ms per row.
        (root / "slow_predict.py").write_text(SLOW_PREDICT, encoding="utf-8")
        cfg = root / "releaser.yaml"
        cfg.write_text(
            cfg.read_text().replace(
                "predict: models:/case-triage@champion", "predict: slow_predict:predict"
            )
        )
        _git(root, "add", "-A")
        _git(root, "commit", "-qm", "slow predict")
        ws = open_workspace(root)
        r3 = create_release(ws, SERVICE).release.id
        _timed_gate(ws, r3, [r3, r1])
        _measure(
            "1b function predict at 2 ms/row, 2 x 1,000 rows",
            lambda _: _raw_function_loop(ws, 2),
            lambda _: _timed_gate(ws, r3, [r3, r1]),
            repeats=5,
        )
        ws.close()


if __name__ == "__main__":
    main()
