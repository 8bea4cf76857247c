"""Central-difference gradient checking in float64 (shared by the test files)."""
from __future__ import annotations

import json
import os

import numpy as np

# With GRADCHECK_REPORT=path set, every check appends {"name", "worst_scaled"} to that file
# (one JSON object per line), so a run can list the worst error per backward.
_REPORT = os.environ.get("GRADCHECK_REPORT")


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6, indices=None) -> np.ndarray:
    """d f() / d x by central differences, perturbing x in place (and restoring it).

    indices: an iterable of multi-indices to check (default: every element). Unchecked
    entries of the result are NaN.
    """
    assert x.dtype == np.float64, "gradient checks run in float64"
    grad = np.full(x.shape, np.nan)
    it = indices if indices is not None else np.ndindex(*x.shape)
    for i in it:
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad


def sample_indices(shape, k: int, rng: np.random.Generator):
    """Up to k random multi-indices of an array of this shape (all of them if it is small)."""
    size = int(np.prod(shape))
    if size <= k:
        return list(np.ndindex(*shape))
    flat = rng.choice(size, size=k, replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def assert_grad_close(analytic, numeric, rtol=1e-6, atol=1e-8, name=""):
    """Compare where `numeric` was computed; report the worst relative error on failure."""
    analytic = np.asarray(analytic, dtype=np.float64)
    sel = ~np.isnan(numeric)
    a, n = analytic[sel], numeric[sel]
    err = np.abs(a - n)
    rel = err / np.maximum(np.abs(a) + np.abs(n), 1e-12)
    ok = err <= atol + rtol * np.abs(n)
    assert ok.all(), (f"{name}: gradient mismatch, worst abs {err.max():.3e}, worst rel {rel.max():.3e} "
                      f"at {np.argmax(err)} (analytic {a[np.argmax(err)]!r}, numeric {n[np.argmax(err)]!r})")
    worst = float(rel.max()) if rel.size else 0.0
    if _REPORT and err.size:
        # error relative to the tensor's gradient scale (absolute below 1e-6: exactly-zero gradients)
        scaled = float(err.max() / max(np.abs(n).max(), 1e-6))
        with open(_REPORT, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"name": name, "worst_scaled": scaled}) + "\n")
    return worst
