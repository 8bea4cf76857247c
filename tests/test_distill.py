"""TinyBERT distillation: mapping, fit_dense, the four losses, and whole-student gradient checks.

Float64 central differences with random upstream weights throughout. The attention loss is
checked with entries at or below -100 in both tensors (padded keys at -10000 and genuine
scores far below the threshold): the clamp gives them zero gradient, and the numerical
derivative there is 0 as well because the finite-difference step never crosses -100.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibert import BertForSequenceClassification, BertModel
from minibert.distill import (CLAMP_THRESHOLD, Distiller, FitDense, attention_loss_backward, attention_loss_forward,
                              hidden_loss_backward, hidden_loss_forward, layer_mapping, prediction_loss_backward,
                              prediction_loss_forward)
from minibert.model import MASK_VALUE
from conftest import assert_grad_close, gradcheck, numerical_grad, random_batch, small_config

SETTINGS = settings(max_examples=10, deadline=None)
MODEL_SETTINGS = settings(max_examples=6, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def random_scores(rng, shape, mask):
    """Scores like a model's: O(1) values, -10000 added at padded keys, and ~15% genuine
    entries far below the clamp threshold. Nothing lies within 50 of -100."""
    s = rng.standard_normal(shape) * 3 + ((1 - mask) * MASK_VALUE)[:, None, None, :]
    low = rng.random(shape) < 0.15
    return np.where(low, rng.uniform(-400.0, -150.0, shape), s)


# ----------------------------------------------------------------------------- mapping


def test_layer_mapping():
    assert layer_mapping(4, 12) == [3, 6, 9, 12]
    assert layer_mapping(6, 12) == [2, 4, 6, 8, 10, 12]
    assert layer_mapping(12, 12) == list(range(1, 13))
    assert layer_mapping(4, 12, "top") == [9, 10, 11, 12]
    assert layer_mapping(4, 12, "bottom") == [1, 2, 3, 4]
    assert layer_mapping(5, 12, "top") == [8, 9, 10, 11, 12]
    with pytest.raises(ValueError, match="multiple"):
        layer_mapping(5, 12)
    with pytest.raises(ValueError, match="more layers"):
        layer_mapping(13, 12, "top")
    with pytest.raises(ValueError, match="strategy"):
        layer_mapping(4, 12, "random")
    with pytest.raises(ValueError, match="positive"):
        layer_mapping(0, 12)


# ------------------------------------------------------------------------- the losses


def clamp_reference(x):
    return x * (x > CLAMP_THRESHOLD)  # the clamp written another way: x where x > -100, else 0


@SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), nh=st.integers(1, 3), M=st.integers(1, 3), k=st.integers(1, 2),
       strategy=st.sampled_from(["uniform", "top", "bottom"]), pad=st.booleans(), seed=seeds)
def test_attention_loss_value_and_gradient(b, t, nh, M, k, strategy, pad, seed):
    rng = np.random.default_rng(seed)
    N = M * k
    mapping = layer_mapping(M, N, strategy)
    _, _, mask = random_batch(rng, b, t, pad)
    student = [random_scores(rng, (b, nh, t, t), mask) for _ in range(M)]
    teacher = [random_scores(rng, (b, nh, t, t), mask) for _ in range(N)]
    loss, cache = attention_loss_forward(student, teacher, mapping)
    # the paper's form: per layer, the mean over heads of per-head MSEs
    ref = sum(np.mean([np.mean((clamp_reference(student[m][:, h]) - clamp_reference(teacher[g - 1][:, h])) ** 2)
                       for h in range(nh)]) for m, g in enumerate(mapping))
    np.testing.assert_allclose(float(loss), ref, rtol=1e-12)
    dloss = rng.standard_normal()
    grads = attention_loss_backward(dloss, cache)
    for m in range(M):
        clamped = student[m] <= CLAMP_THRESHOLD
        assert np.all(grads[m][clamped] == 0), "clamped student entries must get no gradient"
        f = lambda: dloss * float(attention_loss_forward(student, teacher, mapping)[0])
        # the loss is piecewise quadratic, so a large step is exact, and 1e-3 never crosses -100
        num = numerical_grad(f, student[m], eps=1e-3)
        assert np.all(num[clamped] == 0)
        assert_grad_close(grads[m], num, rtol=1e-6, atol=1e-9, name=f"attention layer {m}")


@SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), d=st.integers(1, 4), M=st.integers(1, 3), k=st.integers(1, 2),
       strategy=st.sampled_from(["uniform", "top", "bottom"]), seed=seeds)
def test_hidden_loss_value_and_gradient(b, t, d, M, k, strategy, seed):
    rng = np.random.default_rng(seed)
    mapping = layer_mapping(M, M * k, strategy)
    student = [rng.standard_normal((b, t, d)) for _ in range(M + 1)]
    teacher = [rng.standard_normal((b, t, d)) for _ in range(M * k + 1)]
    for pairs in ([(0, 0)], list(enumerate(mapping, 1))):  # L_emb: embeddings with embeddings; L_hid: the layers
        loss, cache = hidden_loss_forward(student, teacher, pairs)
        np.testing.assert_allclose(float(loss), sum(np.mean((student[m] - teacher[g]) ** 2) for m, g in pairs),
                                   rtol=1e-12)
        dloss = rng.standard_normal()
        grads = hidden_loss_backward(dloss, cache)
        f = lambda: dloss * float(hidden_loss_forward(student, teacher, pairs)[0])
        read = {m for m, _ in pairs}
        for m in range(M + 1):
            if m in read:
                assert_grad_close(grads[m], numerical_grad(f, student[m]), name=f"hidden state {m}")
            else:
                assert grads[m] is None  # a state no pair reads gets no gradient at all


@SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), ds=st.integers(1, 4), dt=st.integers(1, 4), M=st.integers(1, 3),
       shared=st.booleans(), seed=seeds)
def test_fit_dense_and_hidden_loss_gradient(b, t, ds, dt, M, shared, seed):
    rng = np.random.default_rng(seed)
    mapping = layer_mapping(M, 2 * M)
    fit = FitDense(ds, dt, M + 1, shared=shared, std=0.5, seed=seed).astype(np.float64)
    for p in fit.named_parameters().values():  # nonzero biases too
        p += rng.standard_normal(p.shape) * 0.1
    student = [rng.standard_normal((b, t, ds)) for _ in range(M + 1)]
    teacher = [rng.standard_normal((b, t, dt)) for _ in range(2 * M + 1)]
    w_emb, w_hid = rng.standard_normal(2)  # the embedding and hidden losses read one projection
    emb, hid = [(0, 0)], list(enumerate(mapping, 1))

    def f():
        y = fit.forward(student)
        return float(w_emb * hidden_loss_forward(y, teacher, emb)[0] + w_hid * hidden_loss_forward(y, teacher, hid)[0])

    fit.zero_grad()
    y = fit.forward(student)
    d_emb = hidden_loss_backward(w_emb, hidden_loss_forward(y, teacher, emb)[1])
    d_hid = hidden_loss_backward(w_hid, hidden_loss_forward(y, teacher, hid)[1])
    dstudent = fit.backward([a if a is not None else b for a, b in zip(d_emb, d_hid)])
    for m in range(M + 1):
        assert_grad_close(dstudent[m], numerical_grad(f, student[m]), name=f"student state {m}")
    grads = fit.named_gradients()
    for name, p in fit.named_parameters().items():
        assert_grad_close(grads[name], numerical_grad(f, p), name=name)


def test_fit_dense_names_init_and_missing_gradients():
    shared = FitDense(312, 768, 5, seed=0)
    p = shared.named_parameters()
    assert set(p) == {"fit_dense.weight", "fit_dense.bias"}
    assert p["fit_dense.weight"].shape == (768, 312) and p["fit_dense.weight"].dtype == np.float32
    assert abs(p["fit_dense.weight"].std() - 0.02) < 0.001 and abs(p["fit_dense.weight"].mean()) < 0.001
    assert np.all(p["fit_dense.bias"] == 0)
    per_layer = FitDense(6, 8, 3, shared=False).named_parameters()
    assert set(per_layer) == {f"fit_denses.{i}.{w}" for i in range(3) for w in ("weight", "bias")}
    with pytest.raises(ValueError, match="identity"):
        FitDense(6, 8, 3, identity_init=True)
    # a state without upstream gradient (None) counts as a zero gradient
    rng = np.random.default_rng(0)
    hs = [rng.standard_normal((2, 3, 4)) for _ in range(3)]
    dy = [rng.standard_normal((2, 3, 5)) for _ in range(3)]
    for is_shared in (True, False):
        a = FitDense(4, 5, 3, shared=is_shared, seed=1).astype(np.float64)
        a.forward(hs)
        da = a.backward([dy[0], None, dy[2]])
        b = FitDense(4, 5, 3, shared=is_shared, seed=1).astype(np.float64)
        b.forward(hs)
        db = b.backward([dy[0], np.zeros_like(dy[1]), dy[2]])
        np.testing.assert_allclose(da[0], db[0])
        assert da[1] is None or np.all(da[1] == 0)
        for k, g in a.named_gradients().items():
            np.testing.assert_allclose(g, b.named_gradients()[k], err_msg=k)
    with pytest.raises(RuntimeError, match="before forward"):
        a.backward(dy)


@SETTINGS
@given(b=st.integers(1, 3), c=st.integers(1, 4), temperature=st.sampled_from([0.5, 1.0, 2.0]),
       reduction=st.sampled_from(["batchmean", "mean"]), seed=seeds)
def test_prediction_loss_value_and_gradient(b, c, temperature, reduction, seed):
    rng = np.random.default_rng(seed)
    zs, zt = rng.standard_normal((b, c)) * 2, rng.standard_normal((b, c)) * 2
    loss, cache = prediction_loss_forward(zs, zt, temperature, reduction)
    if c == 1:  # regression: MSE against the teacher's output; no temperature, no reduction choice
        ref = np.mean((zs - zt) ** 2)
    else:
        log_ps = zs / temperature - np.log(np.exp(zs / temperature).sum(1, keepdims=True))
        pt = np.exp(zt / temperature) / np.exp(zt / temperature).sum(1, keepdims=True)
        ref = -(pt * log_ps).sum() / (b if reduction == "batchmean" else b * c)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-12)
    dloss = rng.standard_normal()
    f = lambda: dloss * float(prediction_loss_forward(zs, zt, temperature, reduction)[0])
    assert_grad_close(prediction_loss_backward(dloss, cache), numerical_grad(f, zs), name="dlogits")


def test_batchmean_is_c_times_the_reference_mean():
    rng = np.random.default_rng(0)
    zs, zt = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    bm = float(prediction_loss_forward(zs, zt, 1.0, "batchmean")[0])
    mean = float(prediction_loss_forward(zs, zt, 1.0, "mean")[0])
    np.testing.assert_allclose(bm, 3 * mean, rtol=1e-12)


# ----------------------------------------------------------------- the whole student


def check_distillation_gradients(student, teacher_out, distiller, stage, forward_kwargs, rng, k=4, direct=False):
    """Every student parameter and fit_dense gradient vs central differences of the total loss.

    The student's dropout generator is rewound before every forward so each sees the same masks.
    """
    state = student.rng.get_state()

    def objective():
        student.rng.set_state(state)
        return float(distiller(student(**forward_kwargs), teacher_out, stage)["total"])

    student.zero_grad()
    distiller.fit_dense.zero_grad()
    student.rng.set_state(state)
    losses = distiller(student(**forward_kwargs), teacher_out, stage)
    assert all(np.ndim(v) == 0 for v in losses.values())
    if direct:
        student.backward(**distiller.backward())  # the dict is ready for student.backward
    else:
        distiller.backward_into(student)
    grads = {**student.named_gradients(), **distiller.fit_dense.named_gradients()}
    params = {**student.named_parameters(), **distiller.fit_dense.named_parameters()}
    assert len(params) == len(student.named_parameters()) + len(distiller.fit_dense.named_parameters())
    # the objective's rounding (~1e-16 |J|, and J reaches the hundreds with unit-scale weights)
    # divided by the step sets the absolute floor
    # Richardson steps: LayerNorms a few units wide curve enough that a plain 1e-5 step is off
    # by ~3e-5 relative in rare draws. (Scores at padded keys, whose rounding near -10000 made
    # test_model settle on 1e-5, never reach this objective: the clamp zeroes them.)
    atol = 1e-8 + 1e-9 * abs(float(losses["total"]))
    gradcheck(objective, params, grads, rng, k=k, eps=1e-5, rtol=1e-5, atol=atol, richardson=True,
              frozen_rows={"word_embeddings.weight": student.config.pad_token_id})  # as torch's padding_idx
    return losses


def random_weights(rng):
    return {name: float(rng.uniform(0.5, 2.0)) for name in ("att", "hid", "emb", "pred")}


@MODEL_SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), nh=st.integers(1, 2), hs_s=st.integers(1, 3), hs_t=st.integers(1, 3),
       pad=st.booleans(), shared=st.booleans(), strategy=st.sampled_from(["uniform", "top", "bottom"]), seed=seeds)
def test_general_distillation_gradients(b, t, nh, hs_s, hs_t, pad, shared, strategy, seed):
    """Bare encoders (general distillation): att + hid + emb through every tap."""
    rng = np.random.default_rng(seed)
    scfg, tcfg = small_config(nh, hs_s, layers=2), small_config(nh, hs_t, layers=4)
    teacher = BertModel(tcfg, seed=seed).astype(np.float64).eval()
    student = BertModel(scfg, seed=seed + 1).astype(np.float64)
    distiller = Distiller(scfg, tcfg, strategy=strategy, shared_fit_dense=shared, weights=random_weights(rng),
                          fit_dense_std=0.5, seed=seed).astype(np.float64)
    ids, types, mask = random_batch(rng, b, t, pad)
    t_out = teacher(ids, types, mask)
    losses = check_distillation_gradients(student, t_out, distiller, "general",
                                          dict(input_ids=ids, token_type_ids=types, attention_mask=mask), rng,
                                          direct=True)
    assert float(losses["pred"]) == 0
    w = distiller.weights
    np.testing.assert_allclose(float(losses["total"]), w["att"] * float(losses["att"]) + w["hid"] * float(losses["hid"])
                               + w["emb"] * float(losses["emb"]), rtol=1e-12)
    np.testing.assert_allclose(float(losses["rep"]), float(losses["hid"]) + float(losses["emb"]), rtol=1e-12)


@MODEL_SETTINGS
@given(b=st.integers(1, 3), t=st.integers(1, 4), nh=st.integers(1, 2), hs_s=st.integers(1, 3), hs_t=st.integers(1, 3),
       num_labels=st.sampled_from([1, 2, 3]), stage=st.sampled_from(["prediction", "all", "intermediate"]),
       temperature=st.sampled_from([1.0, 2.0]), reduction=st.sampled_from(["batchmean", "mean"]), pad=st.booleans(),
       seed=seeds)
def test_task_distillation_gradients(b, t, nh, hs_s, hs_t, num_labels, stage, temperature, reduction, pad, seed):
    """Classification heads: prediction, all four losses, and intermediate (through student.bert)."""
    rng = np.random.default_rng(seed)
    scfg, tcfg = small_config(nh, hs_s, layers=2), small_config(nh, hs_t, layers=4)
    teacher = BertForSequenceClassification(tcfg, num_labels, seed=seed).astype(np.float64).eval()
    student = BertForSequenceClassification(scfg, num_labels, seed=seed + 1).astype(np.float64)
    distiller = Distiller(scfg, tcfg, weights=random_weights(rng), temperature=temperature, pred_reduction=reduction,
                          fit_dense_std=0.5, seed=seed).astype(np.float64)
    ids, types, mask = random_batch(rng, b, t, pad)
    t_out = teacher(ids, types, mask)
    losses = check_distillation_gradients(student, t_out, distiller, stage,
                                          dict(input_ids=ids, token_type_ids=types, attention_mask=mask), rng)
    if stage == "prediction":
        assert float(losses["att"]) == float(losses["hid"]) == float(losses["emb"]) == 0
    if stage == "intermediate":
        assert float(losses["pred"]) == 0
        assert np.all(student.named_gradients()["classifier.weight"] == 0)  # no head gradient in step 1


def test_task_distillation_gradients_with_dropout():
    rng = np.random.default_rng(4)
    scfg, tcfg = small_config(2, 4, layers=2, dropout=0.1), small_config(2, 5, layers=4, dropout=0.1)
    teacher = BertForSequenceClassification(tcfg, 3, seed=1).astype(np.float64)  # train mode: a constant all the same
    student = BertForSequenceClassification(scfg, 3, seed=2).astype(np.float64)
    distiller = Distiller(scfg, tcfg, shared_fit_dense=False, weights=random_weights(rng), fit_dense_std=0.5,
                          temperature=2.0).astype(np.float64)
    ids, types, mask = random_batch(rng, 2, 5, True)
    check_distillation_gradients(student, teacher(ids, types, mask), distiller, "all",
                                 dict(input_ids=ids, token_type_ids=types, attention_mask=mask), rng, k=6)


@pytest.mark.parametrize("shared", [True, False])
def test_a_student_that_is_the_teacher_has_zero_loss_and_gradient(shared):
    cfg = small_config(nh=2, hs=3, layers=3)
    teacher = BertForSequenceClassification(cfg, 3, seed=5).astype(np.float64).eval()
    student = BertForSequenceClassification(cfg, 3, seed=5).astype(np.float64).eval()
    distiller = Distiller(cfg, cfg, shared_fit_dense=shared, fit_dense_identity=True).astype(np.float64)
    ids, types, mask = random_batch(np.random.default_rng(0), 3, 6, True)
    losses = distiller(student(ids, types, mask), teacher(ids, types, mask), stage="all")
    assert float(losses["att"]) == float(losses["hid"]) == float(losses["emb"]) == 0
    assert float(losses["pred"]) > 0  # the teacher's entropy: the minimum of the soft cross-entropy, not 0
    student.zero_grad()
    distiller.backward_into(student)
    for name, g in {**student.named_gradients(), **distiller.fit_dense.named_gradients()}.items():
        # not bit-exact: softmax(z_T) and exp(log_softmax(z_S)) round differently
        np.testing.assert_allclose(g, 0, atol=1e-14, err_msg=name)
    # the intermediate losses' gradients are exact zeros
    distiller(student(ids, types, mask), teacher(ids, types, mask), stage="general")
    student.zero_grad()
    distiller.fit_dense.zero_grad()
    distiller.backward_into(student)
    for name, g in {**student.named_gradients(), **distiller.fit_dense.named_gradients()}.items():
        assert np.all(g == 0), name


def test_float32_stays_float32():
    scfg, tcfg = small_config(2, 3, layers=2, dropout=0.1), small_config(2, 4, layers=4)
    student = BertForSequenceClassification(scfg, 2, seed=0)
    teacher = BertForSequenceClassification(tcfg, 2, seed=1).eval()
    distiller = Distiller(scfg, tcfg)
    ids, types, mask = random_batch(np.random.default_rng(0), 2, 5, True)
    losses = distiller(student(ids, types, mask), teacher(ids, types, mask), stage="all")
    assert all(v.dtype == np.float32 for v in losses.values())
    grads = distiller.backward()
    arrays = [*grads["dhidden_states"], *grads["dattention_scores"], grads["dlogits"]]
    assert all(a.dtype == np.float32 for a in arrays)
    student.backward(dloss=0.0, **grads)
    assert all(g.dtype == np.float32 for g in student.named_gradients().values())
    assert all(g.dtype == np.float32 for g in distiller.fit_dense.named_gradients().values())


# -------------------------------------------------------------------------- bad input


def test_bad_input_is_named():
    s2, t3 = small_config(nh=2, hs=3, layers=2), small_config(nh=3, hs=2, layers=4)
    with pytest.raises(ValueError, match="same number of attention heads"):
        Distiller(s2, t3)
    Distiller(s2, t3, weights={"att": 0})  # no attention loss, no constraint on heads
    with pytest.raises(ValueError, match="multiple"):
        Distiller(s2, small_config(layers=3))
    with pytest.raises(ValueError, match="unknown loss weight"):
        Distiller(s2, s2, weights={"attention": 1.0})
    with pytest.raises(ValueError, match="temperature"):
        Distiller(s2, s2, temperature=0.0)
    rng = np.random.default_rng(0)
    a = [rng.standard_normal((1, 2, 3, 3))]
    with pytest.raises(ValueError, match="number of heads"):
        attention_loss_forward(a, [rng.standard_normal((1, 3, 3, 3))], [1])
    with pytest.raises(ValueError, match="outside"):
        attention_loss_forward(a, a, [2])
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        prediction_loss_forward(np.zeros((2, 3)), np.zeros((2, 2)))

    tcfg = small_config(layers=4)
    d = Distiller(s2, tcfg).astype(np.float64)
    ids, types, mask = random_batch(rng, 2, 3, True)
    s_out = BertModel(s2).astype(np.float64)(ids, types, mask)
    t_out = BertModel(tcfg).astype(np.float64)(ids, types, mask)
    with pytest.raises(ValueError, match="unknown stage"):
        d(s_out, t_out, stage="pred")
    with pytest.raises(ValueError, match="logits"):
        d(s_out, t_out, stage="prediction")
    with pytest.raises(RuntimeError, match="before forward"):
        Distiller(s2, tcfg).backward()
    with pytest.raises(ValueError, match="expected 2 student attention score tensors, got 4"):
        d(t_out, t_out, stage="general")
    with pytest.raises(ValueError, match="expected 3 student hidden states, got 5"):
        Distiller(s2, tcfg, weights={"att": 0})(t_out, t_out, stage="general")


def test_a_new_loss_is_one_table_entry(monkeypatch):
    """Registering a loss in LOSSES and a stage in STAGE_LOSSES is all the Distiller needs:
    here a second copy of the embedding loss, whose gradients must equal the built-in one's."""
    from minibert import distill

    monkeypatch.setitem(distill.LOSSES, "emb_copy", distill.DistillLoss(
        "hidden", "hidden", lambda s, t, b, o: hidden_loss_forward(s, t, [(0, 0)]), hidden_loss_backward))
    monkeypatch.setitem(distill.STAGE_LOSSES, "copy", ("emb_copy",))
    monkeypatch.setitem(distill.STAGE_LOSSES, "emb_only", ("emb",))
    rng = np.random.default_rng(0)
    scfg, tcfg = small_config(2, 3, layers=2), small_config(2, 4, layers=4)
    teacher = BertModel(tcfg, seed=1).astype(np.float64)
    ids, types, mask = random_batch(rng, 2, 5, True)
    t_out = teacher(ids, types, mask)
    grads = []
    for stage in ("copy", "emb_only"):
        student = BertModel(scfg, seed=2).astype(np.float64)
        distiller = Distiller(scfg, tcfg, seed=3).astype(np.float64)
        losses = distiller(student(ids, types, mask), t_out, stage)
        distiller.backward_into(student)
        grads.append((float(losses["total"]), student.named_gradients(), distiller.fit_dense.named_gradients()))
    assert grads[0][0] == grads[1][0] > 0
    for a, b in zip(grads[0][1:], grads[1][1:]):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
