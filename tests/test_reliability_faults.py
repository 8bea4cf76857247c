"""Nothing lost, round two (issue 28): one test per case a fault run found, with tiny models.

Signals under MPI and between stages, exact distillation resume, checkpoints that cannot lie,
settings that cannot sneak in on resume or across processes, hostile files and flags. Kills,
MPI and signals to another process run the real command line in subprocesses; signals a run
sends itself at a chosen moment (deterministic) and validation run in process."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from minibert import BertConfig, BertForSequenceClassification, runfolder
from minibert import data as D
from minibert import interrupts
from minibert.checkpoint import CheckpointError
from minibert.errors import DataError, RunFolderError, UsageError
from minibert.finetune import classification_step, finetune
from minibert.flags import from_args
from minibert.interrupts import Interrupted
from minibert.run_checkpoints import latest_checkpoint, verify_checkpoint
from minibert.settings import ModelSettings, TaskDataSettings, TaskDistillSettings, TrainArgs
from minibert.train import main, parse_args
from minibert.trainer import Trainer

from conftest import wait_for

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0", "MINIBERT_NUM_THREADS": "1"}
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
SMALL = ["--task", "sst-2", "--max-length", "24", "--max-eval-examples", "16", "--batch-size", "8", "--progress",
         "false"]


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def sst2(data_dir, tok):
    rows = D.read_glue("sst-2", data_dir / "SST-2" / "train.tsv")[:64]
    return D.encode_examples(rows, tok, 24)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_dir):
    """A tiny SST-2 classifier, fine-tuned 2 steps: the teacher of the distillation cases."""
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    finetune(ModelSettings("tiny"), TaskDataSettings(task="sst-2", max_train_examples=32, max_eval_examples=8,
                                                     max_length=24),
             TrainArgs(output_dir=str(out), max_steps=2, batch_size=8, progress=False))
    return out


def distill_cli(teacher: Path, out: Path, *extra) -> list[str]:
    """distill-task on 64 examples (8 batches an epoch): several epochs, so the teacher cache serves rows."""
    return [sys.executable, "-m", "minibert.train", "distill-task", *SMALL, "--max-train-examples", "64",
            "--teacher", str(teacher), "--student", "tiny", "--save-steps", "4", "--log-steps", "4",
            "--eval-steps", "0", "--output-dir", str(out), *extra]


def finetune_cli(out: Path, *extra, steps=40) -> list[str]:
    return [sys.executable, "-m", "minibert.train", "finetune", "--model", "tiny", *SMALL, "--max-train-examples",
            "200", "--max-steps", str(steps), "--save-steps", "4", "--log-steps", "4", "--eval-steps", "0",
            "--lr", "1e-3", "--output-dir", str(out), *extra]


def classifier(tok, seed=0):
    return BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=len(tok)), num_labels=2, seed=seed)


def trainer(out, tok, data, steps=4, eval_fn=None, save_fn=None, **args):
    model = classifier(tok)
    args = TrainArgs(**{"output_dir": str(out), "max_steps": steps, "save_steps": 2, "lr": 1e-3, "batch_size": 8,
                        "progress": False, **args})
    return model, Trainer(args, {"": model}, D.Batcher(data, 8, seed=0), classification_step(model), eval_fn, save_fn)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def exit_code_of(argv, capsys) -> tuple[int, str]:
    """main(argv) in this process: (its exit code, its stderr)."""
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def mpiexec() -> str:
    if MPIEXEC is None:
        pytest.fail(f"mpiexec not found next to {sys.executable}: pip install -e '.[mpi]' (mpi4py and mpich)")
    return MPIEXEC


def rank_pid(marker: str, rank: int) -> int | None:
    """The pid of the MPI process of `rank` whose command line holds `marker` (from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and "minibert.train" in cmdline and f"PMI_RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


# ------------------------------------------------- 1. SIGTERM to one rank under MPI


def test_1_sigterm_to_one_mpi_rank_stops_every_rank_at_one_step_with_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [mpiexec(), "-n", "2", *finetune_cli(out, "--log-steps", "1", steps=100000)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 2,
             proc, "two logged steps")
    pid = rank_pid(str(out), 1)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # a scheduler signalling one process, not mpiexec
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    assert "TypeError" not in err and "Traceback" not in err
    [folder] = out.glob("checkpoint-*")
    state = verify_checkpoint(folder)
    assert f"interrupted by SIGTERM at step {state['step']}" in err and state["world_size"] == 2


def test_1_a_signal_handled_during_the_step_collective_stops_the_run_at_the_next_step(tok, sst2, tmp_path,
                                                                                   monkeypatch):
    """Found by a stress run: SIGTERM to rank 1 under load was lost, and the run never stopped. The
    handler ran while rank 1 waited in the collective that shares the stop signal, and the
    collective's answer (no signal yet) was assigned over the one the handler had just set."""
    out = tmp_path / "run"
    _, t = trainer(out, tok, sst2, steps=8)
    collectives, landed = [], []

    def signalled_during_the_collective(signum):
        collectives.append(signum)
        if t.state.step == 2 and not landed:  # after step 2: the signal lands while the answers are gathered
            landed.append(1)
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before this returns
        return signum  # the answer gathered before it: no signal

    monkeypatch.setattr(t.world, "first_signal", signalled_during_the_collective)
    with pytest.raises(Interrupted) as info:
        t.train()
    assert info.value.exit_code == 143 and info.value.step == 3  # the next step's collective carries it
    assert collectives[-2:] == [None, signal.SIGTERM]
    verify_checkpoint(out / "checkpoint-3")


# ------------------------------------- 2. a stop request lives for the whole command


def test_2_sigterm_between_stages_stops_before_the_next_stage_and_the_benchmark(teacher, tmp_path, capsys,
                                                                               monkeypatch):
    from minibert import distillation

    out = tmp_path / "run"
    argv = distill_cli(teacher, out, "--inter-steps", "4", "--pred-steps", "4")[3:]
    saved = distillation.save_student

    def save_then_signal(folder, *args):  # the intermediate stage's last act: the signal comes between stages
        saved(folder, *args)
        if Path(folder).parent.name == "run" and Path(folder).name == "intermediate":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(distillation, "save_student", save_then_signal)
    code, err = exit_code_of(argv, capsys)
    assert code == 143, err
    assert "interrupted by SIGTERM at step 0" in err  # the prediction stage stopped before its first step
    assert not list((out / "prediction").glob("checkpoint-*")) and not (out / "results.json").exists()
    monkeypatch.setattr(distillation, "save_student", saved)
    code, err = exit_code_of(argv + ["--resume", "auto"], capsys)  # and the run continues where it stopped
    assert code == 0, err
    assert (out / "results.json").is_file()


def test_2_sigterm_during_the_latency_benchmark_stops_it(teacher, tmp_path, capsys, monkeypatch):
    from minibert import report

    out = tmp_path / "run"
    measure = report.measure_latency
    calls = []

    def measure_then_signal(*args, **kw):
        calls.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
        return measure(*args, **kw)

    monkeypatch.setattr(report, "measure_latency", measure_then_signal)
    code, err = exit_code_of(distill_cli(teacher, out, "--pred-steps", "4")[3:], capsys)
    assert code == 143 and "stopped by SIGTERM during the latency benchmark" in err, err
    assert len(calls) == 1 and not (out / "results.json").exists()


# ---------------------------- 3. SIGTERM during the final evaluation: saved first


def test_3_sigterm_during_the_final_evaluation_saves_before_it_and_resume_evaluates_once(tok, sst2, tmp_path):
    out = tmp_path / "run"
    evaluations = []

    def eval_fn():
        evaluations.append(1)
        if len(evaluations) == 1:  # the final evaluation: a signal between two of its batches
            os.kill(os.getpid(), signal.SIGTERM)
            interrupts.check("an evaluation")
        return {"acc": 0.5}

    model, t = trainer(out, tok, sst2, steps=3, eval_fn=eval_fn)
    with pytest.raises(Interrupted) as info:
        t.train()
    assert info.value.exit_code == 143 and info.value.step == 3
    state = verify_checkpoint(out / "checkpoint-3")  # the trained weights, written before the evaluation
    assert state["history"] == []
    _, t = trainer(out, tok, sst2, steps=3, eval_fn=eval_fn)
    t.train(resume="auto")  # the evaluation runs once, then the model is saved
    _, t = trainer(out, tok, sst2, steps=3, eval_fn=eval_fn)
    t.train(resume="auto")  # 15: resuming a finished run adds no duplicate record
    assert len(evaluations) == 2
    assert [h["step"] for h in verify_checkpoint(out / "checkpoint-3")["history"]] == [3]
    assert [json.loads(line).get("eval") for line in (out / "metrics.jsonl").read_text().splitlines()
            if "eval" in line] == [{"acc": 0.5}]


# ------------------------------- 4. kill -9 in distill-task's prediction stage


def test_4_kill_during_the_prediction_stage_resumes_bit_identically_with_the_teacher_cache(teacher, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    steps = ["--pred-steps", "40"]
    done = subprocess.run(distill_cli(teacher, whole, *steps), cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reused from the cache" in done.stderr
    proc = subprocess.Popen(distill_cli(teacher, cut, *steps), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (cut / "prediction" / "checkpoint-12").is_dir(), proc, "a checkpoint after an epoch")
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate()
    assert not (cut / "prediction" / "checkpoint-40").exists()
    extra = load_file(str(latest_checkpoint(cut / "prediction") / "extra.safetensors"))
    assert extra["rank0/keys"].shape[0] > 0  # the cache went to disk with the checkpoint
    done = subprocess.run(distill_cli(teacher, cut, *steps, "--resume", "auto"), cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a = load_file(str(whole / "prediction" / "checkpoint-40" / "params.safetensors"))
    b = load_file(str(cut / "prediction" / "checkpoint-40" / "params.safetensors"))
    assert same(a, b)


def test_4_a_kill_while_an_old_checkpoint_is_deleted_leaves_no_half_checkpoint(tok, sst2, tmp_path, monkeypatch,
                                                                              capsys):
    """Found in CI: kill -9 landed while checkpoint-4 was being deleted to keep the newest two,
    leaving a checkpoint-4/ without its extra.safetensors (and the newest by its time)."""
    out = tmp_path / "run"

    class Killed(BaseException):
        pass

    def rmtree_killed_midway(path, *args, **kw):
        path = Path(path)
        if path.is_dir() and (path / "params.safetensors").exists():
            (path / "params.safetensors").unlink()  # one file gone, then the kill
            raise Killed
        return real_rmtree(path, *args, **kw)

    real_rmtree = shutil.rmtree
    monkeypatch.setattr(runfolder.shutil, "rmtree", rmtree_killed_midway)
    with pytest.raises(Killed):
        trainer(out, tok, sst2, steps=6)[1].train()  # checkpoints 2, 4, then 6 deletes 2
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-4", "checkpoint-6"]
    for folder in out.glob("checkpoint-*"):
        verify_checkpoint(folder)  # whole, every one
    _, t = trainer(out, tok, sst2, steps=6)
    assert t.train(resume="auto").step == 6
    assert "removed" in capsys.readouterr().err
    assert [p.name for p in out.iterdir() if p.name.startswith(".minibert-tmp")] == []


# --------------------------------------------------- 5. checksum files that lie


@pytest.mark.parametrize("lie", ["empty", "weights line deleted", "missing"])
def test_5_a_checksum_file_that_lies_is_a_damaged_checkpoint(tok, sst2, tmp_path, lie, capsys):
    out = tmp_path / "run"
    trainer(out, tok, sst2, steps=4)[1].train()
    folder = out / "checkpoint-4"
    sums = folder / "checksums.sha256"
    if lie == "empty":
        sums.write_text("")
    elif lie == "weights line deleted":
        sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if "params" not in line))
    else:
        sums.unlink()
    data = bytearray((folder / "params.safetensors").read_bytes())
    data[-3] ^= 0xFF  # one flipped byte in the weights
    (folder / "params.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        verify_checkpoint(folder)
    assert "does not list params.safetensors" in str(info.value) or "checksums.sha256 is missing" in str(info.value)
    _, t = trainer(out, tok, sst2, steps=4)
    t.train(resume="auto")  # falls back to checkpoint-2, naming why
    assert "skipping checkpoint-4" in capsys.readouterr().err


# ----------------------------------- 6. distill-task resume compares its settings


def test_6_distill_task_resume_refuses_a_changed_teacher_temperature_alpha_or_mapping(teacher, tmp_path):
    out = tmp_path / "run"
    cmd = distill_cli(teacher, out, "--pred-steps", "4", "--save-steps", "2")
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    other = teacher.parent / "other-teacher"
    shutil.copytree(teacher, other)
    changed = ["--temperature", "2", "--alpha", "0.5", "--mapping", "top", "--teacher", str(other)]
    done = subprocess.run(cmd[:cmd.index("--teacher")] + cmd[cmd.index("--teacher") + 2:] + changed
                          + ["--resume", "auto"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    line = one_error_line(done.stderr)
    assert done.returncode == 1
    for name in ("temperature 1.0 -> 2.0", "alpha 1.0 -> 0.5", "mapping uniform -> top", f"teacher {teacher} -> "):
        assert name in line, line
    assert "--resume-override" in line


# ------------------------------------------ 7. finished model folders protected


def test_7_a_finished_model_folder_is_not_written_over(tok, sst2, tmp_path):
    folder = tmp_path / "model"
    classifier(tok).save_pretrained(folder, tokenizer=tok)
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(RunFolderError, match="holds a model .* and no checkpoint to continue"):
        trainer(folder, tok, sst2, steps=2)[1].train()
    with pytest.raises(RunFolderError, match="holds a model"):
        trainer(folder, tok, sst2, steps=2)[1].train(resume="auto")
    assert (folder / "model.safetensors").read_bytes() == before
    trainer(folder, tok, sst2, steps=2, overwrite_output_dir=True)[1].train()  # asked for: the old model goes
    assert not (folder / "model.safetensors").exists() and (folder / "checkpoint-2").is_dir()


# ---------------- 9. re-saving a finished stage never leaves only a temporary


def test_9_a_checkpoint_set_aside_by_an_interrupted_resave_is_put_back(tok, sst2, tmp_path, capsys):
    out = tmp_path / "run"
    trainer(out, tok, sst2, steps=4)[1].train()
    whole = load_file(str(out / "checkpoint-4" / "params.safetensors"))
    # a kill between the two renames of a re-save: the old copy aside, the new one still a temporary
    os.replace(out / "checkpoint-4", out / ".minibert-old-checkpoint-4")
    shutil.copytree(out / ".minibert-old-checkpoint-4", out / ".minibert-tmp-checkpoint-4-999")
    shutil.rmtree(out / "checkpoint-2")
    _, t = trainer(out, tok, sst2, steps=4)
    state = t.train(resume="auto")
    err = capsys.readouterr().err
    assert "restored" in err and "resumed from" in err and state.step == 4  # not retrained from step 0
    assert same(whole, load_file(str(out / "checkpoint-4" / "params.safetensors")))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".minibert")) == []


def test_9_resuming_a_finished_run_does_not_rewrite_its_checkpoint(tok, sst2, tmp_path):
    out = tmp_path / "run"
    trainer(out, tok, sst2, steps=4)[1].train()
    inode = (out / "checkpoint-4").stat().st_ino
    trainer(out, tok, sst2, steps=4)[1].train(resume="auto")
    assert (out / "checkpoint-4").stat().st_ino == inode


# ------------------------------- 10, 12. --config and flags: type and range, exit 2


@pytest.mark.parametrize("conf,field", [
    ({"lr": "1e-3"}, "lr"), ({"batch_size": "8"}, "batch_size"), ({"batch_size": [8]}, "batch_size"),
    ({"output_dir": 5}, "output_dir"), ({"max_steps": 2.5}, "max_steps"), ({"max_steps": True}, "max_steps"),
    ({"progress": "no"}, "progress"), ({"corpus": "a.txt"}, "corpus"),
])
def test_10_config_values_of_the_wrong_type_are_usage_errors_naming_the_field(tmp_path, capsys, conf, field):
    command = "pretrain" if field == "corpus" else "finetune"
    (tmp_path / "run.json").write_text(json.dumps({"output_dir": str(tmp_path / "o"), "model": "tiny",
                                                   "max_steps": 1, **conf}))  # should it run: one tiny step
    code, err = exit_code_of([command, "--config", str(tmp_path / "run.json")], capsys)
    line = one_error_line(err)
    assert code == 2 and f".{field}=" in line and f"--{field.replace('_', '-')}" in line, line
    assert not (tmp_path / "o").exists()


def test_10_huge_numbers_and_toml_strings_are_usage_errors(tmp_path, capsys):
    (tmp_path / "run.json").write_text('{"seed": 1e400, "model": "tiny", "max_steps": 1, "output_dir": "%s"}'
                                       % (tmp_path / "o"))
    code, err = exit_code_of(["finetune", "--config", str(tmp_path / "run.json")], capsys)
    assert code == 2 and "seed=inf (--seed): expected a whole number" in one_error_line(err)
    (tmp_path / "run.toml").write_text(f'lr = "x"\nmodel = "tiny"\nmax_steps = 1\noutput_dir = "{tmp_path / "o"}"\n')
    code, err = exit_code_of(["finetune", "--config", str(tmp_path / "run.toml")], capsys)
    assert code == 2 and "lr='x' (--lr): expected a finite number" in one_error_line(err)


@pytest.mark.parametrize("flags,expected", [
    (["--epochs", "inf"], "epochs=inf (--epochs): expected a finite number"),
    (["--max-train-examples", "-5"], "max_train_examples=-5 (--max-train-examples): expected at least 0"),
    (["--max-grad-norm", "nan"], "max_grad_norm=nan (--max-grad-norm): expected a finite number"),
    (["--max-grad-norm", "-1"], "max_grad_norm=-1.0 (--max-grad-norm): expected at least 0"),
    (["--output-dir", ""], "output_dir='' (--output-dir): expected a non-empty string"),
    (["--seed", "-1"], "seed=-1 (--seed): expected at least 0"),
    (["--batch-size", "0"], "batch_size=0 (--batch-size): expected at least 1"),
])
def test_12_bad_flags_are_usage_errors_naming_the_flag(tmp_path, capsys, flags, expected):
    code, err = exit_code_of(["finetune", "--model", "tiny", "--max-steps", "1", "--output-dir", str(tmp_path / "o"),
                              *flags], capsys)
    assert code == 2 and expected in one_error_line(err), err


def test_12_a_file_system_root_is_not_an_output_folder():
    with pytest.raises(RunFolderError, match="cannot be a file system's root"):
        runfolder.prepare_folder(Path("/"))


def test_every_settings_field_is_checked_by_its_type(tmp_path):
    """The one place: a field of any group gets its checks from its annotation (helpers adding fields get them)."""
    with pytest.raises(ValueError, match=r"TaskDistillSettings.temperature=0.0 \(--temperature\): expected more "):
        TaskDistillSettings(temperature=0.0)
    with pytest.raises(ValueError, match=r"pred_steps=1.5"):
        TaskDistillSettings(pred_steps=1.5)
    with pytest.raises(ValueError, match=r"TaskDataSettings.max_length=2.0 \(--max-length\): expected a whole"):
        TaskDataSettings(max_length=2.0)
    args = parse_args(["finetune", "--max-length", "3"])
    args.max_length = "64"  # what a --config file could put there
    with pytest.raises(UsageError, match=r"max_length='64'"):
        from_args(TaskDataSettings, args)


# -------------------------------------------------------------- 11. bad data


def test_11_bad_data_is_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "header.csv").write_text("text,label\n")
    code, err = exit_code_of(["finetune", "--model", "tiny", "--train-file", str(tmp_path / "header.csv"), "--dev-file",
                              str(tmp_path / "header.csv"),
                              "--output-dir", str(tmp_path / "o")], capsys)
    assert code == 1 and "header.csv: a header line ('text', 'label') and no rows of data" in one_error_line(err)
    (tmp_path / "deep.jsonl").write_text('{"text": "a", "label": ' + "[" * 100_000 + "\n")
    with pytest.raises(DataError, match="deep.jsonl:1: JSON nested too deeply"):
        D.read_table(tmp_path / "deep.jsonl")
    (tmp_path / "half.jsonl").write_text('{"text": "fine", "label": 0}\n{"text": "bad \\ud800 x", "label": 1}\n')
    with pytest.raises(DataError, match=r"half.jsonl:2: 'text' holds a lone surrogate"):
        D.read_table(tmp_path / "half.jsonl")  # predict and training read JSON Lines through it
    (tmp_path / "scores.csv").write_text("text,label\na,0.5\nb,1.5\nc,nan\nd,2.5\n")
    with pytest.raises(DataError, match="scores.csv:4: label 'nan' is not a finite number"):
        D.read_task(D.task_files(train_file=tmp_path / "scores.csv", dev_file=tmp_path / "scores.csv"))


# ------------------------------------------------------- 13. hostile model folders


@pytest.mark.parametrize("field,value,expected", [
    ("hidden_size", 65536, "hidden_size=65536 is larger than minibert builds"),
    ("hidden_size", 1e9, "hidden_size must be a positive integer"),
    ("intermediate_size", 1e12, "intermediate_size must be a positive integer"),
    ("num_hidden_layers", 10_000_000, "num_hidden_layers=10000000 is larger than minibert builds"),
    ("num_hidden_layers", 200, "describes an encoder of"),  # allowed alone, but not by this weights file
    ("intermediate_size", 100_000, "describes an encoder of"),
])
def test_13_a_hostile_config_json_is_refused_before_the_model_is_built(tok, tmp_path, field, value, expected):
    folder = tmp_path / "model"
    classifier(tok).save_pretrained(folder, tokenizer=tok)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, field: value}))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=expected):
        BertForSequenceClassification.from_pretrained(folder)
    assert time.perf_counter() - t0 < 30  # refused, not built (the fault run saw 39 s and 5.9 GB)


