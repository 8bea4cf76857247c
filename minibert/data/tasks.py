"""GLUE tasks: the task registry, the readers of a task's files, and the scoring of its predictions.

    spec = get_task("sst-2")                                   # TaskSpec: columns, labels, metrics
    train = read_glue("sst-2", "data/SST-2/train.tsv")         # list[InputExample]
    compute_metrics("sst-2", logits, labels)                   # {"acc": ...}

A task is one `TaskSpec` in `TASKS`: its name, its folder under a data root, how its TSV is
read (columns, header), its label strings (or that it is a regression with a float score)
and its metrics. A new task, a regression task included, joins in ONE place: add an entry
to `_GLUE` below, or call `register_task(TaskSpec(...))` from your own code. Everything
else (the command line's `--task` choices, `load_task_data`, `compute_metrics`, the
augmentation of a task's train.tsv) reads the spec.

This does not tokenize (`encoding.py` turns examples into ids), define the metrics
themselves (`metrics.py`, plain functions of arrays) or find the files (`roots.py`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

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

    dir: the task's folder under a data root (holding train.tsv and dev.tsv).
    text_a_col, text_b_col, label_col: 0-based columns of the tab-separated file;
    text_b_col is None for a single-sentence task. header: the first line is a header.
    label_list: the label strings of a classification task, mapped to their index (the
    class id); None for a regression task, whose label column is a float score.
    metrics: names computed by `compute_metrics`; main_metric: the one used for model
    selection (TinyBERT's choice).
    """

    name: str
    dir: str
    text_a_col: int
    text_b_col: int | None
    label_col: int
    header: bool
    label_list: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str

    def __post_init__(self):
        known = REGRESSION_METRICS if self.is_regression else CLASSIFICATION_METRICS
        kind = "regression" if self.is_regression else "classification"
        unknown = [m for m in self.metrics if m not in known]
        if unknown or not self.metrics:
            raise ValueError(f"task {self.name!r}: metrics {list(self.metrics)} must be a non-empty subset of the "
                             f"{kind} metrics {list(known)}")
        if self.main_metric not in self.metrics:
            raise ValueError(f"task {self.name!r}: main_metric {self.main_metric!r} is not one of {list(self.metrics)}")
        if self.label_list is not None and len(self.label_list) < 2:
            raise ValueError(f"task {self.name!r}: a classification task needs at least 2 labels, "
                             f"got {list(self.label_list)} (label_list=None makes a regression task)")

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


# The GLUE tasks, with the layout of their GLUE `train.tsv`/`dev.tsv` files.
_GLUE = (
    # sentence<TAB>label, with a header line
    TaskSpec("sst-2", "SST-2", 0, None, 1, True, ("0", "1"), ("acc",), "acc"),
    # source<TAB>label<TAB>author's mark<TAB>sentence, no header
    TaskSpec("cola", "CoLA", 3, None, 1, False, ("0", "1"), ("mcc",), "mcc"),
    # Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String, header, UTF-8 BOM
    TaskSpec("mrpc", "MRPC", 3, 4, 0, True, ("0", "1"), ("acc", "f1", "acc_and_f1"), "acc"),
    # index genre filename year old_index source1 source2 sentence1 sentence2 score; score in [0, 5]
    TaskSpec("sts-b", "STS-B", 7, 8, 9, True, None, ("pearson", "spearman"), "pearson"),
    # index<TAB>sentence1<TAB>sentence2<TAB>label, header
    TaskSpec("rte", "RTE", 1, 2, 3, True, ("entailment", "not_entailment"), ("acc",), "acc"),
    # index<TAB>sentence1<TAB>sentence2<TAB>label, header
    TaskSpec("wnli", "WNLI", 1, 2, 3, True, ("0", "1"), ("acc",), "acc"),
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
        raise ValueError(f"a task named {clash[0]!r} is already registered")
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
    raise ValueError(f"unknown GLUE task {task!r}; known tasks: {', '.join(TASKS)}")


def _parse_label(label_str: str, label_index: dict | None, regression: bool, where: str) -> int | float:
    """A label field -> class index (label_index given), float score (regression), or
    non-negative int (neither)."""
    if regression:
        try:
            score = float(label_str)
        except ValueError:
            score = None
        if score is None or not math.isfinite(score):
            raise ValueError(f"{where}: label {label_str!r} is not a finite number")
        return score
    if label_index is not None:
        if label_str not in label_index:
            raise ValueError(f"{where}: label {label_str!r} is not one of {list(label_index)}")
        return label_index[label_str]
    if label_str.isdigit():
        return int(label_str)
    raise ValueError(f"{where}: label {label_str!r} is not a non-negative integer")


def read_tsv(
    path,
    text_a_col: int,
    text_b_col: int | None = None,
    *,
    label_col: int,
    header: bool = True,
    label_list: Sequence[str] | None = None,
    regression: bool = False,
) -> list[InputExample]:
    """Read a tab-separated file of labelled examples.

    Fields are split on tabs only (no CSV quoting: GLUE text contains `"`); a leading UTF-8
    BOM and a trailing `\\r` are removed; text is stripped of surrounding spaces; wholly
    empty lines are skipped. Labels are mapped to their index in `label_list`, read as
    float scores when `regression`, or else parsed as non-negative integers.

    Raises FileNotFoundError for a missing file, and ValueError naming the file and line
    for an empty file, a row with too few columns, an empty text, or an unknown label.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the .tsv file inside it (e.g. {path / 'train.tsv'})")
    if regression and label_list is not None:
        raise ValueError("a regression file has float scores, not a label_list")
    cols = [c for c in (text_a_col, text_b_col, label_col) if c is not None]
    if min(cols) < 0:
        raise ValueError(f"column numbers must be >= 0, got {cols}")
    need = max(cols) + 1
    label_index = {s: i for i, s in enumerate(label_list)} if label_list is not None else None

    try:
        lines = path.read_bytes().decode("utf-8-sig").split("\n")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid UTF-8 (byte {exc.start}): {exc.reason}") from None
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        raise ValueError(f"{path}: file is empty")

    examples = []
    for lineno, raw in enumerate(lines, start=1):
        if header and lineno == 1:
            continue
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < need:
            raise ValueError(f"{path}:{lineno}: expected at least {need} tab-separated columns, found {len(fields)}")
        label = _parse_label(fields[label_col].strip(), label_index, regression, f"{path}:{lineno}")
        text_a = fields[text_a_col].strip()
        text_b = fields[text_b_col].strip() if text_b_col is not None else None
        if not text_a or text_b == "":
            raise ValueError(f"{path}:{lineno}: empty text")
        examples.append(InputExample(text_a, text_b, label, lineno))
    if not examples:
        raise ValueError(f"{path}: no examples (only a header or blank lines)")
    return examples


def read_glue(task: str | TaskSpec, path) -> list[InputExample]:
    """Read a train/dev .tsv file of a registered task ('sst-2'/'sst2', 'cola', 'mrpc', 'sts-b', ...)."""
    spec = get_task(task)
    return read_tsv(path, spec.text_a_col, spec.text_b_col, label_col=spec.label_col, header=spec.header,
                    label_list=spec.label_list, regression=spec.is_regression)


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
                raise ValueError(f"task {spec.name!r} is a regression: expected predictions (N,) or (N, 1), "
                                 f"got {preds.shape}")
            preds = preds[:, 0]  # (N,)
        table = REGRESSION_METRICS
    else:
        if preds.ndim == 2:
            preds = preds.argmax(axis=-1)  # (N,)
        table = CLASSIFICATION_METRICS
    return {name: table[name](preds, labels) for name in spec.metrics}
