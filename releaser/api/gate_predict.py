"""The predict harness of the eval gate: resolve the entry point, run it per row, cache it.

Two kinds of entry point:

- an MLflow pyfunc model URI. When it names the service's model, the gate
  loads the version the release pins (``models:/name/version``), so a
  candidate and its baseline are each evaluated with their own model. Rows
  go to the model as a table of the input columns, in calls sized by how
  fast the model is: the first call takes :data:`FIRST_BATCH` rows, and each
  later one as many rows as the last call's speed says fit in
  :data:`BATCH_SECONDS` (at most :data:`MAX_BATCH`), or all the rest when it fits in
  :data:`REST_BATCHES` such calls' time; when an earlier gate run
  measured this model's speed, the first call is sized by that instead. A fast
  model so gets nearly all rows in one call (a model's per-call cost, about
  4 ms for the example's scikit-learn pipeline, is paid a few times, not once
  per 64 rows), and a slow one (an LLM behind a pyfunc) still moves the
  progress bar about once a second. A call that raises is split in halves, down to
  calls of :data:`ONE_BY_ONE` rows that are retried row by row, so only the
  rows that fail are counted as errors, in a few calls per failing row. With the
  suite's ``predict_timeout``, a call of k rows may take k times that: one that
  takes longer counts as raised (TimeoutError), is left running, and its rows
  are retried one by one at once (halving it would wait out the timeout again
  at every level). A row's latency is its call's time divided by the rows in
  that call, in ms to the nanosecond.
- ``module:function``, called once per row (within the suite's
  ``predict_timeout``, if set) as ``fn(prompt, inputs)`` where
  ``prompt`` is the release's first pinned prompt version (a
  ``promptregistry.PromptVersion``, or None without prompts) and ``inputs``
  a dict of the row's input columns. The function is imported from the
  workspace (its root is on ``sys.path``).

A row whose predict raises is counted, never fatal. After the suite's
``max_consecutive_errors`` rows in a row have raised (an endpoint that is down,
each row waiting out a timeout), the release's remaining rows are not predicted:
they are counted as such, and the gate fails. Predictions are cached
by (release, dataset md5, predict config): in ``.releaser/cache/gate/`` as
soon as a release's rows are predicted, and in the store (record kind
:data:`PREDICTIONS_KIND`, written by ``run_gate`` with the gate's report), so a
CI runner that starts from a fresh checkout finds them too. Re-running the
gate on the same release and data does not predict again, and a candidate's
gate does not predict its baseline again when the baseline's own gate stored
its predictions on the same golden set, except the rows that raised last time:
those are predicted again (an endpoint that was down may be back), and the
cache keeps what they give now.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from releaser.api.gate_inputs import Golden, import_function
from releaser.config.service import EvalSuite
from releaser.core.release import Release
from releaser.errors import ArtifactNotFound, ExternalUnavailable

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = [
    "BATCH_SECONDS",
    "REST_BATCHES",
    "CACHE_DIR",
    "FIRST_BATCH",
    "MAX_BATCH",
    "ONE_BY_ONE",
    "PREDICTIONS_KIND",
    "Predictions",
    "Progress",
    "batch_size",
    "cache_key",
    "model_uri",
    "predict_release",
]

FIRST_BATCH = 8
"""Rows in a model's first call: small, so a slow model shows progress soon."""
BATCH_SECONDS = 1.0
"""Each later call gets about this many seconds' worth of rows, at the last call's speed."""
MAX_BATCH = 8192
"""The most rows in one call, however fast the model is."""
REST_BATCHES = 3
"""When all the rows left fit in this many calls' worth of time (:data:`BATCH_SECONDS`
each) at the last call's speed, the next call takes them all: see :func:`batch_size`."""
ONE_BY_ONE = 8
"""A failing call of at most this many rows is retried row by row instead of halved again."""
CACHE_DIR = ".releaser/cache/gate"
PREDICTIONS_KIND = "gate_predictions"
"""Store records of predictions, keyed by :func:`cache_key`."""
MAX_STORED_BYTES = 32 * 1024 * 1024
"""Predictions larger than this (as JSON) stay in the local cache only."""
Progress = Callable[[int, int], None]
"""``progress(done, total)``, called as rows are predicted."""


