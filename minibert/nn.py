"""Modules: thin stateful wrappers around the kernel pairs, taken from `kernels.py`.

A module owns `params` and `grads` (dicts with the same keys, built at construction) and
child modules registered under Hugging Face names (a child's name may contain dots, so a
BertLayer can call its query projection `attention.self.query` and still read top to
bottom). `forward` stores one cache; `backward(dout)` *accumulates* parameter gradients
(`+=`, so tied weights and gradient accumulation need nothing special), returns the input
gradient, and drops the cache.

Kernels are looked up on `minibert.kernels` at every call (`K.linear_forward(...)`), never
imported by name, so a kernel swapped there reaches every module.

Not here: the kernels' maths (`functional.py`, `fast.py`); the BERT blocks and models, and
reading/writing checkpoints (`model.py`, `checkpoint.py`); the loss modules (`losses.py`).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from . import kernels as K  # the one place kernels come from (see kernels.py)
from .backend import RNG, check_device, get_array_module, like, to_device


_grad = threading.local()  # per thread, as torch's no_grad


def grad_enabled() -> bool:
    """False inside `no_grad()`: no backward will follow the forwards run there."""
    return getattr(_grad, "enabled", True)


@contextmanager
def no_grad():
    """Forwards without a backward, as torch.no_grad: `with no_grad(): logits = model(ids).logits`.

    A model called here keeps no caches (its `backward` then raises); BertModel returns only
    last_hidden_state and pooler_output (hidden_states, attention_scores and qkv are None), and,
    in eval mode on NumPy, runs the inference path of `fast_inference.py`. Prediction and
    evaluation (`TextClassifier`, `evaluation.py`) run under it.
    """
    before = grad_enabled()
    _grad.enabled = False
    try:
        yield
    finally:
        _grad.enabled = before


class Module:
    """Base class: parameters, gradients, children, train/eval, dtype and device moves."""

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.children: dict[str, Module] = {}
        self.training = True
        self._cache = None

    # -- structure -----------------------------------------------------------------
    def add(self, name: str, module: "Module") -> "Module":
        self.children[name] = module
        return module

    def add_param(self, name: str, value: np.ndarray) -> None:
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)

    def modules(self) -> Iterator["Module"]:
        yield self
        for child in self.children.values():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> dict:
        """{Hugging Face name: array} over this module and its children."""
        out = {prefix + k: v for k, v in self.params.items()}
        for name, child in self.children.items():
            out.update(child.named_parameters(prefix + name + "."))
        return out

    def named_gradients(self, prefix: str = "") -> dict:
        """{Hugging Face name: gradient array}, the same keys as `named_parameters`."""
        out = {prefix + k: v for k, v in self.grads.items()}
        for name, child in self.children.items():
            out.update(child.named_gradients(prefix + name + "."))
        return out

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.named_parameters().values()))

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        if not grad_enabled():  # no backward will come (no_grad): keep nothing for one
            for m in self.modules():
                m._cache = None
        return out

    # -- state ---------------------------------------------------------------------
    def zero_grad(self) -> None:
        for m in self.modules():
            for g in m.grads.values():
                g[...] = 0

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def _map_arrays(self, fn) -> None:
        for m in self.modules():
            m.params = {k: fn(v) for k, v in m.params.items()}
            m.grads = {k: fn(v) for k, v in m.grads.items()}
            m._cache = None
        for m in self.modules():  # after every child's arrays are replaced
            m._arrays_replaced()

    def _arrays_replaced(self) -> None:
        """Called after astype/to replaced every parameter array (BertLayer re-shares its Q/K/V)."""

    def astype(self, dtype) -> "Module":
        """Cast every parameter and gradient (float64 for gradient checks)."""
        dtype = np.dtype(dtype)
        self._map_arrays(lambda a: a.astype(dtype))
        return self

    def to(self, device: str) -> "Module":
        """Move parameters to 'numpy' (CPU) or 'cupy' (CUDA GPU)."""
        check_device(device)
        self._map_arrays(lambda a: to_device(a, device))
        for m in self.modules():
            if isinstance(m, Dropout):
                m.rng.to(device)
        return self

    @property
    def dtype(self):
        return next(iter(self.named_parameters().values())).dtype

    @property
    def xp(self):
        return get_array_module(next(iter(self.named_parameters().values())))

    def _pop_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward (or called twice, or "
                               "after a forward under no_grad)")
        cache, self._cache = self._cache, None
        return cache


def normal_init(rng: np.random.Generator, shape, std: float, dtype=np.float32):
    """N(0, std^2), as BERT initialises every Linear and Embedding weight."""
    return (rng.standard_normal(shape) * std).astype(dtype)


class Linear(Module):
    """y = x W^T + b. weight (out, in), bias (out,)."""

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator, std: float = 0.02, bias: bool = True):
        super().__init__()
        self.add_param("weight", normal_init(rng, (out_features, in_features), std))
        if bias:
            self.add_param("bias", np.zeros(out_features, dtype=np.float32))

    def forward(self, x):
        y, self._cache = K.linear_forward(x, self.params["weight"], self.params.get("bias"))
        return y

    def backward(self, dout):
        dx, dW, db = K.linear_backward(dout, self._pop_cache())
        self.grads["weight"] += dW
        if "bias" in self.grads:
            self.grads["bias"] += db
        return dx


class Embedding(Module):
    """out = weight[ids]. weight (V, D). The padding row, if any, gets no gradient (as torch's padding_idx)."""

    def __init__(self, num_embeddings: int, dim: int, rng: np.random.Generator, std: float = 0.02, padding_idx: int | None = None):
        super().__init__()
        w = normal_init(rng, (num_embeddings, dim), std)
        if padding_idx is not None:
            w[padding_idx] = 0.0
        self.add_param("weight", w)
        self.padding_idx = padding_idx

    def forward(self, ids):
        W = self.params["weight"]
        xp = get_array_module(W)
        if not xp.issubdtype(ids.dtype, xp.integer):
            raise ValueError(f"embedding ids must be integers, got dtype {ids.dtype}")
        V = W.shape[0]
        on_host = isinstance(ids, np.ndarray)
        if on_host:  # checked here, where reading them costs no device sync; then moved to W's device
            if ids.size and (ids.min() < 0 or ids.max() >= V):
                raise ValueError(f"embedding id out of range: ids span [{ids.min()}, {ids.max()}] but the table has {V} rows")
            ids = like(ids, W)
        out, self._cache = K.embedding_forward(ids, W, self.padding_idx)  # (..., D)
        if not on_host:
            # ids made on the GPU: a check read back would stop the device at every step, and
            # CuPy wraps a bad id around silently, so its row becomes NaN instead (the loss
            # turns NaN and the trainer stops at its next read)
            ok = (ids >= 0) & (ids < V)  # (...)
            out = xp.where(ok[..., None], out, out.dtype.type(np.nan))  # (..., D)
        return out

    def backward(self, dout):
        K.embedding_backward(dout, self._pop_cache(), dW=self.grads["weight"])  # accumulates in place
        return None


class LayerNorm(Module):
    """y = weight * (x - mean) / sqrt(var + eps) + bias over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-12):
        super().__init__()
        self.add_param("weight", np.ones(dim, dtype=np.float32))
        self.add_param("bias", np.zeros(dim, dtype=np.float32))
        self.eps = eps

    def forward(self, x):
        y, self._cache = K.layernorm_forward(x, self.params["weight"], self.params["bias"], self.eps)
        return y

    def backward(self, dout):
        dx, dgamma, dbeta = K.layernorm_backward(dout, self._pop_cache())
        self.grads["weight"] += dgamma
        self.grads["bias"] += dbeta
        return dx


class Dropout(Module):
    """Inverted dropout in training mode, identity in eval mode. Masks come from `rng`."""

    def __init__(self, p: float, rng: RNG):
        super().__init__()
        self.p = p
        self.rng = rng

    def forward(self, x):
        mask = None
        if self.training and self.p > 0:
            mask = K.dropout_mask(self.rng, x.shape, self.p, x.dtype)
        y, mask = K.dropout_forward(x, mask)
        self._cache = (mask,)  # a tuple, so "no mask" still counts as "forward ran"
        return y

    def backward(self, dout):
        (mask,) = self._pop_cache()
        return K.dropout_backward(dout, mask)
