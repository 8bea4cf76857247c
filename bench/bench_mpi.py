"""Data-parallel training on one machine: 1 process x 2 threads against 2 processes x 1 thread,
and, on paper, what the gradient all-reduce would cost between machines.

    python bench/bench_mpi.py                       # 3 repeats, a few minutes on 2 cores
    python bench/bench_mpi.py --repeats 5 --json bench-mpi.json

Measured: training tokens/s of two commands run exactly as a user runs them,

    finetune          the MiniLM-L6 teacher (6 x 384) on SST-2, batch 32, max length 64
    distill-general   MiniLM-L6 -> the 2 x 384 student (teacher:0,3), batch 32, sequence 128
                      (on the first part of WikiText-2's validation text, so that building the
                      corpus takes seconds)

each as `MINIBERT_NUM_THREADS=2 python -m minibert.train ...` and as
`MINIBERT_NUM_THREADS=1 mpiexec -n 2 python -m minibert.train ...`, alternating (the order
flips every repeat), medians over the repeats and the median of the per-repeat ratios. The
rate is read from metrics.jsonl between the first and the last log step (the first steps, with
their allocations and thread start-up, are left out; start-up and data loading too). Also run,
in one process only: distill-general into TinyBERT-4 (4 x 312, teacher layers mapped from the
top: 6 is no multiple of 4), for its compute time per step.

On paper: a ring all-reduce moves 2(N-1)/N x 4 bytes x P parameters in and out of each of N
machines per optimizer step; at a link of B bit/s that takes 2(N-1)/N x 32 P / B seconds.
With the global batch fixed, each machine's compute per step is T1/N (T1 = one machine's
time, measured here on 2 cores), so communication (not overlapped with compute in minibert:
the sum runs after the backward pass) exceeds compute once 2(N-1) 32 P / B > T1, that is
N > 1 + T1 B / (64 P). Gradient accumulation over k micro-batches multiplies T1 by k and
leaves the message alone: N > 1 + k T1 B / (64 P).

The machine is shared and noisy: only the alternating ratios mean much; the load average is
printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

from minibert.checkpoint import teacher_path  # noqa: E402
from minibert.config import BertConfig  # noqa: E402
from minibert.data import find_data  # noqa: E402
from minibert.distill import Distiller  # noqa: E402
from minibert.model import BertModel  # noqa: E402

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
COMMON = ["--log-steps", "2", "--eval-steps", "0", "--save-steps", "0", "--progress", "false",
          "--overwrite-output-dir"]
SETUPS = {"1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}


def workloads(corpus: Path) -> dict:
    general = ["distill-general", "--corpus", str(corpus), "--batch-size", "32", "--max-seq-length", "128"]
    return {
        "finetune": ["finetune", "--model", "minilm-l6", "--max-train-examples", "2000", "--max-eval-examples", "32",
                     "--batch-size", "32", "--max-length", "64", "--max-steps", "12"],
        "distill-general": [*general, "--student", "teacher:0,3", "--max-steps", "8"],
        "distill-general tinybert-4": [*general, "--student", "tinybert-4", "--mapping", "top", "--max-steps", "8"],
    }


def run(command: list[str], processes: int, threads: int, out: Path) -> dict:
    """One run; its steady rate: tokens and seconds between the first and the last log line."""
    cmd = [sys.executable, "-m", "minibert.train", *command, *COMMON, "--output-dir", str(out)]
    if processes > 1:
        cmd = [MPIEXEC, "-n", str(processes), *cmd]
    env = {**os.environ, "MINIBERT_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    logs = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "tokens_per_s" in r]
    first, last = logs[0], logs[-1]
    elapsed = [r["tokens"] / r["tokens_per_s"] for r in (first, last)]  # seconds since the loop started
    seconds = elapsed[1] - elapsed[0]
    return {"tokens_per_s": (last["tokens"] - first["tokens"]) / seconds,
            "s_per_step": seconds / (last["step"] - first["step"]), "world_size": last["world_size"]}


def trained_parameters(student_layers: int | None, preset: str | None) -> int:
    """Parameters the optimizer updates in distill-general: the student encoder and fit_dense."""
    teacher = BertConfig.from_dict(json.loads((teacher_path("minilm-l6") / "config.json").read_text()))
    student = (BertConfig.from_preset(preset, vocab_size=teacher.vocab_size) if preset
               else BertConfig.from_dict({**teacher.to_dict(), "num_hidden_layers": student_layers}))
    return BertModel(student).num_parameters() + Distiller(student, teacher, strategy="top").fit_dense.num_parameters()


def on_paper(params: int, t1: float, links=(10e9, 25e9)) -> list[str]:
    """The all-reduce against compute per step, for N machines; markdown rows."""
    rows = []
    for n in (2, 4, 8, 16, 64):
        volume = 2 * (n - 1) / n * 4 * params  # bytes in (and out) per machine per step
        times = [volume * 8 / b for b in links]
        rows.append(f"| {n} | {volume / 1e6:.0f} MB | " + " | ".join(f"{t * 1e3:.0f} ms" for t in times)
                    + f" | {t1 / n * 1e3:.0f} ms |")
    return rows


def dominates_from(params: int, t1: float, link: float, k: int = 1) -> int:
    """The smallest N whose all-reduce takes longer than its compute: N > 1 + k T1 B / (64 P)."""
    return int(1 + k * t1 * link / (64 * params)) + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of each setup (default 3)")
    ap.add_argument("--json", help="also write the measurements to this file")
    a = ap.parse_args()
    if MPIEXEC is None:
        raise SystemExit("mpiexec not found: pip install -e '.[mpi]'")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {a.repeats} repeats", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "wiki-part.txt"  # the first 200 KB of WikiText-2 validation: ~500 sequences of 128
        corpus.write_text(find_data("wikitext-2-raw", "--corpus").joinpath("wiki.valid.raw").read_text()[:200_000])
        for r in range(a.repeats):
            for name, command in workloads(corpus).items():
                setups = list(SETUPS.items())[:: 1 if r % 2 == 0 else -1]  # the order flips every repeat
                if name.endswith("tinybert-4"):
                    setups = [s for s in setups if s[1][0] == 1]  # its compute time per step only
                for setup, (processes, threads) in setups:
                    m = run(command, processes, threads, Path(tmp) / "out")
                    results.setdefault(name, {}).setdefault(setup, []).append(m)
                    print(f"repeat {r + 1} {name:28s} {setup:24s} {m['tokens_per_s']:7.0f} tokens/s  "
                          f"{m['s_per_step']:.2f} s/step", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f}\n")
    print("| command | 1 process x 2 threads, tokens/s | 2 processes x 1 thread, tokens/s | ratio (2x1 / 1x2) |")
    print("|---|---|---|---|")
    (one, two) = SETUPS
    for name, by_setup in results.items():
        if two not in by_setup:
            continue
        ratios = [b["tokens_per_s"] / x["tokens_per_s"] for x, b in zip(by_setup[one], by_setup[two])]
        med = {s: statistics.median(m["tokens_per_s"] for m in by_setup[s]) for s in (one, two)}
        print(f"| {name} | {med[one]:.0f} | {med[two]:.0f} | {statistics.median(ratios):.2f} "
              f"(repeats {', '.join(f'{x:.2f}' for x in ratios)}) |")
    print("\nOn paper (ring all-reduce, float32 gradients, no overlap with compute; T1 measured above at 1 x 2):")
    for label, name, layers, preset in (("2 x 384 student", "distill-general", 2, None),
                                        ("TinyBERT-4", "distill-general tinybert-4", None, "tinybert-4")):
        params = trained_parameters(layers, preset)
        t1 = statistics.median(m["s_per_step"] for m in results[name][one])
        print(f"\n{label}: {params:,} trained parameters; compute T1 = {t1:.2f} s per step (batch 32 x 128)")
        print("| machines N | bytes per machine | at 10 Gbit/s | at 25 Gbit/s | compute T1/N |")
        print("|---|---|---|---|---|")
        print("\n".join(on_paper(params, t1)))
        for link in (10e9, 25e9):
            print(f"communication exceeds compute at {link / 1e9:.0f} Gbit/s from N = "
                  f"{dominates_from(params, t1, link)} (accumulation 1), N = {dominates_from(params, t1, link, 4)} "
                  f"(accumulation 4)")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
