"""The fast kernels (minibert/fast.py) against the readable reference (minibert/functional.py).

Blocks are shrunk to a few rows so that even hypothesis' small arrays are cut into many
blocks and shared between threads: the block and thread seams are what can go wrong.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibert import fast, functional as F, kernels, threads
from minibert.backend import RNG
from minibert.config import BertConfig
from minibert.model import BertForSequenceClassification
from conftest import assert_grad_close, numerical_grad

SETTINGS = settings(max_examples=20, deadline=None)
dims = st.integers(min_value=1, max_value=5)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


@pytest.fixture(autouse=True)
def tiny_blocks(monkeypatch):
    monkeypatch.setattr(threads, "BLOCK_BYTES", 64)  # 2-16 rows a block
    monkeypatch.setattr(fast, "BLOCK_BYTES", 64)  # dropout_mask's one random chunk per block
    monkeypatch.setenv("MINIBERT_NUM_THREADS", "3")
    monkeypatch.setattr(threads, "ENABLED", True)


def close(a, b, dtype):
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert a.dtype == b.dtype == dtype
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@SETTINGS
@given(shape=st.lists(dims, min_size=2, max_size=4), f32=st.booleans(), seed=seeds)
def test_elementwise_kernels_match_reference(shape, f32, seed):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma, beta = (rng.standard_normal(shape[-1]).astype(dtype) for _ in range(2))
    for name, args in (("gelu", (x,)), ("softmax", (x,)), ("layernorm", (x, gamma, beta, 1e-12))):
        y, cache = getattr(fast, f"{name}_forward")(*args)
        y_ref, cache_ref = getattr(F, f"{name}_forward")(*args)
        close(y, y_ref, dtype)
        g = getattr(fast, f"{name}_backward")(dout, cache)
        g_ref = getattr(F, f"{name}_backward")(dout, cache_ref)
        for a, b in zip(g if isinstance(g, tuple) else (g,), g_ref if isinstance(g_ref, tuple) else (g_ref,)):
            close(a, b, dtype)


def test_use_fast_binds_exactly_the_listed_kernels(restore_kernels):
    """kernels.py is the one switch: FAST_KERNELS come from fast.py or functional.py, the rest always from functional."""
    for enabled in (False, True):
        kernels.use_fast(enabled)
        for name in kernels.FAST_KERNELS:
            assert getattr(kernels, name) is getattr(fast if enabled else F, name), name
        for name in ("embedding_forward", "tanh_backward", "soft_cross_entropy_forward", "mse_backward"):
            assert getattr(kernels, name) is getattr(F, name), name


def test_fast_kernels_hand_other_arrays_to_the_reference():
    """A non-NumPy array (a list here, CuPy on a GPU) takes the reference path: its cache type shows it."""
    _, _, cache = fast.attention_forward(*(np.ones((1, 1, 2, 2)),) * 3, None)
    assert isinstance(cache, fast.FastAttentionCache)
    _, cache = fast.layernorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3))
    assert isinstance(cache, F.LayerNormCache)
    assert fast._fast(np.ones(2)) and not fast._fast(np.ones(2), [1.0, 2.0])


def test_dropout_mask_seeded_unbiased_and_thread_independent(monkeypatch):
    monkeypatch.setattr(fast, "RNG_CHUNK", 1000)  # 40 streams
    shape = (200, 200)
    a = fast.dropout_mask(RNG(7), shape, 0.1, np.dtype(np.float32))
    monkeypatch.setenv("MINIBERT_NUM_THREADS", "1")
    b = fast.dropout_mask(RNG(7), shape, 0.1, np.dtype(np.float32))
    c = fast.dropout_mask(RNG(8), shape, 0.1, np.dtype(np.float32))
    assert a.keep.dtype == bool and np.array_equal(a.keep, b.keep) and not np.array_equal(a.keep, c.keep)
    assert abs((~a.keep).mean() - 0.1) < 0.01 and a.scale == pytest.approx(1 / 0.9)
    # every stream differs: chunks are not copies of each other
    chunks = a.keep.reshape(-1, 1000)
    assert len({c.tobytes() for c in chunks}) == len(chunks)


@SETTINGS
@given(shape=st.lists(dims, min_size=2, max_size=3), p=st.floats(0.05, 0.9), seed=seeds)
def test_dropout_matches_reference_with_the_same_mask(shape, p, seed):
    rng = np.random.default_rng(seed)
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    mask = fast.dropout_mask(RNG(seed), x.shape, p, x.dtype)
    float_mask = mask.keep * (1.0 / (1.0 - p))
    y, m = fast.dropout_forward(x, mask)
    np.testing.assert_allclose(y, F.dropout_forward(x, float_mask)[0], rtol=1e-15)
    np.testing.assert_allclose(fast.dropout_backward(dout, m), F.dropout_backward(dout, float_mask), rtol=1e-15)


@SETTINGS
@given(b=dims, nh=dims, t=dims, hs=dims, pad=st.booleans(), drop=st.booleans(), tap=st.booleans(),
       f32=st.booleans(), seed=seeds)
def test_attention_matches_reference(b, nh, t, hs, pad, drop, tap, f32, seed):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    q, k, v = (rng.standard_normal((b, nh, t, hs)).astype(dtype) for _ in range(3))
    mask = np.ones((b, t), dtype)
    if pad and t > 1:
        mask[:, rng.integers(1, t):] = 0
    mask_add = ((1 - mask) * -10000.0).astype(dtype)[:, None, None, :]
    dmask = fast.dropout_mask(RNG(seed), (b, nh, t, t), 0.3, dtype) if drop else None
    ref_mask = None if dmask is None else (dmask.keep * dmask.scale).astype(dtype)
    ctx, scores, cache = fast.attention_forward(q, k, v, mask_add, dmask)
    ctx_r, scores_r, cache_r = F.attention_forward(q, k, v, mask_add, ref_mask)
    close(ctx, ctx_r, dtype)
    close(scores, scores_r, dtype)
    G = rng.standard_normal(ctx.shape).astype(dtype)
    Gs = rng.standard_normal(scores.shape).astype(dtype) if tap else None
    for a, r in zip(fast.attention_backward(G, cache, Gs), F.attention_backward(G, cache_r, Gs)):
        close(a, r, dtype)


def test_attention_gradcheck():
    """The fast path on its own, float64 central differences through a scores tap and dropout."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 4, 2)) for _ in range(3))
    mask_add = np.zeros((2, 1, 1, 4))
    mask_add[1, ..., 3] = -10000.0
    dmask = fast.dropout_mask(RNG(1), (2, 3, 4, 4), 0.3, q.dtype)
    ctx, scores, cache = fast.attention_forward(q, k, v, mask_add, dmask)
    G, Gs = rng.standard_normal(ctx.shape), rng.standard_normal(scores.shape)
    grads = fast.attention_backward(G, cache, Gs)

    def f():
        c, s, _ = fast.attention_forward(q, k, v, mask_add, dmask)
        return float((c * G).sum() + ((s - mask_add) * Gs).sum())

    for name, x, g in zip("qkv", (q, k, v), grads):
        assert_grad_close(g, numerical_grad(f, x, eps=1e-4), rtol=1e-6, atol=1e-7, name=f"fast attention d{name}")


