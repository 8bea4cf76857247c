"""Speed and memory: minibert vs PyTorch/transformers on the same model, in one process.

What is measured (every case builds *identical* weights on both sides: minibert writes its
model with `save_pretrained` and transformers loads that folder, eager attention):

  train   one training step = zero_grad + forward + backward + global-norm clip (1.0) + AdamW,
          dropout on (train mode), TinyBERT-4 (4 layers, 312 hidden, 1200 intermediate,
          12 heads, vocab 30522), batch 32, sequence 128:
            train-cls   sequence classification (2 labels)
                        vs transformers BertForSequenceClassification
            train-mlm   masked LM, 15 % of positions labelled, minibert computing vocabulary
                        logits only at those positions (`only_labelled=True`), vs
                          torch-gathered  transformers' `model.bert` + `model.cls` run on the
                                          masked positions only (same work; the target row)
                          transformers    BertForMaskedLM as is: full-vocabulary logits at all
                                          B*T positions (what users run; for information)
  infer   one forward pass, eval mode on both sides, torch under `torch.inference_mode()` and
          minibert under `minibert.no_grad()` (its inference path, minibert/fast_inference.py),
          sequence 128, batch 1 and batch 32, for TinyBERT-4 and the MiniLM-L6 teacher
          (both as BertForSequenceClassification with 2 labels).
  memory  peak resident memory of a training step, and of batch-32 inference (TinyBERT-4,
          MiniLM-L6): one fresh subprocess per (library, case), so that peaks never mix (see
          `memory_child` and `infer_memory_child`: VmHWM over the calls minus the RSS before them).

Methodology
  * Both libraries run in the same process on the same inputs. After a warm-up of each
    contestant, repeats alternate A B A B ... (A B C ... with three), so slow drifts of the
    machine (thermal, a neighbour waking up) hit every contestant alike.
  * Each repeat is timed with `time.perf_counter` around exactly one call; on a GPU both
    devices are synchronised before the clock starts and before it stops.
  * Reported: the median and the interquartile range (q75 - q25, written "± IQR") of the
    repeats, the ratio of medians minibert / torch, the target and whether it is met.
  * Before timing, a parity check runs each pair once in eval mode (dropout off) and
    requires the same loss/logits, so a benchmark can never compare two different
    computations (for example a gathered variant that scores the wrong positions).
  * torch uses `torch.set_num_threads(2)` (`--torch-threads`); minibert runs its kernels on
    its own thread pool (minibert/threads.py: MINIBERT_NUM_THREADS, default all cores) and sets
    NumPy's BLAS to one thread at its first kernel; MINIBERT_FAST=0 times the plain kernels.
  * Inputs: random token ids in [1000, 30000), token_type_ids 0, attention_mask all ones,
    random labels (seeded, identical for both libraries).

Usage
    python bench/bench_speed.py --what all --markdown            # the README tables (slow)
    python bench/bench_speed.py --what train --repeats 10 --json train.json
    python bench/bench_speed.py --what infer --case infer-minilm-b32
    MINIBERT_NUM_THREADS=1 python bench/bench_speed.py --what infer --torch-threads 1 --clock cpu  # a busy machine
    python bench/bench_speed.py --what train --device cupy       # minibert on CuPy vs torch CUDA
    OPENBLAS_NUM_THREADS=1 python bench/bench_speed.py --quick --what all   # smoke test only

Numbers are only meaningful on a quiet machine: the header prints the load average, and a
warning when it is high.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from harness import machine_info, print_machine, summary, time_alternating  # noqa: E402  (bench/harness.py)

# TinyBERT-4, the student of the TinyBERT paper (head size 26).
TINYBERT4 = dict(vocab_size=30522, hidden_size=312, num_hidden_layers=4, num_attention_heads=12,
                 intermediate_size=1200, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
MASKED_FRACTION = 0.15          # share of positions that carry a masked-LM label
ID_LOW, ID_HIGH = 1000, 30000   # random token ids are drawn from [ID_LOW, ID_HIGH)
LR, WEIGHT_DECAY, ADAM_EPS = 5e-5, 0.01, 1e-6  # minibert's AdamW defaults, given to torch too
TARGETS = {"train": 1.2, "infer": 1.1, "infer-b1": 1.2, "memory": 1.0}  # minibert / torch must be <= this
PARITY_ATOL = 2e-3              # float32 loss/logit agreement required before timing


# ============================================================================== inputs


def make_inputs(batch: int, seq: int, task: str, seed: int = 0) -> dict:
    """NumPy inputs shared by both libraries. task: "cls", "mlm" or "infer"."""
    rng = np.random.default_rng(seed)
    x = {
        "input_ids": rng.integers(ID_LOW, ID_HIGH, size=(batch, seq), dtype=np.int64),  # (B, T)
        "token_type_ids": np.zeros((batch, seq), dtype=np.int64),  # (B, T)
        "attention_mask": np.ones((batch, seq), dtype=np.int64),  # (B, T) no padding
    }
    if task == "cls":
        x["labels"] = rng.integers(0, 2, size=(batch,), dtype=np.int64)  # (B,)
    elif task == "mlm":
        # exactly round(15 % of T) labelled positions in every row, at random places
        k = max(1, round(MASKED_FRACTION * seq))
        positions = np.argsort(rng.random((batch, seq)), axis=1)[:, :k]  # (B, k)
        labels = np.full((batch, seq), -100, dtype=np.int64)  # (B, T)
        np.put_along_axis(labels, positions, rng.integers(ID_LOW, ID_HIGH, size=(batch, k)), axis=1)
        x["labels"] = labels
    return x


# ============================================================================== devices


class Device:
    """Moves NumPy inputs to each library's device and synchronises before reading clocks."""

    def __init__(self, name: str):
        self.name = name  # "numpy" (CPU) or "cupy" (CUDA GPU)
        if name == "cupy":
            import cupy

            self.cupy = cupy

    def minibert(self, a: np.ndarray):
        return self.cupy.asarray(a) if self.name == "cupy" else a

    def torch(self, a: np.ndarray):
        import torch

        t = torch.from_numpy(a)
        return t.cuda() if self.name == "cupy" else t

    @property
    def torch_device(self) -> str:
        return "cuda" if self.name == "cupy" else "cpu"

    def sync(self) -> None:
        """Wait for every queued GPU kernel of both libraries (a no-op on the CPU)."""
        if self.name == "cupy":
            import torch

            self.cupy.cuda.Device().synchronize()
            torch.cuda.synchronize()


