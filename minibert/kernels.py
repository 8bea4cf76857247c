"""The kernels the model runs: the one place modules take them from.

Every module calls its kernels as attributes of this module, at call time:

    from . import kernels as K
    y, cache = K.layernorm_forward(x, gamma, beta, eps)

so swapping a kernel is one assignment here, and it reaches every module and every model:

    import minibert.kernels
    minibert.kernels.layernorm_backward = my_layernorm_backward   # a notebook's broken version,
                                                                  # a test's spy, a new fast kernel

What runs by default:
- the reference pairs of `functional.py`, the readable code the docs and notebooks derive;
- except the kernels listed in `FAST_KERNELS`, which `use_fast(True)` binds to their blocked,
  threaded versions in `fast.py`. It is called at import unless MINIBERT_FAST=0. A fast kernel
  keeps its reference's signature and results (to float rounding, held there by
  tests/test_fast.py) and hands CuPy arrays to the reference, so on a GPU the reference runs.

This module only chooses; it computes nothing. Where things are: the kernels themselves in
`functional.py` and `fast.py`, the thread pool in `threads.py`, the array library (NumPy or
CuPy) in `backend.py`; the modules that call these in `nn.py`, `model.py` and `losses.py`.
"""
from __future__ import annotations

from . import fast, functional, threads
# The reference kernel pairs. Names listed in FAST_KERNELS are re-bound by use_fast() below.
from .functional import (  # noqa: F401
    IGNORE_INDEX,
    attention_backward,
    attention_forward,
    cosine_distance_backward,
    cosine_distance_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    dropout_mask,
    embedding_backward,
    embedding_forward,
    gelu_backward,
    gelu_forward,
    gelu_tanh_backward,
    gelu_tanh_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    log_softmax,
    mse_backward,
    mse_forward,
    relu_backward,
    relu_forward,
    soft_cross_entropy_backward,
    soft_cross_entropy_forward,
    softmax_backward,
    softmax_forward,
    softmax_kl_backward,
    softmax_kl_forward,
    tanh_backward,
    tanh_forward,
)

# The kernels fast.py replaces, and only these.
FAST_KERNELS = (
    "linear_forward", "linear_backward",
    "gelu_forward", "gelu_backward",
    "softmax_forward", "softmax_backward",
    "layernorm_forward", "layernorm_backward",
    "dropout_mask", "dropout_forward", "dropout_backward",
    "attention_forward", "attention_backward",
    "cross_entropy_forward", "cross_entropy_backward",
)

# The kernels BertModel's forward runs in eval mode, which fast_inference.py's inference path
# stands for (the activations other than "gelu" it looks up through `activation`).
INFERENCE_KERNELS = ("embedding_forward", "layernorm_forward", "linear_forward", "attention_forward",
                     "softmax_forward", "gelu_forward", "dropout_forward", "tanh_forward")


def inference_path_on(array) -> bool:
    """Whether a model with parameters like `array` runs fast_inference.py's forward under no_grad
    in eval mode: NumPy arrays, and each of INFERENCE_KERNELS still bound as use_fast(True) binds
    it. A kernel swapped here, or use_fast(False), turns it off, so it never hides a choice made here."""
    if not isinstance(array, fast.np.ndarray):
        return False
    g = globals()
    return all(g[name] is getattr(fast if name in FAST_KERNELS else functional, name) for name in INFERENCE_KERNELS)


# config.hidden_act -> the kernel pair's name (transformers' names on the left).
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "relu": "relu"}


def activation(name: str):
    """The (forward, backward) pair of config.hidden_act `name`, looked up now (so a swap reaches it)."""
    kernel = ACTIVATIONS[name]
    return globals()[kernel + "_forward"], globals()[kernel + "_backward"]


def use_fast(enabled: bool = True) -> None:
    """Bind every name in FAST_KERNELS to fast.py's version (True) or functional.py's (False).

    Also undoes any assignment made to those names since. A test that compares the two paths
    calls use_fast(False) ... use_fast(True); MINIBERT_FAST=0 starts the process on the reference.
    """
    source = fast if enabled else functional
    for name in FAST_KERNELS:
        globals()[name] = getattr(source, name)


use_fast(threads.ENABLED)
