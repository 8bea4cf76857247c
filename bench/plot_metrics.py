"""Plot a run's metrics.jsonl: training losses per logged step, and evaluation metrics.

    python bench/plot_metrics.py runs/pretrain-tiny --out docs/pretrain-tiny.png
    python bench/plot_metrics.py runs/quick --out runs/quick.png   # a pipeline: runs/quick-intermediate.png, ...

Any run folder works: one that holds metrics.jsonl (pretrain, finetune, distill-general, a
stage's folder) gives one figure; a task-distillation run (pipeline, distill-task), whose
metrics are per stage (teacher/, intermediate/, prediction/), gives one figure per stage,
named <out>-<stage>.png. A folder with neither is one line on stderr, exit status 2.
"""
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STAGES = ("teacher", "intermediate", "prediction")  # task distillation's stage folders, in run order
NOT_LOSSES = {"step", "epoch", "lr", "tokens", "tokens_per_s", "world_size", "grad_norm"}


def metrics_files(run: Path) -> list[tuple[str, Path]]:
    """[(stage name or "", its metrics.jsonl)]: the folder's own, else each stage folder's."""
    if (run / "metrics.jsonl").is_file():
        return [("", run / "metrics.jsonl")]
    return [(stage, run / stage / "metrics.jsonl") for stage in STAGES if (run / stage / "metrics.jsonl").is_file()]


def plot(path: Path, out: Path, title: str) -> None:
    """One figure: the training losses (every logged number but the bookkeeping), and the evaluations if any."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in rows if "eval" not in r]
    evals = [r for r in rows if "eval" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    losses = sorted({k for r in train for k, v in r.items() if k not in NOT_LOSSES and isinstance(v, (int, float))})
    for key in losses:
        points = [(r["step"], r[key]) for r in train if key in r]
        axes[0].plot(*zip(*points), label=key)
    axes[0].set_xlabel("step"); axes[0].set_ylabel("training loss")
    metrics = sorted({k for r in evals for k, v in r["eval"].items() if isinstance(v, (int, float))})
    for key in metrics:
        points = [(r["step"], r["eval"][key]) for r in evals if key in r["eval"]]
        axes[1].plot(*zip(*points), marker="o", label=key)
    axes[1].set_xlabel("step"); axes[1].set_ylabel("held-out")
    if not metrics:
        axes[1].text(0.5, 0.5, "no evaluation in this run", ha="center", va="center", transform=axes[1].transAxes)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print("wrote", out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run's --output-dir: holding metrics.jsonl, or a pipeline's stage folders")
    p.add_argument("--out", required=True, help="PNG to write (a pipeline: one per stage, <out>-<stage>.png)")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)
    run, out = Path(a.run), Path(a.out)
    found = metrics_files(run)
    if not found:
        print(f"error: {run} holds no metrics.jsonl, nor stage folders ({', '.join(STAGES)}) holding one",
              file=sys.stderr)
        return 2
    for stage, path in found:
        target = out if not stage else out.with_name(f"{out.stem}-{stage}{out.suffix or '.png'}")
        plot(path, target, f"{a.title or run}{' - ' + stage if stage else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