# ============================================================================== model pairs


def hf_quiet():
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def minibert_config():
    import minibert

    return minibert.BertConfig(**TINYBERT4)


def load_into_transformers(model, auto_class: str, folder: Path, device: Device):
    """transformers' copy of a minibert model: save_pretrained, then load with eager attention."""
    transformers = hf_quiet()
    model.save_pretrained(folder)
    hf = getattr(transformers, auto_class).from_pretrained(str(folder), attn_implementation="eager")
    return hf.to(device.torch_device)


def no_decay(name: str) -> bool:
    """minibert.optim.default_no_decay, repeated here so the torch memory child never imports minibert."""
    return name.endswith("bias") or "LayerNorm" in name


def torch_adamw(model):
    """torch AdamW with minibert's hyper-parameters and no-decay groups (biases, LayerNorm)."""
    import torch

    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not no_decay(n)], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=LR, eps=ADAM_EPS)


def minibert_train_step(model, x: dict, only_labelled: bool | None):
    """The minibert training step timed by the benchmark (returns a closure)."""
    from minibert.optim import AdamW, clip_grad_norm, zero_grads

    grads = model.named_gradients()
    opt = AdamW(model.named_parameters(), lr=LR, weight_decay=WEIGHT_DECAY, eps=ADAM_EPS)
    kw = {} if only_labelled is None else {"only_labelled": only_labelled}

    def step():
        zero_grads(grads)
        model(x["input_ids"], x["token_type_ids"], x["attention_mask"], labels=x["labels"], **kw)
        model.backward()
        clip_grad_norm(grads, 1.0)
        opt.step(grads)

    return step


