"""The command line: every command's flags and help, --config files, clear errors, exact resume after SIGKILL.

The runs themselves are library functions, tested in test_trainer.py, test_tinybert.py (distillation.py) and
friends; here they are reached the way a user reaches them, through `python -m minibert.train`.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from minibert import settings
from minibert.flags import UsageError, from_args
from minibert.train import build_parser, main, parse_args
from minibert.settings import TrainArgs

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ["vocab", "pretrain", "finetune", "evaluate", "distill-general", "augment", "distill-task", "pipeline",
            "predict"]


def _cli(out, *extra):
    return [sys.executable, "-m", "minibert.train", "finetune", "--model", "tiny", "--task", "sst-2",
            "--max-train-examples", "2000", "--max-eval-examples", "50", "--max-length", "32", "--batch-size", "16",
            "--max-steps", "150", "--save-steps", "10", "--eval-steps", "0", "--lr", "1e-3", "--progress", "false",
            "--output-dir", str(out), *extra]


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(_cli(tmp_path / "full"), check=True, env=env, capture_output=True, cwd=REPO)
    proc = subprocess.Popen(_cli(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 300
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
    def help_of(*args):
        out = subprocess.run([sys.executable, "-m", "minibert.train", *args, "--help"], capture_output=True, text=True,
                             cwd=REPO)
        assert out.returncode == 0 and "usage:" in out.stdout, out.stderr
        return " ".join(out.stdout.split())  # argparse wraps lines

    for cmd in COMMANDS:
        help_of(cmd)
    text = help_of("finetune")
    for flag in ["--task", "--data", "--model", "--output-dir", "--max-steps", "--epochs", "--batch-size", "--lr",
                 "--seed", "--save-steps", "--resume"]:
        assert flag in text, flag
    assert "(default: runs/finetune)" in text  # the command's own default, not TrainArgs'
    assert "fit_dense.safetensors does not fit" in help_of("distill-task")  # what a mismatched stage-1 folder does
    top = help_of()
    assert "--config" in top and "distill-task" in top


def _flag_helps() -> dict:
    """{--flag (or a positional's name): [its help in each command that has it]} over every command of the parser."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {}
    for p in sub.choices.values():
        for action in p._actions:
            for flag in action.option_strings or [action.dest]:
                helps.setdefault(flag, []).append(action.help)
    return helps


def test_every_setting_is_a_flag_with_its_help():
    """The settings dataclasses are the one declaration: each field is a flag whose help is the field's."""
    helps = _flag_helps()
    for cls in (*settings.ALL, TrainArgs):
        for f in fields(cls):
            flag = f.name if f.metadata.get("positional") else "--" + f.name.replace("_", "-")
            assert flag in helps, f"{cls.__name__}.{f.name} has no flag"
            assert any(h.startswith(f.metadata["help"]) for h in helps[flag]), (cls.__name__, f.name, helps[flag])


def test_flags_build_the_settings_with_each_commands_defaults():
    a = parse_args(["pretrain"])
    assert from_args(settings.CorpusSettings, a) == settings.CorpusSettings(dupe_factor=2)
    assert from_args(settings.MaskingSettings, a) == settings.MaskingSettings()
    assert from_args(TrainArgs, a) == TrainArgs(output_dir="runs/pretrain", lr=1e-3, batch_size=32, max_steps=1000,
                                                eval_steps=200, save_steps=200, warmup_ratio=0.05)
    a = parse_args(["distill-task", "--pred-steps", "7", "--progress", "false", "--grad-accum", "2"])
    assert from_args(settings.TaskDistillSettings, a) == settings.TaskDistillSettings(
        teacher="runs/teacher-sst2", pred_steps=7)
    assert from_args(TrainArgs, a) == TrainArgs(output_dir="runs/distill", eval_steps=100, progress=False, grad_accum=2)
    assert parse_args(["vocab", "--cased"]).cased is True  # a boolean flag alone means true
    assert parse_args(["vocab", "--cased", "no"]).cased is False
    assert parse_args(["pretrain", "--corpus", "a.txt", "b"]).corpus == ["a.txt", "b"]
    with pytest.raises(ValueError, match="TaskDistillSettings.mapping"):
        settings.TaskDistillSettings(mapping="sideways")  # the library checks what argparse's choices check


TRAINING_COMMANDS = ("pretrain", "finetune", "distill-general", "distill-task", "pipeline")


def test_every_training_command_has_every_training_flag():
    """One TrainArgs for every training command: a multi-stage command has every flag but those each
    stage sets itself (settings.PER_STAGE: its length, rate and schedule, from --inter-*/--pred-*)."""
    parser = build_parser()
    for command in TRAINING_COMMANDS:
        flags = {f for a in parser._subparsers._group_actions[0].choices[command]._actions for f in a.option_strings}
        expected = {f.name for f in fields(TrainArgs)} | {f.name for f in fields(settings.RunOptions)}
        if command in ("distill-task", "pipeline"):
            expected -= set(settings.PER_STAGE)
        missing = sorted(n for n in expected if "--" + n.replace("_", "-") not in flags)
        assert not missing, (command, missing)


def test_each_distillation_stage_composes_the_shared_training_settings():
    s, training = settings.TaskDistillSettings(inter_steps=3, pred_steps=5), TrainArgs(grad_accum=4, output_dir="o")
    for stage in ("teacher", "intermediate", "prediction"):
        args = s.stage_args(training, stage)
        assert args.grad_accum == 4 and args.output_dir == str(Path("o") / stage)
    assert s.stage_args(training, "intermediate").schedule == "constant"
    assert s.stage_args(training, "prediction", "acc").metric_for_best == "acc"


def test_train_py_is_a_thin_shell():
    assert len((REPO / "minibert" / "train.py").read_text().splitlines()) <= 350
    # bench/ and the notebooks reach the library directly, never through the command line
    for path in [*(REPO / "bench").glob("*.py"), *(REPO / "notebooks").glob("*.ipynb")]:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":  # the code, not what an earlier run printed
            text = "".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code")
        # "minibert.train import", not "train import": "from minibert.pretrain import ..." is the library
        for needle in ("minibert.train import", "import minibert.train", "Namespace", "main(["):
            assert needle not in text, f"{path.name} uses {needle!r}"


def test_config_file_and_overrides(tmp_path):
    (tmp_path / "run.toml").write_text('lr = 0.002\nbatch_size = 8\nmax_length = 40\n')
    a = parse_args(["--config", str(tmp_path / "run.toml"), "finetune", "--lr", "0.1"])
    assert a.lr == 0.1 and a.batch_size == 8 and a.max_length == 40
    (tmp_path / "run.json").write_text('{"epochs": 3, "output-dir": "x"}')
    a = parse_args(["--config", str(tmp_path / "run.json"), "finetune"])
    assert a.epochs == 3 and a.output_dir == "x" and a.save_steps == 200  # the command's own default
    (tmp_path / "bad.json").write_text('{"learning_rate": 3}')
    with pytest.raises(UsageError, match="unknown setting 'learning_rate'"):  # the command line exits with 2
        parse_args(["--config", str(tmp_path / "bad.json"), "finetune"])


def test_config_anywhere_on_the_command_line(tmp_path):
    (tmp_path / "run.toml").write_text('lr = 0.002\nbatch_size = 8\n')
    (tmp_path / "p.json").write_text('{"texts": ["from the file"], "batch-size": 4}')
    config = str(tmp_path / "run.toml")
    for argv in (["--config", config, "finetune", "--lr", "0.1"], ["finetune", "--config", config, "--lr", "0.1"],
                 ["finetune", "--lr", "0.1", "--config", config]):
        a = parse_args(argv)
        assert (a.lr, a.batch_size, a.config) == (0.1, 8, config), argv  # flags win, the file fills the rest
    assert parse_args(["predict", "--config", str(tmp_path / "p.json")]).texts == ["from the file"]
    assert parse_args(["predict", "typed", "--config", str(tmp_path / "p.json")]).texts == ["typed"]
    with pytest.raises(UsageError, match="unknown setting 'lr' for 'predict'"):
        parse_args(["predict", "x", "--config", config])


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


def test_missing_teacher_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["distill-task", "--teacher", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "o")])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err and len(err.strip().splitlines()) == 1


