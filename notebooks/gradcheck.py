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


def what_is_wrong(name, analytic, numeric, mistakes=(), tol=1e-7):
    """None when the analytic gradient `analytic` matches `numeric`; otherwise one sentence saying
    what is wrong with it, without printing the values it should have.

    In order: the shape; NaN or inf; all zeros; the sign (analytic = -numeric); a known mistake
    (`mistakes`: (description, the gradient that mistake gives) pairs, compared with the answer);
    a constant factor (analytic = c numeric); which rows (first axis) are wrong, when only some are.
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        return f"{name}: shape {analytic.shape}, but {name} has shape {numeric.shape}"
    error = rel_error(analytic, numeric)
    if error < tol:
        return None
    if not np.isfinite(analytic).all():
        return f"{name}: contains NaN or inf"
    if not analytic.any():
        return f"{name}: all zeros"
    if rel_error(-analytic, numeric) < tol:
        return f"{name}: the sign is wrong (your gradient is exactly minus the right one)"
    for description, wrong in mistakes:
        if rel_error(analytic, np.asarray(wrong, dtype=np.float64)) < 1e-6:
            return f"{name}: {description}"
    factor = float((analytic * numeric).sum() / max((numeric * numeric).sum(), 1e-300))
    if rel_error(analytic, factor * numeric) < tol:
        return f"{name}: right direction, off by a constant factor of {factor:.3g}"
    if analytic.ndim >= 2:
        scale = np.abs(numeric).max() + 1e-12
        bad_rows = np.flatnonzero(np.abs(analytic - numeric).reshape(len(analytic), -1).max(axis=1) > 1e-6 * scale)
        if 0 < len(bad_rows) < len(analytic):
            return (f"{name}: rows {', '.join(map(str, bad_rows))} (first axis) are wrong, "
                    f"the other {len(analytic) - len(bad_rows)} are right; relative error {error:.1e}")
    return f"{name}: relative error {error:.1e} (right is below {tol:.0e})"


def assert_gradients(results, hint=""):
    """Raise AssertionError listing every wrong gradient; `results` are what_is_wrong's answers."""
    problems = [r for r in results if r is not None]
    assert not problems, "; ".join(problems) + (f". {hint}" if hint else "")
