"""The training loop shared by pre-training, fine-tuning and distillation.

One loop, parameterised by a `step_fn(batch, scale) -> {"loss": ..., ...}` that runs the
forward pass and the backward pass (accumulating gradients scaled by `scale`), so the loop
itself only knows about optimisation and bookkeeping:

    for each optimizer step:
        zero the gradients
        for each of grad_accum micro-batches: step_fn(batch, 1 / grad_accum)
        clip, set the scheduled learning rate, optimizer step
        at log, evaluation and checkpoint steps only: read the losses from the device,
            stop if any loss since the last read was NaN/Inf (the last good checkpoint stays),
            log (tqdm bar + metrics.jsonl), evaluate, checkpoint

Host/device syncs only at log intervals. The losses a step_fn returns stay 0-d float64
arrays of the model's array library (NumPy or CuPy) and are summed there; nothing becomes a
Python float (on CuPy, a device synchronisation) except at a log step (every `log_steps` and
the last step) and before an evaluation or a checkpoint. Global clipping keeps its norm and
scale on the device too. What this costs: a NaN/Inf loss is noticed at the next read, so the
stop names the interval ("loss is not finite between steps 7 and 9"), not the exact step, and
the steps after it have already been applied in memory; they are never saved, since a
checkpoint is only written after a read that found every loss finite. A metrics.jsonl line
carries the values of its own step (the last of the interval): the losses, the learning rate
and the gradient norm before clipping, as they were before syncs moved to log intervals, the
tokens seen so far and their rate since the loop started, and the number of processes.

No lost work: `checkpoint-<step>/` holds every trainable array (params.safetensors), the
optimizer moments (optimizer.safetensors), in trainer_state.json the step, the data
position (epoch, batch), the dropout generators' states and the settings and data the run
used, and in checksums.sha256 the sha256 of those three files. It is written to a temporary
folder and renamed into place, so a run killed at any moment leaves either the old or the
new checkpoint, never half of one; `resume` continues bit-identically.

Nothing silently wrong (the folder's guards are runfolder.py's, the signals interrupts.py's):
- the output folder is locked for the run's life; stale temporaries are removed at the start;
- a fresh run refuses a folder holding another run's checkpoints unless `overwrite_output_dir`
  (which deletes them, metrics.jsonl and best/);
- a resume verifies the checkpoint (trainer_state.json's fields, the tensor files' headers,
  the checksums; a checkpoint without checksums.sha256, written before they were recorded, is
  checked by its headers only, with a note) and `resume="auto"` takes the newest one that
  verifies, naming those it skips; it then compares RESULT_SETTINGS, the planned steps and
  the training data's fingerprint with the recorded ones and refuses, naming each difference,
  unless `resume_override` lists it (the accepted changes are recorded in trainer_state.json);
- before the first step: the longest training row against the model's position embeddings,
  the labels against its classifier, free disk space for a checkpoint;
- SIGINT/SIGTERM finish the step, write a checkpoint and raise `interrupts.Interrupted`.

Several processes (`mpiexec -n N`, distributed.py): `batch_size` stays the global batch of one
micro-batch; each process collates it and keeps its rows (data.batching.shard_batch), so the
epoch order and the data position (epoch, batch) do not depend on N. Its losses are weighted by
its share of the global batch: step_fn gets `scale` = 1/grad_accum x its share of the rows, and
a step_fn marked `weighs_labelled_tokens` also its share of the labelled tokens, so that the
gradients summed over the processes (one message per step, all gradients being views of one
flat buffer) are those of the global batch's loss. Parameters are broadcast from rank 0 at the
start; every process then applies the same update. Rank 0 alone holds the folder's lock,
checks, evaluates (on the whole evaluation set, while the others wait), logs, shows the bar and
writes checkpoints, which hold every process's dropout state and the number of processes
(`world_size`): a resume with the same N continues bit-identically, with another N from the same
global batch, with a note. Losses and the NaN/Inf check are summed over the processes at the
read steps, and a stop signal reaching any process stops all of them at the same step.

This module does not read or write tensor files itself (checkpoint.py does, with its header
validation: a checkpoint that does not fit the model is a `CheckpointError` naming the file
and the tensor), hold the optimizer's maths (optim.py), or know what a step computes (the
step functions live with their tasks: tinybert.py, the command line in train.py).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm  # plain text bars: in notebooks too, without ipywidgets

from . import distributed
from .backend import device_of, get_array_module, to_device
from .checkpoint import CheckpointError, load_tensors, read_header, save_tensors
from .data.batching import shard_batch
from .functional import IGNORE_INDEX
from .interrupts import Interrupted, StopSignals
from .optim import AdamW, BertAdam, clip_grad_norm, clip_grad_norm_per_tensor, make_schedule, zero_grads
from .runfolder import (CHECKPOINT_TMP_PREFIX, RunFolderError, RunLock, check_free_space, checksum_problems,
                        data_fingerprint, describe_os_error, note, prepare_folder, remove_stale_temporaries,
                        write_checksums)

# A checkpoint-<step>/ folder: file names unchanged since the first release, so old runs resume.
STATE_FILE = "trainer_state.json"
PARAMS_FILE = "params.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_KEYS = ("step", "epoch", "batch", "best_metric", "tokens", "history", "optimizer", "rng_states", "total_steps")
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")

# The TrainArgs that change what a resumed run computes (the data order, the schedule, the
# update). The others (where and how often to log, evaluate or save; progress bars) may change
# on resume. Also compared: "total_steps" (from max_steps/epochs: the schedule's length) and
# "data" (the training data's fingerprint: other examples, max length or vocabulary).
RESULT_SETTINGS = ("batch_size", "grad_accum", "lr", "weight_decay", "warmup_ratio", "schedule", "optimizer",
                   "max_grad_norm", "clip", "seed")
OVERRIDABLE = (*RESULT_SETTINGS, "total_steps", "data", "all")


class TrainingError(RuntimeError):
    """Training stopped: a non-finite loss, a checkpoint that could not be written (full disk), or a
    metric_for_best the evaluation does not report.

    (A checkpoint that does not fit the run is a `checkpoint.CheckpointError`; an output folder
    that cannot hold the run a `runfolder.RunFolderError`.)"""


@dataclass
class TrainArgs:
    """How to optimise. Field names double as command-line flags (--max-steps, ...)."""

    output_dir: str = field(default="runs/default", metadata={"help": (
        "folder for the final model (Hugging Face layout), checkpoint-<step>/ folders, metrics.jsonl and "
        "results.json")})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps to run; 0 means use --epochs"})
    epochs: float = field(default=1.0, metadata={
        "help": "passes over the training data (fractions allowed) when --max-steps is 0"})
    batch_size: int = field(default=32, metadata={"help": (
        "examples per micro-batch, all processes together (under mpiexec -n N each takes batch_size/N)")})
    grad_accum: int = field(default=1, metadata={
        "help": "micro-batches per optimizer step (the effective batch is batch_size x grad_accum)"})
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={
        "help": "decoupled weight decay (never applied to biases and LayerNorm weights)"})
    warmup_ratio: float = field(default=0.1, metadata={
        "help": "fraction of the steps spent warming the learning rate up from 0"})
    schedule: str = field(default="linear", metadata={
        "help": "learning-rate schedule: linear (warmup then linear decay to 0), constant, constant_with_warmup"})
    optimizer: str = field(default="adamw", metadata={
        "help": "adamw (bias-corrected, as torch) or bertadam (BERT/TinyBERT reference: no bias correction)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip gradients to this norm; 0 disables clipping"})
    clip: str = field(default="global", metadata={"help": (
        "global (one norm over all gradients, as BERT) or per_tensor (each tensor alone, as TinyBERT's BertAdam)")})
    seed: int = field(default=42, metadata={"help": "seed for initialisation, data order and dropout"})
    log_steps: int = field(default=10, metadata={
        "help": "log to the progress bar and metrics.jsonl every this many steps"})
    eval_steps: int = field(default=0, metadata={"help": "evaluate every this many steps (0: only at the end)"})
    save_steps: int = field(default=0, metadata={
        "help": "write checkpoint-<step>/ every this many steps (0: only at the end)"})
    save_total_limit: int = field(default=2, metadata={"help": "how many checkpoint folders to keep"})
    metric_for_best: str = field(default="", metadata={
        "help": "evaluation metric whose best value is kept in output_dir/best"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": (
        "start afresh in an output folder that holds another run's checkpoints, deleting them (and its "
        "metrics.jsonl and best/); without it such a folder is refused unless --resume is given")})
    resume_override: list[str] | None = field(default=None, metadata={"help": (
        "settings allowed to differ from the checkpoint's on --resume (recorded in trainer_state.json): any of "
        + ", ".join(OVERRIDABLE)), "metavar": "SETTING"})

    def __post_init__(self):
        checks = {
            "batch_size": self.batch_size >= 1, "grad_accum": self.grad_accum >= 1, "lr": self.lr >= 0,
            "epochs": self.epochs > 0 or self.max_steps > 0, "max_steps": self.max_steps >= 0,
            "warmup_ratio": 0 <= self.warmup_ratio <= 1, "weight_decay": self.weight_decay >= 0,
            "optimizer": self.optimizer in ("adamw", "bertadam"), "clip": self.clip in ("global", "per_tensor"),
            "log_steps": self.log_steps >= 1, "eval_steps": self.eval_steps >= 0, "save_steps": self.save_steps >= 0,
            "save_total_limit": self.save_total_limit >= 1,
            "resume_override": all(k in OVERRIDABLE for k in self.resume_override or ()),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training setting {bad[0]}={getattr(self, bad[0])!r}")


@dataclass
class TrainState:
    """Where a run is: optimizer steps done and the next micro-batch (epoch, batch)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    best_metric: float | None = None
    tokens: int = 0
    history: list = field(default_factory=list)
    overrides: list = field(default_factory=list)  # settings changed on resume: {step, setting, recorded, now}