@dataclass(frozen=True)
class Predictions:
    """One release's predictions on the golden rows, row by row."""

    values: list[Any]
    ok: list[bool]
    latency_ms: list[float | None]
    errors: list[str]
    not_predicted: int = 0
    """Rows left unpredicted (not ``ok``) after too many errors in a row."""
    cached: bool = False
    stored: bool = False
    """These are the store's predictions, as the store holds them."""
    calls: list[list[list[Any]] | None] | None = None
    """From an LLM endpoint: per row, its calls ([answer, prompt tokens, completion tokens,
    latency ms] each; ``samples: k`` makes k), None for a row without answers."""
    _json: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def unanswered(self) -> int:
        """Rows without a prediction: their predict raised, or they were not predicted."""
        return self.ok.count(False)

    @property
    def error_count(self) -> int:
        """Rows whose predict raised."""
        return self.unanswered - self.not_predicted

    @property
    def ms_per_row(self) -> float | None:
        """The mean predict time of the rows predicted (their calls' time over their rows)."""
        if False in self.ok:
            known = [v for v, good in zip(self.latency_ms, self.ok, strict=True) if good and v]
        else:  # every row answered (the usual case): filtered in C
            known = list(filter(None, self.latency_ms))
        return sum(known) / len(known) if known else None

    def json_size(self) -> int:
        """About how many bytes :meth:`to_json` takes as UTF-8 JSON: the length of
        :meth:`json_text` (ASCII, so each character a byte; a character the store keeps as
        UTF-8 takes no more bytes there than its escape here)."""
        return len(self.json_text())

    def to_json(self) -> dict[str, Any]:
        """The cached and stored form. ``ok`` and ``latency_ms`` are run-length encoded
        (``{"runs": [[value, count], ...]}``) when that is shorter: every row of a model's
        call shares its latency, and nearly every row is ok.

        Made once: the local cache, the size check and the store all use it (the rows are
        not changed after the predictions are made)."""
        if self._json is None:
            data: dict[str, Any] = {
                "values": self.values,
                "ok": _runs(self.ok),
                "latency_ms": _runs(self.latency_ms),
                "errors": self.errors,
                "not_predicted": self.not_predicted,
            }
            if self.calls is not None:
                data["calls"] = self.calls
            object.__setattr__(self, "_json", data)
        return cast("dict[str, Any]", self._json)

    def json_text(self) -> str:
        """:meth:`to_json` as compact JSON text (the local cache file's), made once."""
        if self._text is None:
            object.__setattr__(self, "_text", json.dumps(self.to_json(), separators=(",", ":")))
        return cast(str, self._text)


_PLAIN = {str, int, float, bool, type(None)}


def _plain(value: Any) -> Any:
    """A JSON-ready Python value (numpy scalars unwrapped, anything odd as text)."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            value = item()
        except (TypeError, ValueError):
            pass
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def cache_key(release: Release, golden: Golden, suite: EvalSuite) -> str:
    """What a release's predictions on a golden set are cached under (file and store)."""
    predict = suite.predict if isinstance(suite.predict, str) else suite.predict.model_dump()
    spec = json.dumps([predict, suite.input_columns], sort_keys=True)
    tag = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return f"{release.id}-{golden.md5}-{tag}"


def _cache_path(ws: Workspace, key: str) -> Path:
    return ws.root / CACHE_DIR / f"{key}.json"


def _read_cache(path: Path, rows: int) -> Predictions | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _from_json(data, rows)


def _read_stored(ws: Workspace, key: str, rows: int) -> Predictions | None:
    record = ws.store.get(PREDICTIONS_KIND, key)
    return _from_json(record.value, rows, stored=True) if record is not None else None


