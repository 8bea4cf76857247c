"""minibert on a CUDA GPU, measured in one run: correctness against NumPy, speed against PyTorch,
and a short TinyBERT task distillation against the CPU. bench/gpu_check.sh runs it after the
gpu_rules tests; it writes a markdown report (gpu_check.md) into --out.

  1. forward and gradients   a random TinyBERT-4 and BERT-base classifier (batch 2, sequence
                             128): the CuPy loss, logits and every named gradient against NumPy
                             float64, in float64 and float32. The float32 error is shown beside
                             NumPy float32's own error against float64 (what "within float32
                             rounding" means), per model: the worst over tensors of
                             max|a - b| / max|b|.
  2. speed                   TinyBERT-4 training step (classification, masked LM) at batch 32
                             and inference at batch 1 and 32, sequence 128, against PyTorch CUDA
                             eager on the same weights: bench_speed.py's cases, alternating
                             repeats, medians, ratios.
  3. distill-task            distill-task's library call (tinybert.pipeline) with a random-weight
                             MiniLM-L6-shaped teacher folder (the teacher package is not on the
                             GPU machine) on a small SST-2 subset (MINIBERT_DATA, else a
                             synthetic one), on the GPU and on the CPU; tokens/s from each
                             stage's metrics.jsonl.

Random weights everywhere: nothing is downloaded. Without CuPy or a GPU it stops with a message.
`--standin` runs every section on tiny shapes with tests/cupy_standin.py as CuPy and torch on
the CPU: the GPU run's code paths, checked in CI (tests/test_gpu_rules.py), numbers meaningless.

    python bench/gpu_check.py --out results/          # on a GPU machine (bench/gpu_check.sh)
    python bench/gpu_check.py --standin --out /tmp/x  # anywhere, in seconds
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]

TINYBERT4 = dict(vocab_size=30522, hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200)
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
MINILM_L6 = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
# --standin: the same sections on shapes that run in seconds on two CPU cores
TINY = dict(vocab_size=2100, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24)


def setup_device(standin: bool):
    """The cupy module (real, or the stand-in installed as `cupy`); a clear exit when there is none."""
    if standin:
        import cupy_standin

        sys.modules.update(cupy_standin.MODULES)
        return cupy_standin.cupy
    try:
        import cupy
    except ImportError as exc:
        raise SystemExit(f"gpu_check: CuPy is not installed ({exc}); this script needs a CUDA GPU with CuPy "
                         "(or --standin for a CPU dry run)")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise SystemExit(f"gpu_check: CuPy is installed but no CUDA GPU is usable: {exc}")
    if n == 0:
        raise SystemExit("gpu_check: CuPy sees no CUDA GPU")
    return cupy


def gpu_name(cp, standin: bool) -> str:
    if standin:
        return "CPU stand-in (tests/cupy_standin.py)"
    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return f"{name}, {props['totalGlobalMem'] / 2**30:.0f} GiB, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}"


# ============================================================== 1. forward and gradients


def run_model(config: dict, dtype, device: str, batch: dict) -> dict:
    """{name: float64 host array} of the loss, the logits and every gradient of one training step (no dropout)."""
    from minibert import BertConfig, BertForSequenceClassification
    from minibert.backend import to_device, to_numpy

    cfg = BertConfig(**config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(cfg, num_labels=2, seed=0).astype(dtype)
    if device != "numpy":
        model.to(device)
    x = {k: to_device(v, device) for k, v in batch.items()}
    out = model(x["input_ids"], x["token_type_ids"], x["attention_mask"], labels=x["labels"])
    model.backward()
    got = {"loss": out.loss, "logits": out.logits, **model.named_gradients()}
    return {k: to_numpy(v).astype(np.float64) for k, v in got.items()}


def worst_error(ours: dict, ref: dict) -> tuple[float, str]:
    """The worst over tensors of max|a - b| / max|b|, and that tensor's name.

    The denominator has a floor at 1e-4 of the largest gradient: the key biases' true gradient
    is 0 (softmax ignores a shift shared by a row), so theirs is pure rounding noise."""
    floor = 1e-4 * max(float(np.max(np.abs(v))) for v in ref.values())
    errs = {k: float(np.max(np.abs(ours[k] - ref[k])) / max(float(np.max(np.abs(ref[k]))), floor)) for k in ref}
    name = max(errs, key=errs.get)
    return errs[name], name


def check_parity(models: dict, batch_size: int, seq: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for model_name, config in models.items():
        batch = {"input_ids": rng.integers(1, config["vocab_size"], (batch_size, seq)),
                 "token_type_ids": np.zeros((batch_size, seq), np.int64),
                 "attention_mask": np.ones((batch_size, seq), np.int64),
                 "labels": rng.integers(0, 2, batch_size)}
        batch["attention_mask"][0, seq // 2:] = 0  # one padded row
        ref = run_model(config, np.float64, "numpy", batch)
        for dtype in (np.float64, np.float32):
            t0 = time.perf_counter()
            gpu_err, where = worst_error(run_model(config, dtype, "cupy", batch), ref)
            cpu_err = worst_error(run_model(config, dtype, "numpy", batch), ref)[0] if dtype == np.float32 else 0.0
            # float64 must agree to float64 rounding; float32 to the size of NumPy float32's own error
            ok = gpu_err < 1e-9 if dtype == np.float64 else gpu_err <= max(4 * cpu_err, 1e-5)
            rows.append({"case": f"{model_name} {np.dtype(dtype).name}", "gpu_err": gpu_err, "where": where,
                         "cpu_err": cpu_err, "ok": ok, "seconds": time.perf_counter() - t0})
            print(f"# parity {rows[-1]['case']}: CuPy vs NumPy float64 {gpu_err:.2e} ({where}); NumPy "
                  f"{np.dtype(dtype).name} {cpu_err:.2e} -> {'ok' if ok else 'FAILED'}", flush=True)
    return rows


# ================================================================================ 2. speed


class StandinDevice:
    """bench_speed.Device for --standin: minibert on the stand-in, torch on the CPU."""

    name = "cupy"
    torch_device = "cpu"

    def __init__(self, cp):
        self.cupy = cp

    def minibert(self, a):
        return self.cupy.asarray(a)

    def torch(self, a):
        import torch

        return torch.from_numpy(a)

    def sync(self) -> None:
        pass


def check_speed(cp, standin: bool, config: dict, seq: int, train_batch: int, repeats: int, warmup: int) -> list:
    import bench_speed

    bench_speed.TINYBERT4 = {**bench_speed.TINYBERT4, **config}  # the benchmark's model: TinyBERT-4 (or tiny)
    bench_speed.ID_LOW, bench_speed.ID_HIGH = min(bench_speed.ID_LOW, 1), min(bench_speed.ID_HIGH, config["vocab_size"])
    device = StandinDevice(cp) if standin else bench_speed.Device("cupy")
    # bench_speed's own settings (its flags), so its cases run exactly as `bench_speed.py --device cupy` runs them
    args = bench_speed.parse_args(["--device", "cupy", "--train-batch", str(train_batch), "--seq", str(seq),
                                   "--warmup", str(warmup), "--repeats", str(repeats),
                                   "--infer-batches", "1,4" if standin else "1,32"])
    rows = bench_speed.bench_train(args, device, ["train-cls", "train-mlm"])
    rows += bench_speed.bench_infer(args, device, ["infer-tinybert4-b1", "infer-tinybert4-b32"])
    return rows, args


# ========================================================================= 3. distill-task


def write_inputs(folder: Path, teacher_config: dict, standin: bool) -> tuple[Path, Path]:
    """A random-weight teacher folder (config, weights, vocab) and an SST-2 folder; returns both."""
    from minibert import BertConfig, BertForSequenceClassification
    from minibert.tokenizer import BertTokenizer, save_vocab

    data_root = Path(os.environ.get("MINIBERT_DATA", REPO.parent / "shared" / "data"))
    sst2, vocab_file = data_root / "SST-2", data_root / "bert-base-uncased" / "vocab.txt"
    if not (sst2 / "train.tsv").is_file() or not vocab_file.is_file() or standin:
        # synthetic SST-2: two-word-class sentences over a small vocabulary
        rng = np.random.default_rng(0)
        words = [f"w{i}" for i in range(teacher_config["vocab_size"] - 5)]
        sst2 = folder / "SST-2"
        sst2.mkdir(parents=True)
        for split, n in (("train", 512), ("dev", 64)):
            lines = ["sentence\tlabel"] + [" ".join(rng.choice(words, rng.integers(4, 30))) + f"\t{rng.integers(0, 2)}"
                                           for _ in range(n)]
            (sst2 / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        vocab_file = save_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words], folder / "vocab" / "vocab.txt")
    tok = BertTokenizer(vocab_file)
    cfg = BertConfig(**{**teacher_config, "vocab_size": len(tok)})
    teacher = folder / "teacher"
    BertForSequenceClassification(cfg, num_labels=2, seed=0).save_pretrained(teacher, tokenizer=tok)
    return teacher, sst2


def distill_run(device: str, teacher: Path, sst2: Path, out: Path, steps: int, examples: int, batch: int,
                student: str) -> dict:
    """`distill-task --teacher <folder> --device <device>` (the library call it makes): 2a then 2b."""
    from minibert.settings import RunOptions, TaskDataSettings, TaskDistillSettings, TrainArgs
    from minibert.distillation import pipeline

    data = TaskDataSettings("sst-2", data=str(sst2), max_train_examples=examples, max_eval_examples=64)
    settings = TaskDistillSettings(teacher=str(teacher), student=student, inter_steps=steps, pred_steps=steps)
    training = TrainArgs(eval_steps=steps, log_steps=max(1, steps // 2), batch_size=batch, output_dir=str(out),
                         progress=False)
    t0 = time.perf_counter()
    pipeline(data, settings, training, RunOptions(device=device))
    result = {"device": device, "wall_s": time.perf_counter() - t0}
    for stage in ("intermediate", "prediction"):
        logs = [json.loads(line) for line in (out / stage / "metrics.jsonl").read_text().splitlines()]
        result[stage] = [r for r in logs if "tokens_per_s" in r][-1]["tokens_per_s"]
    return result


# ================================================================================ report


def markdown(info: str, parity: list, speed_rows: list, speed_args, distill: list) -> str:
    import bench_speed

    lines = [f"# minibert GPU check\n\nDevice: {info}.\n", "## forward and gradients vs NumPy float64\n",
             "| model, dtype | CuPy: worst max\\|Δ\\|/max\\|ref\\| (tensor) | NumPy same dtype | ok |", "|---|---|---|---|"]
    for r in parity:
        lines.append(f"| {r['case']} | {r['gpu_err']:.2e} ({r['where']}) | "
                     f"{'—' if r['cpu_err'] == 0 else format(r['cpu_err'], '.2e')} | {'yes' if r['ok'] else '**no**'} |")
    lines += ["", "## speed vs PyTorch CUDA eager (same weights)\n",
              "| benchmark | minibert (median ± IQR) | torch reference | torch (median ± IQR) | ratio |",
              "|---|---|---|---|---|"]
    for r in speed_rows:
        batch = speed_args.train_batch if r.kind == "train" else speed_args.infer_batches[r.case.endswith("-b32")]
        lines.append(f"| {r.case} (B{batch} T{speed_args.seq}) | {bench_speed.fmt_time(r.minibert['median_s'], r.minibert['iqr_s'])}"
                     f" | {r.reference} | {bench_speed.fmt_time(r.torch['median_s'], r.torch['iqr_s'])} | {r.ratio:.2f} |")
    lines += ["", "## distill-task tokens/s (GPU vs CPU)\n", "| run | intermediate tokens/s | prediction tokens/s | wall s |",
              "|---|---|---|---|"]
    for r in distill:
        lines.append(f"| {r['device']} | {r['intermediate']:.0f} | {r['prediction']:.0f} | {r['wall_s']:.0f} |")
    if len(distill) == 2:
        g, c = distill
        lines.append(f"\nGPU / CPU tokens/s: intermediate {g['intermediate'] / c['intermediate']:.1f}x, "
                     f"prediction {g['prediction'] / c['prediction']:.1f}x (target >= 20x).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_check.md (default: $OUT or .)")
    p.add_argument("--standin", action="store_true", help="CPU dry run on the CuPy stand-in, tiny shapes")
    p.add_argument("--repeats", type=int, default=10, help="timed repeats per speed case")
    p.add_argument("--distill-steps", type=int, default=40, help="steps of each distill-task stage")
    a = p.parse_args(argv)
    cp = setup_device(a.standin)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    info = gpu_name(cp, a.standin)
    print(f"# gpu_check on {info}", flush=True)
    small = a.standin
    parity = check_parity({"tinybert4": TINY if small else TINYBERT4, "bert-base": TINY if small else BERT_BASE},
                          batch_size=2, seq=16 if small else 128)
    speed_rows, speed_args = check_speed(cp, a.standin, TINY if small else TINYBERT4, seq=16 if small else 128,
                                         train_batch=4 if small else 32, repeats=2 if small else a.repeats,
                                         warmup=1 if small else 3)
    distill = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        teacher, sst2 = write_inputs(Path(tmp), TINY if small else MINILM_L6, a.standin)
        steps = 2 if small else a.distill_steps
        for device, n in (("cupy", steps), ("numpy", max(2, steps // 4))):  # the CPU is timed on fewer steps
            distill.append(distill_run(device, teacher, sst2, Path(tmp) / device, n, 256 if small else 2000,
                                       8 if small else 32, "teacher:0,1" if small else "teacher:0,2,4"))
            print(f"# distill-task {device}: {distill[-1]}", flush=True)
    report = markdown(info, parity, speed_rows, speed_args, distill)
    (out / "gpu_check.md").write_text(report)
    print(report)
    return 0 if all(r["ok"] for r in parity) else 1


if __name__ == "__main__":
    sys.exit(main())
