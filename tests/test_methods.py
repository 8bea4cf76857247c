"""The distillation methods beside TinyBERT: their kernels, the model's q/k/v taps, the method
table, whole-student gradients per method, the teacher cache, and the stages' plumbing.

Float64 central differences against a random upstream gradient throughout; values against
references written the papers' way (loops over layers, heads and tokens).
"""
import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minibert import BertForSequenceClassification, BertModel
from minibert import data as D
from minibert import distill, settings as S
from minibert import functional as F
from minibert import distillation as T
from minibert.distill import LOSSES, METHODS, Distiller
from minibert.distill_losses import (attention_kl_loss_backward, attention_kl_loss_forward, hard_loss_backward,
                                     hard_loss_forward, hidden_cosine_loss_backward, hidden_cosine_loss_forward,
                                     kd_loss_backward, kd_loss_forward, merge_relation_heads, pkd_loss_backward,
                                     pkd_loss_forward, relation_kl_loss_backward, relation_kl_loss_forward,
                                     split_relation_heads)
from minibert.model import MASK_VALUE
from minibert.settings import CorpusSettings, GeneralDistillSettings, TaskDistillSettings
from minibert.teacher_cache import TeacherCache, example_keys
from minibert.settings import TrainArgs
from conftest import check_kernel, gradcheck, random_batch, small_config

SETTINGS = settings(max_examples=8, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def masked_scores(rng, shape, mask, scale=2.0):
    """Scores like a model's: O(1) values, -10000 added at padded keys."""
    return rng.standard_normal(shape) * scale + ((1 - mask) * MASK_VALUE)[:, None, None, :]


# ------------------------------------------------------------------------------ general kernels


@SETTINGS
@given(rows=st.integers(1, 4), k=st.integers(1, 5), seed=seeds)
def test_softmax_kl_value_and_gradient(rows, k, seed):
    rng = np.random.default_rng(seed)
    s, t = rng.standard_normal((2, rows, k)) * 2
    w = rng.uniform(0, 2, rows)
    loss, _ = F.softmax_kl_forward(s, t, w)
    p, q = softmax(t), softmax(s)
    np.testing.assert_allclose(float(loss), (w * (p * np.log(p / q)).sum(-1)).sum(), rtol=1e-12)
    check_kernel(F.softmax_kl_forward, F.softmax_kl_backward, (s, t, w), rng, "softmax_kl")


def test_softmax_kl_of_masked_rows_is_finite_and_masked_entries_get_no_gradient():
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 0]])
    s, t = masked_scores(rng, (1, 2, 3, 3), mask), masked_scores(rng, (1, 2, 3, 3), mask)
    loss, cache = F.softmax_kl_forward(s, t, np.ones((1, 2, 3)))
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(F.softmax_kl_forward(t, t, np.ones((1, 2, 3)))[0]), 0, atol=1e-15)
    assert np.all(F.softmax_kl_backward(1.0, cache)[..., 2] == 0)  # exp(-10000) is 0 on both sides


