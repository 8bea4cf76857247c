"""`python -m minibert.train`: the command line, a thin shell over the library.

    python -m minibert.train                      # the quick TinyBERT pipeline on SST-2
    python -m minibert.train vocab --files data/gutenberg --vocab-size 8000 --output-dir runs/vocab
    python -m minibert.train pretrain --model tiny --max-steps 2000 --output-dir runs/pretrain
    python -m minibert.train finetune --task sst-2 --model minilm-l6 --output-dir runs/teacher
    python -m minibert.train evaluate --task sst-2 --model runs/teacher
    python -m minibert.train predict --model runs/quick/student "a gripping film" "dull"
    python -m minibert.train explain --model runs/quick/student --teacher runs/quick/teacher "a gripping film"
    python -m minibert.train <command> --help     # every flag, explained
    mpiexec -n 2 python -m minibert.train finetune ...   # data-parallel: pip install -e ".[mpi]"

Every flag can also come from a JSON or TOML file (`--config run.toml`, before or after the
command, keys spelled like the flags with underscores); flags given on the command line win
over the file.

An expected failure (an `errors.UserError`: bad data or settings, a non-finite loss, a damaged
checkpoint, an output folder in use; or an unreadable or full disk) prints one line
`error: <what>, <where>` and no traceback (`--debug` shows it); any other error is a bug and
keeps its traceback. Exit codes: 0 done; 1 an error; 2 a usage error (a flag,
--config, a setting's value: validated by type and range in settings.check_fields); 130
(SIGINT) or 143 (SIGTERM): interrupted, with a checkpoint written first (`--resume auto`
continues it) unless the signal came twice. One stop request covers the whole command (every
stage, evaluation and benchmark: interrupts.py), entered here; under mpiexec the processes
compare their parsed settings first and refuse to run when they differ.

This module parses flags and calls one library function per command; it holds no training
logic (runs: `pretrain.py`, `finetune.py`, `distillation.py`). The flags are the fields of the
settings dataclasses (`settings.py`, `trainer.TrainArgs`), turned into argparse groups by
`flags.py`: a new flag is a new field there, a new command a library function plus one
`command(...)` entry in build_parser.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from .messages import say
from . import data as D
from . import distributed
from .backend import require as require_device
from .explainer import explain_command
from .finetune import evaluate_folder, finetune
from .errors import UsageError, UserError
from .flags import DEFAULTS, add_flags, fill_defaults, from_args
from .inference import predict
from .interrupts import Interrupted, StopRequested, StopSignals, requested
from .pretrain import pretrain
from .report import results_table, summary_line
from .messages import error_line
from .settings import (SHARED_BY_STAGES, TASK_DISTILL_TRAINING, AugmentSettings, CorpusSettings,
                       ExplainSettings, GeneralDistillSettings, MaskingSettings, ModelSettings, PredictSettings,
                       RunOptions,
                       TaskDataSettings, TaskDistillSettings, TrainArgs, VocabSettings)
from .distillation import augment, general_distillation, pipeline
from .tokenizer import save_vocab
from .wordpiece_trainer import train_wordpiece_vocab

# The quick pipeline `python -m minibert.train` runs with no arguments: minutes on 2 cores. It is
# a demonstration, so running it again starts it afresh (--overwrite-output-dir) rather than
# refusing runs/quick's earlier checkpoints. Its student, the teacher's first and last layers, is
# the one at least 3x faster than the teacher at batch 1 and 32 (README, bench/student_sizes.py).
QUICK_PIPELINE = ["pipeline", "--student", "teacher:0,5", "--max-train-examples", "4000", "--inter-steps", "150",
                  "--pred-steps", "150", "--eval-steps", "50", "--output-dir", "runs/quick", "--overwrite-output-dir"]

EXIT_ERROR, EXIT_SIGINT = 1, 130  # an interrupted run exits with 128 + the signal's number; a usage error with 2
# The failures a user can cause and fix (errors.UserError) and the disk's: a one-line message, no traceback
# (unless --debug). Anything else (a bug, a NumPy error) keeps its traceback.
EXPECTED = (UserError, OSError)
DEBUG_HELP = "show the traceback of an error instead of one line"
DATA_PARALLEL = ("pretrain", "finetune", "distill-general", "distill-task", "pipeline")  # mpiexec -n N: distributed.py
CONFIG_HELP = "JSON or TOML file of flag values (flags given here win)"


# ============================================================================ commands


def cmd_vocab(a) -> None:
    s = from_args(VocabSettings, a)
    files = [str(p) for p in (s.files or [D.find_data("gutenberg", "--files")])]
    tokens = train_wordpiece_vocab(files, s.vocab_size, min_frequency=s.min_frequency, do_lower_case=not s.cased)
    path = save_vocab(tokens, Path(s.output_dir) / "vocab.txt")
    print(f"wrote {len(tokens)} tokens to {path}")


def cmd_pretrain(a) -> None:
    summary = pretrain(from_args(ModelSettings, a), from_args(CorpusSettings, a), from_args(MaskingSettings, a),
                       from_args(TrainArgs, a), from_args(RunOptions, a))
    print(json.dumps(summary["history"][-1], indent=2))


def cmd_finetune(a) -> None:
    summary = finetune(from_args(ModelSettings, a), from_args(TaskDataSettings, a), from_args(TrainArgs, a),
                       from_args(RunOptions, a))
    print(json.dumps(summary, indent=2))


def cmd_evaluate(a) -> None:
    print(json.dumps(evaluate_folder(from_args(ModelSettings, a), from_args(TaskDataSettings, a)), indent=2))


def cmd_distill_general(a) -> None:
    general_distillation(from_args(GeneralDistillSettings, a), from_args(CorpusSettings, a), from_args(TrainArgs, a),
                         from_args(RunOptions, a))


def cmd_augment(a) -> None:
    result = augment(from_args(TaskDataSettings, a), from_args(AugmentSettings, a), from_args(CorpusSettings, a))
    print(f"wrote {result['rows']} rows to {result['file']}")
    for variants in result["samples"].values():
        for variant in variants:
            print("   ", variant)


def cmd_predict(a) -> None:
    settings = from_args(PredictSettings, a)
    rows = predict(settings)
    if not settings.output:  # JSON lines on stdout (progress and notes go to stderr)
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))


def cmd_explain(a) -> None:
    print(f"wrote {explain_command(from_args(ExplainSettings, a))} (open it in a browser)")


def cmd_distill_task(a) -> None:
    """distill-task and pipeline: one library function; distill-task's --teacher defaults to a folder."""
    training = from_args(TrainArgs, a)
    results = pipeline(from_args(TaskDataSettings, a), from_args(TaskDistillSettings, a), training,
                       from_args(RunOptions, a))
    print(results_table(results))
    print(summary_line(results, training.output_dir))


