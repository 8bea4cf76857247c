"""Batching: which examples go into each batch of an epoch, and in what order.

    batcher = Batcher(dataset, 32, seed=0)
    for batch in batcher.iter_epoch(epoch, start_batch=k): ...     # dict of (B, T) arrays

A dataset is anything with `__len__`, `collate(indices) -> dict of arrays` and either
`lengths` (per-row lengths, for length bucketing) or `fixed_length = True`: the
variable-length `EncodedExamples` of `encoding.py` (padded per batch to its longest row) and
the fixed-length `PretrainingData` of `pretraining.py`. The order of an epoch is a pure
function of (seed, epoch), so a run that saved (epoch, batches done) resumes exactly at
batch k of epoch e by regenerating the epoch and skipping k batches.

Several processes (distributed.py) share every batch: each collates the same global batch,
padded as one process would pad it, and keeps its rows (`shard_batch`), so what the model
computes on a row does not depend on the number of processes.

This does not build the arrays of a batch (each dataset's `collate` does), move them to a
device (the trainer does, once per batch) or read any file (`corpus.py`, `tasks.py`).
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from ..functional import IGNORE_INDEX

INT_DTYPE = np.int32  # every id, mask and class-label array a dataset hands to a batch


def make_epoch_batches(
    lengths,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    bucket: bool = True,
    drop_last: bool = False,
    bucket_chunk: int = 100,
) -> list[np.ndarray]:
    """The batches of one epoch, as a list of index arrays: a pure function of its arguments.

    lengths: (N,) example lengths, or an int N (all lengths equal, so no bucketing).
    shuffle: permute the examples with a generator seeded by (seed, epoch), so every epoch
    has its own order and regenerating an epoch gives the same batches (resume = regenerate
    and skip the first k). bucket: within consecutive chunks of `bucket_chunk` batches, sort
    the examples by length (stable) before cutting batches, so a batch holds similar lengths
    and pads little; the batch order is then shuffled. drop_last: drop the one batch smaller
    than batch_size, if any. Without drop_last every example is in exactly one batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(lengths, (int, np.integer)):
        n, lengths = int(lengths), None
    else:
        lengths = np.asarray(lengths)
        n = len(lengths)
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if bucket and lengths is not None:
        chunk = batch_size * bucket_chunk
        order = np.concatenate(
            [order[s : s + chunk][np.argsort(lengths[order[s : s + chunk]], kind="stable")] for s in range(0, n, chunk)]
            or [order]
        )
    batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if shuffle:
        batches = [batches[k] for k in rng.permutation(len(batches))]
    return batches


class Batcher:
    """Batches over an EncodedExamples (dynamic padding) or PretrainingData (fixed length).

    A dataset is anything with `__len__`, `collate(indices) -> dict` and either `lengths`
    (per-row lengths, used for bucketing) or `fixed_length = True`.

    The order of epoch e is `make_epoch_batches(dataset.lengths, batch_size, seed=seed,
    epoch=e, ...)`, so a loop that saved (epoch, batches done) resumes exactly with
    `iter_epoch(epoch, start_batch=k)`. Seeds are ints, not Generators, for that reason.
    """

    def __init__(self, dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, bucket: bool = True,
                 drop_last: bool = False, bucket_chunk: int = 100):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle, self.seed, self.bucket = shuffle, seed, bucket
        self.drop_last, self.bucket_chunk = drop_last, bucket_chunk

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Index arrays of the batches of `epoch`, in order."""
        lengths = len(self.dataset) if getattr(self.dataset, "fixed_length", False) else self.dataset.lengths
        return make_epoch_batches(
            lengths, self.batch_size, seed=self.seed, epoch=epoch, shuffle=self.shuffle,
            bucket=self.bucket, drop_last=self.drop_last, bucket_chunk=self.bucket_chunk,
        )

    def __len__(self) -> int:
        """Batches per epoch (the same for every epoch)."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def iter_epoch(self, epoch: int = 0, start_batch: int = 0) -> Iterator[dict]:
        """Yield the batch dicts of `epoch`, starting at batch number `start_batch`."""
        batches = self.epoch_batches(epoch)
        if not 0 <= start_batch <= len(batches):
            raise ValueError(f"start_batch {start_batch} outside [0, {len(batches)}] for epoch {epoch}")
        for idx in batches[start_batch:]:
            yield self.dataset.collate(idx)

    def __iter__(self) -> Iterator[dict]:
        return self.iter_epoch(0)


def iterate_batches(dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                    start_batch: int = 0, bucket: bool = True, drop_last: bool = False) -> Iterator[dict]:
    """Batches of one epoch of `dataset`; shorthand for `Batcher(...).iter_epoch(epoch, start_batch)`."""
    batcher = Batcher(dataset, batch_size, shuffle=shuffle, seed=seed, bucket=bucket, drop_last=drop_last)
    return batcher.iter_epoch(epoch, start_batch)


class Shard(NamedTuple):
    """One process's part of a global batch, and what its losses weigh in the global batch's loss."""

    batch: dict  # this process's rows of every array: (b, ...) of the global (B, ...)
    rows: float  # b / B: the weight of a mean over rows (0 for a stand-in row, see shard_batch)
    labelled: float  # this process's labelled tokens / the global batch's: the weight of a mean over them


def shard_batch(batch: dict, rank: int, size: int) -> Shard:
    """Process `rank`'s rows of a global batch among `size` processes, as contiguous as np.array_split cuts them.

    Every array of `batch` has the global batch's rows first, (B, ...). Each process takes
    B/size rows (the first B mod size processes one more when the batch does not divide, as the
    last batch of an epoch may not). A loss that is a mean over this process's rows, weighted
    by `rows`, and summed over the processes is the mean over the global batch; a mean over
    labelled tokens (labels (B, T) other than IGNORE_INDEX: the masked LM) needs `labelled`.
    A process left without rows (a last batch smaller than the number of processes) gets
    the batch's last row with weight 0, so that every process runs the same steps.

    One process: Shard(batch, 1.0, 1.0), the batch itself.
    """
    if size == 1:
        return Shard(batch, 1.0, 1.0)
    n = len(batch["input_ids"])
    per, extra = divmod(n, size)  # np.array_split's cut
    start = rank * per + min(rank, extra)
    stop = start + per + (rank < extra)
    rows = (stop - start) / n
    if start == stop:  # nothing left for this process: a stand-in row, weighted 0
        start, stop = n - 1, n
    part = {k: v[start:stop] for k, v in batch.items()}
    labels = batch.get("labels")
    if labels is not None and labels.ndim == 2 and rows > 0:
        total = int(np.count_nonzero(labels != IGNORE_INDEX))
        labelled = int(np.count_nonzero(part["labels"] != IGNORE_INDEX)) / total if total else rows
    else:
        labelled = rows
    return Shard(part, rows, labelled)
