"""The loss kernels of the distillation methods, as forward/backward pairs.

Each method is a few of these kernels, named and joined in `distill.py`'s loss table
(`LOSSES`, and `METHODS` for which losses a method runs in each stage). S is the student, T
the teacher (a constant: no gradient reaches it), B the batch, n the number of real
(unpadded) tokens in it, g the layer mapping:

    tinybert    Jiao et al., *TinyBERT* (Findings of EMNLP 2020):
                L_att  = sum_m (1/h) sum_heads MSE(A_S^m, A_T^{g(m)}), A the attention scores
                L_hid  = sum_m MSE(H_S^m W + b, H_T^{g(m)}), L_emb the same for the embeddings
                L_pred = -sum_c softmax(z_T / t)_c log softmax(z_S / t)_c
    kd          Hinton, Vinyals, Dean, *Distilling the Knowledge in a Neural Network* (2015):
                L_KD = (1 - alpha) CE(z_S, y) + alpha t^2 CE(softmax(z_T / t), softmax(z_S / t))
    distilbert  Sanh et al., *DistilBERT* (2019): L = L_KD + L_cos,
                L_cos = (1/n) sum_tokens (1 - cos(h_S, h_T)) on the last layer's hidden states
    pkd         Sun et al., *Patient Knowledge Distillation for BERT* (EMNLP 2019): L = L_KD + beta L_PT,
                L_PT = sum_j (1/B) sum_b || h_S^j / |h_S^j| - h_T^{I(j)} / |h_T^{I(j)}| ||^2 on [CLS]
    minilm      Wang et al., *MiniLM* (NeurIPS 2020): L = L_AT + L_VR on the last layers,
                L_AT = 1/(A_h n) sum_heads sum_tokens KL(A_T || A_S), A = softmax(Q K^T / sqrt(d_k))
                L_VR = 1/(A_h n) sum_heads sum_tokens KL(VR_T || VR_S), VR = softmax(V V^T / sqrt(d_k))
    minilmv2    Wang et al., *MiniLMv2* (Findings of ACL 2021): L = L_QQ + L_KK + L_VV,
                L_XX = 1/(R n) sum_r sum_tokens KL(X_T,r || X_S,r), X_r = softmax(A_r A_r^T / sqrt(d_r)),
                A_r the r-th of R "relation heads": the layer's heads concatenated, then cut in R

TinyBERT's losses follow the authors' released code rather than the paper
(huawei-noah/Pretrained-Language-Model, TinyBERT/task_distill.py), re-derived here:
- A is the attention *score* (pre-softmax, scaled, additive mask included), and both score
  tensors go through the clamp where(x <= -100, 0, x) before the MSE. Padded keys (about
  -10000) so become exact zeros on both sides and add nothing; padded *query* rows are not
  masked and count, as does the full divisor B*NH*T*T.
- MSE is the mean over every element, padded positions included.
- Prediction loss reduction "batchmean" (sum over classes, mean over the batch), our choice:
  the textbook soft cross-entropy, whose size does not change with the number of classes.
  The code's mean over B*C is exactly 1/C of it, available as `reduction="mean"`. Temperature
  on both sides (the code; the maintainers called the paper's student-only t a typo), no t^2.
- Regression heads (one output) distil with MSE against the *teacher's* logits, as the
  paper and the maintainers (issue #128 of the reference repository) say; the code's MSE against gold labels
  is a bug.

The other methods' KLs and means run over real tokens only (padded queries carry no text;
padded keys get the model's -10000 mask, so they vanish from every softmax); their kernels
take the batch's attention mask for that. Two comparisons recur and are general kernels in
`functional.py`: the row-wise KL between two softmaxes (MiniLM, MiniLMv2) and the cosine
distance (DistilBERT; Patient KD's normalised MSE is 2 (1 - cos) of the same vectors).
Choices of ours where those papers leave room:
- Soft targets use the cross-entropy form: it differs from KL(p_T || p_S) by the teacher's
  entropy, a constant, so the gradient is the same; the t^2 keeps the gradient's size as t
  changes (Hinton). A regression head (one output) has no distribution to soften: its soft
  target is MSE(z_S, z_T), its hard target MSE(z_S, y).
- DistilBERT's and Patient KD's state losses compare raw hidden states, so they need the
  teacher's width; MiniLM's attention and value losses need its head count. MiniLMv2's
  relations only need both widths divisible by R: that is what lets a narrower student learn.

Not here: the layer mapping, fit_dense, the loss table and the Distiller (`distill.py`),
which also decides which layer each loss reads and passes the tensors in.

Shapes: B batch, T sequence, NH heads, HS head size, d hidden size, C classes, M / N
student / teacher layers, R relation heads.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from .backend import get_array_module, like
from . import kernels as K
from .model import MASK_VALUE

# Scores at or below this are treated as masked and zeroed on both sides (TinyBERT's rule).
# Masked keys carry -10000 (or finfo.min in newer transformers), real scores are O(10).
CLAMP_THRESHOLD = -100.0


def _real_tokens(attention_mask, like_array):
    """The (B, T) attention mask as floats of `like_array`'s dtype and device, and n, the number of real tokens."""
    mask = like(attention_mask, like_array).astype(like_array.dtype, copy=False)  # (B, T) 1 real, 0 padding
    return mask, mask.sum()


