"""The reference kernel pairs: `<op>_forward(...) -> (out, cache)` and `<op>_backward(dout, cache)`.

This is the readable mainline every layer of the model runs on: linear, embedding, LayerNorm,
the activations, softmax, dropout, attention, and the losses (cross-entropy, soft
cross-entropy with temperature, MSE, a row-wise softmax KL divergence, the cosine
distance). Each backward sits directly under its forward and returns the gradients of the
forward's inputs (and parameters) in the same order. Caches hold only what backward needs. Kernels
take `xp` (numpy or cupy) from their inputs, keep the input dtype (float32 stays float32),
and draw no random numbers themselves: a dropout mask comes in as an argument.

Shapes: B batch, T sequence, H hidden, NH heads, HS head size, I intermediate, V vocab,
N = any number of leading rows, D = the feature axis.

Not here: which kernel actually runs (`kernels.py` picks these, or for NumPy arrays the
blocked, threaded versions of the hot ones in `fast.py`); parameters, caches between forward
and backward, and training/eval mode (the modules of `nn.py`, `model.py`, `losses.py`); the
distillation losses (`distill.py`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .backend import erf, get_array_module, scatter_add

# The label that cross-entropy skips: unscored masked-LM positions, padding (transformers' value).
IGNORE_INDEX = -100

# ----------------------------------------------------------------------------- Linear
# y = x W^T + b, with W in PyTorch's (out, in) layout so checkpoints load without transposes.


class LinearCache(NamedTuple):
    x: object  # (..., in)
    W: object  # (out, in)


def linear_forward(x, W, b=None):
    """x (..., in), W (out, in), b (out,) -> y (..., out)."""
    y = x @ W.T  # (..., out)
    if b is not None:
        y += b
    return y, LinearCache(x, W)


def linear_backward(dout, cache: LinearCache):
    """dout (..., out) -> dx (..., in), dW (out, in), db (out,)."""
    x, W = cache
    dx = dout @ W  # (..., in)
    # Flatten the leading axes so dW is one 2-D matmul: sum over every row of x.
    d2 = dout.reshape(-1, dout.shape[-1])  # (N, out)
    x2 = x.reshape(-1, x.shape[-1])  # (N, in)
    dW = d2.T @ x2  # (out, in)
    db = d2.sum(axis=0)  # (out,)
    return dx, dW, db


# -------------------------------------------------------------------------- Embedding


class EmbeddingCache(NamedTuple):
    ids: object  # (B, T) integer
    num_embeddings: int
    padding_idx: int | None


def embedding_forward(ids, W, padding_idx=None):
    """ids (B, T) integer, W (V, D) -> out (B, T, D) = W[ids].

    padding_idx: a row that gets no gradient (torch's padding_idx), or None."""
    return W[ids], EmbeddingCache(ids, W.shape[0], padding_idx)


def embedding_backward(dout, cache: EmbeddingCache, dW=None):
    """dout (B, T, D) -> dW (V, D): row v sums dout over the positions whose id is v.

    Repeated ids must add up, hence scatter-add, not `dW[ids] += dout` (which keeps only one
    of the repeats). dW: an existing (V, D) gradient to accumulate into, so a module need not
    allocate a (V, D) temporary (V is 30522 for BERT); a new one when None.
    """
    ids, V, padding_idx = cache
    xp = get_array_module(dout)
    ids, dout = ids.reshape(-1), dout.reshape(-1, dout.shape[-1])  # (N,), (N, D)
    if padding_idx is not None:
        # the padding row gets no gradient: its rows add zeros (a mask index, dout[ids != pad],
        # would make a GPU wait to learn the result's size)
        dout = xp.where((ids != padding_idx)[:, None], dout, dout.dtype.type(0))  # (N, D)
    if dW is None:
        dW = xp.zeros((V, dout.shape[-1]), dtype=dout.dtype)  # (V, D)
    scatter_add(dW, ids, dout)
    return dW


# -------------------------------------------------------------------------- LayerNorm
# y = gamma * (x - mean) / sqrt(var + eps) + beta over the last axis, biased variance.


class LayerNormCache(NamedTuple):
    xhat: object  # (..., D) normalised input
    rstd: object  # (..., 1) 1 / sqrt(var + eps)
    gamma: object  # (D,)


def layernorm_forward(x, gamma, beta, eps=1e-12):
    """x (..., D) -> y (..., D)."""
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xc = x - mean  # (..., D)
    var = (xc * xc).mean(axis=-1, keepdims=True)  # (..., 1)
    rstd = 1.0 / (var + eps) ** 0.5  # (..., 1)
    xhat = xc * rstd  # (..., D)
    y = xhat * gamma + beta  # (..., D)
    return y, LayerNormCache(xhat, rstd.astype(x.dtype, copy=False), gamma)


def layernorm_backward(dout, cache: LayerNormCache):
    """dout (..., D) -> dx (..., D), dgamma (D,), dbeta (D,).

    With g = dout * gamma the gradient through the normalisation is
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
    """
    xhat, rstd, gamma = cache
    D = xhat.shape[-1]
    dbeta = dout.reshape(-1, D).sum(axis=0)  # (D,)
    dgamma = (dout * xhat).reshape(-1, D).sum(axis=0)  # (D,)
    g = dout * gamma  # (..., D)
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


# ------------------------------------------------------------------------------- GELU

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu_forward(x):
    """Exact GELU: y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (BERT's `hidden_act="gelu"`)."""
    cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))  # (...) Phi(x)
    return x * cdf, (x, cdf)


