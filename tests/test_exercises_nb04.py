"""The "your turn" exercises of notebook 04 (TinyBERT): each check passes with its reference
solution and fails with plausible wrong answers, without printing the answer, and without
executing the notebook.

The checks and solutions live in notebooks/solutions/ (checks_nb04.py, nb04.py); the notebook
calls the same check functions, and tests/test_notebooks.py executes it with the solutions.
"""
import copy
import re

import nbformat
import numpy as np
import pytest

from conftest import ANSWER_CALL, NOTEBOOKS  # conftest puts notebooks/ on the path

from solutions import checks_nb04, nb04  # noqa: E402


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _numbers(text):
    """The non-integer numbers printed in `text` (integers there name shapes, layers and counts)."""
    found = [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?|-?\d+e[-+]?\d+", text)]
    return [x for x in found if x != round(x)]


def _answers(value):
    """Every number in an answer: arrays, lists and tuples of them, or a number."""
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _answers(v)]
    return np.asarray(value, dtype=np.float64).ravel().tolist()


def _fails_without_the_answer(check, wrong, solution):
    """check(wrong) raises AssertionError saying something, and prints none of the values the solution
    returns on the inputs the check passed (the spy below runs the solution beside the wrong answer)."""
    expected = []

    def spy(*args):
        expected.extend(_answers(solution(*copy.deepcopy(args))))  # a copy: kd_step updates its student
        return wrong(*args)

    with pytest.raises(AssertionError) as failure:
        check(spy)
    message = str(failure.value)
    assert message, "a failing check must say what is wrong"
    assert expected, "the check never called the answer"
    printed = _numbers(message)
    leaked = [x for x in expected if x != round(x) and any(np.isclose(p, x, rtol=1e-3, atol=0) for p in printed)]
    assert not leaked, f"the failure message prints an expected value ({leaked[0]}): {message}"
    return message


def _fails(name, wrong):
    """check_<name>(wrong) fails, without printing what solutions.nb04.<name> returns; its message."""
    return _fails_without_the_answer(getattr(checks_nb04, f"check_{name}"), wrong, getattr(nb04, name))


# ---------------------------------------------------------------------------- the notebook's exercises


def test_notebook_04_has_at_least_5_exercises_each_with_a_solution_and_its_check():
    nb = nbformat.read(NOTEBOOKS / "04_tinybert.ipynb", as_version=4)
    calls = [m.groups() for c in nb.cells if c.cell_type == "code" for m in ANSWER_CALL.finditer(c.source)]
    assert len(calls) >= 5, f"notebook 04 has {len(calls)} exercises"
    assert len({attr for _, attr in calls}) == len(calls), "an exercise appears twice"
    for module, attr in calls:
        assert module == "nb04" and hasattr(nb04, attr), f"the notebook asks solutions.{module} for {attr}"
        assert hasattr(checks_nb04, f"check_{attr}"), f"no check_{attr} in checks_nb04"
        # each exercise's answer goes through its check in the same cell
        cell = next(c.source for c in nb.cells if c.cell_type == "code" and f'"{attr}"' in c.source)
        assert f"check(check_{attr}, {attr})" in cell, f"the exercise cell of {attr} does not check the answer"
        # the stub is unwritten: the learner sees "your turn", not an answer
        assert "NotImplementedError" in cell or "TODO" in cell, f"the exercise cell of {attr} has no stub"


# ---------------------------------------------------------------------------- §1 the teacher's targets


def test_teacher_targets_check_passes_with_the_solution():
    checks_nb04.check_teacher_targets(nb04.teacher_targets)