# ------------------------------------------------------------------------ TinyBERT


class AttentionLossCache(NamedTuple):
    kept_diffs: list  # M x (B, NH, T, T): (clamp(S_S) - clamp(S_T)) where S_S > threshold, else 0


def attention_loss_forward(student_scores, teacher_scores, mapping, threshold: float = CLAMP_THRESHOLD):
    """L_att = sum_{m=1..M} mean over (B, NH, T, T) of (clamp(S_S^m) - clamp(S_T^{g(m)}))^2.

    The paper's per-layer term (1/h) sum_i MSE(A_i^S, A_i^T) equals one MSE over the whole
    4-D tensor (a mean over heads of equal-sized per-head means). clamp(x) = where(x <= -100,
    0, x) on both sides, so masked keys drop out; padded query rows stay in, divisor B*NH*T*T.

    student_scores: M x (B, NH, T, T); teacher_scores: N x (B, NH, T, T), the models'
    `attention_scores`; mapping: M teacher layers g(m), 1-based (from `layer_mapping`).
    Returns (0-d loss, cache).
    """
    if len(student_scores) != len(mapping):
        raise ValueError(f"attention_loss: {len(student_scores)} student layers but the mapping has {len(mapping)} entries")
    if max(mapping) > len(teacher_scores) or min(mapping) < 1:
        raise ValueError(f"attention_loss: mapping {mapping} points outside the teacher's {len(teacher_scores)} layers")
    loss, kept_diffs = None, []
    for m, g in enumerate(mapping):
        s, t = student_scores[m], teacher_scores[g - 1]  # (B, NH, T, T) each
        if s.shape != t.shape:
            raise ValueError(f"attention_loss: student layer {m + 1} scores {s.shape} and teacher layer {g} scores "
                             f"{t.shape} differ; the attention loss needs the same batch, sequence and number "
                             f"of heads (B, NH, T, T)")
        xp = get_array_module(s)
        zero, thr = s.dtype.type(0), s.dtype.type(threshold)
        keep = s > thr  # (B, NH, T, T) False at clamped student entries
        s_c = xp.where(keep, s, zero)  # (B, NH, T, T) clamp(S_S)
        t_c = xp.where(t > thr, t, zero).astype(s.dtype, copy=False)  # (B, NH, T, T) clamp(S_T), a constant
        diff = s_c - t_c  # (B, NH, T, T)
        term = (diff * diff).mean()
        loss = term if loss is None else loss + term
        # where() passes no gradient to the entries it replaced by 0
        kept_diffs.append(xp.where(keep, diff, zero))  # (B, NH, T, T)
    return loss, AttentionLossCache(kept_diffs)