def gelu_backward(dout, cache):
    """dy/dx = Phi(x) + x phi(x), phi the standard normal density."""
    x, cdf = cache
    xp = get_array_module(x)
    pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
    return dout * (cdf + x * pdf)


def gelu_tanh_forward(x):
    """GELU, tanh form (`gelu_new`): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    xp = get_array_module(x)
    t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
    return 0.5 * x * (1.0 + t), (x, t)


def gelu_tanh_backward(dout, cache):
    x, t = cache
    du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)  # d(inner)/dx
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


def relu_forward(x):
    return x * (x > 0), x > 0


def relu_backward(dout, cache):
    return dout * cache


def tanh_forward(x):
    y = get_array_module(x).tanh(x)
    return y, y


def tanh_backward(dout, cache):
    return dout * (1.0 - cache * cache)


# ---------------------------------------------------------------------------- Softmax


def softmax_forward(x):
    """Softmax over the last axis, shifted by the row max for stability."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    y = e / e.sum(axis=-1, keepdims=True)
    return y, y


def softmax_backward(dout, y):
    """dx = y * (dout - sum(dout * y)) (the Jacobian diag(y) - y y^T applied to dout)."""
    return y * (dout - (dout * y).sum(axis=-1, keepdims=True))


def log_softmax(x):
    xp = get_array_module(x)
    z = x - x.max(axis=-1, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))


# ---------------------------------------------------------------------------- Dropout


def dropout_mask(rng, shape, p, dtype):
    """Inverted-dropout mask: 0 with probability p, else 1/(1-p). Drawn from an explicit RNG."""
    keep = rng.random(shape, dtype=dtype) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def dropout_forward(x, mask):
    """mask None means no dropout (eval mode or p = 0)."""
    if mask is None:
        return x, None
    return x * mask, mask


def dropout_backward(dout, mask):
    return dout if mask is None else dout * mask


# ------------------------------------------------------------------ Self-attention core
# Scores S = Q K^T / sqrt(HS) + M, probabilities P = softmax(S), context C = dropout(P) V.
# S is what TinyBERT distils, so forward returns it and backward accepts an extra dS.


class AttentionCache(NamedTuple):
    q: object  # (B, NH, T, HS)
    k: object  # (B, NH, T, HS)
    v: object  # (B, NH, T, HS)
    probs: object  # (B, NH, T, T)
    probs_dropped: object  # (B, NH, T, T)
    mask: object  # dropout mask or None
    scale: float


