"""The checks of notebook 02's exercises: the notebook calls them, and so does
tests/test_exercises_nb123.py (which also proves each one fails on a wrong answer).
Each compares with finite differences in float64 (gradcheck.py), never with the library's backward."""
import numpy as np

import minibert.functional as F
from gradcheck import numerical_grad, rel_error


def check_gelu_tanh_backward(gelu_tanh_backward):
    rng = np.random.default_rng(1)
    x = rng.normal(scale=2.0, size=(3, 7))
    G = rng.normal(size=x.shape)  # random upstream gradient: L = sum(gelu_tanh(x) * G)
    analytic = gelu_tanh_backward(G, F.gelu_tanh_forward(x)[1])
    err = rel_error(analytic, numerical_grad(lambda: float((F.gelu_tanh_forward(x)[0] * G).sum()), x))
    assert err < 1e-7, f"relative error {err:.1e}: not the derivative of the tanh GELU"
    print(f"correct: relative error {err:.1e}")


def check_layernorm_by_hand(dx):
    """dx: dL/dx for x = (1, 2, 6), gamma = 1, beta = 0, L = y_0 (dout = (1, 0, 0))."""
    x = np.array([1.0, 2.0, 6.0])
    numeric = numerical_grad(lambda: float(F.layernorm_forward(x, np.ones(3), np.zeros(3))[0][0]), x)
    dx = np.asarray(dx, dtype=np.float64)
    assert dx.shape == (3,), f"expected three numbers, got shape {dx.shape}"
    assert np.allclose(dx, numeric, atol=1e-6), f"expected {np.round(numeric, 6)}, got {np.round(dx, 6)}"
    print(f"correct: dL/dx = {np.round(dx, 6)} (sums to {dx.sum():.0e})")


def check_embedding_backward(embedding_backward):
    """embedding_backward(dout, ids, V) -> dW (V, D), with ids that repeat (in a row and across rows)."""
    rng = np.random.default_rng(2)
    V, D = 6, 3
    ids = np.array([[1, 3, 1, 5], [3, 3, 0, 1]])  # 1 three times, 3 three times, 2 and 4 never
    W = rng.normal(size=(V, D))
    G = rng.normal(size=(*ids.shape, D))
    numeric = numerical_grad(lambda: float((W[ids] * G).sum()), W)
    err = rel_error(embedding_backward(G, ids, V), numeric)
    assert err < 1e-7, f"relative error {err:.1e}: do repeated ids add up, and unused rows stay 0?"
    print(f"correct on repeated ids: relative error {err:.1e}")


def check_cross_entropy_backward(cross_entropy_backward):
    """cross_entropy_backward(logits, labels) -> dlogits of F.cross_entropy_forward's mean loss."""
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(6, 5))
    labels = np.array([2, -100, 0, 4, -100, 2])  # two ignored rows: the mean is over the other 4
    numeric = numerical_grad(lambda: float(F.cross_entropy_forward(logits, labels)[0]), logits)
    err = rel_error(cross_entropy_backward(logits, labels), numeric)
    assert err < 1e-7, f"relative error {err:.1e}: p - y, zero on ignored rows, divided by the labelled count?"
    print(f"correct: relative error {err:.1e}")


def check_softmax_failures(predicted, failed):
    """predicted: the parameter names you expect to fail; failed: the ones the check measured failing."""
    missed, extra = sorted(set(failed) - set(predicted)), sorted(set(predicted) - set(failed))
    assert not missed and not extra, f"failed but not predicted: {missed}; predicted but passed: {extra}"
    print(f"correct: all {len(failed)} failing parameters predicted, and no others")