@SETTINGS
@given(rows=st.integers(1, 4), d=st.integers(1, 5), seed=seeds)
def test_cosine_distance_value_and_gradient(rows, d, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((2, rows, d))
    w = rng.uniform(0, 2, rows)
    loss, _ = F.cosine_distance_forward(x, y, w)
    cos = [x[r] @ y[r] / np.linalg.norm(x[r]) / np.linalg.norm(y[r]) for r in range(rows)]
    np.testing.assert_allclose(float(loss), sum(w[r] * (1 - cos[r]) for r in range(rows)), rtol=1e-10, atol=1e-14)
    check_kernel(F.cosine_distance_forward, F.cosine_distance_backward, (x, y, w), rng, "cosine_distance")


# --------------------------------------------------------------------------- the methods' losses


@SETTINGS
@given(b=st.integers(1, 3), c=st.integers(1, 4), temperature=st.sampled_from([0.5, 1.0, 2.0, 4.0]), seed=seeds)
def test_kd_loss_is_hintons_t_squared_soft_cross_entropy(b, c, temperature, seed):
    rng = np.random.default_rng(seed)
    zs, zt = rng.standard_normal((2, b, c)) * 2
    loss, _ = kd_loss_forward(zs, zt, temperature)
    if c == 1:  # regression: MSE against the teacher, no temperature
        ref = np.mean((zs - zt) ** 2)
    else:
        ref = temperature ** 2 * -(softmax(zt / temperature) * np.log(softmax(zs / temperature))).sum() / b
    np.testing.assert_allclose(float(loss), ref, rtol=1e-12)
    check_kernel(lambda s: kd_loss_forward(s, zt, temperature), kd_loss_backward, (zs,), rng, "kd")


@pytest.mark.parametrize("c", [1, 3])
def test_hard_loss_is_the_gold_labels_cross_entropy_or_mse(c):
    rng = np.random.default_rng(c)
    zs = rng.standard_normal((4, c))
    labels = rng.standard_normal(4) if c == 1 else rng.integers(0, c, 4)
    loss, _ = hard_loss_forward(zs, labels)
    ref = np.mean((zs[:, 0] - labels) ** 2) if c == 1 else -np.mean(np.log(softmax(zs))[np.arange(4), labels])
    np.testing.assert_allclose(float(loss), ref, rtol=1e-12)
    check_kernel(lambda s: hard_loss_forward(s, labels), hard_loss_backward, (zs,), rng, "hard")
    with pytest.raises(ValueError, match="labels"):
        hard_loss_forward(zs, None)


@SETTINGS
@given(b=st.integers(1, 3), t=st.integers(1, 4), d=st.integers(1, 4), pad=st.booleans(), seed=seeds)
def test_hidden_cosine_loss_is_a_mean_over_real_tokens(b, t, d, pad, seed):
    rng = np.random.default_rng(seed)
    _, _, mask = random_batch(rng, b, t, pad)
    hs, ht = rng.standard_normal((2, b, t, d))
    loss, _ = hidden_cosine_loss_forward(hs, ht, mask)
    real = [(i, j) for i in range(b) for j in range(t) if mask[i, j]]
    cos = [hs[i, j] @ ht[i, j] / np.linalg.norm(hs[i, j]) / np.linalg.norm(ht[i, j]) for i, j in real]
    np.testing.assert_allclose(float(loss), np.mean([1 - c for c in cos]), rtol=1e-10, atol=1e-14)
    check_kernel(lambda x: hidden_cosine_loss_forward(x, ht, mask), hidden_cosine_loss_backward, (hs,), rng, "cos")


@SETTINGS
@given(b=st.integers(1, 3), d=st.integers(1, 4), pairs=st.integers(1, 3), seed=seeds)
def test_pkd_loss_is_the_mse_of_normalised_cls_states(b, d, pairs, seed):
    rng = np.random.default_rng(seed)
    s = [rng.standard_normal((b, d)) for _ in range(pairs)]
    t = [rng.standard_normal((b, d)) for _ in range(pairs)]
    loss, cache = pkd_loss_forward(s, t)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = sum(np.mean(((unit(a) - unit(c)) ** 2).sum(1)) for a, c in zip(s, t))  # the paper's form
    np.testing.assert_allclose(float(loss), ref, rtol=1e-10, atol=1e-14)
    dloss = rng.standard_normal()
    grads = pkd_loss_backward(dloss, cache)
    f = lambda: dloss * float(pkd_loss_forward(s, t)[0])
    gradcheck(f, {f"pair {j}": x for j, x in enumerate(s)}, {f"pair {j}": g for j, g in enumerate(grads)},
              name="pkd ")


@SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), nh=st.integers(1, 3), pad=st.booleans(), seed=seeds)
def test_attention_kl_loss_is_minilms_mean_over_heads_and_real_queries(b, t, nh, pad, seed):
    rng = np.random.default_rng(seed)
    _, _, mask = random_batch(rng, b, t, pad)
    s, tt = masked_scores(rng, (b, nh, t, t), mask), masked_scores(rng, (b, nh, t, t), mask)
    loss, _ = attention_kl_loss_forward(s, tt, mask)
    n = mask.sum()
    ref = 0.0
    for i in range(b):
        for h in range(nh):
            for q in range(t):
                if mask[i, q]:
                    p, r = softmax(tt[i, h, q]), softmax(s[i, h, q])
                    keep = p > 0
                    ref += (p[keep] * np.log(p[keep] / r[keep])).sum() / (nh * n)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-10, atol=1e-14)
    check_kernel(lambda x: attention_kl_loss_forward(x, tt, mask), attention_kl_loss_backward, (s,), rng, "att_kl")


