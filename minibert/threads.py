"""The thread pool that fast.py's kernels, the inference path (fast_inference.py) and the
optimizer's block-wise update share.

NumPy's element-wise ufuncs, its reductions, scipy's erf and `np.matmul` on small stacked
matrices run on one core, and all of them release the GIL. So a small pool of threads,
each working on a disjoint range of rows, uses every core. Work is cut two ways:

    for_blocks(fn, n_rows, row_bytes)  cache-sized row blocks (~1 MiB), one contiguous share
                                       of blocks per thread: element-wise formulas of several
                                       passes then read main memory about once
    for_shares(fn, n)                  one contiguous range per thread: matmuls, whose cache
                                       blocking is BLAS's business
    for_elements(fn, *arrays)          for_blocks over flat views of same-shaped arrays
                                       (in-place updates such as AdamW's)

One pool for everything, matmuls included. OpenBLAS's own threads spin for a while after
each call, and while they spin they take the cores the pool's element-wise work needs (a
2-thread erf right after a 2-thread matmul ran no faster than a 1-thread one, measured). So
the first use of the pool sets NumPy's BLAS to one thread (threadpoolctl), process-wide, and
the linear layers split their matmuls over the pool instead.

This module holds no kernel and knows nothing about arrays' meaning: the kernels are in
`functional.py` (reference) and `fast.py` (their blocked versions); which one runs is
decided in `kernels.py`.

Threads: $MINIBERT_NUM_THREADS, default the number of cores (at most 8).
MINIBERT_FAST=0 switches the pool off (`ENABLED`): the reference kernels run, `for_elements`
calls its function once on the whole arrays, and BLAS keeps its own threads.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import threadpoolctl

ENABLED = os.environ.get("MINIBERT_FAST", "1") != "0"
# Rows per block: ~1 MiB fits the L2 cache (2 MiB a core here) with room for temporaries, and
# is big enough that NumPy's ~2 us per call stays small (32 KiB blocks ran GELU 3.5x slower).
BLOCK_BYTES = 1 << 20

_pool: ThreadPoolExecutor | None = None
_blas_limit = None


def num_threads() -> int:
    return int(os.environ.get("MINIBERT_NUM_THREADS", 0)) or min(os.cpu_count() or 1, 8)


def _get_pool() -> ThreadPoolExecutor:
    global _pool, _blas_limit
    if _pool is None:
        _blas_limit = threadpoolctl.threadpool_limits(1, user_api="blas")  # kept: see the module docstring
        _pool = ThreadPoolExecutor(num_threads(), thread_name_prefix="minibert")
    return _pool


def _run_shares(fn, shares) -> None:
    """One share (a list of (lo, hi) ranges) per thread; this thread takes the first."""
    def run(share):
        for lo, hi in share:
            fn(lo, hi)

    pool = _get_pool()
    futures = [pool.submit(run, share) for share in shares[1:]]
    run(shares[0])
    for f in futures:
        f.result()  # re-raises a worker's exception here


def for_blocks(fn, n_rows: int, row_bytes: int) -> None:
    """Call fn(lo, hi) on row ranges that cover [0, n_rows): cache-sized blocks, split into one
    contiguous share per thread. fn must write only rows lo:hi of its outputs."""
    per_block = max(1, BLOCK_BYTES // max(row_bytes, 1))
    blocks = [(lo, min(lo + per_block, n_rows)) for lo in range(0, n_rows, per_block)]
    nt = max(1, min(num_threads(), len(blocks)))
    _run_shares(fn, [blocks[i * len(blocks) // nt:(i + 1) * len(blocks) // nt] for i in range(nt)])


def for_shares(fn, n: int) -> None:
    """Call fn(lo, hi) once per thread on contiguous ranges covering [0, n)."""
    nt = max(1, min(num_threads(), n))
    _run_shares(fn, [[(i * n // nt, (i + 1) * n // nt)] for i in range(nt)])


def for_elements(fn, *arrays) -> None:
    """fn(*views) on matching cache-sized 1-D blocks of same-shaped arrays, in the threads.
    Calls fn(*arrays) once instead for CuPy or non-contiguous arrays, or when ENABLED is off."""
    if not (ENABLED and all(isinstance(a, np.ndarray) and a.flags.c_contiguous for a in arrays)):
        return fn(*arrays)
    flat = [a.reshape(-1) for a in arrays]  # views
    for_blocks(lambda lo, hi: fn(*(f[lo:hi] for f in flat)), flat[0].size, flat[0].itemsize)
