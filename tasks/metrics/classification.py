"""Classification metrics: single-label, multi-label and regression, all offline."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def single_label(logits: np.ndarray, labels: np.ndarray, num_labels: int) -> tuple[dict, list]:
    """Flat metrics and the confusion matrix (rows: true label, columns: predicted)."""
    from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, matthews_corrcoef,
                                 precision_score, recall_score)

    preds = logits.argmax(axis=-1)
    labels = labels.astype(int)
    kw = {"labels": list(range(num_labels)), "zero_division": 0}
    metrics = {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_macro": float(f1_score(labels, preds, average="macro", **kw)),
        "f1_weighted": float(f1_score(labels, preds, average="weighted", **kw)),
        "precision_macro": float(precision_score(labels, preds, average="macro", **kw)),
        "recall_macro": float(recall_score(labels, preds, average="macro", **kw)),
        "mcc": float(matthews_corrcoef(labels, preds)) if len(labels) > 1 else 0.0,
    }
    if num_labels == 2:
        metrics["f1"] = float(f1_score(labels, preds, average="binary", zero_division=0))
    cm = confusion_matrix(labels, preds, labels=list(range(num_labels))).tolist()
    return metrics, cm


def multi_label(logits: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import f1_score

    preds = (sigmoid(logits) >= threshold).astype(int)
    labels = labels.astype(int)
    return {
        "f1_micro": float(f1_score(labels, preds, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(labels, preds, average="macro", zero_division=0)),
        "subset_accuracy": float((preds == labels).all(axis=1).mean()),
    }


def regression(preds: np.ndarray, labels: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr

    preds, labels = preds.reshape(-1).astype(float), labels.reshape(-1).astype(float)
    constant = np.std(preds) == 0 or np.std(labels) == 0
    return {
        "mse": float(np.mean((preds - labels) ** 2)),
        "mae": float(np.mean(np.abs(preds - labels))),
        "pearson": 0.0 if constant else float(pearsonr(preds, labels)[0]),
        "spearman": 0.0 if constant else float(spearmanr(preds, labels)[0]),
    }