# ========================================================================== the parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minibert.train",
        description="Train, fine-tune, evaluate and distil BERT models written in NumPy. "
                    "With no command, runs the quick TinyBERT pipeline on SST-2.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", default=None, help=CONFIG_HELP)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="command")

    def command(name: str, func, helptext: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(func=func)
        # after the command too (SUPPRESS: not given there leaves what was given before it)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        p.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
        return p

    p = command("vocab", cmd_vocab, "learn a WordPiece vocabulary from text files")
    add_flags(p, VocabSettings, "vocabulary")

    p = command("pretrain", cmd_pretrain, "pre-train a BERT with masked-LM + next-sentence prediction")
    add_flags(p, ModelSettings, "model", only=("model", "vocab"), model="tiny")
    add_flags(p, CorpusSettings, "corpus", dupe_factor=2)
    add_flags(p, MaskingSettings, "masking")
    add_flags(p, TrainArgs, "training", output_dir="runs/pretrain", lr=1e-3, batch_size=32, max_steps=1000,
              eval_steps=200, save_steps=200, warmup_ratio=0.05)
    add_flags(p, RunOptions, "run")

    p = command("finetune", cmd_finetune, "fine-tune a BERT (a classifier, or a regression for scores) on a GLUE "
                "task or your own CSV/TSV/JSON Lines files (--train-file, --dev-file or --validation-split)")
    add_flags(p, ModelSettings, "model", model="minilm-l6")
    add_flags(p, TaskDataSettings, "task data")
    add_flags(p, TrainArgs, "training", output_dir="runs/finetune", lr=5e-5, batch_size=32, epochs=1.0,
              eval_steps=500, save_steps=200)
    add_flags(p, RunOptions, "run")

    p = command("distill-general", cmd_distill_general, "TinyBERT stage 1: distil the pre-trained teacher into a "
                "student (random, or copied teacher layers) on the general corpus")
    add_flags(p, GeneralDistillSettings, "teacher and student")
    add_flags(p, CorpusSettings, "corpus", dupe_factor=1)
    add_flags(p, TrainArgs, "training", output_dir="runs/general", lr=1e-4, batch_size=32, max_steps=2000,
              eval_steps=500, save_steps=250, warmup_ratio=0.05)
    add_flags(p, RunOptions, "run")

    p = command("augment", cmd_augment, "TinyBERT data augmentation of a training file: your own CSV/TSV/JSON "
                "Lines (--train-file, rows written as you wrote them) or a GLUE task's train.tsv (masked-LM + GloVe "
                "candidates)")
    add_flags(p, TaskDataSettings, "task data", only=("task", "data", "train_file", "text_column", "text_pair_column",
                                                      "label_column", "task_type", "max_train_examples"))
    add_flags(p, AugmentSettings, "augmentation")
    add_flags(p, CorpusSettings, "corpus (for the masked-LM head)", dupe_factor=1)

    p = command("distill-task", cmd_distill_task, "task distillation from a fine-tuned teacher, on a GLUE task or your "
                "own files: with the default --method tinybert, the intermediate-layer stage then the prediction-layer "
                "stage (--inter-*, --pred-*)")
    add_flags(p, TaskDataSettings, "task data")
    add_flags(p, TaskDistillSettings, "task distillation", teacher="runs/teacher-sst2")
    add_flags(p, TrainArgs, "training (every stage)", only=SHARED_BY_STAGES,
              **{**TASK_DISTILL_TRAINING, "output_dir": "runs/distill"})
    add_flags(p, RunOptions, "run")

    p = command("pipeline", cmd_distill_task, "teacher fine-tuning (unless --teacher) + task distillation (default: "
                "TinyBERT's intermediate then prediction stages, student teacher:0,5) + the teacher/student table, on "
                "a GLUE task or your own files")
    add_flags(p, TaskDataSettings, "task data")
    add_flags(p, TaskDistillSettings, "task distillation")
    add_flags(p, TrainArgs, "training (every stage)", only=SHARED_BY_STAGES, **TASK_DISTILL_TRAINING)
    add_flags(p, RunOptions, "run")

    p = command("evaluate", cmd_evaluate, "evaluate a fine-tuned or distilled folder on a dev set: a GLUE "
                "task's or your own file (--dev-file); per-class precision/recall/F1 and the confusion matrix, or a "
                "regression's errors and the predict-the-mean baseline")
    add_flags(p, ModelSettings, "model", only=("model", "vocab"), model="runs/finetune")
    add_flags(p, TaskDataSettings, "task data")

    p = command("predict", cmd_predict, "label (or score, for a regression) texts, arguments or --input FILE, "
                "with a fine-tuned or distilled model folder (--model, required): label, score and every class's "
                "score, as JSON lines or TSV; blank inputs are skipped and reported")
    add_flags(p, PredictSettings, "prediction")

    p = command("explain", cmd_explain, "one self-contained HTML page of a model's attention and prediction on "
                "sentences; with --teacher, beside its teacher's, with the layer mapping and the distillation losses")
    add_flags(p, ExplainSettings, "explain")
    return parser


def read_config_file(path: str) -> dict:
    """A --config file's {flag name: value} (JSON, or TOML for a .toml file)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        if p.suffix == ".toml":
            import tomllib

            return tomllib.loads(p.read_text(encoding="utf-8"))
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise UsageError(f"--config {path}: {exc}") from exc


def parse_args(argv=None, parser=None) -> argparse.Namespace:
    """Flags, then the --config file for what the flags left unset, then the command's defaults."""
    parser = parser or build_parser()
    a = parser.parse_args(argv)
    if a.config:
        conf = read_config_file(a.config)
        known = getattr(a, DEFAULTS, {})  # this command's flags
        for key, value in conf.items():
            key = key.replace("-", "_")
            if key not in known:
                raise UsageError(f"--config {a.config}: unknown setting {key!r} for '{a.command}'")
            if getattr(a, key) in (None, []):  # every flag defaults to None (a positional list to []): not given
                setattr(a, key, value)
    return fill_defaults(a)


def settings_of(a: argparse.Namespace) -> dict:
    """The parsed settings of a command line ({flag name: value}), compared between processes at start-up."""
    return {"command": a.command, **{k: v for k, v in vars(a).items()
                                     if k in getattr(a, DEFAULTS, {}) and k not in ("progress",)}}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv  # known before parsing, so that a --config error honours it too
    try:
        parser = build_parser()
        a = parse_args(argv, parser)
        if a.command is None:
            say("no command given: running the quick TinyBERT pipeline on SST-2 "
                f"(python -m minibert.train {' '.join(QUICK_PIPELINE)}); see --help for the rest")
            a = parse_args(QUICK_PIPELINE, parser)
        require_device(getattr(a, "device", "numpy"))  # --device cupy without CuPy: one line, exit 2, before any work
        # one stop request for the whole command: every stage, evaluation and benchmark checks it (interrupts.py)
        with distributed.abort_on_error(EXPECTED), StopSignals():  # under mpiexec: an error on one process ends all
            w = distributed.setup(getattr(a, "device", "numpy"), a.command in DATA_PARALLEL)  # rank 0 alone prints
            w.same_everywhere("settings", settings_of(a))  # every process must run the same computation
            a.func(a)
            signum = w.first_signal(requested())
        if signum is not None:  # the signal came after the last point that checks it: the work is complete
            say(f"stopped: {signal.Signals(signum).name} came as the command finished; its work is complete")
            raise SystemExit(128 + signum)
    except Interrupted as exc:  # a checkpoint was written: say where, exit 128 + the signal
        if debug:
            raise
        say(f"stopped: {exc}")
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt as exc:  # a second signal, or a stop request outside a training step
        if debug:
            raise
        if isinstance(exc, StopRequested):
            say(f"stopped: {exc}")
        else:
            say("error: interrupted, stopped at once without writing a checkpoint (those already written stay)")
        raise SystemExit(getattr(exc, "exit_code", EXIT_SIGINT)) from None
    except EXPECTED as exc:
        if debug:
            raise
        print(error_line(exc), file=sys.stderr)  # one line, whatever the message holds
        raise SystemExit(getattr(exc, "exit_code", EXIT_ERROR)) from None


if __name__ == "__main__":
    main()
