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

Checkpoints: every `save_steps`, at the end and on SIGINT/SIGTERM, `checkpoint-<step>/` holds
everything to continue bit-identically, written whole or not at all; a resume verifies it and
refuses changed settings (`run_checkpoints.py`, where the policy is). Before the loop: the
output folder is locked for the run's life and stale temporaries removed (`runfolder.py`);
the longest training row is checked against the model's position embeddings, the labels
against its classifier, and free disk space for a checkpoint. SIGINT/SIGTERM finish the step,
write a checkpoint and raise `interrupts.Interrupted`; the stop request is the command's
(interrupts.py), so a trainer that starts after it stops before its first step, and one that
comes during an evaluation stops it between batches, after which the checkpoint of that step
is written. The final checkpoint is written before the final evaluation (and again after it,
with its record); a resume runs an evaluation a signal stopped (`_due_evaluation`), and a
finished run resumed re-saves nothing. A resume also compares the run's other result settings
(`settings`, e.g. a distillation's teacher and temperature) and restores its `extra_state`
(the teacher cache) from the checkpoint.

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
read steps, and a stop signal reaching any process stops all of them at the same step (one
collective per step: `World.first_signal`).

Not here: the checkpoint folders and the resume policy (`run_checkpoints.py`), the settings
(`settings.TrainArgs`), the optimizer's maths (`optim.py`), and what a step computes (each
step function lives with its task: `classification_step` in finetune.py, `pretraining_step`
in pretrain.py, `distill_step` in distillation.py).
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm  # plain text bars: in notebooks too, without ipywidgets

