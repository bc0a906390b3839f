"""The predict harness on real MLflow pyfunc models: call sizes, failing rows, outputs."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from releaser.api import gate_predict
from releaser.api.gate_inputs import Golden
from releaser.api.gate_predict import (
    FIRST_BATCH,
    MAX_BATCH,
    Predictions,
    _cache_text,
    _run_function,
    _run_model,
    batch_size,
)
from releaser.config.service import EvalSuite

SUITE = EvalSuite(
    dataset="data/golden.csv",
    predict="models:/echo@champion",
    input_columns=["text"],
    label_column="queue",
    scorers=["accuracy"],
)


def _golden(texts: list[str]) -> Golden:
    rows = [{"text": t, "queue": t.upper()} for t in texts]
    return Golden("data/golden.csv", "0" * 32, "abc", rows, [r["queue"] for r in rows])


class Echo:
    """Upper-cases each text, one call at a time, and remembers how many rows each call had.

    ``mode`` picks the output: ``series`` (a pandas Series), ``table`` (a one-column
    DataFrame), ``column`` (an (n, 1) numpy array), ``wide`` (a two-column DataFrame).
    Rows containing ``boom`` make the whole call raise; ``sleep`` seconds per row.
    """

    def __init__(self, mode: str = "series", sleep: float = 0.0) -> None:
        self.mode, self.sleep = mode, sleep
        self.calls: list[int] = []

    def load_context(self, context: Any) -> None:
        self.calls = []

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        import numpy as np

        self.calls.append(len(model_input))
        if self.sleep:
            time.sleep(self.sleep * len(model_input))
        texts = model_input["text"]
        if texts.str.contains("boom").any():
            raise ValueError(f"cannot route {texts[texts.str.contains('boom')].iloc[0]!r}")
        upper = texts.str.upper()
        if self.mode == "table":
            return pd.DataFrame({"queue": upper.to_numpy()})
        if self.mode == "column":
            return np.array(upper.to_list(), dtype=object).reshape(-1, 1)
        if self.mode == "wide":
            return pd.DataFrame({"queue": upper.to_numpy(), "score": 1.0})
        return upper


def _pyfunc(tmp_path: Path, name: str, echo: type[Echo] | None = None, **kw: Any) -> Any:
    """A real MLflow pyfunc model, saved to disk and loaded back as the gate loads one;
    ``echo`` (default :class:`Echo`) answers its calls."""
    import mlflow.pyfunc

    answers = echo or Echo

    class Model(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def __init__(self) -> None:
            self.echo = answers(**kw)

        def load_context(self, context: Any) -> None:
            self.echo.load_context(context)

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.echo.predict(context, model_input, params)

    path = tmp_path / name
    mlflow.pyfunc.save_model(path, python_model=Model(), pip_requirements=[])
    return mlflow.pyfunc.load_model(str(path))


def _calls(model: Any) -> list[int]:
    return list(model.unwrap_python_model().echo.calls)


def test_first_call_is_small_then_sized_by_speed() -> None:
    assert batch_size(0, 0.0, 1000) == FIRST_BATCH
    assert batch_size(0, 0.0, 3) == 3  # never more than what is left
    assert batch_size(8, 0.004, 992) == 992  # fast: all the rest in one call
    assert batch_size(8, 0.0001, 100_000) == MAX_BATCH
    assert batch_size(8, 8.0, 992) == 1  # a second a row: one row a call
    assert batch_size(10, 0.5, 992) == 20  # 20 rows fit in a second at 50 ms a row
    assert batch_size(8, 0.0, 992) == 992  # a clock too coarse to see the call


def test_the_rest_goes_in_one_call_when_it_fits_in_a_few_seconds() -> None:
    # 8 rows in 3.1 ms (mostly the call's own cost): a second's worth is 2,580 rows, and
    # the 5,992 left take 2.3 s at that speed, so they go in one call, not two.
    assert batch_size(8, 0.0031, 5992) == 5992
    # 12,000 left would take 4.6 s at that speed: a second's worth, then more
    assert batch_size(8, 0.0031, 12_000) == 2580
    # at 50 ms a row, 60 rows (3 s) go in one call, 61 do not
    assert batch_size(10, 0.5, 60) == 60
    assert batch_size(10, 0.5, 61) == 20
    assert batch_size(8, 0.0001, 100_000) == MAX_BATCH  # never past the cap
    # an earlier run's speed per row is not underrated: a second's worth, no more
    assert batch_size(1, 0.05, 60, rest=False) == 20


@pytest.mark.slow
class TestPyfunc:
    def test_a_fast_model_gets_the_rows_in_two_calls(self, tmp_path: Path) -> None:
        texts = [f"case {i}" for i in range(1000)]
        model = _pyfunc(tmp_path, "echo")
        seen: list[tuple[int, int]] = []
        preds = _run_model(model, _golden(texts), SUITE, lambda d, n: seen.append((d, n)))
        assert preds.values == [t.upper() for t in texts] and all(preds.ok)
        calls = _calls(model)
        assert calls[0] == FIRST_BATCH and sum(calls) == 1000
        # The echo takes well under 1 ms a row even on a slow machine: one more call.
        assert len(calls) <= 3, calls
        assert seen[-1] == (1000, 1000) and [d for d, _ in seen] == sorted({d for d, _ in seen})
        assert all(v is not None and v >= 0 for v in preds.latency_ms)

    def test_a_slow_model_keeps_its_calls_short(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # 5 ms a row at the least (sleep never returns early): a call sized for 50 ms
        # holds at most 10 rows, whatever the machine's speed, and the last one takes the
        # rest only when it fits in three such calls' time (at most 30 rows).
        monkeypatch.setattr(gate_predict, "BATCH_SECONDS", 0.05)
        model = _pyfunc(tmp_path, "slow", sleep=0.005)
        preds = _run_model(model, _golden([f"c{i}" for i in range(60)]), SUITE, None)
        assert all(preds.ok)
        calls = _calls(model)
        assert sum(calls) == 60 and calls[0] == FIRST_BATCH
        assert max(calls[1:-1]) <= 10 and calls[-1] <= 30, calls

    def test_rows_that_raise_are_found_and_counted_the_rest_predicted(self, tmp_path: Path) -> None:
        texts = [f"case {i}" for i in range(300)]
        bad = [5, 6, 140, 299]
        for i in bad:
            texts[i] = f"boom {i}"
        model = _pyfunc(tmp_path, "boom")
        preds = _run_model(model, _golden(texts), SUITE, None)
        assert [i for i, good in enumerate(preds.ok) if not good] == bad
        assert preds.error_count == 4
        assert preds.errors[0] == "row 5: ValueError: cannot route 'boom 5'"
        assert [e.split(":")[0] for e in preds.errors] == [f"row {i}" for i in bad]
        good = [i for i in range(300) if i not in bad]
        assert all(preds.values[i] == texts[i].upper() for i in good)
        assert all(preds.values[i] is None and preds.latency_ms[i] is None for i in bad)
        # Halving finds each failing row in a few calls, not one call per row.
        assert len(_calls(model)) < 100, len(_calls(model))

    def test_a_speed_measured_before_sizes_the_first_call(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        texts = [f"case {i}" for i in range(1000)]
        fast = _pyfunc(tmp_path, "hinted")
        preds = _run_model(fast, _golden(texts), SUITE, None, ms_per_row=0.01)
        assert _calls(fast) == [1000] and all(preds.ok)  # 1 s holds 100,000 such rows
        assert preds.ms_per_row is not None and preds.ms_per_row > 0
        # A slow model's known speed keeps even its first call short: 50 ms at 5 ms a row.
        monkeypatch.setattr(gate_predict, "BATCH_SECONDS", 0.05)
        slow = _pyfunc(tmp_path, "slow-hinted", sleep=0.005)
        _run_model(slow, _golden(texts[:30]), SUITE, None, ms_per_row=5.0)
        # (The 20 rows left then go in one call when they fit in three calls' time at the
        # speed the first one measured, which a busy machine may not give.)
        calls = _calls(slow)
        assert calls[0] == 10 and sum(calls) == 30 and max(calls[1:]) <= 20, calls

    def test_only_the_rows_asked_for_are_predicted_named_by_their_golden_row(
        self, tmp_path: Path
    ) -> None:
        texts = [f"case {i}" for i in range(40)]
        texts[17] = "boom 17"
        model = _pyfunc(tmp_path, "some")
        preds = _run_model(model, _golden(texts), SUITE, None, only=[3, 17, 30])
        assert sum(_calls(model)) >= 3 and max(_calls(model)) <= 3
        assert preds.values == ["CASE 3", None, "CASE 30"] and preds.ok == [True, False, True]
        assert preds.errors == ["row 17: ValueError: cannot route 'boom 17'"]

    @pytest.mark.parametrize("mode", ["table", "column"])
    def test_a_one_column_result_is_the_prediction(self, tmp_path: Path, mode: str) -> None:
        texts = ["bin", "loud music", "council tax"]
        preds = _run_model(_pyfunc(tmp_path, mode, mode=mode), _golden(texts), SUITE, None)
        assert preds.values == ["BIN", "LOUD MUSIC", "COUNCIL TAX"] and all(preds.ok)

    def test_a_table_of_several_columns_is_an_error_naming_them(self, tmp_path: Path) -> None:
        preds = _run_model(_pyfunc(tmp_path, "wide", mode="wide"), _golden(["a", "b"]), SUITE, None)
        assert preds.error_count == 2
        assert "2 columns (queue, score)" in preds.errors[0]
        assert "one value per row" in preds.errors[0]


@pytest.mark.slow
def test_a_model_that_fails_on_every_row_counts_every_row(tmp_path: Path) -> None:
    texts = [f"boom {i}" for i in range(200)]
    model = _pyfunc(tmp_path, "all-boom")
    every_row = SUITE.model_copy(update={"max_consecutive_errors": None})
    preds = _run_model(model, _golden(texts), every_row, None)
    assert preds.error_count == 200 and not any(preds.ok) and preds.not_predicted == 0
    assert [e.split(":")[0] for e in preds.errors] == [f"row {i}" for i in range(5)]
    # Halving stops at 8 rows, which are then tried one by one: about 1.3 calls a row
    # (halving down to single rows would take two).
    assert 200 <= len(_calls(model)) < 300, len(_calls(model))


@pytest.mark.slow
@pytest.mark.parametrize("good_rows", [0, 13])
def test_a_model_stops_after_errors_in_a_row_and_counts_the_rest(
    tmp_path: Path, good_rows: int
) -> None:
    # ``good_rows`` predictable rows first, then a model failing on every row after them.
    texts = [f"case {i}" for i in range(good_rows)] + [f"boom {i}" for i in range(500)]
    model = _pyfunc(tmp_path, f"down-{good_rows}")
    progress: list[tuple[int, int]] = []
    limit = SUITE.max_consecutive_errors
    assert limit == 20
    preds = _run_model(model, _golden(texts), SUITE, lambda d, n: progress.append((d, n)))
    assert preds.ok[:good_rows] == [True] * good_rows and not any(preds.ok[good_rows:])
    assert preds.error_count == limit
    assert preds.not_predicted == len(texts) - good_rows - limit
    assert [e.split(":")[0] for e in preds.errors] == [f"row {good_rows + i}" for i in range(5)]
    assert progress[-1] == (len(texts), len(texts))
    # About 1.3 calls per failing row to find them, then no more calls.
    assert len(_calls(model)) < 40, _calls(model)


def test_errors_in_a_row_reset_when_a_row_is_predicted(tmp_path: Path) -> None:
    # 19 failing rows, one good one, 19 failing: never 20 in a row, so all are tried.
    texts = [f"boom {i}" for i in range(19)] + ["fine"] + [f"boom b{i}" for i in range(19)]
    preds = _run_model(_pyfunc(tmp_path, "reset"), _golden(texts), SUITE, None)
    assert preds.error_count == 38 and preds.not_predicted == 0 and preds.ok[19]


def test_a_function_past_its_timeout_counts_as_raised_and_the_rest_go_on() -> None:
    answer = threading.Event()  # an endpoint that never answers, until the test ends

    def predict(prompt: Any, inputs: dict[str, Any]) -> str:
        text = str(inputs["text"])
        if text.startswith("hang"):
            answer.wait(60)
            return "too late"
        if text == "boom":
            raise ValueError("no route")
        return text.upper()

    texts = ["a", "hang 1", "b", "boom", "hang 2", "c"]
    try:
        within = SUITE.model_copy(update={"predict_timeout": 1.0})
        preds = _run_function(predict, None, _golden(texts), within, None)
    finally:
        answer.set()
    assert preds.ok == [True, False, True, False, False, True]
    assert [preds.values[i] for i in (0, 2, 5)] == ["A", "B", "C"]
    assert preds.errors == [
        "row 1: TimeoutError: predict took longer than 1 s (predict_timeout)",
        "row 3: ValueError: no route",  # raised inside the worker, reported as raised
        "row 4: TimeoutError: predict took longer than 1 s (predict_timeout)",
    ]
    assert preds.error_count == 3 and preds.not_predicted == 0


class Hangs(Echo):
    """An endpoint that never answers for cases containing ``hang``."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        if model_input["text"].str.contains("hang").any():
            self.calls.append(len(model_input))
            threading.Event().wait(60)
        return super().predict(context, model_input, params)


