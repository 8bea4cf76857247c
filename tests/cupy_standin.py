"""A CPU stand-in for CuPy that enforces CuPy's rules, so every CI run checks minibert's GPU path.

No GPU has to be present: `install()` puts a fake `cupy` (and `cupyx`) module into
`sys.modules`, whose `ndarray` is `DeviceArray`, a wrapper around a NumPy array that behaves
like a CuPy array where minibert could go wrong on a real GPU:

- no implicit conversion to NumPy: `np.asarray(x)` / `np.array(x)` raise TypeError (CuPy's
  "Implicit conversion to a NumPy array is not allowed");
- no mixing with NumPy arrays: `x + np_array`, `x[np_index]`, `x[...] = np_array` and
  `cupy.where(np_mask, ...)` raise TypeError (Python and NumPy scalars are fine, as in CuPy);
- NumPy and SciPy functions run on it only where CuPy would accept them: NumPy ufuncs and
  the NumPy functions CuPy implements dispatch to the fake module (as CuPy's
  `__array_ufunc__` / `__array_function__` do); `np.add.at`, `scipy.special.erf` and anything
  CuPy lacks raise TypeError;
- out-of-range integer indices wrap around silently (CuPy's default), never raise;
- every host synchronisation is counted: `float()`, `int()`, `bool()`, `.item()`, `.get()`,
  `.tolist()`, `cupy.asnumpy`, printing, and the operations whose result size needs the
  data (`nonzero`, boolean-mask indexing). `SYNCS.count` holds the total.

It is a test backend, not a device: minibert itself does not know about it. minibert finds
"cupy" through `sys.modules` (`backend.py`), so `model.to("cupy")`, `to_device(x, "cupy")`
and the trainer's `device="cupy"` produce DeviceArrays while it is installed.

Not here: the tests that run minibert through it (`tests/test_gpu_rules.py`) and the script
that runs the same tests against real CuPy on a GPU (`bench/gpu_check.sh`).
"""
from __future__ import annotations

import sys
import types

import numpy as np
import scipy.special


class Syncs:
    """How many times the host waited for the "device"."""

    def __init__(self):
        self.count = 0
        self.where: list[str] = []

    def add(self, what: str) -> None:
        self.count += 1
        self.where.append(what)

    def reset(self) -> None:
        self.count = 0
        self.where.clear()


SYNCS = Syncs()


def _refuse(what: str):
    raise TypeError(f"CuPy rule broken: {what}")


def _is_host_array(x) -> bool:
    return isinstance(x, np.ndarray)


def _unwrap(x, what: str = "a NumPy array mixed with a device array"):
    """DeviceArray -> its data; Python/NumPy scalars pass; NumPy arrays are refused."""
    if isinstance(x, DeviceArray):
        return x._a
    if _is_host_array(x):
        _refuse(what)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, what) for v in x)
    return x


def _wrap(x):
    """NumPy results -> DeviceArrays (0-d results too: CuPy reductions return 0-d arrays)."""
    if isinstance(x, np.ndarray):
        return DeviceArray(x)
    if isinstance(x, np.generic):
        return DeviceArray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _key(key, shape):
    """An index for the wrapped data: device index arrays unwrapped (integer ones wrapped
    around modulo the axis length, as CuPy does), host arrays refused, boolean masks counted
    as a sync (the result's size depends on the data)."""
    parts = key if isinstance(key, tuple) else (key,)
    simple = not any(p is Ellipsis or p is None for p in parts)
    out = []
    for axis, p in enumerate(parts):
        if _is_host_array(p) or (isinstance(p, list) and p and not isinstance(p[0], (int, np.integer))):
            _refuse("indexing a device array with a NumPy array")
        if isinstance(p, DeviceArray):
            a = p._a
            if a.dtype == bool:
                SYNCS.add("boolean-mask indexing")
            elif simple and np.issubdtype(a.dtype, np.integer) and axis < len(shape) and shape[axis]:
                a = a % shape[axis]  # CuPy wraps out-of-range indices instead of raising
            p = a
        out.append(p)
    return tuple(out) if isinstance(key, tuple) else out[0]


