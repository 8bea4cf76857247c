"""Distillation methods side by side: one teacher, one student initialisation, one data set, one step budget.

    python bench/distill_methods.py                   # SST-2 without and with GloVe augmentation, then STS-B
    python bench/distill_methods.py --what cache      # the prediction stage's speed-up from teacher caching
    python bench/distill_methods.py --quick           # a smoke run (tiny budget: numbers meaningless)

Methodology. For each task the MiniLM-L6 teacher is fine-tuned once on the first
--train-examples training examples (one epoch, lr 5e-5, batch 32, max length 64) and kept in
<out>/<task>/teacher; every method then distils it into the same student, `teacher:0,5` (the
teacher's first and last layers and its classifier: 2 x 384, the >= 3x student), on the same
examples, with the same seed (data order, dropout) and the same number of optimizer steps:
methods with an intermediate-layer stage (tinybert, minilm, minilmv2) spend half of the steps
there (constant lr 5e-5) and half in the prediction stage (lr 3e-5, warm-up and linear decay),
the one-objective methods (kd, distilbert, pkd) all of them in the prediction stage. Every
loss weight is 1 (TinyBERT's choice), t = 1 and no gold labels (alpha = 1): the
hyper-parameters are not tuned per method, so a row says what the signal gives at this
budget, not the method's best. The student is evaluated every
--eval-steps; a row reports the best and the last evaluation (the best of several is
optimistic) and the wall time of the distillation (both stages, evaluations included), which
is only comparable between rows of one run on an otherwise quiet machine.

Dev-set noise: one standard error of an accuracy p on n examples is sqrt(p (1 - p) / n),
printed with each table; a difference smaller than about two of them is not a finding.

STS-B is a regression: the soft targets become MSE against the teacher's score (tinybert's
pred and Hinton's kd alike: distill_losses.py), its metric the Pearson correlation (whose
noise is not a binomial one: the table says so).

--what cache times the prediction stage (kd, 3 epochs over --cache-examples) with the
teacher cache on and off, alternating, and prints the medians and their ratio.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

from minibert import data as D  # noqa: E402
from minibert.distill import METHODS  # noqa: E402
from minibert.evaluation import evaluate  # noqa: E402
from minibert.finetune import load_task_data  # noqa: E402
from minibert.settings import AugmentSettings, TaskDataSettings, TaskDistillSettings, TrainArgs  # noqa: E402
from minibert.specs import DEFAULT_TEACHER, build_student, load_teacher, tokenizer_for  # noqa: E402
from minibert import distillation as T  # noqa: E402

STUDENT = "teacher:0,5"


def task_data(task: str, tok, train_examples: int, eval_examples: int, train_file: str | None = None):
    settings = TaskDataSettings(task=task, train_file=train_file, max_length=64,
                                max_train_examples=0 if train_file else train_examples,
                                max_eval_examples=eval_examples)
    return load_task_data(settings, tok)


def the_teacher(task: str, tok, args, out: Path):
    """The fine-tuned teacher of `task`: fine-tuned once into <out>/<task>/teacher, read from there afterwards."""
    folder = out / task / "teacher"
    if (folder / "model.safetensors").is_file():
        print(f"== the {task} teacher from {folder}", file=sys.stderr)
        return load_teacher(str(folder))
    spec, train, _ = task_data(task, tok, args.train_examples, args.eval_examples)
    return T.finetune_teacher(spec, train, tok, TaskDistillSettings(teacher_epochs=1.0), TrainArgs(
        output_dir=str(out / task), seed=args.seed, progress=False, overwrite_output_dir=True))


def run_method(method: str, spec, teacher, train, dev, tok, steps: int, out: Path, args) -> dict:
    """One row: distil `method` into a fresh teacher:0,5 student for `steps` optimizer steps."""
    two_stages = bool(METHODS[method].stages.get("intermediate"))
    inter = steps // 2 if two_stages else 0
    student = build_student(STUDENT, spec.num_labels, tok, args.seed, teacher)
    settings = TaskDistillSettings(method=method, inter_steps=inter, inter_epochs=0.0, pred_steps=steps - inter)
    training = TrainArgs(eval_steps=args.eval_steps, seed=args.seed, progress=False, log_steps=50,
                         overwrite_output_dir=True, output_dir=str(out))
    t0 = time.perf_counter()
    res = T.task_distillation(spec, teacher, student, train, dev, tok, settings, training)
    wall = time.perf_counter() - t0
    scores = [h[spec.main_metric] for h in res["history"] if spec.main_metric in h]
    distiller = T.task_distiller(student.config, teacher.config, settings, args.seed)  # what each stage ran
    losses = " → ".join(" + ".join(distiller.active(s)) for s in ("intermediate", "prediction") if distiller.active(s))
    return {"method": method, "losses": losses, "steps": f"{inter} + {steps - inter}", "best": max(scores),
            "last": scores[-1], "evaluations": len(scores), "wall_s": round(wall, 1)}


def standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def table(title: str, spec, teacher_score: float, n_dev: int, rows: list[dict]) -> str:
    metric = spec.main_metric
    lines = [f"**{title}** — teacher {metric} {100 * teacher_score:.2f} on {n_dev} dev examples"]
    if metric == "acc":
        se = standard_error(rows[0]["best"], n_dev) if rows else 0.0
        lines[0] += f"; one standard error ≈ {100 * se:.1f} points"
    else:
        lines[0] += " (a correlation: its noise is not sqrt(p(1-p)/n); differences under ~2 points are not findings)"
    lines += ["", f"| method | losses (2a → 2b) | steps 2a + 2b | dev {metric} best / last | of teacher (best) | "
                  f"wall (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['losses']} | {r['steps']} | {100 * r['best']:.2f} / {100 * r['last']:.2f} | "
                     f"{100 * r['best'] / teacher_score:.1f}% | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def compare_methods(task: str, args, out: Path, steps: int, augment: bool) -> list[str]:
    tok = tokenizer_for(DEFAULT_TEACHER)
    teacher = the_teacher(task, tok, args, out)
    spec, train, dev = task_data(task, tok, args.train_examples, args.eval_examples)
    teacher_score = evaluate(teacher, spec, dev)[spec.main_metric]
    n_dev = sum(len(d) for d in dev.values()) if isinstance(dev, dict) else len(dev)
    variants = [("original sentences", train)]
    if augment:
        aug = T.augment(TaskDataSettings(task=task, max_train_examples=args.train_examples),
                        AugmentSettings(candidates="glove", n_aug=args.n_aug, seed=args.seed, progress=False,
                                        output_dir=str(out / task / "aug-glove")))
        _, aug_train, _ = task_data(task, tok, 0, args.eval_examples, train_file=aug["file"])
        variants.append((f"GloVe-augmented ({len(aug_train):,} rows)", aug_train))
    tables = []
    for name, data in variants:
        rows = []
        for method in args.methods:
            folder = out / task / ("aug" if data is not train else "orig") / method
            print(f"== {task}, {name}: {method}", file=sys.stderr)
            rows.append(run_method(method, spec, teacher, data, dev, tok, steps, folder, args))
            print(json.dumps(rows[-1]), file=sys.stderr)
        title = (f"{spec.name}, {name}: {len(train):,} training examples, {steps} steps of {32}, "
                 f"seed {args.seed}")
        tables.append(table(title, spec, teacher_score, n_dev, rows))
        (out / task / f"{'aug' if data is not train else 'orig'}.json").write_text(
            json.dumps({"teacher": teacher_score, "n_dev": n_dev, "rows": rows}, indent=2) + "\n")
    return tables


def cache_speedup(args, out: Path) -> str:
    """The prediction stage (kd) with and without the teacher cache: medians of alternating runs."""
    task = args.tasks[0]
    tok = tokenizer_for(DEFAULT_TEACHER)
    teacher = the_teacher(task, tok, args, out)
    spec, train, dev = task_data(task, tok, args.cache_examples, 64)
    times = {True: [], False: []}
    for _ in range(args.cache_repeats):
        for cached in (True, False):
            student = build_student(STUDENT, spec.num_labels, tok, args.seed, teacher)
            settings = TaskDistillSettings(method="kd", pred_epochs=args.cache_epochs, cache_teacher=cached)
            training = TrainArgs(eval_steps=10 ** 6, seed=args.seed, progress=False, overwrite_output_dir=True,
                                 output_dir=str(out / task / "cache" / str(cached)))
            t0 = time.perf_counter()
            T.task_distillation(spec, teacher, student, train, dev, tok, settings, training)
            times[cached].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return (f"prediction stage (kd), {len(train):,} examples x {args.cache_epochs} epochs, batch 32, "
            f"{args.cache_repeats} alternating repeats: uncached {med[False]:.1f} s, cached {med[True]:.1f} s "
            f"(medians; all {times}) -> speed-up {med[False] / med[True]:.2f}x\n" + cache_rounding(teacher, train, args))


def cache_rounding(teacher, train, args) -> str:
    """How far a cached row is from a recomputation: each example's teacher logits in epoch 1's
    batches (what the cache keeps) against epoch 2's (what an uncached run computes)."""
    import numpy as np

    from minibert.teacher_cache import example_keys

    batcher = D.Batcher(train, 32, seed=args.seed + 1)  # the prediction stage's order
    first, same, rows, worst = {}, 0, 0, 0.0
    for epoch in (0, 1):
        for b in batcher.iter_epoch(epoch):
            logits = teacher(b["input_ids"], b["token_type_ids"], b["attention_mask"]).logits
            for key, row in zip(example_keys(b["input_ids"], b["token_type_ids"], b["attention_mask"]), logits):
                if epoch == 0:
                    first[key] = row
                else:
                    diff = float(np.abs(first[key] - row).max())
                    same, rows, worst = same + (diff == 0), rows + 1, max(worst, diff)
    return (f"teacher logits of epoch 2's {rows:,} rows against the same examples' in epoch 1's batches: "
            f"{same:,} bit-identical, largest difference {worst:.2g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--what", choices=("methods", "cache", "all"), default="methods")
    p.add_argument("--tasks", nargs="+", default=["sst-2", "sts-b"], help="the first is compared with and without "
                   "augmentation (unless --no-augment), "
                   "the others without")
    p.add_argument("--no-augment", action="store_true", help="no GloVe-augmented variant of the first task")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--train-examples", type=int, default=4000, help="training examples of each task (teacher and "
                                                                    "students)")
    p.add_argument("--eval-examples", type=int, default=0, help="dev examples (0: all)")
    p.add_argument("--steps", type=int, default=240, help="optimizer steps of every method on the first task")
    p.add_argument("--second-steps", type=int, default=120, help="... on the other tasks")
    p.add_argument("--eval-steps", type=int, default=40)
    p.add_argument("--n-aug", type=int, default=4, help="GloVe variants per sentence")
    p.add_argument("--cache-examples", type=int, default=1000)
    p.add_argument("--cache-epochs", type=int, default=3)
    p.add_argument("--cache-repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default="runs/methods")
    p.add_argument("--quick", action="store_true", help="smoke run: 64 examples, 4 steps, 2 methods")
    args = p.parse_args()
    if args.quick:
        args.train_examples, args.eval_examples, args.steps, args.second_steps, args.eval_steps = 64, 32, 4, 2, 2
        args.cache_examples, args.cache_epochs, args.cache_repeats, args.n_aug = 32, 2, 1, 1
        args.methods = args.methods if "--methods" in sys.argv else ["tinybert", "kd"]
    out = Path(args.out)
    print(f"# distill_methods on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{' '.join(sys.argv[1:])}\n")
    if args.what in ("methods", "all"):
        for i, task in enumerate(args.tasks):
            steps, augment = (args.steps, not args.no_augment) if i == 0 else (args.second_steps, False)
            for t in compare_methods(task, args, out, steps, augment):
                print(t + "\n", flush=True)
    if args.what in ("cache", "all"):
        print(cache_speedup(args, out), flush=True)


if __name__ == "__main__":
    main()
