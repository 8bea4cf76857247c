"""The inference path (minibert/fast_inference.py) against the reference forward, and the rules
that choose it: every head, padded batches, float32 and float64, and a fused Q/K/V weight that
can never be stale (optimizer steps, loading, astype, to, in-place edits, replaced arrays, copies).

Blocks and matmul row counts are shrunk and three threads run, so the seams between blocks,
head groups and threads are crossed even by these small models.
"""
import copy
import dataclasses

import numpy as np
import pytest

import cupy_standin
from minibert import (BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, fast_inference, kernels,
                      no_grad, threads)
from minibert.backend import to_numpy
from minibert.nn import grad_enabled
from minibert.optim import AdamW
from conftest import random_batch, small_config


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(fast_inference, "BLOCK_BYTES", 64)  # one head's scores, one GELU row a block
    monkeypatch.setattr(fast_inference, "MATMUL_ROWS", 4)
    monkeypatch.setattr(fast_inference, "SMALL_ROWS", 2)  # a share's last rows take (W x^T)^T, the others x W^T
    monkeypatch.setenv("MINIBERT_NUM_THREADS", "3")
    monkeypatch.setattr(threads, "ENABLED", True)


@pytest.fixture
def path_calls(monkeypatch):
    """How many forwards took the inference path."""
    calls = []
    real = fast_inference.bert_forward

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(fast_inference, "bert_forward", spy)
    return calls


HEADS = {
    "classification": lambda cfg: BertForSequenceClassification(cfg, num_labels=3, seed=1),
    "regression": lambda cfg: BertForSequenceClassification(cfg, num_labels=1, seed=1),
    "masked-lm": lambda cfg: BertForMaskedLM(cfg, seed=1),
    "pre-training": lambda cfg: BertForPreTraining(cfg, seed=1),
}


def logits(model, ids, types, mask, grad: bool):
    """(logits, next-sentence logits or None) of one forward, under no_grad unless grad."""
    if grad:
        out = model(ids, types, mask)
    else:
        with no_grad():
            out = model(ids, types, mask)
    return out.logits, out.seq_relationship_logits


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_logits_as_the_reference_forward(head, dtype, act, path_calls, restore_kernels):
    """Every head, a padded batch with two segments: the inference path gives the reference's logits."""
    cfg = dataclasses.replace(small_config(nh=3, hs=4, layers=2, act=act, vocab=40), max_position_embeddings=16,
                              initializer_range=0.3)  # BERT-like conditioning, not a gradient check's unit scale
    model = HEADS[head](cfg).astype(dtype).eval()
    for w in model.named_parameters().values():  # LayerNorms and biases away from 1 and 0
        w += np.random.default_rng(w.size).standard_normal(w.shape).astype(dtype) * 0.1
    ids, types, mask = random_batch(np.random.default_rng(0), 5, 11, pad=True, vocab=40)
    fast = logits(model, ids, types, mask, grad=False)
    assert len(path_calls) == 1
    reference = logits(model, ids, types, mask, grad=True)  # the forward a backward can follow
    kernels.use_fast(False)
    plain = logits(model, ids, types, mask, grad=False)  # functional.py's kernels, no inference path
    assert len(path_calls) == 1
    for got, want, also in zip(fast, reference, plain):
        if want is None:
            assert got is None
            continue
        assert got.dtype == dtype and got.shape == want.shape
        # float32: a few roundings of the largest logit
        scale = np.abs(want).max()
        tol = dict(rtol=1e-12, atol=1e-12 * scale) if dtype == np.float64 else dict(rtol=1e-5, atol=4e-6 * scale)
        np.testing.assert_allclose(got, want, **tol)
        np.testing.assert_allclose(got, also, **tol)


