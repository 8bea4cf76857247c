"""Fast versions of the hot kernels of `functional.py`, for NumPy arrays on a multi-core CPU.

This is a declared specialisation, not the model's code: `functional.py` is the reference a
learner reads, and `kernels.py` is the one place that says which kernels are replaced by the
versions here (its `FAST_KERNELS`), and only while `threads.ENABLED` (MINIBERT_FAST is not 0).
Each function keeps its reference's signature, maths and results to float rounding
(tests/test_fast.py holds them to it with tiny blocks and many threads), and hands CuPy
arrays to the reference. Nothing here is called by a module directly.

Three tricks, each from the profile of a training step (bench/profile_step.py):

1. Threads. Element-wise work, reductions, erf and attention's stacked matmuls run on row
   blocks shared by the pool in `threads.py` (NumPy and scipy release the GIL there).
2. Blocks that fit in cache. Each thread walks its rows one block (~1 MiB) at a time, so a
   formula of several passes (softmax: max, subtract, exp, sum, divide) reads main memory
   about once instead of once per pass, and its temporaries stay block-sized.
3. Less memory. A dropout mask is kept as booleans (1 byte, not 4), and attention does not
   keep its dropped probabilities or its score gradient: backward recomputes the first and
   uses the second one block at a time.

The linear layers split their matmuls over the same pool (BLAS runs single-threaded: see
`threads.py` for why). Not here: the pool itself (`threads.py`), kernels with nothing to gain
(embedding, tanh, the other activations, the soft losses: `functional.py`), the forward
without a backward (`fast_inference.py`, which reuses the float32 erf below).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import functional as ref
from .backend import erf
from .threads import BLOCK_BYTES, for_blocks, for_shares

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _fast(*arrays) -> bool:
    """True when every array is a NumPy array (CuPy arrays take the reference kernel). An array
    smaller than one block runs inline (for_blocks), so only the type matters here."""
    return all(isinstance(a, np.ndarray) for a in arrays)


def _rows(x):
    """x (..., D) as a C-contiguous (N, D) array (a view unless x was not contiguous)."""
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1])


# ----------------------------------------------------------------------------- Linear


def linear_forward(x, W, b=None):
    """x (..., in) -> y = x W^T + b (..., out), rows split over the threads."""
    if not _fast(x, W):
        return ref.linear_forward(x, W, b)
    x2 = _rows(x)  # (N, in)
    y = np.empty((x2.shape[0], W.shape[0]), np.result_type(x, W))

    def share(lo, hi):
        np.matmul(x2[lo:hi], W.T, out=y[lo:hi])
        if b is not None:
            y[lo:hi] += b

    for_shares(share, x2.shape[0])
    return y.reshape(x.shape[:-1] + (W.shape[0],)), ref.LinearCache(x, W)


def linear_backward(dout, cache: ref.LinearCache):
    """dx = dout W (rows split), dW = dout^T x (output features split), db = sum of dout rows."""
    x, W = cache
    if not _fast(dout, x, W):
        return ref.linear_backward(dout, cache)
    d2, x2 = _rows(dout), _rows(x)  # (N, out), (N, in)
    dx, dW, db = np.empty_like(x2), np.empty_like(W), np.empty(W.shape[0], dout.dtype)

    def rows(lo, hi):
        np.matmul(d2[lo:hi], W, out=dx[lo:hi])

    def features(lo, hi):
        np.matmul(d2[:, lo:hi].T, x2, out=dW[lo:hi])
        d2[:, lo:hi].sum(axis=0, out=db[lo:hi])

    for_shares(rows, d2.shape[0])
    for_shares(features, W.shape[0])
    return dx.reshape(x.shape), dW, db


# ------------------------------------------------------------------------------ GELU


# Abramowitz & Stegun 7.1.26: for z >= 0, erf(z) = 1 - (a1 s + a2 s^2 + ... + a5 s^5) exp(-z^2)
# with s = 1 / (1 + p z), |error| <= 1.5e-7: float32's own resolution near 1 (6e-8), at a
# quarter of scipy's cost (scipy evaluates erf in float64 for float32 input). So Phi(x) =
# (1 + erf(x / sqrt 2)) / 2 is 1 - h for x >= 0 and h for x < 0, with h = poly(s) exp(-x^2/2) / 2.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)  # a1 .. a5


def _normal_cdf_f32(x, out) -> None:
    """out = Phi(x) for one float32 block, to ~1e-7 (the A&S formula above)."""
    s = np.abs(x)
    s *= _AS_P * _SQRT_HALF
    s += 1.0
    np.reciprocal(s, out=s)  # s = 1 / (1 + p |x| / sqrt 2)
    np.multiply(s, _AS_A[4], out=out)  # Horner: ((((a5 s + a4) s + a3) s + a2) s + a1) s
    for a in _AS_A[3::-1]:
        out += a
        out *= s
    np.multiply(x, x, out=s)
    s *= -0.5
    np.exp(s, out=s)  # exp(-x^2 / 2)
    out *= s
    out *= 0.5  # h
    np.subtract(0.5, out, out=out)
    np.copysign(out, x, out=out)
    out += 0.5  # 1 - h for x >= 0, h for x < 0


def normal_cdf(x, out) -> None:
    """out = Phi(x) = (1 + erf(x / sqrt 2)) / 2 for one block: float32 by the A&S formula,
    float64 by scipy's erf (gradient checks need its precision)."""
    if x.dtype == np.float32:
        _normal_cdf_f32(x, out)
        return
    np.multiply(x, _SQRT_HALF, out=out)
    erf(out, out=out)
    out += 1.0
    out *= 0.5


