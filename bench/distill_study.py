"""When does a teacher pay? Distillation against fine-tuning from the same start, over seeds, with intervals.

    python bench/distill_study.py --task sst-2 --labels 1000 --unlabelled 20000 --student pretrained:0,5 \\
        --methods finetune,kd,tinybert,minilmv2 --seeds 1 2 3 --steps 600 --out runs/study
    python bench/distill_study.py --out runs/study --report-only          # the table and plot again
    python bench/distill_study.py --quick --out /tmp/study               # seconds; its numbers mean nothing

Seeds are independent: several processes (say `--seeds 2` and `--seeds 3`, each with
MINIBERT_NUM_THREADS=1) may share one --out folder; each appends its own lines to runs.jsonl.

The design, arm by arm, for one seed s:
- Data: a shuffle of the task's training set seeded by s. Its first --labels rows are the gold
  labels; the next --unlabelled rows lose their labels (set to IGNORE_INDEX, so a loss that read
  them would fail rather than leak them).
- Teacher: MiniLM-L6 fine-tuned on the gold rows only (--teacher-epochs, --teacher-lr), once per
  seed, kept in <out>/teachers/seed<s>/ and reused by every arm and by later invocations.
- Student: the same initial weights for every arm of the seed (checked). `pretrained:0,5` is
  layers 0 and 5 of the *pre-trained* MiniLM with a fresh classifier (nothing task-trained
  inside); `teacher:0,5` copies the fine-tuned teacher's layers and classifier; anything else
  is what `specs.build_student` builds (a preset: random; a folder: a stage-1 student).
- finetune: the student on the gold rows alone (cross-entropy), at every --finetune-budgets
  step count, each a full run with its own warmup and decay: on scarce labels fine-tuning
  over-trains, so distillation is compared with fine-tuning's *best* budget (the one with the
  highest mean last evaluation), never with an over-trained baseline.
- A distillation method: `distillation.task_distillation` on gold + unlabelled rows, --steps
  optimizer steps in all; a method with an intermediate stage (tinybert, minilm, minilmv2)
  gives --inter-fraction of them to it. The prediction stage learns from the teacher alone
  (alpha = 1: the gold labels reach the student through the teacher, as in TinyBERT).

Reported (results.md beside runs.jsonl; study.png): per arm the mean and 95% t-interval over
seeds of the *last* evaluation (the best evaluation beside it, marked optimistic: it picks the
maximum of several noisy numbers); for each method the paired difference to fine-tuning's best
budget, seed by seed, with two 95% intervals: a t-interval over the seeds' differences (seed
noise only), and a paired bootstrap that resamples seeds and dev examples together (both).

Not here: the methods themselves (minibert/methods.py, minibert/distill.py), the stages
(minibert/distillation.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from minibert import checkpoint  # noqa: E402
from minibert import data as D  # noqa: E402
from minibert.distillation import task_distillation  # noqa: E402
from minibert.evaluation import predict_encoded  # noqa: E402
from minibert.finetune import load_task_data, train_classifier  # noqa: E402
from minibert.methods import METHODS  # noqa: E402
from minibert.model import BertForSequenceClassification  # noqa: E402
from minibert.runfolder import write_text_atomic  # noqa: E402
from minibert.settings import TaskDataSettings, TaskDistillSettings, TrainArgs  # noqa: E402
from minibert.specs import DEFAULT_TEACHER, build_student, label_classifier, tokenizer_for  # noqa: E402

# A fresh classifier on the pre-trained MiniLM is what "pretrained:" and the teacher start from.
warnings.filterwarnings("ignore", message=".*newly initialised.*")

QUICK = dict(max_train=1000, labels=48, unlabelled=96, steps=6, eval_every=3, seeds=[1, 2], teacher_epochs=1.0,
             max_dev=48, finetune_budgets="3,6")


# =================================================================================== data


def take(encoded: D.EncodedExamples, idx, labels=None) -> D.EncodedExamples:
    """Rows idx of `encoded` (labels replaced when given)."""
    idx = np.asarray(idx)
    return D.EncodedExamples([encoded.input_ids[i] for i in idx], [encoded.token_type_ids[i] for i in idx],
                             encoded.labels[idx] if labels is None else labels, encoded.pad_token_id)


def split_regime(train: D.EncodedExamples, n_labels: int | None, n_unlabelled: int, seed: int):
    """(gold, gold + unlabelled): a seeded shuffle's first n_labels rows keep their labels, the next
    n_unlabelled rows get IGNORE_INDEX. n_labels None: every row is gold and none is unlabelled."""
    if n_labels is None:
        return train, train
    order = np.random.default_rng(seed).permutation(len(train))
    if n_labels + n_unlabelled > len(train):
        raise SystemExit(f"--labels {n_labels} + --unlabelled {n_unlabelled} > {len(train)} training rows")
    gold = take(train, order[:n_labels])
    rest = order[n_labels:n_labels + n_unlabelled]
    unlabelled = take(train, rest, labels=np.full(len(rest), D.IGNORE_INDEX, dtype=train.labels.dtype))
    both = D.EncodedExamples(gold.input_ids + unlabelled.input_ids, gold.token_type_ids + unlabelled.token_type_ids,
                             np.concatenate([gold.labels, unlabelled.labels]), train.pad_token_id)
    return gold, both


# ================================================================================ models


def teacher_for(seed: int, spec, gold, dev, tok, a, out: Path) -> tuple[BertForSequenceClassification, float]:
    """MiniLM-L6 fine-tuned on the seed's gold rows, trained once and then read back; its last dev metric."""
    folder = out / "teachers" / f"seed{seed}"
    if (folder / "teacher.json").is_file():
        teacher = BertForSequenceClassification.from_pretrained(folder, num_labels=spec.num_labels)
        return teacher.eval(), json.loads((folder / "teacher.json").read_text())["dev"]
    teacher = BertForSequenceClassification.from_pretrained(checkpoint.resolve_model_path(DEFAULT_TEACHER),
                                                            num_labels=spec.num_labels, seed=seed)
    label_classifier(teacher, spec)
    scratch = out / "scratch" / str(os.getpid()) / f"seed{seed}-teacher"
    args = TrainArgs(output_dir=str(scratch), epochs=a.teacher_epochs, batch_size=a.batch_size, lr=a.teacher_lr,
                     seed=seed, progress=False, overwrite_output_dir=True, metric_for_best=spec.main_metric)
    t0 = time.perf_counter()
    state = train_classifier(teacher, spec, gold, dev, tok, args)
    teacher.save_pretrained(folder, tokenizer=tok)
    dev_metric = state.history[-1][spec.main_metric]
    write_text_atomic(folder / "teacher.json", json.dumps({"dev": dev_metric, "steps": state.step,
                                                           "wall_s": round(time.perf_counter() - t0, 1)}))
    shutil.rmtree(scratch, ignore_errors=True)
    return teacher.eval(), dev_metric