def torch_train_step(model, x: dict, gathered: bool = False, scope=None):
    """The torch training step: transformers' forward (or the gathered MLM), autograd, clip, AdamW.

    gathered=True runs `model.bert` on the whole batch and `model.cls` (the MLM head: transform
    + tied decoder) only on the labelled positions, as minibert's `only_labelled=True` does.
    scope(name) -> context manager, wrapped around each phase (profile_step.py passes
    `torch.profiler.record_function`); none by default.
    """
    import contextlib

    import torch

    scope = scope or (lambda name: contextlib.nullcontext())
    import torch.nn.functional as F

    opt = torch_adamw(model)
    params = [p for p in model.parameters()]

    def loss_full():
        return model(input_ids=x["input_ids"], token_type_ids=x["token_type_ids"],
                     attention_mask=x["attention_mask"], labels=x["labels"]).loss

    def loss_gathered():
        h = model.bert(input_ids=x["input_ids"], token_type_ids=x["token_type_ids"],
                       attention_mask=x["attention_mask"]).last_hidden_state  # (B, T, H)
        flat_labels = x["labels"].reshape(-1)  # (B*T,)
        positions = (flat_labels != -100).nonzero(as_tuple=True)[0]  # (P,)
        logits = model.cls(h.reshape(-1, h.shape[-1])[positions])  # (P, V)
        return F.cross_entropy(logits, flat_labels[positions])

    compute_loss = loss_gathered if gathered else loss_full

    def step():
        with scope("zero_grad"):
            opt.zero_grad()
        with scope("forward"):
            loss = compute_loss()
        with scope("backward"):
            loss.backward()
        with scope("clip"):
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        with scope("optimizer"):
            opt.step()

    step.loss = compute_loss  # for the parity check
    return step


# ============================================================================== parity


def check_close(what: str, ours, theirs, atol: float = PARITY_ATOL) -> float:
    """Fail loudly when two libraries disagree: a benchmark of different computations is void."""
    from minibert.backend import to_numpy

    a = np.asarray(to_numpy(ours), dtype=np.float64)
    b = theirs.detach().cpu().double().numpy()
    diff = float(np.max(np.abs(a - b)))
    if not diff <= atol:
        raise SystemExit(f"parity check failed for {what}: max |minibert - torch| = {diff:.3g} > {atol}")
    return diff


def parity_train(case: str, ours, x_ours: dict, torch_steps: dict, only_labelled) -> str:
    """Loss of minibert and of each torch variant in eval mode (dropout off) must agree."""
    import torch

    ours.eval()
    kw = {} if only_labelled is None else {"only_labelled": only_labelled}
    loss = ours(x_ours["input_ids"], x_ours["token_type_ids"], x_ours["attention_mask"],
                labels=x_ours["labels"], **kw).loss
    notes = []
    for name, (model, step) in torch_steps.items():
        model.eval()
        with torch.no_grad():
            ref = step.loss()
        notes.append(f"{name} {check_close(f'{case} loss vs {name}', loss, ref):.1e}")
        model.train()
    ours.train()
    return ", ".join(notes)


# ============================================================================== timing


@dataclass
class Row:
    """One line of the report: minibert against one torch reference."""

    kind: str                 # train | infer | memory
    case: str                 # e.g. train-mlm
    reference: str            # which torch contestant
    minibert: dict            # summary() or memory numbers
    torch: dict
    ratio: float              # minibert / torch (medians, or memory deltas)
    target: float | None      # None: reported for information
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target

    def to_dict(self) -> dict:
        return {**asdict(self), "met": self.met}


