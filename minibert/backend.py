"""Array backends: NumPy on the CPU, CuPy on a CUDA GPU.

This is the only module that imports cupy. Everything else asks an array which library it
belongs to (`get_array_module(x)`) and calls that library, so one kernel runs on both:

    xp = get_array_module(x)
    y = xp.exp(x)

There is no global "current device": an array's home is its library, a model's home is where
its parameters are (`model.to("cupy")`), and a batch moves once with `to_device`.

Not here: any kernel (`functional.py`, `fast.py`, chosen in `kernels.py`) and any threading
(`threads.py`); this file only names array libraries and the few functions whose spelling
differs between them (erf, scatter-add, random numbers).
"""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from .errors import UsageError

DEVICES = ("numpy", "cupy")


def _cupy():
    """Import cupy on first use and check that a GPU is really there."""
    try:
        cp = importlib.import_module("cupy")
    except ImportError as exc:  # a usage error (one line, exit 2): --device cupy on a machine without CuPy
        raise UsageError(
            "--device cupy needs CuPy and a CUDA GPU, and CuPy is not installed: pip install 'minibert[gpu]' "
            "(or the cupy-cudaXXx wheel that matches your CUDA), or use --device numpy"
        ) from exc
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(f"CuPy is installed but no CUDA GPU is usable: {exc}") from exc
    if n == 0:  # pragma: no cover
        raise RuntimeError("CuPy is installed but it sees no CUDA GPU")
    return cp


def _loaded_cupy():
    """cupy if something already imported it (so NumPy-only runs never import it)."""
    import sys

    return sys.modules.get("cupy")


def get_array_module(*arrays: Any):
    """numpy or cupy, whichever the arrays belong to (numpy for plain Python values)."""
    cp = _loaded_cupy()
    if cp is not None:
        for a in arrays:
            if isinstance(a, cp.ndarray):
                return cp
    return np


def device_of(x: Any) -> str:
    """'numpy' or 'cupy'."""
    return "cupy" if get_array_module(x) is not np else "numpy"


def require(device: str) -> None:
    """Stop at once, before any data is read, when `device` cannot run here (--device cupy without CuPy or a
    GPU: a UsageError, one line, exit 2)."""
    if check_device(device) == "cupy":
        _cupy()


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    return device


def to_device(x: Any, device: str):
    """Move an array to 'numpy' (host) or 'cupy' (the current CUDA GPU)."""
    check_device(device)
    if device == "numpy":
        return to_numpy(x)
    return _cupy().asarray(x)


def like(x: Any, ref: Any):
    """x on the device of `ref`: a host (NumPy) array moves to the GPU, once and without waiting
    for it; anything else is returned as it is (None, Python values, arrays already there).

    Models call it on their inputs, so a host batch (evaluation, a user's call) meets device
    parameters without a NumPy/CuPy mix, which CuPy refuses.
    """
    xp = get_array_module(ref)
    if xp is not np and isinstance(x, np.ndarray):
        return xp.asarray(x)
    return x


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy array for any array or scalar."""
    cp = _loaded_cupy()
    if cp is not None and isinstance(x, cp.ndarray):
        return cp.asnumpy(x)
    return np.asarray(x)


def erf(x, out=None):
    """The error function, accurate to float64 precision (used by the exact GELU)."""
    if get_array_module(x) is np:
        from scipy.special import erf as _erf

        return _erf(x, out=out)
    from cupyx.scipy.special import erf as _erf  # pragma: no cover - GPU only

    return _erf(x, out=out)


def scatter_add(target, index, values) -> None:
    """target[index[i]] += values[i], summing repeated indices (unlike `target[index] += v`)."""
    xp = get_array_module(target)
    if xp is np:
        np.add.at(target, index, values)
    else:  # pragma: no cover - GPU only
        import cupyx

        cupyx.scatter_add(target, index, values)


class RNG:
    """A seeded random generator that lives next to the arrays it makes.

    On NumPy it is a `np.random.Generator` (PCG64), whose state round-trips through JSON so a
    resumed run draws the same dropout masks. On CuPy it is a `cupy.random.Generator` seeded
    from the host generator when the model moves.
    """

    def __init__(self, seed: int | None = 0):
        self.host = np.random.default_rng(seed)
        self.device = "numpy"
        self._gpu = None

    def to(self, device: str) -> "RNG":
        check_device(device)
        if device == "cupy" and self._gpu is None:
            cp = _cupy()
            self._gpu = cp.random.default_rng(int(self.host.integers(2**63)))
        self.device = device
        return self

    def random(self, shape, dtype):
        """Uniform [0, 1) samples of the given shape and float dtype."""
        if self.device == "cupy":  # pragma: no cover - GPU only
            return self._gpu.random(shape, dtype=dtype)
        return self.host.random(shape, dtype=dtype)

    def get_state(self) -> dict:
        """JSON-serialisable state (host generator only)."""
        return self.host.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.host.bit_generator.state = state

    def seed(self, seed: int) -> None:
        self.host = np.random.default_rng(seed)
        self._gpu = None
        if self.device == "cupy":  # pragma: no cover - GPU only
            self.to("cupy")