def test_13_a_deeply_nested_config_json_is_a_checkpoint_error(tok, tmp_path):
    folder = tmp_path / "model"
    classifier(tok).save_pretrained(folder, tokenizer=tok)
    (folder / "config.json").write_text("[" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        BertForSequenceClassification.from_pretrained(folder)


def legacy(folder: Path) -> None:
    """Make `folder` look like a checkpoint written before checksums: no checksum file, no format number."""
    (folder / "checksums.sha256").unlink()
    state = json.loads((folder / "trainer_state.json").read_text())
    del state["format"]
    (folder / "trainer_state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("damage", ["I32 weights", "rng_states [[1,2,3]]", "optimizer names null"])
def test_13_a_damaged_legacy_checkpoint_falls_back_to_the_previous_one(tok, sst2, tmp_path, damage, capsys):
    out = tmp_path / "run"
    trainer(out, tok, sst2, steps=4)[1].train()
    folder = out / "checkpoint-4"
    legacy(folder)
    legacy(out / "checkpoint-2")
    state = json.loads((folder / "trainer_state.json").read_text())
    if damage == "I32 weights":
        params = load_file(str(folder / "params.safetensors"))
        save_file({k: v.view(np.int32) for k, v in params.items()}, str(folder / "params.safetensors"))
    elif damage == "rng_states [[1,2,3]]":
        state["rng_states"] = [[1, 2, 3]]
    else:
        state["optimizer"]["names"] = None
    (folder / "trainer_state.json").write_text(json.dumps(state))
    _, t = trainer(out, tok, sst2, steps=4)
    t.train(resume="auto")  # no traceback: checkpoint-4 is skipped, named, and checkpoint-2 continues
    err = capsys.readouterr().err
    assert "skipping checkpoint-4" in err and "resumed from" in err and "checkpoint-2" in err


# ---------------------------------------------------------- 14. mismatched ranks


@pytest.mark.parametrize("differ", [("--lr", "1e-3", "2e-3"), ("--max-steps", "40", "41"),
                                    ("--batch-size", "8", "16")])
def test_14_processes_started_with_different_settings_refuse_to_run(tmp_path, differ):
    flag, a, b = differ
    out = tmp_path / "run"
    base = finetune_cli(out)
    cmd_a, cmd_b = base + [flag, a], base + [flag, b]
    done = subprocess.run([mpiexec(), "-n", "1", *cmd_a, ":", "-n", "1", *cmd_b], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    name = flag[2:].replace("-", "_")
    assert "started with different settings" in done.stderr and name in done.stderr, done.stderr[-3000:]
    assert not list(out.glob("checkpoint-*"))


# ------------------------------------------------------------------ 15. minor


def test_15_a_model_with_nan_weights_or_duplicate_class_names_is_refused(tok, tmp_path):
    folder = tmp_path / "model"
    classifier(tok).save_pretrained(folder, tokenizer=tok)
    weights = load_file(str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "id2label": {"0": "pos", "1": "pos"}}))
    with pytest.raises(CheckpointError, match="id2label names 'pos' more than once"):
        BertForSequenceClassification.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(config))
    key = next(k for k in weights if k.endswith("classifier.weight"))
    weights[key][0, 0] = np.nan
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="holds NaN or infinite values"):
        BertForSequenceClassification.from_pretrained(folder)


