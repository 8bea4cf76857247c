"""The hot kernels of `functional.py` again, made fast for NumPy on a multi-core CPU.

Same maths, same signatures, same results to float rounding: `functional.py` stays the
readable reference and tests/test_fast.py holds these to it. The model and its modules call
kernels through this module; a kernel not rewritten here is the reference one, re-exported.

Three tricks, each from the profile of a training step (bench/profile_step.py):

1. Threads. NumPy's element-wise ufuncs, its reductions and scipy's erf run on one core, and
   so does `np.matmul` on stacks of small matrices such as attention's (B, NH, T, HS). All of
   them release the GIL, so a small thread pool working on disjoint row blocks uses every core.
2. Blocks that fit in cache. Each thread walks its rows one block (~1 MiB) at a time, so a
   formula of several passes (softmax: max, subtract, exp, sum, divide) reads main memory
   about once instead of once per pass, and its temporaries stay block-sized.
3. Less memory. A dropout mask is kept as booleans (1 byte, not 4), and attention does not
   keep its dropped probabilities or its score gradient: backward recomputes the first and
   uses the second one block at a time.

One pool for everything, matmuls included. OpenBLAS's own threads spin for a while after
each call, and while they spin they take the cores the pool's element-wise work needs (a
2-thread erf right after a 2-thread matmul ran no faster than a 1-thread one, measured). So
the first fast kernel sets NumPy's BLAS to one thread (threadpoolctl) and the linear layers
split their matmuls over the pool instead: on 2 cores two 1-thread halves of a (4096, 312) x
(312, 1200) matmul take the same 10 ms as one 2-thread call. This is process-wide: other
NumPy matmuls in the process then run on one thread too (MINIBERT_FAST=0 leaves BLAS alone).

CuPy arrays and `ENABLED = False` (or MINIBERT_FAST=0) take the reference kernels.
Threads: $MINIBERT_NUM_THREADS, default the number of cores (at most 8).
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import threadpoolctl

from . import functional as ref
from . import losses
from .backend import erf
# kernels with nothing to gain here, re-exported so callers need only this module
from .functional import embedding_backward, embedding_forward, tanh_backward, tanh_forward  # noqa: F401

ENABLED = os.environ.get("MINIBERT_FAST", "1") != "0"
# Rows per block: ~1 MiB fits the L2 cache (2 MiB a core here) with room for temporaries, and
# is big enough that NumPy's ~2 us per call stays small (32 KiB blocks ran GELU 3.5x slower).
BLOCK_BYTES = 1 << 20

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

_pool: ThreadPoolExecutor | None = None
_blas_limit = None


def num_threads() -> int:
    return int(os.environ.get("MINIBERT_NUM_THREADS", 0)) or min(os.cpu_count() or 1, 8)


def _fast(*arrays) -> bool:
    # an array smaller than one block runs inline (for_blocks), so only the type matters here
    return ENABLED and all(isinstance(a, np.ndarray) for a in arrays)


def _get_pool() -> ThreadPoolExecutor:
    global _pool, _blas_limit
    if _pool is None:
        _blas_limit = threadpoolctl.threadpool_limits(1, user_api="blas")  # kept: see the module docstring
        _pool = ThreadPoolExecutor(num_threads(), thread_name_prefix="minibert")
    return _pool


def _run_shares(fn, shares) -> None:
    """One share (a list of (lo, hi) ranges) per thread; this thread takes the first."""
    def run(share):
        for lo, hi in share:
            fn(lo, hi)

    pool = _get_pool()
    futures = [pool.submit(run, share) for share in shares[1:]]
    run(shares[0])
    for f in futures:
        f.result()  # re-raises a worker's exception here


def for_blocks(fn, n_rows: int, row_bytes: int) -> None:
    """Call fn(lo, hi) on row ranges that cover [0, n_rows): cache-sized blocks, split into one
    contiguous share per thread. fn must write only rows lo:hi of its outputs."""
    per_block = max(1, BLOCK_BYTES // max(row_bytes, 1))
    blocks = [(lo, min(lo + per_block, n_rows)) for lo in range(0, n_rows, per_block)]
    nt = max(1, min(num_threads(), len(blocks)))
    _run_shares(fn, [blocks[i * len(blocks) // nt:(i + 1) * len(blocks) // nt] for i in range(nt)])


def for_shares(fn, n: int) -> None:
    """Call fn(lo, hi) once per thread on contiguous ranges covering [0, n): for matmuls,
    whose cache blocking is BLAS's business."""
    nt = max(1, min(num_threads(), n))
    _run_shares(fn, [[(i * n // nt, (i + 1) * n // nt)] for i in range(nt)])


def for_elements(fn, *arrays) -> None:
    """fn(*views) on matching cache-sized 1-D blocks of same-shaped arrays, in the threads: for
    element-wise in-place updates such as an optimizer's. Falls back to fn(*arrays) for CuPy or
    non-contiguous arrays."""
    if not (_fast(*arrays) and all(a.flags.c_contiguous for a in arrays)):
        return fn(*arrays)
    flat = [a.reshape(-1) for a in arrays]  # views
    for_blocks(lambda lo, hi: fn(*(f[lo:hi] for f in flat)), flat[0].size, flat[0].itemsize)


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


def gelu_forward(x):
    """Exact GELU, y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2; as `functional.gelu_forward`.

    float64 takes scipy's erf (gradient checks need its precision); float32 the A&S formula."""
    if not _fast(x):
        return ref.gelu_forward(x)
    x2 = _rows(x)  # (N, D)
    y, cdf = np.empty_like(x2), np.empty_like(x2)

    def block(lo, hi):
        xb, c = x2[lo:hi], cdf[lo:hi]
        if x.dtype == np.float32:
            _normal_cdf_f32(xb, c)
        else:
            np.multiply(xb, _SQRT_HALF, out=c)
            erf(c, out=c)
            c += 1.0
            c *= 0.5  # c = Phi(x)
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


ACTIVATIONS = {**ref.ACTIVATIONS, "gelu": (gelu_forward, gelu_backward)}


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
    if not ENABLED or rng.device != "numpy":
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


class AttentionCache(NamedTuple):
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
            AttentionCache(q3, k3, v3, probs, dropout, scale))


def attention_backward(dcontext, cache, dscores_extra=None):
    """dcontext (B, NH, T, HS) [+ dscores_extra (B, NH, T, T)] -> dq, dk, dv."""
    if not isinstance(cache, AttentionCache):
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


def cross_entropy_forward(logits, labels, ignore_index: int = losses.IGNORE_INDEX):
    """Mean of -log softmax(logits)[label] over labelled rows; as `losses.cross_entropy_forward`."""
    if not _fast(logits, labels):
        return losses.cross_entropy_forward(logits, labels, ignore_index)
    valid, safe, count = losses.check_labels(logits, labels, ignore_index)
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
    return np.asarray(loss, logits.dtype), losses.CrossEntropyCache(probs, safe, valid, count)


def cross_entropy_backward(dloss, cache: losses.CrossEntropyCache):
    """dlogits = (softmax - onehot(label)) * dloss / count at labelled rows, 0 elsewhere."""
    probs, labels, valid, count = cache
    if not _fast(probs):
        return losses.cross_entropy_backward(dloss, cache)
    row_scale = (valid * (float(dloss) / max(count, 1))).astype(probs.dtype)[:, None]  # (N, 1)
    dlogits = np.empty_like(probs)

    def block(lo, hi):
        np.multiply(probs[lo:hi], row_scale[lo:hi], out=dlogits[lo:hi])
        dlogits[np.arange(lo, hi), labels[lo:hi]] -= row_scale[lo:hi, 0]

    for_blocks(block, probs.shape[0], probs.strides[0])
    return dlogits