class DeviceArray:
    """An array "on the device": NumPy data behind CuPy's rules (see the module docstring)."""

    __array_priority__ = 100

    def __init__(self, a: np.ndarray):
        self._a = a

    # -- conversions that CuPy refuses, and the ones that synchronise ---------------------
    def __array__(self, dtype=None, copy=None):
        _refuse("implicit conversion of a device array to NumPy (np.asarray); use .get() or to_numpy")

    def get(self):
        SYNCS.add("get")
        return self._a.copy()

    def item(self, *args):
        SYNCS.add("item")
        return self._a.item(*args)

    def tolist(self):
        SYNCS.add("tolist")
        return self._a.tolist()

    def __float__(self):
        SYNCS.add("float")
        return float(self._a)

    def __int__(self):
        SYNCS.add("int")
        return int(self._a)

    def __index__(self):
        SYNCS.add("index")
        return self._a.__index__()

    def __bool__(self):
        SYNCS.add("bool")
        return bool(self._a)

    def __repr__(self):
        SYNCS.add("repr")
        return f"DeviceArray({self._a!r})"

    __str__ = __repr__

    # -- attributes -----------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: DeviceArray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (DeviceArray(row) for row in self._a)  # rows stay on the device

    # -- methods: the data's, results kept on the device ---------------------------------
    def _method(name):
        def method(self, *args, **kwargs):
            if "out" in kwargs and kwargs["out"] is not None:
                kwargs["out"] = _unwrap(kwargs["out"])
            return _wrap(getattr(self._a, name)(*_unwrap(args), **kwargs))

        method.__name__ = name
        return method

    for _name in ("reshape", "transpose", "swapaxes", "astype", "sum", "mean", "max", "min", "any", "all", "copy",
                  "argmax", "argmin", "ravel", "cumsum", "std", "var", "clip", "dot", "fill", "squeeze", "view",
                  "take", "prod", "round"):
        locals()[_name] = _method(_name)
    del _name

    def nonzero(self):
        SYNCS.add("nonzero")
        return _wrap(self._a.nonzero())

    # -- indexing -------------------------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._a[_key(key, self._a.shape)])

    def __setitem__(self, key, value):
        self._a[_key(key, self._a.shape)] = _unwrap(value, "assigning a NumPy array into a device array")

    # -- arithmetic: through the ufuncs, so the same rules apply --------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__":
            _refuse(f"np.{ufunc.__name__}.{method} on a device array (CuPy: cupyx.scatter_add for add.at)")
        if getattr(np, ufunc.__name__, None) is not ufunc:
            _refuse(f"the non-NumPy ufunc {ufunc.__name__} (SciPy?) on a device array; use its cupyx version")
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = ufunc(*_unwrap(inputs, f"np.{ufunc.__name__} of a device array and a NumPy array"), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        name = func.__name__
        if name not in _FUNCTIONS:
            _refuse(f"np.{name} on a device array (not among the CuPy functions this stand-in allows)")
        return getattr(cupy, name)(*args, **kwargs)

    def _binary(op, reflected=False):
        def method(self, other):
            if _is_host_array(other):
                _refuse(f"np.{op} of a device array and a NumPy array")
            other = _unwrap(other)
            return _wrap(getattr(np, op)(other, self._a) if reflected else getattr(np, op)(self._a, other))

        method.__name__ = op
        return method

    def _inplace(op):
        def method(self, other):
            getattr(np, op)(self._a, _unwrap(other, f"in-place {op} with a NumPy array"), out=self._a)
            return self

        return method

    for _op, _names in {"add": ("__add__", "__radd__", "__iadd__"), "subtract": ("__sub__", "__rsub__", "__isub__"),
                        "multiply": ("__mul__", "__rmul__", "__imul__"),
                        "true_divide": ("__truediv__", "__rtruediv__", "__itruediv__"),
                        "floor_divide": ("__floordiv__", "__rfloordiv__", "__ifloordiv__"),
                        "power": ("__pow__", "__rpow__", "__ipow__"), "matmul": ("__matmul__", "__rmatmul__", None),
                        "remainder": ("__mod__", "__rmod__", "__imod__"),
                        "bitwise_and": ("__and__", "__rand__", "__iand__"),
                        "bitwise_or": ("__or__", "__ror__", "__ior__")}.items():
        locals()[_names[0]] = _binary(_op)
        locals()[_names[1]] = _binary(_op, reflected=True)
        if _names[2]:
            locals()[_names[2]] = _inplace(_op)
    for _op, _name in {"less": "__lt__", "less_equal": "__le__", "greater": "__gt__", "greater_equal": "__ge__",
                       "equal": "__eq__", "not_equal": "__ne__"}.items():
        locals()[_name] = _binary(_op)
    del _op, _names, _name
    __hash__ = None

    def __neg__(self):
        return DeviceArray(-self._a)

    def __abs__(self):
        return DeviceArray(abs(self._a))

    def __invert__(self):
        return DeviceArray(~self._a)


# ------------------------------------------------------------------------ the fake module
# The functions of CuPy's namespace that a NumPy-style kernel may call: each unwraps its
# device arguments (refusing NumPy arrays), runs NumPy's version and keeps the result on
# the "device". Every name here exists in CuPy with NumPy's signature.
_FUNCTIONS = {
    "zeros_like", "ones_like", "empty_like", "full_like", "concatenate", "stack", "where", "exp", "log", "sqrt",
    "tanh", "abs", "multiply", "divide", "add", "subtract", "maximum", "minimum", "take_along_axis", "dot",
    "matmul", "sum", "mean", "max", "min", "amax", "amin", "argmax", "einsum", "clip", "square", "power",
    "broadcast_to", "reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "copysign", "reciprocal",
    "greater_equal", "greater", "less", "less_equal", "equal", "not_equal", "logical_and", "logical_or",
    "logical_not", "isfinite", "isnan", "allclose", "array_equal", "sign", "tril", "triu", "outer", "put_along_axis",
    "cumsum", "any", "all", "std", "var", "split", "take", "tile", "repeat", "ravel",
}
# Creation functions: no array argument to unwrap, the result lands on the device.
_CREATION = {"zeros", "ones", "empty", "eye", "arange", "full", "linspace"}
# Attributes CuPy re-exports from NumPy unchanged (dtypes and dtype helpers).
_NUMPY_ALIASES = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool_", "integer",
                  "floating", "issubdtype", "dtype", "result_type", "newaxis", "pi", "inf", "nan", "e")


