"""Random kills and signals against real training commands, each followed by `--resume auto`,
checked bit for bit against an uninterrupted run: the probe behind docs/reliability.md.

    python bench/fault_injection.py --trials 20                       # finetune, distill-task, pipeline
    python bench/fault_injection.py --command finetune --trials 5 --seed 1 --json faults.json

For each command, one uninterrupted reference run first (its wall time T bounds the fault's
moment), then N trials. A trial starts the command, waits a random time (uniform between 0.2 T
and 0.85 T: the first 20% is mostly Python's start-up and data loading, which a fault cannot
damage, and on a busy machine the reference may run slower than a trial, which then ends
before its fault; in between: inside a step, a checkpoint write, an evaluation, between
stages, the benchmark), sends one random fault, then reruns the command with `--resume auto`
until it exits 0. A trial that exits 0 before its fault is counted apart:

    kill      SIGKILL: no handler runs (a crash, the out-of-memory killer)
    term      SIGTERM: a scheduler's pre-emption; expected exit 143 with a checkpoint
    int       SIGINT (Ctrl-C); expected exit 130
    term2     SIGTERM twice, 50 ms apart: stops at once, no checkpoint; expected exit 143

Counted per trial:
- inexact: a final tensor differs from the reference's (every stage's last checkpoint's
  params.safetensors and every model.safetensors, by relative path);
- lost checkpoint: the newest checkpoint that verified before the fault (per stage folder) is
  gone after it without a newer verified one, or a folder's checkpoints stop verifying;
- a wrong exit code: a signal that did not end in 128 + its number (or 0, when the run had
  finished before the fault arrived).

The commands, at toy size (tiny models, 64-200 examples, batch 8, a checkpoint every 4 steps):
finetune (40 steps); distill-task (8 intermediate + 40 prediction steps from a tiny teacher,
the teacher cache on: several epochs, so a resume needs the cached rows); pipeline (the MiniLM-L6
teacher fine-tuned 8 steps, then 24 prediction steps into tiny-3, the latency benchmark). Each run uses
MINIBERT_NUM_THREADS=1, so repeated runs are bit-identical. Runs go to --out (default: a
temporary folder, removed afterwards).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from safetensors.numpy import load_file  # noqa: E402

from minibert.errors import CheckpointError  # noqa: E402
from minibert.run_checkpoints import list_checkpoints, verify_checkpoint  # noqa: E402

SMALL = ["--task", "sst-2", "--max-length", "24", "--max-eval-examples", "16", "--batch-size", "8",
         "--save-steps", "4", "--log-steps", "4", "--progress", "false"]
FAULTS = ("kill", "term", "int", "term2")
EXPECTED_EXIT = {"kill": -9, "term": 143, "int": 130, "term2": 143}


def command(name: str, out: Path, teacher: Path) -> list[str]:
    base = [sys.executable, "-m", "minibert.train"]
    if name == "finetune":
        return base + ["finetune", "--model", "tiny", *SMALL, "--max-train-examples", "200", "--max-steps", "40",
                       "--eval-steps", "20", "--lr", "1e-3", "--output-dir", str(out)]
    if name == "distill-task":
        return base + ["distill-task", *SMALL, "--max-train-examples", "64", "--teacher", str(teacher), "--student",
                       "tiny", "--inter-steps", "8", "--pred-steps", "40", "--eval-steps", "20",
                       "--output-dir", str(out)]
    if name == "pipeline":
        return base + ["pipeline", *SMALL, "--max-train-examples", "64", "--teacher-epochs", "1", "--student", "tiny-3",
                       "--pred-steps", "24", "--eval-steps", "12", "--output-dir", str(out)]
    raise ValueError(name)


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "MINIBERT_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def run(cmd: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=timeout)


def stage_folders(out: Path) -> list[Path]:
    """The folders holding checkpoints: the output folder, or each stage's under it."""
    return [p for p in [out, *sorted(out.glob("*"))] if p.is_dir() and list_checkpoints(p)]


def newest_verified(folder: Path) -> int | None:
    """The step of the newest checkpoint in `folder` that verifies (None: none does)."""
    for ckpt in reversed(list_checkpoints(folder)):
        try:
            verify_checkpoint(ckpt)
            return int(ckpt.name.split("-")[1])
        except CheckpointError:
            continue
    return None


def final_tensors(out: Path) -> dict[str, dict]:
    """{relative path: tensors} of every stage's last checkpoint's params and every model.safetensors."""
    found = {}
    for folder in stage_folders(out):
        last = list_checkpoints(folder)[-1]
        found[str(last.relative_to(out) / "params.safetensors")] = load_file(str(last / "params.safetensors"))
    for model in sorted(out.rglob("model.safetensors")):
        found[str(model.relative_to(out))] = load_file(str(model))
    return found


def differs(a: dict, b: dict) -> list[str]:
    """The files (and tensors) where two final_tensors() differ."""
    bad = [f"{path}: missing" for path in sorted(set(a) ^ set(b))]
    for path in sorted(set(a) & set(b)):
        names = [k for k in a[path] if k not in b[path] or not np.array_equal(a[path][k], b[path][k])]
        if names or a[path].keys() != b[path].keys():
            bad.append(f"{path}: {len(names)} of {len(a[path])} tensors")
    return bad


