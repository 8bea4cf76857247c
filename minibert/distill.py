"""Distillation's losses: the loss table (one named term per loss) and the Distiller that runs a method's.

A *method* names, for each stage, the losses it minimises; a *loss* is one row of the table
(`LOSSES`): which student output it reads and sends gradients to, which teacher output it
compares with, and its kernel pair (`distill_losses.py`, where each method's equations are).

    method      general (stage 1)    intermediate (2a)    prediction (2b)     (all six: methods.py)
    tinybert    att + hid + emb      att + hid + emb      pred
    minilmv2    qq + kk + vv         qq + kk + vv         pred

Stage 1 reads a pre-trained teacher on unlabelled text; 2a and 2b a fine-tuned teacher on
the task. Methods whose papers are one objective (kd, distilbert, pkd) have no stage 2a;
those that distil intermediate layers (TinyBERT, MiniLM, MiniLMv2) hand over to TinyBERT's
soft cross-entropy for 2b. kd and pkd distil a fine-tuned teacher's logits, so they have no
stage 1; DistilBERT's stage 1 is its cosine loss alone (its masked-LM terms need a teacher
with an MLM head, which MiniLM-L6 is not shipped with).

Which layers: TinyBERT pairs student layer m with teacher layer g(m) (`layer_mapping`);
Patient KD pairs student layers 1..M-1 the same way, its "skip" strategy being the uniform
mapping and "last" the top one; DistilBERT and MiniLM pair the last layers; MiniLMv2 pairs
the student's last layer with a chosen teacher layer (`relation_layer`, default the last).

TinyBERT's projection of every student hidden state to the teacher's width (`FitDense`) and
the layer mapping live in `layer_matching.py`.

From a step to its equation: `Distiller.forward` calls `self.terms[name]`, the loss's named
function in the table below (`attention_mse`, `soft_targets`, ...) with the Distiller's
options bound when it was built; its docstring is the equation, and the kernel pair it calls
(`distill_losses.py`) the derivation and the backward.

A new loss is a named term function and one `DistillLoss` entry in `LOSSES`, its kernel pair
in `distill_losses.py` and a gradient check; a new method is one `Method` entry in
`methods.METHODS`. The Distiller needs no change.

Not here: the kernels (`distill_losses.py`, and `functional.py` for the general ones); the
methods' registry (`methods.py`); the distillation *runs* (stages, students, data, the
trainer: `distillation.py`); the teacher outputs kept across epochs (`teacher_cache.py`).

Shapes: B batch, T sequence, NH heads, HS head size, d_S / d_T student / teacher hidden
size, C classes, M / N student / teacher layers.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import numpy as np

from .backend import get_array_module
from .config import BertConfig
from .errors import DataError
# the kernels the table joins; CLAMP_THRESHOLD and TinyBERT's pairs are also imported from here (notebook 4)
from .distill_losses import (CLAMP_THRESHOLD, attention_kl_loss_backward, attention_kl_loss_forward,  # noqa: F401
                             attention_loss_backward, attention_loss_forward, hard_loss_backward, hard_loss_forward,
                             hidden_cosine_loss_backward, hidden_cosine_loss_forward, hidden_loss_backward,
                             hidden_loss_forward, kd_loss_backward, kd_loss_forward, pkd_loss_backward,
                             pkd_loss_forward, prediction_loss_backward, prediction_loss_forward,
                             relation_kl_loss_backward, relation_kl_loss_forward)
from .methods import MAPPING_STRATEGIES, METHODS, STAGE_LOSSES, STAGES  # noqa: F401 (STAGE_LOSSES: notebook 4)
from .layer_matching import FitDense, layer_mapping  # noqa: F401 (distill.FitDense, as notebook 4 reads it)


# ------------------------------------------------------------------------- the loss table
# A distillation loss is one entry: the student output it reads (and sends gradients to),
# the teacher output ("target") it compares with, its forward (-> 0-d loss, cache), its
# backward (dloss, cache -> gradient on that student output), and what it asks of the pair.
#
# Student outputs: "hidden" = the M+1 hidden states after fit_dense (gradients go back
# through it), "raw_hidden" = the M+1 hidden states as they are, "scores" = the M attention
# score tensors, "qkv" = the M layers' (q, k, v), "logits" = the head's (B, C) logits. A list
# output takes a list of gradients back, None where a loss sends none.
# Teacher targets (`Distiller.teacher_targets`): "hidden" (its N+1 hidden states), "scores"
# (N), "qkv" (N), "logits" (B, C), "cls" (the [CLS] rows of the teacher layers Patient KD
# reads, J x (B, d_T)); None for a loss that reads the batch's labels instead.
# Requirements: "heads" (the same number of attention heads), "width" (the same hidden size),
# "mapping" (TinyBERT's layer mapping must exist), "relation" (both widths divisible by R).


class Batch(NamedTuple):
    """What a loss may read from the batch besides the models' outputs."""

    attention_mask: object  # (B, T): 1 at real tokens, 0 at padding
    labels: object  # (B,) gold labels, or None