def test_relation_heads_split_and_merge_are_inverse_reshapes():
    x = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)  # (B, NH=3, T, HS=4): width 12
    split = split_relation_heads(x, 6)  # (B, 6, T, 2)
    assert split.shape == (2, 6, 4, 2)
    # relation head r holds features 2r, 2r+1 of the concatenated heads
    concat = x.transpose(0, 2, 1, 3).reshape(2, 4, 12)
    np.testing.assert_array_equal(split[:, 5], concat[:, :, 10:12])
    np.testing.assert_array_equal(merge_relation_heads(split, 3), x)
    with pytest.raises(ValueError, match="divisible"):
        split_relation_heads(x, 5)


@SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), shapes=st.sampled_from([(2, 3, 3, 4, 2), (2, 3, 3, 4, 3),
                                                                         (1, 4, 2, 2, 4), (3, 2, 3, 2, 3)]),
       pad=st.booleans(), seed=seeds)
def test_relation_kl_loss_is_minilmv2s_with_any_width_and_head_count(b, t, shapes, pad, seed):
    nh_s, hs_s, nh_t, hs_t, R = shapes
    rng = np.random.default_rng(seed)
    _, _, mask = random_batch(rng, b, t, pad)
    xs, xt = rng.standard_normal((b, nh_s, t, hs_s)), rng.standard_normal((b, nh_t, t, hs_t))
    loss, _ = relation_kl_loss_forward(xs, xt, mask, R)

    def relations(x):  # the paper's way: concatenate heads, cut in R, scaled dot products over real keys
        a = x.transpose(0, 2, 1, 3).reshape(b, t, -1)
        dr = a.shape[-1] // R
        out = np.zeros((b, R, t, t))
        for r in range(R):
            ar = a[:, :, r * dr:(r + 1) * dr]
            out[:, r] = ar @ ar.transpose(0, 2, 1) / np.sqrt(dr) + ((1 - mask) * MASK_VALUE)[:, None, :]
        return out

    rs, rt = relations(xs), relations(xt)
    ref = sum((softmax(rt[i, r, q]) * (np.log(softmax(rt[i, r, q]) + 1e-300) - np.log(softmax(rs[i, r, q]))))
              [mask[i] == 1].sum() for i in range(b) for r in range(R) for q in range(t) if mask[i, q])
    np.testing.assert_allclose(float(loss), ref / (R * mask.sum()), rtol=1e-9, atol=1e-14)
    check_kernel(lambda x: relation_kl_loss_forward(x, xt, mask, R), relation_kl_loss_backward, (xs,), rng,
                 "relation")


# ---------------------------------------------------------------------- the model's q/k/v taps


@SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), nh=st.integers(1, 3), hs=st.integers(1, 3), pad=st.booleans(),
       seed=seeds)
