"""Data roots: where the data sets live on disk, and loading a task's train and dev sets from there.

    spec, train, dev = load_task_data("sst-2", tok, max_length=64)   # finds <root>/SST-2/*.tsv
    vocab = default_vocab()                                          # <root>/bert-base-uncased/vocab.txt

A data root is a folder laid out as `data/` after the prepare scripts ran (and as the
shared data folder): `SST-2/`, `CoLA/`, `MRPC/`, `STS-B/`, ... (each task's `TaskSpec.dir`),
`wikitext-2-raw/` and `gutenberg/` (the pre-training corpora), `bert-base-uncased/vocab.txt`.
The roots are searched in order: $MINIBERT_DATA, ./data, the repository's data/ folder,
../shared/data. A missing data set is a `DataNotFoundError` that says how to get it.

This does not download anything (the scripts in the repository's data/ folder do), parse a
file (`tasks.py`, `corpus.py`) or parse command-line flags (`minibert.train`; the `flag`
arguments here only name the flag in the error message).
"""
from __future__ import annotations

import os
from pathlib import Path

from .encoding import EncodedExamples, encode_examples
from .tasks import TaskSpec, get_task, read_glue

CORPUS_DIRS = ("wikitext-2-raw", "gutenberg")  # the pre-training corpora under a data root
_REPO_DATA = Path(__file__).resolve().parents[2] / "data"  # <repo>/data, for a run from another folder


class DataNotFoundError(FileNotFoundError):
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


def load_task_data(task: str | TaskSpec, tokenizer, *, data_dir=None, train_file=None, max_length: int = 64,
                   max_train_examples: int = 0, max_eval_examples: int = 0,
                   ) -> tuple[TaskSpec, EncodedExamples, EncodedExamples]:
    """A task's spec and its encoded train and dev sets.

    data_dir: the folder with the task's dev.tsv (and train.tsv); default: the task's
    folder under the first data root that has it (`find_data(spec.dir, "--data")`).
    train_file: the training file (an augmented `train_aug.tsv`, say); default:
    <data_dir>/train.tsv. max_train_examples / max_eval_examples: when > 0, keep only that
    many examples from the start of each file. Rows are encoded up to `max_length` tokens.
    """
    spec = get_task(task)
    folder = Path(data_dir) if data_dir else find_data(spec.dir, "--data")
    train = read_glue(spec, Path(train_file) if train_file else folder / "train.tsv")
    dev = read_glue(spec, folder / "dev.tsv")
    if max_train_examples:
        train = train[:max_train_examples]
    if max_eval_examples:
        dev = dev[:max_eval_examples]
    return spec, encode_examples(train, tokenizer, max_length), encode_examples(dev, tokenizer, max_length)
