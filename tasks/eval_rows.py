"""Rows of eval_predictions.jsonl for multi-label and regression runs (single-label rows are written by
tasks/classification.py): what the run report's worst-examples table reads.

Multi-label: `p_label` is the probability the model gives the true label set (each label's sigmoid, or one
minus it, multiplied), `confidence` that of the predicted set. Regression: `error` is predicted minus true;
the report lists the largest |error| first.
"""

from __future__ import annotations

import numpy as np

from .metrics.classification import sigmoid


def multi_label_rows(texts, logits, labels, names, threshold: float, value=lambda n: n) -> list[dict]:
    probs = sigmoid(np.asarray(logits, dtype=float))
    truth = np.asarray(labels) >= 0.5
    rows = []
    for text, p, y in zip(texts, probs, truth):
        predicted = p >= threshold
        rows.append({"text": text, "label": [value(names[i]) for i in np.flatnonzero(y)],
                     "predicted": [value(names[i]) for i in np.flatnonzero(predicted)],
                     "confidence": round(float(np.prod(np.where(predicted, p, 1 - p))), 6),
                     "p_label": round(float(np.prod(np.where(y, p, 1 - p))), 6)})
    return rows


def regression_rows(texts, predictions, labels) -> list[dict]:
    preds = np.asarray(predictions, dtype=float).reshape(-1)
    truth = np.asarray(labels, dtype=float).reshape(-1)
    return [{"text": text, "label": round(float(y), 6), "predicted": round(float(p), 6),
             "error": round(float(p - y), 6)} for text, p, y in zip(texts, preds, truth)]
