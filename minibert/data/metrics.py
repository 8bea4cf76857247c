"""Evaluation metrics of the GLUE tasks, as plain functions of (predictions, labels).

    accuracy(preds, labels); f1(...); matthews_corrcoef(...)      # class ids, (N,) each
    pearson(preds, labels); spearman(...); mse(...); mae(...)     # float scores, (N,) each
    per_class(preds, labels, names)                               # precision/recall/F1 per class, confusion

Each metric is written out (no scikit-learn, no scipy.stats) and checked against those
libraries in the tests. The two tables at the bottom name every metric a task may list:
`CLASSIFICATION_METRICS` for class ids, `REGRESSION_METRICS` for scores.

This does not know about tasks: which metrics a task reports, and turning a model's
logits into class ids or scores, is `tasks.compute_metrics`. Reading the labels is
`tasks.read_glue`.
"""
from __future__ import annotations

import math

import numpy as np


def _as_label_arrays(preds, labels) -> tuple[np.ndarray, np.ndarray]:
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.ndim != 1 or preds.shape != labels.shape:
        raise ValueError(f"preds and labels must be 1-D and the same shape, got {preds.shape} and {labels.shape}")
    if preds.size == 0:
        raise ValueError("metrics of an empty set are undefined")
    return preds, labels


def accuracy(preds, labels) -> float:
    """Fraction of predictions equal to the label."""
    preds, labels = _as_label_arrays(preds, labels)
    return float(np.mean(preds == labels))


def f1(preds, labels) -> float:
    """Binary F1 of the positive class 1: 2·tp / (2·tp + fp + fn); 0.0 when there is no
    positive prediction or label (tp + fp + fn = 0), as scikit-learn's default."""
    preds, labels = _as_label_arrays(preds, labels)
    tp = np.sum((preds == 1) & (labels == 1))
    fp = np.sum((preds == 1) & (labels != 1))
    fn = np.sum((preds != 1) & (labels == 1))
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom else 0.0


def acc_and_f1(preds, labels) -> float:
    """The mean of accuracy and F1 (GLUE's combined MRPC score)."""
    return (accuracy(preds, labels) + f1(preds, labels)) / 2


def matthews_corrcoef(preds, labels) -> float:
    """Matthews correlation coefficient (multi-class form of Gorodkin 2004, as scikit-learn).

    With confusion matrix C (rows true, columns predicted), t = row sums, p = column sums,
    c = trace, s = total: (c·s − t·p) / sqrt((s² − t·t)(s² − p·p)); 0.0 when a factor of the
    denominator is 0 (all predictions or all labels one class). For two classes this is
    (tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)).
    """
    preds, labels = _as_label_arrays(preds, labels)
    classes, inv = np.unique(np.concatenate([labels, preds]), return_inverse=True)
    k, n = len(classes), len(labels)
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (inv[:n], inv[n:]), 1.0)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    c, s = np.trace(cm), cm.sum()
    cov_tp = c * s - t @ p
    cov_tt = s * s - t @ t
    cov_pp = s * s - p @ p
    if cov_tt == 0 or cov_pp == 0:
        return 0.0
    return float(cov_tp / math.sqrt(cov_tt * cov_pp))


def pearson(preds, labels) -> float:
    """Pearson correlation: Σ(x − x̄)(y − ȳ) / sqrt(Σ(x − x̄)² · Σ(y − ȳ)²), in float64.

    0.0 when either side is constant (the correlation is undefined there, as for
    matthews_corrcoef; scipy returns nan), so model selection can still compare it.
    """
    preds, labels = _as_label_arrays(preds, labels)
    x = preds.astype(np.float64) - preds.mean(dtype=np.float64)  # (N,)
    y = labels.astype(np.float64) - labels.mean(dtype=np.float64)  # (N,)
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y / denom) if denom else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` (N,), tied values sharing the mean of their ranks."""
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[np.argsort(values, kind="stable")] = np.arange(1, len(values) + 1)  # (N,) ties broken by position
    _, group, size = np.unique(values, return_inverse=True, return_counts=True)
    return np.bincount(group, weights=ranks)[group] / size[group]  # (N,) each tie group's mean rank


def spearman(preds, labels) -> float:
    """Spearman rank correlation: the Pearson correlation of the average ranks."""
    preds, labels = _as_label_arrays(preds, labels)
    return pearson(_average_ranks(preds), _average_ranks(labels))


def mse(preds, labels) -> float:
    """Mean squared error, in float64. Beside the correlations, because a regression can correlate
    well and still be off in scale or offset: only an error says whether it beats predicting the mean."""
    preds, labels = _as_label_arrays(preds, labels)
    return float(np.mean((preds.astype(np.float64) - labels.astype(np.float64)) ** 2))


def mae(preds, labels) -> float:
    """Mean absolute error, in float64 (in the labels' own unit)."""
    preds, labels = _as_label_arrays(preds, labels)
    return float(np.mean(np.abs(preds.astype(np.float64) - labels.astype(np.float64))))


def mean_baseline(train_labels, dev_labels) -> dict:
    """What predicting the training labels' mean for every dev example scores: {"mean", "mse", "mae"}
    (its correlations are undefined: a constant). A regression that does not beat it has learnt nothing."""
    mean = float(np.mean(np.asarray(train_labels, dtype=np.float64)))
    constant = np.full(len(dev_labels), mean)
    return {"mean": mean, "mse": mse(constant, dev_labels), "mae": mae(constant, dev_labels)}


def confusion_matrix(preds, labels, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: rows the true class, columns the predicted one (as scikit-learn)."""
    preds, labels = _as_label_arrays(preds, labels)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels.astype(np.int64), preds.astype(np.int64)), 1)
    return cm


def per_class(preds, labels, names) -> dict:
    """Per-class precision, recall, F1 and support, and the confusion matrix, for class ids 0..C-1 named `names`:
    {"per_class": {name: {"precision", "recall", "f1", "support"}}, "confusion_matrix": {"labels": names,
    "matrix": [[...]] (rows true, columns predicted)}}. A ratio with a zero denominator is 0.0 (scikit-learn's
    zero_division=0)."""
    cm = confusion_matrix(preds, labels, len(names))
    tp, predicted, actual = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)  # (C,) each
    out = {}
    for i, name in enumerate(names):
        p = tp[i] / predicted[i] if predicted[i] else 0.0
        r = tp[i] / actual[i] if actual[i] else 0.0
        out[str(name)] = {"precision": float(p), "recall": float(r), "f1": float(2 * p * r / (p + r)) if p + r else 0.0,
                          "support": int(actual[i])}
    return {"per_class": out, "confusion_matrix": {"labels": [str(n) for n in names], "matrix": cm.tolist()}}


# Every metric a task can name in `TaskSpec.metrics`, by the kind of label it scores.
CLASSIFICATION_METRICS = {"acc": accuracy, "f1": f1, "acc_and_f1": acc_and_f1, "mcc": matthews_corrcoef}
REGRESSION_METRICS = {"pearson": pearson, "spearman": spearman, "mse": mse, "mae": mae}
# Metrics where lower is better: model selection (trainer.py) and the model cards read them the other way
LOWER_IS_BETTER = ("mse", "mae")
