"""Batch-1 inference, each library undisturbed and right after the other's call.

    python bench/infer_alone.py                 # TinyBERT-4 (random weights), B = 1, T = 128, 2 threads each
    python bench/infer_alone.py --calls 40 --torch-threads 1

`bench_speed.py --what infer` alternates single calls (A B A B ...), fair on a noisy machine.
At batch 1 a call lasts 10-20 ms, and a library's idle worker threads keep spinning for a while
after its call returns (torch's OpenMP pool does), taking a core from the next call of the
other library. This script times four ways, each `--calls` calls after 5 warm-ups, medians:
minibert alone, transformers alone, minibert right after a transformers call, transformers
right after a minibert call. It explains a ratio; it does not replace bench_speed's.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_speed  # noqa: E402  (bench/bench_speed.py: the model pair and the inputs)


def median_ms(fn, calls: int, before=lambda: None) -> float:
    times = []
    for _ in range(5 + calls):
        before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[5:]) * 1e3)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=40, help="timed calls of each way (after 5 warm-ups)")
    p.add_argument("--seq", type=int, default=128, help="tokens per sequence")
    p.add_argument("--torch-threads", type=int, default=2, help="torch's intra-op threads")
    args = p.parse_args(argv)

    import torch

    import minibert

    torch.set_num_threads(args.torch_threads)
    ours = minibert.BertForSequenceClassification(bench_speed.minibert_config(), num_labels=2, seed=0).eval()
    with tempfile.TemporaryDirectory() as tmp:
        hf = bench_speed.load_into_transformers(ours, "AutoModelForSequenceClassification", Path(tmp),
                                                bench_speed.Device("numpy")).eval()
    x = bench_speed.make_inputs(1, args.seq, "infer")  # (1, T) each
    xt = {k: torch.from_numpy(v) for k, v in x.items()}

    def run_ours():
        with minibert.no_grad():
            ours(x["input_ids"], x["token_type_ids"], x["attention_mask"])

    def run_torch():
        with torch.inference_mode():
            hf(**xt)

    rows = [("minibert alone", median_ms(run_ours, args.calls)),
            ("transformers alone", median_ms(run_torch, args.calls)),
            ("minibert, each call right after a transformers call", median_ms(run_ours, args.calls, run_torch)),
            ("transformers, each call right after a minibert call", median_ms(run_torch, args.calls, run_ours))]
    print(f"# TinyBERT-4, B=1 T={args.seq}; torch {args.torch_threads} threads; {args.calls} calls each, medians")
    for name, ms in rows:
        print(f"{name:55s} {ms:7.2f} ms")
    print(f"ratio minibert / transformers: alone {rows[0][1] / rows[1][1]:.2f}, "
          f"each after the other {rows[2][1] / rows[3][1]:.2f}")


if __name__ == "__main__":
    main()
