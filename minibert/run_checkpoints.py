"""A training run's checkpoint-<step>/ folders: writing one whole or not at all, verifying one, and the resume policy.

    found = start(out, resume, args)                  # the checkpoint to continue from, or a clean start
    state = restore(found, params, optimizer, rngs, world, args, total_steps, fingerprint)
    last_good = write_checkpoint(out, state, params, optimizer, rngs, world, args, total_steps, fingerprint)

No lost work: `checkpoint-<step>/` holds every trainable array (params.safetensors), the
optimizer moments (optimizer.safetensors), in trainer_state.json the step, the data position
(epoch, batch), the dropout generators' states and the settings and data the run used, the
arrays of the trainer's `extra_state` when it has one (extra.safetensors: the teacher cache,
one part per process), and in checksums.sha256 the sha256 of every one of those files. It is
written to a temporary folder and renamed into place, so a run killed at any moment leaves
either the old or the new checkpoint, never half of one; a resume continues bit-identically.
A checkpoint re-written at the same step is renamed aside first and removed only once the new
one is in place (`_move_into_place`), so its only complete copy is never a temporary.

Nothing silently wrong:
- a fresh run refuses a folder holding another run's checkpoints, or a finished model and no
  checkpoint, unless `overwrite_output_dir` (which deletes them and the run's other outputs:
  RUN_OUTPUTS);
- a resume verifies the checkpoint (trainer_state.json's fields, the tensor files' headers,
  checksums.sha256, which must list every file; only a checkpoint written before checksums
  were recorded, format 1, loads without them, with a note, its dtypes and shapes checked) and
  `resume="auto"` takes the newest one that verifies, naming those it skips; it then compares
  the settings that change the result (TrainArgs' RESULT_SETTINGS and the run's other
  `result=True` settings, settings.result_settings), the planned steps and the training data's
  fingerprint with the recorded ones and refuses, naming each difference, unless
  `resume_override` lists it (the accepted changes are recorded in trainer_state.json).

Several processes: rank 0 writes, holding every process's dropout state and the number of
processes (`world_size`); a resume with the same N continues bit-identically, with another N
from the same global batch, with a note.

Not here: the loop that calls these (`trainer.py`), the folder's lock and guards
(`runfolder.py`), the tensor files' format and header checks (`checkpoint.py`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .backend import device_of, to_device
from .checkpoint import load_tensors, read_header, save_tensors
from .errors import CheckpointError, RunFolderError, TrainingError
from .messages import describe_os_error, note, say
from .textfile import read_json_object
from .runfolder import (CHECKPOINT_OLD_PREFIX, CHECKPOINT_TMP_PREFIX, checksum_problems, fsync_folder,
                        remove_folder, write_checksums)
from .settings import RESULT_SETTINGS, TrainArgs

# A checkpoint-<step>/ folder: file names unchanged since the first release, so old runs resume.
STATE_FILE = "trainer_state.json"
PARAMS_FILE = "params.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
EXTRA_FILE = "extra.safetensors"  # the arrays of the trainer's extra_state (the teacher cache), by rank
# 2: checksums.sha256 is required and lists every file (format 1, before checksums: headers only)
FORMAT = 2
STATE_KEYS = ("step", "epoch", "batch", "best_metric", "tokens", "history", "optimizer", "rng_states", "total_steps")
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


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


# ------------------------------------------------------------------------- finding them


def list_checkpoints(out: Path) -> list[Path]:
    """checkpoint-<step>/ folders, oldest first (damaged ones included: resume verifies)."""
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and CHECKPOINT_NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_NAME.fullmatch(p.name).group(1)))


def latest_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


def find_checkpoint(out: Path, resume: str) -> tuple[Path | None, dict | None]:
    """(folder, its verified trainer_state) to resume from; (None, None) for a fresh start."""
    if resume != "auto":
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise CheckpointError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE})")
        return path, verify_checkpoint(path)
    skipped = []
    for folder in reversed(list_checkpoints(out)):  # the newest that verifies
        try:
            return folder, verify_checkpoint(folder)
        except CheckpointError as exc:
            skipped.append(str(exc))
            note(f"--resume auto: skipping {folder.name}: {exc}")
    if skipped:
        raise CheckpointError(f"--resume auto: no checkpoint in {out} verifies: {'; '.join(skipped)}")
    # none yet: a fresh start, so one command serves a first run, a rerun after a kill,
    # and each stage of a multi-stage run (distill-task, pipeline)
    say(f"--resume auto: no checkpoint in {out} yet, starting from step 0")
    return None, None


# What a finished run leaves beside its checkpoints: the model folder's files and the results.
# A folder holding a model is protected like one holding checkpoints; --overwrite-output-dir
# removes these too, so a new run's folder never mixes with the previous run's model.
RUN_OUTPUTS = ("model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json", "fit_dense.safetensors",
               "results.json", "metrics.jsonl", "best")


def start(out: Path, resume: str | None, overwrite: bool) -> tuple[Path, dict] | None:
    """The checkpoint to resume from (folder, verified state), or None after making sure a fresh run mixes with no
    other run's checkpoints or finished model (deleting them with `overwrite`)."""
    previous = list_checkpoints(out)
    model = [name for name in ("model.safetensors", "config.json") if (out / name).exists()]
    if model and not previous and not overwrite:  # a finished model folder, not a run's: never written over
        raise RunFolderError(
            f"the output folder holds a model ({', '.join(model)}) and no checkpoint to continue: choose another "
            f"--output-dir, or replace the model with --overwrite-output-dir, {out}")
    if resume:
        folder, state = find_checkpoint(out, resume)
        return None if folder is None else (folder, state)
    if previous and not overwrite:
        raise RunFolderError(
            f"the output folder holds the checkpoints of another run ({', '.join(p.name for p in previous)}): "
            f"continue it with --resume auto, or start afresh with --overwrite-output-dir (which deletes them), "
            f"{out}")
    outputs = [out / name for name in RUN_OUTPUTS if (out / name).exists()]
    if overwrite and (previous or outputs):
        for p in [*previous, *outputs]:
            remove_folder(p) if p.is_dir() else p.unlink(missing_ok=True)
        note(f"--overwrite-output-dir: deleted the previous run's {', '.join(p.name for p in [*previous, *outputs])} "
             f"in {out}")
    return None