class Options(NamedTuple):
    """What a loss reads besides tensors, fixed when the Distiller is built (and bound to each term then)."""

    mapping: list | None  # g(m) for m = 1..M, 1-based teacher layers (layer_mapping)
    temperature: float  # t of pred and kd
    pred_reduction: str  # pred's "batchmean" or the reference's "mean"
    relation_heads: int  # MiniLMv2's R
    relation_layer: int  # MiniLMv2's teacher layer, 1-based


class DistillLoss(NamedTuple):
    output: str  # "hidden" | "raw_hidden" | "scores" | "qkv" | "logits"
    target: str | None  # "hidden" | "scores" | "qkv" | "logits" | "cls" | None
    forward: Callable  # (student output, teacher target, Batch, Options) -> (0-d loss, cache)
    backward: Callable  # (dloss, cache) -> gradient on the student output (a list for list outputs)
    requires: tuple = ()  # of "heads", "width", "mapping", "relation"


class OneEntry(NamedTuple):
    """The cache of a loss that read one entry of a student list (a layer's scores, states or q/k/v)."""

    size: int  # the list's length
    index: int  # the entry the loss read
    cache: object  # the kernel's cache
    slot: int | None = None  # for qkv: which of q (0), k (1), v (2)


def _one_entry_backward(backward):
    """A kernel's backward for one tensor -> the list gradient the Distiller adds: it, at its index."""

    def list_backward(dloss, c: OneEntry):
        g = backward(dloss, c.cache)
        if c.slot is not None:  # a layer's (dq, dk, dv) with only this slot set
            g = tuple(g if i == c.slot else None for i in range(3))
        grads = [None] * c.size
        grads[c.index] = g
        return grads

    return list_backward


# Each term: one method's loss as the equation it computes; its kernel (distill_losses.py) has
# the derivation and the backward. s: the student output, t: the teacher target, b: the Batch.

def attention_mse(s, t, b, o: Options):
    """TinyBERT: L_att = sum_m MSE(clamp(A_S^m), clamp(A_T^{g(m)})), A the attention scores."""
    return attention_loss_forward(s, t, o.mapping)


def hidden_mse(s, t, b, o: Options):
    """TinyBERT: L_hid = sum_m MSE(H_S^m W + b, H_T^{g(m)}), the projected hidden states."""
    return hidden_loss_forward(s, t, list(enumerate(o.mapping, 1)))


def embedding_mse(s, t, b, o: Options):
    """TinyBERT: L_emb = MSE(E_S W + b, E_T), the projected embedding outputs."""
    return hidden_loss_forward(s, t, [(0, 0)])


def soft_cross_entropy(s, t, b, o: Options):
    """TinyBERT: L_pred = -sum_c softmax(z_T / t)_c log softmax(z_S / t)_c (MSE for a regression head)."""
    return prediction_loss_forward(s, t, o.temperature, o.pred_reduction)


