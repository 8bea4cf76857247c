"""minibert.kernels is the one place the model takes its kernels from: a swap there reaches a whole model."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minibert import BertForSequenceClassification, functional
from conftest import REPO, random_batch, small_config


def whole_model_gradients():
    """Every named gradient of a small classifier (float64, fixed seed and batch)."""
    cfg = small_config(layers=2)
    model = BertForSequenceClassification(cfg, num_labels=3, seed=1).astype(np.float64)
    ids, types, mask = random_batch(np.random.default_rng(0), 3, 6, pad=True)
    model(ids, types, mask, labels=np.array([0, 2, 1]))
    model.backward()
    return {k: v.copy() for k, v in model.named_gradients().items()}


def broken_layernorm_backward(dout, cache):
    """LayerNorm's backward with one term dropped: dx = rstd * (g - mean(g)), forgetting xhat * mean(g xhat)."""
    xhat, rstd, gamma = cache
    D = xhat.shape[-1]
    g = dout * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True))
    return dx, (dout * xhat).reshape(-1, D).sum(axis=0), dout.reshape(-1, D).sum(axis=0)


@pytest.mark.parametrize("fast", [True, False], ids=["fast kernels", "reference kernels"])
def test_swapping_a_kernel_reaches_the_whole_model_and_restoring_restores_it(fast, restore_kernels):
    kernels = restore_kernels
    kernels.use_fast(fast)
    good = whole_model_gradients()
    original = kernels.layernorm_backward
    kernels.layernorm_backward = broken_layernorm_backward
    broken = whole_model_gradients()
    # Only what sits above the top LayerNorm keeps its gradient (and the key biases, whose true
    # gradient is zero: softmax ignores a shift shared by a row). Everything else went through
    # a broken LayerNorm backward.
    above = ("classifier.", "bert.pooler.", "bert.encoder.layer.1.output.LayerNorm.")
    unchanged = {k for k in good if np.allclose(good[k], broken[k], rtol=1e-6, atol=1e-12)}
    assert {k for k in unchanged if not k.endswith("key.bias")} == {k for k in good if k.startswith(above)}
    assert len(unchanged) == 8 and len(good) == 41
    kernels.layernorm_backward = original
    restored = whole_model_gradients()
    for k in good:
        np.testing.assert_array_equal(restored[k], good[k], err_msg=k)


def test_minibert_fast_0_starts_on_the_reference_kernels():
    """MINIBERT_FAST=0: every kernel is functional.py's, and the swap still reaches the model."""
    code = ("import minibert.kernels as K, minibert.functional as F\n"
            "assert all(getattr(K, n) is getattr(F, n) for n in K.FAST_KERNELS)\n"
            "import minibert.threads as T; assert not T.ENABLED\n")
    env = {**os.environ, "MINIBERT_FAST": "0"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)


def test_the_reference_is_what_the_swap_replaces(restore_kernels):
    """With the reference bound, the model's LayerNorm backward is literally functional.layernorm_backward."""
    kernels = restore_kernels
    kernels.use_fast(False)
    calls = []

    def spy(dout, cache):
        calls.append(dout.shape)
        return functional.layernorm_backward(dout, cache)

    kernels.layernorm_backward = spy
    whole_model_gradients()
    # 2 layers x 2 LayerNorms + the embeddings' one
    assert len(calls) == 5