def gelu_forward(x):
    """Exact GELU, y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2; as `functional.gelu_forward`.

    float64 takes scipy's erf (gradient checks need its precision); float32 the A&S formula."""
    if not _fast(x):
        return ref.gelu_forward(x)
    x2 = _rows(x)  # (N, D)
    y, cdf = np.empty_like(x2), np.empty_like(x2)

    def block(lo, hi):
        xb, c = x2[lo:hi], cdf[lo:hi]
        normal_cdf(xb, c)  # c = Phi(x)
        np.multiply(xb, c, out=y[lo:hi])

    for_blocks(block, x2.shape[0], x2.strides[0])
    return y.reshape(x.shape), (x2.reshape(x.shape), cdf.reshape(x.shape))


def gelu_backward(dout, cache):
    """dx = dout (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)."""
    x, cdf = cache
    if not _fast(dout, x):
        return ref.gelu_backward(dout, cache)
    x2, c2, d2 = _rows(x), _rows(cdf), _rows(dout)
    dx = np.empty_like(d2)

    def block(lo, hi):
        xb, t = x2[lo:hi], dx[lo:hi]
        np.multiply(xb, xb, out=t)
        t *= -0.5
        np.exp(t, out=t)
        t *= _INV_SQRT_2PI  # phi(x)
        t *= xb
        t += c2[lo:hi]
        t *= d2[lo:hi]

    for_blocks(block, x2.shape[0], x2.strides[0])
    return dx.reshape(dout.shape)


# --------------------------------------------------------------------------- Softmax


def _softmax_rows(x, y):
    """y = softmax(x) over the last axis, for one block (y may be x); returns the row max m and
    the row sum of exp(x - m), both (rows, 1), which the cross-entropy needs for log softmax."""
    m = x.max(axis=-1, keepdims=True)
    np.subtract(x, m, out=y)
    np.exp(y, out=y)
    s = y.sum(axis=-1, keepdims=True)
    y /= s
    return m, s


def _softmax_backward_rows(dout, y, dx) -> None:
    """dx = y (dout - sum(dout y)) for one block (dx may be dout)."""
    s = np.einsum("...i,...i->...", dout, y)[..., None]
    np.subtract(dout, s, out=dx)
    dx *= y


