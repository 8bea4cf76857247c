"""The WordPiece vocabulary trainer: learn a ``vocab.txt`` from text files.

    tokens = train_wordpiece_vocab(["a.txt", "b.txt"], vocab_size=8000, do_lower_case=False)
    save_vocab(tokens, "runs/vocab/vocab.txt")           # minibert.tokenizer
    tok = BertTokenizer(tokens, do_lower_case=False)     # a tokenizer straight from the list

Learning is BPE-style merges over word counts, the same scheme as Hugging Face
``tokenizers``' WordPieceTrainer (Google never released its likelihood-based trainer):
words come from BERT's own BasicTokenizer (``minibert.wordpiece``), so the trainer sees
exactly the words WordPiece will later split; ``train_wordpiece_vocab``'s docstring gives
the details.

This does not tokenize text with the vocabulary it learns, nor read or write ``vocab.txt``
files: both are ``minibert.tokenizer`` (``BertTokenizer``, ``load_vocab``/``save_vocab``).
Reading documents for pre-training is ``minibert.data.corpus``.
"""
from __future__ import annotations

import collections
import heapq
import os
import warnings
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from .errors import DataError
from .tokenizer import SPECIAL_TOKENS
from .wordpiece import CHUNK_RE, MAX_INPUT_CHARS_PER_WORD, BasicTokenizer

__all__ = ["count_words", "train_wordpiece_vocab"]


def _read_lines(path: Path):
    """Lines of a text file: UTF-8 with an optional BOM, CRLF or LF line ends."""
    with open(path, encoding="utf-8-sig") as f:  # universal newlines drop the "\r"
        for line in f:
            yield line.rstrip("\n")


def count_words(files: Iterable[str | os.PathLike], do_lower_case: bool = True,
                show_progress: bool = False) -> collections.Counter:
    """Count BasicTokenizer words over text files (one chunk cache, as in BertTokenizer)."""
    basic = BasicTokenizer(do_lower_case=do_lower_case)
    chunk_counts: collections.Counter = collections.Counter()
    for path in tqdm(list(files), desc="reading", unit="file", disable=not show_progress):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training file not found: {path}")
        for line in _read_lines(path):
            chunk_counts.update(CHUNK_RE.findall(line))
    # Basic-tokenize each distinct chunk once.
    word_counts: collections.Counter = collections.Counter()
    for chunk, n in chunk_counts.items():
        for word in basic.tokenize(chunk):
            word_counts[word] += n
    return word_counts


