"""The settings of every run, one dataclass per group: the typed arguments of the library's runs.

Each field is a knob of a run *and* a command-line flag: `field(default=..., metadata={"help":
..., "choices": ...})` is the only place its default, its explanation and its allowed values are
written. `minibert.flags` turns a class into an argparse group (`--max-seq-length` for
`max_seq_length`); notebooks and `bench/` build the same classes directly:

    pipeline(TaskDataSettings(max_train_examples=1500), TaskDistillSettings(pred_steps=60),
             TrainArgs(output_dir="runs/x"))

Groups are composed, never copied: how to optimise (learning rate, steps, batch, checkpoints)
is `TrainArgs` alone, which every training command takes whole; where a run continues from and
on which backend is `RunOptions`. A run with several stages (task distillation: the teacher,
2a, 2b) takes one `TrainArgs` for all of them and derives each stage's from it
(`TaskDistillSettings.stage_args`: the stage's folder, length, rate and schedule).

Every value is validated in one place, `check_fields` (each group's __post_init__ calls it),
whether it came from a flag, a `--config` file or a library call: its type from the field's
annotation (an int is a whole number, a float a finite number, ...) and its range from its
`setting(...)` declaration (numbers at least 0 unless `minimum=` says otherwise; `maximum=`,
`above=`, `nonempty=`). A new field is validated by declaring it; a new group's __post_init__
calls check_fields. A field declared `result=True` changes what a training run computes: a
resume compares it with the checkpoint's (`result_settings`, the one list).

This module holds values and checks them; it does not parse command lines (that is
`flags.py`), read files or build models (`specs.py`, `data/`). It imports from minibert only
registries, for choices and help: the tasks, the model presets, the distillation methods and
layer mappings (`methods.py`), the learning-rate schedules and the devices (`backend.DEVICES`),
so every run module can import it.
"""
from __future__ import annotations

import math
import numbers
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from .backend import DEVICES
from .config import PRESETS, SHAPE_HELP
from . import data as D
from .optim import SCHEDULES
from .methods import GENERAL_METHODS, MAPPING_STRATEGIES, METHODS, method_help


def setting(default, help: str, choices=None, metavar: str | None = None, positional: bool = False, *,
            result: bool = False, minimum=None, maximum=None, above=None, nonempty: bool = False):
    """A dataclass field with its flag help (and allowed values) as metadata; positional: an
    argument without a --flag (the predict command's texts).

    Every value is checked by `check_fields` (each group's __post_init__): its type from the
    annotation (an int is an integer, not 2.5 or true; a float is a finite number; a str, a bool,
    a list of str; None only where the annotation allows it) and its range: a number is at least
    0 unless `minimum` says otherwise (None: any), at most `maximum`, above `above` (strictly); a
    str with `nonempty` is not "". result=True: the setting changes what a training run
    computes, so a resume compares it with the checkpoint's (`result_settings`)."""
    meta = {"help": help, "result": result, "minimum": 0 if minimum is None else minimum, "maximum": maximum,
            "above": above, "nonempty": nonempty}
    if minimum is ANY:
        meta["minimum"] = None
    if choices is not None:
        meta["choices"] = tuple(choices)
    if metavar is not None:
        meta["metavar"] = metavar
    if positional:
        meta["positional"] = True
    return field(default=default, metadata=meta)


ANY = object()  # setting(..., minimum=ANY): a number that may be negative