def test_queries_keys_and_values_are_outputs_that_take_gradients(b, t, nh, hs, pad, seed):
    """J = sum_l <q_l, Gq_l> + <k_l, Gk_l> + <v_l, Gv_l> (+ <logits, G>), some slots left None."""
    assume(nh * hs != 2)  # a LayerNorm over 2 features (see test_model.py's NOT_TWO_WIDE)
    rng = np.random.default_rng(seed)
    cfg = small_config(nh, hs, layers=2)
    model = BertForSequenceClassification(cfg, 3, seed=seed).astype(np.float64)
    ids, types, mask = random_batch(rng, b, t, pad, vocab=cfg.vocab_size)
    out = model(ids, types, mask)
    assert len(out.qkv) == 2 and all(x.shape == (b, nh, t, hs) for x in out.qkv[0])
    G = [tuple(rng.standard_normal(x.shape) for x in layer) for layer in out.qkv]
    G[0] = (G[0][0], None, G[0][2])  # a slot without gradient
    G[1] = None  # a layer without gradient
    Gl = rng.standard_normal(out.logits.shape)

    def objective():
        o = model(ids, types, mask)
        j = float((o.logits * Gl).sum())
        for layer, g in zip(o.qkv, G):
            j += sum(float((x * gx).sum()) for x, gx in zip(layer, g or ()) if gx is not None)
        return j

    model.zero_grad()
    model(ids, types, mask)
    model.backward(dloss=0.0, dlogits=Gl, dqkv=G)
    gradcheck(objective, model.named_parameters(), model.named_gradients(), rng, k=6, rtol=1e-5, atol=1e-7,
              frozen_rows={"word_embeddings.weight": cfg.pad_token_id})


def test_the_qkv_taps_are_the_heads_attention_runs_on():
    rng = np.random.default_rng(1)
    cfg = small_config(2, 3, layers=1)
    model = BertModel(cfg, seed=0).astype(np.float64).eval()
    ids, types, mask = random_batch(rng, 2, 4, True, vocab=cfg.vocab_size)
    out = model(ids, types, mask)
    q, k, v = out.qkv[0]
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(3) + ((1 - mask) * MASK_VALUE)[:, None, None, :]
    np.testing.assert_allclose(out.attention_scores[0], scores, rtol=1e-12, atol=1e-9)
    x = out.hidden_states[0]
    v_ref = (x @ model.layers[0].value.params["weight"].T + model.layers[0].value.params["bias"])
    np.testing.assert_allclose(v, v_ref.reshape(2, 4, 2, 3).transpose(0, 2, 1, 3), rtol=1e-12)


# --------------------------------------------------------------------------------- the table


def test_every_method_names_losses_of_the_table_and_the_flags_know_them():
    for method, entry in METHODS.items():
        stages = entry.stages
        assert set(stages) <= {"general", "intermediate", "prediction", "all"}, method
        assert "prediction" in stages, f"{method}: every method distils a task's predictions"
        for names in stages.values():
            assert set(names) <= set(LOSSES), method
        assert entry.summary in S.METHOD_HELP, method  # --method's help is made of the entries
        for name, parts in entry.log_sums.items():
            assert name not in LOSSES and set(parts) <= set(LOSSES), method
    assert METHODS["tinybert"].stages is distill.STAGE_LOSSES
    choices = {f.name: f.metadata.get("choices") for f in fields(S.TaskDistillSettings)}
    assert choices["method"] == tuple(METHODS) and choices["mapping"] == distill.MAPPING_STRATEGIES
    general = {f.name: f.metadata.get("choices") for f in fields(S.GeneralDistillSettings)}["method"]
    assert general == tuple(m for m, entry in METHODS.items() if "general" in entry.stages)


def method_pair(method, nh_s=2, hs_s=3, nh_t=2, hs_t=3, layers_s=2, layers_t=4, labels=3, dropout=0.0):
    scfg = small_config(nh_s, hs_s, layers=layers_s, dropout=dropout)
    tcfg = small_config(nh_t, hs_t, layers=layers_t)
    teacher = BertForSequenceClassification(tcfg, labels, seed=11).astype(np.float64).eval()
    student = BertForSequenceClassification(scfg, labels, seed=12).astype(np.float64)
    return scfg, tcfg, teacher, student