def attention_loss_backward(dloss, cache: AttentionLossCache):
    """dS_S^m = dloss * 2 / (B*NH*T*T) * (clamp(S_S) - clamp(S_T)) * 1[S_S > -100], per layer m."""
    return [d * d.dtype.type(2.0 * dloss / d.size) for d in cache.kept_diffs]


class HiddenLossCache(NamedTuple):
    indices: list  # the student state index m of each pair
    mse_caches: list  # one mse cache per pair
    num_states: int  # M+1


def hidden_loss_forward(student_projected, teacher_hidden, pairs):
    """sum over (m, n) in pairs of MSE(fit_dense(H_S^m), H_T^n), each a mean over B*T*d_T.

    The embedding loss L_emb is the pair (0, 0); the hidden loss L_hid the pairs (m, g(m)) for
    m = 1..M (the reference's rep_loss is their sum). Padding is included in every mean.

    student_projected: M+1 x (B, T, d_T), the student's hidden states after `FitDense`;
    teacher_hidden: N+1 x (B, T, d_T); pairs: (student index, teacher index), 0 = embeddings.
    Returns (0-d loss, cache).
    """
    loss, caches = None, []
    for m, n in pairs:
        if not (0 <= m < len(student_projected) and 0 <= n < len(teacher_hidden)):
            raise ValueError(f"hidden_loss: pair ({m}, {n}) points outside the student's {len(student_projected)} "
                             f"or the teacher's {len(teacher_hidden)} hidden states")
        s, t = student_projected[m], teacher_hidden[n]  # (B, T, d_T) each
        if s.shape != t.shape:
            raise ValueError(f"hidden_loss: projected student state {m} {s.shape} and teacher state {n} {t.shape} "
                             f"differ (is fit_dense's output size the teacher's hidden size?)")
        term, cache = K.mse_forward(s, t.astype(s.dtype, copy=False))
        loss = term if loss is None else loss + term
        caches.append(cache)
    return loss, HiddenLossCache([m for m, _ in pairs], caches, len(student_projected))


def hidden_loss_backward(dloss, cache: HiddenLossCache):
    """-> M+1 gradients on the projected states: 2 dloss (Y_m - H_T^n) / (B*T*d_T) at each pair's
    student state m, None at states no pair reads."""
    grads = [None] * cache.num_states
    for m, c in zip(cache.indices, cache.mse_caches):
        grads[m] = K.mse_backward(float(dloss), c)  # (B, T, d_T)
    return grads


class LogitLossCache(NamedTuple):
    kind: str  # "mse", "soft_ce" or "ce": the kernel pair that ran
    cache: object
    factor: float = 1.0  # what the kernel's loss was multiplied by (Hinton's t^2)


def logit_loss_forward(student_logits, target, classes: str, temperature: float = 1.0, reduction: str = "batchmean"):
    """The logit losses' one dispatch: MSE for a regression head (one output), else `classes`.

    classes: "soft_ce" (soft cross-entropy against the teacher's logits `target`, temperature t
    on both sides) or "ce" (cross-entropy against the gold labels `target`, (B,) class ids).
    With one output the target is the teacher's (B, 1) output or the (B,) gold scores, and
    temperature and reduction do not apply. Returns (0-d loss, cache).
    """
    if student_logits.shape[1] == 1:
        if target.ndim == 1:  # gold scores (B,) -> (B, 1)
            target = target.astype(student_logits.dtype)[:, None]
        loss, cache = K.mse_forward(student_logits, target)
        return loss, LogitLossCache("mse", cache)
    if classes == "ce":
        loss, cache = K.cross_entropy_forward(student_logits, target)
    else:
        loss, cache = K.soft_cross_entropy_forward(student_logits, target, temperature, reduction)
    return loss, LogitLossCache(classes, cache)