# ---------------------------------------------------------------------------- verifying


def verify_checkpoint(folder: Path) -> dict:
    """A checkpoint folder's trainer_state.json, once nothing in the folder is damaged.

    Checks trainer_state.json's fields, the tensor files' headers (truncation, lies; weights and
    moments must be floating point) and checksums.sha256, which must list every file of the
    checkpoint with its sha256. A CheckpointError names the file. Only a checkpoint written
    before checksums were recorded (no `format` in trainer_state.json and no checksums.sha256)
    is loaded without them, with a note, checked by its headers (and, on restore, every dtype
    and shape against the run's).
    """
    state = read_state(folder / STATE_FILE)
    names = [PARAMS_FILE, OPTIMIZER_FILE] + ([EXTRA_FILE] if (folder / EXTRA_FILE).exists() else [])
    for name in names:
        infos, _, _ = read_header(folder / name)
        if name != EXTRA_FILE:
            odd = next((k for k, i in infos.items() if i.dtype not in ("F32", "F64", "F16")), None)
            if odd is not None:
                raise CheckpointError(f"{folder / name}: tensor {odd!r} has dtype {infos[odd].dtype}; a checkpoint's "
                                      f"weights and moments are floating point")
    problems = checksum_problems(folder, [*names, STATE_FILE])
    if problems is None:
        if state.get("format", 1) >= FORMAT:
            raise CheckpointError(f"{folder}: checksums.sha256 is missing (every checkpoint since format {FORMAT} "
                                  f"has one): the folder is incomplete or was changed")
        note(f"{folder} has no checksums.sha256 (written before minibert recorded them): checked by its "
             f"tensor files' headers, dtypes and shapes only")
    elif problems:
        raise CheckpointError("; ".join(problems))
    return state


