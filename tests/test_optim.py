"""Tests for minibert.optim: AdamW against torch, BertAdam against its equations, schedules,
clipping, gradient helpers, exact resume and argument validation."""
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import HostReads
from minibert.optim import (
    SCHEDULES,
    AdamW,
    BertAdam,
    clip_grad_norm,
    clip_grad_norm_per_tensor,
    constant,
    constant_with_warmup,
    default_no_decay,
    linear_warmup_decay,
    make_schedule,
    scale_grads,
    zero_grads,
)


# ---- helpers -------------------------------------------------------------------------------


class TinyNet(torch.nn.Module):
    """Two Linear layers and a LayerNorm, so HF-style names exercise the no-decay grouping."""

    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(5, 7)
        self.LayerNorm = torch.nn.LayerNorm(7)
        self.decoder = torch.nn.Linear(7, 3)

    def forward(self, x):
        return self.decoder(torch.tanh(self.LayerNorm(self.dense(x))))


def torch_net(seed=0):
    torch.manual_seed(seed)
    net = TinyNet().double()
    with torch.no_grad():  # LayerNorm starts at (1, 0); make it non-trivial so decay is visible
        net.LayerNorm.weight.add_(0.3 * torch.randn(7, dtype=torch.float64))
        net.LayerNorm.bias.add_(0.3 * torch.randn(7, dtype=torch.float64))
    return net


def random_params(rng, dtype=np.float64):
    shapes = {
        "bert.encoder.layer.0.attention.self.query.weight": (4, 3),
        "bert.encoder.layer.0.attention.self.query.bias": (4,),
        "bert.encoder.layer.0.output.LayerNorm.weight": (4,),
        "bert.encoder.layer.0.output.LayerNorm.bias": (4,),
        "cls.predictions.decoder.weight": (2, 4),
    }
    return {n: rng.standard_normal(s).astype(dtype) for n, s in shapes.items()}


def random_grads(rng, params, scale=1.0):
    return {n: (scale * rng.standard_normal(p.shape)).astype(p.dtype) for n, p in params.items()}


# ---- AdamW vs torch ------------------------------------------------------------------------


@pytest.mark.parametrize("clip", [True, False])
def test_adamw_follows_torch_with_linear_schedule_and_clipping(clip):
    from transformers import get_linear_schedule_with_warmup

    net = torch_net()
    names = [n for n, _ in net.named_parameters()]
    assert {n for n in names if default_no_decay(n)} == {
        "dense.bias", "LayerNorm.weight", "LayerNorm.bias", "decoder.bias"
    }
    base_lr, wd, total, warmup, max_norm = 1e-2, 0.01, 20, 5, 8.0  # norms here are 5..12
    groups = [
        {"params": [p for n, p in net.named_parameters() if not default_no_decay(n)], "weight_decay": wd},
        {"params": [p for n, p in net.named_parameters() if default_no_decay(n)], "weight_decay": 0.0},
    ]
    topt = torch.optim.AdamW(groups, lr=base_lr, betas=(0.9, 0.999), eps=1e-6)
    tsched = get_linear_schedule_with_warmup(topt, warmup, total)

    params = {n: p.detach().numpy().copy() for n, p in net.named_parameters()}
    grads = {n: np.zeros_like(p) for n, p in params.items()}
    refs = dict(params)  # the arrays a model would hold: must be updated in place
    opt = AdamW(params, lr=base_lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=wd)
    sched = make_schedule("linear", total, warmup)

    gen = torch.Generator().manual_seed(1)
    worst, clipped = 0.0, 0
    for step in range(total):
        x = torch.randn(8, 5, generator=gen, dtype=torch.float64)
        y = torch.randn(8, 3, generator=gen, dtype=torch.float64)
        topt.zero_grad()
        loss = 0.3 * ((net(x) - y) ** 2).sum()
        loss.backward()
        zero_grads(grads)
        for n, p in net.named_parameters():
            grads[n] += p.grad.numpy()

        if clip:
            tnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm).item()
            norm = clip_grad_norm(grads, max_norm)
            assert float(norm) == pytest.approx(tnorm, rel=1e-13)
            clipped += tnorm > max_norm
        lr = base_lr * sched(opt.step_count)
        assert lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-15, abs=0)
        topt.step()
        tsched.step()
        opt.step(grads, lr=lr)

        for n, p in net.named_parameters():
            assert params[n] is refs[n]
            expected = p.detach().numpy()
            np.testing.assert_allclose(params[n], expected, rtol=1e-12, atol=0, err_msg=f"step {step} {n}")
            worst = max(worst, float(np.max(np.abs(params[n] - expected) / np.abs(expected))))
        for n, p in net.named_parameters():  # the moments agree too
            np.testing.assert_allclose(opt.exp_avg[n], topt.state[p]["exp_avg"].numpy(), rtol=1e-12)
            np.testing.assert_allclose(opt.exp_avg_sq[n], topt.state[p]["exp_avg_sq"].numpy(), rtol=1e-12)
    assert opt.step_count == total
    if clip:
        assert 0 < clipped < total  # both branches of the clipping were exercised
    assert worst < 1e-12  # measured: ~1.5e-15