def train_wordpiece_vocab(files: str | os.PathLike | Iterable[str | os.PathLike], vocab_size: int,
                          min_frequency: int = 2, do_lower_case: bool = True,
                          limit_alphabet: int | None = None, show_progress: bool = True) -> list[str]:
    """Learn a WordPiece vocabulary of ``vocab_size`` tokens from text files.

    The vocabulary is, in this order: BERT's special tokens ``[PAD] [UNK] [CLS] [SEP]
    [MASK]``; every character of the corpus (sorted by code point) and then each again
    as a ``##`` continuation, so any text made of seen characters tokenizes without
    [UNK]; then the learned pieces in the order they were learned.

    Learning is BPE over word counts, as in Hugging Face ``tokenizers``'
    WordPieceTrainer: words come from BasicTokenizer (so they are exactly what WordPiece
    will see), each is spelled as its first character followed by ``##``-prefixed
    characters ("the" -> t ##h ##e), and the most frequent adjacent pair (weighted by
    word count; ties broken by the pair's strings, so the result is deterministic) is
    merged into a new piece ("t" + "##h" -> "th", "##h" + "##e" -> "##he") until the
    vocabulary is full or the best pair occurs fewer than ``min_frequency`` times (then
    the vocabulary is smaller, with a warning). Pair counts are updated incrementally
    and the best pair kept in a heap, so a merge touches only the words that contain it.

    limit_alphabet: keep only that many most frequent characters; the others are left
    out of the vocabulary (they will tokenize as [UNK]).
    """
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    files = [Path(f) for f in files]
    if not files:
        raise DataError("no training files given")
    word_counts = count_words(files, do_lower_case=do_lower_case, show_progress=show_progress)
    words = sorted(word_counts)  # a fixed order: deterministic whatever the hash seed

    char_counts: collections.Counter = collections.Counter()
    for word in words:
        for char in word:
            char_counts[char] += word_counts[word]
    alphabet = sorted(char_counts)
    if limit_alphabet is not None and len(alphabet) > limit_alphabet:
        kept = sorted(char_counts, key=lambda c: (-char_counts[c], c))[:limit_alphabet]
        alphabet = sorted(kept)
    vocab = list(SPECIAL_TOKENS) + alphabet + ["##" + c for c in alphabet]
    if vocab_size < len(vocab):
        raise DataError(f"vocab_size={vocab_size} is smaller than the {len(vocab)} special and "
                        f"character tokens the corpus needs; raise it or set limit_alphabet")
    in_vocab = set(vocab)

    # Spell every word as symbols; a character outside the alphabet becomes None, a
    # barrier that no pair crosses. Words WordPiece would [UNK] anyway are skipped.
    symbols: list[list[str | None]] = []
    counts: list[int] = []
    for word in words:
        if len(word) > MAX_INPUT_CHARS_PER_WORD:
            continue
        spelled = [c if i == 0 else "##" + c for i, c in enumerate(word)]
        symbols.append([s if s in in_vocab else None for s in spelled])
        counts.append(word_counts[word])

    pair_counts: dict[tuple[str, str], int] = collections.defaultdict(int)
    pair_words: dict[tuple[str, str], set[int]] = collections.defaultdict(set)  # may hold stale ids
    for index, syms in enumerate(symbols):
        for pair in zip(syms, syms[1:]):
            if pair[0] is not None and pair[1] is not None:
                pair_counts[pair] += counts[index]
                pair_words[pair].add(index)
    # Max-heap by count (negated), ties by the pair itself. Every count change pushes a
    # fresh entry; entries whose count no longer matches are stale and skipped.
    heap = [(-n, a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)

    progress = tqdm(total=vocab_size, initial=len(vocab), desc="merges", disable=not show_progress)
    while len(vocab) < vocab_size and heap:
        neg_count, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count != -neg_count or count == 0:
            continue
        if count < min_frequency:
            break
        merged = a + b[2:]  # b is always a "##" continuation
        if merged not in in_vocab:  # two merge paths can spell the same piece
            vocab.append(merged)
            in_vocab.add(merged)
            progress.update(1)
        changed = set()
        for index in sorted(pair_words.pop((a, b), ())):
            syms = symbols[index]
            n = counts[index]
            old_pairs = [p for p in zip(syms, syms[1:]) if p[0] is not None and p[1] is not None]
            if (a, b) not in old_pairs:
                continue  # stale: an earlier merge already consumed this occurrence
            new_syms, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    new_syms.append(merged)
                    i += 2
                else:
                    new_syms.append(syms[i])
                    i += 1
            symbols[index] = new_syms
            for pair in old_pairs:
                pair_counts[pair] -= n
                changed.add(pair)
            for pair in zip(new_syms, new_syms[1:]):
                if pair[0] is not None and pair[1] is not None:
                    pair_counts[pair] += n
                    pair_words[pair].add(index)
                    changed.add(pair)
        for pair in changed:
            n = pair_counts[pair]
            if n > 0:
                heapq.heappush(heap, (-n, pair[0], pair[1]))
            else:
                del pair_counts[pair]
    progress.close()
    if len(vocab) < vocab_size:
        warnings.warn(f"the corpus supports only {len(vocab)} tokens with min_frequency={min_frequency} "
                      f"(asked for {vocab_size})", stacklevel=2)
    return vocab