@pytest.mark.slow
class TestPyfuncTimeout:
    SUITE = SUITE.model_copy(update={"predict_timeout": 0.1})

    def test_a_call_past_the_timeout_is_left_and_its_rows_tried_one_by_one(
        self, tmp_path: Path
    ) -> None:
        texts = [f"case {i}" for i in range(40)]
        texts[3] = "hang 3"
        model = _pyfunc(tmp_path, "hangs", Hangs)
        preds = _run_model(model, _golden(texts), self.SUITE, None)
        # The first call (8 rows) hung: its rows one by one, then the rest.
        calls = _calls(model)
        assert calls[: 1 + FIRST_BATCH] == [FIRST_BATCH] + [1] * FIRST_BATCH, calls
        assert sum(calls[1 + FIRST_BATCH :]) == 40 - FIRST_BATCH
        assert [i for i, good in enumerate(preds.ok) if not good] == [3]
        assert preds.errors == [
            "row 3: TimeoutError: predict took longer than 0.1 s (predict_timeout)"
        ]
        assert all(preds.values[i] == texts[i].upper() for i in range(40) if i != 3)

    def test_an_endpoint_that_hangs_on_every_row_stops_after_errors_in_a_row(
        self, tmp_path: Path
    ) -> None:
        model = _pyfunc(tmp_path, "hangs", Hangs)
        preds = _run_model(model, _golden([f"hang {i}" for i in range(500)]), self.SUITE, None)
        assert preds.error_count == 20 and preds.not_predicted == 480
        assert len(_calls(model)) < 30  # not one timeout per golden row


