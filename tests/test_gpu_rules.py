"""minibert's CuPy path under CuPy's rules, in every CI run: kernels, models, distillation,
optimizer, evaluation and the trainer on "device" arrays, against the NumPy path.

By default the device is the CPU stand-in of `tests/cupy_standin.py` (it refuses what CuPy
refuses and counts host synchronisations). With MINIBERT_GPU_TESTS=cupy the same tests run on
real CuPy and a GPU (bench/gpu_check.sh does that); the sync counts, which only the stand-in
can see, are then not asserted. Run just these with `pytest -m gpu_rules`.

On the device the reference kernels of functional.py run (fast.py hands non-NumPy arrays to
them), so each comparison holds the reference path on the device to the default NumPy path.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.special

import cupy_standin
from minibert import BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, kernels as K
from minibert.backend import to_device, to_numpy
from minibert.data import Batcher, EncodedExamples
from minibert.distill import Distiller
from minibert.evaluation import predict_encoded
from minibert.finetune import classification_step
from minibert.optim import AdamW, BertAdam, clip_grad_norm, clip_grad_norm_per_tensor, zero_grads
from minibert.distillation import distill_step
from minibert.trainer import TrainArgs, Trainer
from conftest import REPO, random_batch, small_config

pytestmark = pytest.mark.gpu_rules

REAL = os.environ.get("MINIBERT_GPU_TESTS") == "cupy"


class Device:
    """The array library the tests call "the device", and its host-sync counter (stand-in only)."""

    def __init__(self, xp, syncs):
        self.xp, self.syncs = xp, syncs

    def put(self, *arrays):
        out = tuple(None if a is None else to_device(a, "cupy") for a in arrays)
        return out if len(out) > 1 else out[0]

    def reset(self):
        if self.syncs is not None:
            self.syncs.reset()

    def assert_syncs(self, expected: int, what: str):
        if self.syncs is not None:  # real CuPy cannot count them
            assert self.syncs.count == expected, f"{what}: host syncs {self.syncs.where}, expected {expected}"


@pytest.fixture
def dev(monkeypatch):
    if REAL:
        import cupy

        return Device(cupy, None)
    return Device(cupy_standin.install(monkeypatch), cupy_standin.SYNCS)


def close(device_value, host_value, rtol=1e-10, atol=1e-12, what=""):
    np.testing.assert_allclose(to_numpy(device_value), host_value, rtol=rtol, atol=atol, err_msg=what)


# ----------------------------------------------------------------------------- the rules


def test_the_device_refuses_what_cupy_refuses(dev):
    x = dev.put(np.arange(6.0).reshape(2, 3))
    for bad in (lambda: np.asarray(x), lambda: x + np.ones(3)):  # CuPy's own TypeErrors
        with pytest.raises(TypeError):
            bad()
    assert isinstance(np.exp(x), dev.xp.ndarray)  # NumPy ufuncs CuPy implements dispatch to it
    if not REAL:  # the stand-in's own rules, stricter than or invisible on CuPy
        with pytest.raises(TypeError):
            scipy.special.erf(x)
        with pytest.raises(TypeError):
            np.add.at(x, dev.put(np.array([0])), 1.0)
        with pytest.raises(TypeError):
            x[np.array([0])]
        dev.reset()
        float(x.sum()), x.max().item(), to_numpy(x), bool(x[0, 0] > 0), x[x > 2]
        assert dev.syncs.where == ["float", "item", "get", "bool", "boolean-mask indexing"]
        assert x[dev.put(np.array([3]))].get().tolist() == [[3.0, 4.0, 5.0]]  # 3 of 2 rows wraps to row 1, as in CuPy


# ----------------------------------------------------------------------------- kernels


def kernel_cases(rng):
    """(name, forward, backward, inputs): every kernel pair of kernels.py, float64 host inputs."""
    B, NH, T, HS, D = 2, 3, 5, 4, 6
    x = rng.standard_normal((B, T, D))
    q, k, v = (rng.standard_normal((B, NH, T, HS)) for _ in range(3))
    mask_add = np.where(rng.random((B, 1, 1, T)) < 0.3, -10000.0, 0.0)
    keep = (rng.random((B, NH, T, T)) > 0.2) / 0.8
    labels = rng.integers(0, D, B * T)
    labels[::4] = K.IGNORE_INDEX
    return [
        ("linear", K.linear_forward, K.linear_backward, (x, rng.standard_normal((7, D)), rng.standard_normal(7))),
        ("layernorm", K.layernorm_forward, K.layernorm_backward, (x, rng.standard_normal(D), rng.standard_normal(D))),
        ("gelu", K.gelu_forward, K.gelu_backward, (x,)),
        ("gelu_tanh", K.gelu_tanh_forward, K.gelu_tanh_backward, (x,)),
        ("relu", K.relu_forward, K.relu_backward, (x,)),
        ("tanh", K.tanh_forward, K.tanh_backward, (x,)),
        ("softmax", K.softmax_forward, K.softmax_backward, (x,)),
        ("dropout", K.dropout_forward, K.dropout_backward, (x, (rng.random(x.shape) > 0.5) * 2.0)),
        ("attention", K.attention_forward, K.attention_backward, (q, k, v, mask_add, keep)),
        ("cross_entropy", K.cross_entropy_forward, K.cross_entropy_backward, (x.reshape(-1, D), labels)),
        ("soft_cross_entropy", K.soft_cross_entropy_forward, K.soft_cross_entropy_backward,
         (x.reshape(-1, D), rng.standard_normal((B * T, D)), 2.0)),
        ("mse", K.mse_forward, K.mse_backward, (x, rng.standard_normal(x.shape))),
    ]


@pytest.mark.parametrize("case", range(12), ids=lambda i: kernel_cases(np.random.default_rng(0))[i][0])
def test_every_kernel_on_the_device_matches_numpy_without_a_host_sync(dev, case):
    rng = np.random.default_rng(case)
    name, forward, backward, inputs = kernel_cases(rng)[case]
    dev_inputs = [dev.put(a) if isinstance(a, np.ndarray) else a for a in inputs]
    host_out = forward(*inputs)
    dev.reset()
    dev_out = forward(*dev_inputs)
    y_host, y_dev = host_out[0], dev_out[0]
    dout = 0.7 if y_host.ndim == 0 else rng.standard_normal(y_host.shape)  # a loss takes a scalar dloss
    g_host = backward(dout, host_out[-1])
    g_dev = backward(dout if y_host.ndim == 0 else dev.put(dout), dev_out[-1])
    dev.assert_syncs(0, name)
    assert isinstance(y_dev, dev.xp.ndarray), f"{name}: forward left the device"
    close(y_dev, y_host, what=f"{name} forward")
    if name == "attention":
        close(dev_out[1], host_out[1], what="attention scores")
    for i, (gd, gh) in enumerate(zip(*(g if isinstance(g, tuple) else (g,) for g in (g_dev, g_host)))):
        close(gd, gh, what=f"{name} gradient {i}")


# ----------------------------------------------------------------------------- models


def model_case(kind, rng):
    """A small float64 model of `kind` and its inputs (host arrays); dropout off, so both sides agree."""
    cfg = small_config(layers=2)
    ids, types, mask = random_batch(rng, 3, 6, pad=True)
    mlm_labels = np.where((rng.random(ids.shape) < 0.5) & (mask > 0), ids, K.IGNORE_INDEX)
    mlm_labels[0, 0] = ids[0, 0]  # at least one labelled position
    if kind == "classification":
        return BertForSequenceClassification(cfg, num_labels=3, seed=1), dict(labels=rng.integers(0, 3, 3))
    if kind == "regression":
        return BertForSequenceClassification(cfg, num_labels=1, seed=1), dict(labels=rng.standard_normal(3))
    if kind == "masked-lm":
        return BertForMaskedLM(cfg, seed=1), dict(labels=mlm_labels)
    if kind == "masked-lm labelled only":
        return BertForMaskedLM(cfg, seed=1), dict(labels=mlm_labels, only_labelled=True)
    return BertForPreTraining(cfg, seed=1), dict(labels=mlm_labels, next_sentence_label=rng.integers(0, 2, 3),
                                                 only_labelled=True)


KINDS = ["classification", "regression", "masked-lm", "masked-lm labelled only", "pre-training"]


@pytest.mark.parametrize("kind", KINDS)
def test_model_outputs_and_every_gradient_on_the_device_match_numpy(dev, kind):
    rng = np.random.default_rng(3)
    host, kw = model_case(kind, rng)
    ids, types, mask = random_batch(np.random.default_rng(4), 3, 6, pad=True)
    host.astype(np.float64)
    device, _ = model_case(kind, np.random.default_rng(3))
    device.astype(np.float64).to("cupy")
    out_h = host(ids, types, mask, **kw)
    host.backward()
    dev.reset()
    out_d = device(*dev.put(ids, types, mask), **{k: dev.put(v) if isinstance(v, np.ndarray) else v
                                                  for k, v in kw.items()})
    device.backward()
    # only the masked LM's labelled positions need one: their number sizes the logits (nonzero)
    dev.assert_syncs(1 if kw.get("only_labelled") else 0, kind)
    close(out_d.loss, out_h.loss, what="loss")
    close(out_d.logits, out_h.logits, what="logits")
    for i, (hd, hh) in enumerate(zip(out_d.hidden_states, out_h.hidden_states)):
        close(hd, hh, what=f"hidden state {i}")
    for i, (sd, sh) in enumerate(zip(out_d.attention_scores, out_h.attention_scores)):
        close(sd, sh, what=f"attention scores {i}")
    grads_h, grads_d = host.named_gradients(), device.named_gradients()
    assert grads_d.keys() == grads_h.keys()
    for name in grads_h:
        assert isinstance(grads_d[name], dev.xp.ndarray), name
        close(grads_d[name], grads_h[name], rtol=1e-9, atol=1e-11, what=name)


@pytest.mark.parametrize("kind", KINDS)
def test_no_grad_on_the_device_matches_the_host_inference_path(dev, kind):
    """Under no_grad in eval mode the host runs fast_inference.py and the device the reference
    forward: the same logits, no cache kept, no host sync beyond the labelled positions' one."""
    from minibert import no_grad

    host, kw = model_case(kind, np.random.default_rng(3))
    device, _ = model_case(kind, np.random.default_rng(3))
    host.astype(np.float64).eval()
    device.astype(np.float64).to("cupy").eval()
    ids, types, mask = random_batch(np.random.default_rng(4), 3, 6, pad=True)
    with no_grad():
        out_h = host(ids, types, mask, **kw)
        dev.reset()
        out_d = device(*dev.put(ids, types, mask), **{k: dev.put(v) if isinstance(v, np.ndarray) else v
                                                      for k, v in kw.items()})
        dev.assert_syncs(1 if kw.get("only_labelled") else 0, kind)
    close(out_d.logits, out_h.logits, what="logits")
    close(out_d.loss, out_h.loss, what="loss")
    assert out_d.hidden_states is None and all(m._cache is None for m in device.modules())