def _function(name):
    np_func = getattr(np, name)

    def func(*args, **kwargs):
        if "out" in kwargs and kwargs["out"] is not None:
            out = kwargs["out"]
            kwargs["out"] = _unwrap(out)
            np_func(*_unwrap(args, f"cupy.{name} given a NumPy array"), **kwargs)
            return out
        return _wrap(np_func(*_unwrap(args, f"cupy.{name} given a NumPy array"),
                             **{k: _unwrap(v, f"cupy.{name} given a NumPy array") for k, v in kwargs.items()}))

    func.__name__ = name
    return func


def _creation(name):
    np_func = getattr(np, name)

    def func(*args, **kwargs):
        return DeviceArray(np_func(*args, **kwargs))

    func.__name__ = name
    return func


def asarray(x, dtype=None):
    """Host -> device (explicit, so allowed for NumPy arrays); device arrays pass (cast if asked)."""
    if isinstance(x, DeviceArray):
        return x if dtype is None or x.dtype == dtype else DeviceArray(x._a.astype(dtype))
    return DeviceArray(np.array(x, dtype=dtype))  # a copy: the device has its own memory


def asnumpy(x):
    if isinstance(x, DeviceArray):
        return x.get()
    return np.asarray(x)


def nonzero(x):
    if not isinstance(x, DeviceArray):
        _refuse("cupy.nonzero given a NumPy array")
    return x.nonzero()


class _Generator:
    """cupy.random.Generator's `random(shape, dtype)` (a PCG64 stream here)."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64):
        return DeviceArray(self._rng.random(size, dtype=dtype))


def _scatter_add(target, index, values):
    """cupyx.scatter_add: target[index] += values, repeated indices summed."""
    np.add.at(_unwrap(target), _unwrap(index, "cupyx.scatter_add given a NumPy index"),
              _unwrap(values, "cupyx.scatter_add given NumPy values"))


def _erf(x, out=None):
    """cupyx.scipy.special.erf."""
    if out is None:
        return DeviceArray(scipy.special.erf(_unwrap(x, "cupyx.scipy.special.erf given a NumPy array")))
    scipy.special.erf(_unwrap(x), out=_unwrap(out))
    return out


def _build_modules() -> dict:
    cp = types.ModuleType("cupy")
    cp.__doc__ = "A CPU stand-in for CuPy (tests/cupy_standin.py)."
    cp.STANDIN = True
    cp.ndarray = DeviceArray
    cp.asarray = cp.array = cp.asanyarray = asarray
    cp.asnumpy = asnumpy
    cp.nonzero = nonzero
    cp.get_array_module = lambda *arrays: cp if any(isinstance(a, DeviceArray) for a in arrays) else np
    for name in _FUNCTIONS:
        setattr(cp, name, _function(name))
    for name in _CREATION:
        setattr(cp, name, _creation(name))
    for name in _NUMPY_ALIASES:
        setattr(cp, name, getattr(np, name))
    cp.random = types.SimpleNamespace(default_rng=_Generator, Generator=_Generator)

    class _Device:
        def synchronize(self):
            SYNCS.add("synchronize")

    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1), Device=_Device)
    cpx = types.ModuleType("cupyx")
    cpx.scatter_add = _scatter_add
    special = types.ModuleType("cupyx.scipy.special")
    special.erf = _erf
    cpx_scipy = types.ModuleType("cupyx.scipy")
    cpx_scipy.special = special
    cpx.scipy = cpx_scipy
    return {"cupy": cp, "cupyx": cpx, "cupyx.scipy": cpx_scipy, "cupyx.scipy.special": special}


MODULES = _build_modules()
cupy = MODULES["cupy"]


def install(monkeypatch) -> types.ModuleType:
    """Make the stand-in minibert's "cupy" for one test (pytest's monkeypatch undoes it)."""
    for name, module in MODULES.items():
        monkeypatch.setitem(sys.modules, name, module)
    SYNCS.reset()
    return cupy
