"""Finite-difference gradient checking for the notebooks and their exercise checks.

Test tooling, not library code: minibert's own test suite has its driver in tests/conftest.py.
Run it in float64: with eps = 1e-6 a central difference agrees with a correct analytic
gradient to about 8-10 digits there, while float32 rounding would swamp it.
"""
import numpy as np


def numerical_grad(f, x, eps=1e-6):
    """df/dx by central differences; x (float64) is perturbed in place and restored."""
    grad = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        old = x[i]
        x[i] = old + eps; f_plus = f()
        x[i] = old - eps; f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def rel_error(analytic, numeric):
    """|a - n| / (|a| + |n|) over the whole array: ~1e-10 is right, ~1e-2 or more is a bug."""
    denom = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return 0.0 if denom == 0 else float(np.linalg.norm(analytic - numeric) / denom)