def soft_targets(s, t, b, o: Options):
    """Hinton: t^2 CE(softmax(z_T / t), softmax(z_S / t)), weighted alpha (MSE for a regression head)."""
    return kd_loss_forward(s, t, o.temperature)


def hard_targets(s, t, b, o: Options):
    """Hinton: CE(z_S, y) against the gold labels, weighted 1 - alpha (MSE against the score for regression)."""
    return hard_loss_forward(s, b.labels)


def last_hidden_cosine(s, t, b, o: Options):
    """DistilBERT: L_cos = (1/n) sum_tokens (1 - cos(h_S, h_T)) on the last hidden states (student M, teacher N)."""
    loss, cache = hidden_cosine_loss_forward(s[-1], t[-1], b.attention_mask)
    return loss, OneEntry(len(s), len(s) - 1, cache)


def last_attention_kl(s, t, b, o: Options):
    """MiniLM: L_AT = 1/(A_h n) sum_heads sum_tokens KL(A_T || A_S) on the last layers' attention."""
    loss, cache = attention_kl_loss_forward(s[-1], t[-1], b.attention_mask)
    return loss, OneEntry(len(s), len(s) - 1, cache)


def last_value_relation(s, t, b, o: Options):
    """MiniLM: L_VR = 1/(A_h n) sum_heads sum_tokens KL(VR_T || VR_S), VR = softmax(V V^T / sqrt(d_k)), last layers."""
    v_s, v_t = s[-1][2], t[-1][2]  # (B, NH, T, HS)
    loss, cache = relation_kl_loss_forward(v_s, v_t, b.attention_mask, v_s.shape[1])
    return loss, OneEntry(len(s), len(s) - 1, cache, slot=2)


def _relation(s, t, b, o: Options, slot: int):
    """MiniLMv2: L_XX = 1/(R n) sum_r sum_tokens KL(X_T,r || X_S,r), X_r = softmax(A_r A_r^T / sqrt(d_r)), A the
    queries (slot 0), keys (1) or values (2) cut into R relation heads; the student's last layer vs relation_layer."""
    loss, cache = relation_kl_loss_forward(s[-1][slot], t[o.relation_layer - 1][slot], b.attention_mask,
                                           o.relation_heads)
    return loss, OneEntry(len(s), len(s) - 1, cache, slot)


def query_relation(s, t, b, o: Options):
    """MiniLMv2: L_QQ, the queries' self-relation (see _relation)."""
    return _relation(s, t, b, o, 0)


def key_relation(s, t, b, o: Options):
    """MiniLMv2: L_KK, the keys' self-relation (see _relation)."""
    return _relation(s, t, b, o, 1)


def value_relation(s, t, b, o: Options):
    """MiniLMv2: L_VV, the values' self-relation (see _relation)."""
    return _relation(s, t, b, o, 2)


class CLSCache(NamedTuple):
    size: int  # M+1 hidden states
    shape: tuple  # (B, T, d_S)
    layers: list  # the student hidden-state indices read, 1..M-1
    cache: object  # pkd_loss's


def patient_cls(s, t, b, o: Options):
    """Patient KD: L_PT = sum_j (1/B) sum_b || h_S^j / |h_S^j| - h_T^{I(j)} / |h_T^{I(j)}| ||^2 on [CLS], layers 1..M-1."""
    layers = list(range(1, len(s) - 1))
    loss, cache = pkd_loss_forward([s[m][:, 0] for m in layers], t)  # J x (B, d_S)
    return loss, CLSCache(len(s), s[0].shape, layers, cache)


def _patient_cls_backward(dloss, c: CLSCache):
    grads = [None] * c.size
    for m, g in zip(c.layers, pkd_loss_backward(dloss, c.cache)):
        # cls = s[m][:, 0]: only the [CLS] row of that state gets a gradient
        full = get_array_module(g).zeros(c.shape, dtype=g.dtype)  # (B, T, d_S)
        full[:, 0] = g
        grads[m] = full
    return grads


