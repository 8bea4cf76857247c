"""The training engine: learning on real data, exact resume after SIGKILL, failures, the CLI."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from minibert import BertConfig, BertForSequenceClassification
from minibert import data as D
from minibert.tokenizer import BertTokenizer
from minibert.train import parse_args, predict
from minibert.trainer import Trainer, TrainArgs, TrainingError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tok(data_dir):
    return BertTokenizer(data_dir / "bert-base-uncased" / "vocab.txt")


@pytest.fixture(scope="module")
def sst2(data_dir, tok):
    train = D.read_glue("sst-2", data_dir / "SST-2" / "train.tsv")[:1024]
    dev = D.read_glue("sst-2", data_dir / "SST-2" / "dev.tsv")[:200]
    return D.encode_examples(train, tok, 32), D.encode_examples(dev, tok, 32)


def tiny_classifier(tok, seed=0, dropout=0.1):
    cfg = BertConfig.from_preset("tiny", vocab_size=len(tok), hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForSequenceClassification(cfg, num_labels=2, seed=seed)


def classification_step(model):
    def step_fn(batch, scale):
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"])
        model.backward(dloss=scale)
        return {"loss": out.loss}
    return step_fn


def test_overfits_one_tiny_batch(tok, sst2, tmp_path):
    train, _ = sst2
    model = tiny_classifier(tok, dropout=0.0)
    batch = train.collate(np.arange(8))

    class OneBatch:  # the same 8 examples every step
        def __len__(self):
            return 1

        def iter_epoch(self, epoch, start_batch=0):
            yield from [batch][start_batch:]

    args = TrainArgs(output_dir=str(tmp_path), max_steps=60, lr=3e-3, warmup_ratio=0.0, weight_decay=0.0, progress=False)
    losses = []
    step = classification_step(model)

    def logged(b, s):
        out = step(b, s)
        losses.append(float(out["loss"]))
        return out

    Trainer(args, {"": model}, OneBatch(), logged).train()
    assert losses[0] > 0.5 and losses[-1] < 0.02, (losses[0], losses[-1])
    model.eval()
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert np.array_equal(out.logits.argmax(-1), batch["labels"])


def test_loss_falls_on_real_sst2(tok, sst2, tmp_path):
    train, dev = sst2
    model = tiny_classifier(tok)
    args = TrainArgs(output_dir=str(tmp_path), max_steps=120, batch_size=32, lr=2e-3, progress=False)
    trainer = Trainer(args, {"": model}, D.Batcher(train, 32, seed=0), classification_step(model),
                      lambda: D.compute_metrics("sst-2", predict(model, dev), dev.labels))
    trainer.train()
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert np.mean(losses[-3:]) < np.mean(losses[:2]) - 0.05, losses
    assert log[-1]["eval"]["acc"] > 0.55  # above chance on held-out sentences after 120 tiny steps
    assert (tmp_path / "checkpoint-120" / "trainer_state.json").is_file()


def test_non_finite_loss_stops_and_names_the_step(tok, sst2, tmp_path):
    train, _ = sst2
    model = tiny_classifier(tok)
    step = classification_step(model)
    calls = {"n": 0}

    def exploding(batch, scale):
        calls["n"] += 1
        out = step(batch, scale)
        return {"loss": float("nan")} if calls["n"] == 7 else out

    args = TrainArgs(output_dir=str(tmp_path), max_steps=20, save_steps=3, progress=False)
    with pytest.raises(TrainingError, match=r"not finite at step 7 .*checkpoint-6"):
        Trainer(args, {"": model}, D.Batcher(train, 16, seed=0), exploding).train()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]


def test_in_process_resume_is_bit_identical(tok, sst2, tmp_path):
    train, _ = sst2

    def run(out, steps, resume=None, seed=0):
        model = tiny_classifier(tok, seed=seed)
        args = TrainArgs(output_dir=str(out), max_steps=steps, save_steps=5, lr=1e-3, progress=False, grad_accum=2)
        Trainer(args, {"": model}, D.Batcher(train, 16, seed=0), classification_step(model)).train(resume=resume)
        return model

    full = run(tmp_path / "a", 12)
    run(tmp_path / "b", 12)
    # pretend the run died after checkpoint-10: drop the final checkpoint and resume
    import shutil
    shutil.rmtree(tmp_path / "b" / "checkpoint-12")
    resumed = run(tmp_path / "b", 12, resume="auto", seed=99)  # different init: all must come from the checkpoint
    # "auto" with no checkpoint yet (a first run, or a later stage of distill-task) starts fresh
    fresh = run(tmp_path / "c", 12, resume="auto")
    for k, v in full.named_parameters().items():
        assert np.array_equal(v, resumed.named_parameters()[k]), k
        assert np.array_equal(v, fresh.named_parameters()[k]), k


def _cli(out, *extra):
    return [sys.executable, "-m", "minibert.train", "finetune", "--model", "tiny", "--task", "sst-2",
            "--max-train-examples", "2000", "--max-eval-examples", "50", "--max-length", "32", "--batch-size", "16",
            "--max-steps", "150", "--save-steps", "10", "--eval-steps", "0", "--lr", "1e-3", "--progress", "false",
            "--output-dir", str(out), *extra]


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(_cli(tmp_path / "full"), check=True, env=env, capture_output=True, cwd=REPO)
    proc = subprocess.Popen(_cli(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "checkpoint-20").is_dir():
        assert proc.poll() is None and time.time() < deadline, "run ended before its second checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists(), "the run finished before it was killed"
    subprocess.run(_cli(tmp_path / "killed", "--resume", "auto"), check=True, env=env, capture_output=True, cwd=REPO)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_cli_help_explains_every_command():
    for cmd in ["vocab", "pretrain", "finetune", "evaluate"]:
        out = subprocess.run([sys.executable, "-m", "minibert.train", cmd, "--help"], capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0 and "usage:" in out.stdout
    out = subprocess.run([sys.executable, "-m", "minibert.train", "finetune", "--help"], capture_output=True, text=True, cwd=REPO)
    for flag in ["--task", "--data", "--model", "--output-dir", "--max-steps", "--epochs", "--batch-size", "--lr",
                 "--seed", "--save-steps", "--resume"]:
        assert flag in out.stdout, flag
    top = subprocess.run([sys.executable, "-m", "minibert.train", "--help"], capture_output=True, text=True, cwd=REPO)
    assert "--config" in top.stdout and "distill-task" in top.stdout


def test_config_file_and_overrides(tmp_path):
    (tmp_path / "run.toml").write_text('lr = 0.002\nbatch_size = 8\nmax_length = 40\n')
    a = parse_args(["--config", str(tmp_path / "run.toml"), "finetune", "--lr", "0.1"])
    assert a.lr == 0.1 and a.batch_size == 8 and a.max_length == 40
    (tmp_path / "run.json").write_text('{"epochs": 3, "output-dir": "x"}')
    a = parse_args(["--config", str(tmp_path / "run.json"), "finetune"])
    assert a.epochs == 3 and a.output_dir == "x" and a.save_steps == 200  # the command's own default
    (tmp_path / "bad.json").write_text('{"learning_rate": 3}')
    with pytest.raises(SystemExit, match="unknown setting 'learning_rate'"):
        parse_args(["--config", str(tmp_path / "bad.json"), "finetune"])


def test_clear_errors_for_bad_setups(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "minibert.train", *args], capture_output=True, text=True, cwd=REPO)

    out = run("finetune", "--model", "tiny", "--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "o"))
    assert out.returncode != 0 and "nowhere" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.tsv").write_text("sentence\tlabel\ngood film \t1\nbad film \t7\n")
    (tmp_path / "bad" / "dev.tsv").write_text("sentence\tlabel\nok \t1\n")
    out = run("finetune", "--model", "tiny", "--data", str(tmp_path / "bad"), "--output-dir", str(tmp_path / "o"))
    assert out.returncode != 0 and "train.tsv:3" in out.stderr and "Traceback" not in out.stderr
    out = run("finetune", "--model", "tiny", "--lr", "-1", "--output-dir", str(tmp_path / "o"), "--max-train-examples", "10")
    assert out.returncode != 0 and "lr" in out.stderr
    with pytest.raises(ValueError, match="batch_size"):
        TrainArgs(batch_size=0)


@pytest.mark.filterwarnings("ignore:.*newly initialised")
def test_build_student_starts_from_the_teachers_classifier_when_it_reads_the_same_space(tok, tmp_path):
    from minibert import BertModel
    from minibert.train import build_student
    teacher = tiny_classifier(tok, seed=3)
    params = teacher.named_parameters()

    def same_head(student):
        s = student.named_parameters()
        return all(np.array_equal(s[n], params[n]) for n in ("classifier.weight", "classifier.bias"))

    copied = build_student("teacher:0", 2, tok, seed=0, teacher=teacher)
    assert same_head(copied)
    assert not same_head(build_student("teacher:0", 2, tok, seed=0, teacher=teacher, copy_classifier=False))
    # A stage-1 encoder folder of the teacher's width has no classifier: it gets the teacher's.
    BertModel(teacher.config, seed=5).save_pretrained(tmp_path / "stage1", tokenizer=tok)
    assert same_head(build_student(str(tmp_path / "stage1"), 2, tok, seed=0, teacher=teacher))
    # A folder that has its own classifier keeps it.
    copied.named_parameters()["classifier.bias"][...] = 7.0
    copied.save_pretrained(tmp_path / "with-head", tokenizer=tok)
    kept = build_student(str(tmp_path / "with-head"), 2, tok, seed=0, teacher=teacher)
    assert np.all(kept.named_parameters()["classifier.bias"] == 7.0)
