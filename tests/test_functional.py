"""Every kernel pair and every loss: float64 central differences with random upstream gradients."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibert import functional as F
from minibert import kernels
from minibert.backend import RNG
from conftest import assert_grad_close, check_kernel, numerical_grad

SETTINGS = settings(max_examples=15, deadline=None)
dims = st.integers(min_value=1, max_value=4)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


@SETTINGS
@given(b=dims, t=dims, din=dims, dout=dims, seed=seeds)
def test_linear(b, t, din, dout, seed):
    rng = np.random.default_rng(seed)
    x, W, bias = rng.standard_normal((b, t, din)), rng.standard_normal((dout, din)), rng.standard_normal(dout)
    check_kernel(F.linear_forward, F.linear_backward, [x, W, bias], rng, "linear")


@SETTINGS
@given(b=dims, t=dims, v=st.integers(1, 6), d=dims, seed=seeds)
def test_embedding_matches_one_hot_reference(b, t, v, d, seed):
    """Repeated ids must add up: compare with the one-hot matmul formulation."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, v, size=(b, t))
    W = rng.standard_normal((v, d))
    out, cache = F.embedding_forward(ids, W)
    dout = rng.standard_normal(out.shape)
    dW = F.embedding_backward(dout, cache)
    onehot = np.eye(v)[ids]  # (B, T, V)
    np.testing.assert_allclose(out, onehot @ W)
    np.testing.assert_allclose(dW, np.einsum("btv,btd->vd", onehot, dout), rtol=1e-12, atol=1e-12)
    f = lambda: float((F.embedding_forward(ids, W)[0] * dout).sum())
    assert_grad_close(dW, numerical_grad(f, W), name="embedding")


def test_embedding_padding_row_and_accumulation():
    """The padding row gets no gradient (torch's padding_idx); dW= accumulates into a given array."""
    rng = np.random.default_rng(0)
    ids = np.array([[0, 2, 2], [1, 0, 3]])
    W = rng.standard_normal((4, 5))
    out, cache = F.embedding_forward(ids, W, padding_idx=0)
    dout = rng.standard_normal(out.shape)
    dW = F.embedding_backward(dout, cache)
    assert np.all(dW[0] == 0) and np.allclose(dW[2], dout[0, 1] + dout[0, 2])
    acc = np.ones_like(W)
    assert F.embedding_backward(dout, cache, dW=acc) is acc
    np.testing.assert_allclose(acc, dW + 1, rtol=1e-15, atol=1e-15)


@SETTINGS
@given(b=dims, t=dims, d=st.integers(3, 6), seed=seeds)
def test_layernorm(b, t, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, t, d)) * 3 + 1
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    check_kernel(F.layernorm_forward, F.layernorm_backward, [x, gamma, beta], rng, "layernorm", eps=1e-12)


@pytest.mark.parametrize("d", [1, 2])
def test_layernorm_of_one_or_two_features_has_no_input_gradient(d):
    """Over 1 or 2 features the normalised output is 0 or (+1, -1)/(-1, +1) whatever x is (a step
    function, see NOT_TWO_WIDE in test_model.py): dx is 0 in exact arithmetic, and central
    differences there measure only rounding (up to ~3e-8 when the two features nearly tie),
    so the input is not finite-differenced; gamma and beta are."""
    rng = np.random.default_rng(d)
    x = rng.standard_normal((3, 4, d)) * 3 + 1
    gamma, beta, G = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal((3, 4, d))
    y, cache = F.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = F.layernorm_backward(G, cache)
    assert np.abs(dx).max() < 1e-7  # rounding only (times 1/std, large when the features nearly tie)
    f = lambda: float((F.layernorm_forward(x, gamma, beta)[0] * G).sum())
    assert_grad_close(dgamma, numerical_grad(f, gamma), name="layernorm gamma")
    assert_grad_close(dbeta, numerical_grad(f, beta), name="layernorm beta")