def check_method_gradients(distiller, student, teacher, stage, rng, b=2, t=5, labels=3, k=5):
    """Every student (and fit_dense) gradient of the stage's weighted total vs central differences."""
    ids, types, mask = random_batch(rng, b, t, True)
    y = rng.integers(0, labels, b) if labels > 1 else rng.standard_normal(b)
    t_out = teacher(ids, types, mask)
    state = student.rng.get_state()

    def objective():
        student.rng.set_state(state)
        return float(distiller(student(ids, types, mask), t_out, stage, attention_mask=mask, labels=y)["total"])

    student.zero_grad()
    student.rng.set_state(state)
    losses = distiller(student(ids, types, mask), t_out, stage, attention_mask=mask, labels=y)
    distiller.backward_into(student)
    params, grads = student.named_parameters(), student.named_gradients()
    if distiller.fit_dense is not None:
        params = {**params, **distiller.fit_dense.named_parameters()}
        grads = {**grads, **distiller.fit_dense.named_gradients()}
    atol = 1e-8 + 1e-9 * abs(float(losses["total"]))
    gradcheck(objective, params, grads, rng, k=k, eps=1e-5, rtol=1e-5, atol=atol, richardson=True,
              frozen_rows={"word_embeddings.weight": student.config.pad_token_id}, name=f"{distiller.method} {stage} ")
    return losses


@pytest.mark.parametrize("method,stage,shape", [
    ("kd", "prediction", {}),
    ("distilbert", "prediction", {}),
    ("distilbert", "general", {}),
    ("pkd", "prediction", {"layers_s": 3, "layers_t": 6}),
    ("minilm", "intermediate", {}),
    ("minilmv2", "intermediate", {"nh_s": 3, "hs_s": 2, "nh_t": 2, "hs_t": 6}),  # width 6 vs 12, 3 vs 2 heads
])
def test_each_methods_gradients_reach_every_student_parameter(method, stage, shape):
    rng = np.random.default_rng(len(method) + len(stage))
    scfg, tcfg, teacher, student = method_pair(method, **shape)
    weights = {"hard": 0.4, "kd": 0.6, "cos": 1.7, "pt": 2.5}  # every term of the methods, Hinton's mix included
    distiller = Distiller(scfg, tcfg, method=method, weights=weights, temperature=2.0, relation_heads=3,
                          seed=1).astype(np.float64)
    losses = check_method_gradients(distiller, student, teacher, stage, rng)
    ran = {k for k in LOSSES if float(losses[k]) != 0}
    assert ran == set(distiller.active(stage)) == set(METHODS[method].stages[stage]), ran
    np.testing.assert_allclose(float(losses["total"]), sum(distiller.weights[k] * float(losses[k]) for k in ran),
                               rtol=1e-12)


@pytest.mark.parametrize("num_labels", [1, 2])
def test_pkd_with_dropout_and_hintons_mix_on_a_regression_or_binary_head(num_labels):
    rng = np.random.default_rng(num_labels)
    scfg, tcfg, teacher, student = method_pair("pkd", nh_s=2, hs_s=4, nh_t=2, hs_t=4, layers_s=2, layers_t=4,
                                               labels=num_labels, dropout=0.1)
    distiller = Distiller(scfg, tcfg, method="pkd", strategy="top", weights={"hard": 0.3, "kd": 0.7, "pt": 10.0},
                          temperature=3.0).astype(np.float64)
    check_method_gradients(distiller, student, teacher, "prediction", rng, labels=num_labels, k=6)


def test_a_student_that_is_the_teacher_has_zero_intermediate_losses():
    cfg = small_config(2, 3, layers=3)
    teacher = BertForSequenceClassification(cfg, 3, seed=5).astype(np.float64).eval()
    student = BertForSequenceClassification(cfg, 3, seed=5).astype(np.float64).eval()
    ids, types, mask = random_batch(np.random.default_rng(0), 3, 6, True)
    for method, stage in (("minilm", "general"), ("minilmv2", "general"), ("distilbert", "general"),
                          ("pkd", "prediction")):
        d = Distiller(cfg, cfg, method=method, strategy="uniform" if method != "pkd" else "bottom")
        losses = d(student(ids, types, mask), teacher(ids, types, mask), stage, attention_mask=mask)
        for name in d.active(stage):
            if name != "kd":  # the soft targets' minimum is the teacher's entropy, not 0
                np.testing.assert_allclose(float(losses[name]), 0, atol=1e-14, err_msg=f"{method} {name}")