def test_15_predict_on_a_header_only_file_is_an_error(tok, tmp_path, capsys):
    folder = tmp_path / "model"
    classifier(tok).save_pretrained(folder, tokenizer=tok)
    (tmp_path / "in.csv").write_text("text\n")
    code, err = exit_code_of(["predict", "--model", str(folder), "--input", str(tmp_path / "in.csv")], capsys)
    assert code == 1 and "no rows of data" in one_error_line(err)


def test_15_a_double_sigterm_exits_143(tmp_path):
    out = tmp_path / "run"
    # steps of about a second, so the second signal lands in the step the first one let finish
    slow = ["--max-length", "128", "--batch-size", "512", "--max-train-examples", "2000"]
    proc = subprocess.Popen(finetune_cli(out, *slow, steps=100000), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (out / "checkpoint-4").is_dir(), proc, "a checkpoint")
    proc.send_signal(signal.SIGTERM)
    # the second only once the first is handled: two pending at once reach Python's handler as one
    while "finishing this step" not in proc.stderr.readline():
        assert proc.poll() is None, "the run ended before it handled the first SIGTERM"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped at once without writing a checkpoint" in err


def test_15_overwrite_removes_the_previous_runs_model_and_results(tok, sst2, tmp_path):
    out = tmp_path / "run"
    model, t = trainer(out, tok, sst2, steps=2, save_fn=lambda folder: classifier(tok).save_pretrained(folder))
    t.train()
    (out / "results.json").write_text("{}")
    assert (out / "model.safetensors").is_file()

    def crash(batch, scale):
        raise RuntimeError("a crash before the new run saved its model")

    _, t = trainer(out, tok, sst2, steps=2, overwrite_output_dir=True)
    t.step_fn = crash
    with pytest.raises(RuntimeError):
        t.train()
    assert not (out / "model.safetensors").exists() and not (out / "results.json").exists()


def test_15_a_full_disk_while_writing_vocab_txt_names_the_file(tmp_path, capsys, monkeypatch):
    def full(*args, **kw):
        raise OSError(28, "No space left on device")  # as a write() fails: no file name of its own

    monkeypatch.setattr(runfolder.os, "replace", full)
    (tmp_path / "words.txt").write_text("a few words to learn a vocabulary from\n" * 20)
    code, err = exit_code_of(["vocab", "--files", str(tmp_path / "words.txt"), "--vocab-size", "40",
                              "--min-frequency", "1", "--output-dir", str(tmp_path / "v")], capsys)
    assert code == 1 and one_error_line(err) == f"error: No space left on device, {tmp_path / 'v' / 'vocab.txt'}"
    assert not [p for p in (tmp_path / "v").iterdir()]  # and no temporary left behind