def rows_for(kind: str, case: str, times: dict, targets: dict[str, float | None], note: str) -> list[Row]:
    """Turn the alternating timings of one case into Rows (minibert vs each torch contestant)."""
    ours = summary(times["minibert"])
    rows = []
    for ref, target in targets.items():
        theirs = summary(times[ref])
        rows.append(Row(kind, case, ref, ours, theirs, ours["median_s"] / theirs["median_s"], target, note))
    return rows


def print_row(row: Row) -> None:
    m, t = row.minibert, row.torch
    met = "" if row.met is None else ("  met" if row.met else "  NOT met")
    print(f"  {row.case:<22} vs {row.reference:<15} minibert {fmt_time(m['median_s'], m['iqr_s']):>20}"
          f"   torch {fmt_time(t['median_s'], t['iqr_s']):>20}   ratio {row.ratio:5.2f}"
          f"{'' if row.target is None else f' (target <= {row.target})'}{met}", flush=True)


def fmt_time(median: float, iqr: float) -> str:
    """'1234 ± 12 ms' (milliseconds read best across 10 ms inference and 2 s training)."""
    digits = 1 if median < 0.1 else 0
    return f"{median * 1e3:.{digits}f} ± {iqr * 1e3:.{digits}f} ms"


# ============================================================================== train


def bench_train(args, device: Device, cases: list[str]) -> list[Row]:
    import minibert

    B, T = args.train_batch, args.seq
    rows = []
    with tempfile.TemporaryDirectory(prefix="minibert-bench-") as tmp:
        for case in cases:
            task = "cls" if case == "train-cls" else "mlm"
            x = make_inputs(B, T, task)
            x_ours = {k: device.minibert(v) for k, v in x.items()}
            x_torch = {k: device.torch(v) for k, v in x.items()}
            if task == "cls":
                ours = minibert.BertForSequenceClassification(minibert_config(), num_labels=2, seed=0)
                only_labelled = None
                folder = Path(tmp) / case
                hf = load_into_transformers(ours, "AutoModelForSequenceClassification", folder, device)
                torch_models = {"transformers": (hf, torch_train_step(hf, x_torch))}
                targets = {"transformers": TARGETS["train"]}
            else:
                ours = minibert.BertForMaskedLM(minibert_config(), seed=0)
                only_labelled = True
                folder = Path(tmp) / case
                # two torch copies with the same weights, so each variant has its own AdamW state
                hf_g = load_into_transformers(ours, "AutoModelForMaskedLM", folder, device)
                hf_f = load_into_transformers(ours, "AutoModelForMaskedLM", folder, device)
                torch_models = {"torch-gathered": (hf_g, torch_train_step(hf_g, x_torch, gathered=True)),
                                "transformers": (hf_f, torch_train_step(hf_f, x_torch))}
                # the fair comparison carries the target; the full-vocabulary run is information
                targets = {"torch-gathered": TARGETS["train"], "transformers": None}
            if device.name == "cupy":
                ours.to("cupy")
            # parity_train leaves every model in train mode again: dropout on for the timing
            note = "parity (max |Δloss|): " + parity_train(case, ours, x_ours, torch_models, only_labelled)
            contestants = {"minibert": minibert_train_step(ours, x_ours, only_labelled)}
            contestants.update({name: step for name, (_, step) in torch_models.items()})
            print(f"# {case}: B={B} T={T}, {args.warmup} warm-up + {args.train_repeats} repeats each; {note}",
                  flush=True)
            times = time_alternating(contestants, args.train_repeats, args.warmup, device.sync, CLOCKS[args.clock])
            for row in rows_for("train", case, times, targets, note):
                print_row(row)
                rows.append(row)
            del ours, torch_models, contestants
    return rows


# ============================================================================== infer


