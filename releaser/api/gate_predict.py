"""The predict harness of the eval gate: resolve the entry point, run it per row, cache it.

Two kinds of entry point:

- an MLflow pyfunc model URI. When it names the service's model, the gate
  loads the version the release pins (``models:/name/version``), so a
  candidate and its baseline are each evaluated with their own model. Rows
  go to the model in batches of :data:`BATCH` as a table of the input
  columns; a batch that raises is retried row by row so that only the rows
  that fail are counted as errors. A row's latency is its batch's time
  divided by the batch size.
- ``module:function``, called once per row as ``fn(prompt, inputs)`` where
  ``prompt`` is the release's first pinned prompt version (a
  ``promptregistry.PromptVersion``, or None without prompts) and ``inputs``
  a dict of the row's input columns. The function is imported from the
  workspace (its root is on ``sys.path``).

A row whose predict raises is counted, never fatal. Predictions are cached
in ``.releaser/cache/gate/`` by (release, dataset md5, predict config), so
re-running the gate on the same release and data does not predict again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releaser.api.gate_inputs import Golden, import_function
from releaser.config.service import EvalSuite
from releaser.core.release import Release
from releaser.errors import ArtifactNotFound, ExternalUnavailable

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = ["BATCH", "CACHE_DIR", "Predictions", "Progress", "predict_release"]

BATCH = 64
CACHE_DIR = ".releaser/cache/gate"
Progress = Callable[[int, int], None]
"""``progress(done, total)``, called as rows are predicted."""


@dataclass(frozen=True)
class Predictions:
    """One release's predictions on the golden rows, row by row."""

    values: list[Any]
    ok: list[bool]
    latency_ms: list[float | None]
    errors: list[str]
    cached: bool = False

    @property
    def error_count(self) -> int:
        """Rows whose predict raised."""
        return sum(1 for o in self.ok if not o)

    def to_json(self) -> dict[str, Any]:
        """The cached form."""
        return {
            "values": self.values,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "errors": self.errors,
        }


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


def _cache_path(ws: Workspace, release: Release, golden: Golden, suite: EvalSuite) -> Path:
    spec = json.dumps([suite.predict, suite.input_columns], sort_keys=True)
    tag = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return ws.root / CACHE_DIR / f"{release.id}-{golden.md5}-{tag}.json"


def _read_cache(path: Path, rows: int) -> Predictions | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cached = Predictions(
            list(data["values"]),
            [bool(v) for v in data["ok"]],
            list(data["latency_ms"]),
            list(data["errors"]),
            cached=True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return cached if len(cached.values) == rows == len(cached.ok) else None


def _write_cache(path: Path, predictions: Predictions) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ignore = path.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(predictions.to_json()), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time on the next run


def _model_uri(release: Release, suite: EvalSuite) -> str:
    uri = suite.predict
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


def _run_model(
    model: Any, golden: Golden, suite: EvalSuite, progress: Progress | None
) -> Predictions:
    import pandas as pd

    n = len(golden.rows)
    values: list[Any] = [None] * n
    ok = [False] * n
    latency: list[float | None] = [None] * n
    errors: list[str] = []
    cols = suite.input_columns
    # One table for all rows, sliced per batch (cheaper than a new table per batch).
    table = pd.DataFrame({c: [r[c] for r in golden.rows] for c in cols})
    for start in range(0, n, BATCH):
        chunk = golden.rows[start : start + BATCH]
        frame = table.iloc[start : start + BATCH]
        began = time.perf_counter()
        try:
            raw = model.predict(frame)
            # numpy and pandas results convert to plain Python values in one C call
            tolist = getattr(raw, "tolist", None)
            out = tolist() if callable(tolist) else list(raw)
            if len(out) != len(chunk):
                raise ValueError(f"predict returned {len(out)} values for {len(chunk)} rows")
        except Exception:  # noqa: BLE001 - retried row by row to find the rows that fail
            out = None
        elapsed = (time.perf_counter() - began) * 1000.0
        if out is not None:
            end = start + len(chunk)
            # tolist() already gave plain values; anything else is unwrapped one by one
            values[start:end] = out if set(map(type, out)) <= _PLAIN else [_plain(v) for v in out]
            ok[start:end] = [True] * len(chunk)
            latency[start:end] = [elapsed / len(chunk)] * len(chunk)
        else:
            for j in range(len(chunk)):
                one = frame.iloc[j : j + 1]
                began = time.perf_counter()
                try:
                    value = list(model.predict(one))[0]
                except Exception as exc:  # noqa: BLE001 - counted per row, never fatal
                    if len(errors) < 5:
                        errors.append(f"row {start + j}: {type(exc).__name__}: {exc}")
                    continue
                latency[start + j] = (time.perf_counter() - began) * 1000.0
                values[start + j] = _plain(value)
                ok[start + j] = True
        if progress is not None:
            progress(min(start + BATCH, n), n)
    return Predictions(values, ok, latency, errors)


def _run_function(
    fn: Callable[..., Any],
    prompt: Any,
    golden: Golden,
    columns: Sequence[str],
    progress: Progress | None,
) -> Predictions:
    n = len(golden.rows)
    values: list[Any] = [None] * n
    ok = [False] * n
    latency: list[float | None] = [None] * n
    errors: list[str] = []
    clock = time.perf_counter
    step = max(1, n // 100)
    for i, row in enumerate(golden.rows):
        inputs = {c: row[c] for c in columns}
        began = clock()
        try:
            value = fn(prompt, inputs)
        except Exception as exc:  # noqa: BLE001 - counted per row, never fatal
            if len(errors) < 5:
                errors.append(f"row {i}: {type(exc).__name__}: {exc}")
        else:
            latency[i] = (clock() - began) * 1000.0
            values[i] = _plain(value)
            ok[i] = True
        if progress is not None and (i + 1) % step == 0:
            progress(i + 1, n)
    if progress is not None:
        progress(n, n)
    return Predictions(values, ok, latency, errors)


def _prompt(ws: Workspace, release: Release) -> Any:
    if not release.content.prompts:
        return None
    ref = release.content.prompts[0]
    return ws.prompts.get(ref.name, version=ref.version)


def resolve_function(
    ws: Workspace, release: Release, suite: EvalSuite
) -> Callable[..., Any] | None:
    """The ``module:function`` predict entry point, imported now (None for a model URI)."""
    if suite.predict.startswith("models:/"):
        return None
    return import_function(ws, release.service, suite.predict, "predict", "predict entry point")


def predict_release(
    ws: Workspace,
    release: Release,
    golden: Golden,
    suite: EvalSuite,
    *,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> Predictions:
    """Predictions of ``release`` on the golden rows (from the cache when there)."""
    path = _cache_path(ws, release, golden, suite)
    if use_cache:
        cached = _read_cache(path, len(golden.rows))
        if cached is not None:
            if progress is not None:
                progress(len(golden.rows), len(golden.rows))
            return cached
    fn = resolve_function(ws, release, suite)
    if fn is None:
        model = _load_pyfunc(ws, _model_uri(release, suite))
        result = _run_model(model, golden, suite, progress)
    else:
        result = _run_function(fn, _prompt(ws, release), golden, suite.input_columns, progress)
    _write_cache(path, result)
    return result