def test_batch_of_one_and_unpadded_rows(path_calls):
    """No padding skips the mask; one row still splits over the threads; a bigger T takes several head blocks."""
    cfg = dataclasses.replace(small_config(nh=4, hs=3, layers=3, vocab=40), max_position_embeddings=64)
    model = BertForSequenceClassification(cfg, num_labels=2, seed=0).eval()
    for b, t in ((1, 1), (1, 33), (2, 64)):
        ids, types, mask = random_batch(np.random.default_rng(b * t), b, t, pad=False, vocab=40)
        np.testing.assert_allclose(logits(model, ids, types, mask, False)[0], logits(model, ids, types, mask, True)[0],
                                   rtol=2e-5, atol=2e-6)
    assert len(path_calls) == 3


def test_bad_ids_are_refused_as_the_reference_refuses_them(path_calls):
    model = BertForSequenceClassification(small_config(), num_labels=2, seed=0).eval()
    ids, types, mask = random_batch(np.random.default_rng(0), 2, 5, pad=True)
    for bad_ids, bad_types in ((ids + 100, types), (ids, np.full_like(types, -1)), (ids, types + 2)):
        with no_grad(), pytest.raises(ValueError, match="out of range"):
            model(bad_ids, bad_types, mask)
    assert len(path_calls) == 3


def test_chosen_only_in_eval_mode_under_no_grad_with_the_fast_kernels(path_calls, restore_kernels):
    model = BertForSequenceClassification(small_config(), num_labels=2, seed=0)
    ids, types, mask = random_batch(np.random.default_rng(0), 2, 5, pad=True)
    model.eval()(ids, types, mask)  # gradients on: the reference forward
    with no_grad():
        model.train()(ids, types, mask)  # training mode: dropout would apply
        assert len(path_calls) == 0
        model.eval()(ids, types, mask)
        assert len(path_calls) == 1
        kernels.layernorm_forward = kernels.functional.layernorm_forward  # a swapped kernel is obeyed
        model(ids, types, mask)
        assert len(path_calls) == 1
        kernels.use_fast(True)
        model(ids, types, mask)
        assert len(path_calls) == 2
    assert grad_enabled()


def test_no_grad_keeps_nothing_for_a_backward():
    model = BertForSequenceClassification(small_config(), num_labels=2, seed=0).eval()
    ids, types, mask = random_batch(np.random.default_rng(0), 2, 5, pad=True)
    for mode in ("eval", "train"):  # the inference path, and the reference forward under no_grad
        getattr(model, mode)()
        with no_grad():
            out = model(ids, types, mask, labels=np.array([0, 1]))
        assert out.loss is not None and out.hidden_states is None and out.attention_scores is None and out.qkv is None
        assert all(m._cache is None for m in model.modules())
        with pytest.raises(RuntimeError, match="no_grad"):
            model.backward()
    out = model(ids, types, mask, labels=np.array([0, 1]))  # outside: everything, and a backward
    assert len(out.hidden_states) == 3 and len(out.attention_scores) == 2
    model.backward()


# ------------------------------------------------------------------ the fused Q/K/V weight


def fresh_logits(model, ids, types, mask):
    """The reference logits of a new model given copies of `model`'s current parameters:
    nothing of `model` (its fused Q/K/V array) can leak into them."""
    twin = BertForSequenceClassification(model.config, num_labels=model.num_labels, seed=99).astype(model.dtype)
    for name, p in twin.named_parameters().items():
        p[...] = to_numpy(model.named_parameters()[name])
    return twin.eval()(ids, types, mask).logits


def assert_fused_is_current(model, ids, types, mask):
    for layer in model.bert.layers:
        W, b = layer._qkv_weights()
        qkv = (layer.query, layer.key, layer.value)
        np.testing.assert_array_equal(W, np.concatenate([m.params["weight"] for m in qkv]))
        np.testing.assert_array_equal(b, np.concatenate([m.params["bias"] for m in qkv]))
    got = logits(model.eval(), ids, types, mask, grad=False)[0]
    np.testing.assert_allclose(got, fresh_logits(model, ids, types, mask), rtol=2e-5, atol=2e-6)


