"""Data roots and task files: where the data sets live, which files a run reads, and reading them.

    spec, train, dev = load_task_data("sst-2", tok, max_length=64)   # finds <root>/SST-2/*.tsv
    spec, train, devs = load_task_sets(None, tok, train_file="my/train.csv", dev_file="my/dev.csv")
    vocab = default_vocab()                                          # <root>/bert-base-uncased/vocab.txt

A data root is a folder laid out as `data/` after the prepare scripts ran (and as the
shared data folder): `SST-2/`, `CoLA/`, `MRPC/`, `STS-B/`, `MNLI/`, ... (each task's
`TaskSpec.dir`), `wikitext-2-raw/` and `gutenberg/` (the pre-training corpora),
`bert-base-uncased/vocab.txt`. The roots are searched in order: $MINIBERT_DATA, ./data, the
repository's data/ folder, ../shared/data. A missing data set is a `DataNotFoundError` that
says how to get it.

Which files a run reads (`task_files`), from its --task, --data, --train-file, --dev-file:

* a GLUE task (--task; sst-2 when neither --task nor a file is given): its train.tsv and dev
  file(s) under --data or a data root, either replaceable by --train-file / --dev-file (an
  augmented train_aug.tsv, say). A .tsv is read in the task's GLUE layout unless a column
  flag is given; a .csv/.jsonl file (or a .tsv with column flags) by column names, its labels
  the task's label strings or class names ("1" or "positive" for SST-2);
* your own data (no --task, --train-file and/or --dev-file given): the files by column
  names, the classes (or a regression) from the training file (`files.py` says how), the
  dev file's labels mapped through them.

A run that continues a trained model passes its labels (`ModelLabels`): the class ids are
then the model's (`tasks.match_labels`), and labels it does not have are an error.

This does not download anything (the scripts in the repository's data/ folder do), parse a
file (`tasks.py`, `files.py`, `corpus.py`) or parse command-line flags (`minibert.train`;
the `flag` arguments here only name the flag in the error message).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import DataError, UserError
from .encoding import EncodedExamples, encode_examples
from .files import Columns, Table, label_kind, read_table, resolve_columns, table_rows
from .tasks import (InputExample, ModelLabels, TaskSpec, UnknownLabelError, examples_from_rows, get_task,
                    match_labels, own_task, read_examples)

CORPUS_DIRS = ("wikitext-2-raw", "gutenberg")  # the pre-training corpora under a data root
_REPO_DATA = Path(__file__).resolve().parents[2] / "data"  # <repo>/data, for a run from another folder


class DataNotFoundError(UserError, FileNotFoundError):
    """A data set is in none of the data roots; the message says how to get it."""


def data_roots() -> list[Path]:
    """Candidate data roots, in search order: $MINIBERT_DATA, ./data (the prepare scripts),
    <repo>/data, ../shared/data."""
    roots = []
    if os.environ.get("MINIBERT_DATA"):
        roots.append(Path(os.environ["MINIBERT_DATA"]))
    roots += [Path("data"), _REPO_DATA, Path("../shared/data")]
    return roots


def find_data(sub: str, flag: str) -> Path:
    """`<root>/<sub>` for the first data root that has it.

    Raises DataNotFoundError naming the roots searched and how to get the data: point
    `flag` (the command-line flag that overrides the lookup) at it, set MINIBERT_DATA, or
    run a prepare script.
    """
    for root in data_roots():
        if (root / sub).exists():
            return root / sub
    raise DataNotFoundError(
        f"cannot find '{sub}' under {', '.join(str(r) for r in data_roots())}.\n"
        f"Point {flag} at it, set MINIBERT_DATA to the folder that holds it, or fetch it with the "
        f"scripts in data/ (e.g. `python data/prepare_glue.py`, or `--from <folder>` to copy a local copy).")


def default_vocab() -> Path:
    """BERT's uncased WordPiece vocabulary, `bert-base-uncased/vocab.txt` under a data root."""
    return find_data("bert-base-uncased/vocab.txt", "--vocab")


@dataclass(frozen=True)
class TaskFiles:
    """The files a run reads. task: the GLUE task, or None for your own data. train: the
    training file (None: none given). dev: (file, metric suffix) of each dev set, the main one
    first. columns: the column flags (their None: the defaults of files.py)."""

    task: TaskSpec | None
    train: Path | None
    dev: tuple[tuple[Path, str], ...]
    columns: Columns = Columns()

    def by_name(self, path: Path) -> bool:
        """True when `path` is read by column names, False for the GLUE task's own TSV layout."""
        return self.task is None or self.columns != Columns() or path.suffix.lower() != ".tsv"


def task_files(task: str | TaskSpec | None = None, *, data_dir=None, train_file=None, dev_file=None,
               columns: Columns = Columns()) -> TaskFiles:
    """The files of a GLUE task or of your own data set (see the module docstring for the rules).

    data_dir: the folder with a GLUE task's train.tsv and dev file(s); default: the task's
    folder under the first data root that has it (`find_data(spec.dir, "--data")`), looked
    up only for a file not given.
    """
    if task is None and (train_file or dev_file):
        if data_dir:
            raise DataError("--data is a GLUE task's folder; your own data is --train-file and --dev-file "
                            "(or add --task for a GLUE task)")
        return TaskFiles(None, Path(train_file) if train_file else None,
                         ((Path(dev_file), ""),) if dev_file else (), columns)
    spec = get_task(task or "sst-2")
    folder = None
    if not (train_file and dev_file):
        folder = Path(data_dir) if data_dir else find_data(spec.dir, "--data")
    train = Path(train_file) if train_file else folder / "train.tsv"
    dev = ((Path(dev_file), ""),) if dev_file else tuple((folder / name, suffix) for name, suffix in spec.dev_sets)
    return TaskFiles(spec, train, dev, columns)