@pytest.mark.parametrize("name", ["gelu", "gelu_new", "relu"])
@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=3), seed=seeds)
def test_activations(name, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    if name == "relu":
        x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    kernel = kernels.ACTIVATIONS[name]  # config.hidden_act -> the reference pair's name
    fwd, bwd = getattr(F, kernel + "_forward"), getattr(F, kernel + "_backward")
    check_kernel(fwd, bwd, [x], rng, name)


def test_gelu_is_exact_erf_form():
    from math import erf, sqrt
    x = np.linspace(-6, 6, 101)
    ref = np.array([0.5 * v * (1 + erf(v / sqrt(2))) for v in x])
    np.testing.assert_allclose(F.gelu_forward(x)[0], ref, rtol=1e-15, atol=1e-15)
    # the tanh form is a different function (max gap ~1e-3 near |x| ~ 2)
    assert 1e-5 < np.abs(F.gelu_tanh_forward(x)[0] - ref).max() < 1e-2


@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=3), seed=seeds)
def test_softmax_and_tanh(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    check_kernel(F.softmax_forward, F.softmax_backward, [x], rng, "softmax")
    check_kernel(F.tanh_forward, F.tanh_backward, [x], rng, "tanh")


@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=3), p=st.floats(0.05, 0.9), seed=seeds)
def test_dropout(shape, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    mask = F.dropout_mask(RNG(seed), x.shape, p, x.dtype)
    assert set(np.unique(mask)) <= {0.0, 1.0 / (1.0 - p)}
    out, m = F.dropout_forward(x, mask)
    dout = rng.standard_normal(out.shape)
    f = lambda: float((F.dropout_forward(x, mask)[0] * dout).sum())
    assert_grad_close(F.dropout_backward(dout, m), numerical_grad(f, x), name="dropout")


def test_dropout_mask_is_seeded_and_unbiased():
    a = F.dropout_mask(RNG(7), (200, 200), 0.1, np.dtype(np.float32))
    b = F.dropout_mask(RNG(7), (200, 200), 0.1, np.dtype(np.float32))
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert abs((a == 0).mean() - 0.1) < 0.01 and abs(a.mean() - 1.0) < 0.02


@SETTINGS
@given(b=dims, nh=dims, t=dims, hs=dims, pad=st.booleans(), drop=st.booleans(), seed=seeds)
def test_attention_with_scores_tap(b, nh, t, hs, pad, drop, seed):
    """d/d(q,k,v) of sum(context * G) + sum(scores * Gs): the softmax path plus the scores tap."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((b, nh, t, hs)) for _ in range(3))
    mask = np.ones((b, t))
    if pad and t > 1:
        mask[:, rng.integers(1, t):] = 0  # pad the tail of every row, keep key 0 real
    mask_add = ((1 - mask) * -10000.0)[:, None, None, :]
    dmask = F.dropout_mask(RNG(seed), (b, nh, t, t), 0.3, q.dtype) if drop else None
    ctx, scores, cache = F.attention_forward(q, k, v, mask_add, dmask)
    G, Gs = rng.standard_normal(ctx.shape), rng.standard_normal(scores.shape)
    dq, dk, dv = F.attention_backward(G, cache, Gs)

    def f():
        c, s, _ = F.attention_forward(q, k, v, mask_add, dmask)
        # subtract the constant mask so -10000 does not eat the float64 precision
        return float((c * G).sum() + ((s - mask_add) * Gs).sum())

    # scores near -10000 carry ~1e-12 absolute rounding: a larger step keeps it below 1e-8
    for name, x, g in (("q", q, dq), ("k", k, dk), ("v", v, dv)):
        assert_grad_close(g, numerical_grad(f, x, eps=1e-4), rtol=1e-6, atol=1e-7, name=f"attention d{name}")
    # padded keys get no attention and, with no scores tap, no gradient
    if pad and t > 1:
        dq0, dk0, dv0 = F.attention_backward(G, cache, None)
        padded = mask[0] == 0
        assert np.abs(dk0[:, :, padded]).max() < 1e-300 + 1e-12
        assert np.abs(dv0[:, :, padded]).max() == 0


# ------------------------------------------------------------------------------ losses


@SETTINGS
@given(n=st.integers(1, 6), c=st.integers(1, 5), seed=seeds)
def test_cross_entropy_with_ignore_index(n, c, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c)) * 2
    labels = rng.integers(0, c, size=n)
    labels[rng.random(n) < 0.3] = -100
    dloss = rng.standard_normal()
    loss, cache = F.cross_entropy_forward(logits, labels)
    valid = labels != -100
    if valid.any():
        ref = -np.mean([logits[i, labels[i]] - np.log(np.exp(logits[i]).sum()) for i in np.nonzero(valid)[0]])
        np.testing.assert_allclose(float(loss), ref, rtol=1e-12, atol=1e-15)
    else:
        assert float(loss) == 0.0
    g = F.cross_entropy_backward(dloss, cache)
    f = lambda: float(F.cross_entropy_forward(logits, labels)[0]) * dloss
    assert_grad_close(g, numerical_grad(f, logits), name="cross_entropy")
    assert np.all(g[~valid] == 0)


@pytest.mark.parametrize("reduction", ["batchmean", "mean"])
@SETTINGS
@given(n=st.integers(1, 5), c=st.integers(1, 5), t=st.floats(0.5, 4.0), seed=seeds)
def test_soft_cross_entropy(reduction, n, c, t, seed):
    rng = np.random.default_rng(seed)
    zs, zt = rng.standard_normal((n, c)), rng.standard_normal((n, c))
    dloss = rng.standard_normal()
    loss, cache = F.soft_cross_entropy_forward(zs, zt, t, reduction)
    pt = np.exp(zt / t) / np.exp(zt / t).sum(-1, keepdims=True)
    ls = zs / t - np.log(np.exp(zs / t).sum(-1, keepdims=True))
    denom = n if reduction == "batchmean" else n * c
    np.testing.assert_allclose(float(loss), -(pt * ls).sum() / denom, rtol=1e-12, atol=1e-15)
    g = F.soft_cross_entropy_backward(dloss, cache)
    f = lambda: float(F.soft_cross_entropy_forward(zs, zt, t, reduction)[0]) * dloss
    assert_grad_close(g, numerical_grad(f, zs), name="soft_cross_entropy")


@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=3), seed=seeds)
def test_mse(shape, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    dloss = rng.standard_normal()
    loss, cache = F.mse_forward(a, b)
    np.testing.assert_allclose(float(loss), ((a - b) ** 2).mean(), rtol=1e-12)
    f = lambda: float(F.mse_forward(a, b)[0]) * dloss
    assert_grad_close(F.mse_backward(dloss, cache), numerical_grad(f, a), name="mse")


def test_loss_errors_name_the_problem():
    with pytest.raises(ValueError, match="label outside"):
        F.cross_entropy_forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="logits"):
        F.cross_entropy_forward(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="temperature"):
        F.soft_cross_entropy_forward(np.zeros((2, 3)), np.zeros((2, 3)), 0.0)
    with pytest.raises(ValueError, match="differ"):
        F.mse_forward(np.zeros(2), np.zeros(3))


@pytest.mark.parametrize("kernel", ["linear", "layernorm", "gelu", "softmax", "attention"])
def test_float32_stays_float32(kernel):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    if kernel == "linear":
        out, cache = F.linear_forward(x, rng.standard_normal((5, 4)).astype(np.float32), np.zeros(5, np.float32))
        grads = F.linear_backward(np.ones_like(out), cache)
    elif kernel == "layernorm":
        out, cache = F.layernorm_forward(x, np.ones(4, np.float32), np.zeros(4, np.float32))
        grads = F.layernorm_backward(np.ones_like(out), cache)
    elif kernel == "gelu":
        out, cache = F.gelu_forward(x)
        grads = (F.gelu_backward(np.ones_like(out), cache),)
    elif kernel == "softmax":
        out, cache = F.softmax_forward(x)
        grads = (F.softmax_backward(np.ones_like(out), cache),)
    else:
        q = x[None]
        mask_add = np.zeros((1, 1, 1, 3), np.float32)
        out, s, cache = F.attention_forward(q, q, q, mask_add)
        assert s.dtype == np.float32
        grads = F.attention_backward(np.ones_like(out), cache, np.ones_like(s))
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads)