def test_adamw_constant_lr_and_weight_decay_actually_decay():
    """Zero gradients: AdamW only shrinks decayed parameters, by exactly (1 - lr*wd) per step."""
    rng = np.random.default_rng(0)
    params = random_params(rng)
    before = {n: p.copy() for n, p in params.items()}
    opt = AdamW(params, lr=0.1, weight_decay=0.5)
    zeros = {n: np.zeros_like(p) for n, p in params.items()}
    for _ in range(3):
        opt.step(zeros)
    for n, p in params.items():
        factor = 1.0 if default_no_decay(n) else (1 - 0.1 * 0.5) ** 3
        np.testing.assert_allclose(p, before[n] * factor, rtol=1e-14)


def test_adamw_keeps_float32():
    rng = np.random.default_rng(0)
    params = random_params(rng, np.float32)
    opt = AdamW(params, lr=1e-3)
    for _ in range(3):
        opt.step(random_grads(rng, params), lr=2e-3)
    for n, p in params.items():
        assert p.dtype == np.float32
        assert opt.exp_avg[n].dtype == np.float32 and opt.exp_avg_sq[n].dtype == np.float32
    norm = clip_grad_norm(random_grads(rng, params), 0.5)
    assert isinstance(float(norm), float)


def test_custom_no_decay_predicate():
    rng = np.random.default_rng(0)
    params = random_params(rng)
    opt = AdamW(params, no_decay=lambda n: n.startswith("cls."))
    assert opt.no_decay == {"cls.predictions.decoder.weight"}


# ---- BertAdam --------------------------------------------------------------------------------


def bert_adam_reference(theta, grads_seq, lrs, b1, b2, eps, wd):
    """BertAdam written out element by element, in plain Python floats."""
    theta = [float(t) for t in theta]
    m = [0.0] * len(theta)
    v = [0.0] * len(theta)
    for g, lr in zip(grads_seq, lrs):
        for i in range(len(theta)):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            update = m[i] / (math.sqrt(v[i]) + eps) + wd * theta[i]
            theta[i] = theta[i] - lr * update
    return theta


def test_bert_adam_matches_scalar_reference():
    rng = np.random.default_rng(3)
    params = random_params(rng)
    start = {n: p.copy() for n, p in params.items()}
    b1, b2, eps, wd = 0.8, 0.99, 1e-6, 0.05
    opt = BertAdam(params, lr=0.01, betas=(b1, b2), eps=eps, weight_decay=wd)
    assert opt.bias_correction is False
    lrs = [0.01, 0.02, 0.005, 0.01]
    seq = [random_grads(rng, params) for _ in lrs]
    for g, lr in zip(seq, lrs):
        opt.step(g, lr=lr)
    for n, p in params.items():
        expected = bert_adam_reference(
            start[n].ravel(), [g[n].ravel() for g in seq], lrs, b1, b2, eps, 0.0 if default_no_decay(n) else wd
        )
        np.testing.assert_allclose(p.ravel(), expected, rtol=1e-14, atol=0, err_msg=n)


def test_bert_adam_first_update_has_no_bias_correction():
    """With m = (1-β1)g and v = (1-β2)g², the first update is (1-β1)/sqrt(1-β2)·sign(g)·lr."""
    params = {"w": np.array([2.0, -3.0])}
    opt = BertAdam(params, lr=1.0, eps=1e-12, weight_decay=0.0)
    opt.step({"w": np.array([0.5, -4.0])})
    step = 0.1 / math.sqrt(0.001)
    np.testing.assert_allclose(params["w"], [2.0 - step, -3.0 + step], rtol=1e-9)


