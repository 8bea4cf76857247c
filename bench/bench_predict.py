"""Predictions: minibert's TextClassifier vs transformers' text-classification pipeline on one model folder.

What is measured, on the same folder and the same texts (SST-2 dev sentences):

  agreement   every text through both, every class's score (top_k=None): how many top labels
              agree, and the largest score difference.
  file        throughput over all the texts at one batch size (--batch-size, both sides):
              minibert's `clf(texts)` (it sorts texts by length, batches, restores the order)
              against `pipeline(texts, batch_size=B)` (batches in the given order). Tokenization,
              forward and softmax are inside both clocks.
  batch 1     latency of one text per call, `clf(text)` against `pipeline(text)`, over a set of
              sentences (--latency-texts, spread over the length range).

Methodology: both contestants in one process, warmed up first, then repeats alternating
A B A B ... so slow drifts of the machine hit both alike; medians of the repeats (and the
interquartile range), the ratio minibert / transformers. torch runs on --torch-threads
threads (default: all cores, as minibert's pool: MINIBERT_NUM_THREADS), under the pipeline's
own no-grad inference. Numbers are only meaningful on a quiet machine: the header prints the
load average.

Usage
    python bench/bench_predict.py                                  # runs/quick/student, all 872 sentences
    python bench/bench_predict.py --model runs/teacher-sst2 --batch-size 64 --repeats 7
    python bench/bench_predict.py --quick                          # smoke test: a small random model
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from harness import machine_info, summary, time_alternating  # noqa: E402  (bench/harness.py)


def sst2_sentences(n: int) -> list[str]:
    from minibert import data as D

    rows = D.read_glue("sst-2", D.find_data("SST-2", "--data") / "dev.tsv")
    return [r.text_a for r in rows[:n or None]]


def small_model_folder(root: Path) -> Path:
    """--quick: a randomly initialised 2-layer classifier with BERT's vocabulary, saved by minibert."""
    from minibert import BertConfig, BertForSequenceClassification, BertTokenizer
    from minibert import data as D

    tok = BertTokenizer(D.default_vocab())
    model = BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=len(tok)), num_labels=2, seed=0)
    model.config.set_labels(["negative", "positive"])
    return model.save_pretrained(root / "model", tokenizer=tok)


def median_iqr(times: list[float]) -> tuple[float, float]:
    """(median, interquartile range) of a list of durations (harness.summary's)."""
    stats = summary(times)
    return stats["median_s"], stats["iqr_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", default="runs/quick/student", help="a classifier folder minibert saved")
    parser.add_argument("--texts", type=int, default=0, help="use the first N SST-2 dev sentences; 0: all 872")
    parser.add_argument("--batch-size", type=int, default=32, help="the file's batch size, both sides")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the file, per contestant")
    parser.add_argument("--latency-texts", type=int, default=40, help="sentences timed one per call (batch 1)")
    parser.add_argument("--latency-repeats", type=int, default=5, help="passes over those sentences")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="smoke test: a small random model, 64 texts, 2 repeats")
    args = parser.parse_args()

    import torch
    import transformers

    from minibert import TextClassifier

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.torch_threads)
    scratch = tempfile.TemporaryDirectory()
    if args.quick:
        folder = small_model_folder(Path(scratch.name))
        args.texts, args.repeats, args.latency_texts, args.latency_repeats = 64, 2, 8, 1
    else:
        folder = Path(args.model)
    texts = sst2_sentences(args.texts)
    ours = TextClassifier.from_pretrained(folder, batch_size=args.batch_size)
    theirs = transformers.pipeline("text-classification", model=str(folder), device="cpu")

    info = machine_info("numpy")
    print(f"# bench_predict: {folder}, {len(texts)} SST-2 dev sentences, batch size {args.batch_size}")
    print(f"# {info['cpu']}, {info.get('usable_cpus', info['logical_cpus'])} usable CPUs, load average "
          f"{info.get('loadavg_1_5_15')}; numpy {info['numpy']}, torch {info['torch']} ({info['torch_threads']} "
          f"threads), transformers {info['transformers']}; minibert kernels: {info['minibert_kernels']}")

    # agreement, every class of every text
    a, b = ours(texts, top_k=None), theirs(texts, top_k=None, batch_size=args.batch_size)
    same_label = sum(x[0]["label"] == y[0]["label"] for x, y in zip(a, b))
    worst = max(abs({r["label"]: r["score"] for r in x}[r2["label"]] - r2["score"]) for x, y in zip(a, b) for r2 in y)
    print(f"\nagreement: same label for {same_label} of {len(texts)} texts; largest score difference {worst:.1e}")

    # the file: warm up, then alternate
    run_ours = lambda: ours(texts)
    run_theirs = lambda: theirs(texts, batch_size=args.batch_size)
    run_ours(), run_theirs()
    file_times = time_alternating({"minibert": run_ours, "transformers": run_theirs}, args.repeats)

    # batch 1: sentences spread over the length range, each a call
    by_length = sorted(texts, key=len)
    picks = [by_length[int(i)] for i in np.linspace(0, len(by_length) - 1, args.latency_texts)]
    ours(picks[0]), theirs(picks[0])
    one = {"minibert": [], "transformers": []}
    for _ in range(args.latency_repeats):
        for text in picks:
            for name, t in time_alternating({"minibert": lambda: ours(text), "transformers": lambda: theirs(text)}, 1).items():
                one[name] += t

    print("\n| measure | minibert | transformers | minibert / transformers |")
    print("|---|---|---|---|")
    (m, mi), (t, ti) = median_iqr(file_times["minibert"]), median_iqr(file_times["transformers"])
    n = len(texts)
    print(f"| {n} texts, batch {args.batch_size}: s per pass (median of {args.repeats} ± IQR) | {m:.2f} ± {mi:.2f} "
          f"({n / m:.0f} texts/s) | {t:.2f} ± {ti:.2f} ({n / t:.0f} texts/s) | {m / t:.2f} |")
    (m, mi), (t, ti) = median_iqr(one["minibert"]), median_iqr(one["transformers"])
    print(f"| batch 1: ms per text (median of {len(one['minibert'])} calls ± IQR) | {1000 * m:.2f} ± {1000 * mi:.2f} "
          f"| {1000 * t:.2f} ± {1000 * ti:.2f} | {m / t:.2f} |")
    scratch.cleanup()


if __name__ == "__main__":
    main()