def _from_json(data: Any, rows: int, *, stored: bool = False) -> Predictions | None:
    """Cached predictions of ``rows`` rows, or None when ``data`` is not that."""
    try:
        cached = Predictions(
            list(data["values"]),
            [bool(v) for v in _expand(data["ok"])],
            _expand(data["latency_ms"]),
            list(data["errors"]),
            int(data.get("not_predicted", 0)),
            cached=True,
            stored=stored,
            calls=None if data.get("calls") is None else list(data["calls"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    if cached.calls is not None and len(cached.calls) != rows:
        return None
    same = len(cached.values) == rows == len(cached.ok) == len(cached.latency_ms)
    return cached if same else None


def _write_cache(path: Path, predictions: Predictions) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ignore = path.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(_cache_text(predictions), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time on the next run


def _cache_text(predictions: Predictions) -> str:
    """:meth:`Predictions.to_json` as compact JSON text."""
    return predictions.json_text()


_NO_VALUE = object()


def _runs(values: list[Any]) -> list[Any] | dict[str, list[list[Any]]]:
    """``values`` as ``{"runs": [[value, count], ...]}`` when that is at most half as long,
    else as they are. Equal values of one type make a run (1 and True do not)."""
    if len(set(map(type, values))) == 1:
        # One type (the usual case: all bool, or all float): equal values make a run, and
        # groupby finds them in C: 0.27 ms against 0.43 for a 6,000-row release's two lists.
        runs = [[value, len(list(group))] for value, group in groupby(values)]
        return {"runs": runs} if 2 * len(runs) <= len(values) else values
    runs = []
    last: Any = _NO_VALUE
    for value in values:
        if value is last or (type(value) is type(last) and value == last):
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
            last = value
    return {"runs": runs} if 2 * len(runs) <= len(values) else values


def _expand(data: Any) -> list[Any]:
    """A list stored as :func:`_runs` wrote it, as a list again (TypeError when malformed)."""
    if isinstance(data, list):
        return data
    out: list[Any] = []
    for value, count in data["runs"]:
        if type(count) is not int or count < 0:
            raise TypeError(f"a run of {count!r}")
        out.extend([value] * count)
    return out


def model_uri(release: Release, suite: EvalSuite) -> str | None:
    """The model URI the gate loads for ``release`` (None for a ``module:function``)."""
    ref = suite.predict_ref
    return _model_uri(release, suite) if ref is not None and ref.startswith("models:/") else None


def _model_uri(release: Release, suite: EvalSuite) -> str:
    uri = suite.predict_ref or ""
    model = release.content.model
    name = uri[len("models:/") :].split("@", 1)[0].split("/", 1)[0]
    if model is not None and name == model.name:
        return model.model_uri
    return uri


def _download_uri(ws: Workspace, uri: str) -> str:
    """Where the registry keeps ``models:/name/version`` or ``models:/name@alias``."""
    rest = uri[len("models:/") :]
    client = ws.models.client
    if "@" in rest:
        name, alias = rest.split("@", 1)
        number = ws.models.get_alias(name, alias)
        if number is None:
            raise ArtifactNotFound(
                f"model {name!r} has no alias {alias!r}",
                hint=f"set it in the model registry, or pin a version: models:/{name}/N",
            )
        version = str(number)
    else:
        name, _, version = rest.partition("/")
    return str(client.get_model_version_download_uri(name, version))


def _load_pyfunc(ws: Workspace, uri: str) -> Any:
    # Resolved through the workspace's own client rather than MLflow's process-wide
    # tracking URI, which this must neither read nor change.
    import mlflow.pyfunc

    try:
        return mlflow.pyfunc.load_model(_download_uri(ws, uri))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; all mean "cannot load"
        text = str(exc)
        if "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower():
            raise ArtifactNotFound(
                f"cannot load the model {uri} for the eval gate: {text}",
                hint="check the registered model and version exist ('releaser release show')",
            ) from exc
        raise ExternalUnavailable(
            f"cannot load the model {uri} for the eval gate: {text}",
            hint="check the MLflow tracking server and artifact store are reachable",
        ) from exc


def batch_size(last_rows: int, last_seconds: float, remaining: int, *, rest: bool = True) -> int:
    """How many rows the next predict call takes: :data:`FIRST_BATCH` first, then as many
    as the last call (``last_rows`` in ``last_seconds``) says fit in :data:`BATCH_SECONDS`,
    or all the rows left when they fit in :data:`REST_BATCHES` times that.

    The speed measured on a small first call counts the model's per-call cost as if it
    were per row, so it underrates a fast model: the example's pipeline, 4 ms a call and
    about 15 us a row, looks ten times slower on 8 rows. Taking the rest in one call when
    that pessimistic speed says it takes a few seconds saves a call's fixed cost, and a
    slow model still shows progress within seconds. ``rest=False`` when the speed is an
    earlier gate run's mean per row rather than a call's: it is not underrated.
    """
    if last_rows <= 0:
        size = FIRST_BATCH
    elif last_seconds <= 0:
        size = MAX_BATCH
    else:
        size = int(BATCH_SECONDS * last_rows / last_seconds)
        if rest and remaining * last_seconds <= REST_BATCHES * BATCH_SECONDS * last_rows:
            size = remaining
    return max(1, min(size, MAX_BATCH, remaining))


def _outputs(raw: Any, rows: int) -> list[Any]:
    """One plain value per row from what a pyfunc predict returned; ValueError if it cannot."""
    columns = getattr(raw, "columns", None)
    if columns is not None:  # a table: one column is the prediction
        if len(columns) != 1:
            names = ", ".join(map(str, list(columns)[:5]))
            raise ValueError(
                f"predict returned a table with {len(columns)} columns ({names}); the gate "
                "scores one value per row"
            )
        raw = raw.iloc[:, 0]
    elif getattr(raw, "ndim", 1) == 2 and raw.shape[1] == 1:  # an (n, 1) array
        raw = raw[:, 0]
    # numpy and pandas results convert to plain Python values in one C call
    tolist = getattr(raw, "tolist", None)
    out = tolist() if callable(tolist) else list(raw)
    if len(out) != rows:
        raise ValueError(f"predict returned {len(out)} values for {rows} rows")
    # tolist() already gave plain values; anything else is unwrapped one by one
    return out if set(map(type, out)) <= _PLAIN else [_plain(v) for v in out]


def _ms(seconds: float, rows: int) -> float:
    """A row's latency in ms, to the nanosecond: finer is noise, and the cache and the
    store write one number a row, which takes JSON half the time when it is short."""
    return round(seconds * 1000.0 / rows, 6)


def _run_model(
    model: Any,
    golden: Golden,
    suite: EvalSuite,
    progress: Progress | None,
    only: Sequence[int] | None = None,
    ms_per_row: float | None = None,
) -> Predictions:
    """Predict the golden rows (or the rows numbered in ``only``) with a pyfunc model.

    The result has one entry per predicted row, in order; messages name a row by
    its number in the golden set. ``ms_per_row``, the model's speed measured by an
    earlier run, sizes the first call as later ones are sized.
    """
    import pandas as pd

    picked = golden.rows if only is None else [golden.rows[i] for i in only]
    numbers = range(len(golden.rows)) if only is None else only
    n = len(picked)
    values: list[Any] = [None] * n
    ok = [False] * n
    latency: list[float | None] = [None] * n
    errors: list[str] = []
    cols = suite.input_columns
    # One table for all rows, sliced per call (cheaper than a new table per call).
    if only is None:
        table = pd.DataFrame({c: golden.column(c) for c in cols})
    else:
        table = pd.DataFrame({c: [r[c] for r in picked] for c in cols})
    clock = time.perf_counter
    limit, timeout = suite.max_consecutive_errors, suite.predict_timeout
    in_a_row = 0  # rows that raised since the last row predicted, in row order

    def call(rows: Any) -> Any:
        if timeout is None:
            return model.predict(rows)
        return _within(model.predict, timeout * len(rows))(rows)

    def predict(start: int, end: int) -> int | None:
        """Rows [start, end) in one call; when it raises, each half on its own (a few rows,
        or a call that timed out, one by one), left first, so failures are found in row
        order. Returns the row after the one that made ``limit`` errors in a row, or None."""
        nonlocal in_a_row
        pending = [(start, end)]
        while pending:
            lo, hi = pending.pop()
            began = clock()
            try:
                out = _outputs(call(table.iloc[lo:hi]), hi - lo)
            except Exception as exc:  # noqa: BLE001 - split to find the rows that fail
                if hi - lo > ONE_BY_ONE and not isinstance(exc, TimeoutError):
                    mid = (lo + hi) // 2
                    pending += [(mid, hi), (lo, mid)]
                elif hi - lo > 1:  # few rows: one by one costs fewer calls than halving
                    pending += [(i, i + 1) for i in range(hi - 1, lo - 1, -1)]
                else:
                    if len(errors) < 5:
                        errors.append(f"row {numbers[lo]}: {type(exc).__name__}: {exc}")
                    in_a_row += 1
                    if limit is not None and in_a_row >= limit:
                        return hi
                continue
            each = _ms(clock() - began, hi - lo)
            values[lo:hi] = out
            ok[lo:hi] = [True] * (hi - lo)
            latency[lo:hi] = [each] * (hi - lo)
            in_a_row = 0
        return None

    done, last_rows, last_seconds, stopped = 0, 0, 0.0, None
    hinted = ms_per_row is not None and ms_per_row > 0
    if hinted:
        last_rows, last_seconds = 1, (ms_per_row or 0.0) / 1000.0
    while done < n and stopped is None:
        size = batch_size(last_rows, last_seconds, n - done, rest=not hinted)
        hinted = False
        began = clock()
        stopped = predict(done, done + size)
        last_rows, last_seconds = size, clock() - began
        done = n if stopped is not None else done + size
        if progress is not None:
            progress(done, n)
    return Predictions(values, ok, latency, errors, n - stopped if stopped is not None else 0)


def _within(fn: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    """``fn`` run on a worker thread, waited for ``seconds`` at most: a call that has not
    returned by then raises TimeoutError here and is left running (a daemon thread, so
    it cannot keep the process from exiting)."""

    def call(*args: Any) -> Any:
        done: list[tuple[bool, Any]] = []

        def work() -> None:
            try:
                done.append((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                done.append((False, exc))

        worker = threading.Thread(target=work, name="releaser-gate-predict", daemon=True)
        worker.start()
        worker.join(seconds)
        if not done:
            raise TimeoutError(f"predict took longer than {seconds:g} s (predict_timeout)")
        returned, value = done[0]
        if returned:
            return value
        raise value

    return call


def _run_function(
    fn: Callable[..., Any],
    prompt: Any,
    golden: Golden,
    suite: EvalSuite,
    progress: Progress | None,
    only: Sequence[int] | None = None,
) -> Predictions:
    """Call ``fn`` on each golden row (or each row numbered in ``only``), as ``_run_model``;
    a call past the suite's ``predict_timeout`` counts as raised."""
    if suite.predict_timeout is not None:
        fn = _within(fn, suite.predict_timeout)
    columns, limit = suite.input_columns, suite.max_consecutive_errors
    numbers = range(len(golden.rows)) if only is None else only
    n = len(numbers)
    values: list[Any] = [None] * n
    ok = [False] * n
    latency: list[float | None] = [None] * n
    errors: list[str] = []
    clock = time.perf_counter
    step = max(1, n // 100)
    in_a_row, not_predicted = 0, 0
    for i, number in enumerate(numbers):
        row = golden.rows[number]
        inputs = {c: row[c] for c in columns}
        began = clock()
        try:
            value = fn(prompt, inputs)
        except Exception as exc:  # noqa: BLE001 - counted per row, never fatal
            if len(errors) < 5:
                errors.append(f"row {number}: {type(exc).__name__}: {exc}")
            in_a_row += 1
            if limit is not None and in_a_row >= limit:
                not_predicted = n - i - 1
                break
        else:
            latency[i] = _ms(clock() - began, 1)
            values[i] = _plain(value)
            ok[i] = True
            in_a_row = 0
        if progress is not None and (i + 1) % step == 0:
            progress(i + 1, n)
    if progress is not None:
        progress(n, n)
    return Predictions(values, ok, latency, errors, not_predicted)


def _prompt(ws: Workspace, release: Release) -> Any:
    if not release.content.prompts:
        return None
    ref = release.content.prompts[0]
    return ws.prompts.get(ref.name, version=ref.version)


def resolve_function(
    ws: Workspace, release: Release, suite: EvalSuite
) -> Callable[..., Any] | None:
    """The ``module:function`` predict entry point, imported now (None for a model URI)."""
    ref = suite.predict_ref
    if ref is None or ref.startswith("models:/"):
        return None
    return import_function(ws, release.service, ref, "predict", "predict entry point")


def predict_release(
    ws: Workspace,
    release: Release,
    golden: Golden,
    suite: EvalSuite,
    *,
    progress: Progress | None = None,
    use_cache: bool = True,
    ms_per_row: float | None = None,
) -> Predictions:
    """Predictions of ``release`` on the golden rows, from the cache when there (the
    local file, else the store).

    Rows that raised in the cached run are predicted again, and only those: a
    failure may have been passing (a timeout, an endpoint being restarted), and a
    re-run after it is fixed must not keep reporting it. ``ms_per_row`` is the
    model's speed as an earlier gate run measured it, if known (see ``_run_model``).
    """
    n = len(golden.rows)
    key = cache_key(release, golden, suite)
    path = _cache_path(ws, key)
    cached = _read_cache(path, n) if use_cache else None
    if use_cache and (cached is None or cached.unanswered):
        # The store may hold more: another runner's gate predicted this release after
        # this machine's run (or this machine never ran it).
        stored = _read_stored(ws, key, n)
        if stored is not None and (cached is None or stored.unanswered < cached.unanswered):
            cached = stored
    if cached is not None and cached.error_count == 0:
        if progress is not None:
            progress(n, n)
        return cached
    only = None if cached is None else [i for i, good in enumerate(cached.ok) if not good]
    if progress is not None and only is not None:
        progress = _after(progress, n - len(only), n)  # the cached rows count as done
    fn = resolve_function(ws, release, suite)
    if suite.llm is not None:
        result = _run_llm(ws, release, golden, suite, progress, only)
    elif fn is None:
        model = _load_pyfunc(ws, _model_uri(release, suite))
        result = _run_model(model, golden, suite, progress, only, ms_per_row)
    else:
        result = _run_function(fn, _prompt(ws, release), golden, suite, progress, only)
    if cached is not None and only is not None:
        result = _merge(cached, only, result)
    _write_cache(path, result)
    return result


def _run_llm(
    ws: Workspace,
    release: Release,
    golden: Golden,
    suite: EvalSuite,
    progress: Progress | None,
    only: Sequence[int] | None,
) -> Predictions:
    """Predictions from an LLM endpoint (:mod:`releaser.api.gate_llm`); a row's value is its
    first answer, its latency the mean of its calls'."""
    from releaser.api.gate_llm import llm_rows

    numbers = list(range(len(golden.rows))) if only is None else list(only)
    got = llm_rows(ws, release, golden, suite, numbers, progress)
    values: list[Any] = []
    ok: list[bool] = []
    latency: list[float | None] = []
    errors: list[str] = []
    for number, calls, error in zip(numbers, got.calls, got.errors, strict=True):
        ok.append(calls is not None)
        values.append(calls[0][0] if calls else None)
        latency.append(sum(c[3] for c in calls) / len(calls) if calls else None)
        if error is not None and len(errors) < 5:
            errors.append(f"row {number}: {error}")
    return Predictions(values, ok, latency, errors, got.not_called, calls=list(got.calls))


def _after(progress: Progress, offset: int, total: int) -> Progress:
    return lambda done, _part: progress(offset + done, total)


def _merge(cached: Predictions, only: Sequence[int], fresh: Predictions) -> Predictions:
    """The cached predictions with the rows numbered in ``only`` replaced by ``fresh``."""
    values, ok, latency = list(cached.values), list(cached.ok), list(cached.latency_ms)
    calls: list[list[list[Any]] | None] | None = None
    if fresh.calls is not None:
        calls = list(cached.calls) if cached.calls is not None else [None] * len(values)
    for j, i in enumerate(only):
        values[i], ok[i], latency[i] = fresh.values[j], fresh.ok[j], fresh.latency_ms[j]
        if calls is not None and fresh.calls is not None:
            calls[i] = fresh.calls[j]
    # Every row without a prediction was tried again, so the fresh counts are all there is.
    return Predictions(values, ok, latency, list(fresh.errors), fresh.not_predicted, calls=calls)