def test_pkd_pairs_skip_and_last_layers_and_distilbert_minilm_the_last():
    scfg, tcfg = small_config(2, 3, layers=3), small_config(2, 3, layers=6)
    assert Distiller(scfg, tcfg, method="pkd").mapping[:-1] == [2, 4]  # PKD-skip: teacher layers 2, 4
    assert Distiller(scfg, tcfg, method="pkd", strategy="top").mapping[:-1] == [4, 5]  # PKD-last
    assert Distiller(scfg, tcfg, method="minilmv2").relation_layer == 6
    assert Distiller(scfg, tcfg, method="minilmv2", relation_layer=4).relation_layer == 4
    # MiniLMv2's layer choice changes its loss; the teacher's last layer is its default
    rng = np.random.default_rng(3)
    teacher, student = BertModel(tcfg, seed=1).eval(), BertModel(scfg, seed=2).eval()
    ids, types, mask = random_batch(rng, 2, 4, True)
    t_out, s_out = teacher(ids, types, mask), student(ids, types, mask)
    by_layer = [float(Distiller(scfg, tcfg, method="minilmv2", relation_layer=g)(s_out, t_out, "general",
                                                                                 attention_mask=mask)["qq"])
                for g in (4, 6)]
    assert by_layer[0] != by_layer[1]
    last = float(relation_kl_loss_forward(s_out.qkv[-1][0], t_out.qkv[-1][0], mask, 2)[0])
    np.testing.assert_allclose(by_layer[1], last, rtol=1e-6)


def test_bad_method_settings_are_named():
    s, t = small_config(2, 3, layers=2), small_config(3, 4, layers=4)  # widths 6 and 12, heads 2 and 3
    with pytest.raises(ValueError, match="unknown method"):
        Distiller(s, t, method="bert-of-theseus")
    with pytest.raises(ValueError, match="same number of attention heads"):
        Distiller(s, t, method="minilm")
    with pytest.raises(ValueError, match="same hidden size"):
        Distiller(s, t, method="distilbert")
    with pytest.raises(ValueError, match="same hidden size"):
        Distiller(s, small_config(2, 4, layers=4), method="pkd")
    with pytest.raises(ValueError, match="relation_heads=3 must divide the student's hidden size 4"):
        Distiller(small_config(2, 2, layers=2), t, method="minilmv2")  # width 4: R = 3 (the teacher's heads)
    with pytest.raises(ValueError, match="relation_layer=5"):
        Distiller(s, t, method="minilmv2", relation_heads=2, relation_layer=5)
    with pytest.raises(ValueError, match="1-layer student"):
        Distiller(small_config(2, 3, layers=1), small_config(2, 3, layers=4), method="pkd")
    Distiller(s, t, method="minilmv2", relation_heads=2)  # widths 6 and 12, different head counts: fine
    Distiller(s, t, method="kd")  # logits only: any shapes
    assert Distiller(s, t, method="kd").fit_dense is None  # only TinyBERT projects
    with pytest.raises(ValueError, match="alpha"):
        TaskDistillSettings(alpha=1.5)


# ---------------------------------------------------------------------------- teacher caching


def equal_length_examples(rng, n, t=6, vocab=23, labels=2):
    rows = [list(rng.integers(1, vocab, t)) for _ in range(n)]
    return D.EncodedExamples(rows, [[0] * t for _ in rows], rng.integers(0, labels, n).astype(np.int32))


