"""The data layer: from files on disk to batches of int32 arrays, all on the CPU with NumPy.

    from minibert import data as D
    documents = D.read_corpus(["data/wikitext-2-raw", "data/gutenberg"])   # list[list[str]]
    pre = D.create_pretraining_examples(documents, tok, rng=0)             # PretrainingData
    for batch in D.Batcher(pre, 32, seed=0).iter_epoch(0): ...

    spec, train, dev = D.load_task_data("sst-2", tok, max_length=64)      # finds the files
    for batch in D.Batcher(train, 32, seed=0).iter_epoch(epoch, start_batch=k): ...
    D.compute_metrics("sst-2", logits, dev.labels)                         # {"acc": ...}

One concept per file, in the order of the data flow:

    roots.py        where the data sets live (data roots), DataNotFoundError, and
                    load_task_data: a task's train/dev sets read and encoded in one call
    corpus.py       text files -> documents (WikiText, Project Gutenberg, one sentence per line)
    pretraining.py  documents -> masked-LM + next-sentence instances (PretrainingData)
    tasks.py        the task registry (TaskSpec, TASKS, register_task), the TSV readers, and
                    compute_metrics; a new GLUE task, a regression task included, is one entry here
    metrics.py      accuracy, F1, Matthews correlation, Pearson, Spearman
    encoding.py     examples -> unpadded token ids (EncodedExamples), padded per batch
    batching.py     the batches of an epoch, a pure function of (seed, epoch), so runs resume

This package re-exports the public names of those files, so `D.<name>` works for all of
them. It does not tokenize (`minibert.tokenizer`), move a batch to a device or train
(`minibert.trainer`), or augment a task's training set (`minibert.augment`).
"""
from ..functional import IGNORE_INDEX
from .batching import INT_DTYPE, Batcher, iterate_batches, make_epoch_batches
from .corpus import Document, detect_corpus_format, read_corpus, read_gutenberg, read_text, read_wikitext, split_sentences
from .encoding import SCORE_DTYPE, EncodedExamples, encode_examples
from .metrics import accuracy, acc_and_f1, f1, matthews_corrcoef, pearson, spearman
from .pretraining import PretrainingData, create_pretraining_examples, tokenize_documents
from .roots import CORPUS_DIRS, DataNotFoundError, data_roots, default_vocab, find_data, load_task_data
from .tasks import TASKS, InputExample, TaskSpec, compute_metrics, get_task, read_glue, read_tsv, register_task

__all__ = [
    "IGNORE_INDEX", "INT_DTYPE", "SCORE_DTYPE",
    # roots.py
    "CORPUS_DIRS", "DataNotFoundError", "data_roots", "default_vocab", "find_data", "load_task_data",
    # corpus.py
    "Document", "detect_corpus_format", "read_corpus", "read_gutenberg", "read_text", "read_wikitext",
    "split_sentences",
    # pretraining.py
    "PretrainingData", "create_pretraining_examples", "tokenize_documents",
    # tasks.py
    "TASKS", "InputExample", "TaskSpec", "compute_metrics", "get_task", "read_glue", "read_tsv", "register_task",
    # metrics.py
    "accuracy", "acc_and_f1", "f1", "matthews_corrcoef", "pearson", "spearman",
    # encoding.py
    "EncodedExamples", "encode_examples",
    # batching.py
    "Batcher", "iterate_batches", "make_epoch_batches",
]