def logit_loss_backward(dloss, cache: LogitLossCache):
    """-> dz_S (B, C): the backward of the kernel pair that ran, times its factor."""
    if cache.kind == "mse":
        return K.mse_backward(float(dloss), cache.cache)
    backward = K.cross_entropy_backward if cache.kind == "ce" else K.soft_cross_entropy_backward
    return backward(float(dloss) * cache.factor, cache.cache)


def _check_logit_pair(name: str, student_logits, teacher_logits):
    """The teacher's logits as the student's dtype, once both are (B, C)."""
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"{name}: student and teacher logits must both be (B, C), got "
                         f"{student_logits.shape} and {teacher_logits.shape}")
    return teacher_logits.astype(student_logits.dtype, copy=False)


def prediction_loss_forward(student_logits, teacher_logits, temperature: float = 1.0, reduction: str = "batchmean"):
    """L_pred: the soft cross-entropy -sum_c softmax(z_T/t)_c log softmax(z_S/t)_c.

    student_logits, teacher_logits (B, C). The temperature divides both sides (the reference
    code; a maintainer called the paper's student-only t a typo); no t^2 factor.
    reduction "batchmean" (default) divides the sum by B, the textbook soft cross-entropy whose
    size does not depend on C; "mean" divides by B*C as the reference code does (1/C of it).
    Regression (C == 1): MSE(z_S, z_T) over the batch, against the teacher's output as in the
    paper (the reference code's MSE against gold labels is a confirmed bug); the temperature
    and reduction do not apply there. Returns (0-d loss, cache).
    """
    teacher_logits = _check_logit_pair("prediction_loss", student_logits, teacher_logits)
    return logit_loss_forward(student_logits, teacher_logits, "soft_ce", temperature, reduction)


def prediction_loss_backward(dloss, cache: LogitLossCache):
    """-> dz_S (B, C): (softmax(z_S/t) - softmax(z_T/t)) / (t * n), or 2 (z_S - z_T) / B for regression."""
    return logit_loss_backward(dloss, cache)


# ------------------------------------------------------------------------ soft and hard targets


def kd_loss_forward(student_logits, teacher_logits, temperature: float = 1.0):
    """Hinton's soft-target term, t^2 (1/B) sum_b -sum_c softmax(z_T/t)_c log softmax(z_S/t)_c.

    student_logits, teacher_logits (B, C). With one output (regression): MSE(z_S, z_T), no
    temperature. Returns (0-d loss, cache).
    """
    teacher_logits = _check_logit_pair("kd_loss", student_logits, teacher_logits)
    loss, cache = logit_loss_forward(student_logits, teacher_logits, "soft_ce", temperature, "batchmean")
    if cache.kind == "mse":
        return loss, cache
    factor = float(temperature) ** 2
    return loss * loss.dtype.type(factor), cache._replace(factor=factor)


def kd_loss_backward(dloss, cache: LogitLossCache):
    """-> dz_S (B, C) = t^2 (softmax(z_S/t) - softmax(z_T/t)) / (t B); 2 (z_S - z_T) / B for regression."""
    return logit_loss_backward(dloss, cache)  # loss = t^2 * soft_cross_entropy: the factor is in the cache


def hard_loss_forward(student_logits, labels):
    """The gold labels' term Hinton mixes in: cross-entropy over classes, or MSE against the score (C == 1).

    student_logits (B, C), labels (B,) class ids or float scores. Returns (0-d loss, cache).
    """
    if labels is None:
        raise ValueError("hard_loss: the hard-label term (alpha < 1) needs the batch's labels")
    return logit_loss_forward(student_logits, like(labels, student_logits), "ce")


def hard_loss_backward(dloss, cache: LogitLossCache):
    """-> dz_S (B, C): (softmax(z_S) - onehot(y)) / B, or 2 (z_S - y) / B for regression."""
    return logit_loss_backward(dloss, cache)


# ------------------------------------------------------------------------ DistilBERT, Patient KD