def _named(spec: TaskSpec, table: Table, columns: Columns) -> TaskSpec:
    """A GLUE task read from a file by column names (SST-2 as a CSV, say): its labels and metrics,
    the columns resolved in that file."""
    text, pair, label = resolve_columns(table, columns)
    if (pair is not None) != spec.is_pair:
        raise DataError(f"{table.path}: task {spec.name!r} takes {'two texts' if spec.is_pair else 'one text'}, but "
                        f"the columns read are {[c for c in (text, pair) if c]} (--text-column, --text-pair-column)")
    return replace(spec, text_a_col=text, text_b_col=pair, label_col=label, header=True)


def read_task(files: TaskFiles, *, task_type: str = "auto", model: ModelLabels | None = None,
              splits: tuple[str, ...] = ("train", "dev"),
              ) -> tuple[TaskSpec, list[InputExample] | None, dict[str, list[InputExample]]]:
    """The task's spec, its training examples (None when "train" is not in `splits`) and its
    dev sets {metric suffix: examples} (empty when "dev" is not), main one first.

    task_type: auto, classification or regression: how your own data's labels are read
    (files.label_kind); a GLUE task has its own. model: a trained model's labels; the class
    ids are then the model's, and the data's labels must be among them.
    """
    for split, given in (("train", files.train), ("dev", files.dev)):
        if split in splits and not given:
            raise DataError(f"your own data needs --{split}-file too (or --task for a GLUE task's {split} set)")
    spec, first = files.task, None
    if spec is None:
        spec, first = _own_task(files, task_type, model, "train" if "train" in splits else "dev")
    else:
        if task_type != "auto" and (task_type == "regression") != spec.is_regression:
            raise DataError(f"--task-type {task_type}: task {spec.name!r} is "
                            f"{'a regression' if spec.is_regression else 'a classification'}")
        if model is not None:
            spec = match_labels(spec, model)
    # an unknown label's message says where the classes came from
    classes_from = (f" (the labels of {model.source})" if model is not None and not model.generic else
                    f" (the classes of {first[0]})" if first is not None else "")

    def read(path: Path) -> list[InputExample]:
        try:
            if first is not None and path == first[0]:
                return examples_from_rows(spec, first[1], path)
            if files.task is not None and files.by_name(path):  # a GLUE task's examples in a CSV/JSON Lines file
                return read_examples(_named(spec, read_table(path), files.columns), path)
            return read_examples(spec, path)
        except UnknownLabelError as exc:
            raise UnknownLabelError(f"{exc}{classes_from}") from None

    train = read(files.train) if "train" in splits else None
    dev = {suffix: read(path) for path, suffix in files.dev} if "dev" in splits else {}
    return spec, train, dev


def _own_task(files: TaskFiles, task_type: str, model: ModelLabels | None, split: str) -> tuple[TaskSpec, tuple]:
    """Your own data's spec, from the training file (or the dev file, for evaluation alone):
    its columns, and its classes from the model when it names them, else from the file's
    labels (files.label_kind). Returns the spec and (that file, its rows)."""
    path = files.train if split == "train" else files.dev[0][0]
    table = read_table(path)
    columns = resolve_columns(table, files.columns)
    rows = table_rows(table, *columns)
    if model is not None and not model.generic:
        model_kind = "regression" if model.names is None else "classification"
        if task_type not in ("auto", model_kind):
            raise DataError(f"--task-type {task_type}: {model.source} is a {model_kind} model")
        label_list = model.names
    else:
        _, label_list = label_kind(rows, task_type, path)
        if model is not None and (label_list is None or len(label_list) != len(model.names)):
            found = "a regression" if label_list is None else f"the labels {list(label_list)}"
            raise DataError(f"{model.source} has the labels {list(model.names)}, but {path} has {found}")
    return own_task(str(path), columns, label_list), (path, rows)


def load_task_sets(task: str | TaskSpec | None, tokenizer, *, data_dir=None, train_file=None, dev_file=None,
                   columns: Columns = Columns(), task_type: str = "auto", model: ModelLabels | None = None,
                   splits: tuple[str, ...] = ("train", "dev"), max_length: int = 64, max_train_examples: int = 0,
                   max_eval_examples: int = 0) -> tuple[TaskSpec, EncodedExamples | None, dict[str, EncodedExamples]]:
    """A task's spec, its encoded training set and its encoded dev sets {metric suffix: set}
    (MNLI: {"": matched, "_mm": mismatched}; one set, "", for the others and your own data).

    The files are found by `task_files` and read by `read_task` (see there for task_type,
    model and splits). max_train_examples / max_eval_examples: when > 0, keep only that many
    examples from the start of each file. Rows are encoded up to `max_length` tokens.
    """
    files = task_files(task, data_dir=data_dir, train_file=train_file, dev_file=dev_file, columns=columns)
    spec, train, dev = read_task(files, task_type=task_type, model=model, splits=splits)
    cut = lambda examples, n: examples[:n] if n else examples
    train = None if train is None else encode_examples(cut(train, max_train_examples), tokenizer, max_length)
    dev = {suffix: encode_examples(cut(examples, max_eval_examples), tokenizer, max_length)
           for suffix, examples in dev.items()}
    return spec, train, dev


def load_task_data(task: str | TaskSpec | None, tokenizer,
                   **kwargs) -> tuple[TaskSpec, EncodedExamples, EncodedExamples]:
    """A task's spec and its encoded train and (main) dev sets: `load_task_sets` with one dev set."""
    spec, train, dev = load_task_sets(task, tokenizer, **kwargs)
    return spec, train, dev[""]
