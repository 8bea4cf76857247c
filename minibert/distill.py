"""Distillation: the layer mapping, TinyBERT's `fit_dense`, the loss table, methods, and the Distiller.

A *method* names, for each stage, the losses it minimises; a *loss* is one row of the table
(`LOSSES`): which student output it reads and sends gradients to, which teacher output it
compares with, and its kernel pair (`distill_losses.py`, where each method's equations are).

    method      general (stage 1)    intermediate (2a)    prediction (2b)
    tinybert    att + hid + emb      att + hid + emb      pred
    kd          -                    -                    kd (+ hard)
    distilbert  cos                  -                    kd (+ hard) + cos
    pkd         -                    -                    kd (+ hard) + pt
    minilm      att_kl + vr          att_kl + vr          pred
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

TinyBERT's projection, after the authors' released code (the project's
shared/docs/tinybert-reference.md, section 1.1): W, b is ONE shared Linear d_S -> d_T
("fit_dense") applied to every student hidden state, the embedding output included; the
paper's separate W_e / W_h, or v2 checkpoints' per-layer `fit_denses.{i}`, are available with
`shared=False`. It runs even when d_S == d_T (a maintainer said so in the reference's #44).

A new loss is one `DistillLoss` entry in `LOSSES`, its kernel pair in `distill_losses.py`
and a gradient check; a new method is one entry in `METHODS`. The Distiller needs no change.

Not here: the kernels (`distill_losses.py`, and `functional.py` for the general ones); the
distillation *runs* (stages, students, data, the trainer: `tinybert.py`); the teacher outputs
kept across epochs (`teacher_cache.py`).

Shapes: B batch, T sequence, NH heads, HS head size, d_S / d_T student / teacher hidden
size, C classes, M / N student / teacher layers.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .backend import get_array_module
from .config import BertConfig
# the kernels the table joins; CLAMP_THRESHOLD and TinyBERT's pairs are also imported from here (notebook 4)
from .distill_losses import (CLAMP_THRESHOLD, attention_kl_loss_backward, attention_kl_loss_forward,  # noqa: F401
                             attention_loss_backward, attention_loss_forward, hard_loss_backward, hard_loss_forward,
                             hidden_cosine_loss_backward, hidden_cosine_loss_forward, hidden_loss_backward,
                             hidden_loss_forward, kd_loss_backward, kd_loss_forward, pkd_loss_backward,
                             pkd_loss_forward, prediction_loss_backward, prediction_loss_forward,
                             relation_kl_loss_backward, relation_kl_loss_forward)
from .nn import Linear, Module

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


class DistillLoss(NamedTuple):
    output: str  # "hidden" | "raw_hidden" | "scores" | "qkv" | "logits"
    target: str | None  # "hidden" | "scores" | "qkv" | "logits" | "cls" | None
    forward: Callable  # (distiller, student output, teacher target, Batch) -> (0-d loss, cache)
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


def _cosine_last(d, s, t, b):
    """DistilBERT: the cosine loss between the last hidden states (student index M, teacher N)."""
    loss, cache = hidden_cosine_loss_forward(s[-1], t[-1], b.attention_mask)
    return loss, OneEntry(len(s), len(s) - 1, cache)


def _attention_kl_last(d, s, t, b):
    """MiniLM: the attention distributions of the last layers."""
    loss, cache = attention_kl_loss_forward(s[-1], t[-1], b.attention_mask)
    return loss, OneEntry(len(s), len(s) - 1, cache)


def _value_relation_last(d, s, t, b):
    """MiniLM: the value relations of the last layers, one relation head per attention head."""
    v_s, v_t = s[-1][2], t[-1][2]  # (B, NH, T, HS)
    loss, cache = relation_kl_loss_forward(v_s, v_t, b.attention_mask, v_s.shape[1])
    return loss, OneEntry(len(s), len(s) - 1, cache, slot=2)


def _relation(slot: int):
    """MiniLMv2: the relation of queries (0), keys (1) or values (2), student's last layer vs d.relation_layer."""

    def forward(d, s, t, b):
        loss, cache = relation_kl_loss_forward(s[-1][slot], t[d.relation_layer - 1][slot], b.attention_mask,
                                               d.relation_heads)
        return loss, OneEntry(len(s), len(s) - 1, cache, slot)

    return forward