def test_bert_adam_first_step_under_warmup_has_lr_zero():
    rng = np.random.default_rng(4)
    params = random_params(rng)
    start = {n: p.copy() for n, p in params.items()}
    base_lr = 1e-2
    opt = BertAdam(params, lr=base_lr)
    sched = make_schedule("linear", total_steps=10, warmup_steps=2)
    g = random_grads(rng, params)
    opt.step(g, lr=base_lr * sched(opt.step_count))
    for n, p in params.items():
        assert np.array_equal(p, start[n])  # lr 0: nothing moved, not even by weight decay
        np.testing.assert_allclose(opt.exp_avg[n], 0.1 * g[n], rtol=1e-15)  # but the moments did
    assert sched(opt.step_count) == 0.5
    opt.step(g, lr=base_lr * sched(opt.step_count))
    assert not np.array_equal(params["cls.predictions.decoder.weight"], start["cls.predictions.decoder.weight"])


@settings(max_examples=30, deadline=None)
@given(
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.0, 0.9999),
    eps=st.floats(1e-9, 1e-2),
    wd=st.floats(0.0, 0.5),
    lr=st.floats(0.0, 0.1),
    seed=st.integers(0, 2**32 - 1),
)
def test_bert_adam_equals_adamw_without_bias_correction(b1, b2, eps, wd, lr, seed):
    """Weight decay inside the lr-scaled update = decoupled decay, algebraically."""
    rng = np.random.default_rng(seed)
    p1 = random_params(rng)
    p2 = {n: p.copy() for n, p in p1.items()}
    a = BertAdam(p1, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    b = AdamW(p2, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, bias_correction=False)
    for _ in range(3):
        g = random_grads(rng, p1)
        a.step(g)
        b.step(g)
    for n in p1:
        np.testing.assert_allclose(p1[n], p2[n], rtol=1e-12, atol=1e-15)


# ---- schedules -------------------------------------------------------------------------------


def test_linear_warmup_decay_key_steps():
    s = [linear_warmup_decay(i, 10, 2) for i in range(13)]
    assert s[0] == 0.0 and s[1] == 0.5 and s[2] == 1.0
    assert s[6] == 0.5 and s[10] == 0.0 and s[12] == 0.0
    assert linear_warmup_decay(0, 10, 0) == 1.0 and linear_warmup_decay(5, 10, 0) == 0.5
    assert linear_warmup_decay(10, 10, 10) == 0.0  # warmup == total: up then straight to 0


def test_schedules_match_transformers():
    from transformers import (
        get_constant_schedule,
        get_constant_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    def hf_multipliers(make, n):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = make(opt)
        out = []
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    total, warmup = 17, 4
    for name, make in [
        ("linear", lambda o: get_linear_schedule_with_warmup(o, warmup, total)),
        ("constant", lambda o: get_constant_schedule(o)),
        ("constant_with_warmup", lambda o: get_constant_schedule_with_warmup(o, warmup)),
    ]:
        ours = make_schedule(name, total, warmup)
        np.testing.assert_allclose(
            [ours(i) for i in range(total + 3)], hf_multipliers(make, total + 3), rtol=1e-15, atol=0, err_msg=name
        )


def test_linear_matches_tinybert_warmup_linear():
    """TinyBERT's warmup_linear(x = s/t_total, w) with warmup_steps = w·t_total."""

    def warmup_linear(x, warmup=0.1):
        return x / warmup if x < warmup else max((x - 1.0) / (warmup - 1.0), 0.0)

    total = 200
    for s in range(total + 5):
        assert linear_warmup_decay(s, total, 20) == pytest.approx(warmup_linear(s / total), rel=1e-12, abs=1e-15)


def test_constant_schedules():
    assert constant(0) == constant(10**6) == 1.0
    assert [constant_with_warmup(s, warmup_steps=4) for s in (0, 1, 4, 100)] == [0.0, 0.25, 1.0, 1.0]
    assert constant_with_warmup(0, warmup_steps=0) == 1.0
    assert set(SCHEDULES) >= {"linear", "linear_warmup_decay", "constant", "constant_with_warmup"}


def test_schedule_errors():
    with pytest.raises(ValueError, match=r"unknown schedule 'cosine'.*constant.*linear"):
        make_schedule("cosine", 10, 1)
    with pytest.raises(ValueError, match="warmup_steps"):
        make_schedule("linear", 10, 11)
    with pytest.raises(ValueError, match="total_steps"):
        make_schedule("linear", 0, 0)
    with pytest.raises(ValueError, match="step"):
        linear_warmup_decay(-1, 10, 1)


# ---- clipping and gradient helpers ------------------------------------------------------------


def test_clip_grad_norm_global_matches_torch():
    rng = np.random.default_rng(5)
    grads = random_grads(rng, random_params(rng), scale=3.0)
    tgrads = [torch.tensor(g) for g in grads.values()]
    for t in tgrads:
        t.grad = t.clone()
    before = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    tnorm = torch.nn.utils.clip_grad_norm_(tgrads, 1.5).item()
    norm = clip_grad_norm(grads, 1.5)
    assert float(norm) == pytest.approx(before, rel=1e-14) == tnorm
    after = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    assert after == pytest.approx(1.5, rel=1e-5)
    for g, t in zip(grads.values(), tgrads):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-14)


def test_clip_grad_norm_leaves_small_gradients_alone():
    rng = np.random.default_rng(6)
    grads = random_grads(rng, random_params(rng), scale=0.01)
    copy = {n: g.copy() for n, g in grads.items()}
    clip_grad_norm(grads, 1.0)
    assert all(np.array_equal(grads[n], copy[n]) for n in grads)


def test_clipping_never_reads_back_to_the_host():
    """Norm and scale stay arrays (on CuPy: on the device), so a step needs no synchronisation."""
    rng = np.random.default_rng(8)
    grads = {n: g.view(HostReads) for n, g in random_grads(rng, random_params(rng), scale=3.0).items()}
    HostReads.reads = 0
    norm = clip_grad_norm(grads, 1.0)
    norms = clip_grad_norm_per_tensor(grads, 0.5)
    assert HostReads.reads == 0
    assert all(isinstance(n, (np.ndarray, np.generic)) for n in [norm, *norms.values()])  # not Python floats


def test_clip_grad_norm_per_tensor():
    rng = np.random.default_rng(7)
    grads = random_grads(rng, random_params(rng))
    grads["bert.encoder.layer.0.attention.self.query.bias"] *= 1e-3  # one tensor below the limit
    copy = {n: g.copy() for n, g in grads.items()}
    norms = clip_grad_norm_per_tensor(grads, 0.5)
    for n, g in grads.items():
        before = np.linalg.norm(copy[n])
        assert float(norms[n]) == pytest.approx(before, rel=1e-14)
        t = torch.tensor(copy[n])
        t.grad = t.clone()
        torch.nn.utils.clip_grad_norm_([t], 0.5)
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-14)
        if before > 0.5:
            assert np.linalg.norm(g) == pytest.approx(0.5, rel=1e-5)
        else:
            assert np.array_equal(g, copy[n])


