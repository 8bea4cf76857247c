"""Plot a run's metrics.jsonl: training loss per logged step, and evaluation metrics.

    python bench/plot_metrics.py runs/pretrain-tiny --out docs/pretrain-tiny.png
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a --output-dir holding metrics.jsonl")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--title", default=None)
    a = p.parse_args()
    rows = [json.loads(line) for line in (Path(a.run) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in [k for k in train[0] if k.endswith("loss")]:
        axes[0].plot([r["step"] for r in train], [r[key] for r in train], label=key)
    axes[0].set_xlabel("step"); axes[0].set_ylabel("training loss"); axes[0].legend()
    for key in evals[0]["eval"] if evals else []:
        axes[1].plot([r["step"] for r in evals], [r["eval"][key] for r in evals], marker="o", label=key)
    axes[1].set_xlabel("step"); axes[1].set_ylabel("held-out"); axes[1].legend()
    fig.suptitle(a.title or a.run)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=90)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
