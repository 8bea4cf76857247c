"""Which student? Encoder parameters and forward latency of candidate student shapes vs the teacher.

TinyBERT's targets are relative to the teacher (all-MiniLM-L6-v2: 6 layers x 384): at most
half its encoder parameters and at least 3x its speed. Speed-up is not parameters: the
embeddings, attention's T x T work and per-layer overheads do not shrink with width, so this
script measures minibert's own forward pass (eval mode, sequence 64 as in the distillation
results, batch 1 and 32), all shapes in one process, alternating, medians of the repeats.

    python bench/student_sizes.py                  # the README's trade-off table
    python bench/student_sizes.py --results runs/d2x384/results.json runs/d3x384/results.json
    python bench/student_sizes.py --probe runs/teacher-sst2      # which teacher layers to copy

With --results, the dev accuracy of trained students (distill-task / pipeline results.json)
is listed next to the shape they have. With --probe FOLDER (a teacher fine-tuned on SST-2),
every 2- and 3-layer subset of its layers is copied into a student with the teacher's
classifier and scored on SST-2 dev *before any training*: a cheap hint of which layers carry
the task (with a fine-tuned teacher, the top layer does).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing
sys.path.insert(0, str(REPO / "bench"))

from minibert.config import BertConfig
from minibert.model import BertForSequenceClassification
from minibert.report import encoder_params
from harness import time_alternating  # noqa: E402  (bench/harness.py)

TEACHER = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
SHAPES = {
    "teacher 6x384 (MiniLM-L6)": TEACHER,
    "3x384 (teacher:0,2,4)": {**TEACHER, "num_hidden_layers": 3},
    "2x384 (teacher:0,5)": {**TEACHER, "num_hidden_layers": 2},
    "4x312 (tinybert-4)": dict(hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200),
    "3x312 (tinybert-3)": dict(hidden_size=312, num_hidden_layers=3, num_attention_heads=12, intermediate_size=1200),
    # narrower than the teacher, fewer heads: only MiniLMv2's relations (distill --method minilmv2) can teach them
    "4x256, 4 heads": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "3x256, 4 heads": dict(hidden_size=256, num_hidden_layers=3, num_attention_heads=4, intermediate_size=1024),
    "4x192, 3 heads (narrow-4x192)": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3,
                                          intermediate_size=768),
    "3x192, 3 heads (narrow-3x192)": dict(hidden_size=192, num_hidden_layers=3, num_attention_heads=3,
                                          intermediate_size=768),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--results", nargs="*", default=[], help="results.json files of trained students")
    p.add_argument("--probe", default=None, help="a teacher folder fine-tuned on SST-2: score copied-layer students")
    p.add_argument("--probe-examples", type=int, default=0, help="score on the first N dev sentences (0: all 872)")
    args = p.parse_args()
    if args.probe:
        return probe(args.probe, args.probe_examples)
    rng = np.random.default_rng(0)
    models = {name: BertForSequenceClassification(BertConfig(**kw), 2).eval() for name, kw in SHAPES.items()}
    times = {}
    for b in (1, 32):
        ids = rng.integers(1000, 30000, (b, args.seq))
        # alternating, so a slow moment hits every shape (bench/harness.py)
        calls = {name: (lambda m=m: m(ids)) for name, m in models.items()}
        by_name = time_alternating(calls, args.repeats if b == 1 else max(3, args.repeats // 3), warmup=1)
        times.update({(name, b): t for name, t in by_name.items()})
    med = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    teacher = next(iter(models))
    t_params = encoder_params(models[teacher])
    print("| shape | encoder params | vs teacher | b1 latency (ms) | b32 latency (ms) | speed-up b1 / b32 |")
    print("|---|---|---|---|---|---|")
    for name, m in models.items():
        e = encoder_params(m)
        print(f"| {name} | {e / 1e6:.2f} M | {e / t_params:.2f} | {med[name, 1]:.1f} | {med[name, 32]:.0f} | "
              f"{med[teacher, 1] / med[name, 1]:.2f}x / {med[teacher, 32] / med[name, 32]:.2f}x |")
    print(f"\nsequence {args.seq}, eval mode, medians of alternating repeats, minibert fast kernels")
    for path in args.results:
        r = json.loads(Path(path).read_text())
        s = r["student"]
        print(f"{path}: student encoder {s['encoder_params']:,} params, dev {s['main_metric']} "
              f"{100 * s['score']:.2f} (teacher {100 * r['teacher']['score']:.2f})")


def probe(folder: str, examples: int = 0) -> None:
    import itertools

    from minibert.evaluation import evaluate
    from minibert.finetune import load_task
    from minibert.settings import TaskDataSettings
    from minibert.specs import build_student, load_teacher, tokenizer_for

    tok = tokenizer_for(folder)
    _, _, dev = load_task(TaskDataSettings(task="sst-2", max_train_examples=1, max_eval_examples=examples), tok)
    teacher = load_teacher(folder, 2)
    acc = lambda m: 100 * evaluate(m, "sst-2", dev)["acc"]
    print(f"teacher ({teacher.config.num_hidden_layers} layers): SST-2 dev {acc(teacher):.2f}, no training")
    print("| teacher layers copied | dev acc before training |\n|---|---|")
    for k in (2, 3):
        for layers in itertools.combinations(range(teacher.config.num_hidden_layers), k):
            student = build_student("teacher:" + ",".join(map(str, layers)), 2, tok, 0, teacher)
            print(f"| {','.join(map(str, layers))} | {acc(student):.1f} |")


if __name__ == "__main__":
    main()
