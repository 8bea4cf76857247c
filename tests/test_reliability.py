"""Nothing lost, nothing silently wrong: the run folder's lock, runs that refuse to mix, settings
compared on resume, verified checkpoints with a fallback, stale temporaries, graceful SIGINT/SIGTERM,
write failures, one error line and its exit code, file permissions, checks before the first step.

Signals, locks and disks run the real command line in a subprocess; the rest calls the Trainer."""
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load_file

from minibert import BertConfig, BertForSequenceClassification, checkpoint, runfolder, tensor_files
from minibert import data as D
from minibert.checkpoint import CheckpointError
from minibert.finetune import classification_step
from minibert.flags import UsageError, from_args
from minibert.interrupts import Interrupted
from minibert.train import parse_args
from minibert.trainer import Trainer, TrainArgs, TrainingError

from conftest import wait_for

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONHASHSEED": "0"}


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def sst2(data_dir, tok):
    rows = D.read_glue("sst-2", data_dir / "SST-2" / "train.tsv")[:256]
    return D.encode_examples(rows, tok, 32)


def classifier(tok, seed=0, **config):
    return BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=len(tok), **config), num_labels=2,
                                         seed=seed)


def run(out, tok, data, steps=4, resume=None, seed=0, batch_size=16, **args):
    """A tiny classifier trained for `steps` (checkpoints every 2); returns (model, trainer)."""
    model = classifier(tok, seed=seed)
    args = TrainArgs(**{"output_dir": str(out), "max_steps": steps, "save_steps": 2, "lr": 1e-3,
                        "batch_size": batch_size, "progress": False, **args})
    trainer = Trainer(args, {"": model}, D.Batcher(data, batch_size, seed=0), classification_step(model))
    trainer.train(resume=resume)
    return model, trainer


def same_parameters(a, b) -> bool:
    return all(np.array_equal(v, b.named_parameters()[k]) for k, v in a.named_parameters().items())


def cli(out, *extra, steps=150):
    return [sys.executable, "-m", "minibert.train", "finetune", "--model", "tiny", "--task", "sst-2",
            "--max-train-examples", "2000", "--max-eval-examples", "50", "--max-length", "32", "--batch-size", "16",
            "--max-steps", str(steps), "--save-steps", "10", "--log-steps", "5", "--eval-steps", "0", "--lr", "1e-3",
            "--progress", "false", "--output-dir", str(out), *extra]