def _run_cli(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, "-m", "minibert.train", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


def test_augment_then_distill_task_on_a_glue_task_from_the_command_line(tmp_path):
    """The README's flow at toy size: a teacher, augment's train_aug.tsv in SST-2's layout, distill-task on it."""
    small = ["--task", "sst-2", "--max-length", "24", "--max-eval-examples", "16"]
    out = _run_cli("finetune", "--model", "tiny", *small, "--max-train-examples", "32", "--max-steps", "2",
                   "--progress", "false", "--output-dir", tmp_path / "teacher")
    assert out.returncode == 0, out.stderr
    out = _run_cli("augment", "--task", "sst-2", "--candidates", "glove", "--n-aug", "2", "--max-train-examples", "6",
                   "--progress", "false", "--output-dir", tmp_path / "aug")
    assert out.returncode == 0, out.stderr
    aug = tmp_path / "aug" / "train_aug.tsv"
    assert aug.read_text().startswith("sentence\tlabel\n") and f"rows to {aug}" in out.stdout
    out = _run_cli("distill-task", *small, "--teacher", tmp_path / "teacher", "--student", "tiny", "--train-file", aug,
                   "--pred-steps", "2", "--eval-steps", "2", "--batch-size", "4", "--progress", "false",
                   "--output-dir", tmp_path / "student")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "student" / "student" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}  # SST-2's classes, as the teacher named them