LOSSES = {
    # TinyBERT
    "att": DistillLoss("scores", "scores", attention_mse, attention_loss_backward, ("heads", "mapping")),
    "hid": DistillLoss("hidden", "hidden", hidden_mse, hidden_loss_backward, ("mapping",)),
    "emb": DistillLoss("hidden", "hidden", embedding_mse, hidden_loss_backward),
    "pred": DistillLoss("logits", "logits", soft_cross_entropy, prediction_loss_backward),
    # Hinton's soft and hard targets (kd, and inside distilbert and pkd)
    "kd": DistillLoss("logits", "logits", soft_targets, kd_loss_backward),
    "hard": DistillLoss("logits", None, hard_targets, hard_loss_backward),
    # DistilBERT, Patient KD
    "cos": DistillLoss("raw_hidden", "hidden", last_hidden_cosine, _one_entry_backward(hidden_cosine_loss_backward),
                       ("width",)),
    "pt": DistillLoss("raw_hidden", "cls", patient_cls, _patient_cls_backward, ("width", "mapping")),
    # MiniLM, MiniLMv2
    "att_kl": DistillLoss("scores", "scores", last_attention_kl, _one_entry_backward(attention_kl_loss_backward),
                          ("heads",)),
    "vr": DistillLoss("qkv", "qkv", last_value_relation, _one_entry_backward(relation_kl_loss_backward), ("heads",)),
    "qq": DistillLoss("qkv", "qkv", query_relation, _one_entry_backward(relation_kl_loss_backward), ("relation",)),
    "kk": DistillLoss("qkv", "qkv", key_relation, _one_entry_backward(relation_kl_loss_backward), ("relation",)),
    "vv": DistillLoss("qkv", "qkv", value_relation, _one_entry_backward(relation_kl_loss_backward), ("relation",)),
}

# A Distiller's weights start at 1 (the reference's TinyBERT, and each paper's sum), except
# these: the gold labels' term runs only when asked for (weights={"hard": 1 - alpha}), since
# augmented rows carry their source sentence's label, which a word swap may have made wrong.
DEFAULT_WEIGHTS = {"hard": 0.0}

# Teacher targets small enough to keep per example across epochs (teacher_cache.py): O(C) and
# O(J d_T) numbers an example, where hidden states, scores and q/k/v are O(T d_T) or O(NH T^2).
SMALL_TARGETS = ("logits", "cls")


# ------------------------------------------------------------------------------ Distiller