def test_training_mode_draws_dropout_on_the_device(dev):
    model = BertForSequenceClassification(small_config(dropout=0.3), num_labels=2, seed=0).to("cupy")
    ids, types, mask = dev.put(*random_batch(np.random.default_rng(0), 4, 6, pad=False))
    dev.reset()
    a = model(ids, types, mask, labels=dev.put(np.array([0, 1, 1, 0]))).logits
    model.backward()
    b = model(ids, types, mask).logits
    dev.assert_syncs(0, "train-mode step")
    assert not np.allclose(to_numpy(a), to_numpy(b))  # two draws of the masks
    model.eval()
    np.testing.assert_array_equal(to_numpy(model(ids, types, mask).logits), to_numpy(model(ids, types, mask).logits))


def test_host_inputs_meet_a_device_model_and_are_checked_on_the_host(dev):
    """Evaluation hands host batches to the model: they move once; a bad host id still raises."""
    rng = np.random.default_rng(5)
    host = BertForSequenceClassification(small_config(), num_labels=3, seed=2).eval()
    device = BertForSequenceClassification(small_config(), num_labels=3, seed=2).to("cupy")
    rows = [list(rng.integers(1, 23, rng.integers(2, 8))) for _ in range(10)]
    data = EncodedExamples(rows, [[0] * len(r) for r in rows], rng.integers(0, 3, 10))
    np.testing.assert_allclose(predict_encoded(device, data, batch_size=4), predict_encoded(host, data, batch_size=4),
                               rtol=1e-5,
                               atol=1e-6)
    ids, types, mask = random_batch(rng, 2, 5, pad=False)
    ids[1, 2] = 23  # one past the vocabulary
    with pytest.raises(ValueError, match="out of range"):
        device(ids, types, mask)


