"""TinyBERT distillation: layer mapping, the `fit_dense` projection, and the four losses.

Jiao et al., *TinyBERT* (Findings of EMNLP 2020), distil a teacher with N layers into a
student with M layers through four losses. With g the layer mapping, S the student, T the
teacher (a constant: no gradient ever reaches it):

    embedding   L_emb  = MSE(E_S W + b, E_T)                       (student hidden index 0)
    hidden      L_hid  = sum_{m=1..M} MSE(H_S^m W + b, H_T^{g(m)})
    attention   L_att  = sum_{m=1..M} (1/h) sum_heads MSE(A_S^m, A_T^{g(m)})
    prediction  L_pred = -sum_c softmax(z_T / t)_c log softmax(z_S / t)_c

General distillation and the first step of task distillation minimise L_att + L_hid + L_emb;
the second step of task distillation minimises L_pred alone (all weights 1 in the reference).

What follows the authors' released code rather than the paper (see the project's
shared/docs/tinybert-reference.md §1.2-1.3), re-derived here:
- A is the attention *score* (pre-softmax, scaled, additive mask included), and both score
  tensors go through the clamp where(x <= -100, 0, x) before the MSE. Padded keys (about
  -10000) so become exact zeros on both sides and add nothing; padded *query* rows are not
  masked and count, as does the full divisor B*NH*T*T.
- W, b is ONE shared Linear d_S -> d_T ("fit_dense") applied to every student hidden state,
  the embedding output included; the paper's separate W_e / W_h, or v2 checkpoints'
  per-layer `fit_denses.{i}`, are available with `shared=False`. The projection runs even
  when d_S == d_T (a maintainer said so in the reference's issue #44).
- MSE is the mean over every element, padded positions included.

Choices of ours, where the code and the paper differ:
- Prediction loss reduction "batchmean" (sum over classes, mean over the batch): it is the
  textbook soft cross-entropy, its value is a per-example cross-entropy one can read, and its
  scale does not change with the number of classes. The code's mean over B*C is exactly 1/C of
  it and is available as `reduction="mean"`; under Adam a constant factor mostly cancels (only
  epsilon and gradient clipping see it), so the choice hardly moves training. Temperature on
  both sides (the code; the maintainers called the paper's student-only t a typo), no t^2.
- Regression heads (one output) distil with MSE against the *teacher's* logits, as the
  paper and the maintainers (reference issue #128) say; the code's MSE against gold labels
  is a bug.

How a stage picks its losses: the loss table at the end of this file (`LOSSES`, and
`STAGE_LOSSES` for the stages); a new loss is one entry there plus its kernel pair.

Not here: the distillation *runs* (stages, students, data, the trainer: `tinybert.py`); the
generic losses a head uses (`functional.py`'s kernels, `losses.py`'s modules).

Shapes: B batch, T sequence, NH heads, d_S / d_T student / teacher hidden size, C classes,
M / N student / teacher layers.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .backend import get_array_module
from .config import BertConfig
from . import kernels as K
from .nn import Linear, Module

# Scores at or below this are treated as masked and zeroed on both sides (the reference's
# rule). Masked keys carry -10000 (or finfo.min in newer transformers), real scores are O(10).
CLAMP_THRESHOLD = -100.0

MAPPING_STRATEGIES = ("uniform", "top", "bottom")

# ----------------------------------------------------------------------- layer mapping


def layer_mapping(student_layers: int, teacher_layers: int, strategy: str = "uniform") -> list[int]:
    """Teacher layer g(m) (1-based) that student layer m = 1..M learns from.

    uniform: g(m) = m * N / M, requiring N mod M == 0 (TinyBERT-4 from BERT-base: 3, 6, 9, 12).
    top:     the last M teacher layers, g(m) = N - M + m.
    bottom:  the first M teacher layers, g(m) = m.

    Hidden states pair student index m with teacher index g(m) and the embedding outputs with
    each other (index 0, g(0) = 0); attention pairs student layer m (list index m - 1) with
    teacher layer g(m) (list index g(m) - 1).
    """
    M, N = student_layers, teacher_layers
    for name, v in (("student_layers", M), ("teacher_layers", N)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"layer_mapping: {name} must be a positive integer, got {v!r}")
    if strategy not in MAPPING_STRATEGIES:
        raise ValueError(f"layer_mapping: unknown strategy {strategy!r}; choose from {MAPPING_STRATEGIES}")
    if M > N:
        raise ValueError(f"layer_mapping: the student ({M} layers) cannot have more layers than the teacher ({N})")
    if strategy == "uniform":
        if N % M != 0:
            raise ValueError(f"layer_mapping: uniform mapping needs teacher_layers ({N}) to be a multiple of "
                             f"student_layers ({M}); use strategy 'top' or 'bottom', or another student depth")
        k = N // M
        return [m * k for m in range(1, M + 1)]
    if strategy == "top":
        return [N - M + m for m in range(1, M + 1)]
    return list(range(1, M + 1))  # bottom


# ------------------------------------------------------------------------------ fit_dense


class FitDense(Module):
    """The learnable projection d_S -> d_T applied to every student hidden state.

    shared=True (the released code): one Linear named `fit_dense` for all M + 1 states, so
    the parameters are `fit_dense.weight` (d_T, d_S) and `fit_dense.bias` (d_T,), the keys of
    a TinyBERT checkpoint. shared=False: one Linear per state, `fit_denses.{i}` for
    i = 0..M (the v2 general checkpoints; index 0 is the paper's W_e).
    Weights start N(0, std^2), biases 0. `identity_init=True` (needs d_S == d_T) starts from
    W = I, b = 0 instead; the projection is still applied and still learns.
    """

    def __init__(self, student_hidden: int, teacher_hidden: int, num_states: int, shared: bool = True,
                 std: float = 0.02, seed: int = 0, identity_init: bool = False):
        super().__init__()
        if num_states <= 0:
            raise ValueError(f"FitDense: num_states must be positive, got {num_states}")
        rng = np.random.default_rng(seed)
        self.student_hidden, self.teacher_hidden = student_hidden, teacher_hidden
        self.num_states, self.shared = num_states, shared
        if shared:
            self.linears = [self.add("fit_dense", Linear(student_hidden, teacher_hidden, rng, std))]
        else:
            self.linears = [self.add(f"fit_denses.{i}", Linear(student_hidden, teacher_hidden, rng, std))
                            for i in range(num_states)]
        if identity_init:
            self.set_identity()

    def set_identity(self) -> "FitDense":
        """W = I, b = 0 in every projection (needs d_S == d_T)."""
        if self.student_hidden != self.teacher_hidden:
            raise ValueError(f"FitDense: an identity projection needs equal hidden sizes, "
                             f"got student {self.student_hidden} and teacher {self.teacher_hidden}")
        for lin in self.linears:
            W = lin.params["weight"]
            xp = get_array_module(W)
            W[...] = xp.eye(W.shape[0], dtype=W.dtype)
            lin.params["bias"][...] = 0
        return self

    def forward(self, hidden_states):
        """M+1 x (B, T, d_S) -> M+1 x (B, T, d_T)."""
        if len(hidden_states) != self.num_states:
            raise ValueError(f"FitDense: expected {self.num_states} hidden states, got {len(hidden_states)}")
        if not self.shared:
            return [lin.forward(h) for lin, h in zip(self.linears, hidden_states)]
        xp = get_array_module(hidden_states[0])
        x = xp.stack(hidden_states)  # (M+1, B, T, d_S) one matmul for every state
        y = self.linears[0].forward(x)  # (M+1, B, T, d_T)
        return list(y)

    def backward(self, dprojected):
        """M+1 x (B, T, d_T) (None = no gradient) -> M+1 x (B, T, d_S); accumulates W, b gradients."""
        if len(dprojected) != self.num_states:
            raise ValueError(f"FitDense: expected {self.num_states} gradients, got {len(dprojected)}")
        if not self.shared:
            out = []
            for lin, d in zip(self.linears, dprojected):
                if d is None:
                    lin._pop_cache()  # this state got no gradient: nothing to accumulate
                    out.append(None)
                else:
                    out.append(lin.backward(d))  # (B, T, d_S)
            return out
        lin = self.linears[0]
        if lin._cache is None:
            raise RuntimeError("FitDense.backward called before forward (or called twice)")
        x = lin._cache.x  # (M+1, B, T, d_S)
        xp = get_array_module(x)
        shape = x.shape[1:-1] + (self.teacher_hidden,)
        # y = self.linears[0].forward(stack(hidden_states))
        dy = xp.stack([xp.zeros(shape, dtype=x.dtype) if d is None else d for d in dprojected])  # (M+1, B, T, d_T)
        dx = lin.backward(dy)  # (M+1, B, T, d_S)
        # x = stack(hidden_states)
        return list(dx)


# ------------------------------------------------------------------------------ losses


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


class PredictionLossCache(NamedTuple):
    kind: str  # "soft_ce" or "mse"
    cache: object


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
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"prediction_loss: student and teacher logits must both be (B, C), got "
                         f"{student_logits.shape} and {teacher_logits.shape}")
    teacher_logits = teacher_logits.astype(student_logits.dtype, copy=False)
    if student_logits.shape[1] == 1:
        loss, cache = K.mse_forward(student_logits, teacher_logits)
        return loss, PredictionLossCache("mse", cache)
    loss, cache = K.soft_cross_entropy_forward(student_logits, teacher_logits, temperature, reduction)
    return loss, PredictionLossCache("soft_ce", cache)


def prediction_loss_backward(dloss, cache: PredictionLossCache):
    """-> dz_S (B, C): (softmax(z_S/t) - softmax(z_T/t)) / (t * n), or 2 (z_S - z_T) / B for regression."""
    if cache.kind == "mse":
        return K.mse_backward(float(dloss), cache.cache)
    return K.soft_cross_entropy_backward(float(dloss), cache.cache)


# ------------------------------------------------------------------------- the loss table
# A distillation loss is one entry: the student output it reads (and sends gradients to),
# its forward (-> 0-d loss, cache) and its backward (dloss, cache -> gradient on that output).
# A stage is a tuple of loss names. A new loss is one entry here, its kernel pair above, and
# a gradient check in tests/test_distill.py; the Distiller below needs no change.
#
# The outputs: "hidden" = the student's M+1 hidden states after fit_dense (a list; gradients
# go back through fit_dense), "scores" = its M attention-score tensors (a list), "logits" =
# its head's (B, C) logits.


class DistillLoss(NamedTuple):
    output: str  # "hidden" | "scores" | "logits"
    forward: Callable  # (distiller, student output, teacher output) -> (0-d loss, cache)
    backward: Callable  # (dloss, cache) -> gradient on the student output (a list for hidden/scores)


LOSSES = {
    "att": DistillLoss("scores", lambda d, s, t: attention_loss_forward(s, t.attention_scores, d.mapping),
                       attention_loss_backward),
    "hid": DistillLoss("hidden", lambda d, s, t: hidden_loss_forward(s, t.hidden_states, list(enumerate(d.mapping, 1))),
                       hidden_loss_backward),
    "emb": DistillLoss("hidden", lambda d, s, t: hidden_loss_forward(s, t.hidden_states, [(0, 0)]),
                       hidden_loss_backward),
    "pred": DistillLoss("logits", lambda d, s, t: prediction_loss_forward(s, t.logits, d.temperature, d.pred_reduction),
                        prediction_loss_backward),
}

# TinyBERT's stages: general distillation and task step 1 match the intermediate layers,
# task step 2 the predictions.
STAGE_LOSSES = {
    "general": ("att", "hid", "emb"),
    "intermediate": ("att", "hid", "emb"),
    "prediction": ("pred",),
    "all": ("att", "hid", "emb", "pred"),
}
STAGES = tuple(STAGE_LOSSES)


# ------------------------------------------------------------------------------ Distiller


class Distiller:
    """Ties mapping, fit_dense and the loss table together for one student/teacher pair.

        distiller = Distiller(student.config, teacher.config)
        t_out = teacher(ids, types, mask)                        # a constant
        s_out = student(ids, types, mask)
        losses = distiller(s_out, t_out, stage="general")        # {"att", "hid", "emb", "rep", "pred", "total"}
        distiller.backward_into(student)                         # or: student.backward(**distiller.backward())

    A loss runs when its stage lists it (STAGE_LOSSES) and its weight is nonzero; the others
    are reported as 0. total = sum of w_k L_k over the losses that ran (weights default to 1,
    as in the reference; "rep" = L_hid + L_emb is what the reference logs as rep_loss).
    The projection lives in `self.fit_dense` (a Module: optimise and save it with the student).
    """

    def __init__(self, student_config: BertConfig, teacher_config: BertConfig, *, strategy: str = "uniform",
                 shared_fit_dense: bool = True, weights: dict | None = None, temperature: float = 1.0,
                 pred_reduction: str = "batchmean", fit_dense_std: float = 0.02, fit_dense_identity: bool = False,
                 seed: int = 0):
        self.weights = {name: 1.0 for name in LOSSES}
        for name, w in (weights or {}).items():
            if name not in self.weights:
                raise ValueError(f"Distiller: unknown loss weight {name!r}; the losses are {tuple(LOSSES)}")
            self.weights[name] = float(w)
        M, N = student_config.num_hidden_layers, teacher_config.num_hidden_layers
        if self.weights["att"] != 0 and student_config.num_attention_heads != teacher_config.num_attention_heads:
            raise ValueError(f"Distiller: the attention loss compares scores head by head, so student and teacher need "
                             f"the same number of attention heads; got student {student_config.num_attention_heads}, "
                             f"teacher {teacher_config.num_attention_heads} (or set weights={{'att': 0}})")
        if temperature <= 0:
            raise ValueError(f"Distiller: temperature must be positive, got {temperature}")
        if pred_reduction not in ("batchmean", "mean"):
            raise ValueError(f"Distiller: pred_reduction must be 'batchmean' or 'mean', got {pred_reduction!r}")
        self.student_config, self.teacher_config = student_config, teacher_config
        self.mapping = layer_mapping(M, N, strategy)  # M teacher layers, 1-based
        self.temperature, self.pred_reduction = float(temperature), pred_reduction
        self.fit_dense = FitDense(student_config.hidden_size, teacher_config.hidden_size, M + 1,
                                  shared=shared_fit_dense, std=fit_dense_std, seed=seed,
                                  identity_init=fit_dense_identity)
        self._caches = None

    def astype(self, dtype) -> "Distiller":
        self.fit_dense.astype(dtype)
        return self

    def to(self, device: str) -> "Distiller":
        self.fit_dense.to(device)
        return self

    def __call__(self, student_out, teacher_out, stage: str = "intermediate") -> dict:
        return self.forward(student_out, teacher_out, stage)

    def active(self, stage: str) -> list[str]:
        """The losses `stage` runs: listed in STAGE_LOSSES and weighted nonzero, in the table's order."""
        if stage not in STAGE_LOSSES:
            raise ValueError(f"Distiller: unknown stage {stage!r}; choose from {STAGES}")
        return [k for k in LOSSES if k in STAGE_LOSSES[stage] and self.weights[k] != 0]

    def _student_output(self, output: str, student_out, teacher_out):
        """The student output a loss reads, after checking both models provide it."""
        M, N = len(self.mapping), self.teacher_config.num_hidden_layers
        if output == "hidden":
            if len(student_out.hidden_states) != M + 1 or len(teacher_out.hidden_states) != N + 1:
                raise ValueError(f"Distiller: expected {M + 1} student and {N + 1} teacher hidden states, got "
                                 f"{len(student_out.hidden_states)} and {len(teacher_out.hidden_states)}")
            return student_out.hidden_states
        if output == "scores":
            if len(student_out.attention_scores) != M or len(teacher_out.attention_scores) != N:
                raise ValueError(f"Distiller: expected {M} student and {N} teacher attention score tensors, got "
                                 f"{len(student_out.attention_scores)} and {len(teacher_out.attention_scores)}")
            return student_out.attention_scores
        if student_out.logits is None or teacher_out.logits is None:
            raise ValueError("Distiller: the prediction loss needs logits from both models "
                             "(a BertForSequenceClassification student and teacher)")
        return student_out.logits

    def forward(self, student_out, teacher_out, stage: str = "intermediate") -> dict:
        """Losses of one batch (0-d arrays); keeps what `backward` needs. Teacher outputs are constants."""
        active = self.active(stage)
        h0 = student_out.hidden_states[0] if student_out.hidden_states else student_out.logits
        xp, dtype = get_array_module(h0), h0.dtype
        zero = xp.zeros((), dtype=dtype)
        values, caches, inputs = {k: zero for k in LOSSES}, {}, {}
        for name in active:
            loss = LOSSES[name]
            if loss.output not in inputs:
                x = self._student_output(loss.output, student_out, teacher_out)
                # every hidden-state loss reads the projection: one fit_dense pass for all of them
                inputs[loss.output] = self.fit_dense.forward(x) if loss.output == "hidden" else x  # M+1 x (B, T, d_T)
            values[name], caches[name] = loss.forward(self, inputs[loss.output], teacher_out)
        total = zero
        for name in active:
            total = total + dtype.type(self.weights[name]) * values[name]
        self._caches = caches
        out = {k: xp.asarray(v, dtype=dtype) for k, v in values.items()}
        out["rep"] = xp.asarray(values["hid"] + values["emb"], dtype=dtype)
        out["total"] = xp.asarray(total, dtype=dtype)
        return out

    def backward(self, scale: float = 1.0) -> dict:
        """Gradients of `scale * total` for the student: {dhidden_states: M+1 entries, dattention_scores: M
        entries (None where no loss reached), and dlogits (B, C) when the prediction loss ran}.
        Accumulates fit_dense's parameter gradients into `self.fit_dense`."""
        if self._caches is None:
            raise RuntimeError("Distiller.backward called before forward (or called twice)")
        caches, self._caches = self._caches, None
        M = len(self.mapping)
        d = {"hidden": [None] * (M + 1), "scores": [None] * M, "logits": None}
        for name, cache in caches.items():
            loss = LOSSES[name]
            g = loss.backward(scale * self.weights[name], cache)
            if loss.output == "logits":
                d["logits"] = g if d["logits"] is None else d["logits"] + g  # (B, C)
            else:  # add per state/layer: several losses may read the same one
                d[loss.output] = [a if b is None else b if a is None else a + b for a, b in zip(d[loss.output], g)]
        grads = dict(dhidden_states=[None] * (M + 1), dattention_scores=d["scores"])
        if any(g is not None for g in d["hidden"]):
            # projected = self.fit_dense.forward(hidden_states)
            grads["dhidden_states"] = self.fit_dense.backward(d["hidden"])  # M+1 x (B, T, d_S)
        if d["logits"] is not None:
            grads["dlogits"] = d["logits"]
        return grads

    def backward_into(self, student, scale: float = 1.0) -> None:
        """`backward()` and pass the gradients to the student (a BertModel or a head model).

        A head model without a prediction loss is driven through its encoder (`student.bert`),
        so no hard-label loss and no head gradient is involved, as in TinyBERT's distillation.
        """
        grads = self.backward(scale)
        if "dlogits" in grads:
            student.backward(dloss=0.0, **grads)
        elif hasattr(student, "bert"):
            student.bert.backward(dhidden_states=grads["dhidden_states"], dattention_scores=grads["dattention_scores"])
        else:
            student.backward(dhidden_states=grads["dhidden_states"], dattention_scores=grads["dattention_scores"])
