"""BertModel's forward pass specialised for inference: eval mode, no gradients, NumPy arrays.

A declared specialisation, not the model's definition. `model.BertModel.forward` and the
kernels of `functional.py` define the forward pass; this file computes the same last hidden
state and pooled output (to float rounding: tests/test_fast_inference.py holds every head's
logits to the reference's, padded batches included) for a pass that no backward follows. It
runs only where `BertModel.forward` says, when all of these hold:

* the model is in eval mode (dropout is the identity) and the call is under `no_grad()`;
* its parameters are NumPy arrays (CuPy takes the reference forward);
* the kernels it stands for are fast.py's, untouched (`kernels.inference_path_on`): a
  swapped kernel, MINIBERT_FAST=0 or `kernels.use_fast(False)` run the reference.

What it does differently, and why (see `python bench/profile_step.py --what infer`):

1. Nothing kept for a backward: no caches, no dropout masks, no (B, NH, T, T) score or
   probability tensors, no per-head q/k/v copies. The scores of a few heads at a time live in
   one per-thread buffer that stays in cache; the peak is a few (B*T, 3H) arrays.
2. In place, on the rows a matmul has just written: bias, residual, LayerNorm and GELU (in
   cache-sized sub-blocks, its ~20 passes read cache, not memory); the FFN's (rows, I) block
   of at most MATMUL_ROWS rows is never a whole (B*T, I) array.
3. Attention without head copies: q, k and v are strided views of the (B*T, 3H) projection
   (BLAS reads them with a leading dimension of 3H); P V is written straight into the
   context's columns of its head; 1/sqrt(HS) scales q (B*T x H numbers) instead of the scores
   (B*NH*T*T); the softmax's division comes after P V, on (T, HS) instead of (T, T).
4. Fewer hand-offs: three parallel regions a layer (the Q/K/V projection over rows, the
   attention over (batch, head) pairs, and the rest of the layer over rows), each one
   contiguous share per thread, so batch 1 splits its 128 rows in two as batch 32 does.

Q/K/V come from `BertLayer._qkv_weights`: the query, key and value parameters are views of one
(3H, H) array, so there is no fused copy to refresh (see model.py).

Not here: the kernels (`fast.py`, `functional.py`), the pool (`threads.py`), the choice
(`kernels.inference_path_on`, `nn.no_grad`), the heads on top (`heads.py`, run as they are).
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels as K
from .fast import normal_cdf
from .threads import BLOCK_BYTES, for_shares

MASK_VALUE = -10000.0  # as model.MASK_VALUE (not imported: model.py imports this module)
# Rows per matmul call, at most. OpenBLAS (one thread, CPU time) ran (4096, 312) x (312, 1200)
# at ~100 GFLOP/s in one call, ~98 in 1024-row calls, ~89 in 256-row and ~73 in 64-row ones:
# big calls, then the element-wise work on each call's output in cache-sized sub-blocks.
MATMUL_ROWS = 1024
# Up to this many rows (batch 1: 128 rows, 64 a thread), x W^T runs as (W x^T)^T, a product
# that OpenBLAS runs faster at such sizes (64 x 312 x 1200: ~80 against ~68 GFLOP/s, 128 rows
# ~85 against ~82; one thread, CPU time), plus a transposed copy of the small result.
SMALL_ROWS = 128


def bert_forward(model, input_ids, token_type_ids, attention_mask):
    """input_ids, token_type_ids, attention_mask (B, T) NumPy integers -> last hidden state
    (B, T, H), pooled output (B, H) or None; as `BertModel.forward` in eval mode."""
    B, T = input_ids.shape
    x = _embeddings(model.embeddings, input_ids, token_type_ids)  # (B*T, H)
    mask_add = None  # (B, 1, T): 0 for real keys, -10000 for padding; None when nothing is padded
    if not attention_mask.all():
        mask_add = ((1 - attention_mask.astype(x.dtype)) * x.dtype.type(MASK_VALUE))[:, None, :]
    for layer in model.layers:
        _layer(layer, x, mask_add, B, T)  # x (B*T, H) updated in place
    h = x.reshape(B, T, -1)  # (B, T, H)
    pooled = None
    if model.pooler is not None:
        p = model.pooler.params
        pooled = np.tanh(np.add(h[:, 0] @ p["weight"].T, p["bias"]))  # (B, H)
    return h, pooled


# ---------------------------------------------------------------------------- the pieces


def _row_shares(fn, n: int, block: int) -> None:
    """fn(lo, hi) over [0, n): one contiguous share of rows per thread, walked `block` rows at a time."""
    def share(lo, hi):
        for start in range(lo, hi, block):
            fn(start, min(start + block, hi))

    for_shares(share, n)


def _linear(x, W, b, out) -> None:
    """out (n, out) <- x (n, in) W^T + b, W (out, in) as stored."""
    if len(x) <= SMALL_ROWS:
        np.copyto(out, np.matmul(W, x.T).T)  # (out, n) -> (n, out)
    else:
        np.matmul(x, W.T, out=out)
    out += b


def _layernorm_(x, gamma, beta, eps) -> None:
    """x (n, D) <- LayerNorm(x), in place; the reference's formula (biased variance)."""
    x -= x.mean(axis=-1, keepdims=True)  # x - mean
    rstd = np.einsum("ij,ij->i", x, x)[:, None]  # (n, 1) D * var
    rstd /= x.shape[-1]
    rstd += eps
    np.sqrt(rstd, out=rstd)
    np.reciprocal(rstd, out=rstd)  # 1 / sqrt(var + eps)
    x *= rstd
    x *= gamma
    x += beta


