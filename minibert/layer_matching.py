"""How a student's layers are put next to a teacher's: the layer mapping g(m), and TinyBERT's width projection.

    layer_mapping(4, 12)            # [3, 6, 9, 12]: student layer m learns from teacher layer g(m)
    fit_dense = FitDense(312, 768, num_states=5)
    projected = fit_dense.forward(student_out.hidden_states)   # M+1 x (B, T, d_T), compared with the teacher's

TinyBERT's projection, after the authors' released code: W, b is ONE shared Linear d_S -> d_T
("fit_dense") applied to every student hidden state, the embedding output included; the
paper's separate W_e / W_h, or v2 checkpoints' per-layer `fit_denses.{i}`, are available with
`shared=False`. It runs even when d_S == d_T (a maintainer of the reference code said so).

Not here: the losses that read these (`distill.py`'s table, `distill_losses.py`'s kernels);
saving fit_dense next to a student (`checkpoint.save_fit_dense`).

Shapes: B batch, T sequence, d_S / d_T student / teacher hidden size, M / N student / teacher layers.
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module
from .errors import DataError
from .methods import MAPPING_STRATEGIES
from .nn import Linear, Module


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
            raise DataError(f"layer_mapping: {name} must be a positive integer, got {v!r}")
    if strategy not in MAPPING_STRATEGIES:
        raise DataError(f"layer_mapping: unknown strategy {strategy!r}; choose from {MAPPING_STRATEGIES}")
    if M > N:
        raise DataError(f"layer_mapping: the student ({M} layers) cannot have more layers than the teacher ({N})")
    if strategy == "uniform":
        if N % M != 0:
            raise DataError(f"layer_mapping: uniform mapping needs teacher_layers ({N}) to be a multiple of "
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