def softmax_forward(x):
    if not _fast(x):
        return ref.softmax_forward(x)
    x2 = _rows(x)
    y = np.empty_like(x2)
    for_blocks(lambda lo, hi: _softmax_rows(x2[lo:hi], y[lo:hi]), x2.shape[0], x2.strides[0])
    y = y.reshape(x.shape)
    return y, y


def softmax_backward(dout, y):
    if not _fast(dout, y):
        return ref.softmax_backward(dout, y)
    d2, y2 = _rows(dout), _rows(y)
    dx = np.empty_like(d2)
    for_blocks(lambda lo, hi: _softmax_backward_rows(d2[lo:hi], y2[lo:hi], dx[lo:hi]), d2.shape[0], d2.strides[0])
    return dx.reshape(dout.shape)


# ------------------------------------------------------------------------- LayerNorm


def layernorm_forward(x, gamma, beta, eps=1e-12):
    """x (..., D) -> y (..., D); as `functional.layernorm_forward` (biased variance)."""
    if not _fast(x, gamma, beta):
        return ref.layernorm_forward(x, gamma, beta, eps)
    x2 = _rows(x)
    N, D = x2.shape
    y, xhat, rstd = np.empty_like(x2), np.empty_like(x2), np.empty((N, 1), x.dtype)

    def block(lo, hi):
        xh, r = xhat[lo:hi], rstd[lo:hi]
        np.subtract(x2[lo:hi], x2[lo:hi].mean(axis=-1, keepdims=True), out=xh)  # x - mean
        np.einsum("ij,ij->i", xh, xh, out=r[:, 0])  # D * var
        r /= D
        r += eps
        np.sqrt(r, out=r)
        np.reciprocal(r, out=r)  # 1 / sqrt(var + eps)
        xh *= r
        np.multiply(xh, gamma, out=y[lo:hi])
        y[lo:hi] += beta

    for_blocks(block, N, x2.strides[0])
    return y.reshape(x.shape), ref.LayerNormCache(xhat.reshape(x.shape), rstd.reshape(x.shape[:-1] + (1,)), gamma)


def layernorm_backward(dout, cache: ref.LayerNormCache):
    """dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dout gamma; dgamma, dbeta summed over rows."""
    xhat, rstd, gamma = cache
    if not _fast(dout, xhat):
        return ref.layernorm_backward(dout, cache)
    d2, xh2, r2 = _rows(dout), _rows(xhat), rstd.reshape(-1, 1)
    N, D = d2.shape
    dbeta = d2.sum(axis=0)  # (D,)
    dgamma = np.einsum("ij,ij->j", d2, xh2)  # (D,)
    dx = np.empty_like(d2)

    def block(lo, hi):
        g, xh = dx[lo:hi], xh2[lo:hi]
        np.multiply(d2[lo:hi], gamma, out=g)
        gx = np.einsum("ij,ij->i", g, xh)[:, None] / D  # mean(g xhat)
        g -= g.mean(axis=-1, keepdims=True)
        g -= xh * gx
        g *= r2[lo:hi]

    for_blocks(block, N, d2.strides[0])
    return dx.reshape(dout.shape), dgamma, dbeta


# --------------------------------------------------------------------------- Dropout


class DropoutMask(NamedTuple):
    """Inverted dropout as (keep, scale): y = x * keep * scale, keep boolean, scale = 1/(1-p)."""

    keep: np.ndarray
    scale: float


RNG_CHUNK = 1 << 20  # elements per random stream: fixed, so masks do not depend on the thread count