def test_zero_and_scale_grads_in_place():
    rng = np.random.default_rng(8)
    grads = random_grads(rng, random_params(rng))
    refs = dict(grads)
    copy = {n: g.copy() for n, g in grads.items()}
    scale_grads(grads, 0.25)
    for n in grads:
        assert grads[n] is refs[n]
        np.testing.assert_array_equal(grads[n], copy[n] * 0.25)
    zero_grads(grads)
    assert all(grads[n] is refs[n] and not grads[n].any() for n in grads)


def test_accumulate_then_scale_is_the_mean():
    rng = np.random.default_rng(9)
    params = random_params(rng)
    micro = [random_grads(rng, params) for _ in range(4)]
    grads = {n: np.zeros_like(p) for n, p in params.items()}
    zero_grads(grads)
    for g in micro:
        for n in grads:
            grads[n] += g[n]
    scale_grads(grads, 1 / 4)
    for n in grads:
        np.testing.assert_allclose(grads[n], np.mean([g[n] for g in micro], axis=0), rtol=1e-14)


# ---- exact resume ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [AdamW, BertAdam])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_dict_round_trip_is_bit_exact(cls, dtype):
    rng = np.random.default_rng(10)
    params = random_params(rng, dtype)
    grads_seq = [random_grads(rng, params) for _ in range(10)]
    sched = make_schedule("linear", 10, 3)
    opt = cls(params, lr=1e-2, weight_decay=0.1)
    for g in grads_seq[:5]:
        opt.step(g, lr=1e-2 * sched(opt.step_count))

    meta, arrays = opt.state_dict()
    meta = json.loads(json.dumps(meta))  # must survive JSON
    assert meta["step_count"] == 5 and meta["kind"] == cls.__name__
    assert set(arrays) == {f"{k}.{n}" for k in ("exp_avg", "exp_avg_sq") for n in params}
    assert all(isinstance(a, np.ndarray) and a.dtype == dtype for a in arrays.values())
    arrays = {k: a.copy() for k, a in arrays.items()}

    params2 = {n: p.copy() for n, p in params.items()}
    opt2 = cls(params2, lr=123.0, weight_decay=0.0)  # hyperparameters come from the state
    opt2.load_state_dict(meta, arrays)
    assert opt2.step_count == 5 and opt2.lr == 1e-2 and opt2.weight_decay == 0.1
    for g in grads_seq[5:]:
        opt.step(g, lr=1e-2 * sched(opt.step_count))
        opt2.step(g, lr=1e-2 * sched(opt2.step_count))
    for n in params:
        assert np.array_equal(params[n], params2[n]), n
        assert np.array_equal(opt.exp_avg_sq[n], opt2.exp_avg_sq[n]), n


