"""Modules and whole models: float64 gradient checks through every tap, properties, bad input."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minibert
from minibert import BertConfig, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertModel
from minibert.model import MASK_VALUE, BertEmbeddings, BertLayer, _seeds
from minibert.nn import Embedding, LayerNorm, Linear
from conftest import check_module, gradcheck, random_batch, small_config

SETTINGS = settings(max_examples=20, deadline=None)
# NOT_TWO_WIDE: a LayerNorm over 2 features outputs (+1, -1) or (-1, +1) -- a step function of
# its input whose true gradient is ~0 but whose finite differences jump when a step crosses
# the tie. Hidden sizes 1 and 3+ (head sizes down to 1) are drawn; 2 is not.
seeds = st.integers(0, 2**31 - 1)


# ------------------------------------------------------------------- the whole model


def check_model_gradients(model, forward_kwargs, rng, taps=True, k=6, extra_logit_taps=()):
    """Compare every named gradient with central differences of
    J = dloss*loss + <logits, G> + sum_l <hidden_l, Gh_l> + sum_l <scores_l - M, Gs_l>.

    The dropout generator is rewound before every forward so each sees the same masks.
    Returns the worst relative error seen.
    """
    state = model.rng.get_state()
    model.rng.set_state(state)
    out = model(**forward_kwargs)
    mask = forward_kwargs.get("attention_mask")
    M = 0.0 if mask is None else ((1 - mask) * MASK_VALUE)[:, None, None, :]
    dloss = rng.standard_normal() if out.loss is not None else None
    G = {"dlogits": rng.standard_normal(out.logits.shape)} if out.logits is not None else {}
    for name in extra_logit_taps:
        G["d" + name] = rng.standard_normal(getattr(out, name).shape)
    Gh = [rng.standard_normal(h.shape) for h in out.hidden_states] if taps else None
    # Upstream score gradients are zero at padded keys, as TinyBERT's clamp makes them: scores
    # there sit near -10000, whose 1e-12 rounding would swamp a finite difference. The kernel
    # test in test_functional.py checks nonzero gradients at padded keys with a larger step.
    keep = 1.0 if mask is None else mask[:, None, None, :]
    Gs = [rng.standard_normal(s.shape) * keep for s in out.attention_scores] if taps else None

    def objective():
        model.rng.set_state(state)
        o = model(**forward_kwargs)
        j = 0.0 if dloss is None else float(o.loss) * dloss
        if "dlogits" in G:
            j += float((o.logits * G["dlogits"]).sum())
        for name in extra_logit_taps:
            j += float((getattr(o, name) * G["d" + name]).sum())
        if taps:
            j += sum(float((h * g).sum()) for h, g in zip(o.hidden_states, Gh))
            j += sum(float(((s - M) * g).sum()) for s, g in zip(o.attention_scores, Gs))
        return j

    model.zero_grad()
    model.rng.set_state(state)
    model(**forward_kwargs)
    model.backward(dloss=dloss or 0.0, dhidden_states=Gh, dattention_scores=Gs, **G)
    # padding_idx semantics (as torch): the lookup path leaves the pad row alone, whatever its
    # true derivative (a tied decoder still updates it), so it is not compared
    return gradcheck(objective, model.named_parameters(), model.named_gradients(), rng, k=k, rtol=1e-5, atol=1e-7,
                     frozen_rows={"word_embeddings.weight": model.config.pad_token_id})


@SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), nh=st.integers(1, 3), hs=st.integers(1, 3),
       pad=st.booleans(), only_labelled=st.booleans(), seed=seeds)
def test_pretraining_gradients_with_all_taps(b, t, nh, hs, pad, only_labelled, seed):
    assume(nh * hs != 2)  # see NOT_TWO_WIDE
    rng = np.random.default_rng(seed)
    cfg = small_config(nh, hs)
    model = BertForPreTraining(cfg, seed=seed).astype(np.float64)
    ids, types, mask = random_batch(rng, b, t, pad, vocab=cfg.vocab_size)
    labels = np.where(rng.random((b, t)) < 0.5, rng.integers(0, cfg.vocab_size, (b, t)), -100)
    labels[0, 0] = 3  # at least one labelled position
    kw = dict(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels,
              next_sentence_label=rng.integers(0, 2, b), only_labelled=only_labelled)
    check_model_gradients(model, kw, rng, extra_logit_taps=("seq_relationship_logits",))


@SETTINGS
@given(b=st.integers(1, 3), t=st.integers(1, 4), nh=st.integers(1, 3), hs=st.integers(1, 3), pad=st.booleans(),
       num_labels=st.sampled_from([1, 2, 3]), act=st.sampled_from(["gelu", "gelu_new", "relu"]), seed=seeds)
def test_sequence_classification_gradients_with_all_taps(b, t, nh, hs, pad, num_labels, act, seed):
    assume(nh * hs != 2)  # see NOT_TWO_WIDE
    rng = np.random.default_rng(seed)
    cfg = small_config(nh, hs, act=act)
    model = BertForSequenceClassification(cfg, num_labels=num_labels, seed=seed).astype(np.float64)
    ids, types, mask = random_batch(rng, b, t, pad, vocab=cfg.vocab_size)
    labels = rng.standard_normal(b) if num_labels == 1 else rng.integers(0, num_labels, b)
    kw = dict(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels)
    check_model_gradients(model, kw, rng)


# Dropout is checked at a width where no hidden vector gets dropped entirely: at hidden
# sizes of 1-3, a fully dropped vector makes LayerNorm (eps 1e-12) divide by ~1e-6, which
# no finite-difference step can follow. The hypothesis sweeps above run without dropout.
@pytest.mark.parametrize("head", ["pretraining", "classification"])
def test_whole_models_with_dropout(head):
    rng = np.random.default_rng(7)
    cfg = small_config(nh=2, hs=4, dropout=0.1)
    ids, types, mask = random_batch(rng, 2, 5, True, vocab=cfg.vocab_size)
    if head == "pretraining":
        model = BertForPreTraining(cfg, seed=3).astype(np.float64)
        labels = np.where(rng.random((2, 5)) < 0.5, ids, -100)
        labels[0, 0] = 4
        kw = dict(labels=labels, next_sentence_label=np.array([1, 0]))
    else:
        model = BertForSequenceClassification(cfg, num_labels=3, seed=3).astype(np.float64)
        kw = dict(labels=np.array([2, 0]))
    check_model_gradients(model, dict(input_ids=ids, token_type_ids=types, attention_mask=mask, **kw), rng, k=8)


@SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), pad=st.booleans(), seed=seeds)
def test_masked_lm_and_bare_encoder_gradients(b, t, pad, seed):
    rng = np.random.default_rng(seed)
    cfg = small_config()
    ids, types, mask = random_batch(rng, b, t, pad, vocab=cfg.vocab_size)
    labels = np.where(rng.random((b, t)) < 0.5, ids, -100)
    mlm = BertForMaskedLM(cfg, seed=seed).astype(np.float64)
    check_model_gradients(mlm, dict(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels), rng)
    # the bare encoder, driven only through its taps (what TinyBERT's intermediate losses use)
    enc = BertModel(cfg, seed=seed).astype(np.float64)
    out = enc(ids, types, mask)
    Gh = [rng.standard_normal(h.shape) for h in out.hidden_states]
    Gs = [rng.standard_normal(s.shape) * mask[:, None, None, :] for s in out.attention_scores]
    Gp = rng.standard_normal(out.pooler_output.shape)
    M = ((1 - mask) * MASK_VALUE)[:, None, None, :]

    def objective():
        enc.rng.seed(1)
        o = enc(ids, types, mask)
        return (sum(float((h * g).sum()) for h, g in zip(o.hidden_states, Gh))
                + sum(float(((s - M) * g).sum()) for s, g in zip(o.attention_scores, Gs))
                + float((o.pooler_output * Gp).sum()))

    enc.zero_grad()
    enc.rng.seed(1)
    enc(ids, types, mask)
    enc.backward(dpooler_output=Gp, dhidden_states=Gh, dattention_scores=Gs)
    gradcheck(objective, enc.named_parameters(), enc.named_gradients(), rng, k=6, rtol=1e-5, atol=1e-7,
              frozen_rows={"word_embeddings.weight": cfg.pad_token_id})  # as torch's padding_idx


# ----------------------------------------------------------------------- single modules


@SETTINGS
@given(b=st.integers(1, 3), t=st.integers(1, 4), d=st.integers(1, 5), seed=seeds)
def test_linear_layernorm_embedding_modules(b, t, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, t, d))
    check_module(Linear(d, 3, rng), x, rng, "Linear")
    if d != 2:  # see NOT_TWO_WIDE
        check_module(LayerNorm(d), x * 2 + 1, rng, "LayerNorm")
    emb = Embedding(5, d, rng, padding_idx=0).astype(np.float64)
    ids = rng.integers(0, 5, (b, t))
    out = emb(ids)
    G = rng.standard_normal(out.shape)
    emb.backward(G)
    ref = np.einsum("btv,btd->vd", np.eye(5)[ids], G)
    ref[0] = 0  # the padding row gets no gradient, as torch's padding_idx
    np.testing.assert_allclose(emb.grads["weight"], ref, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(b=st.integers(1, 2), t=st.integers(1, 4), nh=st.integers(1, 3), hs=st.integers(1, 3), seed=seeds)
def test_bert_layer_and_embeddings_modules(b, t, nh, hs, seed):
    assume(nh * hs != 2)  # see NOT_TWO_WIDE
    rng = np.random.default_rng(seed)
    cfg = small_config(nh, hs)
    init, drop = _seeds(seed)
    layer = BertLayer(cfg, init, drop)
    mask_add = np.zeros((b, 1, 1, t))
    check_module(layer, rng.standard_normal((b, t, nh * hs)), rng, "BertLayer", extra=(mask_add,))
    emb = BertEmbeddings(cfg, init, drop).astype(np.float64)
    ids, types, _ = random_batch(rng, b, t, False, vocab=cfg.vocab_size)
    out = emb.forward(ids, types)
    G = rng.standard_normal(out.shape)
    emb.backward(G)
    f = lambda: float((emb.forward(ids, types) * G).sum())
    gradcheck(f, emb.named_parameters(), emb.named_gradients(), rng, k=12, rtol=1e-5, atol=1e-8,
              name="BertEmbeddings ")


# --------------------------------------------------------------------------- properties


def test_backward_is_linear_in_the_upstream_gradient():
    rng = np.random.default_rng(0)
    cfg = small_config()
    model = BertForSequenceClassification(cfg, num_labels=3, seed=1).astype(np.float64).eval()
    ids, types, mask = random_batch(rng, 2, 4, True, vocab=cfg.vocab_size)
    out = model(ids, types, mask)
    G1, G2 = rng.standard_normal(out.logits.shape), rng.standard_normal(out.logits.shape)
    S1 = [rng.standard_normal(s.shape) for s in out.attention_scores]

    def grads(g, s, a):
        model.zero_grad()
        model(ids, types, mask)
        model.backward(dlogits=g, dattention_scores=[x * a for x in s])
        return {k: v.copy() for k, v in model.named_gradients().items()}

    a, b = 0.7, -1.3
    g1, g2 = grads(G1, S1, 1.0), grads(G2, S1, 0.0)
    g12 = grads(a * G1 + b * G2, S1, a)
    for k in g12:
        np.testing.assert_allclose(g12[k], a * g1[k] + b * g2[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_float32_stays_float32_everywhere():
    cfg = small_config(dropout=0.1)
    model = BertForPreTraining(cfg, seed=0)
    rng = np.random.default_rng(0)
    ids, types, mask = random_batch(rng, 2, 5, True, vocab=cfg.vocab_size)
    labels = np.where(rng.random((2, 5)) < 0.5, ids, -100)
    labels[0, 0] = 1
    out = model(ids, types, mask, labels=labels, next_sentence_label=np.array([0, 1]))
    for x in [out.loss, out.logits, out.seq_relationship_logits, *out.hidden_states, *out.attention_scores]:
        assert x.dtype == np.float32
    model.backward()
    assert all(g.dtype == np.float32 for g in model.named_gradients().values())
    assert all(p.dtype == np.float32 for p in model.named_parameters().values())


def test_padding_invariance_and_zero_gradient_at_padded_keys():
    """Changing ids under the mask leaves real positions unchanged; padded keys get no gradient."""
    rng = np.random.default_rng(3)
    cfg = small_config(vocab=40)
    model = BertModel(cfg, seed=0).astype(np.float64).eval()
    ids = rng.integers(1, 20, (2, 6))
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]])
    out1 = model(ids, attention_mask=mask)
    ids2 = np.where(mask == 1, ids, rng.integers(20, 40, ids.shape))  # new ids only under the mask
    out2 = model(ids2, attention_mask=mask)
    real = mask == 1
    for h1, h2 in zip(out1.hidden_states, out2.hidden_states):
        np.testing.assert_allclose(h1[real], h2[real], rtol=1e-12, atol=1e-12)
    # gradient only on real positions' outputs -> no gradient reaches padded inputs
    G = rng.standard_normal(out2.last_hidden_state.shape) * real[:, :, None]
    model.zero_grad()
    model(ids2, attention_mask=mask)
    model.backward(dlast_hidden_state=G)
    dW = model.named_gradients()["embeddings.word_embeddings.weight"]
    padded_ids = np.unique(ids2[~real])
    assert np.all(dW[padded_ids] == 0)
    assert np.abs(dW[np.unique(ids2[real])]).sum() > 0


def test_tied_decoder_gets_the_sum_of_both_paths():
    rng = np.random.default_rng(5)
    cfg = small_config()
    ids, types, mask = random_batch(rng, 2, 4, False, vocab=cfg.vocab_size)
    labels = np.where(rng.random((2, 4)) < 0.6, ids, -100)
    labels[0, 0] = 2
    tied = BertForMaskedLM(cfg, seed=2).astype(np.float64).eval()
    tied(ids, types, mask, labels=labels)
    tied.backward()
    # untie: the decoder reads a separate copy of the same matrix
    untied = BertForMaskedLM(cfg, seed=2).astype(np.float64).eval()
    decoder = Embedding(cfg.vocab_size, cfg.hidden_size, np.random.default_rng(0)).astype(np.float64)
    decoder.params["weight"] = untied.bert.embeddings.word.params["weight"].copy()
    untied.lm_head.word_embeddings = decoder
    untied(ids, types, mask, labels=labels)
    untied.backward()
    input_path = untied.bert.embeddings.word.grads["weight"]
    output_path = decoder.grads["weight"]
    assert np.abs(input_path).sum() > 0 and np.abs(output_path).sum() > 0
    np.testing.assert_allclose(tied.bert.embeddings.word.grads["weight"], input_path + output_path, rtol=1e-10, atol=1e-14)


def test_two_half_batches_accumulate_to_the_full_batch():
    rng = np.random.default_rng(11)
    cfg = small_config()
    model = BertForSequenceClassification(cfg, num_labels=2, seed=4).astype(np.float64).eval()
    ids, types, mask = random_batch(rng, 4, 5, True, vocab=cfg.vocab_size)
    y = rng.integers(0, 2, 4)
    model.zero_grad()
    model(ids, types, mask, labels=y)
    model.backward()
    full = {k: v.copy() for k, v in model.named_gradients().items()}
    model.zero_grad()
    for sl in (slice(0, 2), slice(2, 4)):  # each half's mean loss is half of the full mean
        model(ids[sl], types[sl], mask[sl], labels=y[sl])
        model.backward(dloss=0.5)
    for k, v in model.named_gradients().items():
        np.testing.assert_allclose(v, full[k], rtol=1e-10, atol=1e-14, err_msg=k)


def test_same_seed_gives_bit_identical_results():
    cfg = small_config(dropout=0.1)
    rng = np.random.default_rng(0)
    ids, types, mask = random_batch(rng, 2, 6, True, vocab=cfg.vocab_size)
    runs = []
    for _ in range(2):
        m = BertForSequenceClassification(cfg, num_labels=2, seed=123)
        out = m(ids, types, mask, labels=np.array([0, 1]))
        m.backward()
        runs.append((out.logits, m.named_gradients()))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert all(np.array_equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    other = BertForSequenceClassification(cfg, num_labels=2, seed=124)
    assert not np.array_equal(other(ids, types, mask).logits, runs[0][0])


def test_eval_mode_is_deterministic_and_train_mode_drops():
    cfg = small_config(dropout=0.3)
    m = BertModel(cfg, seed=0)
    ids = np.arange(1, 7)[None]
    a, b = m(ids).last_hidden_state, m(ids).last_hidden_state
    assert not np.array_equal(a, b)  # dropout masks differ between calls
    m.eval()
    assert np.array_equal(m(ids).last_hidden_state, m(ids).last_hidden_state)


def test_only_labelled_logits_match_full_logits():
    rng = np.random.default_rng(2)
    cfg = small_config()
    m = BertForMaskedLM(cfg, seed=0).eval()
    ids, types, mask = random_batch(rng, 2, 5, False, vocab=cfg.vocab_size)
    labels = np.full((2, 5), -100)
    labels[0, 1], labels[1, 4] = 3, 7
    full = m(ids, types, mask, labels=labels)
    sparse = m(ids, types, mask, labels=labels, only_labelled=True)
    assert sparse.logits.shape == (2, cfg.vocab_size)
    np.testing.assert_allclose(sparse.logits, full.logits.reshape(-1, cfg.vocab_size)[[1, 9]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(sparse.loss), float(full.loss), rtol=1e-5)


def test_parameter_counts():
    assert BertModel(BertConfig()).num_parameters() == 109_482_240
    assert BertModel(BertConfig.from_preset("tinybert-4")).num_parameters() == 14_350_248


def test_hugging_face_parameter_names():
    names = set(BertForPreTraining(small_config(layers=1)).named_parameters())
    for n in ["bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
              "bert.encoder.layer.0.attention.output.LayerNorm.bias", "bert.encoder.layer.0.intermediate.dense.weight",
              "bert.encoder.layer.0.output.dense.bias", "bert.pooler.dense.weight",
              "cls.predictions.transform.dense.weight", "cls.predictions.transform.LayerNorm.weight",
              "cls.predictions.bias", "cls.seq_relationship.weight"]:
        assert n in names, n
    p = BertModel(small_config()).named_parameters()
    assert p["encoder.layer.1.intermediate.dense.weight"].shape == (5, 6)  # (out, in)


# ---------------------------------------------------------------------------- bad input


def test_bad_input_is_named():
    cfg = small_config()
    m = BertForSequenceClassification(cfg, num_labels=2)
    good = np.ones((2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="out of range"):
        m(np.array([[1, 2, 99]]))
    with pytest.raises(ValueError, match="out of range"):
        m(np.array([[1, -1, 2]]))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        m(good, attention_mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        m(good, token_type_ids=np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        m(good.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(batch, sequence\)"):
        m(np.ones(3, dtype=np.int64))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        m(np.ones((1, 9), dtype=np.int64))
    with pytest.raises(ValueError, match="label outside"):
        m(good, labels=np.array([0, 2]))
    with pytest.raises(RuntimeError, match="before forward"):
        BertModel(cfg).backward(dlast_hidden_state=np.zeros((2, 3, 6)))
    with pytest.raises(RuntimeError, match="before forward"):
        Linear(2, 2, np.random.default_rng(0)).backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="num_labels"):
        BertForSequenceClassification(cfg, num_labels=0)


@pytest.mark.parametrize("field,value,match", [
    ("hidden_size", 10, "divisible"),
    ("num_hidden_layers", 0, "positive"),
    ("intermediate_size", -3, "positive"),
    ("hidden_act", "swish", "not supported"),
    ("hidden_dropout_prob", 1.0, r"\[0, 1\)"),
    ("layer_norm_eps", 0.0, "positive"),
])
def test_config_validation(field, value, match):
    kw = dict(hidden_size=12, num_attention_heads=4)
    kw[field] = value
    with pytest.raises(ValueError, match=f"{field}.*{match}|{match}"):
        BertConfig(**kw)


def test_config_json_round_trip(tmp_path):
    cfg = BertConfig.from_preset("tinybert-4", extra={"architectures": ["BertModel"]})
    cfg.to_json_file(tmp_path / "config.json")
    back = BertConfig.from_json_file(tmp_path / "config.json")
    assert back == cfg and back.extra["architectures"] == ["BertModel"]
    (tmp_path / "bad.json").write_text('{"hidden_size": 10, "num_attention_heads": 3}')
    with pytest.raises(ValueError, match="bad.json.*divisible"):
        BertConfig.from_json_file(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        BertConfig.from_json_file(tmp_path / "missing.json")


def test_public_api_exports():
    assert minibert.BertModel is BertModel and minibert.BertConfig is BertConfig


def test_head_only_backward_trains_the_mlm_head_alone():
    """head_only: the head gets the same gradients as a full backward, the (frozen) encoder and
    the tied word embeddings get none."""
    rng = np.random.default_rng(8)
    cfg = small_config()
    ids, types, mask = random_batch(rng, 2, 5, False, vocab=cfg.vocab_size)
    labels = np.where(rng.random((2, 5)) < 0.5, ids, -100)
    labels[0, 0] = 3
    full, head = (BertForMaskedLM(cfg, seed=1).astype(np.float64).eval() for _ in range(2))
    full(ids, types, mask, labels=labels)
    full.backward()
    head(ids, types, mask, labels=labels)
    head.backward(head_only=True)
    for name, g in head.named_gradients().items():
        if name.startswith("cls."):
            np.testing.assert_allclose(g, full.named_gradients()[name], rtol=1e-12, atol=1e-15, err_msg=name)
            assert np.abs(g).sum() > 0, name
        else:
            assert not g.any(), name