def hidden_cosine_loss_forward(student_hidden, teacher_hidden, attention_mask):
    """DistilBERT's L_cos = (1/n) sum over real tokens (b, t) of 1 - cos(h_S[b, t], h_T[b, t]).

    student_hidden, teacher_hidden (B, T, d) (the same width d); attention_mask (B, T). As
    DistilBERT's training code: a cosine embedding loss with target 1 over the tokens the mask
    keeps. Returns (0-d loss, cache); the backward is the cosine distance's.
    """
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(f"hidden_cosine_loss: student {student_hidden.shape} and teacher {teacher_hidden.shape} "
                         f"hidden states differ (the cosine loss needs the teacher's width)")
    mask, n = _real_tokens(attention_mask, student_hidden)
    return K.cosine_distance_forward(student_hidden, teacher_hidden, mask / n)  # weights (B, T)


def hidden_cosine_loss_backward(dloss, cache):
    """-> dh_S (B, T, d) = -(1/n) (h_T/|h_T| - cos h_S/|h_S|) / |h_S| at real tokens, 0 at padding."""
    return K.cosine_distance_backward(dloss, cache)


def pkd_loss_forward(student_cls, teacher_cls):
    """Patient KD's L_PT = sum_j (1/B) sum_b || s_bj / |s_bj| - t_bj / |t_bj| ||^2.

    student_cls, teacher_cls: J x (B, d), the [CLS] hidden state of each paired layer j (the
    same width d). For unit vectors ||u - v||^2 = 2 - 2 cos(u, v), so each term is the cosine
    distance with weight 2/B. Returns (0-d loss, cache: one cosine cache per pair).
    """
    if len(student_cls) != len(teacher_cls):
        raise ValueError(f"pkd_loss: {len(student_cls)} student and {len(teacher_cls)} teacher [CLS] states")
    loss, caches = None, []
    for j, (s, t) in enumerate(zip(student_cls, teacher_cls)):
        if s.shape != t.shape:
            raise ValueError(f"pkd_loss: pair {j}: student [CLS] {s.shape} and teacher [CLS] {t.shape} differ "
                             f"(Patient KD needs the teacher's width)")
        term, cache = K.cosine_distance_forward(s, t, s.dtype.type(2.0 / s.shape[0]))
        loss = term if loss is None else loss + term
        caches.append(cache)
    return loss, caches


def pkd_loss_backward(dloss, caches):
    """-> J x (B, d): ds_bj = -(2/B) (t_unit - cos s_unit) / |s_bj| per pair j."""
    return [K.cosine_distance_backward(dloss, c) for c in caches]


# ------------------------------------------------------------------------ MiniLM, MiniLMv2