def start(out, *extra, steps=150):
    return subprocess.Popen(cli(out, *extra, steps=steps), env=ENV, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def logged_steps(out) -> list:
    path = out / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.is_file() else []


def one_error_line(err: str) -> str:
    """The stderr of a failed command: its last line is the error; no traceback anywhere."""
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def final_weights(out) -> dict:
    return load_file(str(out / "model.safetensors"))


# ------------------------------------------------------------------- lock (subprocesses)


def test_a_second_run_on_a_folder_fails_at_once_and_a_dead_runs_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    a = start(out, steps=100000)
    wait_for(lambda: (out / "checkpoint-10").is_dir(), a, "its first checkpoint")
    b = subprocess.run(cli(out, "--resume", "auto"), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert b.returncode == 1
    line = one_error_line(b.stderr)
    assert line.startswith("error: the output folder is in use by another run (pid ") and f"pid {a.pid} " in line
    assert str(out) in line and "minibert.train finetune" in line  # who holds it, and where
    assert a.poll() is None  # the first run goes on undisturbed
    a.send_signal(signal.SIGKILL)
    a.wait()
    assert (out / runfolder.LOCK_NAME).is_file()  # what a killed run leaves
    c = subprocess.run(cli(out, "--resume", "auto", "--resume-override", "total_steps", steps=12), env=ENV, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert c.returncode == 0, c.stderr
    assert f"took over the lock of a run that is no longer running (pid {a.pid} " in c.stderr
    assert not (out / runfolder.LOCK_NAME).exists()  # released at the end
    last = max(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))  # the killed run's, or 12
    state = json.loads((last / "trainer_state.json").read_text())
    assert [(o["setting"], o["recorded"], o["now"]) for o in state["overrides"]] == [("total_steps", 100000, 12)]


# ---------------------------------------------------------------- signals (subprocesses)


def test_sigint_and_sigterm_checkpoint_and_the_resumed_run_is_bit_identical(tmp_path):
    full = subprocess.run(cli(tmp_path / "full"), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    out = tmp_path / "stopped"
    done = []
    for sig, code, extra in [(signal.SIGINT, 130, ()), (signal.SIGTERM, 143, ("--resume", "auto"))]:
        proc = start(out, *extra)
        wait_for(lambda: [s for s in logged_steps(out) if s not in done], proc, "a new log line")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == code, err
        line = one_error_line(err)
        assert line.startswith(f"stopped: interrupted by {sig.name} at step ") and "continue with --resume auto" in line
        step = int(line.split(" at step ")[1].split(":")[0])
        assert f"saved {out / f'checkpoint-{step}'};" in line and (out / f"checkpoint-{step}" / "checksums.sha256").is_file()
        assert not (out / "model.safetensors").exists() and not (out / runfolder.LOCK_NAME).exists()
        done = logged_steps(out)
    rest = subprocess.run(cli(out, "--resume", "auto"), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rest.returncode == 0, rest.stderr
    a, b = final_weights(tmp_path / "full"), final_weights(out)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert logged_steps(out) == logged_steps(tmp_path / "full")  # one line per logged step, none twice


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = start(out, "--batch-size", "512", "--max-length", "128", steps=100000)  # steps of about a second to land in
    wait_for(lambda: logged_steps(out), proc, "the first log line")
    proc.send_signal(signal.SIGINT)
    while "finishing this step" not in proc.stderr.readline():  # the first one is handled: the step goes on
        assert proc.poll() is None, "the run ended before it handled the first Ctrl-C"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert one_error_line(err) == ("error: interrupted, stopped at once without writing a checkpoint (those already "
                                   "written stay)")
    assert not list(out.glob(".minibert-tmp-*")) and not list(out.glob("checkpoint-*"))


def test_a_second_signal_raises_at_once_wherever_the_step_is(tok, sst2, tmp_path):
    """In process, deterministically: both signals arrive inside one step."""
    model = classifier(tok)
    step = classification_step(model)

    def step_fn(batch, scale):
        os.kill(os.getpid(), signal.SIGTERM)  # the first: finish the step, then checkpoint
        os.kill(os.getpid(), signal.SIGINT)  # the second: stop now
        return step(batch, scale)

    args = TrainArgs(output_dir=str(tmp_path), max_steps=5, progress=False)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGINT again: stopped at once") as info:
        Trainer(args, {"": model}, D.Batcher(sst2, 8), step_fn).train()
    assert not isinstance(info.value, Interrupted)  # no checkpoint was written
    assert info.value.exit_code == 130  # 128 + SIGINT, the second signal's
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no temporary, the lock released
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored


# ----------------------------------------------------------------- disks (subprocess)


def test_a_failing_disk_write_is_one_line_and_leaves_nothing_partial(tmp_path):
    """RLIMIT_FSIZE makes every write past 1 MiB fail in the child (EFBIG), as a full disk would."""
    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    out = tmp_path / "run"
    proc = subprocess.run(cli(out, steps=20), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300,
                          preexec_fn=small_files)
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert line.startswith("error: cannot write checkpoint-10 (File too large, ") and "params.safetensors" in line
    assert line.endswith("no partial checkpoint is left; last good checkpoint: none")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]  # no temporary, no lock


def test_a_full_disk_midway_keeps_the_last_good_checkpoint_and_resume_cleans_up(tok, sst2, tmp_path, monkeypatch):
    real = tensor_files.save_file
    calls = {"n": 0}

    def full_on_the_third_file(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] == 3:  # checkpoint-4's params (checkpoint-2 wrote two files)
            with open(filename, "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(tensor_files, "save_file", full_on_the_third_file)
    with pytest.raises(TrainingError, match=r"cannot write checkpoint-4 \(No space left on device, .*; last good "
                                            r"checkpoint: .*checkpoint-2$"):
        run(tmp_path, tok, sst2, steps=6)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]  # no temporary, no lock
    monkeypatch.undo()
    (tmp_path / ".tmp-checkpoint-4-99999").mkdir()  # what a killed write leaves (a kill skips all cleanup)
    resumed, _ = run(tmp_path, tok, sst2, steps=6, resume="auto", seed=5)
    full, _ = run(tmp_path / "full", tok, sst2, steps=6)
    assert same_parameters(full, resumed)
    assert not (tmp_path / ".tmp-checkpoint-4-99999").exists()


def test_too_little_free_space_is_refused_before_the_first_step(tok, sst2, tmp_path, monkeypatch):
    monkeypatch.setattr(runfolder.shutil, "disk_usage", lambda p: SimpleNamespace(total=10**9, used=10**9, free=1000))
    with pytest.raises(runfolder.RunFolderError, match=r"not enough free disk space for one checkpoint: [\d.]+ MB "
                                                       r"needed, 0.0 MB free"):
        run(tmp_path, tok, sst2)
    assert not list(tmp_path.glob("checkpoint-*")) and not (tmp_path / "metrics.jsonl").exists()


# ------------------------------------------------------------- runs that do not mix


def test_a_fresh_run_refuses_another_runs_checkpoints_unless_overwrite(tok, sst2, tmp_path, capsys):
    run(tmp_path, tok, sst2, steps=4)
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint-4").iterdir()}
    with pytest.raises(runfolder.RunFolderError, match=r"holds the checkpoints of another run \(checkpoint-2, "
                                                       r"checkpoint-4\): continue it with --resume auto, or start "
                                                       r"afresh with --overwrite-output-dir"):
        run(tmp_path, tok, sst2, steps=3)
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoint-4").iterdir()} == before
    model, _ = run(tmp_path, tok, sst2, steps=3, seed=1, overwrite_output_dir=True)
    assert "deleted the previous run's checkpoint-2, checkpoint-4" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    resumed, _ = run(tmp_path, tok, sst2, steps=3, resume="auto", seed=7)  # continues the new run, not the old one
    assert same_parameters(model, resumed)
    with pytest.raises(ValueError, match="contradict"):
        run(tmp_path, tok, sst2, steps=3, resume="auto", overwrite_output_dir=True)


def test_resume_names_each_changed_setting_and_accepts_only_those_overridden(tok, sst2, tmp_path, capsys):
    run(tmp_path, tok, sst2, steps=4)
    shutil.rmtree(tmp_path / "checkpoint-4")
    before = (tmp_path / "checkpoint-2" / "trainer_state.json").read_text()
    with pytest.raises(runfolder.RunFolderError, match=r"settings differ from the checkpoint's \(batch_size 16 -> 8; "
                                                       r"lr 0.001 -> 0.002; total_steps 4 -> 6\).* --resume-override "
                                                       r"batch_size lr total_steps, .*checkpoint-2$"):
        run(tmp_path, tok, sst2, steps=6, resume="auto", batch_size=8, lr=2e-3)
    with pytest.raises(runfolder.RunFolderError, match=r"--resume-override batch_size total_steps, "):
        run(tmp_path, tok, sst2, steps=6, resume="auto", batch_size=8, lr=2e-3, resume_override=["lr"])
    assert (tmp_path / "checkpoint-2" / "trainer_state.json").read_text() == before  # nothing was touched
    other_length = D.encode_examples(D.read_glue("sst-2", Path(os.environ["MINIBERT_DATA"]) / "SST-2" / "train.tsv")[:256],
                                     tok, 16)
    with pytest.raises(runfolder.RunFolderError, match=r"\(data fingerprint [0-9a-f]{16} -> fingerprint [0-9a-f]{16}\)"):
        run(tmp_path, tok, other_length, steps=4, resume="auto")
    capsys.readouterr()
    run(tmp_path, tok, sst2, steps=6, resume="auto", batch_size=8, lr=2e-3, resume_override=["all"])
    assert "with changed settings (--resume-override): batch_size 16 -> 8; lr 0.001 -> 0.002" in capsys.readouterr().err
    state = json.loads((tmp_path / "checkpoint-6" / "trainer_state.json").read_text())
    assert [(o["step"], o["setting"], o["recorded"], o["now"]) for o in state["overrides"]] == [
        (2, "batch_size", 16, 8), (2, "lr", 0.001, 0.002), (2, "total_steps", 4, 6)]
    assert state["args"]["lr"] == 2e-3  # the next resume compares with the new values
    with pytest.raises(UsageError, match="resume_override"):
        from_args(TrainArgs, parse_args(["finetune", "--resume-override", "learning_rate"]))


# ------------------------------------------------------------ verified checkpoints


def flip_data_bytes(path: Path) -> None:
    """Overwrite a few bytes inside the tensor data; the header stays intact."""
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    raw[start + 100:start + 104] = b"\xff\xff\x7f\x7f"  # a float32 of 3.4e38
    path.write_bytes(bytes(raw))


def test_resume_auto_skips_a_damaged_checkpoint_and_continues_from_the_previous_one(tok, sst2, tmp_path, capsys):
    full, _ = run(tmp_path / "full", tok, sst2, steps=6)
    out = tmp_path / "run"
    run(out, tok, sst2, steps=6, save_total_limit=3)
    shutil.rmtree(out / "checkpoint-6")  # as if killed after checkpoint-4
    flip_data_bytes(out / "checkpoint-4" / "params.safetensors")
    checkpoint.read_header(out / "checkpoint-4" / "params.safetensors")  # the header alone cannot tell
    with pytest.raises(CheckpointError, match=r"checkpoint-4/params.safetensors: its bytes differ from those written"):
        run(out, tok, sst2, steps=6, resume=str(out / "checkpoint-4"))  # named explicitly: no fallback
    capsys.readouterr()
    resumed, _ = run(out, tok, sst2, steps=6, resume="auto", seed=3)
    err = capsys.readouterr().err
    assert "--resume auto: skipping checkpoint-4: " in err and "params.safetensors: its bytes differ" in err
    assert same_parameters(full, resumed)


def test_every_checkpoint_damaged_is_an_error_naming_each(tok, sst2, tmp_path, capsys):
    run(tmp_path, tok, sst2, steps=4)
    (tmp_path / "checkpoint-4" / "optimizer.safetensors").write_bytes(b"\x08")
    state = tmp_path / "checkpoint-2" / "trainer_state.json"
    state.write_text(state.read_text().replace('"step": 2', '"step": "two"'))
    with pytest.raises(CheckpointError) as info:
        run(tmp_path, tok, sst2, steps=4, resume="auto")
    message = str(info.value)
    assert message.startswith(f"--resume auto: no checkpoint in {tmp_path} verifies: ")
    assert "checkpoint-4/optimizer.safetensors: 1 bytes is too short" in message
    assert "checkpoint-2/trainer_state.json: field 'step' must be a non-negative integer, got 'two'" in message
    (tmp_path / "checkpoint-4" / "optimizer.safetensors").unlink()
    shutil.rmtree(tmp_path / "checkpoint-2")
    with pytest.raises(runfolder.RunFolderError, match="holds the checkpoints of another run"):
        run(tmp_path, tok, sst2, steps=4)  # a damaged checkpoint still belongs to a run: not silently replaced
    run(tmp_path, tok, sst2, steps=4, overwrite_output_dir=True)
    assert "deleted the previous run's checkpoint-4" in capsys.readouterr().err


def test_checksums_file_is_sha256sum_format_and_older_checkpoints_load_with_a_note(tok, sst2, tmp_path, capsys):
    full, _ = run(tmp_path / "full", tok, sst2, steps=4)
    out = tmp_path / "run"
    run(out, tok, sst2, steps=4)
    folder = out / "checkpoint-2"
    lines = (folder / "checksums.sha256").read_text().splitlines()
    assert sorted(line.split("  ")[1] for line in lines) == ["optimizer.safetensors", "params.safetensors",
                                                             "trainer_state.json"]
    assert all(runfolder.sha256_file(folder / line.split("  ")[1]) == line.split("  ")[0] for line in lines)
    shutil.rmtree(out / "checkpoint-4")
    (folder / "checksums.sha256").unlink()  # a checkpoint written before checksums were recorded:
    state = json.loads((folder / "trainer_state.json").read_text())
    del state["format"]  # (which has no format number either)
    (folder / "trainer_state.json").write_text(json.dumps(state))
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # a log line a kill cut short
    capsys.readouterr()
    resumed, _ = run(out, tok, sst2, steps=4, resume="auto", seed=9)
    err = capsys.readouterr().err
    assert "has no checksums.sha256 (written before minibert recorded them): checked by its tensor files' headers, " \
           "dtypes and shapes only" in err
    assert "metrics.jsonl:2: not a JSON record (a write cut short?); dropped" in err
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [4]
    assert same_parameters(full, resumed)


def test_stale_temporaries_are_removed_at_the_start_and_nothing_else(tok, sst2, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".tmp-checkpoint-7-4242", out / ".minibert-tmp-checkpoint-8-4242",
             out / ".minibert-tmp-best.abc_1234", tmp_path / ".minibert-tmp-run.zz99x_q1"]
    for folder in stale:
        folder.mkdir()
        (folder / "params.safetensors").write_bytes(b"partial")
    (out / ".minibert-tmp-params.safetensors.4242").write_bytes(b"partial")
    stale.append(out / ".minibert-tmp-params.safetensors.4242")
    # not ours: a user's own files, even named as minibert's temporaries once were (issue 28, case 8)
    kept = [out / "notes.tmp", tmp_path / ".run2.abcdefgh.tmp", out / ".hidden", out / ".notes.2024.tmp",
            out / ".draft.abcdefgh.tmp", tmp_path / ".run.zz99x_q1.tmp", tmp_path / ".minibert-tmp-run2.abcdefgh"]
    for path in kept:
        path.write_text("mine")
    run(out, tok, sst2, steps=2)
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "mine" for p in kept)
    err = capsys.readouterr().err
    assert all(f"removed {p}, left by an interrupted or failed write" in err for p in stale)


# --------------------------------------------------------- before the first step


def test_rows_longer_than_the_position_embeddings_and_unknown_labels_stop_before_step_one(tok, sst2, tmp_path):
    calls = []

    def train(model, data):
        args = TrainArgs(output_dir=str(tmp_path), max_steps=2, progress=False)
        step = classification_step(model)
        Trainer(args, {"": model}, D.Batcher(data, 8), lambda b, s: calls.append(1) or step(b, s)).train()

    with pytest.raises(ValueError, match=r"the training data has rows of \d\d tokens but the model has 16 position "
                                         r"embeddings \(max_position_embeddings\): lower --max-length"):
        train(classifier(tok, max_position_embeddings=16), sst2)
    three = D.EncodedExamples(sst2.input_ids[:8], sst2.token_type_ids[:8], np.array([0, 1, 2, 1, 0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"the training labels run from 0 to 2 but the model has 2 labels"):
        train(classifier(tok), three)
    # IGNORE_INDEX marks a row without a label (one only a teacher reads): not an unknown class
    three.labels[2] = D.IGNORE_INDEX
    with pytest.raises(ValueError, match=r"the training labels run from 0 to 3 but the model has 2 labels"):
        three.labels[3] = 3
        train(classifier(tok), three)
    assert calls == [] and not list(tmp_path.glob("checkpoint-*"))


# ----------------------------------------------------- errors on the command line


@pytest.mark.parametrize("case", ["output-is-a-file", "output-under-a-file", "resume-not-a-checkpoint",
                                  "damaged-state", "non-finite-loss", "bad-override", "debug"])
def test_expected_failures_are_one_line_with_their_exit_code(case, tmp_path):
    (tmp_path / "file").write_text("x")
    out, extra, code = tmp_path / "out", [], 1
    if case == "output-is-a-file":
        out, expect = tmp_path / "file", f"error: the output folder is a file, {tmp_path / 'file'}"
    elif case == "output-under-a-file":
        out, expect = tmp_path / "file" / "out", f"error: cannot create the output folder (Not a directory, {tmp_path / 'file'}"
    elif case == "resume-not-a-checkpoint":
        extra, expect = ["--resume", str(tmp_path)], f"error: --resume {tmp_path}: not a checkpoint folder"
    elif case == "damaged-state":
        (out / "checkpoint-10").mkdir(parents=True)
        (out / "checkpoint-10" / "trainer_state.json").write_text("{not json")
        extra, expect = ["--resume", "auto"], f"error: --resume auto: no checkpoint in {out} verifies: " \
                                              f"{out / 'checkpoint-10' / 'trainer_state.json'}: not valid JSON"
    elif case == "non-finite-loss":
        extra, expect = ["--lr", "1e30"], "error: loss is not finite between steps 1 and 5"
    elif case == "bad-override":
        extra, expect, code = ["--resume-override", "speed"], "error: invalid training setting resume_override=", 2
    else:
        out, extra, expect = tmp_path / "file", ["--debug"], "minibert.errors.RunFolderError: the output folder is a file"
    proc = subprocess.run(cli(out, *extra, steps=20), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, proc.stderr
    if case == "debug":
        assert "Traceback" in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith(expect)
    else:
        assert one_error_line(proc.stderr).startswith(expect), proc.stderr


def test_a_read_only_folder_is_named_before_anything_runs(tok, sst2, tmp_path, monkeypatch):
    """Tests may run as root, for whom chmod cannot make a folder read-only: os.open fails as it would."""
    def read_only(path, *args, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(runfolder.os, "open", read_only)
    with pytest.raises(runfolder.RunFolderError, match=r"^the output folder is not writable \(Read-only file system, "
                                                       rf"{tmp_path}/.minibert.lock\)$"):
        run(tmp_path, tok, sst2)


# ------------------------------------------------------------------- permissions


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_files_get_the_users_normal_permissions(tok, sst2, tmp_path, umask):
    old = os.umask(umask)
    try:
        model, _ = run(tmp_path / "run", tok, sst2, steps=2)
        model.save_pretrained(tmp_path / "model", tokenizer=tok)
    finally:
        os.umask(old)
    paths = [tmp_path / "model", *(tmp_path / "model").iterdir(), tmp_path / "run" / "checkpoint-2",
             *(tmp_path / "run" / "checkpoint-2").iterdir()]
    for path in paths:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert path.stat().st_mode & 0o777 == expected, (path, oct(path.stat().st_mode))
