"""Reporting a distilled model: size, speed and score side by side with its teacher.

    describe(model, "sst-2", dev)   task metrics + parameters + forward latency at batch 1 and 32
    results_table(results)          the teacher/student text table the pipeline prints
    write_results(folder, results, settings)   results.json, and the model cards (modelcard.py)

Latency here is minibert's own forward pass, measured in-process with medians; the benchmark
scripts in `bench/` compare against PyTorch. Scores come from `evaluation.py`; this module only
measures and formats, it trains nothing.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import data as D
from .distributed import world
from .evaluation import evaluate
from .interrupts import check
from .modelcard import write_model_cards
from .nn import no_grad
from .runfolder import write_text_atomic


def measure_latency(model, batch_size: int, seq_len: int, repeats: int = 10, vocab: int = 1000, seed: int = 0) -> float:
    """Median forward time in milliseconds of a (batch_size, seq_len) batch in eval mode, under
    no_grad (as a prediction runs: the inference path on NumPy).

    Ids are `vocab` consecutive ids from 1000 (past BERT's [unused] and special tokens), or
    from 0 for a vocabulary too small for that."""
    rng = np.random.default_rng(seed)
    lo = max(0, min(1000, model.config.vocab_size - vocab))
    ids = rng.integers(lo, lo + min(vocab, model.config.vocab_size), size=(batch_size, seq_len)).astype(np.int32)
    was = model.training
    model.eval()
    times = []
    with no_grad():
        model(ids)  # warm-up: first-call allocations and thread start-up are not the model's speed
        for _ in range(repeats):
            check("the latency benchmark")  # a stop request ends the command here, not after the benchmark
            t0 = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - t0)
    model.train(was)
    return float(np.median(times) * 1000)


def encoder_params(model) -> int:
    """Parameters of the encoder without the embeddings and the head (the 'compute' size)."""
    return int(sum(p.size for n, p in model.named_parameters().items() if ".encoder." in f".{n}"))


def describe(model, task: str, dev: D.EncodedExamples, repeats: int = 10) -> dict:
    """Task metrics, parameters and latency at batch 1 and 32, sequence 64.

    "score" is the task's main metric (acc for SST-2/MRPC, mcc for CoLA); "accuracy" is kept
    for every task so results files compare across tasks.
    """
    metrics = evaluate(model, task, dev)
    main = D.get_task(task).main_metric
    return {**metrics, "accuracy": metrics.get("acc"), "main_metric": main, "score": metrics[main],
            "params": model.num_parameters(),
            "encoder_params": encoder_params(model),
            "latency_ms": measure_latency(model, 1, 64, repeats),
            "latency_ms_b32": measure_latency(model, 32, 64, max(3, repeats // 3))}


def compare(teacher: dict, student: dict) -> dict:
    """What the student keeps of the teacher's main metric, and how much faster it runs (two describe()s)."""
    return {"retained": student["score"] / teacher["score"],
            "speedup_b1": teacher["latency_ms"] / student["latency_ms"],
            "speedup_b32": teacher["latency_ms_b32"] / student["latency_ms_b32"]}


def results_table(results: dict) -> str:
    """A small text table: one row per described model in results (teacher first)."""
    rows = [("model", "params", "encoder", "dev metric", "latency b1 (ms)", "latency b32 (ms)")]
    for name, r in results.items():
        if not isinstance(r, dict) or "params" not in r:
            continue
        rows.append((name, f"{r['params']:,}", f"{r['encoder_params']:,}", f"{r['main_metric']} {100 * r['score']:.2f}",
                     f"{r['latency_ms']:.1f}", f"{r['latency_ms_b32']:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def summary_line(results: dict, folder) -> str:
    """One sentence under the table: retained score and speed-ups (results holds compare()'s keys)."""
    return (f"student keeps {100 * results['retained']:.1f}% of the teacher's dev "
            f"{results['teacher']['main_metric']} at {results['speedup_b1']:.1f}x (batch 1) / "
            f"{results['speedup_b32']:.1f}x (batch 32) its speed; results in {Path(folder) / 'results.json'}")


def write_results(folder, results: dict, settings: tuple = ()) -> Path:
    """results.json in `folder` (created if needed, written atomically); returns its path. In
    several processes, rank 0 writes it.

    settings: the run's settings dataclasses. Given them, each model folder the results
    describe (a fine-tuned folder, the pipeline's student and teacher) also gets its model
    card, README.md (`modelcard.write_model_cards`)."""
    path = Path(folder) / "results.json"
    if not world().is_root:
        return path
    write_text_atomic(path, json.dumps(results, indent=2) + "\n")
    if settings:
        write_model_cards(folder, results, settings)
    return path