def bench_infer(args, device: Device, cases: list[str]) -> list[Row]:
    import torch

    import minibert
    from minibert import checkpoint

    rows = []
    with tempfile.TemporaryDirectory(prefix="minibert-bench-") as tmp:
        built: dict[str, tuple] = {}
        for case in cases:
            model_name, batch = case.removeprefix("infer-").rsplit("-b", 1)
            batch = args.infer_batches[0] if batch == "1" else args.infer_batches[1]
            if model_name not in built:  # one model pair per architecture, reused for both batches
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "classifier initialised randomly" on the teacher
                    if model_name == "tinybert4":
                        ours = minibert.BertForSequenceClassification(minibert_config(), num_labels=2, seed=0)
                    else:
                        try:
                            path = checkpoint.teacher_path("minilm-l6")
                        except checkpoint.TeacherNotInstalledError as exc:
                            print(f"# {case}: skipped ({exc})", flush=True)
                            continue
                        ours = minibert.BertForSequenceClassification.from_pretrained(path, num_labels=2)
                hf = load_into_transformers(ours, "AutoModelForSequenceClassification", Path(tmp) / model_name, device)
                if device.name == "cupy":
                    ours.to("cupy")
                built[model_name] = (ours.eval(), hf.eval())
            ours, hf = built[model_name]
            x = make_inputs(batch, args.seq, "infer")
            x_ours = {k: device.minibert(v) for k, v in x.items()}
            x_torch = {k: device.torch(v) for k, v in x.items()}

            def run_ours():  # no_grad: minibert's inference path (minibert/fast_inference.py) on NumPy
                with minibert.no_grad():
                    return ours(x_ours["input_ids"], x_ours["token_type_ids"], x_ours["attention_mask"]).logits

            def run_torch():
                with torch.inference_mode():
                    return hf(**x_torch).logits

            note = f"parity (max |Δlogit|): {check_close(case, run_ours(), run_torch()):.1e}"
            print(f"# {case}: B={batch} T={args.seq}, {args.warmup} warm-up + {args.infer_repeats} "
                  f"repeats each; {note}", flush=True)
            times = time_alternating({"minibert": run_ours, "transformers": run_torch},
                                     args.infer_repeats, args.warmup, device.sync, CLOCKS[args.clock])
            target = TARGETS["infer-b1" if batch == 1 else "infer"]
            for row in rows_for("infer", case, times, {"transformers": target}, note):
                print_row(row)
                rows.append(row)
    return rows


# ============================================================================== memory


def rss_status() -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of this process in KiB, from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(library: str, case: str, batch: int, seq: int, steps: int) -> dict:
    """Runs in its own process: peak RSS of `steps` training steps, printed as one JSON line.

    The baseline is taken after the imports and the inputs, *before* the model is built:
    torch allocates gradients and AdamW moments lazily (at the first backward / step) while
    minibert allocates them with the model and the optimizer, so a baseline after the model
    build would count them for torch only. delta = peak - baseline is therefore what the
    model, its gradients, the optimizer state and the step's activations cost. The peak
    counter is reset at the baseline (VmHWM via /proc/self/clear_refs); where that is not
    possible it falls back to ru_maxrss, which can only over-state the peak.
    """
    task = "cls" if case == "train-cls" else "mlm"
    x = make_inputs(batch, seq, task)
    if library == "minibert":
        import minibert

        # modules the step imports lazily (the GELU's erf, the optimizer): a library cost, not the step's
        for module in ("scipy.special", "minibert.optim"):
            importlib.import_module(module)

        baseline = rss_status()["VmRSS"]
        exact_peak = reset_peak()
        cls = minibert.BertForSequenceClassification if task == "cls" else minibert.BertForMaskedLM
        model = cls(minibert_config(), **({"num_labels": 2} if task == "cls" else {}), seed=0)
        step = minibert_train_step(model, x, None if task == "cls" else True)
    else:
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
        transformers = hf_quiet()
        x = {k: torch.from_numpy(v) for k, v in x.items()}
        cfg = transformers.BertConfig(**TINYBERT4)
        # transformers imports its modeling code lazily: load it before the baseline too
        auto = getattr(transformers, "AutoModelForSequenceClassification" if task == "cls" else "AutoModelForMaskedLM")
        importlib.import_module("transformers.models.bert.modeling_bert")
        baseline = rss_status()["VmRSS"]
        exact_peak = reset_peak()
        model = auto.from_config(cfg, attn_implementation="eager").train()
        step = torch_train_step(model, x, gathered=(library == "torch-gathered"))
    after_build = rss_status()["VmRSS"]
    for _ in range(steps):
        step()
    status = rss_status()
    peak = status["VmHWM"] if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"library": library, "case": case, "baseline_kib": baseline, "after_build_kib": after_build,
            "peak_kib": peak, "delta_kib": peak - baseline, "exact_peak": exact_peak, "steps": steps}