def test_bad_ids_and_labels_made_on_the_device_give_a_nan_loss_not_a_wrapped_lookup(dev):
    """On the device nothing is read back per step, so a bad id or label poisons the loss with NaN
    (the trainer stops at its next read) instead of CuPy's silent wrap-around."""
    model = BertForSequenceClassification(small_config(), num_labels=3, seed=2).to("cupy")
    ids, types, mask = random_batch(np.random.default_rng(6), 2, 5, pad=False)
    good = float(model(*dev.put(ids, types, mask), labels=dev.put(np.array([0, 2]))).loss)
    assert np.isfinite(good)
    ids[1, 2] = 23 + 4  # CuPy would read row 4
    assert np.isnan(float(model(*dev.put(ids, types, mask), labels=dev.put(np.array([0, 2]))).loss))
    ids[1, 2] = 4
    assert np.isnan(float(model(*dev.put(ids, types, mask), labels=dev.put(np.array([0, 3]))).loss))


# ------------------------------------------------------------------------ distillation


@pytest.mark.parametrize("stage", ["general", "prediction", "all"])
def test_distillation_on_the_device_matches_numpy(dev, stage):
    teacher_cfg, student_cfg = small_config(layers=4), small_config(layers=2, nh=2, hs=2)
    ids, types, mask = random_batch(np.random.default_rng(7), 3, 6, pad=True)
    results = []
    for on_device in (False, True):
        teacher = BertForSequenceClassification(teacher_cfg, num_labels=3, seed=0).astype(np.float64).eval()
        student = BertForSequenceClassification(student_cfg, num_labels=3, seed=1).astype(np.float64)
        distiller = Distiller(student_cfg, teacher_cfg, seed=2).astype(np.float64)
        x = (ids, types, mask)
        if on_device:
            teacher.to("cupy"), student.to("cupy"), distiller.to("cupy")
            x = dev.put(*x)
            dev.reset()
        losses = distiller(student(*x), teacher(*x), stage=stage)
        distiller.backward_into(student, 0.5)
        if on_device:
            dev.assert_syncs(0, f"distillation {stage}")
        grads = {**student.named_gradients(), **distiller.fit_dense.named_gradients("fit.")}
        results.append(({k: to_numpy(v) for k, v in losses.items()}, {k: to_numpy(v) for k, v in grads.items()}))
    (loss_h, grad_h), (loss_d, grad_d) = results
    for k in loss_h:
        np.testing.assert_allclose(loss_d[k], loss_h[k], rtol=1e-10, err_msg=k)
    for k in grad_h:
        np.testing.assert_allclose(grad_d[k], grad_h[k], rtol=1e-9, atol=1e-12, err_msg=k)