from . import distributed
from . import run_checkpoints as ckpt
from .backend import get_array_module, to_device
from .data.batching import shard_batch
from .errors import DataError, TrainingError  # noqa: F401 (TrainingError: trainer.TrainingError)
from .functional import IGNORE_INDEX
from .interrupts import Interrupted, StopRequested, StopSignals
from .messages import note, say
from .optim import AdamW, BertAdam, clip_grad_norm, clip_grad_norm_per_tensor, make_schedule, zero_grads
from .run_checkpoints import TrainState, verify_checkpoint  # noqa: F401 (trainer.TrainState, as before)
from .runfolder import RunLock, check_free_space, data_fingerprint, prepare_folder, remove_stale_temporaries
from .settings import TrainArgs  # noqa: F401 (trainer.TrainArgs, as before)


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
                 save_fn: Callable | None = None, device: str = "numpy", settings: dict | None = None,
                 extra_state=None):
        self.args, self.modules, self.batcher = args, modules, batcher
        self.step_fn, self.eval_fn, self.save_fn, self.device = step_fn, eval_fn, save_fn, device
        # settings: the run's other settings that change what it computes ({name: value}, e.g. the
        # distillation's teacher and temperature: settings.result_settings), compared on resume as
        # TrainArgs' are; extra_state: an object whose arrays a checkpoint must keep for an exact
        # resume (state_arrays() / load_state_arrays(arrays): the teacher cache)
        self.settings, self.extra_state = dict(settings or {}), extra_state
        self.params, self.grads = merged_parameters(modules)
        opt_cls = BertAdam if args.optimizer == "bertadam" else AdamW
        self.optimizer = opt_cls(self.params, lr=args.lr, weight_decay=args.weight_decay)
        batches_per_epoch = len(batcher)
        if batches_per_epoch == 0:
            raise DataError("the training data gives no batches (empty data set?)")
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
        self._on_disk = None  # the step whose checkpoint on disk holds the current state (nothing to re-save)

    def _distribute(self, batcher) -> None:
        """Several processes: check the batch splits, put the gradients in one buffer, seed each process's dropout."""
        w = self.world
        rows = getattr(batcher, "batch_size", self.args.batch_size)
        if rows % w.size:
            raise DataError(f"batch_size={rows} does not split evenly over {w.size} processes (--batch-size is the "
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
            raise DataError("resume and overwrite_output_dir contradict each other: continue the run in "
                            f"{self.out} or start afresh there, not both")
        root = self.world.is_root  # rank 0 alone touches the folder; with one process, always
        if root:
            prepare_folder(self.out)
        with RunLock(self.out) if root else nullcontext(), StopSignals() as stop:
            found = None
            if root:
                remove_stale_temporaries(self.out)
                found = ckpt.start(self.out, resume, self.args.overwrite_output_dir)
                if found is not None:
                    self._restore(found)
                check_before_first_step(self.batcher, self.modules, self.params, self.optimizer, self.out)
            if self.world.size > 1:
                self._join(found)
            for module in self.modules.values():  # dropout on: a model from from_pretrained arrives in eval mode
                if hasattr(module, "train"):  # (the loop itself needs only named_parameters/named_gradients)
                    module.train()
            return self._loop(stop)

    def _restore(self, found: tuple[Path, dict]) -> None:
        self.state = ckpt.restore(found, self.params, self.optimizer, self.rngs, self.world, self.args,
                                  self.total_steps, self.data_fingerprint, self.settings, self.extra_state)
        # the checkpoint holds this state, unless the resume accepted changed settings (recorded at the next save)
        self._on_disk = self.state.step if len(self.state.overrides) == len(found[1].get("overrides", [])) else None

    def _save(self, last_good: Path | None) -> Path:
        path = ckpt.write_checkpoint(self.out, self.state, self.params, self.optimizer, self.rngs, self.world,
                                     self.args, self.total_steps, self.data_fingerprint, last_good, self.settings,
                                     self.extra_state)
        self._on_disk = self.state.step
        return path

    def _stop_signal(self, stop: StopSignals) -> int | None:
        """The command's stop signal, shared by every process (one collective): the same answer everywhere.

        A signal whose handler runs while the collective is under way (a rank waiting for the
        others spends most of its time there) is not in the answer: it stays in `stop.signum`
        for the next collective. Assigning the answer over it would lose it, and the run would
        never stop; stopping on it now would leave the other processes a collective behind."""
        shared = self.world.first_signal(stop.signum)
        if shared is not None:
            stop.signum = shared
        return shared

    def _due_evaluation(self) -> bool:
        """An evaluation belongs at this step (every eval_steps, and the last) and is not in the history yet:
        after a resume from a checkpoint written while it ran (a signal stopped it), it runs first."""
        st, a = self.state, self.args
        due = st.step == self.total_steps or (a.eval_steps and st.step % a.eval_steps == 0)
        due = bool(self.eval_fn and st.step > 0 and due and not any(h.get("step") == st.step for h in st.history))
        return self.world.broadcast(due)  # rank 0's history decides: only it records evaluations

    def _join(self, found: tuple[Path, dict] | None) -> None:
        """Several processes: every one starts from rank 0's checkpoint (`found`) and parameters."""
        found = self.world.broadcast(found)
        if found is not None and not self.world.is_root:
            self._restore(found)  # the files rank 0 verified: the output folder must be readable by every process
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
        last_good = ckpt.latest_checkpoint(self.out)
        interval, first = {}, st.step + 1  # {loss name: sum over steps first..now}, on the device
        self.stopped_early = self._patience_exhausted()  # a resumed run that had already stopped early stays stopped
        if self._stop_signal(stop):  # the command was asked to stop before this stage began
            bar.close()
            raise Interrupted(stop.signum, st.step, last_good)
        if st.step < self.total_steps and not self.stopped_early and self._due_evaluation():
            self._evaluate_or_stop(log_path, stop, bar, last_good)  # resumed where a signal stopped an evaluation
            self.stopped_early = w.broadcast(self._patience_exhausted())
        while st.step < self.total_steps and not self.stopped_early:
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
            interrupted = self._stop_signal(stop) is not None  # one collective: a signal to any process
            if log or evaluate or save or interrupted:  # the only place the loop reads the device
                self._stop_if_not_finite(interval, first, last_good, bar)
                interval, first = {}, st.step + 1
            if log:
                self._log(log_path, bar, losses, lr, epoch, (st.tokens - tokens0) / max(time.perf_counter() - t0, 1e-9))
            if interrupted:  # before an evaluation: the checkpoint comes first (a scheduler's grace is short)
                last_good = self._save(last_good)
                bar.close()
                raise Interrupted(stop.signum, st.step, last_good)
            if evaluate:
                self._evaluate_or_stop(log_path, stop, bar, last_good)
                self.stopped_early = w.broadcast(self._patience_exhausted())
                if self.stopped_early:
                    say(f"early stopping at step {st.step}: {a.early_stopping_patience} evaluations without a better "
                        f"{a.metric_for_best} (best {st.best_metric:.4f}; --early-stopping-patience)")
            if save:
                last_good = self._save(last_good)
        bar.close()
        if not self.stopped_early and self._due_evaluation():  # the final one (an early stop has just evaluated)
            if self._on_disk != st.step:  # the trained weights are saved before a long evaluation
                last_good = self._save(last_good)
            self._evaluate_or_stop(log_path, stop, None, last_good)
        if self._on_disk != st.step:  # (a finished run resumed has nothing new to save)
            last_good = self._save(last_good)
        if self._stop_signal(stop):  # a signal during the final checkpoint: stop before the model folder
            raise Interrupted(stop.signum, st.step, last_good)
        if self.save_fn and w.is_root:
            self.save_fn(self.out)
        if w.size > 1:  # every process returns rank 0's evaluations, once its files are written
            st.history, st.best_metric = w.broadcast((st.history, st.best_metric))
        return st

    def _patience_exhausted(self) -> bool:
        """True when the last `early_stopping_patience` evaluations (of the history, which a checkpoint keeps:
        a resume decides alike) did not beat the best before them on metric_for_best."""
        patience, key = self.args.early_stopping_patience, self.args.metric_for_best
        scores = [h[key] for h in self.state.history if key in h]
        if not patience or not key or len(scores) <= patience:
            return False
        return max(scores[-patience:]) <= max(scores[:-patience])

    def _log(self, log_path: Path, bar, losses: dict, lr: float, epoch: int, rate: float) -> None:
        """A metrics.jsonl line and the bar's numbers: this step's losses (summed over the processes), lr, tokens."""
        st, w = self.state, self.world
        shared = [name for name in losses if name != "grad_norm"]  # each process's part of the global loss
        values = dict(zip(shared, w.sum([float(losses[name]) for name in shared])))
        if "grad_norm" in losses:
            values["grad_norm"] = float(losses["grad_norm"])  # of the summed gradients: the same everywhere
        record = {"step": st.step, "epoch": epoch, "lr": lr, "tokens": st.tokens, "tokens_per_s": round(rate, 1),
                  **values, "world_size": w.size}  # rate: all processes' tokens per second since the loop began
        if w.is_root:
            _append_jsonl(log_path, record)
        bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}", tok_s=f"{rate:.0f}")

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

    def _evaluate_or_stop(self, log_path: Path, stop: StopSignals, bar, last_good: Path | None) -> None:
        """Evaluate at this step; a stop request during it (to any process) writes the checkpoint of this step,
        without the evaluation (a resume runs it first: `_due_evaluation`), and raises Interrupted."""
        if self.world.broadcast(self._evaluate_on_root(log_path)):  # recorded: the checkpoint on disk lacks it
            self._on_disk = None
        if self._stop_signal(stop):
            if self._on_disk != self.state.step:
                last_good = self._save(last_good)
            if bar is not None:
                bar.close()
            raise Interrupted(stop.signum, self.state.step, last_good)

    def _evaluate_on_root(self, log_path: Path) -> bool:
        """Rank 0 evaluates (on the whole evaluation set), logs and keeps the best model; the others wait.

        A stop request during the evaluation (interrupts.check, between its batches) leaves it
        unrecorded: the caller writes the checkpoint."""
        if self.world.is_root:
            try:
                metrics = self.eval_fn()
            except StopRequested:
                self.world.wait()
                return False
            st, w = self.state, self.world
            st.history.append({"step": st.step, **metrics})
            _append_jsonl(log_path, {"step": st.step, "eval": metrics, "world_size": w.size})
            say(f"step {st.step}{w.tag}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            key = self.args.metric_for_best
            if key:
                if key not in metrics:
                    raise TrainingError(f"metric_for_best={key!r} is not among the evaluation metrics "
                                        f"{sorted(metrics)}")
                if st.best_metric is None or metrics[key] > st.best_metric:
                    st.best_metric = float(metrics[key])
                    if self.save_fn:
                        self.save_fn(self.out / "best")
        self.world.wait()
        return self.world.is_root


def check_before_first_step(batcher, modules: dict, params: dict, optimizer, out: Path) -> None:
    """What would otherwise fail at step 1 or at the first checkpoint: data that does not fit the model, a full disk."""
    dataset = getattr(batcher, "dataset", None)
    lengths = getattr(dataset, "lengths", None)
    longest = int(np.max(lengths)) if lengths is not None and len(lengths) else (
        dataset.input_ids.shape[1] if isinstance(getattr(dataset, "input_ids", None), np.ndarray) else 0)
    labels = getattr(dataset, "labels", None)
    for prefix, module in modules.items():
        where = type(module).__name__ + (f" {prefix!r}" if prefix else "")
        positions = getattr(getattr(module, "config", None), "max_position_embeddings", None)
        if positions and longest > positions:
            raise DataError(f"the training data has rows of {longest} tokens but the model has {positions} "
                            f"position embeddings (max_position_embeddings): lower --max-length or "
                            f"--max-seq-length, {where}")
        n = getattr(module, "num_labels", None)  # 1: regression, float labels
        if n and n > 1 and isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and len(labels):
            given = labels[labels != IGNORE_INDEX]  # IGNORE_INDEX: a row without a label (read by a teacher only)
            if len(given) and not 0 <= given.min() <= given.max() < n:
                raise DataError(f"the training labels run from {given.min()} to {given.max()} but the model "
                                f"has {n} labels (num_labels), {where}")
    moments = sum(m.nbytes for d in (optimizer.exp_avg, optimizer.exp_avg_sq) for m in d.values())
    check_free_space(out, sum(p.nbytes for p in params.values()) + moments, "one checkpoint")


def _device_scalar(v):
    """A step_fn's loss as a 0-d float64 array of its own array library: no host sync.

    (asanyarray keeps ndarray subclasses, so a test can count the host reads.)"""
    xp = get_array_module(v)
    return xp.asanyarray(v, dtype=xp.float64)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=ckpt.json_default) + "\n")


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