def weighs_labelled_tokens(step_fn: Callable) -> Callable:
    """Mark a step_fn whose loss is (in part) a mean over labelled tokens, such as the masked LM's.

    The trainer then calls it as `step_fn(batch, scale, labelled_scale)`: `scale` weighs a mean
    over the batch's rows, `labelled_scale` a mean over its labelled tokens (1/grad_accum x this
    process's share of the global batch's labelled tokens). In one process they are equal; in
    several, the processes' rows hold different numbers of labelled tokens.
    """
    step_fn.weighs_labelled_tokens = True
    return step_fn


def merged_parameters(modules: dict) -> tuple[dict, dict]:
    """{prefix + name: array} over several modules, e.g. {"": student, "": fit_dense}."""
    params, grads = {}, {}
    for prefix, module in modules.items():
        for name, p in module.named_parameters().items():
            key = prefix + name
            if key in params:
                raise ValueError(f"two trained modules both have a parameter called {key!r}")
            params[key] = p
        grads.update({prefix + k: g for k, g in module.named_gradients().items()})
    return params, grads


class Trainer:
    """Runs `step_fn` under an optimizer with checkpoints, logging, evaluation and resume.

    modules: {name prefix: Module} whose parameters are trained (the student and, in
    distillation, its fit_dense projection). batcher: a `minibert.data.Batcher`.
    eval_fn() -> {metric: value}. save_fn(folder) writes the final (and best) model.
    """

    def __init__(self, args: TrainArgs, modules: dict, batcher, step_fn: Callable, eval_fn: Callable | None = None,
                 save_fn: Callable | None = None, device: str = "numpy"):
        self.args, self.modules, self.batcher = args, modules, batcher
        self.step_fn, self.eval_fn, self.save_fn, self.device = step_fn, eval_fn, save_fn, device
        self.params, self.grads = merged_parameters(modules)
        opt_cls = BertAdam if args.optimizer == "bertadam" else AdamW
        self.optimizer = opt_cls(self.params, lr=args.lr, weight_decay=args.weight_decay)
        batches_per_epoch = len(batcher)
        if batches_per_epoch == 0:
            raise ValueError("the training data gives no batches (empty data set?)")
        self.total_steps = args.max_steps or max(1, math.ceil(args.epochs * batches_per_epoch / args.grad_accum))
        self.schedule = make_schedule(args.schedule, self.total_steps, int(args.warmup_ratio * self.total_steps))
        self.rngs = []  # every dropout generator, in a fixed order, for exact resume
        for m in modules.values():
            r = getattr(m, "rng", None)
            if r is not None and all(r is not x for x in self.rngs):
                self.rngs.append(r)
        self.world, self.reducer = distributed.world(), None
        if self.world.size > 1:
            self._distribute(batcher)
        self.state = TrainState()
        self.out = Path(args.output_dir)

    def _distribute(self, batcher) -> None:
        """Several processes: check the batch splits, put the gradients in one buffer, seed each process's dropout."""
        w = self.world
        rows = getattr(batcher, "batch_size", self.args.batch_size)
        if rows % w.size:
            raise ValueError(f"batch_size={rows} does not split evenly over {w.size} processes (--batch-size is the "
                             f"global batch of all of them): choose a multiple of {w.size}")
        self.flat_grads = distributed.flatten_gradients(self.modules)  # (n,): one message per step
        self.params, self.grads = merged_parameters(self.modules)  # the gradients are now views of flat_grads
        self.reducer = w.reducer(self.device, distributed.reduction_mode())
        # each process its own dropout masks (rank 0 draws what one process would), from (seed, rank)
        for i, r in enumerate(self.rngs):
            if w.rank > 0:
                r.seed(int(np.random.SeedSequence([self.args.seed, w.rank, i]).generate_state(1)[0]))

    @cached_property
    def data_fingerprint(self) -> str | None:
        """The training data's fingerprint (runfolder.data_fingerprint), recorded with each checkpoint."""
        return data_fingerprint(getattr(self.batcher, "dataset", None))

    # ------------------------------------------------------------------ data
    def _micro_batches(self):
        """Endless (epoch, batch index after this one, batch) from the current position."""
        epoch, k = self.state.epoch, self.state.batch
        while True:
            for batch in self.batcher.iter_epoch(epoch, start_batch=k):
                k += 1
                yield epoch, k, batch
            epoch, k = epoch + 1, 0

    def _to_device(self, batch: dict) -> dict:
        if self.device == "numpy":
            return batch
        return {k: to_device(v, self.device) for k, v in batch.items()}

    # ------------------------------------------------------------------ loop
    def train(self, resume: str | None = None) -> TrainState:
        """Train to `total_steps`, or continue from `resume` ("auto" = the latest checkpoint, if any).

        Holds the output folder's lock throughout. Raises RunFolderError (the folder is in
        use, another run's, full, ...), CheckpointError (no checkpoint to resume verifies),
        TrainingError (a non-finite loss) and, after a SIGINT/SIGTERM and its checkpoint,
        `interrupts.Interrupted`.
        """
        if resume and self.args.overwrite_output_dir:
            raise ValueError("resume and overwrite_output_dir contradict each other: continue the run in "
                             f"{self.out} or start afresh there, not both")
        root = self.world.is_root  # rank 0 alone touches the folder; with one process, always
        if root:
            prepare_folder(self.out)
        with RunLock(self.out) if root else nullcontext(), StopSignals() as stop:
            found = None
            if root:
                remove_stale_temporaries(self.out)
                found = self._start(resume)
                self._check_before_first_step()
            if self.world.size > 1:
                self._join(found)
            for module in self.modules.values():  # dropout on: a model from from_pretrained arrives in eval mode
                if hasattr(module, "train"):  # (the loop itself needs only named_parameters/named_gradients)
                    module.train()
            return self._loop(stop)

    def _join(self, found: tuple[Path, dict] | None) -> None:
        """Several processes: every one starts from rank 0's checkpoint (`found`) and parameters."""
        found = self.world.broadcast(found)
        if found is not None and not self.world.is_root:
            self._restore(*found)  # the files rank 0 verified: the output folder must be readable by every process
        flat = distributed.flatten_parameters(self.params)
        self.reducer.broadcast(flat)
        distributed.unflatten_parameters(flat, self.params)

    def _loop(self, stop: StopSignals) -> TrainState:
        a, st, w = self.args, self.state, self.world
        log_path = self.out / "metrics.jsonl"
        if w.is_root:
            _truncate_log(log_path, st.step)
        batches = self._micro_batches()
        bar = tqdm(total=self.total_steps, initial=st.step, disable=not a.progress or not w.is_root,
                   desc="train" + w.tag, unit="step", dynamic_ncols=True)
        t0, tokens0 = time.perf_counter(), st.tokens
        last_good = self._latest_checkpoint()
        interval, first = {}, st.step + 1  # {loss name: sum over steps first..now}, on the device
        while st.step < self.total_steps:
            zero_grads(self.grads)
            losses = {}  # this step's losses, mean over its micro-batches: 0-d float64 arrays, on the device
            for _ in range(a.grad_accum):
                epoch, k, batch = next(batches)  # the global batch, the same on every process
                st.tokens += int(batch["attention_mask"].sum())  # the host copy of the batch: no sync
                share = shard_batch(batch, w.rank, w.size)  # this process's rows (one process: all)
                part, scale = self._to_device(share.batch), share.rows / a.grad_accum
                if getattr(self.step_fn, "weighs_labelled_tokens", False):
                    out = self.step_fn(part, scale, share.labelled / a.grad_accum)
                else:
                    out = self.step_fn(part, scale)
                for name, v in out.items():
                    losses[name] = losses.get(name, 0.0) + _device_scalar(v) * share.rows / a.grad_accum
            for name, v in losses.items():
                interval[name] = interval.get(name, 0.0) + v  # one NaN/Inf makes the sum NaN/Inf
            st.epoch, st.batch = epoch, k
            if self.reducer is not None:
                self.reducer.sum(self.flat_grads)  # the global batch's gradients, on every process
            if a.max_grad_norm > 0:
                if a.clip == "global":
                    losses["grad_norm"] = clip_grad_norm(self.grads, a.max_grad_norm)  # 0-d, on the device
                else:
                    clip_grad_norm_per_tensor(self.grads, a.max_grad_norm)
            lr = a.lr * self.schedule(st.step)
            self.optimizer.step(self.grads, lr=lr)
            st.step += 1
            bar.update(1)
            last = st.step == self.total_steps  # the final evaluation and checkpoint come after the loop
            log = st.step % a.log_steps == 0 or last
            evaluate = bool(self.eval_fn and a.eval_steps and st.step % a.eval_steps == 0 and not last)
            save = bool(a.save_steps and st.step % a.save_steps == 0 and not last)
            interrupted = w.any(stop.signum is not None) and not last  # a finished run ends normally
            if log or evaluate or save or interrupted:  # the only place the loop reads the device
                self._stop_if_not_finite(interval, first, last_good, bar)
                interval, first = {}, st.step + 1
            if log:
                shared = [name for name in losses if name != "grad_norm"]  # each process's part of the global loss
                values = dict(zip(shared, w.sum([float(losses[name]) for name in shared])))
                if "grad_norm" in losses:
                    values["grad_norm"] = float(losses["grad_norm"])  # of the summed gradients: the same everywhere
                rate = (st.tokens - tokens0) / max(time.perf_counter() - t0, 1e-9)  # all processes' tokens
                record = {"step": st.step, "epoch": epoch, "lr": lr, "tokens": st.tokens,
                          "tokens_per_s": round(rate, 1), **values, "world_size": w.size}
                if w.is_root:
                    _append_jsonl(log_path, record)
                bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}", tok_s=f"{rate:.0f}")
            if evaluate:
                if w.is_root:
                    self._evaluate(log_path)
                w.wait()
            if save or interrupted:
                last_good = self.save_checkpoint(last_good)
            if interrupted:
                bar.close()
                raise Interrupted(stop.signum, st.step, last_good)
        bar.close()
        if self.eval_fn:
            if w.is_root:
                self._evaluate(log_path)
            w.wait()
        self.save_checkpoint(last_good)
        if self.save_fn and w.is_root:
            self.save_fn(self.out)
        if w.size > 1:  # every process returns rank 0's evaluations, once its files are written
            st.history, st.best_metric = w.broadcast((st.history, st.best_metric))
        return st

    def _stop_if_not_finite(self, interval: dict, first: int, last_good: Path | None, bar) -> None:
        """Raise TrainingError if a loss of steps `first`..now was NaN/Inf (reads each sum once)."""
        sums = dict(zip(interval, self.world.sum([float(v) for v in interval.values()])))  # over the processes
        if all(math.isfinite(v) for v in sums.values()):
            return
        bar.close()
        last = self.state.step
        steps = f"at step {last}" if first == last else f"between steps {first} and {last}"
        means = {name: v / (last - first + 1) for name, v in sums.items()}
        raise TrainingError(
            f"loss is not finite {steps} (losses are read from the device only at log, evaluation and "
            f"checkpoint steps; their means over these steps: {means}); stopped without saving. "
            f"Last good checkpoint: {last_good or 'none'}")

    def _evaluate(self, log_path: Path) -> dict:
        metrics = self.eval_fn()
        st, w = self.state, self.world
        st.history.append({"step": st.step, **metrics})
        _append_jsonl(log_path, {"step": st.step, "eval": metrics, "world_size": w.size})
        tqdm.write(f"step {st.step}{w.tag}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        key = self.args.metric_for_best
        if key:
            if key not in metrics:
                raise TrainingError(f"metric_for_best={key!r} is not among the evaluation metrics {sorted(metrics)}")
            if st.best_metric is None or metrics[key] > st.best_metric:
                st.best_metric = float(metrics[key])
                if self.save_fn:
                    self.save_fn(self.out / "best")
        return metrics

    # ------------------------------------------------------- before the first step
    def _start(self, resume: str | None) -> tuple[Path, dict] | None:
        """Restore the checkpoint to resume from (and return it), or make sure a fresh run mixes with no other."""
        previous = self._checkpoints()
        if resume:
            folder, state = self._find_checkpoint(resume)
            if folder is not None:
                self._restore(folder, state)
                return folder, state
        elif previous and not self.args.overwrite_output_dir:
            raise RunFolderError(
                f"the output folder holds the checkpoints of another run ({', '.join(p.name for p in previous)}): "
                f"continue it with --resume auto, or start afresh with --overwrite-output-dir (which deletes them), "
                f"{self.out}")
        elif previous:
            stale = [*previous, self.out / "metrics.jsonl", self.out / "best"]
            for p in stale:
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            note(f"--overwrite-output-dir: deleted the previous run's {', '.join(p.name for p in previous)}, "
                 f"metrics.jsonl and best/ in {self.out}")

    def _check_before_first_step(self) -> None:
        """What would otherwise fail at step 1 or at the first checkpoint: data that does not fit the model, a full disk."""
        dataset = getattr(self.batcher, "dataset", None)
        lengths = getattr(dataset, "lengths", None)
        longest = int(np.max(lengths)) if lengths is not None and len(lengths) else (
            dataset.input_ids.shape[1] if isinstance(getattr(dataset, "input_ids", None), np.ndarray) else 0)
        labels = getattr(dataset, "labels", None)
        for prefix, module in self.modules.items():
            where = type(module).__name__ + (f" {prefix!r}" if prefix else "")
            positions = getattr(getattr(module, "config", None), "max_position_embeddings", None)
            if positions and longest > positions:
                raise ValueError(f"the training data has rows of {longest} tokens but the model has {positions} "
                                 f"position embeddings (max_position_embeddings): lower --max-length or "
                                 f"--max-seq-length, {where}")
            n = getattr(module, "num_labels", None)  # 1: regression, float labels
            if n and n > 1 and isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and len(labels):
                given = labels[labels != IGNORE_INDEX]  # IGNORE_INDEX: a row without a label (read by a teacher only)
                if len(given) and not 0 <= given.min() <= given.max() < n:
                    raise ValueError(f"the training labels run from {given.min()} to {given.max()} but the model "
                                     f"has {n} labels (num_labels), {where}")
        moments = sum(m.nbytes for d in (self.optimizer.exp_avg, self.optimizer.exp_avg_sq) for m in d.values())
        check_free_space(self.out, sum(p.nbytes for p in self.params.values()) + moments, "one checkpoint")

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, last_good: Path | None = None) -> Path:
        """Write checkpoint-<step>/ atomically and keep the newest `save_total_limit` of them.

        A write that fails (a full disk, a read-only folder) or is interrupted leaves no
        partial folder; the failure is a TrainingError naming the cause and `last_good`.
        """
        st, w = self.state, self.world
        final = self.out / f"checkpoint-{st.step}"
        rng_states = w.gather([r.get_state() for r in self.rngs])  # every process's dropout state, on rank 0
        if not w.is_root:
            w.wait()  # while rank 0 writes
            return final
        tmp = self.out / f"{CHECKPOINT_TMP_PREFIX}{st.step}-{os.getpid()}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            save_tensors(tmp / PARAMS_FILE, self.params)
            opt_meta, opt_arrays = self.optimizer.state_dict()
            save_tensors(tmp / OPTIMIZER_FILE, opt_arrays)
            state = {**asdict(st), "optimizer": opt_meta, "rng_states": rng_states[0],
                     "args": asdict(self.args), "total_steps": self.total_steps,
                     "data_fingerprint": self.data_fingerprint, "world_size": w.size}
            if w.size > 1:
                state["rng_states_by_rank"] = rng_states
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, default=_json_default), encoding="utf-8")
            write_checksums(tmp, (PARAMS_FILE, OPTIMIZER_FILE, STATE_FILE))
            _fsync_dir(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)  # atomic: the checkpoint appears whole or not at all
        except BaseException as exc:  # a full disk, or a second Ctrl-C: nothing partial stays
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise TrainingError(f"cannot write {final.name} ({describe_os_error(exc)}); no partial checkpoint "
                                    f"is left; last good checkpoint: {last_good or 'none'}") from exc
            raise
        for old in self._checkpoints()[: -self.args.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
        w.wait()
        return final

    def load_checkpoint(self, folder: Path) -> None:
        """Restore parameters, optimizer, position and RNG states saved by `save_checkpoint`.

        Everything is read and checked before anything changes: a checkpoint that is damaged
        or does not fit this run (other parameter names or shapes, another optimizer) raises
        CheckpointError naming the file (and the tensor or field); one whose settings differ
        (see RESULT_SETTINGS) raises RunFolderError naming them. The model is then unchanged.
        """
        folder = Path(folder)
        self._restore(folder, verify_checkpoint(folder))

    def _restore(self, folder: Path, state: dict) -> None:
        arrays = load_tensors(folder / PARAMS_FILE, {name: p.shape for name, p in self.params.items()})
        moments = load_tensors(folder / OPTIMIZER_FILE)
        if len(state["rng_states"]) != len(self.rngs):
            raise CheckpointError(f"{folder / STATE_FILE}: rng_states holds {len(state['rng_states'])} dropout "
                                  f"generator states, this run has {len(self.rngs)}")
        overrides = self._accept_setting_changes(folder, state)
        try:  # validates names, shapes and dtypes before it copies anything
            self.optimizer.load_state_dict(state["optimizer"], moments)
        except ValueError as exc:
            raise CheckpointError(f"{folder}: the optimizer state ({STATE_FILE} + {OPTIMIZER_FILE}) does not "
                                  f"fit this run: {exc}") from exc
        for name, p in self.params.items():
            p[...] = to_device(arrays[name], device_of(p))
        w, recorded = self.world, state.get("world_size", 1)
        by_rank = state.get("rng_states_by_rank") or [state["rng_states"]]
        if w.rank < len(by_rank):  # a process the checkpoint's run did not have keeps its own generators
            for r, s in zip(self.rngs, by_rank[w.rank]):
                r.set_state(s)
        if recorded != w.size and w.is_root:
            note(f"{folder} was written by {recorded} process{'es' * (recorded > 1)}, this run has {w.size}: it "
                 f"continues from the same global batch (step {state['step']}, epoch {state['epoch']}, batch "
                 f"{state['batch']}), but the processes' dropout masks and the order of the sums differ, so it is "
                 f"not bit-identical to continuing with {recorded}")
        self.state = TrainState(step=state["step"], epoch=state["epoch"], batch=state["batch"],
                                best_metric=state["best_metric"], tokens=state["tokens"], history=state["history"],
                                overrides=[*state.get("overrides", []), *overrides])
        tqdm.write(f"resumed from {folder} at step {self.state.step}{w.tag}")

    def _accept_setting_changes(self, folder: Path, state: dict) -> list[dict]:
        """The recorded settings this run changes, as override records; RunFolderError for those not overridden."""
        recorded, now = state.get("args") or {}, asdict(self.args)
        changes = {k: (recorded[k], now[k]) for k in RESULT_SETTINGS if k in recorded and recorded[k] != now[k]}
        if state["total_steps"] != self.total_steps:
            changes["total_steps"] = (state["total_steps"], self.total_steps)
        fingerprint = state.get("data_fingerprint")
        if fingerprint and self.data_fingerprint and fingerprint != self.data_fingerprint:
            changes["data"] = (f"fingerprint {fingerprint}", f"fingerprint {self.data_fingerprint}")
        listed = "; ".join(f"{k} {old} -> {new}" for k, (old, new) in changes.items())
        allowed = set(self.args.resume_override or ())
        refused = [k for k in changes if not allowed & {k, "all"}]
        if refused:
            raise RunFolderError(
                f"this run's settings differ from the checkpoint's ({listed}), which would change the result: rerun "
                f"with the recorded values, or accept them with --resume-override {' '.join(refused)}, {folder}")
        if changes:
            note(f"resuming {folder} with changed settings (--resume-override): {listed}")
        return [{"step": state["step"], "setting": k, "recorded": old, "now": new} for k, (old, new) in changes.items()]

    def _checkpoints(self) -> list[Path]:
        """checkpoint-<step>/ folders, oldest first (damaged ones included: resume verifies)."""
        if not self.out.is_dir():
            return []
        found = [p for p in self.out.iterdir() if p.is_dir() and CHECKPOINT_NAME.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(CHECKPOINT_NAME.fullmatch(p.name).group(1)))

    def _latest_checkpoint(self) -> Path | None:
        ckpts = self._checkpoints()
        return ckpts[-1] if ckpts else None

    def _find_checkpoint(self, resume: str) -> tuple[Path | None, dict | None]:
        """(folder, its verified trainer_state) to resume from; (None, None) for a fresh start."""
        if resume != "auto":
            path = Path(resume)
            if not (path / STATE_FILE).is_file():
                raise CheckpointError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE})")
            return path, verify_checkpoint(path)
        skipped = []
        for folder in reversed(self._checkpoints()):  # the newest that verifies
            try:
                return folder, verify_checkpoint(folder)
            except CheckpointError as exc:
                skipped.append(str(exc))
                note(f"--resume auto: skipping {folder.name}: {exc}")
        if skipped:
            raise CheckpointError(f"--resume auto: no checkpoint in {self.out} verifies: {'; '.join(skipped)}")
        # none yet: a fresh start, so one command serves a first run, a rerun after a kill,
        # and each stage of a multi-stage run (distill-task, pipeline)
        tqdm.write(f"--resume auto: no checkpoint in {self.out} yet, starting from step 0")
        return None, None


