"""The data layer: from files on disk to batches of int32 arrays, all on the CPU with NumPy.

    from minibert import data as D
    documents = D.read_corpus(["data/wikitext-2-raw", "data/gutenberg"])   # list[list[str]]
    pre = D.create_pretraining_examples(documents, tok, rng=0)             # PretrainingData
    for batch in D.Batcher(pre, 32, seed=0).iter_epoch(0): ...

    spec, train, dev = D.load_task_data("sst-2", tok, max_length=64)      # finds the files
    spec, train, devs = D.load_task_sets(None, tok, train_file="train.csv", dev_file="dev.csv")  # your own
    for batch in D.Batcher(train, 32, seed=0).iter_epoch(epoch, start_batch=k): ...
    D.compute_metrics("sst-2", logits, dev.labels)                         # {"acc": ...}

One concept per file, in the order of the data flow:

    roots.py        where the data sets live (data roots), DataNotFoundError, which files a run
                    reads (a GLUE task's or your own), and load_task_data / load_task_sets:
                    a task's train and dev sets read and encoded in one call; a validation split
    download.py     fetching files: download or copy, SHA-256 verified, written atomically
    glue_sources.py the GLUE tasks' download locations and pinned checksums
    corpus.py       text files -> documents (WikiText, Project Gutenberg, one sentence per line)
    pretraining.py  documents -> masked-LM + next-sentence instances (PretrainingData)
    tasks.py        the task registry (TaskSpec, TASKS, register_task), the readers of a task's
                    files, match_labels (a trained model's class order), and compute_metrics;
                    a new GLUE task, a regression task included, is one entry here
    files.py        your own data: CSV, TSV and JSON Lines by column name, and how labels become
                    classes (or a regression)
    metrics.py      accuracy, F1, Matthews correlation, Pearson, Spearman, MSE, MAE; per-class
                    precision/recall/F1 and the confusion matrix; the predict-the-mean baseline
    encoding.py     examples -> unpadded token ids (EncodedExamples), padded per batch
    batching.py     the batches of an epoch, a pure function of (seed, epoch), so runs resume;
                    shard_batch: one process's rows of a global batch (mpiexec -n N)

This package re-exports the public names of those files, so `D.<name>` works for all of
them. It does not tokenize (`minibert.tokenizer`), move a batch to a device or train
(`minibert.trainer`), or augment a task's training set (`minibert.augment`).
"""
from ..functional import IGNORE_INDEX
from .batching import INT_DTYPE, Batcher, Shard, iterate_batches, make_epoch_batches, shard_batch
from .corpus import Document, detect_corpus_format, read_corpus, read_gutenberg, read_plain_text, read_wikitext, split_sentences
from .encoding import SCORE_DTYPE, EncodedExamples, check_fits, encode_examples, note_truncation, truncation_note
from .metrics import (LOWER_IS_BETTER, accuracy, acc_and_f1, confusion_matrix, f1, mae, matthews_corrcoef,
                      mean_baseline, mse, pearson, per_class, spearman)
from .pretraining import PretrainingData, create_pretraining_examples, tokenize_documents
from .files import (Columns, Row, Table, class_key, file_format, is_integer, label_kind, parse_number, read_table,
                    resolve_columns, table_rows, why_label_kind)
from .roots import (CORPUS_DIRS, DataNotFoundError, TaskFiles, cache_root, data_roots, default_vocab, fetch_glue,
                    find_data, load_task_data, load_task_sets, offline, read_task, split_validation, task_files)
from .tasks import (TASKS, InputExample, ModelLabels, TaskSpec, UnknownLabelError, compute_metrics, examples_from_rows,
                    get_task, match_labels, own_task, read_examples, read_glue, read_tsv, reads_by_name, register_task,
                    task_summary)

__all__ = [
    "IGNORE_INDEX", "INT_DTYPE", "SCORE_DTYPE",
    # roots.py
    "CORPUS_DIRS", "DataNotFoundError", "TaskFiles", "data_roots", "default_vocab", "find_data", "load_task_data",
    "load_task_sets", "read_task", "split_validation", "task_files", "cache_root", "fetch_glue", "offline",
    # corpus.py
    "Document", "detect_corpus_format", "read_corpus", "read_gutenberg", "read_plain_text", "read_wikitext",
    "split_sentences",
    # pretraining.py
    "PretrainingData", "create_pretraining_examples", "tokenize_documents",
    # tasks.py
    "TASKS", "InputExample", "ModelLabels", "TaskSpec", "UnknownLabelError", "compute_metrics", "examples_from_rows",
    "get_task", "match_labels", "own_task", "read_examples", "read_glue", "read_tsv", "reads_by_name", "register_task",
    "task_summary",
    # files.py
    "Columns", "Row", "Table", "class_key", "file_format", "is_integer", "label_kind", "parse_number", "read_table",
    "resolve_columns", "table_rows", "why_label_kind",
    # metrics.py
    "LOWER_IS_BETTER", "accuracy", "acc_and_f1", "confusion_matrix", "f1", "mae", "matthews_corrcoef",
    "mean_baseline", "mse", "pearson", "per_class", "spearman",
    # encoding.py
    "EncodedExamples", "check_fits", "encode_examples", "note_truncation", "truncation_note",
    # batching.py
    "Batcher", "Shard", "iterate_batches", "make_epoch_batches", "shard_batch",
]