def attention_kl_loss_forward(student_scores, teacher_scores, attention_mask):
    """MiniLM's L_AT = 1/(A_h n) sum_heads sum_real queries KL(softmax(S_T) || softmax(S_S)), row by row.

    student_scores, teacher_scores (B, A_h, T, T): a layer's attention scores, pre-softmax
    with the mask added (the models' `attention_scores`), the same number of heads;
    attention_mask (B, T). Returns (0-d loss, cache); the backward is the softmax KL's.
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(f"attention_kl_loss: student scores {student_scores.shape} and teacher scores "
                         f"{teacher_scores.shape} differ (MiniLM's attention loss needs the same number of heads)")
    mask, n = _real_tokens(attention_mask, student_scores)
    heads = student_scores.shape[1]
    weights = mask[:, None, :] / (heads * n)  # (B, 1, T): one weight per query row, broadcast over heads
    return K.softmax_kl_forward(student_scores, teacher_scores, weights)


def attention_kl_loss_backward(dloss, cache):
    """-> dS_S (B, A_h, T, T) = w_row (A_S - A_T), w_row = 1/(A_h n) at real queries, 0 at padded ones."""
    return K.softmax_kl_backward(dloss, cache)


def split_relation_heads(x, relation_heads: int):
    """(B, NH, T, HS) -> (B, R, T, NH*HS/R): the heads concatenated back to (B, T, d), then cut into R."""
    B, NH, T, HS = x.shape
    d = NH * HS
    if d % relation_heads:
        raise ValueError(f"relation heads: width {d} is not divisible by {relation_heads} relation heads")
    return x.transpose(0, 2, 1, 3).reshape(B, T, relation_heads, d // relation_heads).transpose(0, 2, 1, 3)


def merge_relation_heads(x, heads: int):
    """The inverse of split_relation_heads: (B, R, T, d/R) -> (B, heads, T, d/heads)."""
    B, R, T, dr = x.shape
    d = R * dr
    return x.transpose(0, 2, 1, 3).reshape(B, T, heads, d // heads).transpose(0, 2, 1, 3)


class RelationCache(NamedTuple):
    x: object  # (B, R, T, d_r) the student's relation heads
    kl: object  # softmax_kl cache
    scale: float  # 1 / sqrt(d_r)
    heads: int  # the student's attention heads, to merge the gradient back


def relation_kl_loss_forward(student_x, teacher_x, attention_mask, relation_heads: int):
    """MiniLMv2's relation loss for one of Q, K, V (MiniLM's L_VR when x = V and R = A_h).

        X_r = softmax(A_r A_r^T / sqrt(d_r) + mask)       per relation head r, each model its own d_r
        L   = 1/(R n) sum_r sum_real tokens KL(X_T,r || X_S,r)

    student_x (B, NH_S, T, HS_S), teacher_x (B, NH_T, T, HS_T): a layer's per-head queries,
    keys or values (the models' `qkv`); widths and head counts may differ, each width must be
    divisible by R. attention_mask (B, T). Returns (0-d loss, cache).
    """
    if student_x.shape[0] != teacher_x.shape[0] or student_x.shape[2] != teacher_x.shape[2]:
        raise ValueError(f"relation_kl_loss: student {student_x.shape} and teacher {teacher_x.shape} must share "
                         f"the batch and sequence axes")
    xs = split_relation_heads(student_x, relation_heads)  # (B, R, T, d_S/R)
    xt = split_relation_heads(teacher_x, relation_heads).astype(xs.dtype, copy=False)  # (B, R, T, d_T/R)
    mask, n = _real_tokens(attention_mask, xs)
    mask_add = ((1 - mask) * mask.dtype.type(MASK_VALUE))[:, None, None, :]  # (B, 1, 1, T) padded keys
    scale_s, scale_t = 1.0 / math.sqrt(xs.shape[-1]), 1.0 / math.sqrt(xt.shape[-1])
    rel_s = (xs @ xs.swapaxes(-1, -2)) * xs.dtype.type(scale_s) + mask_add  # (B, R, T, T)
    rel_t = (xt @ xt.swapaxes(-1, -2)) * xt.dtype.type(scale_t) + mask_add  # (B, R, T, T)
    weights = mask[:, None, :] / (relation_heads * n)  # (B, 1, T) real query rows
    loss, kl_cache = K.softmax_kl_forward(rel_s, rel_t, weights)
    return loss, RelationCache(xs, kl_cache, scale_s, student_x.shape[1])


def relation_kl_loss_backward(dloss, cache: RelationCache):
    """-> dx_S (B, NH_S, T, HS_S): the relation scores' gradient G gives (G + G^T) A_r / sqrt(d_r) per relation head."""
    xs, kl_cache, scale, heads = cache
    drel = K.softmax_kl_backward(dloss, kl_cache)  # (B, R, T, T)
    # rel_s = xs xs^T * scale + mask_add: xs sits on both sides of the product
    dxs = ((drel + drel.swapaxes(-1, -2)) @ xs) * xs.dtype.type(scale)  # (B, R, T, d_r)
    # xs = split_relation_heads(student_x, R)
    return merge_relation_heads(dxs, heads)