def _uniform(M, N):
    return [m * N // M for m in range(1, M + 1)]


@pytest.mark.parametrize("wrong", [
    # the scores indexed like the hidden states: layer Tg read as attention_scores[g] (past the end for g = N)
    lambda th, ts, M: ([th[0]] + [th[g] for g in _uniform(M, len(ts))], [ts[g] for g in _uniform(M, len(ts))]),
    # the hidden states indexed like the scores: one layer too low
    lambda th, ts, M: ([th[0]] + [th[g - 1] for g in _uniform(M, len(ts))], [ts[g - 1] for g in _uniform(M, len(ts))]),
    # no embedding pair: M hidden targets
    lambda th, ts, M: ([th[g] for g in _uniform(M, len(ts))], [ts[g - 1] for g in _uniform(M, len(ts))]),
    # the top mapping: the last M layers
    lambda th, ts, M: ([th[0]] + th[len(ts) - M + 1:], ts[len(ts) - M:]),
], ids=["scores-off-by-one", "hidden-off-by-one", "no-embeddings", "top"])
def test_teacher_targets_check_fails_on_a_wrong_indexing(wrong):
    _fails("teacher_targets", wrong)


# ---------------------------------------------------------------------------- §2a the attention loss


def test_attention_loss_check_passes_with_the_solution():
    checks_nb04.check_attention_loss_backward(nb04.attention_loss_backward)


def _att_grads(dL, s_scores, t_scores, mapping, clamp=True, indicator=True, factor=2.0, mean=True):
    out = []
    for s, g in zip(s_scores, mapping):
        t = t_scores[g - 1]
        diff = (np.where(s > -100, s, 0.0) - np.where(t > -100, t, 0.0)) if clamp else s - t
        if indicator:
            diff = diff * (s > -100)
        out.append(dL * factor * diff / (s.size if mean else 1))
    return out


@pytest.mark.parametrize("wrong", [
    lambda dL, s, t, g: _att_grads(dL, s, t, g, clamp=False, indicator=False),  # no clamp: padded keys get a gradient
    lambda dL, s, t, g: _att_grads(dL, s, t, g, indicator=False),  # clamped values, but a gradient through the clamp
    lambda dL, s, t, g: _att_grads(dL, s, t, g, factor=1.0),  # the 2 of the square forgotten
    lambda dL, s, t, g: _att_grads(-dL, s, t, g),  # sign
    lambda dL, s, t, g: _att_grads(1.0, s, t, g),  # the upstream gradient ignored
    lambda dL, s, t, g: [x / s[0].shape[0] for x in _att_grads(dL, s, t, g, mean=False)],  # divided by B only
], ids=["no-clamp", "no-indicator", "no-2", "sign", "no-dL", "per-batch-mean"])
def test_attention_loss_check_fails_on_a_wrong_gradient(wrong):
    message = _fails("attention_loss_backward", wrong)
    assert "layer S" in message  # it says which layer


def test_attention_loss_check_names_the_mask_and_the_factor():
    no_clamp = lambda dL, s, t, g: _att_grads(dL, s, t, g, clamp=False, indicator=False)  # noqa: E731
    assert "padded keys" in _fails("attention_loss_backward", no_clamp)
    assert "clamped" in _fails("attention_loss_backward", lambda dL, s, t, g: _att_grads(dL, s, t, g, indicator=False))
    assert "a 2" in _fails("attention_loss_backward", lambda dL, s, t, g: _att_grads(dL, s, t, g, factor=1.0))
    assert "sign" in _fails("attention_loss_backward", lambda dL, s, t, g: _att_grads(-dL, s, t, g))


# ---------------------------------------------------------------------------- §2b the hidden-state loss


def test_hidden_loss_check_passes_with_the_solution():
    checks_nb04.check_hidden_loss_backward(nb04.hidden_loss_backward)


def _hid_grads(dL, s_hidden, t_hidden, pairs, W, b, accumulate=True, factor=2.0, transpose=False):
    dstates = [np.zeros_like(h) for h in s_hidden]
    dW, db = np.zeros_like(W), np.zeros_like(b)
    for m, n in pairs:
        y = s_hidden[m] @ W.T + b
        dy = dL * factor / y.size * (y - t_hidden[n])
        dstates[m] = dstates[m] + dy @ W
        term = np.einsum("bti,btj->ij", dy, s_hidden[m])
        dW = dW + term if accumulate else term
        db = db + dy.sum(axis=(0, 1)) if accumulate else dy.sum(axis=(0, 1))
    return dstates, (dW.T if transpose else dW), db


@pytest.mark.parametrize("wrong", [
    lambda *a: _hid_grads(*a, accumulate=False),  # W's gradient from the last pair only
    lambda *a: _hid_grads(*a, factor=1.0),  # the 2 forgotten
    lambda *a: _hid_grads(*a, transpose=True),  # dW in the (d_S, d_T) layout
], ids=["last-pair-only", "no-2", "dW-transposed"])
def test_hidden_loss_check_fails_on_a_wrong_gradient(wrong):
    _fails("hidden_loss_backward", wrong)


def test_hidden_loss_check_says_that_W_is_shared():
    message = _fails("hidden_loss_backward", lambda *a: _hid_grads(*a, accumulate=False))
    assert "every pair" in message


# ---------------------------------------------------------------------------- §2d the soft cross-entropy


def test_soft_cross_entropy_check_passes_with_the_solution():
    checks_nb04.check_soft_cross_entropy_backward(nb04.soft_cross_entropy_backward)


@pytest.mark.parametrize("wrong, says", [
    (lambda zs, zt, t: (_softmax(zs / t) - _softmax(zt / t)) / len(zs), "1/t"),  # the 1/t forgotten
    (lambda zs, zt, t: (_softmax(zs / t) - _softmax(zt)) / (t * len(zs)), "relative error"),  # t on the student only
    (lambda zs, zt, t: (_softmax(zs / t) - _softmax(zt / t)) / t, "mean over the batch"),  # no batch mean
    (lambda zs, zt, t: (_softmax(zt / t) - _softmax(zs / t)) / (t * len(zs)), "sign"),  # sign flipped
    (lambda zs, zt, t: (_softmax(zs / t) - _softmax(zt / t)) * t / len(zs), "Hinton"),  # Hinton's t^2 applied
], ids=["no-1/t", "student-only-t", "no-batch-mean", "sign", "t-squared"])
def test_soft_cross_entropy_check_fails_on_a_wrong_gradient(wrong, says):
    assert says in _fails("soft_cross_entropy_backward", wrong)


# ---------------------------------------------------------------------------- §5 one distillation step


def test_kd_step_check_passes_with_the_solution():
    checks_nb04.check_kd_step(nb04.kd_step)


def _kd_step(student, batch, z_t, t, alpha, lr, t2_loss=True, t2_grad=True, grad_t=1, sign=1.0, hard=True,
             swap=False):
    """A kd step with switchable mistakes (the solution when every switch is left alone)."""
    a = (1 - alpha) if swap else alpha
    student.zero_grad()
    z = student(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).logits
    y, B = batch["labels"], len(batch["labels"])
    p, q, probs = _softmax(z_t / t), _softmax(z / t), _softmax(z)
    soft = (t * t if t2_loss else 1.0) * float(-(p * np.log(q)).sum() / B)
    ce = float(-np.log(probs[np.arange(B), y]).mean())
    loss = a * soft + ((1 - a) * ce if hard else 0.0)
    dz = a * (t * t if t2_grad else 1.0) / t * grad_t * (q - p) / B
    if hard:
        dz = dz + (1 - a) * (probs - np.eye(z.shape[1])[y]) / B
    student.backward(dlogits=dz)
    grads = student.named_gradients()
    for name, param in student.named_parameters().items():
        param -= sign * lr * grads[name]
    return loss


@pytest.mark.parametrize("wrong, says", [
    (lambda *a: _kd_step(*a, t2_loss=False, t2_grad=False), "t^2"),  # no Hinton factor anywhere
    (lambda *a: _kd_step(*a, t2_grad=False), "t^2"),  # t^2 in the loss, not in the gradient
    (lambda *a: _kd_step(*a, grad_t=a[3]), "a factor t too large"),  # t^2 (q - p) / B: the chain rule's 1/t lost
    (lambda *a: _kd_step(*a, sign=-1.0), "sign"),  # gradient ascent
    (lambda *a: _kd_step(*a, hard=False), "gold labels"),  # the hard term forgotten
    (lambda *a: _kd_step(*a, swap=True), "swapped"),  # alpha on the wrong term
], ids=["no-t2", "t2-in-loss-only", "no-1/t", "ascent", "no-hard-term", "alpha-swapped"])
def test_kd_step_check_fails_on_a_wrong_step(wrong, says):
    assert says in _fails("kd_step", wrong)
