"""What the benchmark scripts share: the machine they ran on, and timing contestants fairly.

    info = machine_info("numpy"); print_machine(info)        # CPU, cores, library versions, BLAS, load
    times = time_alternating({"minibert": ours, "torch": theirs}, repeats=10, warmup=2)
    stats = summary(times["minibert"])                       # median_s, iqr_s, min_s, times_s

Contestants run in turn, A B A B ..., so a slow moment of a shared machine hits all of them
alike; medians and interquartile ranges, not means, because a busy machine's outliers are
one-sided. Used by bench_speed.py, bench_predict.py and student_sizes.py (gpu_check.py and
profile_step.py reach it through bench_speed).
"""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Callable

import numpy as np



def machine_info(device: str) -> dict:
    """What the numbers were measured on: CPU, cores, library versions, BLAS, threads, load."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown"
    info["cpu"] = cpu
    info["logical_cpus"] = os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    info["numpy"] = np.__version__
    try:  # numpy >= 1.25 returns the build configuration as a dict
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
        if blas.get("openblas configuration"):
            info["numpy_blas_config"] = blas["openblas configuration"]
    except Exception:  # older numpy: show_config only prints
        info["numpy_blas"] = "unknown (see numpy.show_config())"
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version", "prefix")}
                               for p in threadpool_info()]
    except ImportError:
        pass
    info["thread_env"] = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                     "MINIBERT_NUM_THREADS", "MINIBERT_FAST") if k in os.environ}
    from minibert import fast, kernels, threads

    # what the model runs is what minibert.kernels holds (fast.py's kernels unless MINIBERT_FAST=0)
    info["minibert_kernels"] = (f"fast.py, {threads.num_threads()} threads, BLAS single-threaded"
                                if kernels.linear_forward is fast.linear_forward else "functional.py (MINIBERT_FAST=0)")
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    import torch
    import transformers

    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["transformers"] = transformers.__version__
    if device == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cupy"] = cupy.__version__
        info["torch_cuda"] = torch.version.cuda
    return info


def print_machine(info: dict) -> None:
    print("# machine")
    for k, v in info.items():
        print(f"#   {k}: {v}")
    load = info.get("loadavg_1_5_15")
    cpus = info.get("usable_cpus") or info.get("logical_cpus") or 1
    if load and load[0] > 0.5 * cpus:
        print(f"# WARNING: 1-minute load average {load[0]} on {cpus} CPUs: the machine is busy, "
              "timings are not representative")
    sys.stdout.flush()


def time_alternating(contestants: dict[str, Callable[[], object]], repeats: int, warmup: int = 0,
                     sync: Callable[[], None] = lambda: None,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds per call of each contestant, repeats interleaved A B A B ... after a warm-up.

    The warm-up (also interleaved) pays one-off costs: BLAS thread start-up, allocator
    growth, CuPy kernel compilation, torch's lazily created gradients and optimizer state.
    `sync` waits for a GPU's queued work (a no-op on the CPU), before and after each call.
    `clock`: wall time by default; `time.process_time` (CPU seconds of all the process's
    threads) compares single-threaded runs on a loaded machine, where waiting for a core is
    not work (with several threads it would count their spinning as work).
    """
    for _ in range(warmup):
        for fn in contestants.values():
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(repeats):
        for name, fn in contestants.items():
            sync()
            t0 = clock()
            fn()
            sync()
            times[name].append(clock() - t0)
    return times


def summary(times: list[float]) -> dict:
    """median_s, iqr_s (interquartile range), min_s and the times themselves, in seconds."""
    q25, med, q75 = np.percentile(times, [25, 50, 75])
    return {"median_s": float(med), "iqr_s": float(q75 - q25), "min_s": float(min(times)),
            "times_s": [float(t) for t in times]}