def test_state_dict_arrays_are_copies():
    rng = np.random.default_rng(11)
    params = random_params(rng)
    opt = AdamW(params)
    opt.step(random_grads(rng, params))
    _, arrays = opt.state_dict()
    key = "exp_avg.cls.predictions.decoder.weight"
    arrays[key][...] = 7.0
    assert not np.any(opt.exp_avg["cls.predictions.decoder.weight"] == 7.0)


def test_load_state_dict_errors():
    rng = np.random.default_rng(12)
    params = random_params(rng)
    meta, arrays = AdamW(params).state_dict()
    with pytest.raises(ValueError, match="AdamW"):
        BertAdam(params).load_state_dict(meta, arrays)
    with pytest.raises(ValueError, match="query.bias"):
        AdamW({n: p for n, p in params.items() if not n.endswith("query.bias")}).load_state_dict(meta, arrays)
    bad = dict(arrays)
    bad["exp_avg.cls.predictions.decoder.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="decoder.weight"):
        AdamW(params).load_state_dict(meta, bad)
    bad = {k: v for k, v in arrays.items() if k != "exp_avg_sq.cls.predictions.decoder.weight"}
    with pytest.raises(ValueError, match="exp_avg_sq.cls.predictions.decoder.weight"):
        AdamW(params).load_state_dict(meta, bad)
    with pytest.raises(ValueError, match="no-decay"):
        AdamW(params, no_decay=lambda n: False).load_state_dict(meta, arrays)
    with pytest.raises(ValueError, match="step_count"):
        AdamW(params).load_state_dict({k: v for k, v in meta.items() if k != "step_count"}, arrays)
    with pytest.raises(ValueError, match="betas"):
        AdamW(params).load_state_dict({**meta, "betas": [0.9, 1.5]}, arrays)


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": -1e-3}, "learning rate"),
        ({"lr": float("nan")}, "learning rate"),
        ({"betas": (-0.1, 0.999)}, r"betas\[0\]"),
        ({"betas": (0.9, 1.0)}, r"betas\[1\]"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-8}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
    ],
)
@pytest.mark.parametrize("cls", [AdamW, BertAdam])
def test_bad_hyperparameters(cls, kwargs, match):
    params = random_params(np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        cls(params, **kwargs)


def test_bad_gradients_name_the_parameter():
    rng = np.random.default_rng(13)
    params = random_params(rng)
    before = {n: p.copy() for n, p in params.items()}
    opt = AdamW(params)
    good = random_grads(rng, params)

    missing = {n: g for n, g in good.items() if n != "cls.predictions.decoder.weight"}
    with pytest.raises(ValueError, match="no gradient.*cls.predictions.decoder.weight"):
        opt.step(missing)
    with pytest.raises(ValueError, match="unknown.*cls.seq_relationship.bias"):
        opt.step({**good, "cls.seq_relationship.bias": np.zeros(2)})
    with pytest.raises(ValueError, match=r"query.weight.*shape \(3, 4\)"):
        opt.step({**good, "bert.encoder.layer.0.attention.self.query.weight": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="query.bias.*float32"):
        opt.step({**good, "bert.encoder.layer.0.attention.self.query.bias": np.zeros(4, np.float32)})
    with pytest.raises(ValueError, match="learning rate"):
        opt.step(good, lr=-1.0)
    # a rejected step changes nothing
    assert opt.step_count == 0
    assert all(np.array_equal(params[n], before[n]) for n in params)


def test_rejects_empty_or_integer_params():
    with pytest.raises(ValueError, match="empty"):
        AdamW({})
    with pytest.raises(ValueError, match="ids"):
        AdamW({"ids": np.zeros(3, dtype=np.int64)})