def test_your_own_csv_from_the_command_line(tmp_path, data_dir):
    # run where the data is, as a user would: minibert and the data root by absolute paths
    env = {**os.environ, "PYTHONPATH": str(REPO), "MINIBERT_DATA": str(data_dir)}
    rows = [("a fine film", "good"), ("awful, really", "bad"), ("so-so", "meh")] * 4
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f'"{t}",{l}\n' for t, l in rows))
    (tmp_path / "dev.csv").write_text("text,label\n" + "".join(f'"{t}",{l}\n' for t, l in rows[:3]))
    out = _run_cli("finetune", "--model", "tiny", "--train-file", "train.csv", "--dev-file", "dev.csv",
                   "--max-steps", "2", "--progress", "false", "--output-dir", "model", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "model" / "config.json").read_text())["label2id"] == {"bad": 0, "good": 1, "meh": 2}
    out = _run_cli("evaluate", "--model", "model", "--dev-file", "dev.csv", cwd=tmp_path, env=env)
    assert out.returncode == 0 and json.loads(out.stdout)["examples"] == 3, out.stderr
    for args, message in [
        (["evaluate", "--model", "model", "--task", "sst-2"],
         "model has the labels ['bad', 'good', 'meh'], but task 'sst-2' has ['negative', 'positive'] "
         "(written ['0', '1'] in its files)"),
        (["evaluate", "--model", "model", "--dev-file", "train.csv", "--label-column", "stars"],
         "train.csv: no column 'stars' (--label-column); the columns are 'text', 'label'"),
        (["finetune", "--model", "tiny", "--train-file", "train.csv", "--output-dir", "x"],
         "your own data needs --dev-file too (or --task for a GLUE task's dev set, or --validation-split FRACTION)"),
    ]:
        out = _run_cli(*args, cwd=tmp_path, env=env)
        assert out.returncode == 1 and out.stderr.strip() == f"error: {message}", (args, out.stderr)