def initial_student(spec_str: str, spec, tok, seed: int, teacher) -> BertForSequenceClassification:
    """The student every arm of this seed starts from (see the module docstring)."""
    if spec_str.startswith("pretrained:"):
        source = BertForSequenceClassification.from_pretrained(checkpoint.resolve_model_path(DEFAULT_TEACHER),
                                                               num_labels=spec.num_labels, seed=seed)
        student = build_student("teacher:" + spec_str.split(":", 1)[1], spec.num_labels, tok, seed, source,
                                copy_teacher_classifier=False)
    else:
        student = build_student(spec_str, spec.num_labels, tok, seed, teacher)
    label_classifier(student, spec)
    return student


# ================================================================================== arms


def run_finetune(student, spec, gold, dev, tok, steps: int, seed: int, a, scratch: Path) -> list[dict]:
    args = TrainArgs(output_dir=str(scratch), max_steps=steps, batch_size=a.batch_size, lr=a.finetune_lr, seed=seed,
                     eval_steps=a.eval_every, progress=False, overwrite_output_dir=True,
                     metric_for_best=spec.main_metric)
    return train_classifier(student, spec, gold, dev, tok, args).history


def run_distill(method: str, student, teacher, spec, train, dev, tok, seed: int, a, scratch: Path) -> list[dict]:
    inter = int(round(a.steps * a.inter_fraction)) if "intermediate" in METHODS[method].stages else 0
    # inter_epochs 0: the step counts alone decide (the default runs an epoch of a method's intermediate stage)
    settings = TaskDistillSettings(method=method, inter_steps=inter, inter_epochs=0.0, pred_steps=a.steps - inter,
                                   inter_lr=a.inter_lr, pred_lr=a.lr, temperature=a.temperature)
    training = TrainArgs(output_dir=str(scratch), batch_size=a.batch_size, eval_steps=a.eval_every, seed=seed,
                         progress=False, overwrite_output_dir=True)
    history = task_distillation(spec, teacher, student, train, dev, tok, settings, training)["history"]
    return [{**h, "step": h["step"] + inter} for h in history]  # steps counted over both stages