def attention_forward(q, k, v, mask_add, dropout=None):
    """q, k, v (B, NH, T, HS); mask_add (B, 1, 1, T) additive (0 or -10000) or None.

    Returns context (B, NH, T, HS), scores (B, NH, T, T), cache.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.swapaxes(-1, -2)) * q.dtype.type(scale)  # (B, NH, T, T)
    if mask_add is not None:
        scores += mask_add
    probs, _ = softmax_forward(scores)  # (B, NH, T, T)
    probs_dropped, mask = dropout_forward(probs, dropout)  # (B, NH, T, T)
    context = probs_dropped @ v  # (B, NH, T, HS)
    return context, scores, AttentionCache(q, k, v, probs, probs_dropped, mask, scale)


def attention_backward(dcontext, cache: AttentionCache, dscores_extra=None):
    """dcontext (B, NH, T, HS) [+ dscores_extra (B, NH, T, T)] -> dq, dk, dv."""
    q, k, v, probs, probs_dropped, mask, scale = cache
    # context = probs_dropped @ v
    dv = probs_dropped.swapaxes(-1, -2) @ dcontext  # (B, NH, T, HS)
    dprobs_dropped = dcontext @ v.swapaxes(-1, -2)  # (B, NH, T, T)
    # probs_dropped = dropout(probs)
    dprobs = dropout_backward(dprobs_dropped, mask)
    # probs = softmax(scores)
    dscores = softmax_backward(dprobs, probs)  # (B, NH, T, T)
    # scores is also an output: add the gradient a distillation loss put on it
    if dscores_extra is not None:
        dscores = dscores + dscores_extra
    # scores = q k^T * scale + mask_add (the mask is a constant)
    dscores = dscores * q.dtype.type(scale)
    dq = dscores @ k  # (B, NH, T, HS)
    dk = dscores.swapaxes(-1, -2) @ q  # (B, NH, T, HS)
    return dq, dk, dv


# ----------------------------------------------------------------------------- Losses
# `<loss>_forward(...) -> (loss, cache)`, `<loss>_backward(dloss, cache)`. The loss is a 0-d
# array of the logits' library, so a CuPy run does not stop the GPU to read it: call
# `float(loss)` only when you log (the trainer does, at its log interval).


class CrossEntropyCache(NamedTuple):
    probs: object  # (N, C)
    labels: object  # (N,)
    valid: object  # (N,) bool
    count: int


def check_labels(logits, labels, ignore_index: int = IGNORE_INDEX):
    """-> valid (N,) bool, safe (N,) labels with ignored rows pointing at class 0, count of
    valid rows, and `bad`: None, or on the GPU a 0-d bool "some label is outside [0, C)".

    Host (NumPy) labels are checked here and a label outside [0, C) raises; count is an int.
    On the GPU a check read back would stop the device at every step, so there count stays a
    0-d device array and a bad label makes the loss NaN instead (cross_entropy_forward), which
    the trainer reports at its next read.
    """
    xp = get_array_module(logits)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: logits (N, C) and labels (N,) expected, got {logits.shape} and {labels.shape}")
    valid = labels != ignore_index  # (N,)
    C = logits.shape[1]
    bad = valid & ((labels < 0) | (labels >= C))  # (N,)
    if xp is np:
        if bad.any():
            raise ValueError(f"cross_entropy: label outside [0, {C}) (and not {ignore_index}): {labels[bad][:5].tolist()}")
        return valid, np.where(valid, labels, 0), int(valid.sum()), None
    # out-of-range rows read class 0; the loss is NaN anyway
    return valid, xp.where(valid & ~bad, labels, 0), valid.sum(), bad.any()


def cross_entropy_forward(logits, labels, ignore_index: int = IGNORE_INDEX):
    """Mean of -log softmax(logits)[label] over rows whose label != ignore_index.

    logits (N, C), labels (N,) integer. With no labelled row the loss is 0 (not NaN) and the
    gradient is zero.
    """
    xp = get_array_module(logits)
    valid, safe, count, bad = check_labels(logits, labels, ignore_index)
    logp = log_softmax(logits)  # (N, C)
    picked = xp.take_along_axis(logp, safe[:, None], axis=1)[:, 0]  # (N,)
    loss = -(picked * valid).sum() / xp.maximum(count, 1)
    if bad is not None:  # device labels, not read back by check_labels: a bad one makes the loss NaN
        loss = xp.where(bad, xp.nan, loss)
    return loss.astype(logits.dtype), CrossEntropyCache(xp.exp(logp), safe, valid, count)


def cross_entropy_backward(dloss, cache: CrossEntropyCache):
    """dlogits = (softmax - onehot(label)) / count at labelled rows, 0 elsewhere."""
    probs, labels, valid, count = cache
    xp = get_array_module(probs)
    dlogits = probs.copy()  # (N, C)
    dlogits[xp.arange(len(labels)), labels] -= 1.0
    dlogits *= (valid[:, None] * (dloss / xp.maximum(count, 1))).astype(probs.dtype)
    return dlogits


class SoftCrossEntropyCache(NamedTuple):
    p_student: object  # (N, C) softmax(z_S / t)
    p_teacher: object  # (N, C) softmax(z_T / t)
    denom: float  # t * (N or N*C)


def soft_cross_entropy_forward(student_logits, teacher_logits, temperature: float = 1.0, reduction: str = "batchmean"):
    """TinyBERT's prediction-layer loss: -sum_c softmax(z_T/t)_c log softmax(z_S/t)_c.

    reduction "batchmean" divides by N (the usual soft cross-entropy); "mean" divides by N*C,
    which is what the TinyBERT reference code does (issue #176 of its repository). No t^2 factor.
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


# ------------------------------------------------------- Distribution and direction losses
# Two general comparisons the distillation methods are built from (distill_losses.py): a KL
# divergence between the softmaxes of two score tensors, row by row, and the cosine distance
# between two sets of vectors. Both weight each row by a constant, so a caller chooses the
# reduction (a mean over real tokens, over heads, over the batch) and masks padded rows with 0.


class SoftmaxKLCache(NamedTuple):
    p_student: object  # (..., K) softmax(s)
    p_teacher: object  # (..., K) softmax(t)
    weights: object  # (...) row weights


def softmax_kl_forward(student_scores, teacher_scores, row_weights):
    """sum_r w_r KL(softmax(t_r) || softmax(s_r)), r over every leading index (a row of K scores).

    KL(p || q) = sum_j p_j (log p_j - log q_j). student_scores, teacher_scores (..., K): the
    logits of K-way distributions, e.g. attention scores with the additive mask (a masked
    entry, exp(-10000) = 0 in the softmax, adds 0 on both sides); row_weights (...): constants.
    The teacher side is a constant. Returns (0-d loss, cache).
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(f"softmax_kl: student {student_scores.shape} and teacher {teacher_scores.shape} differ")
    xp = get_array_module(student_scores)
    logp_s = log_softmax(student_scores)  # (..., K)
    logp_t = log_softmax(teacher_scores.astype(student_scores.dtype, copy=False))  # (..., K)
    p_t = xp.exp(logp_t)  # (..., K)
    kl = (p_t * (logp_t - logp_s)).sum(axis=-1)  # (...) one KL per row
    weights = xp.broadcast_to(row_weights, kl.shape).astype(kl.dtype, copy=False)
    return (kl * weights).sum(), SoftmaxKLCache(xp.exp(logp_s), p_t, weights)


def softmax_kl_backward(dloss, cache: SoftmaxKLCache):
    """ds_r = dloss * w_r * (softmax(s_r) - softmax(t_r)): the log-softmax's gradient, as sum_j p_j = 1."""
    p_s, p_t, weights = cache
    return (p_s - p_t) * (weights[..., None] * p_s.dtype.type(dloss))


class CosineDistanceCache(NamedTuple):
    x_unit: object  # (..., D) x / |x|
    y_unit: object  # (..., D) y / |y|
    cos: object  # (...)
    x_norm: object  # (...) |x| (at least eps)
    weights: object  # (...)


def cosine_distance_forward(x, y, row_weights, eps: float = 1e-8):
    """sum_r w_r (1 - cos(x_r, y_r)), cos(x, y) = <x, y> / (|x| |y|), r over every leading index.

    x, y (..., D), y a constant; row_weights (...) constants. Norms below eps count as eps
    (a zero vector has no direction; its gradient is then that of x / eps).
    Returns (0-d loss, cache).
    """
    if x.shape != y.shape:
        raise ValueError(f"cosine_distance: {x.shape} and {y.shape} differ")
    xp = get_array_module(x)
    y = y.astype(x.dtype, copy=False)
    tiny = x.dtype.type(eps)
    x_norm = xp.maximum(xp.sqrt((x * x).sum(axis=-1)), tiny)  # (...)
    y_norm = xp.maximum(xp.sqrt((y * y).sum(axis=-1)), tiny)  # (...)
    x_unit, y_unit = x / x_norm[..., None], y / y_norm[..., None]  # (..., D)
    cos = (x_unit * y_unit).sum(axis=-1)  # (...)
    weights = xp.broadcast_to(row_weights, cos.shape).astype(x.dtype, copy=False)
    return (weights * (1 - cos)).sum(), CosineDistanceCache(x_unit, y_unit, cos, x_norm, weights)


def cosine_distance_backward(dloss, cache: CosineDistanceCache):
    """dx_r = -dloss * w_r * (y_unit - cos * x_unit) / |x_r|: only the part of y's direction across x's moves it."""
    x_unit, y_unit, cos, x_norm, weights = cache
    scale = -(weights * x_unit.dtype.type(dloss)) / x_norm  # (...)
    return (y_unit - cos[..., None] * x_unit) * scale[..., None]