def verify_checkpoint(folder: Path) -> dict:
    """A checkpoint folder's trainer_state.json, once nothing in the folder is damaged.

    Checks trainer_state.json's fields, both tensor files' headers (truncation, lies) and the
    checksums of checksums.sha256. A CheckpointError names the file. A folder without
    checksums.sha256 (written before checksums were recorded) is checked by its headers only.
    """
    state = _read_state(folder / STATE_FILE)
    for name in (PARAMS_FILE, OPTIMIZER_FILE):
        read_header(folder / name)
    problems = checksum_problems(folder)
    if problems is None:
        note(f"{folder} has no checksums.sha256 (written before minibert recorded them): checked by its "
             f"tensor files' headers only")
    elif problems:
        raise CheckpointError("; ".join(problems))
    return state


def _device_scalar(v):
    """A step_fn's loss as a 0-d float64 array of its own array library: no host sync.

    (asanyarray keeps ndarray subclasses, so a test can count the host reads.)"""
    xp = get_array_module(v)
    return xp.asanyarray(v, dtype=xp.float64)


def _read_state(path: Path) -> dict:
    """trainer_state.json, with every field the loader needs; CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the checkpoint is damaged") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: field {missing[0]!r} is missing")
    for key, kind in {"step": int, "epoch": int, "batch": int, "tokens": int, "total_steps": int, "history": list,
                      "optimizer": dict, "rng_states": list}.items():
        value = state[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            expected = "a non-negative integer" if kind is int else f"a JSON {'array' if kind is list else 'object'}"
            raise CheckpointError(f"{path}: field {key!r} must be {expected}, got {str(value)[:40]!r}")
    if state["best_metric"] is not None and not isinstance(state["best_metric"], (int, float)):
        raise CheckpointError(f"{path}: field 'best_metric' must be a number or null, got {state['best_metric']!r}")
    return state


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def _fsync_dir(folder: Path) -> None:
    """Flush the files of a folder to disk before it is renamed into place."""
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=_json_default) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint (they will be written again)."""
    if not path.is_file():
        return
    keep = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            if line.strip() and json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except (json.JSONDecodeError, AttributeError):  # a line cut short by a kill
            note(f"{path}:{i}: not a JSON record (a write cut short?); dropped")
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