def read_state(path: Path) -> dict:
    """trainer_state.json, with every field the loader needs; CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    state = read_json_object(path, CheckpointError)
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
    for states in [state["rng_states"], *(state.get("rng_states_by_rank") or [])]:
        for s in states if isinstance(states, list) else [states]:
            try:  # what set_state will do, on a scratch generator
                np.random.default_rng(0).bit_generator.state = s
            except (TypeError, ValueError, KeyError, AttributeError):
                raise CheckpointError(f"{path}: field 'rng_states' holds {str(s)[:40]!r}, not a random "
                                      f"generator's state") from None
    names = state["optimizer"].get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: field 'optimizer' must list the parameter 'names', got {str(names)[:40]!r}")
    return state


# ----------------------------------------------------------------------------- restoring


def restore(found: tuple[Path, dict], params: dict, optimizer, rngs: list, world, args: TrainArgs, total_steps: int,
            fingerprint: str | None, settings: dict | None = None, extra_state=None) -> TrainState:
    """Load a verified checkpoint into `params`, `optimizer` and `rngs`; the run's position.

    Everything is read and checked before anything changes: a checkpoint that does not fit this
    run (other parameter names or shapes, another optimizer) raises CheckpointError naming the
    file; one whose settings differ (RESULT_SETTINGS) raises RunFolderError naming them.
    """
    folder, state = found
    arrays = load_tensors(folder / PARAMS_FILE, {name: p.shape for name, p in params.items()})
    for name, p in params.items():  # a legacy checkpoint (no checksums) is trusted no further than this
        if arrays[name].dtype != p.dtype:
            raise CheckpointError(f"{folder / PARAMS_FILE}: tensor {name!r} is {arrays[name].dtype}, this run's "
                                  f"parameter is {p.dtype}")
    moments = load_tensors(folder / OPTIMIZER_FILE)
    if len(state["rng_states"]) != len(rngs):
        raise CheckpointError(f"{folder / STATE_FILE}: rng_states holds {len(state['rng_states'])} dropout "
                              f"generator states, this run has {len(rngs)}")
    overrides = accept_setting_changes(folder, state, args, total_steps, fingerprint, settings)
    extra = load_tensors(folder / EXTRA_FILE) if (folder / EXTRA_FILE).is_file() else {}
    try:  # validates names, shapes and dtypes before it copies anything
        optimizer.load_state_dict(state["optimizer"], moments)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{folder}: the optimizer state ({STATE_FILE} + {OPTIMIZER_FILE}) does not "
                              f"fit this run: {exc}") from exc
    for name, p in params.items():
        p[...] = to_device(arrays[name], device_of(p))
    recorded = state.get("world_size", 1)
    by_rank = state.get("rng_states_by_rank") or [state["rng_states"]]
    if world.rank < len(by_rank):  # a process the checkpoint's run did not have keeps its own generators
        for r, s in zip(rngs, by_rank[world.rank]):
            r.set_state(s)
    if extra_state is not None:  # this process's part (rank<r>/...), as this process wrote it
        prefix = f"rank{world.rank}/"
        extra_state.load_state_arrays({k[len(prefix):]: v for k, v in extra.items() if k.startswith(prefix)})
    if recorded != world.size and world.is_root:
        note(f"{folder} was written by {recorded} process{'es' * (recorded > 1)}, this run has {world.size}: it "
             f"continues from the same global batch (step {state['step']}, epoch {state['epoch']}, batch "
             f"{state['batch']}), but the processes' dropout masks and the order of the sums differ, so it is "
             f"not bit-identical to continuing with {recorded}")
    say(f"resumed from {folder} at step {state['step']}{world.tag}")
    return TrainState(step=state["step"], epoch=state["epoch"], batch=state["batch"], best_metric=state["best_metric"],
                      tokens=state["tokens"], history=state["history"],
                      overrides=[*state.get("overrides", []), *overrides])


def accept_setting_changes(folder: Path, state: dict, args: TrainArgs, total_steps: int,
                           fingerprint: str | None, settings: dict | None = None) -> list[dict]:
    """The recorded settings this run changes, as override records; RunFolderError for those not overridden.

    Compared: TrainArgs' RESULT_SETTINGS and the run's other result settings (`settings`: every
    field marked `result=True` in settings.py, e.g. a distillation's teacher and temperature),
    the planned steps and the data's fingerprint. A setting the checkpoint did not record (an
    older checkpoint) is not compared."""
    recorded, now = state.get("args") or {}, asdict(args)
    changes = {k: (recorded[k], now[k]) for k in RESULT_SETTINGS if k in recorded and recorded[k] != now[k]}
    was_settings = state.get("settings") or {}
    changes.update({k: (was_settings[k], v) for k, v in (settings or {}).items()
                    if k in was_settings and was_settings[k] != v})
    if state["total_steps"] != total_steps:
        changes["total_steps"] = (state["total_steps"], total_steps)
    was = state.get("data_fingerprint")
    if was and fingerprint and was != fingerprint:
        changes["data"] = (f"fingerprint {was}", f"fingerprint {fingerprint}")
    listed = "; ".join(f"{k} {old} -> {new}" for k, (old, new) in changes.items())
    allowed = set(args.resume_override or ())
    refused = [k for k in changes if not allowed & {k, "all"}]
    if refused:
        raise RunFolderError(
            f"this run's settings differ from the checkpoint's ({listed}), which would change the result: rerun "
            f"with the recorded values, or accept them with --resume-override {' '.join(refused)}, {folder}")
    if changes:
        note(f"resuming {folder} with changed settings (--resume-override): {listed}")
    return [{"step": state["step"], "setting": k, "recorded": old, "now": new} for k, (old, new) in changes.items()]


# ------------------------------------------------------------------------------ writing


def write_checkpoint(out: Path, st: TrainState, params: dict, optimizer, rngs: list, world, args: TrainArgs,
                     total_steps: int, fingerprint: str | None, last_good: Path | None = None,
                     settings: dict | None = None, extra_state=None) -> Path:
    """Write checkpoint-<step>/ atomically and keep the newest `args.save_total_limit` of them.

    Every process calls it (rank 0 gathers their dropout states and writes). A write that fails
    (a full disk, a read-only folder) or is interrupted leaves no partial folder; the failure
    is a TrainingError naming the cause and `last_good`.
    """
    final = out / f"checkpoint-{st.step}"
    rng_states = world.gather([r.get_state() for r in rngs])  # every process's dropout state, on rank 0
    extra = world.gather(extra_state.state_arrays() if extra_state is not None else {})
    if not world.is_root:
        world.wait()  # while rank 0 writes
        return final
    tmp = out / f"{CHECKPOINT_TMP_PREFIX}{st.step}-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_tensors(tmp / PARAMS_FILE, params)
        opt_meta, opt_arrays = optimizer.state_dict()
        save_tensors(tmp / OPTIMIZER_FILE, opt_arrays)
        files = [PARAMS_FILE, OPTIMIZER_FILE, STATE_FILE]
        if extra_state is not None:
            save_tensors(tmp / EXTRA_FILE, {f"rank{r}/{k}": v for r, arrays in enumerate(extra)
                                            for k, v in arrays.items()})
            files.append(EXTRA_FILE)
        state = {**asdict(st), "format": FORMAT, "optimizer": opt_meta, "rng_states": rng_states[0],
                 "args": asdict(args), "settings": dict(settings or {}), "total_steps": total_steps,
                 "data_fingerprint": fingerprint, "world_size": world.size}
        if world.size > 1:
            state["rng_states_by_rank"] = rng_states
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, default=json_default), encoding="utf-8")
        write_checksums(tmp, files)
        _fsync_dir(tmp)
        _move_into_place(tmp, final)
    except BaseException as exc:  # a full disk, or a second Ctrl-C: nothing partial stays
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise TrainingError(f"cannot write {final.name} ({describe_os_error(exc)}); no partial checkpoint "
                                f"is left; last good checkpoint: {last_good or 'none'}") from exc
        raise
    for old in list_checkpoints(out)[: -args.save_total_limit]:
        remove_folder(old)  # renamed aside first: a kill midway leaves no half checkpoint
    world.wait()
    return final


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the complete folder `tmp` to `final`, atomically.

    A checkpoint of the same step may already be there (a finished stage resumed re-saves it
    with its final evaluation): it is first renamed aside to `.minibert-old-checkpoint-<step>`
    and removed only once the new one is in place. A kill in between leaves that complete
    copy under a name the next start puts back (runfolder.remove_stale_temporaries), never a
    temporary as the only copy."""
    old = None
    if final.exists():
        old = final.with_name(f"{CHECKPOINT_OLD_PREFIX}{final.name[len('checkpoint-'):]}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)  # atomic: the checkpoint appears whole or not at all
    fsync_folder(final.parent)  # the rename itself reaches the disk
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def json_default(o):
    """NumPy scalars as JSON numbers (in trainer_state.json and metrics.jsonl)."""
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def _fsync_dir(folder: Path) -> None:
    """Flush the files of a folder to disk before it is renamed into place."""
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