def test_model_same_with_and_without_fast_kernels(restore_kernels):
    """A whole model, training mode without dropout, forward and every gradient, float64."""
    cfg = BertConfig.from_preset("tiny", vocab_size=50, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, (3, 7))
    attn = np.ones((3, 7), np.int64)
    attn[1, 4:] = 0
    results = []
    for enabled in (False, True):
        kernels.use_fast(enabled)
        model = BertForSequenceClassification(cfg, 2, seed=3).astype(np.float64)
        out = model(ids, attention_mask=attn, labels=np.array([0, 1, 1]))
        model.backward()
        results.append((out.logits, model.named_gradients()))
    (la, ga), (lb, gb) = results
    np.testing.assert_allclose(la, lb, rtol=1e-12)
    for name in ga:
        np.testing.assert_allclose(ga[name], gb[name], rtol=1e-9, atol=1e-14, err_msg=name)


@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=3), din=dims, dout=dims, bias=st.booleans(), f32=st.booleans(), seed=seeds)
def test_linear_matches_reference(shape, din, dout, bias, f32, seed):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    x = rng.standard_normal(shape + [din]).astype(dtype)
    W, b = rng.standard_normal((dout, din)).astype(dtype), rng.standard_normal(dout).astype(dtype)
    b = b if bias else None
    y, cache = fast.linear_forward(x, W, b)
    y_ref, cache_ref = F.linear_forward(x, W, b)
    close(y, y_ref, dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    for a, r in zip(fast.linear_backward(g, cache), F.linear_backward(g, cache_ref)):
        close(a, r, dtype)


@pytest.mark.parametrize("name", ["AdamW", "BertAdam"])
def test_optimizer_blocks_match_whole_arrays(monkeypatch, name):
    """The optimizer updates parameters block by block in threads: same result as whole arrays."""
    from minibert import optim

    rng = np.random.default_rng(0)
    start = {"w": rng.standard_normal((7, 5)), "b": rng.standard_normal(5)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(3)]
    finals = []
    for enabled in (False, True):
        monkeypatch.setattr(threads, "ENABLED", enabled)
        params = {k: v.copy() for k, v in start.items()}
        opt = getattr(optim, name)(params, lr=1e-2, weight_decay=0.1)
        for g in grads:
            opt.step(g)
        finals.append(params)
    for k in start:
        np.testing.assert_allclose(finals[1][k], finals[0][k], rtol=1e-14, atol=1e-15)
        assert not np.allclose(finals[1][k], start[k])


@SETTINGS
@given(n=st.integers(1, 12), c=st.integers(1, 9), f32=st.booleans(), seed=seeds)
def test_cross_entropy_matches_reference(n, c, f32, seed):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    logits = (rng.standard_normal((n, c)) * 4).astype(dtype)
    labels = np.where(rng.random(n) < 0.3, -100, rng.integers(0, c, n))
    loss, cache = fast.cross_entropy_forward(logits, labels)
    loss_r, cache_r = F.cross_entropy_forward(logits, labels)
    assert loss.dtype == dtype
    np.testing.assert_allclose(loss, loss_r, rtol=1e-5 if f32 else 1e-12, atol=1e-6 if f32 else 1e-13)
    close(fast.cross_entropy_backward(0.7, cache), F.cross_entropy_backward(0.7, cache_r), dtype)
    with pytest.raises(ValueError, match="label outside"):
        fast.cross_entropy_forward(logits, np.full(n, c))


def test_float32_gelu_is_exact_to_float32_resolution():
    """The A&S erf used for float32: Phi within 3.5e-7 of float64 scipy on a dense grid, GELU within 5e-7."""
    from scipy.special import ndtr

    x = np.linspace(-12, 12, 400_001).astype(np.float32).reshape(1, -1)
    y, (_, cdf) = fast.gelu_forward(x)
    exact = ndtr(x.astype(np.float64))
    assert y.dtype == cdf.dtype == np.float32
    assert np.abs(cdf - exact).max() < 3.5e-7
    assert np.abs(y - x * exact).max() < 5e-7
    assert np.all(cdf >= 0) and np.all(cdf <= 1)
