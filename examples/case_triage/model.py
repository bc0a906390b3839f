"""The case-triage classifier: TF-IDF word and character n-grams + logistic regression.

The model takes a table with a ``text`` column and returns the queue name, so
it can be logged to MLflow with a named-column signature and served as is.
The entry points the eval gate uses are :func:`predict` and :func:`evaluate`.

Run ``python model.py data/train.csv data/golden.csv`` to train and score.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HYPERPARAMETERS: dict[str, Any] = {"C": 4.0, "max_features": 20000, "ngram_max": 2}
"""Defaults for version 1; the demo trains later versions with other values."""

INPUT_COLUMN = "text"


def build_pipeline(*, C: float = 4.0, max_features: int = 20000, ngram_max: int = 2) -> Any:
    """An untrained scikit-learn pipeline over a frame with a ``text`` column."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    features = ColumnTransformer(
        [
            (
                "words",
                TfidfVectorizer(
                    ngram_range=(1, ngram_max),
                    max_features=max_features,
                    sublinear_tf=True,
                    strip_accents="unicode",
                ),
                INPUT_COLUMN,
            ),
        ]
    )
    classifier = LogisticRegression(C=C, max_iter=2000)
    return Pipeline([("features", features), ("classifier", classifier)])


def frame(texts: Sequence[str]) -> Any:
    """The model's input: a pandas frame with one ``text`` column."""
    import pandas as pd

    return pd.DataFrame({INPUT_COLUMN: list(texts)})


def train(rows: Sequence[dict[str, str]], **hyperparameters: Any) -> Any:
    """Fit a pipeline on rows with ``text`` and ``queue``."""
    params = {**HYPERPARAMETERS, **hyperparameters}
    pipeline = build_pipeline(**params)
    pipeline.fit(frame([r["text"] for r in rows]), [r["queue"] for r in rows])
    return pipeline


def predict(model: Any, texts: Sequence[str]) -> list[str]:
    """Queue names for ``texts``; ``model`` is a fitted pipeline or an MLflow pyfunc model."""
    return [str(label) for label in model.predict(frame(texts))]


def evaluate(model: Any, rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Accuracy overall, per queue and per user group, on labelled rows."""
    predicted = predict(model, [r["text"] for r in rows])
    hits = [p == r["queue"] for p, r in zip(predicted, rows, strict=True)]

    def share(key: str) -> dict[str, float]:
        total: Counter[str] = Counter()
        right: Counter[str] = Counter()
        for hit, row in zip(hits, rows, strict=True):
            total[row[key]] += 1
            right[row[key]] += hit
        return {k: round(right[k] / total[k], 4) for k in sorted(total)}

    return {
        "accuracy": round(sum(hits) / len(hits), 4) if hits else 0.0,
        "n": len(hits),
        "per_queue": share("queue"),
        "per_user_group": share("user_group"),
    }


def main(argv: Sequence[str]) -> int:
    """Train on the first CSV, score on the second, print the figures."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "case_triage_data", Path(__file__).with_name("data.py")
    )
    assert spec is not None and spec.loader is not None
    data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data)
    train_path = Path(argv[0]) if argv else Path("data/train.csv")
    golden_path = Path(argv[1]) if len(argv) > 1 else Path("data/golden.csv")
    model = train(data.read_csv(train_path))
    print(json.dumps(evaluate(model, data.read_csv(golden_path)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