class CLSCache(NamedTuple):
    size: int  # M+1 hidden states
    shape: tuple  # (B, T, d_S)
    layers: list  # the student hidden-state indices read, 1..M-1
    cache: object  # pkd_loss's


def _pkd_forward(d, s, t, b):
    """Patient KD: student layers 1..M-1's [CLS] states against the teacher's (targets "cls")."""
    layers = list(range(1, len(s) - 1))
    loss, cache = pkd_loss_forward([s[m][:, 0] for m in layers], t)  # J x (B, d_S)
    return loss, CLSCache(len(s), s[0].shape, layers, cache)


def _pkd_backward(dloss, c: CLSCache):
    grads = [None] * c.size
    for m, g in zip(c.layers, pkd_loss_backward(dloss, c.cache)):
        # cls = s[m][:, 0]: only the [CLS] row of that state gets a gradient
        full = get_array_module(g).zeros(c.shape, dtype=g.dtype)  # (B, T, d_S)
        full[:, 0] = g
        grads[m] = full
    return grads


LOSSES = {
    # TinyBERT
    "att": DistillLoss("scores", "scores", lambda d, s, t, b: attention_loss_forward(s, t, d.mapping),
                       attention_loss_backward, ("heads", "mapping")),
    "hid": DistillLoss("hidden", "hidden", lambda d, s, t, b: hidden_loss_forward(s, t, list(enumerate(d.mapping, 1))),
                       hidden_loss_backward, ("mapping",)),
    "emb": DistillLoss("hidden", "hidden", lambda d, s, t, b: hidden_loss_forward(s, t, [(0, 0)]), hidden_loss_backward),
    "pred": DistillLoss("logits", "logits",
                        lambda d, s, t, b: prediction_loss_forward(s, t, d.temperature, d.pred_reduction),
                        prediction_loss_backward),
    # Hinton's soft and hard targets (kd, and inside distilbert and pkd)
    "kd": DistillLoss("logits", "logits", lambda d, s, t, b: kd_loss_forward(s, t, d.temperature), kd_loss_backward),
    "hard": DistillLoss("logits", None, lambda d, s, t, b: hard_loss_forward(s, b.labels), hard_loss_backward),
    # DistilBERT, Patient KD
    "cos": DistillLoss("raw_hidden", "hidden", _cosine_last, _one_entry_backward(hidden_cosine_loss_backward),
                       ("width",)),
    "pt": DistillLoss("raw_hidden", "cls", _pkd_forward, _pkd_backward, ("width", "mapping")),
    # MiniLM, MiniLMv2
    "att_kl": DistillLoss("scores", "scores", _attention_kl_last, _one_entry_backward(attention_kl_loss_backward),
                          ("heads",)),
    "vr": DistillLoss("qkv", "qkv", _value_relation_last, _one_entry_backward(relation_kl_loss_backward), ("heads",)),
    "qq": DistillLoss("qkv", "qkv", _relation(0), _one_entry_backward(relation_kl_loss_backward), ("relation",)),
    "kk": DistillLoss("qkv", "qkv", _relation(1), _one_entry_backward(relation_kl_loss_backward), ("relation",)),
    "vv": DistillLoss("qkv", "qkv", _relation(2), _one_entry_backward(relation_kl_loss_backward), ("relation",)),
}

# A Distiller's weights start at 1 (the reference's TinyBERT, and each paper's sum), except
# these: the gold labels' term runs only when asked for (weights={"hard": 1 - alpha}), since
# augmented rows carry their source sentence's label, which a word swap may have made wrong.
DEFAULT_WEIGHTS = {"hard": 0.0}

# TinyBERT's stages: general distillation and task step 1 match the intermediate layers,
# task step 2 the predictions.
STAGE_LOSSES = {
    "general": ("att", "hid", "emb"),
    "intermediate": ("att", "hid", "emb"),
    "prediction": ("pred",),
    "all": ("att", "hid", "emb", "pred"),
}
STAGES = tuple(STAGE_LOSSES)