@pytest.mark.parametrize("shared", [True, False])
def test_the_cache_text_reads_back_as_the_predictions(shared: bool) -> None:
    # A call's rows share one latency object (written once), or, read back from a cache,
    # every row has its own; odd values are written as json writes them.
    each = 0.012911
    latency: list[float | None] = [
        each if shared else float(json.loads(json.dumps(each))) for _ in range(300)
    ]
    latency[:5] = [0.5, None, math.nan, math.inf, 7]
    values: list[Any] = ["queue", "é", "\ud800", 'a "b"', None, 1, 2.5, math.nan] * 37 + [0] * 4
    preds = Predictions(values, [i % 3 > 0 for i in range(300)], latency, ['row 1: "x"'], 2)
    back = json.loads(_cache_text(preds))
    # NaN is not equal to itself: compared as json writes it.
    assert json.dumps(back, sort_keys=True) == json.dumps(preds.to_json(), sort_keys=True)


def test_ok_flags_and_latencies_are_stored_as_runs_and_read_back_as_lists() -> None:
    from releaser.api.gate_predict import _from_json

    call = 0.0129
    latency: list[float | None] = [call] * 4000 + [0.02] * 1999 + [None]
    ok = [True] * 5999 + [False]
    preds = Predictions(["housing"] * 6000, ok, latency, ["row 5999: boom"], 0)
    stored = preds.to_json()
    assert stored["ok"] == {"runs": [[True, 5999], [False, 1]]}
    assert stored["latency_ms"] == {"runs": [[call, 4000], [0.02, 1999], [None, 1]]}
    back = _from_json(json.loads(json.dumps(stored)), 6000)
    assert back is not None and (back.ok, back.latency_ms) == (ok, latency)
    # Lists of one type (the usual case) and of several make the same runs.
    whole = Predictions(["housing"] * 6000, [True] * 6000, [call] * 8 + [0.02] * 5992, [], 0)
    assert whole.to_json()["ok"] == {"runs": [[True, 6000]]}
    assert whole.to_json()["latency_ms"] == {"runs": [[call, 8], [0.02, 5992]]}
    mixed = Predictions([0] * 6, [True] * 6, [1, 1, 1.0, 1.0, 1.0, 1.0], [], 0)
    assert mixed.to_json()["latency_ms"] == {"runs": [[1, 2], [1.0, 4]]}
    # Lists that do not shorten stay lists; the old list form still reads.
    varied = Predictions([1, True, 1.0], [True, False, True], [1.0, 2.0, 3.0], [], 0)
    assert varied.to_json()["ok"] == [True, False, True]
    old = {**stored, "ok": ok, "latency_ms": latency}
    assert _from_json(old, 6000) is not None
    # Runs that do not add up to the rows, or are malformed, read as no predictions.
    assert _from_json({**stored, "ok": {"runs": [[True, 10]]}}, 6000) is None
    assert _from_json({**stored, "ok": {"runs": [[True, "many"]]}}, 6000) is None
    assert _from_json({**stored, "latency_ms": {"runs": [[1.0, -3]]}}, 6000) is None
    assert _from_json({**stored, "latency_ms": {"runs": [[1.0, 5]]}}, 6000) is None


def test_ms_per_row_is_the_mean_over_the_rows_answered_in_time() -> None:
    # A row that raised does not count, nor one without a time.
    assert Predictions([1, 2, 3], [True, False, True], [1.0, 5.0, 3.0], [], 0).ms_per_row == 2.0
    every = Predictions([1, 2, 3, 4], [True] * 4, [1.0, None, 0.0, 3.0], [], 0)
    assert every.ms_per_row == 2.0
    assert Predictions([1], [False], [None], [], 1).ms_per_row is None
