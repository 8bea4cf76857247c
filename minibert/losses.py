"""Losses with their gradients: `<loss>_forward(...) -> (loss, cache)`, `<loss>_backward(dloss, cache)`.

The loss is returned as a 0-d array of the logits' library, so a CuPy run does not stop the
GPU to read it; call `float(loss)` only when you log.
"""
from __future__ import annotations

from typing import NamedTuple

from .backend import get_array_module
from .functional import log_softmax, softmax_forward

IGNORE_INDEX = -100


class CrossEntropyCache(NamedTuple):
    probs: object  # (N, C)
    labels: object  # (N,)
    valid: object  # (N,) bool
    count: int


def check_labels(logits, labels, ignore_index: int = IGNORE_INDEX):
    """-> valid (N,) bool, safe (N,) labels with ignored rows pointing at class 0, count of valid rows."""
    xp = get_array_module(logits)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: logits (N, C) and labels (N,) expected, got {logits.shape} and {labels.shape}")
    valid = labels != ignore_index  # (N,)
    C = logits.shape[1]
    bad = valid & ((labels < 0) | (labels >= C))
    if bool(bad.any()):
        raise ValueError(f"cross_entropy: label outside [0, {C}) (and not {ignore_index}): {labels[bad][:5].tolist()}")
    return valid, xp.where(valid, labels, 0), int(valid.sum())


def cross_entropy_forward(logits, labels, ignore_index: int = IGNORE_INDEX):
    """Mean of -log softmax(logits)[label] over rows whose label != ignore_index.

    logits (N, C), labels (N,) integer. With no labelled row the loss is 0 (not NaN) and the
    gradient is zero.
    """
    xp = get_array_module(logits)
    valid, safe, count = check_labels(logits, labels, ignore_index)
    logp = log_softmax(logits)  # (N, C)
    picked = xp.take_along_axis(logp, safe[:, None], axis=1)[:, 0]  # (N,)
    loss = -(picked * valid).sum() / max(count, 1)
    return loss.astype(logits.dtype), CrossEntropyCache(xp.exp(logp), safe, valid, count)


def cross_entropy_backward(dloss, cache: CrossEntropyCache):
    """dlogits = (softmax - onehot(label)) / count at labelled rows, 0 elsewhere."""
    probs, labels, valid, count = cache
    xp = get_array_module(probs)
    dlogits = probs.copy()  # (N, C)
    dlogits[xp.arange(len(labels)), labels] -= 1.0
    dlogits *= (valid[:, None] * (dloss / max(count, 1))).astype(probs.dtype)
    return dlogits


class SoftCrossEntropyCache(NamedTuple):
    p_student: object  # (N, C) softmax(z_S / t)
    p_teacher: object  # (N, C) softmax(z_T / t)
    denom: float  # t * (N or N*C)


def soft_cross_entropy_forward(student_logits, teacher_logits, temperature: float = 1.0, reduction: str = "batchmean"):
    """TinyBERT's prediction-layer loss: -sum_c softmax(z_T/t)_c log softmax(z_S/t)_c.

    reduction "batchmean" divides by N (the usual soft cross-entropy); "mean" divides by N*C,
    which is what the TinyBERT reference code does (issue #176 there). No t^2 factor.
    student_logits, teacher_logits (N, C). The teacher side is a constant.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"soft_cross_entropy: student {student_logits.shape} and teacher {teacher_logits.shape} differ")
    if temperature <= 0:
        raise ValueError(f"soft_cross_entropy: temperature must be positive, got {temperature}")
    if reduction not in ("batchmean", "mean"):
        raise ValueError(f"soft_cross_entropy: reduction must be 'batchmean' or 'mean', got {reduction!r}")
    t = student_logits.dtype.type(temperature)
    p_teacher, _ = softmax_forward(teacher_logits / t)  # (N, C)
    logp_student = log_softmax(student_logits / t)  # (N, C)
    n = student_logits.shape[0] if reduction == "batchmean" else student_logits.size
    loss = -(p_teacher * logp_student).sum() / n
    return loss, SoftCrossEntropyCache(get_array_module(logp_student).exp(logp_student), p_teacher, float(temperature) * n)


def soft_cross_entropy_backward(dloss, cache: SoftCrossEntropyCache):
    """dz_S = (softmax(z_S/t) - softmax(z_T/t)) / (t * n)."""
    p_s, p_t, denom = cache
    return (p_s - p_t) * p_s.dtype.type(dloss / denom)


def mse_forward(pred, target):
    """mean((pred - target)^2) over every element; target is a constant."""
    if pred.shape != target.shape:
        raise ValueError(f"mse: prediction {pred.shape} and target {target.shape} differ")
    diff = pred - target
    return (diff * diff).mean(), (diff,)


def mse_backward(dloss, cache):
    """dpred = 2 (pred - target) / n."""
    (diff,) = cache
    return diff * diff.dtype.type(2.0 * dloss / diff.size)