# Each method's losses per stage (a stage it lacks runs nothing; "all" is the union).
METHODS = {
    "tinybert": STAGE_LOSSES,  # the same dict: a change to TinyBERT's stages is a change to its method
    "kd": {"prediction": ("kd", "hard")},
    "distilbert": {"general": ("cos",), "prediction": ("kd", "hard", "cos")},
    "pkd": {"prediction": ("kd", "hard", "pt")},
    "minilm": {"general": ("att_kl", "vr"), "intermediate": ("att_kl", "vr"), "prediction": ("pred",)},
    "minilmv2": {"general": ("qq", "kk", "vv"), "intermediate": ("qq", "kk", "vv"), "prediction": ("pred",)},
}

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
    others are reported as 0. total = sum of w_k L_k over the losses that ran ("rep" = L_hid +
    L_emb is what TinyBERT's reference logs as rep_loss). `teacher_out` may also be the dict
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
            raise ValueError(f"Distiller: unknown method {method!r}; choose from {tuple(METHODS)}")
        self.method = method
        self.weights = {name: DEFAULT_WEIGHTS.get(name, 1.0) for name in LOSSES}
        for name, w in (weights or {}).items():
            if name not in self.weights:
                raise ValueError(f"Distiller: unknown loss weight {name!r}; the losses are {tuple(LOSSES)}")
            self.weights[name] = float(w)
        if temperature <= 0:
            raise ValueError(f"Distiller: temperature must be positive, got {temperature}")
        if pred_reduction not in ("batchmean", "mean"):
            raise ValueError(f"Distiller: pred_reduction must be 'batchmean' or 'mean', got {pred_reduction!r}")
        self.student_config, self.teacher_config = student_config, teacher_config
        self.temperature, self.pred_reduction = float(temperature), pred_reduction
        M, N = student_config.num_hidden_layers, teacher_config.num_hidden_layers
        used = [name for name in LOSSES if name in self._method_losses() and self.weights[name] != 0]
        needs = {r: [name for name in used if r in LOSSES[name].requires]
                 for r in ("heads", "width", "mapping", "relation")}
        s_heads, t_heads = student_config.num_attention_heads, teacher_config.num_attention_heads
        if needs["heads"] and s_heads != t_heads:
            raise ValueError(f"Distiller: {', '.join(needs['heads'])} compare attention head by head, so student and "
                             f"teacher need the same number of attention heads; got student {s_heads}, teacher "
                             f"{t_heads} (or set weights={{{needs['heads'][0]!r}: 0}}, or use method 'minilmv2')")
        if needs["width"] and student_config.hidden_size != teacher_config.hidden_size:
            raise ValueError(f"Distiller: {', '.join(needs['width'])} compare hidden states as they are, so student and "
                             f"teacher need the same hidden size; got student {student_config.hidden_size}, teacher "
                             f"{teacher_config.hidden_size}")
        self.mapping = layer_mapping(M, N, strategy) if needs["mapping"] else None  # M teacher layers, 1-based
        if "pt" in used and M < 2:
            raise ValueError("Distiller: Patient KD pairs the student's intermediate layers 1..M-1 with the teacher's; "
                             "a 1-layer student has none")
        self.relation_heads = relation_heads or t_heads
        self.relation_layer = relation_layer or N
        if needs["relation"]:
            for who, cfg in (("student", student_config), ("teacher", teacher_config)):
                if self.relation_heads <= 0 or cfg.hidden_size % self.relation_heads:
                    raise ValueError(f"Distiller: relation_heads={self.relation_heads} must divide the {who}'s hidden "
                                     f"size {cfg.hidden_size} (MiniLMv2 cuts each model's width into R relation heads)")
            if not 1 <= self.relation_layer <= N:
                raise ValueError(f"Distiller: relation_layer={self.relation_layer} is outside the teacher's layers 1..{N}")
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
        return {name for names in METHODS[self.method].values() for name in names}

    def active(self, stage: str) -> list[str]:
        """The losses `stage` runs: the method's for that stage, weighted nonzero, in the table's order."""
        stages = METHODS[self.method]
        if stage in stages:
            names = stages[stage]
        elif stage == "all":
            names = self._method_losses()
        elif stage in STAGES:
            names = ()  # a stage this method does not have
        else:
            raise ValueError(f"Distiller: unknown stage {stage!r}; choose from {STAGES}")
        return [k for k in LOSSES if k in names and self.weights[k] != 0]

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
            values[name], caches[name] = loss.forward(self, inputs[loss.output], target, batch)
        total = zero
        for name in active:
            total = total + dtype.type(self.weights[name]) * values[name]
        self._caches = caches
        out = {k: xp.asarray(v, dtype=dtype) for k, v in values.items()}
        out["rep"] = xp.asarray(values["hid"] + values["emb"], dtype=dtype)
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