class Distiller:
    """Ties a method's losses, the layer mapping and fit_dense together for one student/teacher pair.

        distiller = Distiller(student.config, teacher.config, method="minilmv2")
        t_out = teacher(ids, types, mask)                        # a constant
        s_out = student(ids, types, mask)
        losses = distiller(s_out, t_out, stage="general", attention_mask=mask)   # {"qq", ..., "total"}
        distiller.backward_into(student)                         # or: student.backward(**distiller.backward())

    A loss runs when the method lists it for the stage (METHODS) and its weight is nonzero; the
    others are reported as 0. total = sum of w_k L_k over the losses that ran, plus the sums the
    method logs (`Method.log_sums`: TinyBERT's rep = L_hid + L_emb). `teacher_out` may also be the dict
    `teacher_targets(t_out, stage)` returns, e.g. kept by a TeacherCache.

    Options: temperature t (pred, kd), pred_reduction (TinyBERT's pred: "batchmean" or the
    reference's "mean"), strategy (the layer mapping: TinyBERT's, and Patient KD's "uniform" =
    skip, "top" = last), relation_heads R (MiniLMv2; default the teacher's attention heads),
    relation_layer (MiniLMv2's teacher layer, 1-based; default the last), weights (per loss;
    Hinton's alpha is weights={"kd": alpha, "hard": 1 - alpha}). TinyBERT's projection lives in
    `self.fit_dense` (a Module: optimise and save it with the student), None for methods that
    do not project.
    """

    def __init__(self, student_config: BertConfig, teacher_config: BertConfig, *, method: str = "tinybert",
                 strategy: str = "uniform", shared_fit_dense: bool = True, weights: dict | None = None,
                 temperature: float = 1.0, pred_reduction: str = "batchmean", fit_dense_std: float = 0.02,
                 fit_dense_identity: bool = False, relation_heads: int | None = None,
                 relation_layer: int | None = None, seed: int = 0):
        if method not in METHODS:
            raise DataError(f"Distiller: unknown method {method!r}; choose from {tuple(METHODS)}")
        self.method = method
        self.weights = {name: DEFAULT_WEIGHTS.get(name, 1.0) for name in LOSSES}
        for name, w in (weights or {}).items():
            if name not in self.weights:
                raise DataError(f"Distiller: unknown loss weight {name!r}; the losses are {tuple(LOSSES)}")
            self.weights[name] = float(w)
        if temperature <= 0:
            raise DataError(f"Distiller: temperature must be positive, got {temperature}")
        if pred_reduction not in ("batchmean", "mean"):
            raise DataError(f"Distiller: pred_reduction must be 'batchmean' or 'mean', got {pred_reduction!r}")
        self.student_config, self.teacher_config = student_config, teacher_config
        self.temperature, self.pred_reduction = float(temperature), pred_reduction
        M, N = student_config.num_hidden_layers, teacher_config.num_hidden_layers
        used = [name for name in LOSSES if name in self._method_losses() and self.weights[name] != 0]
        needs = {r: [name for name in used if r in LOSSES[name].requires]
                 for r in ("heads", "width", "mapping", "relation")}
        s_heads, t_heads = student_config.num_attention_heads, teacher_config.num_attention_heads
        if needs["heads"] and s_heads != t_heads:
            raise DataError(f"Distiller: {', '.join(needs['heads'])} compare attention head by head, so student and "
                            f"teacher need the same number of attention heads; got student {s_heads}, teacher "
                            f"{t_heads} (or set weights={{{needs['heads'][0]!r}: 0}}, or use method 'minilmv2')")
        if needs["width"] and student_config.hidden_size != teacher_config.hidden_size:
            raise DataError(f"Distiller: {', '.join(needs['width'])} compare hidden states as they are, so student and "
                            f"teacher need the same hidden size; got student {student_config.hidden_size}, teacher "
                            f"{teacher_config.hidden_size}")
        self.mapping = layer_mapping(M, N, strategy) if needs["mapping"] else None  # M teacher layers, 1-based
        if "pt" in used and M < 2:
            raise DataError("Distiller: Patient KD pairs the student's intermediate layers 1..M-1 with the teacher's; "
                            "a 1-layer student has none")
        self.relation_heads = relation_heads or t_heads
        self.relation_layer = relation_layer or N
        if needs["relation"]:
            for who, cfg in (("student", student_config), ("teacher", teacher_config)):
                if self.relation_heads <= 0 or cfg.hidden_size % self.relation_heads:
                    raise DataError(f"Distiller: relation_heads={self.relation_heads} must divide the {who}'s hidden "
                                    f"size {cfg.hidden_size} (MiniLMv2 cuts each model's width into R relation heads)")
            if not 1 <= self.relation_layer <= N:
                raise DataError(f"Distiller: relation_layer={self.relation_layer} is outside the teacher's layers 1..{N}")
        self.options = Options(self.mapping, self.temperature, self.pred_reduction, self.relation_heads,
                               self.relation_layer)
        # each term of the method, its options bound: forward calls terms[name](student output, target, batch)
        self.terms = {name: partial(LOSSES[name].forward, o=self.options) for name in self._method_losses()
                      if name in LOSSES}
        self.fit_dense = None
        if any(LOSSES[name].output == "hidden" for name in used):
            self.fit_dense = FitDense(student_config.hidden_size, teacher_config.hidden_size, M + 1,
                                      shared=shared_fit_dense, std=fit_dense_std, seed=seed,
                                      identity_init=fit_dense_identity)
        self._caches = None

    def astype(self, dtype) -> "Distiller":
        if self.fit_dense is not None:
            self.fit_dense.astype(dtype)
        return self

    def to(self, device: str) -> "Distiller":
        if self.fit_dense is not None:
            self.fit_dense.to(device)
        return self

    def __call__(self, student_out, teacher_out, stage: str = "intermediate", attention_mask=None,
                 labels=None) -> dict:
        return self.forward(student_out, teacher_out, stage, attention_mask, labels)

    def _method_losses(self) -> set:
        return {name for names in METHODS[self.method].stages.values() for name in names}

    def active(self, stage: str) -> list[str]:
        """The losses `stage` runs: the method's for that stage, weighted nonzero, in the table's order."""
        stages = METHODS[self.method].stages
        if stage in stages:
            names = stages[stage]
        elif stage == "all":
            names = self._method_losses()
        elif stage in STAGES:
            names = ()  # a stage this method does not have
        else:
            raise ValueError(f"Distiller: unknown stage {stage!r}; choose from {STAGES}")
        return [k for k in LOSSES if k in names and self.weights[k] != 0]

    def logged(self, stage: str) -> list[str]:
        """The loss values `stage` logs: its losses, with those of a sum the method logs (METHODS'
        log_sums, e.g. TinyBERT's rep = hid + emb) replaced by the sum."""
        active, sums = self.active(stage), METHODS[self.method].log_sums
        summed = {k for parts in sums.values() for k in parts}
        return [k for k in active if k not in summed] + [name for name, parts in sums.items() if set(parts) & set(active)]

    def cacheable(self, stage: str) -> bool:
        """Whether every teacher target `stage` reads is small enough to keep per example (SMALL_TARGETS)."""
        return all(LOSSES[k].target in SMALL_TARGETS + (None,) for k in self.active(stage))

    def teacher_targets(self, teacher_out, stage: str) -> dict:
        """{target name: the teacher's output} for the losses `stage` runs (see the table's comment)."""
        N = self.teacher_config.num_hidden_layers
        counts = {"hidden": N + 1, "scores": N, "qkv": N}
        targets = {}
        for kind in {LOSSES[k].target for k in self.active(stage)} - {None}:
            if kind == "logits":
                if teacher_out.logits is None:
                    raise ValueError("Distiller: the teacher gave no logits (distil from a BertForSequenceClassification)")
                targets[kind] = teacher_out.logits  # (B, C)
            elif kind == "cls":
                targets[kind] = [teacher_out.hidden_states[n][:, 0] for n in self.mapping[:-1]]  # J x (B, d_T)
            else:
                value = {"hidden": teacher_out.hidden_states, "scores": teacher_out.attention_scores,
                         "qkv": teacher_out.qkv}[kind]
                if len(value) != counts[kind]:
                    raise ValueError(f"Distiller: expected {counts[kind]} teacher {kind} entries, got {len(value)}")
                targets[kind] = value
        return targets

    def _student_output(self, output: str, student_out):
        """The student output a loss reads, after checking the model provides it."""
        if output == "logits":
            if student_out.logits is None:
                raise ValueError("Distiller: the prediction losses need the student's logits "
                                 "(a BertForSequenceClassification student)")
            return student_out.logits
        M = self.student_config.num_hidden_layers
        value, count, what = {"hidden": (student_out.hidden_states, M + 1, "hidden states"),
                              "raw_hidden": (student_out.hidden_states, M + 1, "hidden states"),
                              "scores": (student_out.attention_scores, M, "attention score tensors"),
                              "qkv": (student_out.qkv, M, "(q, k, v) entries")}[output]
        if len(value) != count:
            raise ValueError(f"Distiller: expected {count} student {what}, got {len(value)}")
        return value

    def forward(self, student_out, teacher_out, stage: str = "intermediate", attention_mask=None,
                labels=None) -> dict:
        """Losses of one batch (0-d arrays); keeps what `backward` needs. Teacher outputs are constants.

        attention_mask (B, T) (default: every token real) is what the masked losses read (cos,
        att_kl, vr, qq, kk, vv); labels (B,) what the hard-label loss reads.
        """
        active = self.active(stage)
        targets = teacher_out if isinstance(teacher_out, dict) else self.teacher_targets(teacher_out, stage)
        h0 = student_out.hidden_states[0] if student_out.hidden_states else student_out.logits
        xp, dtype = get_array_module(h0), h0.dtype
        if attention_mask is None and student_out.hidden_states:
            attention_mask = xp.ones(h0.shape[:2], dtype=np.int32)  # (B, T)
        batch = Batch(attention_mask, labels)
        zero = xp.zeros((), dtype=dtype)
        values, caches, inputs = {k: zero for k in LOSSES}, {}, {}
        for name in active:
            loss = LOSSES[name]
            if loss.output not in inputs:
                x = self._student_output(loss.output, student_out)
                # every projected-state loss reads the projection: one fit_dense pass for all of them
                inputs[loss.output] = self.fit_dense.forward(x) if loss.output == "hidden" else x
            target = targets[loss.target] if loss.target else None
            values[name], caches[name] = self.terms[name](inputs[loss.output], target, batch)  # LOSSES[name].forward
        total = zero
        for name in active:
            total = total + dtype.type(self.weights[name]) * values[name]
        self._caches = caches
        out = {k: xp.asarray(v, dtype=dtype) for k, v in values.items()}
        for name, parts in METHODS[self.method].log_sums.items():  # TinyBERT's "rep" = L_hid + L_emb
            out[name] = xp.asarray(sum((values[k] for k in parts[1:]), values[parts[0]]), dtype=dtype)
        out["total"] = xp.asarray(total, dtype=dtype)
        return out

    def backward(self, scale: float = 1.0) -> dict:
        """Gradients of `scale * total` for the student: {dhidden_states: M+1 entries, dattention_scores:
        M entries, dqkv: M entries (None where no loss reached), and dlogits (B, C) when a logit loss
        ran}. Accumulates fit_dense's parameter gradients into `self.fit_dense`."""
        if self._caches is None:
            raise RuntimeError("Distiller.backward called before forward (or called twice)")
        caches, self._caches = self._caches, None
        M = self.student_config.num_hidden_layers
        d = {"hidden": [None] * (M + 1), "raw_hidden": [None] * (M + 1), "scores": [None] * M, "qkv": [None] * M,
             "logits": None}
        for name, cache in caches.items():
            loss = LOSSES[name]
            g = loss.backward(scale * self.weights[name], cache)
            if loss.output == "logits":
                d["logits"] = _add(d["logits"], g)  # (B, C)
            elif loss.output == "qkv":  # per layer and per slot of (dq, dk, dv)
                d["qkv"] = [b if a is None else a if b is None else tuple(map(_add, a, b)) for a, b in zip(d["qkv"], g)]
            else:  # per state/layer: several losses may read the same one
                d[loss.output] = [_add(a, b) for a, b in zip(d[loss.output], g)]
        dhidden = d["raw_hidden"]
        if any(g is not None for g in d["hidden"]):
            # projected = self.fit_dense.forward(hidden_states)
            dhidden = [_add(a, b) for a, b in zip(self.fit_dense.backward(d["hidden"]), dhidden)]  # M+1 x (B, T, d_S)
        grads = dict(dhidden_states=dhidden, dattention_scores=d["scores"], dqkv=d["qkv"])
        if d["logits"] is not None:
            grads["dlogits"] = d["logits"]
        return grads

    def backward_into(self, student, scale: float = 1.0) -> None:
        """`backward()` and pass the gradients to the student (a BertModel or a head model).

        A head model without a logit loss is driven through its encoder (`student.bert`), so no
        hard-label loss and no head gradient is involved, as in TinyBERT's distillation.
        """
        grads = self.backward(scale)
        if "dlogits" in grads:
            student.backward(dloss=0.0, **grads)
        elif hasattr(student, "bert"):
            student.bert.backward(**grads)
        else:
            student.backward(**grads)


def _add(a, b):
    """a + b where either may be None (no gradient)."""
    return b if a is None else a if b is None else a + b