def _expected_type(annotation) -> tuple[type, bool, bool]:
    """A field's annotation -> (its value type, whether None is allowed, whether it is a list of them)."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = len(args) < len(typing.get_args(annotation)), args[0]
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], optional, True
    return annotation, optional, False


def _type_problem(value, kind: type) -> str | None:
    """Why `value` is not a `kind` (int, float, str, bool), or None."""
    if kind is bool:
        return None if isinstance(value, bool) else "true or false"
    if kind is int:  # numbers.Integral: NumPy's integers too (a step count computed with NumPy)
        ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
        return None if ok else "a whole number"
    if kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
        return None if ok else "a finite number"
    if kind is str:
        return None if isinstance(value, str) else "a string"
    return None


def check_fields(settings) -> None:
    """Raise a ValueError naming the first field whose value has the wrong type, is out of its range, or is not one
    of its declared choices (see `setting`). The one place every setting (flag, --config key, library argument)
    is validated: a new field gets its checks from its annotation and its `setting(...)` declaration."""
    cls = type(settings)
    hints = typing.get_type_hints(cls)
    for f in fields(settings):
        value, meta = getattr(settings, f.name), f.metadata
        where = f"{cls.__name__}.{f.name}={value!r} (--{f.name.replace('_', '-')})"
        kind, optional, is_list = _expected_type(hints[f.name])
        if value is None:
            if optional:
                continue
            raise ValueError(f"{where}: a value is required")
        values = value if is_list else [value]
        problem = "a list" if is_list and not isinstance(value, list) else next(
            (p for p in map(lambda v: _type_problem(v, kind), values) if p), None)
        if problem:
            raise ValueError(f"{where}: expected {'a list of ' if is_list else ''}{problem}")
        allowed = meta.get("choices")
        if allowed is not None and any(v not in allowed for v in values):
            raise ValueError(f"{cls.__name__}.{f.name}={value!r}: expected one of {', '.join(map(str, allowed))}")
        if kind in (int, float):
            low, high, above = meta.get("minimum", 0), meta.get("maximum"), meta.get("above")
            for v in values:
                if low is not None and v < low:
                    raise ValueError(f"{where}: expected at least {low}")
                if high is not None and v > high:
                    raise ValueError(f"{where}: expected at most {high}")
                if above is not None and not v > above:
                    raise ValueError(f"{where}: expected more than {above}")
        if kind is str and meta.get("nonempty") and any(not v.strip() for v in values):
            raise ValueError(f"{where}: expected a non-empty string")


check_choices = check_fields  # the earlier name: every group's __post_init__ calls it


def result_settings(*groups) -> dict:
    """{name: value} of the fields marked `result=True` in these settings groups: what a resume compares (the one
    list of what changes a run's computation, besides TrainArgs' RESULT_SETTINGS and the data's fingerprint)."""
    return {f.name: getattr(g, f.name) for g in groups if g is not None for f in fields(g) if f.metadata.get("result")}


MODEL_HELP = (f"a Hugging Face folder (config.json + model.safetensors), minilm-l6 (the pre-trained teacher package), "
              f"a shape {SHAPE_HELP}, a preset for a fresh random model ({', '.join(sorted(PRESETS))}; a note says "
              f"it is not pre-trained), or teacher:0,2,4 (those MiniLM layers, finetune only)")


@dataclass
class ModelSettings:
    """Which model a run starts from, and its vocabulary (pretrain, finetune, evaluate)."""

    model: str = setting("tiny", MODEL_HELP, result=True)
    vocab: str | None = setting(None, "vocab.txt to use (default: the model folder's, else bert-base-uncased)", result=True)
    new_head: bool = setting(False, "finetune --model FOLDER of a trained classifier: keep its encoder and start a new, "
                                    "random classifier for this data's classes (other labels, another number of "
                                    "them, or a regression), as transformers' ignore_mismatched_sizes", result=True)

    def __post_init__(self):
        check_fields(self)


@dataclass
class TaskDataSettings:
    """A task's examples: a GLUE task or your own files, where they are, how much, how long (see data.roots)."""

    task: str | None = setting(None, "GLUE task (default: sst-2, or your own data when --train-file/--dev-file are "
                                     "given without --task)", choices=D.TASKS)
    data: str | None = setting(None, "folder with the GLUE task's train.tsv and dev.tsv (default: <data root>/SST-2 "
                                     "etc.; data roots: $MINIBERT_DATA, ./data, the repository's data/, the download "
                                     "cache $MINIBERT_CACHE or ~/.cache/minibert/data, where a missing GLUE task is "
                                     "downloaded, checksums verified, unless --offline)")
    offline: bool = setting(False, "never download a missing GLUE task (also MINIBERT_OFFLINE=1): stop with a message "
                                   "saying where it was looked for")
    train_file: str | None = setting(None, "training file: your own .csv, .tsv (with a header line) or .jsonl, or with "
                                           "--task a replacement for <data>/train.tsv in the task's layout, e.g. "
                                           "augment's train_aug.tsv")
    dev_file: str | None = setting(None, "dev file, as --train-file (default with --task: <data>/dev.tsv; MNLI: "
                                         "dev_matched.tsv and dev_mismatched.tsv)")
    text_column: str | None = setting(None, "column of the text (default: the first of text, sentence, sentence1)")
    text_pair_column: str | None = setting(None, "column of the second text of a pair (default: text_pair next to "
                                                 "text, sentence2 next to sentence1, else none)")
    label_column: str | None = setting(None, "column of the label (default: label, else score)")
    task_type: str = setting("auto", "your own data's labels: auto (integers or words: classification, classes "
                                     "sorted; numbers with decimals, 1.0 or 3.5: regression), classification or "
                                     "regression; the run's first line says which, and why",
                             choices=D.files.TASK_TYPES)
    labels: list[str] | None = setting(None, "your own data's classes, in id order (default: the training file's "
                                             "labels, sorted); a training label not among them is an error",
                                       metavar="LABEL")
    drop_unknown_dev_labels: bool = setting(False, "leave out dev rows whose label is not a class (counted on the "
                                                   "terminal) instead of stopping at the first")
    validation_split: float = setting(0.0, "hold out this fraction of the training examples as the dev set, seeded "
                                           "by --seed and stratified by class, instead of a dev file (0: use "
                                           "--dev-file, or the task's dev set)")
    max_length: int = setting(64, "maximum tokens per example, [CLS] and [SEP] included, at most the model's "
                                  "max_position_embeddings; longer examples are cut (the longer text of a pair "
                                  "first) and the log says how many", minimum=1)
    max_train_examples: int = setting(0, "use only the first N training examples; 0: all")
    max_eval_examples: int = setting(0, "use only the first N dev examples; 0: all")

    def __post_init__(self):
        check_fields(self)
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(f"TaskDataSettings.validation_split={self.validation_split}: expected a fraction in "
                             f"[0, 1)")


@dataclass
class CorpusSettings:
    """The general (unlabelled) corpus: files, sequence length, passes, held-out documents."""

    corpus: list[str] | None = setting(None, "corpus files or folders (default: WikiText-2 + the Gutenberg books)")
    max_seq_length: int = setting(128, "tokens per sequence, at most the model's max_position_embeddings", minimum=1)
    dupe_factor: int = setting(1, "passes over the corpus with different pairings and masks", minimum=1)
    heldout_fraction: float = setting(0.05, "documents held out for evaluation", maximum=1)

    def __post_init__(self):
        check_fields(self)


@dataclass
class MaskingSettings:
    """BERT's pre-training targets: which tokens the masked LM predicts (80% [MASK], 10% random, 10% kept)."""

    masked_lm_prob: float = setting(0.15, "fraction of tokens to predict", maximum=1)
    max_predictions_per_seq: int = setting(20, "cap on predicted tokens per instance", minimum=1)
    whole_word_mask: bool = setting(False, "mask all pieces of a word together")

    def __post_init__(self):
        check_fields(self)


@dataclass
class VocabSettings:
    """Learning a WordPiece vocabulary (the vocab command)."""

    files: list[str] | None = setting(None, "text files or folders (default: the Gutenberg books)")
    vocab_size: int = setting(8000, "vocabulary size, special tokens included", minimum=1)
    min_frequency: int = setting(2, "ignore words seen fewer times")
    cased: bool = setting(False, "keep case and accents (false: lower-case and strip accents)")
    output_dir: str = setting("runs/vocab", "where vocab.txt is written", nonempty=True)

    def __post_init__(self):
        check_fields(self)


# The TrainArgs that change what a resumed run computes (the data order, the schedule, the
# update). The others (where and how often to log, evaluate or save; progress bars) may change
# on resume. Also compared: "total_steps" (from max_steps/epochs: the schedule's length) and
# "data" (the training data's fingerprint: other examples, max length or vocabulary).


@dataclass
class TrainArgs:
    """How to optimise: the training loop's settings (trainer.py), one group for every training command."""

    output_dir: str = setting("runs/default", "folder for the final model (Hugging Face layout), checkpoint-<step>/ "
                                              "folders, metrics.jsonl and results.json", nonempty=True)
    max_steps: int = setting(0, "optimizer steps to run; 0 means use --epochs")
    epochs: float = setting(1.0, "passes over the training data (fractions allowed) when --max-steps is 0")
    batch_size: int = setting(32, "examples per micro-batch, all processes together (under mpiexec -n N each takes "
                                  "batch_size/N)", minimum=1, result=True)
    grad_accum: int = setting(1, "micro-batches per optimizer step (the effective batch is batch_size x grad_accum)", minimum=1, result=True)
    lr: float = setting(5e-5, "peak learning rate", result=True)
    weight_decay: float = setting(0.01, "decoupled weight decay (never applied to biases and LayerNorm weights)", result=True)
    warmup_ratio: float = setting(0.1, "fraction of the steps spent warming the learning rate up from 0", maximum=1, result=True)
    schedule: str = setting("linear", "learning-rate schedule: linear (warmup then linear decay to 0), constant, "
                                      "constant_with_warmup", choices=tuple(SCHEDULES), result=True)
    optimizer: str = setting("adamw", "adamw (bias-corrected, as torch) or bertadam (BERT/TinyBERT reference: no "
                                      "bias correction)", choices=("adamw", "bertadam"), result=True)
    max_grad_norm: float = setting(1.0, "clip gradients to this norm; 0 disables clipping", result=True)
    clip: str = setting("global", "global (one norm over all gradients, as BERT) or per_tensor (each tensor alone, "
                                  "as TinyBERT's BertAdam)", choices=("global", "per_tensor"), result=True)
    seed: int = setting(42, "seed for initialisation, data order and dropout", maximum=2**32 - 1, result=True)
    log_steps: int = setting(10, "log to the progress bar and metrics.jsonl every this many steps", minimum=1)
    eval_steps: int = setting(0, "evaluate every this many steps (0: only at the end)")
    save_steps: int = setting(0, "write checkpoint-<step>/ every this many steps (0: only at the end)")
    save_total_limit: int = setting(2, "how many checkpoint-<step>/ folders to keep, the newest (best/ is kept "
                                       "apart)", minimum=1)
    metric_for_best: str = setting("", "evaluation metric whose best value is kept in output_dir/best")
    early_stopping_patience: int = setting(0, "stop when this many evaluations in a row have not improved "
                                              "--metric-for-best (0: never; needs --eval-steps)")
    progress: bool = setting(True, "show a progress bar")
    overwrite_output_dir: bool = setting(False, "start afresh in an output folder that holds another run's "
                                                "checkpoints, deleting them (and its metrics.jsonl and best/); "
                                                "without it such a folder is refused unless --resume is given")
    resume_override: list[str] | None = setting(None, "settings allowed to differ from the checkpoint's on --resume "
                                                      "(recorded in trainer_state.json): any setting a resume "
                                                      "compares (batch_size, lr, seed, ..., a distillation's "
                                                      "teacher, temperature, ...), total_steps, data, or all",
                                                metavar="SETTING")

    def __post_init__(self):
        check_fields(self)
        checks = {
            "batch_size": self.batch_size >= 1, "grad_accum": self.grad_accum >= 1, "lr": self.lr >= 0,
            "epochs": self.epochs > 0 or self.max_steps > 0, "max_steps": self.max_steps >= 0,
            "warmup_ratio": 0 <= self.warmup_ratio <= 1, "weight_decay": self.weight_decay >= 0,
            "log_steps": self.log_steps >= 1, "eval_steps": self.eval_steps >= 0, "save_steps": self.save_steps >= 0,
            "save_total_limit": self.save_total_limit >= 1, "early_stopping_patience": self.early_stopping_patience >= 0,
            "resume_override": all(k in OVERRIDABLE for k in self.resume_override or ()),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training setting {bad[0]}={getattr(self, bad[0])!r}")


@dataclass
class RunOptions:
    """Where a training run continues from, and on which array backend it runs."""

    resume: str | None = setting(None, "auto: continue from the latest checkpoint in --output-dir (each stage's, in "
                                       "distillation; a fresh start where there is none), or a checkpoint folder",
                                 metavar="auto|FOLDER")
    device: str = setting("numpy", "numpy (CPU) or cupy (CUDA GPU)", choices=DEVICES)

    def __post_init__(self):
        check_fields(self)


METHOD_HELP = method_help()
RELATION_HEADS_HELP = ("minilmv2: relation heads R, which must divide both hidden sizes; 0: the teacher's number "
                       "of attention heads")
RELATION_LAYER_HELP = "minilmv2: the teacher layer (1-based) the student's last layer learns from; 0: the last"


@dataclass
class GeneralDistillSettings:
    """TinyBERT stage 1: which teacher and student (optimisation is TrainArgs, the text CorpusSettings)."""

    teacher: str = setting("minilm-l6", "pre-trained teacher: minilm-l6 or a folder", result=True)
    student: str = setting("tinybert-3", "a preset or a shape such as 3x256 (random init), teacher:0,2,4 (copied "
                                         "layers) or a folder", result=True)
    vocab: str | None = setting(None, "vocab.txt (default: the teacher's)", result=True)
    mapping: str = setting("uniform", "layer mapping: which teacher layer each student layer learns from",
                           choices=MAPPING_STRATEGIES, result=True)
    method: str = setting("tinybert", method_help(stage1=True), choices=GENERAL_METHODS, result=True)
    relation_heads: int = setting(0, RELATION_HEADS_HELP, result=True)
    relation_layer: int = setting(0, RELATION_LAYER_HELP, result=True)

    def __post_init__(self):
        check_fields(self)


@dataclass
class TaskDistillSettings:
    """Stage 2 on a task: the pair, the method, and each stage's length and rate.

    How every stage optimises (batch, seed, optimiser, clipping, accumulation, checkpoints,
    logging, the output folder) is one `TrainArgs` shared by the stages, and where a run
    continues from and on which backend `RunOptions`; `stage_args` composes a stage's own
    `TrainArgs` from them. The fields here are what differs between the stages or belongs to
    the method.
    """

    teacher: str | None = setting(None, "folder of the teacher fine-tuned on the task; the pipeline without it "
                                        "fine-tunes the MiniLM-L6 teacher on the training examples first", result=True)
    student: str = setting("teacher:0,5", "teacher:0,5 (copy those teacher layers; the default, the teacher's first and "
                                          "last: about 3x its speed, the quick job's and docs/study.md's student), "
                                          "a shape such as 3x256 or a preset (random init), or a folder such as "
                                          "distill-general's output", result=True)
    fit_dense_mismatch: str = setting(
        "error", "a --student folder whose fit_dense.safetensors does not fit this teacher's width: error (stop, "
                 "naming the file), or reinit (start the projection afresh, with a log line)",
        choices=("error", "reinit"), result=True)
    vocab: str | None = setting(None, "vocab.txt (default: the teacher's)", result=True)
    mapping: str = setting("uniform", "layer mapping (pkd: uniform is Patient KD's skip, top its last)",
                           choices=MAPPING_STRATEGIES, result=True)
    method: str = setting("tinybert", METHOD_HELP + ". The default, tinybert, runs both stages (--inter-*, then "
                                       "--pred-*): its intermediate stage added 2.4 points on all of SST-2 "
                                       "(docs/results.md). kd is the cheaper choice at a fixed budget: on 1,000 SST-2 "
                                       "labels and the same number of steps it gained +2.75 points over fine-tuning "
                                       "the same student, tinybert +2.29 (docs/study.md)", choices=tuple(METHODS),
                          result=True)
    temperature: float = setting(1.0, "prediction-layer temperature t (kd, distilbert, pkd: with Hinton's t^2 factor)",
                                 above=0, result=True)
    alpha: float = setting(1.0, "kd, distilbert, pkd: weight of the soft targets; the gold labels' cross-entropy "
                                "gets 1 - alpha (1: the teacher alone)", maximum=1, result=True)
    beta: float = setting(1.0, "distilbert: weight of the hidden-state cosine loss; pkd: of the [CLS] patient loss", result=True)
    relation_heads: int = setting(0, RELATION_HEADS_HELP, result=True)
    relation_layer: int = setting(0, RELATION_LAYER_HELP, result=True)
    cache_teacher: bool = setting(True, "compute the frozen teacher's logits once per example and reuse them in later "
                                        "epochs of the prediction stage (CPU backend)", result=True)
    inter_steps: int = setting(0, "intermediate-layer steps; 0: use --inter-epochs")
    inter_epochs: float = setting(1.0, "intermediate-layer epochs, for a method with that stage (tinybert, minilm, "
                                       "minilmv2; kd, distilbert and pkd have none); 0 with --inter-steps 0 skips the "
                                       "stage")
    inter_lr: float = setting(5e-5, "intermediate-layer learning rate, constant")
    pred_steps: int = setting(0, "prediction-layer steps; 0: use --pred-epochs")
    pred_epochs: float = setting(1.0, "prediction-layer epochs")
    pred_lr: float = setting(3e-5, "prediction-layer peak learning rate")
    teacher_epochs: float = setting(1.0, "pipeline without --teacher: fine-tuning epochs")
    teacher_lr: float = setting(5e-5, "pipeline without --teacher: fine-tuning rate")

    def __post_init__(self):
        check_fields(self)
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"TaskDistillSettings.alpha={self.alpha}: expected a weight in [0, 1]")

    def stage_args(self, training: TrainArgs, stage: str, metric_for_best: str = "") -> TrainArgs:
        """The TrainArgs of one stage: `training`, with the stage's folder, length, rate and schedule.

        teacher: fine-tuning (pipeline without --teacher), warmup + linear decay, no evaluation;
        intermediate (2a): a constant rate, no evaluation; prediction (2b): warmup + linear
        decay, evaluated every `training.eval_steps`, the best by `metric_for_best` kept.
        """
        folder = str(Path(training.output_dir) / stage)
        if stage == "teacher":
            return replace(training, output_dir=folder, epochs=self.teacher_epochs, max_steps=0, lr=self.teacher_lr,
                           schedule="linear", warmup_ratio=0.1, eval_steps=0, metric_for_best="")
        if stage == "intermediate":
            return replace(training, output_dir=folder, epochs=self.inter_epochs or 1.0, max_steps=self.inter_steps,
                           lr=self.inter_lr, schedule="constant", warmup_ratio=0.0, eval_steps=0, metric_for_best="")
        if stage == "prediction":
            return replace(training, output_dir=folder, epochs=self.pred_epochs or 1.0, max_steps=self.pred_steps,
                           lr=self.pred_lr, schedule="linear", warmup_ratio=0.1, metric_for_best=metric_for_best)
        raise ValueError(f"TaskDistillSettings.stage_args: unknown stage {stage!r}")


# The TrainArgs each task-distillation stage sets itself (stage_args): a distillation command has
# every other TrainArgs flag, shared by its stages.
PER_STAGE = ("epochs", "max_steps", "lr", "warmup_ratio", "schedule", "metric_for_best")
SHARED_BY_STAGES = tuple(f.name for f in fields(TrainArgs) if f.name not in PER_STAGE)
# What task distillation writes where no --output-dir is given, and evaluates how often.
TASK_DISTILL_TRAINING = dict(output_dir="runs/pipeline", eval_steps=100)


@dataclass
class AugmentSettings:
    """TinyBERT data augmentation: where candidate words come from and how many copies (task: TaskDataSettings)."""

    teacher: str = setting("minilm-l6", "encoder whose MLM head proposes words")
    vocab: str | None = setting(None, "vocab.txt (default: the teacher's)")
    candidates: str = setting(
        "tinybert", "tinybert: masked-LM candidates for single-piece words, GloVe for the others; glove: GloVe "
                    "neighbours for every word, no masked LM (much faster, not the paper's)",
        choices=("tinybert", "glove"))
    mlm: str | None = setting(None, "a BertForMaskedLM folder to use as is (default: train a head, see --mlm-steps)")
    mlm_steps: int = setting(300, "steps of MLM-head training on the general corpus")
    n_aug: int = setting(20, "augmented copies per sentence, N_a", minimum=1)
    p: float = setting(0.4, "replacement probability per word", maximum=1)
    k: int = setting(15, "candidates per word, K", minimum=1)
    seed: int = setting(42, "seed for the head, the corpus and the replacements", maximum=2**32 - 1)
    output_dir: str = setting("runs/augment", "train_aug.tsv (and mlm-head/) go here", nonempty=True)
    progress: bool = setting(True, "progress bars")

    def __post_init__(self):
        check_fields(self)


@dataclass
class PredictSettings:
    """Predictions of a fine-tuned or distilled classifier folder (the predict command; see inference.py)."""

    texts: list[str] | None = setting(None, "texts to label (or --input); a blank or whitespace-only text, here or in "
                                            "--input, is skipped and counted on the terminal, with its line, and gets "
                                            "no output row",
                                      metavar="TEXT", positional=True)
    model: str | None = setting(None, "required: the classifier's folder (config.json, model.safetensors, vocab.txt), "
                                      "e.g. runs/quick/student or a finetune --output-dir")
    input: str | None = setting(None, "file of texts: .txt (one per line), or .csv/.tsv (with a header) or .jsonl "
                                      "holding --text-column", metavar="FILE")
    output: str | None = setting(None, "write the predictions here: .jsonl (text, label, score, scores by label) or "
                                       ".tsv (one score_<label> column per class); default: JSON lines on stdout",
                                 metavar="FILE")
    text_column: str | None = setting(None, "the column of --input holding the texts (default: the first of text, "
                                            "sentence, sentence1)")
    text_pair_column: str | None = setting(None, "the column holding each text's pair, for a pair task (default: "
                                                 "text_pair next to text, sentence2 next to sentence1, else none)")
    keep_columns: list[str] | None = setting(None, "columns of --input to copy into each output row (an id, a gold "
                                                   "label); one named like an output field (text, label, score, "
                                                   "...) is written as input_<name>", metavar="COLUMN")
    batch_size: int = setting(32, "texts per forward pass (sorted by length first, so each batch pads little)", minimum=1)
    max_length: int = setting(0, "maximum tokens per text, [CLS] and [SEP] included; longer texts are cut and "
                                 "counted; 0: the model's max_position_embeddings (512 for BERT)")
    progress: bool = setting(True, "a progress bar for --input files")
    device: str = setting("numpy", "numpy (CPU) or cupy (CUDA GPU)", choices=DEVICES)

    def __post_init__(self):
        check_fields(self)
        if self.batch_size < 1:
            raise ValueError(f"PredictSettings.batch_size must be at least 1, got {self.batch_size}")
        if self.max_length < 0:
            raise ValueError(f"PredictSettings.max_length must be 0 (the model's maximum) or more, got "
                             f"{self.max_length}")


@dataclass
class ExplainSettings:
    """The explain command: one self-contained HTML page of a model's attention, beside its teacher's (explainer.py)."""

    texts: list[str] | None = setting(None, "sentences to look at (one input each; the page switches between them)",
                                      metavar="TEXT", positional=True)
    model: str = setting("runs/quick/student", "the model's folder (a fine-tuned or distilled classifier shows its "
                                               "prediction; an encoder such as minilm-l6 its attention alone)")
    teacher: str | None = setting(None, "the teacher's folder: shown beside the model (the student), with the layer "
                                        "mapping and the distillation losses on each sentence")
    output: str = setting("explain.html", "the HTML file to write (self-contained: opens offline)", metavar="FILE")
    mapping: str = setting("uniform", "the layer mapping drawn between student and teacher (TinyBERT's "
                                      "layer_matching.layer_mapping)", choices=MAPPING_STRATEGIES)
    fit_dense: str | None = setting(None, "folder holding the student's fit_dense.safetensors, for the hidden-state "
                                          "loss (default: the student's folder, else the prediction/best/ folder "
                                          "of the pipeline run it came from; none: raw states, if widths match)",
                                    metavar="FOLDER")
    max_length: int = setting(128, "maximum tokens per sentence, [CLS] and [SEP] included (longer ones are cut)", minimum=3)

    def __post_init__(self):
        check_fields(self)
        if self.max_length < 3:
            raise ValueError(f"ExplainSettings.max_length must be at least 3, got {self.max_length}")


# Every settings group, for the command line's tests: each field must be a flag with its help.
ALL = (ModelSettings, TaskDataSettings, CorpusSettings, MaskingSettings, VocabSettings, TrainArgs, RunOptions,
       GeneralDistillSettings, TaskDistillSettings, AugmentSettings, PredictSettings, ExplainSettings)

# The TrainArgs that change what a resumed run computes (the data order, the schedule, the
# update): those declared result=True. The others (where and how often to log, evaluate or save;
# progress bars) may change on resume. Also compared: the other groups' result=True fields
# (result_settings, given to the Trainer), "total_steps" (from max_steps/epochs: the schedule's
# length) and "data" (the training data's fingerprint: other examples, max length or vocabulary).
RESULT_SETTINGS = tuple(f.name for f in fields(TrainArgs) if f.metadata.get("result"))
OVERRIDABLE = tuple(dict.fromkeys([*RESULT_SETTINGS, *(f.name for g in ALL for f in fields(g) if f.metadata.get(
    "result")), "total_steps", "data", "all"]))