def test_query_key_value_are_views_of_one_array():
    model = BertForSequenceClassification(small_config(), num_labels=2, seed=0)
    layer = model.bert.layers[0]
    W, b = layer._qkv_weights()
    assert W is layer._qkv[0] and b is layer._qkv[1]  # the shared arrays, not copies
    layer.key.params["weight"][0, 0] = 42.0
    assert W[layer.query.params["weight"].shape[0], 0] == 42.0


def test_fused_weights_follow_every_change_of_the_parameters(tmp_path):
    """Each event that changes weights, one after the other; after each the inference path
    agrees with a model built afresh from the current parameters."""
    rng = np.random.default_rng(0)
    cfg = small_config(nh=2, hs=3, layers=2)
    model = BertForSequenceClassification(cfg, num_labels=2, seed=0)
    ids, types, mask = random_batch(rng, 3, 6, pad=True)
    before = logits(model.eval(), ids, types, mask, grad=False)[0]

    # an optimizer step (in place)
    opt = AdamW(model.named_parameters(), lr=0.1)
    model.train()(ids, types, mask, labels=np.array([0, 1, 1]))
    model.backward()
    opt.step(model.named_gradients())
    assert_fused_is_current(model, ids, types, mask)
    assert not np.allclose(logits(model, ids, types, mask, grad=False)[0], before)

    # in-place edits a user may make
    model.bert.layers[0].query.params["weight"] *= 2.0
    model.bert.layers[1].value.params["bias"][...] = 0.5
    model.bert.layers[1].key.params["weight"][1] += 1.0
    assert_fused_is_current(model, ids, types, mask)

    # loading: a saved folder into a new model, and in place into this one
    folder = model.save_pretrained(tmp_path / "m")
    loaded = BertForSequenceClassification.from_pretrained(folder)
    assert_fused_is_current(loaded, ids, types, mask)
    np.testing.assert_allclose(logits(loaded, ids, types, mask, False)[0], logits(model, ids, types, mask, False)[0],
                               rtol=1e-6, atol=1e-7)
    other = BertForSequenceClassification(cfg, num_labels=2, seed=5)
    for name, p in other.named_parameters().items():
        p[...] = model.named_parameters()[name]
    assert_fused_is_current(other, ids, types, mask)

    # a parameter replaced by a new array: the shared one is no longer used
    layer = model.bert.layers[0]
    layer.value.params["weight"] = layer.value.params["weight"] + 1.0
    assert layer._qkv_weights()[0] is not layer._qkv[0]
    assert_fused_is_current(model, ids, types, mask)

    # a deep copy, then edited in place: its views own their memory, so it concatenates
    twin = copy.deepcopy(model)
    twin.bert.layers[1].query.params["weight"] -= 1.0
    assert_fused_is_current(twin, ids, types, mask)

    # astype: every array replaced, the views shared again
    model.astype(np.float64)
    layer = model.bert.layers[0]
    assert layer._qkv_weights()[0] is layer._qkv[0] and layer._qkv[0].dtype == np.float64
    assert_fused_is_current(model, ids, types, mask)
    model.astype(np.float32)
    assert_fused_is_current(model, ids, types, mask)


def test_to_the_device_and_back(monkeypatch):
    """to("cupy") (the CuPy stand-in) and back: the device runs the reference forward under no_grad,
    with the same logits, and the weights come back shared."""
    rng = np.random.default_rng(1)
    model = BertForSequenceClassification(small_config(), num_labels=2, seed=0).eval()
    ids, types, mask = random_batch(rng, 3, 6, pad=True)
    host = logits(model, ids, types, mask, grad=False)[0]
    cupy_standin.install(monkeypatch)
    model.to("cupy")
    with no_grad():
        device = model(ids, types, mask).logits
    assert not isinstance(device, np.ndarray)
    np.testing.assert_allclose(to_numpy(device), host, rtol=2e-5, atol=2e-6)
    model.to("numpy")
    layer = model.bert.layers[1]
    assert isinstance(layer._qkv[0], np.ndarray) and layer._qkv_weights()[0] is layer._qkv[0]
    assert_fused_is_current(model, ids, types, mask)
