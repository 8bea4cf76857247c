"""Tasks: the GLUE task registry, the readers of a task's files, matching a model's labels, and scoring.

    spec = get_task("sst-2")                                   # TaskSpec: columns, labels, metrics
    train = read_examples("sst-2", "data/SST-2/train.tsv")     # list[InputExample]
    spec = match_labels(spec, ModelLabels(("negative", "positive"), "runs/t"))  # ids as a model has them
    compute_metrics("sst-2", logits, labels)                   # {"acc": ...}

A task is one `TaskSpec`: its name, its folder under a data root, where a row keeps its
texts and label (positions in a GLUE task's TSV, or column names in your own CSV/TSV/JSON
Lines files), its label strings (or that it is a regression with a float score), the names
its classes get in a model's config.json, and its metrics. All nine GLUE tasks are in `TASKS`,
with their official metrics: CoLA (Matthews correlation), SST-2 (accuracy), MRPC and QQP
(accuracy, F1), STS-B (Pearson, Spearman; a regression), MNLI (accuracy on the matched and
the mismatched dev sets), QNLI, RTE, WNLI (accuracy). A new task, a regression task
included, joins in ONE place: add an entry to `_GLUE` below, or call
`register_task(TaskSpec(...))` from your own code. Everything else (the command line's
`--task` choices, `load_task_data`, `compute_metrics`, the augmentation of a task's
train.tsv) reads the spec. Your own files are a task too, made by `own_task` from the
training file's columns and labels (`roots.read_task`), never registered.

Class ids are the order of `label_list`: for GLUE, the order of transformers' GLUE
processors (which TinyBERT's code shares). A trained model's own order wins: see
`match_labels`, and MNLI's pitfall there.

This does not tokenize (`encoding.py` turns examples into ids), define the metrics
themselves (`metrics.py`, plain functions of arrays), parse CSV or JSON (`files.py`) or
find the files (`roots.py`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..textfile import read_text
from ..errors import DataError
from .files import Columns, Row, class_key, parse_number, read_table, resolve_columns, table_rows
from .metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS


@dataclass(frozen=True)
class InputExample:
    """One labelled example; `line` is its 1-based line number in the source file.

    label: the class index (int) of a classification task, the score (float) of a
    regression task.
    """

    text_a: str
    text_b: str | None
    label: int | float
    line: int


@dataclass(frozen=True)
class TaskSpec:
    """How to find, read and score a task.

    dir: the task's folder under a data root (a GLUE task's; "" for your own files).
    text_a_col, text_b_col, label_col: where a row keeps its fields. Integers are 0-based
    positions in a GLUE task's tab-separated file (label_col -1: the last field, as MNLI's
    gold label); strings are column names, read from a CSV/TSV header or JSON Lines keys
    (`files.py`). text_b_col is None for a single-text task. header: the file's first line
    is a header (always, for named columns).
    label_list: the label strings of a classification as the files write them, in class-id
    order; None for a regression task, whose label is a float score. label_names: readable
    names of the classes for config.json's id2label (default: label_list); files may use
    either ("1" or "positive" for SST-2).
    metrics: names computed by `compute_metrics`; main_metric: the one used for model
    selection (TinyBERT's choice).
    dev_sets: (file name, metric suffix) of each dev set in `dir`; the first is the one
    models are selected on, the others are reported beside it with their suffix (MNLI:
    dev_matched.tsv as "acc", dev_mismatched.tsv as "acc_mm", as transformers' run_glue).
    """

    name: str
    dir: str
    text_a_col: int | str
    text_b_col: int | str | None
    label_col: int | str
    header: bool
    label_list: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str
    label_names: tuple[str, ...] | None = None
    dev_sets: tuple[tuple[str, str], ...] = (("dev.tsv", ""),)
    origin: str = ""  # how the kind and classes were found, for the log line a run starts with (roots.read_task)

    def __post_init__(self):
        known = REGRESSION_METRICS if self.is_regression else CLASSIFICATION_METRICS
        kind = "regression" if self.is_regression else "classification"
        unknown = [m for m in self.metrics if m not in known]
        if unknown or not self.metrics:
            raise DataError(f"task {self.name!r}: metrics {list(self.metrics)} must be a non-empty subset of the "
                            f"{kind} metrics {list(known)}")
        if self.main_metric not in self.metrics:
            raise DataError(f"task {self.name!r}: main_metric {self.main_metric!r} is not one of {list(self.metrics)}")
        if self.label_list is not None and len(self.label_list) < 2:
            raise DataError(f"task {self.name!r}: a classification task needs at least 2 labels, "
                            f"got {list(self.label_list)} (label_list=None makes a regression task)")
        if self.label_names is not None and (self.label_list is None or len(self.label_names) != len(self.label_list)):
            raise DataError(f"task {self.name!r}: label_names {list(self.label_names)} must name each of the "
                            f"label_list {self.label_list}")
        if not self.dev_sets or self.dev_sets[0][1] != "":
            raise DataError(f"task {self.name!r}: dev_sets must start with the main dev set, suffix \"\"")

    @property
    def is_regression(self) -> bool:
        """True for a task scored by a float (STS-B): one output, MSE loss, correlations."""
        return self.label_list is None

    @property
    def num_labels(self) -> int:
        """Outputs of the classifier: the number of classes, or 1 for a regression."""
        return 1 if self.is_regression else len(self.label_list)

    @property
    def is_pair(self) -> bool:
        return self.text_b_col is not None

    @property
    def id2label(self) -> tuple[str, ...] | None:
        """The class names a model of this task carries in config.json, in id order (None: a regression)."""
        return self.label_names or self.label_list

    @property
    def label_index(self) -> dict[str, int]:
        """Every string a file may write for a class -> its id: the label strings, then the names
        (a name that is another class's label string keeps the label string's meaning)."""
        if self.is_regression:
            return {}
        index = {class_key(s): i for i, s in enumerate(self.label_list)}
        for i, name in enumerate(self.id2label):
            index.setdefault(class_key(name), i)
        return index


# The GLUE tasks, with the layout of their GLUE files, label strings in the order of transformers'
# GLUE processors (TinyBERT's too) and the class names of the Hugging Face `glue` datasets.
_GLUE = (
    # sentence<TAB>label, with a header line
    TaskSpec("sst-2", "SST-2", 0, None, 1, True, ("0", "1"), ("acc",), "acc", ("negative", "positive")),
    # source<TAB>label<TAB>author's mark<TAB>sentence, no header
    TaskSpec("cola", "CoLA", 3, None, 1, False, ("0", "1"), ("mcc",), "mcc", ("unacceptable", "acceptable")),
    # Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String, header, UTF-8 BOM
    TaskSpec("mrpc", "MRPC", 3, 4, 0, True, ("0", "1"), ("acc", "f1", "acc_and_f1"), "acc",
             ("not_equivalent", "equivalent")),
    # index genre filename year old_index source1 source2 sentence1 sentence2 score; score in [0, 5]
    TaskSpec("sts-b", "STS-B", 7, 8, 9, True, None, ("pearson", "spearman", "mse", "mae"), "pearson"),
    # id<TAB>qid1<TAB>qid2<TAB>question1<TAB>question2<TAB>is_duplicate, header
    TaskSpec("qqp", "QQP", 3, 4, 5, True, ("0", "1"), ("acc", "f1", "acc_and_f1"), "acc",
             ("not_duplicate", "duplicate")),
    # index promptID pairID genre 4 parses sentence1 sentence2 label1 [label2..label5] gold_label: 12 fields
    # in train.tsv, 16 in the dev files; the gold label is the last. Labels in the processors' order, which
    # differs from the Hugging Face `glue` dataset's (entailment, neutral, contradiction): see match_labels.
    TaskSpec("mnli", "MNLI", 8, 9, -1, True, ("contradiction", "entailment", "neutral"), ("acc",), "acc",
             dev_sets=(("dev_matched.tsv", ""), ("dev_mismatched.tsv", "_mm"))),
    # index<TAB>question<TAB>sentence<TAB>label, header
    TaskSpec("qnli", "QNLI", 1, 2, 3, True, ("entailment", "not_entailment"), ("acc",), "acc"),
    # index<TAB>sentence1<TAB>sentence2<TAB>label, header
    TaskSpec("rte", "RTE", 1, 2, 3, True, ("entailment", "not_entailment"), ("acc",), "acc"),
    # index<TAB>sentence1<TAB>sentence2<TAB>label, header
    TaskSpec("wnli", "WNLI", 1, 2, 3, True, ("0", "1"), ("acc",), "acc", ("not_entailment", "entailment")),
)

TASKS: dict[str, TaskSpec] = {}  # name -> spec, in registration order; the names are the `--task` choices


def _key(name: str) -> str:
    """A task name without case, '-', '_' or spaces: 'SST-2', 'sst2' and 'sst_2' are one task."""
    return re.sub(r"[-_ ]", "", str(name).lower())


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task to `TASKS` (the one step a new task needs); returns the spec.

    Raises ValueError if a task of the same name (up to case, '-', '_') is registered.
    """
    clash = [name for name in TASKS if _key(name) == _key(spec.name)]
    if clash:
        raise DataError(f"a task named {clash[0]!r} is already registered")
    TASKS[spec.name] = spec
    return spec


for _spec in _GLUE:
    register_task(_spec)


def get_task(task: str | TaskSpec) -> TaskSpec:
    """The TaskSpec for a task name, case and '-'/'_' insensitive ('SST-2', 'sst2', 'sst_2');
    a TaskSpec is returned as it is."""
    if isinstance(task, TaskSpec):
        return task
    for name, spec in TASKS.items():
        if _key(name) == _key(task):
            return spec
    raise DataError(f"unknown GLUE task {task!r}; known tasks: {', '.join(TASKS)}")


class UnknownLabelError(DataError):
    """A file's label that is not one of the task's classes (the message names the file and line)."""


def _parse_label(label_str: str, label_index: dict | None, regression: bool, where: str,
                 dropped: list | None = None) -> int | float | None:
    """A label field -> class id (label_index given: its keys are files.class_key forms), float
    score (regression), or non-negative int (neither). dropped: a list, to collect an unknown
    label's (where, label) and return None instead of raising (--drop-unknown-dev-labels)."""
    if regression:
        return parse_number(label_str, where)
    if label_index is not None:
        found = label_index.get(class_key(label_str))
        if found is None:
            if dropped is not None:
                dropped.append((where, label_str))
                return None
            raise UnknownLabelError(f"{where}: label {label_str!r} is not one of {list(label_index)}")
        return found
    if label_str.isdigit():
        return int(label_str)
    raise DataError(f"{where}: label {label_str!r} is not a non-negative integer")


def read_tsv(
    path,
    text_a_col: int,
    text_b_col: int | None = None,
    *,
    label_col: int,
    header: bool = True,
    label_list: Sequence[str] | None = None,
    regression: bool = False,
    label_index: dict[str, int] | None = None,
    dropped: list | None = None,
) -> list[InputExample]:
    """Read a tab-separated file of labelled examples, its fields by position.

    Fields are split on tabs only (no CSV quoting: GLUE text contains `"`); a leading UTF-8
    BOM and a trailing `\\r` are removed; text is stripped of surrounding spaces; wholly
    empty lines are skipped. label_col -1 is the last field. Labels are mapped to their index
    in `label_list` (or through `label_index`, a task's strings and names -> id), read as
    float scores when `regression`, or else parsed as non-negative integers.

    Raises FileNotFoundError for a missing file, and ValueError naming the file and line
    for an empty file, a missing header (the first line holds a valid label), a row with
    too few columns, an empty text, or an unknown label.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the .tsv file inside it (e.g. {path / 'train.tsv'})")
    if regression and (label_list is not None or label_index):
        raise DataError("a regression file has float scores, not a label_list")
    cols = [c for c in (text_a_col, text_b_col) if c is not None]
    if min(cols) < 0 or label_col < -1:
        raise DataError(f"column numbers must be >= 0 (-1 for a last-field label), got {cols + [label_col]}")
    need = max(cols + [label_col]) + 1
    if label_list is not None:
        label_index = {class_key(s): i for i, s in enumerate(label_list)}

    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        raise DataError(f"{path}: file is empty")

    examples = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        fields = line.split("\t")
        if header and lineno == 1:
            # A header names its label column ("label", "score", "gold_label"); a first line whose label
            # field reads as a label is data, and skipping it would lose a row without a word.
            try:
                found = _parse_label(fields[label_col].strip(), label_index, regression, "") if len(fields) >= need \
                    else None
            except ValueError:
                found = None
            if found is not None:
                raise DataError(f"{path}:1: the first line holds a label ({fields[label_col].strip()!r}) where the "
                                f"task's files have a header line; is the header missing?")
            continue
        if not line.strip():
            continue
        if len(fields) < need:
            raise DataError(f"{path}:{lineno}: expected at least {need} tab-separated columns, found {len(fields)}")
        label = _parse_label(fields[label_col].strip(), label_index, regression, f"{path}:{lineno}", dropped)
        if label is None:  # an unknown label, dropped and counted
            continue
        text_a = fields[text_a_col].strip()
        text_b = fields[text_b_col].strip() if text_b_col is not None else None
        if not text_a or text_b == "":
            raise DataError(f"{path}:{lineno}: empty text")
        examples.append(InputExample(text_a, text_b, label, lineno))
    if not examples:
        raise DataError(f"{path}: no examples (only a header or blank lines)")
    return examples


def read_glue(task: str | TaskSpec, path, dropped: list | None = None) -> list[InputExample]:
    """Read a train/dev .tsv file of a registered task ('sst-2'/'sst2', 'cola', 'mrpc', 'sts-b', ...)
    in the task's GLUE layout (its columns by position)."""
    spec = get_task(task)
    if reads_by_name(spec):
        raise DataError(f"task {spec.name!r} names its columns; read its files with read_examples")
    return read_tsv(path, spec.text_a_col, spec.text_b_col, label_col=spec.label_col, header=spec.header,
                    regression=spec.is_regression, label_index=None if spec.is_regression else spec.label_index,
                    dropped=dropped)


def reads_by_name(spec: TaskSpec) -> bool:
    """True when the task's columns are names (CSV/TSV header, JSON keys), False for GLUE positions."""
    return isinstance(spec.text_a_col, str)


def examples_from_rows(spec: TaskSpec, rows: Sequence[Row], path, dropped: list | None = None) -> list[InputExample]:
    """Rows read by column name (files.table_rows) -> examples, each label mapped through the
    task's classes (or read as a score); ValueError naming the file and line of a label the
    task does not have (or, `dropped` given, the row left out and listed there)."""
    index = None if spec.is_regression else spec.label_index
    labels = [_parse_label(r.label, index, spec.is_regression, f"{path}:{r.line}", dropped) for r in rows]
    examples = [InputExample(r.text_a, r.text_b, label, r.line) for r, label in zip(rows, labels) if label is not None]
    if not examples:
        raise DataError(f"{path}: no examples (only a header or blank lines)")
    return examples


def read_examples(task: str | TaskSpec, path, dropped: list | None = None) -> list[InputExample]:
    """The labelled examples of one of the task's files: by position (read_glue) for a GLUE
    layout, by column name (files.py: .csv, .tsv, .jsonl) for named columns. dropped: see
    examples_from_rows."""
    spec = get_task(task)
    if not reads_by_name(spec):
        return read_glue(spec, path, dropped)
    table = read_table(path)
    resolve_columns(table, Columns(spec.text_a_col, spec.text_b_col, spec.label_col))  # each named column is there
    return examples_from_rows(spec, table_rows(table, spec.text_a_col, spec.text_b_col, spec.label_col), path,
                              dropped)


def task_summary(spec: TaskSpec) -> str:
    """The line every run starts with: the task, its kind, its classes and how they were found, e.g.
    "task data/novels/train.csv: classification, 5 classes (alice, frankenstein, ...); --task-type auto: the
    labels are words, classes sorted alphabetically"."""
    if spec.is_regression:
        kind = "regression (one output, scored by " + ", ".join(spec.metrics) + ")"
    else:
        names = list(spec.id2label)
        shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
        kind = f"classification, {len(names)} classes ({shown})"
    origin = spec.origin or ("a GLUE task: its own classes and metrics" if spec.dir else "")
    return f"task {spec.name}: {kind}" + (f"; {origin}" if origin else "")


def own_task(name: str, columns: tuple[str, str | None, str], label_list: Sequence[str] | None) -> TaskSpec:
    """The task of your own files: its columns by name, its classes (None: a regression),
    accuracy (or Pearson, Spearman, MSE and MAE) as its metrics. Not registered: runs hand the spec itself around."""
    text, pair, label = columns
    if label_list is None:
        return TaskSpec(name, "", text, pair, label, True, None, ("pearson", "spearman", "mse", "mae"), "pearson")
    return TaskSpec(name, "", text, pair, label, True, tuple(label_list), ("acc",), "acc")


@dataclass(frozen=True)
class ModelLabels:
    """What a trained classifier's config.json says about its outputs: the class names in id
    order (None: a regression, one output), and `source`, the model's folder, for messages."""

    names: tuple[str, ...] | None
    source: str

    @property
    def generic(self) -> bool:
        """transformers' default names LABEL_0, LABEL_1, ...: a model saved without naming its classes."""
        return self.names is not None and _generic(self.names)


def _generic(names: Sequence[str]) -> bool:
    """transformers' default names LABEL_0, LABEL_1, ...: a model that says nothing about its classes."""
    return list(names) == [f"LABEL_{i}" for i in range(len(names))]


def match_labels(spec: TaskSpec, model: ModelLabels) -> TaskSpec:
    """The task as a trained model sees it (`model`: the class names of its config.json).

    Class ids follow the model, not the task: a model whose names are the task's (compared
    without case, as label strings or readable names) in another order gets a spec in the
    model's order, so its outputs are scored against the right labels. This is the MNLI
    pitfall: transformers' processors (and TinyBERT) order MNLI contradiction, entailment,
    neutral, while checkpoints trained on the Hugging Face `glue` dataset say entailment,
    neutral, contradiction. Names LABEL_0, LABEL_1, ... (a model saved without names) only
    have to be as many as the task's classes. Raises ValueError naming both sides otherwise.
    """
    names, source = model.names, model.source
    if names is None or spec.is_regression:
        if names is not None or not spec.is_regression:
            model_kind = "a regression (one output)" if names is None else f"a classifier of labels {list(names)}"
            task_kind = "a regression" if spec.is_regression else f"a classification of labels {list(spec.id2label)}"
            raise DataError(f"{source} is {model_kind}, but task {spec.name!r} is {task_kind}")
        return spec
    if len(names) == spec.num_labels and model.generic:
        return spec
    for known in (spec.id2label, spec.label_list):
        lower = [k.lower() for k in known]
        if len(names) == len(known) and sorted(n.lower() for n in names) == sorted(lower):
            order = [lower.index(n.lower()) for n in names]  # model id -> the task's id
            return replace(spec, label_list=tuple(spec.label_list[j] for j in order), label_names=tuple(names))
    raise DataError(f"{source} has the labels {list(names)}, but task {spec.name!r} has {list(spec.id2label)}"
                    + (f" (written {list(spec.label_list)} in its files)" if spec.label_names else ""))


def compute_metrics(task: str | TaskSpec, preds, labels) -> dict:
    """The task's metrics as a dict, in the order of `TaskSpec.metrics`: SST-2 {acc},
    CoLA {mcc}, MRPC {acc, f1, acc_and_f1}, STS-B {pearson, spearman}.

    preds: class ids (N,) or logits (N, C), which are arg-maxed; for a regression task the
    scores (N,) or the model's output (N, 1).
    """
    spec = get_task(task)
    preds = np.asarray(preds)
    if spec.is_regression:
        if preds.ndim == 2:
            if preds.shape[1] != 1:
                raise DataError(f"task {spec.name!r} is a regression: expected predictions (N,) or (N, 1), "
                                f"got {preds.shape}")
            preds = preds[:, 0]  # (N,)
        table = REGRESSION_METRICS
    else:
        if preds.ndim == 2:
            preds = preds.argmax(axis=-1)  # (N,)
        table = CLASSIFICATION_METRICS
    return {name: table[name](preds, labels) for name in spec.metrics}
