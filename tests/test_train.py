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
