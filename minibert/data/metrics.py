"""Evaluation metrics of the GLUE tasks, as plain functions of (predictions, labels).

    accuracy(preds, labels); f1(...); matthews_corrcoef(...)      # class ids, (N,) each
    pearson(preds, labels); spearman(...)                         # float scores, (N,) each

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


# Every metric a task can name in `TaskSpec.metrics`, by the kind of label it scores.
CLASSIFICATION_METRICS = {"acc": accuracy, "f1": f1, "acc_and_f1": acc_and_f1, "mcc": matthews_corrcoef}
REGRESSION_METRICS = {"pearson": pearson, "spearman": spearman}