def test_the_cache_serves_exactly_the_teachers_targets_and_keys_by_content():
    rng = np.random.default_rng(0)
    scfg, tcfg, teacher, student = method_pair("pkd", layers_s=3, layers_t=6)
    teacher = teacher.astype(np.float32)
    d = Distiller(scfg, tcfg, method="pkd")
    cache = TeacherCache(teacher, d, "prediction")
    data = equal_length_examples(rng, 12)
    first = data.collate(np.arange(8))
    second = data.collate(np.array([9, 3, 10, 0, 11, 7]))  # 3 new rows, 3 seen ones
    for batch, misses in ((first, 8), (second, 11)):
        got = cache(batch)
        want = d.teacher_targets(teacher(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]),
                                 "prediction")
        assert set(got) == {"logits", "cls"} and cache.misses == misses
        # the first batch is the teacher's own output; the second mixes rows computed in batches of 8
        # and of 3, and BLAS may block a matmul differently by its shape: equal to float32 rounding
        exact = batch is first
        for a, b in zip([got["logits"], *got["cls"]], [want["logits"], *want["cls"]]):
            if exact:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert cache.hits == 3
    # a row is its tokens: the same ids in another batch, padded further, is the same key
    padded = D.EncodedExamples([list(data.input_ids[0])] + [[1] * 9], [[0] * 6, [0] * 9], np.array([0, 1]))
    assert example_keys(*(padded.collate([0, 1])[k] for k in ("input_ids", "token_type_ids", "attention_mask")))[0] \
        == example_keys(first["input_ids"], first["token_type_ids"], first["attention_mask"])[0]
    with pytest.raises(ValueError, match="too large"):
        TeacherCache(teacher, Distiller(scfg, tcfg, method="distilbert"), "prediction")  # hidden states


@pytest.mark.parametrize("method", ["tinybert", "pkd"])
def test_cached_and_uncached_prediction_stages_train_identical_students(method, tmp_path, capsys):
    """Three epochs of the prediction stage: the cache computes each example once and changes nothing
    beyond float32 rounding."""
    rng = np.random.default_rng(1)
    train, dev = equal_length_examples(rng, 24), equal_length_examples(rng, 8)
    weights = []
    for cache_teacher in (True, False):
        scfg, tcfg, teacher, student = method_pair(method, nh_s=2, hs_s=4, nh_t=2, hs_t=4, labels=2, dropout=0.1)
        teacher, student = teacher.astype(np.float32), student.astype(np.float32)
        settings = TaskDistillSettings(method=method, pred_epochs=3, cache_teacher=cache_teacher)
        training = TrainArgs(batch_size=8, eval_steps=100, progress=False, output_dir=str(tmp_path / str(cache_teacher)))
        T.task_distillation("sst-2", teacher, student, train, dev, None, settings, training)
        weights.append(student.named_parameters())
    assert "teacher outputs: 24 computed, 48 reused from the cache" in capsys.readouterr().err
    # Equal to float32 rounding, not bit for bit: the cache computes a row's teacher logits in
    # another BLAS batch than the uncached run does, and on some CPUs (AMD EPYC) a row's result
    # depends on where it sits in the batch (about 1e-11 apart); nine AdamW steps keep that tiny.
    for name in weights[0]:
        np.testing.assert_allclose(weights[0][name], weights[1][name], rtol=1e-5, atol=1e-6, err_msg=name)


# ------------------------------------------------------------------------------ the stages


def test_minilmv2_general_distillation_teaches_a_narrower_student(data_dir, tmp_path):
    """Stage 1 from the MiniLM-L6 teacher (384 wide, 12 heads) into a random 64-wide, 4-head student."""
    corpus = CorpusSettings(corpus=[str(data_dir / "wikitext-2-raw" / "wiki.valid.raw")], max_seq_length=32)
    args = TrainArgs(output_dir=str(tmp_path), batch_size=8, max_steps=30, lr=2e-3, warmup_ratio=0.05, eval_steps=15,
                     save_steps=0, log_steps=5, progress=False)
    T.general_distillation(GeneralDistillSettings(student="tiny", method="minilmv2", relation_heads=8), corpus, args)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in log if "qq" in r]
    assert steps and all({"kk", "vv"} <= set(r) for r in steps)
    evals = [r["eval"] for r in log if "eval" in r]
    assert evals[-1]["heldout_total"] < evals[0]["heldout_total"]
    assert not (tmp_path / "fit_dense.safetensors").exists()  # no projection: MiniLMv2 compares relations
    assert BertModel.from_pretrained(tmp_path).config.hidden_size == 64
    with pytest.raises(ValueError, match="method='kd': expected one of tinybert, distilbert, minilm, minilmv2"):
        GeneralDistillSettings(method="kd")  # kd and pkd distil a fine-tuned teacher's logits: no stage 1