def trial(name: str, out: Path, teacher: Path, reference: dict, wall: float, rng: random.Random) -> dict:
    fault, delay = rng.choice(FAULTS), rng.uniform(0.2 * wall, 0.85 * wall)
    cmd = command(name, out, teacher)
    proc = subprocess.Popen(cmd, cwd=REPO, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    before = {str(f): newest_verified(f) for f in stage_folders(out)} if proc.poll() is None else {}
    if proc.poll() is None:
        if fault == "kill":
            proc.send_signal(signal.SIGKILL)
        elif fault == "int":
            proc.send_signal(signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
            if fault == "term2":
                time.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=1800)
    # exit 0: the run ended before the fault reached it (a live process ends 128 + the signal, even when the
    # signal comes after its last check; SIGKILL ends it -9), so the signal went to an exited process
    finished_first = proc.returncode == 0
    record = {"fault": fault, "delay_s": round(delay, 2), "exit": proc.returncode, "resumes": 0,
              "finished_before_the_fault": finished_first}
    record["exit_ok"] = proc.returncode in (EXPECTED_EXIT[fault], 0)
    if not record["exit_ok"]:
        record["stderr"] = err[-1500:]
    after = {str(f): newest_verified(f) for f in stage_folders(out)}
    record["lost_checkpoint"] = any(step is not None and (after.get(folder) is None or after[folder] < step)
                                    for folder, step in before.items())
    code = proc.returncode
    while code != 0 and record["resumes"] < 3:
        done = run(cmd + ["--resume", "auto"])
        record["resumes"] += 1
        code = done.returncode
        if code != 0:
            record["resume_stderr"] = done.stderr[-1500:]
    record["completed"] = code == 0
    record["inexact"] = differs(reference, final_tensors(out)) if code == 0 else ["did not complete"]
    return record


def make_teacher(root: Path) -> Path:
    teacher = root / "teacher"
    done = run([sys.executable, "-m", "minibert.train", "finetune", "--model", "tiny", *SMALL, "--max-train-examples",
                "32", "--max-steps", "2", "--output-dir", str(teacher), "--overwrite-output-dir"])
    if done.returncode != 0:
        raise SystemExit(f"could not make the tiny teacher: {done.stderr[-2000:]}")
    return teacher


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--command", action="append", choices=("finetune", "distill-task", "pipeline"),
                        help="the command(s) to probe (default: all three)")
    parser.add_argument("--trials", type=int, default=20, help="trials per command")
    parser.add_argument("--seed", type=int, default=0, help="seed of the faults and their moments")
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary one, removed)")
    parser.add_argument("--json", default=None, help="write every trial's record here")
    a = parser.parse_args(argv)
    root = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="minibert-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    summary = {}
    try:
        teacher = make_teacher(root)
        for name in a.command or ["finetune", "distill-task", "pipeline"]:
            ref_out = root / name / "reference"
            shutil.rmtree(ref_out, ignore_errors=True)
            t0 = time.perf_counter()
            done = run(command(name, ref_out, teacher))
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                raise SystemExit(f"{name}: the reference run failed: {done.stderr[-2000:]}")
            reference = final_tensors(ref_out)
            print(f"{name}: reference run {wall:.1f} s, {len(reference)} final tensor files", flush=True)
            records = []
            for i in range(a.trials):
                out = root / name / f"trial-{i}"
                shutil.rmtree(out, ignore_errors=True)
                r = trial(name, out, teacher, reference, wall, rng)
                records.append(r)
                print(f"  trial {i:2d}: {r['fault']:5s} at {r['delay_s']:5.1f} s -> exit {r['exit']}, "
                      f"{r['resumes']} resume(s), {'exact' if not r['inexact'] else 'INEXACT ' + str(r['inexact'])}"
                      f"{', LOST CHECKPOINT' if r['lost_checkpoint'] else ''}"
                      f"{'' if r['exit_ok'] else ', UNEXPECTED EXIT'}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
            summary[name] = {
                "trials": len(records), "faults": {f: sum(r["fault"] == f for r in records) for f in FAULTS},
                "finished_before_the_fault": sum(r["finished_before_the_fault"] for r in records),
                "inexact": sum(bool(r["inexact"]) for r in records),
                "lost_checkpoints": sum(r["lost_checkpoint"] for r in records),
                "unexpected_exits": sum(not r["exit_ok"] for r in records), "reference_wall_s": round(wall, 1),
                "records": records}
            s = summary[name]
            print(f"{name}: {s['trials']} trials ({s['faults']}; {s['finished_before_the_fault']} finished before "
                  f"the fault): {s['inexact']} inexact resumes, {s['lost_checkpoints']} lost checkpoints, "
                  f"{s['unexpected_exits']} unexpected exit codes", flush=True)
    finally:
        if a.json:
            Path(a.json).write_text(json.dumps(summary, indent=1))
        if not a.out:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