def _gelu_(h) -> None:
    """h (n, I) <- GELU(h) = h Phi(h), in place, a cache-sized block of rows at a time; Phi as
    fast.gelu_forward computes it (its ~20 passes then read the block from cache)."""
    rows = max(1, BLOCK_BYTES // h[0].nbytes)
    cdf = np.empty((min(rows, len(h)), h.shape[1]), h.dtype)
    for lo in range(0, len(h), rows):
        x, c = h[lo:lo + rows], cdf[:len(h[lo:lo + rows])]
        normal_cdf(x, c)  # c = Phi(x)
        x *= c


def _embeddings(emb, input_ids, token_type_ids):
    """LayerNorm(word[ids] + position[0..T-1] + token_type[segments]) as (B*T, H), a new array."""
    B, T = input_ids.shape
    x = emb.word.forward(input_ids)  # (B, T, H): checks the ids' range, then gathers
    x += emb.position.params["weight"][:T]  # (T, H) broadcast over the batch
    if token_type_ids.any():
        x += emb.token_type.forward(token_type_ids)  # (B, T, H), its ids checked as the word ids
    else:
        x += emb.token_type.params["weight"][0]  # one segment: one row, broadcast
    emb.word._cache = emb.token_type._cache = None
    x = x.reshape(B * T, -1)  # (B*T, H)
    norm = emb.norm
    _row_shares(lambda lo, hi: _layernorm_(x[lo:hi], norm.params["weight"], norm.params["bias"], norm.eps),
                B * T, B * T)
    return x


def _layer(layer, x, mask_add, B: int, T: int) -> None:
    """One BertLayer on x (B*T, H), in place: x <- x2 of `BertLayer.forward`."""
    N, H = x.shape
    NH, HS = layer.NH, layer.HS
    W, b = layer._qkv_weights()  # (3H, H), (3H,): query, key, value stacked
    scale = x.dtype.type(1.0 / math.sqrt(HS))

    # qkv = x W^T + b, with q scaled by 1/sqrt(HS) so that q k^T are the scores
    qkv = np.empty((N, 3 * H), x.dtype)  # (B*T, 3H)

    def project(lo, hi):
        _linear(x[lo:hi], W, b, qkv[lo:hi])
        qkv[lo:hi, :H] *= scale

    _row_shares(project, N, MATMUL_ROWS)

    # ctx = softmax(q k^T + mask) v for every (batch, head) pair, into the heads' columns of ctx
    heads = qkv.reshape(B, T, 3, NH, HS)
    q, k, v = (heads[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # 3 x (B, NH, T, HS) views
    ctx = np.empty((N, H), x.dtype)  # (B*T, H) heads concatenated
    ctx4 = ctx.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)  # (B, NH, T, HS) view
    max_heads = max(1, min(NH, BLOCK_BYTES // (T * T * x.itemsize)))

    def attend(lo, hi):
        s_buf = np.empty((max_heads, T, T), x.dtype)  # this thread's scores, a few heads at a time
        pair = lo
        while pair < hi:
            bi, h0 = divmod(pair, NH)
            h1 = min(NH, h0 + max_heads, h0 + hi - pair)
            s = s_buf[:h1 - h0]  # (n, T, T)
            np.matmul(q[bi, h0:h1], k[bi, h0:h1].swapaxes(-1, -2), out=s)  # scores
            if mask_add is not None:
                s += mask_add[bi]  # (1, T) over the keys
            s -= s.max(axis=-1, keepdims=True)
            np.exp(s, out=s)  # unnormalised probabilities
            total = s.sum(axis=-1, keepdims=True)  # (n, T, 1)
            c = ctx4[bi, h0:h1]  # (n, T, HS) view into ctx
            np.matmul(s, v[bi, h0:h1], out=c)
            c /= total  # softmax's division, on (T, HS)
            pair += h1 - h0

    for_shares(attend, B * NH)

    # x1 = LayerNorm(x + ctx W_o^T + b_o); x2 = LayerNorm(x1 + GELU(x1 W_1^T + b_1) W_2^T + b_2)
    ln1, ln2 = layer.attn_norm, layer.ffn_norm
    Wo, bo = layer.attn_out.params["weight"], layer.attn_out.params["bias"]
    W1, b1 = layer.ffn_in.params["weight"], layer.ffn_in.params["bias"]
    W2, b2 = layer.ffn_out.params["weight"], layer.ffn_out.params["bias"]
    gelu = layer.hidden_act == "gelu"
    act_forward = None if gelu else K.activation(layer.hidden_act)[0]

    def rest(lo, hi):
        x1 = np.empty((hi - lo, H), x.dtype)  # (n, H)
        _linear(ctx[lo:hi], Wo, bo, x1)
        x1 += x[lo:hi]  # residual
        _layernorm_(x1, ln1.params["weight"], ln1.params["bias"], ln1.eps)
        h = np.empty((hi - lo, W1.shape[0]), x.dtype)  # (n, I)
        _linear(x1, W1, b1, h)
        if gelu:
            _gelu_(h)
        else:
            h = act_forward(h)[0]
        out = x[lo:hi]  # the residual x is read: its rows now take x2
        _linear(h, W2, b2, out)
        out += x1
        _layernorm_(out, ln2.params["weight"], ln2.params["bias"], ln2.eps)

    _row_shares(rest, N, MATMUL_ROWS)