def infer_memory_child(library: str, folder: str, batch: int, seq: int, calls: int) -> dict:
    """Runs in its own process: peak RSS of `calls` inference forwards, printed as one JSON line.

    Both libraries load the same folder (a 2-label classifier saved by the parent), then make
    the inputs; the baseline is the RSS after that, so delta = peak - baseline is what the
    forwards cost beyond the weights (activations, workspaces, allocator growth), the first
    call's one-off costs included on both sides. minibert runs under `no_grad` (its inference
    path), torch under `inference_mode`, both in eval mode.
    """
    x = make_inputs(batch, seq, "infer")
    if library == "minibert":
        import minibert

        importlib.import_module("scipy.special")  # the GELU's erf, imported lazily: a library cost
        model = minibert.BertForSequenceClassification.from_pretrained(folder)
        context = minibert.no_grad
    else:
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
        model = hf_quiet().AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
        x = {k: torch.from_numpy(v) for k, v in x.items()}
        context = torch.inference_mode
    baseline = rss_status()["VmRSS"]
    exact_peak = reset_peak()
    for _ in range(calls):
        with context():
            model(input_ids=x["input_ids"], token_type_ids=x["token_type_ids"], attention_mask=x["attention_mask"])
    status = rss_status()
    peak = status["VmHWM"] if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"library": library, "baseline_kib": baseline, "peak_kib": peak, "delta_kib": peak - baseline,
            "exact_peak": exact_peak, "calls": calls}


def infer_memory_folder(case: str, root: Path) -> Path | None:
    """The 2-label classifier of an inference memory case, saved by minibert (None: no MiniLM installed)."""
    import minibert
    from minibert import checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "classifier initialised randomly" on the teacher
        if "tinybert4" in case:
            model = minibert.BertForSequenceClassification(minibert_config(), num_labels=2, seed=0)
        else:
            try:
                path = checkpoint.teacher_path("minilm-l6")
            except checkpoint.TeacherNotInstalledError:
                return None
            model = minibert.BertForSequenceClassification.from_pretrained(path, num_labels=2)
    return model.save_pretrained(root / case)