# ---------------------------------------------------------------------------- optimizer


@pytest.mark.parametrize("opt_cls,clip", [(AdamW, "global"), (BertAdam, "per_tensor")])
def test_optimizer_steps_on_the_device_match_numpy(dev, opt_cls, clip):
    rng = np.random.default_rng(8)
    params = {"w": rng.standard_normal((4, 3)), "LayerNorm.bias": rng.standard_normal(3)}
    grads_seq = [{k: 3 * rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(4)]
    clipper = clip_grad_norm if clip == "global" else clip_grad_norm_per_tensor
    results = []
    for on_device in (False, True):
        p = {k: dev.put(v) if on_device else v.copy() for k, v in params.items()}
        g = {k: (dev.xp if on_device else np).zeros_like(v) for k, v in p.items()}
        opt = opt_cls(p, lr=0.1, weight_decay=0.1)
        dev.reset()
        for step, gs in enumerate(grads_seq):
            zero_grads(g)
            for k in g:
                g[k] += dev.put(gs[k]) if on_device else gs[k]
            clipper(g, 1.0)
            opt.step(g, lr=0.1 * (step + 1) / 4)
        if on_device:
            dev.assert_syncs(0, "optimizer steps")
            meta, moments = opt.state_dict()  # a checkpoint reads the moments back: syncs allowed here
            opt.load_state_dict(meta, moments)
        results.append({k: to_numpy(v) for k, v in p.items()})
    for k in params:
        np.testing.assert_allclose(results[1][k], results[0][k], rtol=1e-12, err_msg=k)


# ------------------------------------------------------------------------------ trainer


def synthetic_data(rng, n=48, vocab=23):
    rows = [list(rng.integers(1, vocab, rng.integers(3, 8))) for _ in range(n)]
    return EncodedExamples(rows, [[0] * len(r) for r in rows], rng.integers(0, 3, n))


def reads_per_step(trainer, step_fn):
    """Run the trainer, recording the host syncs that happened between one step's start and the next."""
    marks = []

    def counted(batch, scale):
        marks.append(cupy_standin.SYNCS.count)
        return step_fn(batch, scale)

    trainer.step_fn = counted
    trainer.train()
    return list(np.diff(marks))  # syncs of steps 1..n-1 (each followed by the next step's start)


@pytest.mark.parametrize("what", ["fine-tuning", "distillation"])
def test_the_trainer_reads_the_device_only_at_log_steps(dev, tmp_path, what):
    """The budget: at a log step one read of each loss's interval sum (the NaN check) and one of
    each logged value (the losses and the gradient norm); nothing at any other step."""
    rng = np.random.default_rng(9)
    data = synthetic_data(rng)
    student = BertForSequenceClassification(small_config(dropout=0.1), num_labels=3, seed=0).to("cupy")
    args = TrainArgs(output_dir=str(tmp_path), max_steps=9, batch_size=8, log_steps=4, progress=False)
    if what == "fine-tuning":
        step, modules, names = classification_step(student), {"": student}, 1  # loss
    else:
        teacher = BertForSequenceClassification(small_config(layers=4), num_labels=3, seed=3).to("cupy").eval()
        distiller = Distiller(student.config, teacher.config).to("cupy")
        step, modules = distill_step(student, teacher, distiller, "intermediate"), {"": student, "d.": distiller.fit_dense}
        names = 3  # loss, att, rep
    trainer = Trainer(args, modules, Batcher(data, 8, seed=0), step, device="cupy")
    per_step = reads_per_step(trainer, step)
    budget = [2 * names + 1 if s % 4 == 0 else 0 for s in range(1, 9)]  # + 1: the gradient norm
    if dev.syncs is not None:  # on real CuPy the run itself is the check
        assert per_step == budget, (per_step, dev.syncs.where[-20:])
    assert all(isinstance(p, dev.xp.ndarray) for p in student.named_parameters().values())


def test_resume_onto_the_device_is_bit_identical(dev, tmp_path):
    """Checkpoints written from device arrays load back onto the device (dropout off: the device's
    dropout generator is seeded from the host one but its own state is not saved)."""
    data = synthetic_data(np.random.default_rng(10))

    def run(out, resume=None):
        model = BertForSequenceClassification(small_config(), num_labels=3, seed=0).to("cupy")
        args = TrainArgs(output_dir=str(out), max_steps=6, batch_size=8, save_steps=3, lr=1e-2, progress=False)
        Trainer(args, {"": model}, Batcher(data, 8, seed=0), classification_step(model), device="cupy").train(resume)
        return {k: to_numpy(v) for k, v in model.named_parameters().items()}

    full = run(tmp_path / "a")
    run(tmp_path / "b")
    import shutil

    shutil.rmtree(tmp_path / "b" / "checkpoint-6")
    resumed = run(tmp_path / "b", resume="auto")
    for k in full:
        if REAL:  # a GPU's scatter-add sums repeated ids in any order: equal to rounding
            np.testing.assert_allclose(resumed[k], full[k], rtol=1e-5, atol=1e-7, err_msg=k)
        else:
            np.testing.assert_array_equal(resumed[k], full[k], err_msg=k)


# --------------------------------------------------------------------- the GPU script


def test_gpu_check_runs_its_cpu_path_on_the_standin(tmp_path):
    """bench/gpu_check.py --standin: every section of the GPU script on tiny shapes, the stand-in
    as CuPy and torch on the CPU (numbers meaningless; the code paths are the GPU run's)."""
    out = subprocess.run([sys.executable, "bench/gpu_check.py", "--standin", "--out", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = (tmp_path / "gpu_check.md").read_text()
    for section in ("forward and gradients", "tinybert4 float32", "bert-base float64", "train-cls", "train-mlm",
                    "infer-tinybert4-b1", "infer-tinybert4-b32", "distill-task", "tokens/s"):
        assert section in table, section