def per_example(logits: np.ndarray, labels: np.ndarray) -> dict:
    """What the bootstrap resamples: {"correct": 0/1 per dev row} for classes, {"pred": score} for a regression."""
    if logits.ndim == 2 and logits.shape[1] > 1:
        return {"correct": (logits.argmax(-1) == labels).astype(int).tolist()}
    return {"pred": [round(float(x), 5) for x in logits.reshape(-1)]}


def curve(history: list[dict], metric: str) -> list[list]:
    """[[step, metric]] with one point per step (the trainer's closing evaluation may repeat the last step)."""
    points = {h["step"]: h[metric] for h in history}
    return [[s, points[s]] for s in sorted(points)]


# ============================================================================= statistics


def t_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval of the mean of `values` (n >= 2; else the value twice)."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 2000, seed: int = 0):
    """95% interval of mean(a) - mean(b) resampling seeds and dev examples together.

    correct_a, correct_b: (S, E) per seed and dev example, 1.0 where right (paired: the same
    seed's teacher, data and initial weights; the same examples)."""
    rng = np.random.default_rng(seed)
    d = correct_a - correct_b  # (S, E)
    s, e = d.shape
    diffs = np.empty(n_boot)
    for b in range(n_boot):
        rows = rng.integers(0, s, s)
        cols = rng.integers(0, e, e)
        diffs[b] = d[np.ix_(rows, cols)].mean()
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


# ================================================================================= report


def arm_name(r: dict) -> str:
    """finetune@<steps> lr <rate> (one arm per budget and rate), or the method's name."""
    if r["method"] != "finetune":
        return r["method"]
    lr = r["lr"] if "lr" in r else r["settings"]["lr"]  # older records kept the rate in settings only
    return f"finetune@{r['steps']} lr {lr:g}"


def report(out: Path) -> str:
    """results.md and study.png from runs.jsonl: one table per (task, regime, student)."""
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    lines = [f"# Distillation study ({out.name})", ""]
    if any(r.get("quick") for r in runs):
        lines += ["**--quick: a smoke run on a tiny budget; its numbers mean nothing.**", ""]
    groups = {}
    for r in runs:
        groups.setdefault((r["task"], r["regime"], r["student"]), []).append(r)
    for (task, regime, student), rs in groups.items():
        metric = rs[0]["metric"]
        arms = {}
        for r in rs:
            arms.setdefault(arm_name(r), {})[r["seed"]] = r
        fts = {k: v for k, v in arms.items() if k.startswith("finetune@")}
        lines += [f"## {task}, {regime}, student {student}", ""]
        teachers = {r["seed"]: r["teacher_dev"] for r in rs}
        m, lo, hi = t_interval([100 * v for v in teachers.values()])
        lines += [f"Teacher (MiniLM-L6 fine-tuned on the gold labels): {metric} {m:.2f} [{lo:.2f}, {hi:.2f}] over "
                  f"seeds {sorted(teachers)}.", ""]
        # fine-tuning's best budget, among those run on every seed of the table (a budget run on fewer
        # seeds is shown but not chosen: its mean is not over the same seeds)
        full = [k for k in fts if len(fts[k]) == max(len(v) for v in arms.values())]
        best_ft = max(full, key=lambda k: np.mean([r["last"] for r in fts[k].values()])) if full else None
        lines += ["| arm | steps | seeds | last eval: mean [95% t] | best eval (optimistic) | vs "
                  f"{best_ft or 'finetune'}: mean [95% t] | paired bootstrap 95% | wall s / run |",
                  "|---|---|---|---|---|---|---|---|"]
        order = lambda kv: (not kv[0].startswith("finetune"), next(iter(kv[1].values()))["steps"], kv[0])
        for name, by_seed in sorted(arms.items(), key=order):
            seeds = sorted(by_seed)
            last = [100 * by_seed[s]["last"] for s in seeds]
            best = [100 * by_seed[s]["best"] for s in seeds]
            m, lo, hi = t_interval(last)
            diff = boot = "-"
            if best_ft and name != best_ft:
                common = [s for s in seeds if s in fts[best_ft]]
                if common:
                    d = [100 * (by_seed[s]["last"] - fts[best_ft][s]["last"]) for s in common]
                    dm, dlo, dhi = t_interval(d)
                    diff = f"{dm:+.2f} [{dlo:+.2f}, {dhi:+.2f}]"
                    if "correct" in by_seed[common[0]]:
                        a = np.array([by_seed[s]["correct"] for s in common], dtype=np.float64)
                        b = np.array([fts[best_ft][s]["correct"] for s in common], dtype=np.float64)
                        blo, bhi = paired_bootstrap(a, b)
                        boot = f"[{100 * blo:+.2f}, {100 * bhi:+.2f}]"
            wall = np.mean([by_seed[s]["wall_s"] for s in seeds])
            lines.append(f"| {name} | {by_seed[seeds[0]]['steps']} | {len(seeds)} | {m:.2f} [{lo:.2f}, {hi:.2f}] | "
                         f"{np.mean(best):.2f} | {diff} | {boot} | {wall:.0f} |")
        lines += ["", f"{metric} on the dev set, in points. Differences are paired by seed (the same gold labels, "
                  "teacher and initial weights); the bootstrap resamples seeds and dev examples together.", ""]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(groups, out / "study.png")
    return "\n".join(lines)