def bench_memory(args, device: Device, cases: list[str]) -> list[Row]:
    if device.name != "numpy":
        print("# memory: skipped (it measures host RSS; run it without --device cupy)", flush=True)
        return []
    rows = []
    scratch = tempfile.TemporaryDirectory(prefix="minibert-bench-")
    for case in cases:
        infer = case.startswith("infer-")
        plan = {"train-cls": {"transformers": TARGETS["memory"]},
                "train-mlm": {"torch-gathered": TARGETS["memory"], "transformers": None}}.get(
                    case, {"transformers": TARGETS["memory"]})
        folder = infer_memory_folder(case, Path(scratch.name)) if infer else None
        if infer and folder is None:
            print(f"# memory {case}: skipped (the MiniLM-L6 teacher is not installed)", flush=True)
            continue
        batch = args.infer_batches[1] if infer else args.train_batch
        results = {}
        for library in ["minibert", *plan]:
            if infer:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--_infer-memory-child", library, str(folder),
                       "--infer-batches", f"1,{batch}", "--seq", str(args.seq), "--memory-steps", str(args.memory_steps)]
            else:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--_memory-child", library, case,
                       "--train-batch", str(args.train_batch), "--seq", str(args.seq),
                       "--memory-steps", str(args.memory_steps)]
            env = {**os.environ, "BENCH_TORCH_THREADS": str(args.torch_threads)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"memory child {library} {case} failed:\n{proc.stderr[-3000:]}")
            results[library] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"# memory {case}: B={batch} T={args.seq}, {args.memory_steps} "
              f"{'forwards' if infer else 'steps'}, one subprocess each", flush=True)
        ours = results["minibert"]
        for ref, target in plan.items():
            theirs = results[ref]
            exact = ours["exact_peak"] and theirs["exact_peak"]
            row = Row("memory", case, ref, ours, theirs, ours["delta_kib"] / theirs["delta_kib"], target,
                      ("ratio of deltas (peak - RSS with the model loaded)" if infer else
                       "ratio of deltas (peak - RSS after imports)")
                      + ("" if exact else "; peak from ru_maxrss (VmHWM could not be reset)"))
            print(f"  {case:<22} vs {ref:<15} minibert peak {mib(ours['peak_kib'])} (Δ {mib(ours['delta_kib'])})"
                  f"   torch peak {mib(theirs['peak_kib'])} (Δ {mib(theirs['delta_kib'])})   Δ ratio {row.ratio:5.2f}"
                  f"{'' if target is None else f' (target <= {target})'}"
                  f"{'' if row.met is None else ('  met' if row.met else '  NOT met')}", flush=True)
            rows.append(row)
    scratch.cleanup()
    return rows


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


# ============================================================================== report


def markdown(rows: list[Row], info: dict, args) -> str:
    """The README performance tables."""
    def met(row):
        return "—" if row.met is None else ("yes" if row.met else "**no**")

    def target(row):
        return "info" if row.target is None else f"≤ {row.target}"

    lines = [f"Machine: {info['cpu']}, {info.get('usable_cpus', info['logical_cpus'])} CPUs; "
             f"numpy {info['numpy']} ({info.get('numpy_blas', '?')}), torch {info['torch']} "
             f"({info['torch_threads']} threads), transformers {info['transformers']}"
             + (f"; GPU {info['gpu']}" if "gpu" in info else "") + ".", ""]
    timed = [r for r in rows if r.kind != "memory"]
    if timed:
        lines += ["| benchmark | minibert (median ± IQR) | torch reference | torch (median ± IQR) "
                  "| ratio | target | met? |",
                  "|---|---|---|---|---|---|---|"]
        for r in timed:
            shape = (f"B{args.train_batch} T{args.seq}" if r.kind == "train"
                     else f"B{args.infer_batches[0] if r.case.endswith('-b1') else args.infer_batches[1]} T{args.seq}")
            lines.append(f"| {r.case} ({shape}) | {fmt_time(r.minibert['median_s'], r.minibert['iqr_s'])} "
                         f"| {r.reference} | {fmt_time(r.torch['median_s'], r.torch['iqr_s'])} "
                         f"| {r.ratio:.2f} | {target(r)} | {met(r)} |")
        lines.append("")
    mem = [r for r in rows if r.kind == "memory"]
    if mem:
        lines += ["| peak memory | minibert peak (Δ) | torch reference | torch peak (Δ) "
                  "| Δ ratio | target | met? |",
                  "|---|---|---|---|---|---|---|"]
        for r in mem:
            batch = args.infer_batches[1] if r.case.startswith("infer-") else args.train_batch
            lines.append(f"| {r.case} (B{batch} T{args.seq}) "
                         f"| {mib(r.minibert['peak_kib'])} ({mib(r.minibert['delta_kib'])}) | {r.reference} "
                         f"| {mib(r.torch['peak_kib'])} ({mib(r.torch['delta_kib'])}) "
                         f"| {r.ratio:.2f} | {target(r)} | {met(r)} |")
        lines.append("")
    return "\n".join(lines)


# ============================================================================== main