def test_a_method_without_an_intermediate_stage_skips_it(tmp_path, capsys):
    rng = np.random.default_rng(2)
    train, dev = equal_length_examples(rng, 16), equal_length_examples(rng, 8)
    scfg, tcfg, teacher, student = method_pair("distilbert", nh_s=2, hs_s=4, nh_t=2, hs_t=4, labels=2)
    settings = TaskDistillSettings(method="distilbert", inter_steps=3, pred_steps=4)
    training = TrainArgs(batch_size=8, eval_steps=2, progress=False, output_dir=str(tmp_path))
    res = T.task_distillation("sst-2", teacher.astype(np.float32), student.astype(np.float32), train, dev, None,
                              settings, training)
    assert "no intermediate-layer stage" in capsys.readouterr().err
    assert not (tmp_path / "intermediate").exists() and Path(res["folder"], "model.safetensors").is_file()
    log = [json.loads(line) for line in (tmp_path / "prediction" / "metrics.jsonl").read_text().splitlines()]
    assert all({"kd", "cos"} <= set(r) for r in log if "loss" in r)


@pytest.mark.gpu_rules
@pytest.mark.parametrize("method,stage", [("kd", "prediction"), ("distilbert", "prediction"), ("pkd", "prediction"),
                                          ("minilm", "intermediate"), ("minilmv2", "intermediate")])
def test_each_method_on_the_device_matches_numpy_without_a_host_sync(monkeypatch, method, stage):
    """CuPy's rules (tests/cupy_standin.py, as tests/test_gpu_rules.py): no NumPy array mixed in, no read back."""
    import cupy_standin
    from minibert.backend import to_device, to_numpy

    rng = np.random.default_rng(5)
    ids, types, mask = random_batch(rng, 3, 6, True)
    y = rng.integers(0, 3, 3)
    results = []
    for on_device in (False, True):
        scfg, tcfg, teacher, student = method_pair(method, layers_s=2, layers_t=4)
        distiller = Distiller(scfg, tcfg, method=method, weights={"hard": 0.5, "kd": 0.5}, temperature=2.0,
                              seed=2).astype(np.float64)
        x, labels = (ids, types, mask), y
        if on_device:
            syncs = cupy_standin.SYNCS
            xp = cupy_standin.install(monkeypatch)
            teacher.to("cupy"), student.to("cupy"), distiller.to("cupy")
            x, labels = tuple(to_device(a, "cupy") for a in x), to_device(y, "cupy")
            syncs.reset()
        losses = distiller(student(*x), teacher(*x), stage, attention_mask=x[2], labels=labels)
        distiller.backward_into(student, 0.5)
        if on_device:
            assert syncs.count == 0, syncs.where
            assert isinstance(losses["total"], xp.ndarray) and isinstance(student.named_gradients()["classifier.bias"],
                                                                          xp.ndarray)
        results.append(({k: to_numpy(v) for k, v in losses.items()},
                        {k: to_numpy(v) for k, v in student.named_gradients().items()}))
    for host, device in zip(*results):
        for k in host:
            np.testing.assert_allclose(device[k], host[k], rtol=1e-9, atol=1e-12, err_msg=f"{method} {k}")


def test_the_comparison_script_runs_end_to_end(tmp_path):
    """bench/distill_methods.py --quick (tiny budget, numbers meaningless): the README's table comes from it."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "bench/distill_methods.py", "--quick", "--tasks", "sst-2", "--methods",
                          "minilmv2", "pkd", "--out", str(tmp_path)], cwd=repo, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count("| minilmv2 | qq + kk + vv → pred |") == 2  # without and with augmentation
    assert out.stdout.count("| pkd | kd + pt |") == 2 and "one standard error" in out.stdout
