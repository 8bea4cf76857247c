"""Data roots and task files: where the data sets live, which files a run reads, and reading them.

    spec, train, dev = load_task_data("sst-2", tok, max_length=64)   # finds <root>/SST-2/*.tsv
    spec, train, devs = load_task_sets(None, tok, train_file="my/train.csv", dev_file="my/dev.csv")
    vocab = default_vocab()                                          # <root>/bert-base-uncased/vocab.txt

A data root is a folder laid out as `data/` after the prepare scripts ran (and as the
shared data folder): `SST-2/`, `CoLA/`, `MRPC/`, `STS-B/`, `MNLI/`, ... (each task's
`TaskSpec.dir`), `wikitext-2-raw/` and `gutenberg/` (the pre-training corpora),
`bert-base-uncased/vocab.txt`. The roots are searched in order: $MINIBERT_DATA, ./data, the
repository's data/ folder, then the download cache ($MINIBERT_CACHE, default
~/.cache/minibert/data). A GLUE task found in none of them is downloaded into the cache from
its canonical source (`glue_sources.py`, checksums verified, `download.py`), unless told to stay
offline (--offline, or MINIBERT_OFFLINE=1); any other missing data set is a
`DataNotFoundError` that says how to get it.

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

This does not parse a
file (`tasks.py`, `files.py`, `corpus.py`) or parse command-line flags (`minibert.train`;
the `flag` arguments here only name the flag in the error message).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import DataError, UserError
from ..messages import say
from .encoding import EncodedExamples, encode_examples
from .files import Columns, Table, label_kind, read_table, resolve_columns, table_rows, why_label_kind
from .tasks import (InputExample, ModelLabels, TaskSpec, UnknownLabelError, examples_from_rows, get_task,
                    match_labels, own_task, read_examples)

CORPUS_DIRS = ("wikitext-2-raw", "gutenberg")  # the pre-training corpora under a data root
_REPO_DATA = Path(__file__).resolve().parents[2] / "data"  # <repo>/data, for a run from another folder


class DataNotFoundError(UserError, FileNotFoundError):
    """A data set is in none of the data roots; the message says how to get it."""


def cache_root() -> Path:
    """Where GLUE tasks fetched by the commands go: $MINIBERT_CACHE, else ~/.cache/minibert/data."""
    return Path(os.environ.get("MINIBERT_CACHE") or Path.home() / ".cache" / "minibert" / "data").expanduser()


def offline() -> bool:
    """True when MINIBERT_OFFLINE says to download nothing (1, true, yes)."""
    return os.environ.get("MINIBERT_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def data_roots() -> list[Path]:
    """Candidate data roots, in search order: $MINIBERT_DATA, ./data (the prepare scripts),
    <repo>/data, the download cache (cache_root)."""
    roots = []
    if os.environ.get("MINIBERT_DATA"):
        roots.append(Path(os.environ["MINIBERT_DATA"]))
    return roots + [Path("data"), _REPO_DATA, cache_root()]


def find_data(sub: str, flag: str, fetch: bool = False) -> Path:
    """`<root>/<sub>` for the first data root that has it; fetch: a GLUE task's folder found in none
    is downloaded into the cache (fetch_glue), unless offline (the argument's caller or MINIBERT_OFFLINE).

    Raises DataNotFoundError naming the roots searched and how to get the data: point
    `flag` (the command-line flag that overrides the lookup) at it, set MINIBERT_DATA, or
    run a prepare script.
    """
    for root in data_roots():
        if (root / sub).exists():
            return root / sub
    from .glue_sources import FILES, files_of

    if fetch and files_of(FILES, sub) and not offline():
        return fetch_glue(sub)
    stay = (" Staying offline (--offline or MINIBERT_OFFLINE), so it was not downloaded."
            if fetch and files_of(FILES, sub) else "")
    raise DataNotFoundError(
        f"cannot find '{sub}' under {', '.join(str(r) for r in data_roots())}.{stay}\n"
        f"Point {flag} at it, set MINIBERT_DATA to the folder that holds it, or fetch it with the "
        f"scripts in data/ (e.g. `python data/prepare_glue.py`, or `--from <folder>` to copy a local copy).")


def fetch_glue(folder: str) -> Path:
    """Download a GLUE task's files (its `glue_sources` entries) into the cache, verified and atomic;
    returns <cache>/<folder>. Each file is written whole or not at all, so an interrupted fetch leaves
    nothing that a later lookup would take for the task."""
    from .download import PrepareError, fetch
    from .glue_sources import files_of, glue_files

    files, root = files_of(glue_files(), folder), cache_root()
    say(f"'{folder}' is in none of the data roots: downloading it from {files[0].sources[0].url} into {root} "
        f"(checksums verified; --offline or MINIBERT_OFFLINE=1 to stop this)")
    try:
        fetch(files, root, log=say)
    except (PrepareError, OSError) as exc:
        raise DataNotFoundError(f"could not download '{folder}' into {root}: {exc}. Fetch it by hand "
                                f"(python data/prepare_glue.py --only {folder}) or set MINIBERT_DATA") from None
    say(f"wrote {', '.join(f.path for f in files)} under {root}")
    return root / folder


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
               columns: Columns = Columns(), offline: bool = False, need_dev: bool = True) -> TaskFiles:
    """The files of a GLUE task or of your own data set (see the module docstring for the rules).

    data_dir: the folder with a GLUE task's train.tsv and dev file(s); default: the task's
    folder under the first data root that has it (`find_data(spec.dir, "--data")`), looked
    up only for a file not given, and downloaded when missing unless `offline` (find_data). need_dev
    False: no dev file is read (a validation split takes its place).
    """
    if task is None and (train_file or dev_file):
        if data_dir:
            raise DataError("--data is a GLUE task's folder; your own data is --train-file and --dev-file "
                            "(or add --task for a GLUE task)")
        return TaskFiles(None, Path(train_file) if train_file else None,
                         ((Path(dev_file), ""),) if dev_file else (), columns)
    spec = get_task(task or "sst-2")
    folder = None
    if not (train_file and (dev_file or not need_dev)):
        folder = Path(data_dir) if data_dir else find_data(spec.dir, "--data", fetch=not offline)
    train = Path(train_file) if train_file else folder / "train.tsv"
    dev = (((Path(dev_file), ""),) if dev_file else () if not need_dev else
           tuple((folder / name, suffix) for name, suffix in spec.dev_sets))
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
              splits: tuple[str, ...] = ("train", "dev"), labels: tuple[str, ...] | None = None,
              drop_unknown_dev_labels: bool = False, validation_split: float = 0.0, seed: int = 0,
              ) -> tuple[TaskSpec, list[InputExample] | None, dict[str, list[InputExample]]]:
    """The task's spec, its training examples (None when "train" is not in `splits`) and its
    dev sets {metric suffix: examples} (empty when "dev" is not), main one first.

    task_type: auto, classification or regression: how your own data's labels are read
    (files.label_kind); a GLUE task has its own. model: a trained model's labels; the class
    ids are then the model's, and the data's labels must be among them. labels: your own
    data's classes, declared in id order (--labels) instead of found in the training file.
    drop_unknown_dev_labels: leave out (and count, on the terminal) dev rows whose label is not
    a class, instead of stopping. validation_split: hold out this fraction of the training
    examples as the dev set (seeded by `seed`, stratified by class), instead of a dev file.
    The spec's `origin` says how its kind and classes were found (tasks.task_summary).
    """
    if validation_split and not 0.0 < validation_split < 1.0:
        raise DataError(f"--validation-split {validation_split}: expected a fraction between 0 and 1")
    held_out = bool(validation_split) and "train" in splits and "dev" in splits
    if held_out and files.task is None and files.dev:
        raise DataError("--validation-split holds dev examples out of --train-file: give it or --dev-file, not both")
    for split, given in (("train", files.train), ("dev", files.dev or held_out)):
        if split in splits and not given:
            raise DataError(f"your own data needs --{split}-file too (or --task for a GLUE task's {split} set"
                            + (", or --validation-split FRACTION)" if split == "dev" else ")"))
    spec, first = files.task, None
    if spec is None:
        spec, first = _own_task(files, task_type, model, "train" if "train" in splits else "dev", labels)
    else:
        if labels:
            raise DataError(f"--labels declares your own data's classes; task {spec.name!r} has its own "
                            f"({', '.join(spec.id2label or ())})")
        if task_type != "auto" and (task_type == "regression") != spec.is_regression:
            raise DataError(f"--task-type {task_type}: task {spec.name!r} is "
                            f"{'a regression' if spec.is_regression else 'a classification'}")
        if model is not None:
            spec = match_labels(spec, model)
    # an unknown label's message says where the classes came from
    classes_from = (f" (the labels of {model.source}); finetune --new-head starts a new classifier for other labels"
                    if model is not None and not model.generic else
                    f" (the classes of {first[0]})" if first is not None else "")

    def read(path: Path, dropped: list | None = None) -> list[InputExample]:
        try:
            if first is not None and path == first[0]:
                return examples_from_rows(spec, first[1], path, dropped)
            if files.task is not None and files.by_name(path):  # a GLUE task's examples in a CSV/JSON Lines file
                return read_examples(_named(spec, read_table(path), files.columns), path, dropped)
            return read_examples(spec, path, dropped)
        except UnknownLabelError as exc:
            hint = "; --drop-unknown-dev-labels leaves such dev rows out" if path != files.train else ""
            raise UnknownLabelError(f"{exc}{classes_from}{hint}") from None

    def read_dev(path: Path) -> list[InputExample]:
        if not drop_unknown_dev_labels or spec.is_regression:
            return read(path)
        dropped: list = []
        examples = read(path, dropped)
        if dropped:
            unseen = sorted({label for _, label in dropped})
            say(f"note: left out {len(dropped)} of {len(examples) + len(dropped)} dev rows of {path} whose label is not "
                f"a class ({', '.join(map(repr, unseen[:10]))}{', ...' if len(unseen) > 10 else ''}; first at "
                f"{dropped[0][0]}) (--drop-unknown-dev-labels)")
        return examples

    train = read(files.train) if "train" in splits else None
    if held_out:
        train, held = split_validation(train, validation_split, seed, stratify=not spec.is_regression)
        say(f"note: --validation-split {validation_split:g}: {len(held)} of {len(train) + len(held)} training examples "
            f"held out as the dev set (seed {seed}{', stratified by class' if not spec.is_regression else ''})")
        return spec, train, {"": held}
    dev = {suffix: read_dev(path) for path, suffix in files.dev} if "dev" in splits else {}
    return spec, train, dev


def split_validation(examples: list[InputExample], fraction: float, seed: int, stratify: bool = True,
                     ) -> tuple[list[InputExample], list[InputExample]]:
    """(train, dev): `fraction` of the examples held out, chosen by a seeded shuffle; stratified (each
    class holds out its own share, at least one example of a class with two or more), so a rare class is
    in both. Both keep the file's order."""
    rng = np.random.default_rng(seed)
    groups: dict = {}
    for i, example in enumerate(examples):
        groups.setdefault(example.label if stratify else 0, []).append(i)
    held = set()
    for _, members in sorted(groups.items()):
        n = int(round(fraction * len(members)))
        if stratify and len(members) >= 2:
            n = min(max(n, 1), len(members) - 1)
        held.update(rng.permutation(members)[:n].tolist())
    if not held or len(held) == len(examples):
        raise DataError(f"--validation-split {fraction:g} of {len(examples)} examples leaves no dev or no training "
                        f"example")
    return ([e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held])


def _own_task(files: TaskFiles, task_type: str, model: ModelLabels | None, split: str,
              labels: tuple[str, ...] | None = None) -> tuple[TaskSpec, tuple]:
    """Your own data's spec, from the training file (or the dev file, for evaluation alone):
    its columns, and its classes from the model when it names them, else declared (--labels),
    else from the file's labels (files.label_kind). Returns the spec and (that file, its rows)."""
    path = files.train if split == "train" else files.dev[0][0]
    table = read_table(path)
    columns = resolve_columns(table, files.columns)
    rows = table_rows(table, *columns)
    if model is not None and not model.generic:
        model_kind = "regression" if model.names is None else "classification"
        if task_type not in ("auto", model_kind):
            raise DataError(f"--task-type {task_type}: {model.source} is a {model_kind} model")
        if labels and tuple(labels) != tuple(model.names or ()):
            raise DataError(f"--labels {' '.join(labels)}: {model.source} has the labels "
                            f"{list(model.names or ())}; --new-head starts a new classifier for other labels")
        label_list, origin = model.names, f"the classes of {model.source}'s config.json"
    elif labels:
        if task_type == "regression":
            raise DataError("--labels declares classes: not with --task-type regression")
        if len(set(labels)) != len(labels) or len(labels) < 2:
            raise DataError(f"--labels {' '.join(labels)}: expected two or more different classes")
        label_list, origin = tuple(labels), "the classes declared by --labels, in that order"
    else:
        kind, label_list = label_kind(rows, task_type, path)
        origin = why_label_kind(rows, task_type, kind)
        if model is not None and (label_list is None or len(label_list) != len(model.names)):
            found = "a regression" if label_list is None else f"the labels {list(label_list)}"
            raise DataError(f"{model.source} has the labels {list(model.names)}, but {path} has {found}")
    return replace(own_task(str(path), columns, label_list), origin=origin), (path, rows)


def load_task_sets(task: str | TaskSpec | None, tokenizer, *, data_dir=None, train_file=None, dev_file=None,
                   columns: Columns = Columns(), task_type: str = "auto", model: ModelLabels | None = None,
                   splits: tuple[str, ...] = ("train", "dev"), max_length: int = 64, max_train_examples: int = 0,
                   max_eval_examples: int = 0, labels: tuple[str, ...] | None = None,
                   drop_unknown_dev_labels: bool = False, validation_split: float = 0.0, seed: int = 0,
                   offline: bool = False) -> tuple[TaskSpec, EncodedExamples | None, dict[str, EncodedExamples]]:
    """A task's spec, its encoded training set and its encoded dev sets {metric suffix: set}
    (MNLI: {"": matched, "_mm": mismatched}; one set, "", for the others and your own data).

    The files are found by `task_files` and read by `read_task` (see there for task_type,
    model, splits, labels, drop_unknown_dev_labels, validation_split and seed). max_train_examples /
    max_eval_examples: when > 0, keep only that many examples from the start of each file (after a
    validation split). Rows are encoded up to `max_length` tokens. offline: never download a GLUE task
    (find_data).
    """
    files = task_files(task, data_dir=data_dir, train_file=train_file, dev_file=dev_file, columns=columns,
                       offline=offline, need_dev=not (validation_split and "train" in splits))
    spec, train, dev = read_task(files, task_type=task_type, model=model, splits=splits, labels=labels,
                                 drop_unknown_dev_labels=drop_unknown_dev_labels, validation_split=validation_split,
                                 seed=seed)
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