TRAIN_CASES = ["train-cls", "train-mlm"]
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # see harness.time_alternating
INFER_CASES = ["infer-tinybert4-b1", "infer-tinybert4-b32", "infer-minilm-b1", "infer-minilm-b32"]
MEMORY_CASES = ["train-cls", "train-mlm", "infer-tinybert4-b32", "infer-minilm-b32"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", choices=["train", "infer", "memory", "all"], default="all")
    p.add_argument("--case", action="append", default=None,
                   help=f"run only these cases (repeatable): {', '.join(TRAIN_CASES + INFER_CASES)}")
    p.add_argument("--device", choices=["numpy", "cupy"], default="numpy",
                   help="cupy: minibert model.to('cupy') vs torch CUDA (eager)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2 repeats, 1 warm-up, batch 4 / infer batches 1,4, sequence 32, 1 memory step")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contestant "
                   "(default 10 for train, 20 for infer)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls per contestant first (default 2)")
    p.add_argument("--train-batch", type=int, default=None, help="default 32")
    p.add_argument("--infer-batches", type=str, default=None, help="the two inference batch sizes, default 1,32")
    p.add_argument("--seq", type=int, default=None, help="sequence length, default 128")
    p.add_argument("--memory-steps", type=int, default=None, help="training steps (inference forwards) per memory subprocess, default 3")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall (default), or cpu: CPU seconds of the process, for single-threaded runs on a loaded "
                        "machine (MINIBERT_NUM_THREADS=1 --torch-threads 1)")
    p.add_argument("--json", type=Path, default=None, help="write machine, settings and every timing here")
    p.add_argument("--markdown", action="store_true", help="print the README tables at the end")
    p.add_argument("--_memory-child", nargs=2, metavar=("LIBRARY", "CASE"), help=argparse.SUPPRESS)
    p.add_argument("--_infer-memory-child", nargs=2, metavar=("LIBRARY", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    quick = args.quick
    args.train_repeats = args.repeats or (2 if quick else 10)
    args.infer_repeats = args.repeats or (2 if quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.train_batch = args.train_batch or (4 if quick else 32)
    args.seq = args.seq or (32 if quick else 128)
    args.memory_steps = args.memory_steps or (1 if quick else 3)
    batches = args.infer_batches or ("1,4" if quick else "1,32")
    args.infer_batches = [int(b) for b in batches.split(",")]
    if len(args.infer_batches) != 2:
        p.error("--infer-batches takes two sizes, e.g. 1,32")
    known = TRAIN_CASES + INFER_CASES
    for c in args.case or []:
        if c not in known:
            p.error(f"unknown case {c!r}; known: {', '.join(known)}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args._memory_child:
        library, case = args._memory_child
        print(json.dumps(memory_child(library, case, args.train_batch, args.seq, args.memory_steps)))
        return
    if args._infer_memory_child:
        library, folder = args._infer_memory_child
        print(json.dumps(infer_memory_child(library, folder, args.infer_batches[1], args.seq, args.memory_steps)))
        return

    import torch

    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    device = Device(args.device)
    info = machine_info(args.device)
    print_machine(info)

    def selected(cases):
        return [c for c in cases if args.case is None or c in args.case]

    rows: list[Row] = []
    if args.what in ("train", "all"):
        rows += bench_train(args, device, selected(TRAIN_CASES))
    if args.what in ("infer", "all"):
        rows += bench_infer(args, device, selected(INFER_CASES))
    if args.what in ("memory", "all"):
        rows += bench_memory(args, device, selected(MEMORY_CASES))

    settings = {k: v for k, v in vars(args).items() if k not in ("json", "_memory_child", "_infer_memory_child")}
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "settings": settings,
                                         "results": [r.to_dict() for r in rows]}, indent=2) + "\n")
        print(f"# wrote {args.json}")
    if args.markdown:
        print()
        print(markdown(rows, info, args))
    if args.quick:
        print("# --quick: shapes and repeats are a smoke test; these numbers mean nothing")


if __name__ == "__main__":
    main()
