"""Shared test helpers: where the real data lives, small models, random batches, and the one
gradient-check driver every test file uses.

Gradient checks run in float64 with central differences against a random upstream gradient
(a ones upstream would hide errors that cancel across a row, e.g. softmax's).
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minibert import BertConfig, kernels

REPO = Path(__file__).resolve().parent.parent
# No test downloads anything: a GLUE task missing from the data roots is an error here, not a fetch
# (the fetching itself is tested against a local server, test_practitioner.py, which lifts this).
os.environ["MINIBERT_OFFLINE"] = "1"
NOTEBOOKS = REPO / "notebooks"
if str(NOTEBOOKS) not in sys.path:
    # as the notebooks' setup cell does: exercises.py, gradcheck.py, solutions/ importable
    sys.path.insert(1, str(NOTEBOOKS))
# an exercise cell's `answer("nb02", "gelu_tanh_backward", ...)` -> ("nb02", "gelu_tanh_backward")
ANSWER_CALL = re.compile(r"""answer\(\s*["'](nb0\d)["']\s*,\s*["'](\w+)["']""")

# With GRADCHECK_REPORT=path set, every check appends {"name", "worst_scaled"} to that file
# (one JSON object per line), so a run can list the worst error per backward.
_REPORT = os.environ.get("GRADCHECK_REPORT")


# ------------------------------------------------------------------------------- data


def data_root() -> Path:
    """The folder named by MINIBERT_DATA (CI sets it to ../shared/data)."""
    return Path(os.environ.get("MINIBERT_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if not (root / "SST-2" / "train.tsv").is_file():
        raise RuntimeError(f"real data not found under {root}: set MINIBERT_DATA to the shared data folder")
    return root


@pytest.fixture(scope="session")
def tok(data_dir):
    """BERT's uncased WordPiece tokenizer, from the shared data."""
    from minibert.tokenizer import BertTokenizer

    return BertTokenizer(data_dir / "bert-base-uncased" / "vocab.txt")


@pytest.fixture
def restore_kernels():
    """minibert.kernels, with every kernel put back after the test (for tests that swap some)."""
    saved = {n: getattr(kernels, n) for n in dir(kernels) if n.endswith(("_forward", "_backward", "_mask"))}
    yield kernels
    for name, kernel in saved.items():
        setattr(kernels, name, kernel)


class HostReads(np.ndarray):
    """An array that counts reads back to the host (float(), .item(), bool()): on CuPy each is a
    device synchronisation, so tests assert how many a step makes. `arr.view(HostReads)`."""

    reads = 0

    def __float__(self):
        HostReads.reads += 1
        return float(self.view(np.ndarray))

    def item(self, *args):
        HostReads.reads += 1
        return self.view(np.ndarray).item(*args)

    def __bool__(self):
        HostReads.reads += 1
        return bool(self.view(np.ndarray))


# ------------------------------------------------------------------ small models, batches


def small_config(nh=2, hs=3, layers=2, vocab=23, act="gelu", dropout=0.0, **kw) -> BertConfig:
    """A BERT small enough for finite differences over every parameter."""
    return BertConfig(vocab_size=vocab, hidden_size=nh * hs, num_hidden_layers=layers, num_attention_heads=nh,
                      intermediate_size=5, max_position_embeddings=8, hidden_act=act,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                      # unit-scale weights keep tiny LayerNorms well conditioned for finite differences
                      initializer_range=1.0, **kw)


def random_batch(rng, b, t, pad, vocab=23, type_vocab=2):
    """ids, token types, attention mask (B, T); with pad, each row has a random real length >= 1
    and id 0 ([PAD]) after it."""
    ids = rng.integers(1, vocab, size=(b, t))
    types = rng.integers(0, type_vocab, size=(b, t))
    mask = np.ones((b, t), dtype=np.int64)
    if pad and t > 1:
        for i in range(b):
            n = rng.integers(1, t + 1)  # real length of row i, at least 1
            mask[i, n:] = 0
            ids[i, n:] = 0
    return ids, types, mask


# ------------------------------------------------------------------- gradient checking


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


def richardson_grad(f, x, eps, indices=None):
    """Central differences at eps and eps/2 combined so the eps^2 error term cancels.

    LayerNorms a few units wide curve enough that a plain 1e-5 step is off by ~3e-5 relative
    in rare draws; a smaller step instead lets rounding dominate.
    """
    return (4 * numerical_grad(f, x, eps / 2, indices) - numerical_grad(f, x, eps, indices)) / 3


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


def gradcheck(objective, params: dict, grads: dict, rng=None, *, k=None, eps=1e-6, rtol=1e-6, atol=1e-8,
              richardson=False, frozen_rows=None, name=""):
    """THE gradient-check driver: every analytic gradient in `grads` against finite differences
    of the scalar `objective()` with respect to the array of the same name in `params`.

    params, grads: {name: float64 array} (arrays are perturbed in place and restored); k: check
    k random entries of each (all when None); richardson: eps and eps/2 combined (see
    richardson_grad); frozen_rows: {name: row} not compared (torch's padding_idx leaves the pad
    row of the word embeddings alone whatever its true derivative). Returns the worst relative error.
    """
    worst = 0.0
    for pname, p in params.items():
        idx = None if k is None else sample_indices(p.shape, k, rng)
        num = richardson_grad(objective, p, eps, idx) if richardson else numerical_grad(objective, p, eps, idx)
        for suffix, row in (frozen_rows or {}).items():
            if pname.endswith(suffix):
                num[row] = np.nan
        worst = max(worst, assert_grad_close(grads[pname], num, rtol=rtol, atol=atol, name=f"{name}{pname}"))
    return worst


def check_kernel(forward, backward, inputs, rng, name, **kw):
    """A kernel pair: backward(dout, cache) against d <forward(*inputs)[0], dout> / d input, every input."""
    out, cache = forward(*inputs, **kw)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    checked = {f"input {i}": (x, g) for i, (x, g) in enumerate(zip(inputs, grads)) if x is not None and g is not None}
    for key, (x, g) in checked.items():
        assert g.shape == x.shape, f"{name}: gradient of {key} has shape {g.shape}, the input {x.shape}"
    objective = lambda: float((forward(*inputs, **kw)[0] * dout).sum())
    return gradcheck(objective, {k: x for k, (x, _) in checked.items()}, {k: g for k, (_, g) in checked.items()},
                     name=f"{name} ")


def check_module(module, x, rng, name, extra=(), k=12):
    """A Module: dx and every parameter gradient against d <forward(x, *extra), G> (G random)."""
    module = module.astype(np.float64)
    out = module.forward(x, *extra)
    out = out[0] if isinstance(out, tuple) else out
    G = rng.standard_normal(out.shape)
    module.zero_grad()
    module.forward(x, *extra)
    dx = module.backward(G)

    def objective():
        o = module.forward(x, *extra)
        return float(((o[0] if isinstance(o, tuple) else o) * G).sum())

    if dx is not None:
        gradcheck(objective, {"input": x}, {"input": dx}, rtol=1e-5, atol=1e-8, name=f"{name} ")
    gradcheck(objective, module.named_parameters(), module.named_gradients(), rng, k=k, rtol=1e-5, atol=1e-8,
              name=f"{name} ")


# ------------------------------------------------------------------------ subprocesses


def wait_for(condition, proc, what: str, timeout: float = 300):
    """Poll `condition()` until it holds, while the subprocess `proc` (stderr piped, text) runs:
    a run that ends first, or a timeout, fails naming `what` (with the run's last stderr)."""
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[1][-3000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