def dropout_mask(rng, shape, p, dtype):
    """keep ~ Bernoulli(1 - p), drawn in fixed chunks from independent streams seeded by one
    draw from `rng` (so it stays reproducible and resumable), the chunks in parallel."""
    if rng.device != "numpy":
        return ref.dropout_mask(rng, shape, p, dtype)
    n = math.prod(shape)
    keep = np.empty(n, dtype=bool)
    base = int(rng.host.integers(2**63))

    def chunk(lo, hi):
        for c in range(lo, hi):
            sl = slice(c * RNG_CHUNK, min((c + 1) * RNG_CHUNK, n))
            u = np.random.default_rng([base, c]).random(sl.stop - sl.start, dtype=np.float32)
            np.greater_equal(u, p, out=keep[sl])

    for_blocks(chunk, -(-n // RNG_CHUNK), BLOCK_BYTES)  # one chunk per block
    return DropoutMask(keep.reshape(shape), 1.0 / (1.0 - p))


def _apply_mask(x, mask: DropoutMask, out=None):
    out = np.multiply(x, mask.keep, out=out)
    out *= mask.scale
    return out


def dropout_forward(x, mask):
    if not isinstance(mask, DropoutMask):
        return ref.dropout_forward(x, mask)
    x2, k2 = _rows(x), mask.keep.reshape(-1, x.shape[-1])
    y = np.empty_like(x2)
    for_blocks(lambda lo, hi: _apply_mask(x2[lo:hi], DropoutMask(k2[lo:hi], mask.scale), y[lo:hi]), x2.shape[0], x2.strides[0])
    return y.reshape(x.shape), mask


def dropout_backward(dout, mask):
    return dropout_forward(dout, mask)[0] if isinstance(mask, DropoutMask) else ref.dropout_backward(dout, mask)


# ------------------------------------------------------------------ Self-attention core
# S = Q K^T / sqrt(HS) + M, P = softmax(S), C = dropout(P) V, as `functional.attention_*`,
# one block of (batch, head) pairs at a time: its (T, T) matrices stay in cache.


class FastAttentionCache(NamedTuple):
    q: object  # (B, NH, T, HS)
    k: object
    v: object
    probs: object  # (B, NH, T, T)
    mask: object  # DropoutMask or None
    scale: float


def _pairs(x):
    """(B, NH, ...) -> (B*NH, ...), a view when possible."""
    return x.reshape((-1,) + x.shape[2:])


def attention_forward(q, k, v, mask_add, dropout=None):
    """q, k, v (B, NH, T, HS); mask_add (B, 1, 1, T) or None -> context, scores, cache."""
    if not (_fast(q, k, v) and (dropout is None or isinstance(dropout, DropoutMask))):
        return ref.attention_forward(q, k, v, mask_add, dropout)
    B, NH, T, HS = q.shape
    scale = 1.0 / math.sqrt(HS)
    q3, k3, v3 = _pairs(q), _pairs(k), _pairs(v)  # (B*NH, T, HS), copies of the strided views
    scores, probs = np.empty((B * NH, T, T), q.dtype), np.empty((B * NH, T, T), q.dtype)
    context = np.empty((B * NH, T, HS), q.dtype)
    m3 = None if mask_add is None else np.broadcast_to(mask_add, (B, NH, 1, T)).reshape(B * NH, 1, T)
    keep = None if dropout is None else _pairs(dropout.keep)

    def block(lo, hi):
        s, p = scores[lo:hi], probs[lo:hi]
        np.matmul(q3[lo:hi], k3[lo:hi].swapaxes(-1, -2), out=s)
        s *= scale
        if m3 is not None:
            s += m3[lo:hi]
        _softmax_rows(s, p)
        pd = p if keep is None else _apply_mask(p, DropoutMask(keep[lo:hi], dropout.scale))
        np.matmul(pd, v3[lo:hi], out=context[lo:hi])

    for_blocks(block, B * NH, T * T * q.itemsize)
    shape4 = (B, NH, T, T)
    return (context.reshape(B, NH, T, HS), scores.reshape(shape4),
            FastAttentionCache(q3, k3, v3, probs, dropout, scale))


def attention_backward(dcontext, cache, dscores_extra=None):
    """dcontext (B, NH, T, HS) [+ dscores_extra (B, NH, T, T)] -> dq, dk, dv."""
    if not isinstance(cache, FastAttentionCache):
        return ref.attention_backward(dcontext, cache, dscores_extra)
    q3, k3, v3, probs, dropout, scale = cache
    B, NH, T, HS = dcontext.shape
    dc3 = _pairs(np.ascontiguousarray(dcontext))
    extra = None if dscores_extra is None else _pairs(dscores_extra)
    keep = None if dropout is None else _pairs(dropout.keep)
    dq, dk, dv = (np.empty_like(q3) for _ in range(3))

    def block(lo, hi):
        p = probs[lo:hi]
        mask = None if keep is None else DropoutMask(keep[lo:hi], dropout.scale)
        pd = p if mask is None else _apply_mask(p, mask)  # recomputed, not cached
        # context = pd @ v
        np.matmul(pd.swapaxes(-1, -2), dc3[lo:hi], out=dv[lo:hi])
        dp = dc3[lo:hi] @ v3[lo:hi].swapaxes(-1, -2)  # (n, T, T)
        # pd = dropout(p)
        if mask is not None:
            _apply_mask(dp, mask, out=dp)
        # p = softmax(s)
        _softmax_backward_rows(dp, p, dp)
        # s is also an output: a distillation loss's gradient joins here
        if extra is not None:
            dp += extra[lo:hi]
        # s = q k^T * scale + mask
        dp *= scale
        np.matmul(dp, k3[lo:hi], out=dq[lo:hi])
        np.matmul(dp.swapaxes(-1, -2), q3[lo:hi], out=dk[lo:hi])

    for_blocks(block, B * NH, T * T * dcontext.itemsize)
    return tuple(g.reshape(B, NH, T, HS) for g in (dq, dk, dv))


# ----------------------------------------------------------------------- Cross-entropy
# Masked-LM logits are (P, V) with V = 30522: the loss's passes over them cost as much as
# the decoder matmul that made them, so they run in row blocks too.


def cross_entropy_forward(logits, labels, ignore_index: int = ref.IGNORE_INDEX):
    """Mean of -log softmax(logits)[label] over labelled rows; as `functional.cross_entropy_forward`."""
    if not _fast(logits, labels):
        return ref.cross_entropy_forward(logits, labels, ignore_index)
    valid, safe, count, _ = ref.check_labels(logits, labels, ignore_index)  # NumPy labels: checked there
    N, C = logits.shape
    probs, picked = np.empty_like(logits), np.empty(N, np.float64)

    def block(lo, hi):
        z = logits[lo:hi]
        m, s = _softmax_rows(z, probs[lo:hi])
        # log softmax(z)[y] = z_y - m - log sum exp(z - m), without a (rows, C) log-prob array
        rows = np.arange(hi - lo)
        picked[lo:hi] = z[rows, safe[lo:hi]] - m[:, 0] - np.log(s[:, 0])

    for_blocks(block, N, logits.strides[0])
    loss = -(picked * valid).sum() / max(count, 1)
    return np.asarray(loss, logits.dtype), ref.CrossEntropyCache(probs, safe, valid, count)


def cross_entropy_backward(dloss, cache: ref.CrossEntropyCache):
    """dlogits = (softmax - onehot(label)) * dloss / count at labelled rows, 0 elsewhere."""
    probs, labels, valid, count = cache
    if not _fast(probs):
        return ref.cross_entropy_backward(dloss, cache)
    row_scale = (valid * (float(dloss) / max(count, 1))).astype(probs.dtype)[:, None]  # (N, 1)
    dlogits = np.empty_like(probs)

    def block(lo, hi):
        np.multiply(probs[lo:hi], row_scale[lo:hi], out=dlogits[lo:hi])
        dlogits[np.arange(lo, hi), labels[lo:hi]] -= row_scale[lo:hi, 0]

    for_blocks(block, probs.shape[0], probs.strides[0])
    return dlogits
