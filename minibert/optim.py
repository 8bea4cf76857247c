"""Optimizers, learning-rate schedules and gradient clipping.

Everything here works on the two dicts a model exposes, ``model.named_parameters()`` and
``model.named_gradients()`` ({Hugging Face name: array}, same keys).  Arrays may be NumPy or
CuPy; the array module is taken from each parameter.  Parameters and gradients are always
updated **in place** (``p -= ...``), because the modules hold references to them.

The notation below, used in every docstring::

    g      gradient of the loss w.r.t. the parameter θ (after clipping)
    m, v   first and second moment estimates (same shape and dtype as θ), start at 0
    β1,β2  moment decay rates        ε  numerical floor        λ  weight decay
    t      step number, 1 for the first update
    η_t    learning rate used by update t (base lr times the schedule's multiplier)

Nothing here reads a value back to the host: ``clip_grad_norm`` keeps the norm and the scale
on the gradients' device and returns the norm as a 0-d array, so on CuPy a training step never
waits for the GPU; the trainer converts the norm to a float only when it logs.

This module does not compute gradients (each module's ``backward`` does), run the training
loop (``trainer.py``), or write its state to disk (``state_dict()`` hands the moments to the
trainer, which saves them through ``checkpoint.py``). The update runs in cache-sized blocks on
the thread pool of ``threads.py``.

A typical training step (gradient accumulation over k micro-batches, TinyBERT style)::

    opt = AdamW(model.named_parameters(), lr=5e-5)
    sched = make_schedule("linear", total_steps, warmup_steps)
    grads = model.named_gradients()
    zero_grads(grads)
    for micro_batch in micro_batches:          # k of them
        model(**micro_batch); model.backward() # backward ACCUMULATES (+=) into grads
    scale_grads(grads, 1.0 / k)                # sum of k mean-losses -> mean over k
    clip_grad_norm(grads, 1.0)                 # or clip_grad_norm_per_tensor (TinyBERT)
    opt.step(grads, lr=5e-5 * sched(opt.step_count))
    zero_grads(grads)

``sched(opt.step_count)`` is evaluated with the number of updates already done, so the very
first update uses ``sched(0)`` — 0 under warmup, exactly as ``transformers``' LambdaLR
schedules and TinyBERT's BertAdam behave.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .backend import get_array_module
from .threads import for_elements

__all__ = [
    "AdamW",
    "BertAdam",
    "default_no_decay",
    "linear_warmup_decay",
    "constant",
    "constant_with_warmup",
    "make_schedule",
    "SCHEDULES",
    "clip_grad_norm",
    "clip_grad_norm_per_tensor",
    "zero_grads",
    "scale_grads",
]


def _xp(a):
    """The array module (numpy or cupy) that owns array ``a`` (backend.py's lookup: cupy is never imported here)."""
    return get_array_module(a)


def _to_numpy(a) -> np.ndarray:
    """A host (NumPy) copy of ``a``, whichever module owns it."""
    return a.get() if _xp(a) is not np else np.array(a, copy=True)


def default_no_decay(name: str) -> bool:
    """True for parameters that get no weight decay: biases and LayerNorm weights/biases.

    This is the grouping of BERT, TinyBERT and ``transformers`` examples
    (``no_decay = ["bias", "LayerNorm.weight"]``; Google's BERT excludes "LayerNorm" and "bias").
    """
    return name.endswith("bias") or "LayerNorm" in name


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    Update ``t`` (``t = 1, 2, ...``), for each parameter θ with gradient g::

        θ ← θ − η_t·λ·θ                       decoupled weight decay (λ = 0 for no-decay names)
        m ← β1·m + (1 − β1)·g
        v ← β2·v + (1 − β2)·g²
        m̂ = m / (1 − β1^t)                     bias correction (skipped when
        v̂ = v / (1 − β2^t)                       bias_correction=False: m̂ = m, v̂ = v)
        θ ← θ − η_t · m̂ / (√v̂ + ε)

    Defaults follow ``transformers``' BERT fine-tuning (lr 5e-5, ε 1e-6, λ 0.01); note that
    ``torch.optim.AdamW`` defaults to ε 1e-8.  Moments are kept in each parameter's dtype.

    Args:
        params: {name: array}, the model's ``named_parameters()``; updated in place.
        lr: base learning rate, used when ``step`` gets no ``lr``.
        betas: (β1, β2), each in [0, 1).
        eps: ε > 0, added to √v̂.
        weight_decay: λ ≥ 0 for parameters where ``no_decay(name)`` is False.
        bias_correction: divide the moments by (1 − β^t) (Adam); False reproduces BERT's
            reference optimizers (see ``BertAdam``).
        no_decay: predicate on the parameter name; True → weight decay 0.
    """

    def __init__(
        self,
        params: dict,
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        bias_correction: bool = True,
        no_decay: Callable[[str], bool] = default_no_decay,
    ):
        _check_hyperparameters(lr, betas, eps, weight_decay)
        if not params:
            raise ValueError("AdamW got an empty params dict")
        for name, p in params.items():
            if not np.issubdtype(p.dtype, np.floating):
                raise ValueError(f"parameter {name!r} has dtype {p.dtype}; the optimizer needs floats")
        self.params = params
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.bias_correction = bool(bias_correction)
        # Names that get λ = 0, fixed at construction (the "param groups" of torch).
        self.no_decay = {name for name in params if no_decay(name)}
        self.step_count = 0  # number of updates done so far
        self.exp_avg = {name: _xp(p).zeros_like(p) for name, p in params.items()}  # m
        self.exp_avg_sq = {name: _xp(p).zeros_like(p) for name, p in params.items()}  # v

    # ---- the update -------------------------------------------------------------------------

    def step(self, grads: dict, lr: float | None = None) -> None:
        """Apply one update to every parameter, in place.

        Args:
            grads: {name: array} with exactly the keys of ``params`` and matching shapes,
                dtypes and array modules (e.g. ``model.named_gradients()``); not modified.
            lr: learning rate for this update (schedules pass ``base_lr * multiplier``);
                ``None`` uses the base ``lr``.
        """
        lr = self.lr if lr is None else float(lr)
        if not lr >= 0.0:  # also rejects NaN
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self._check_grads(grads)
        self.step_count += 1
        for name, p in self.params.items():
            wd = 0.0 if name in self.no_decay else self.weight_decay
            # in cache-sized blocks, in threads (threads.for_elements): the update is element-wise
            for_elements(lambda *blocks: self._update(*blocks, lr, wd), p, grads[name], self.exp_avg[name],
                         self.exp_avg_sq[name])

    def _update(self, p, g, m, v, lr: float, wd: float) -> None:
        """AdamW for one parameter (the equations of the class docstring, in order)."""
        xp = _xp(p)
        b1, b2 = self.betas
        t = self.step_count
        # One scratch buffer and in-place ufuncs: the plain expressions in the comments would
        # allocate five parameter-sized temporaries (38 MB each for BERT's word embeddings).
        buf = xp.empty_like(p)
        if wd != 0.0:
            p *= 1.0 - lr * wd                             # θ ← θ − η·λ·θ
        m *= b1
        m += xp.multiply(g, 1.0 - b1, out=buf)             # m ← β1·m + (1 − β1)·g
        v *= b2
        xp.multiply(g, g, out=buf)
        v += xp.multiply(buf, 1.0 - b2, out=buf)           # v ← β2·v + (1 − β2)·g²
        denom = xp.sqrt(v, out=buf)
        step_size = lr
        if self.bias_correction:
            step_size = lr / (1.0 - b1**t)                 # η / (1 − β1^t): folds m̂ into the step
            denom /= math.sqrt(1.0 - b2**t)                # √v̂ = √v / √(1 − β2^t)
        denom += self.eps                                  # √v̂ + ε
        update = xp.divide(m, denom, out=buf)              # m̂ / (√v̂ + ε), up to the folded factor
        update *= step_size
        p -= update                                        # θ ← θ − η · m̂ / (√v̂ + ε)

    def _check_grads(self, grads: dict) -> None:
        missing = [n for n in self.params if n not in grads]
        extra = [n for n in grads if n not in self.params]
        if missing:
            raise ValueError(f"no gradient for parameter(s) {missing}")
        if extra:
            raise ValueError(f"gradient(s) for unknown parameter(s) {extra}")
        for name, p in self.params.items():
            g = grads[name]
            if g.shape != p.shape:
                raise ValueError(f"gradient for {name!r} has shape {g.shape}, parameter has {p.shape}")
            if g.dtype != p.dtype:
                raise ValueError(f"gradient for {name!r} has dtype {g.dtype}, parameter has {p.dtype}")
            if _xp(g) is not _xp(p):
                raise ValueError(
                    f"gradient for {name!r} is a {_xp(g).__name__} array, parameter is {_xp(p).__name__}"
                )

    # ---- checkpointing ----------------------------------------------------------------------

    def state_dict(self) -> tuple[dict, dict]:
        """The optimizer state, for an exact resume.

        Returns ``(meta, arrays)``: ``meta`` is JSON-serialisable (kind, hyperparameters,
        ``step_count``, the parameter names and which of them are not decayed); ``arrays``
        holds NumPy copies of the moments under ``"exp_avg.<name>"`` and ``"exp_avg_sq.<name>"``
        (ready for safetensors).
        """
        meta = {
            "kind": type(self).__name__,
            "step_count": self.step_count,
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "bias_correction": self.bias_correction,
            "names": list(self.params),
            "no_decay": [n for n in self.params if n in self.no_decay],
        }
        arrays = {}
        for name in self.params:
            arrays[f"exp_avg.{name}"] = _to_numpy(self.exp_avg[name])
            arrays[f"exp_avg_sq.{name}"] = _to_numpy(self.exp_avg_sq[name])
        return meta, arrays

    def load_state_dict(self, meta: dict, arrays: dict) -> None:
        """Restore a ``state_dict()`` bit-exactly (moments copied into the existing buffers).

        The hyperparameters (lr, betas, eps, weight decay) are taken from ``meta``, as
        ``torch.optim.Optimizer.load_state_dict`` does.  The kind, the parameter names, the
        no-decay grouping and every array's shape and dtype must match this optimizer;
        anything else raises ``ValueError``.
        """
        required = ("kind", "step_count", "lr", "betas", "eps", "weight_decay", "bias_correction", "names",
                    "no_decay")
        missing = [k for k in required if k not in meta]
        if missing:
            raise ValueError(f"optimizer state is missing {missing}")
        if meta["kind"] != type(self).__name__:
            raise ValueError(f"state is for a {meta['kind']!r} optimizer, this is {type(self).__name__!r}")
        if meta["bias_correction"] != self.bias_correction:
            raise ValueError(
                f"state has bias_correction={meta['bias_correction']}, optimizer has {self.bias_correction}"
            )
        if sorted(meta["names"]) != sorted(self.params):
            missing = sorted(set(self.params) - set(meta["names"]))
            extra = sorted(set(meta["names"]) - set(self.params))
            raise ValueError(f"state parameter names differ: missing {missing}, unexpected {extra}")
        if set(meta["no_decay"]) != self.no_decay:
            raise ValueError(
                f"state has a different no-decay grouping: {sorted(set(meta['no_decay']) ^ self.no_decay)}"
            )
        expected = {f"{k}.{n}" for k in ("exp_avg", "exp_avg_sq") for n in self.params}
        if set(arrays) != expected:
            raise ValueError(
                f"state arrays differ: missing {sorted(expected - set(arrays))}, "
                f"unexpected {sorted(set(arrays) - expected)}"
            )
        for key, arr in arrays.items():
            kind, name = key.split(".", 1)
            p = self.params[name]
            if arr.shape != p.shape or arr.dtype != p.dtype:
                raise ValueError(
                    f"state array {key!r} is {arr.dtype}{tuple(arr.shape)}, parameter is {p.dtype}{p.shape}"
                )
        _check_hyperparameters(meta["lr"], meta["betas"], meta["eps"], meta["weight_decay"])
        if not (isinstance(meta["step_count"], int) and meta["step_count"] >= 0):
            raise ValueError(f"state step_count must be an int >= 0, got {meta['step_count']!r}")

        for key, arr in arrays.items():
            kind, name = key.split(".", 1)
            buf = (self.exp_avg if kind == "exp_avg" else self.exp_avg_sq)[name]
            buf[...] = _xp(buf).asarray(arr)
        self.step_count = int(meta["step_count"])
        self.lr = float(meta["lr"])
        self.betas = (float(meta["betas"][0]), float(meta["betas"][1]))
        self.eps = float(meta["eps"])
        self.weight_decay = float(meta["weight_decay"])


class BertAdam(AdamW):
    """The optimizer of BERT and TinyBERT: Adam without bias correction, weight decay inside
    the lr-scaled update (Google's ``AdamWeightDecayOptimizer``, TinyBERT's ``BertAdam``).

    Update ``t``, for each parameter θ with gradient g::

        m ← β1·m + (1 − β1)·g
        v ← β2·v + (1 − β2)·g²
        u = m / (√v + ε) + λ·θ                 no bias correction; λ = 0 for no-decay names
        θ ← θ − η_t · u

    Compared with ``AdamW``: (1) m and v are used as they are, with no division by
    (1 − β^t) — early updates are therefore much smaller (the first one is
    (1 − β1)/√(1 − β2) ≈ 3.16× the size of the gradient's sign instead of 1×), which
    warmup hides; (2) the decay term λ·θ is added to the update before the multiplication
    by η_t.  Algebraically (2) is the same as AdamW's decoupled θ ← θ − η_t·λ·θ, so
    ``BertAdam`` equals ``AdamW(bias_correction=False)`` up to rounding; it exists to follow
    the reference equations literally.

    Gradient clipping and the schedule are separate here: TinyBERT's BertAdam clips each
    tensor to norm 1.0 (``clip_grad_norm_per_tensor``) and uses ``linear_warmup_decay``
    with warmup 10% of the steps; Google's BERT clips the global norm (``clip_grad_norm``).
    """

    def __init__(
        self,
        params: dict,
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        no_decay: Callable[[str], bool] = default_no_decay,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, bias_correction=False, no_decay=no_decay)

    def _update(self, p, g, m, v, lr: float, wd: float) -> None:
        """BertAdam for one parameter (the equations of the class docstring, in order)."""
        xp = _xp(p)
        b1, b2 = self.betas
        buf = xp.empty_like(p)  # one scratch buffer, as in AdamW._update
        m *= b1
        m += xp.multiply(g, 1.0 - b1, out=buf)             # m ← β1·m + (1 − β1)·g
        v *= b2
        xp.multiply(g, g, out=buf)
        v += xp.multiply(buf, 1.0 - b2, out=buf)           # v ← β2·v + (1 − β2)·g²
        denom = xp.sqrt(v, out=buf)
        denom += self.eps
        u = xp.divide(m, denom, out=buf)                   # u = m / (√v + ε)
        if wd != 0.0:
            u += wd * p                                    # u += λ·θ
        u *= lr
        p -= u                                             # θ ← θ − η·u


def _check_hyperparameters(lr, betas, eps, weight_decay) -> None:
    if not float(lr) >= 0.0:
        raise ValueError(f"learning rate must be >= 0, got {lr}")
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas}")
    for i, b in enumerate(betas):
        if not 0.0 <= float(b) < 1.0:
            raise ValueError(f"betas[{i}] must be in [0, 1), got {b}")
    if not float(eps) > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if not float(weight_decay) >= 0.0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")


# --------------------------------------------------------------------------------------------
# Learning-rate schedules: multipliers of the base lr, as a function of the number of
# updates already done (0 for the first update).
# --------------------------------------------------------------------------------------------


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


def linear_warmup_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warmup from 0 to 1 over ``warmup_steps``, then linear decay to 0 at ``total_steps``.

    ``step / warmup`` for ``step < warmup``, else ``max(0, (total − step) / (total − warmup))``
    — ``transformers.get_linear_schedule_with_warmup``, Google BERT's polynomial (power 1)
    decay, and TinyBERT's ``warmup_linear`` with ``warmup_steps = warmup_proportion·total``.
    """
    _check_step(step)
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def constant(step: int, total_steps: int | None = None, warmup_steps: int = 0) -> float:
    """Always 1 (TinyBERT's schedule ``none``); the other arguments are ignored."""
    _check_step(step)
    return 1.0


def constant_with_warmup(step: int, total_steps: int | None = None, warmup_steps: int = 0) -> float:
    """Linear warmup from 0 to 1 over ``warmup_steps``, then 1 (``total_steps`` is ignored)."""
    _check_step(step)
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    return step / warmup_steps if step < warmup_steps else 1.0


SCHEDULES = {
    "linear": linear_warmup_decay,
    "linear_warmup_decay": linear_warmup_decay,
    "constant": constant,
    "constant_with_warmup": constant_with_warmup,
}


def make_schedule(name: str, total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """The schedule ``name`` as a function ``step -> multiplier`` (see ``SCHEDULES``).

    Use it as ``opt.step(grads, lr=base_lr * schedule(opt.step_count))``.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(sorted(SCHEDULES))}")
    fn = SCHEDULES[name]
    fn(0, total_steps, warmup_steps)  # validate the arguments now, not at the first step

    def schedule(step: int) -> float:
        return fn(step, total_steps, warmup_steps)

    schedule.__name__ = f"{name}(total_steps={total_steps}, warmup_steps={warmup_steps})"
    return schedule


# --------------------------------------------------------------------------------------------
# Gradient clipping and accumulation helpers (all in place)
# --------------------------------------------------------------------------------------------


def _sum_of_squares(g):
    """Σ g² as a 0-d float64 array on g's device (a BLAS dot in g's dtype)."""
    xp = _xp(g)
    flat = g.reshape(-1)
    return xp.asarray(xp.dot(flat, flat), dtype=xp.float64)  # one BLAS pass, no g² temporary


def clip_grad_norm(grads: dict, max_norm: float):
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    ``total = √(Σ_tensors ‖g‖²)``; ``coef = max_norm / (total + 1e-6)``; every g ← coef·g
    when coef < 1 (``torch.nn.utils.clip_grad_norm_``, Google BERT's ``clip_by_global_norm``).
    Returns the norm *before* clipping as a float64 scalar on the gradients' device (a
    ``np.float64`` on NumPy, a 0-d array on CuPy: call ``float()`` on it only when logging,
    to avoid a device sync every step).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    if not grads:
        raise ValueError("clip_grad_norm got an empty grads dict")
    gs = list(grads.values())
    xp = _xp(gs[0])
    total = xp.sqrt(sum(_sum_of_squares(g) for g in gs))
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)  # multiplying by exactly 1.0 changes nothing
    for g in gs:
        g *= coef.astype(g.dtype)
    return total


def clip_grad_norm_per_tensor(grads: dict, max_norm: float) -> dict:
    """Clip each gradient tensor to L2 norm ``max_norm`` on its own (TinyBERT's BertAdam).

    For each g: ``coef = max_norm / (‖g‖ + 1e-6)``; g ← coef·g when coef < 1.  Returns
    {name: norm before clipping} (0-d float64 arrays).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    norms = {}
    for name, g in grads.items():
        xp = _xp(g)
        norms[name] = n = xp.sqrt(_sum_of_squares(g))
        g *= xp.minimum(max_norm / (n + 1e-6), 1.0).astype(g.dtype)
    return norms


def zero_grads(grads: dict) -> None:
    """Set every gradient to 0 in place (modules accumulate into them with ``+=``)."""
    for g in grads.values():
        g[...] = 0


def scale_grads(grads: dict, factor: float) -> None:
    """Multiply every gradient by ``factor`` in place.

    Gradient accumulation: call forward/backward on k micro-batches (the gradients add up),
    then ``scale_grads(grads, 1 / k)`` so the update sees the mean, then clip and step.
    """
    for g in grads.values():
        g *= factor