def plot(groups: dict, path: Path) -> None:
    """Dev metric against steps, one line per arm (the mean over seeds), the seeds' range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.5), squeeze=False)
    for ax, ((task, regime, student), rs) in zip(axes[0], groups.items()):
        arms = {}
        for r in rs:
            arms.setdefault(arm_name(r), []).append(r["curve"])
        for name, curves in sorted(arms.items()):
            steps = sorted({s for c in curves for s, _ in c})
            grid = np.array([[dict(map(tuple, c)).get(s, np.nan) for s in steps] for c in curves]) * 100
            line, = ax.plot(steps, np.nanmean(grid, axis=0), marker="o", markersize=3,
                            label=f"{name} ({len(curves)} seeds)")
            ax.fill_between(steps, np.nanmin(grid, axis=0), np.nanmax(grid, axis=0), color=line.get_color(),
                            alpha=0.15)
        teacher = 100 * np.mean(list({r["seed"]: r["teacher_dev"] for r in rs}.values()))
        ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"teacher (mean) {teacher:.1f}")
        ax.set(title=f"{task}, {regime}\nstudent {student}", xlabel="optimizer step", ylabel=f"dev {rs[0]['metric']}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# =================================================================================== main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter,
                                epilog="See the module docstring for what each arm starts from and sees.")
    p.add_argument("--task", default="sst-2", help="a GLUE task (its train and dev sets)")
    p.add_argument("--labels", default="1000", help="gold labels for the teacher and the baseline; 'all' for all")
    p.add_argument("--unlabelled", type=int, default=20000,
                   help="further training rows without labels: distillation reads them, fine-tuning does not")
    p.add_argument("--student", default="pretrained:0,5",
                   help="pretrained:LAYERS (pre-trained MiniLM layers, fresh classifier), teacher:LAYERS, a preset "
                        "or a folder")
    p.add_argument("--methods", default="finetune,kd,tinybert,minilmv2",
                   help=f"finetune and any of {', '.join(METHODS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=600, help="optimizer steps of each distillation arm (both stages)")
    p.add_argument("--finetune-budgets", default="",
                   help="comma-separated step counts for the baseline (default: steps/4, steps/2, steps)")
    p.add_argument("--finetune-lr", type=float, default=0.0, help="the baseline's peak rate (default: --lr)")
    p.add_argument("--inter-fraction", type=float, default=0.5,
                   help="share of --steps given to an intermediate stage (tinybert, minilm, minilmv2)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak rate of fine-tuning and of the prediction stage")
    p.add_argument("--inter-lr", type=float, default=1e-4, help="the intermediate stage's constant rate")
    p.add_argument("--temperature", type=float, default=1.0, help="prediction-stage temperature")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=100, help="evaluate every N steps (and at the end)")
    p.add_argument("--teacher-epochs", type=float, default=4.0)
    p.add_argument("--teacher-lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--max-train", type=int, default=0, help="training rows read before the shuffle (0: all)")
    p.add_argument("--max-dev", type=int, default=0, help="dev rows (0: all)")
    p.add_argument("--out", default="runs/study", help="runs.jsonl, results.md, study.png, teachers/")
    p.add_argument("--report-only", action="store_true", help="only rewrite results.md and study.png")
    p.add_argument("--quick", action="store_true",
                   help="a tiny budget that runs in seconds (CI): exercises the code, its numbers mean nothing")
    a = p.parse_args(argv)
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    a.methods = a.methods.split(",")
    for m in a.methods:
        if m != "finetune" and m not in METHODS:
            p.error(f"--methods: unknown {m!r}; choose finetune or one of {', '.join(METHODS)}")
    a.labels = None if a.labels == "all" else int(a.labels)
    a.finetune_lr = a.finetune_lr or a.lr
    a.budgets = ([int(x) for x in a.finetune_budgets.split(",")] if a.finetune_budgets
                 else sorted({max(1, a.steps // 4), max(1, a.steps // 2), a.steps}))
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        print(report(out))
        return
    log = out / "runs.jsonl"
    done = set()
    if log.is_file():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done.add((r["task"], r["regime"], r["student"], arm_name(r), r["seed"]))
    regime = "all labels" if a.labels is None else f"{a.labels} labels + {a.unlabelled} unlabelled"
    tok = tokenizer_for(DEFAULT_TEACHER)
    spec, train, dev = load_task_data(TaskDataSettings(a.task, max_length=a.max_length, max_train_examples=a.max_train,
                                                       max_eval_examples=a.max_dev), tok)
    dev = dev[""]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"{spec.name}: {len(train)} training rows, {len(dev)} dev rows; {regime}; student {a.student}; "
          f"methods {a.methods}; seeds {a.seeds}; {a.steps} steps (finetune at {a.budgets})", file=sys.stderr)
    mine = out / "scratch" / str(os.getpid())  # this process's run folders: others may share `out`
    for seed in a.seeds:
        gold, both = split_regime(train, a.labels, a.unlabelled, seed)
        teacher, teacher_dev = teacher_for(seed, spec, gold, dev, tok, a, out)
        print(f"seed {seed}: teacher {spec.main_metric} {teacher_dev:.4f}", file=sys.stderr)
        start = initial_student(a.student, spec, tok, seed, teacher).named_parameters()
        arms = [("finetune", b) for b in a.budgets] if "finetune" in a.methods else []
        arms += [(m, a.steps) for m in a.methods if m != "finetune"]
        for method, steps in arms:
            lr = a.finetune_lr if method == "finetune" else a.lr
            name = arm_name({"method": method, "steps": steps, "lr": lr})
            if (spec.name, regime, a.student, name, seed) in done:
                continue
            student = initial_student(a.student, spec, tok, seed, teacher)
            same = all(np.array_equal(p, start[k]) for k, p in student.named_parameters().items())
            assert same, "every arm of a seed must start from the same weights"
            scratch = mine / f"seed{seed}-{name}"
            t0 = time.perf_counter()
            if method == "finetune":
                history = run_finetune(student, spec, gold, dev, tok, steps, seed, a, scratch)
            else:
                history = run_distill(method, student, teacher, spec, both, dev, tok, seed, a, scratch)
            wall = time.perf_counter() - t0
            shutil.rmtree(scratch, ignore_errors=True)
            points = curve(history, spec.main_metric)
            logits = np.asarray(predict_encoded(student.eval(), dev))  # the last weights, as last evaluated
            record = {"task": spec.name, "regime": regime, "student": a.student, "method": method, "seed": seed,
                      "steps": steps, "lr": lr, "metric": spec.main_metric, "last": points[-1][1],
                      "best": max(v for _, v in points), "curve": points, "teacher_dev": teacher_dev,
                      "wall_s": round(wall, 1), "machine": machine, "quick": a.quick,
                      "settings": {k: getattr(a, k) for k in ("lr", "inter_lr", "inter_fraction", "temperature",
                                                              "batch_size", "teacher_epochs", "teacher_lr",
                                                              "max_length", "labels", "unlabelled")},
                      **per_example(logits, dev.labels)}
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"seed {seed} {name}: last {record['last']:.4f} best {record['best']:.4f} ({wall:.0f} s)",
                  file=sys.stderr)
    shutil.rmtree(mine, ignore_errors=True)
    if (out / "scratch").is_dir() and not any((out / "scratch").iterdir()):
        (out / "scratch").rmdir()
    print(report(out))


if __name__ == "__main__":
    main()
