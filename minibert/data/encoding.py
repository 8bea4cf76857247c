"""Encoding: labelled examples -> token ids, kept unpadded until a batch is cut.

    enc = encode_examples(read_glue("mrpc", path), tok, max_length=64)   # EncodedExamples
    batch = enc.collate([3, 1, 4])    # input_ids, token_type_ids, attention_mask (B, T); labels (B,)
    note_truncation(enc, "training examples")   # "note: truncated 37 of 3668 training examples to 64 ..."
    check_fits(enc, model)            # ValueError if max_length is more than the model's positions

Each example becomes `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` through the tokenizer's
`encode`; rows keep their own length, and `collate` pads a batch only to its longest row
(dynamic padding), which is what makes length bucketing in `batching.py` pay off. Labels
are int32 class ids, or float32 scores for a regression task (STS-B).

Truncation is never silent: an example longer than `max_length` is cut (the longer
sentence of a pair first, `tokenizer.encode`'s "longest_first"), and the encoded set
counts how many were cut and how long the longest was, for the run to say so in its log.

This does not read files (`tasks.read_glue` gives the examples), split text into pieces
(`minibert.tokenizer`), or choose which rows form a batch (`batching.py`). Fixed-length
pre-training rows are `pretraining.PretrainingData`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..messages import note
from ..errors import DataError
from .batching import INT_DTYPE
from .tasks import InputExample

SCORE_DTYPE = np.float32  # the labels of a regression task


@dataclass
class EncodedExamples:
    """Tokenized examples of variable length: `[CLS] a [SEP] (b [SEP])`, no padding.

    input_ids / token_type_ids: lists of N int lists. labels: (N,), float32 when given as
    floats (a regression task's scores), int32 class ids otherwise. max_length: the length
    rows were cut to (None: not cut); num_truncated: how many were; longest: the longest
    row's length before cutting, in tokens.
    """

    input_ids: list
    token_type_ids: list
    labels: np.ndarray
    pad_token_id: int = 0
    max_length: int | None = None
    num_truncated: int = 0
    longest: int = 0
    lengths: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        labels = np.asarray(self.labels)
        self.labels = np.asarray(labels, dtype=SCORE_DTYPE if labels.dtype.kind == "f" else INT_DTYPE)  # (N,)
        if not len(self.input_ids) == len(self.token_type_ids) == len(self.labels):
            raise ValueError("input_ids, token_type_ids and labels must have the same length")
        self.lengths = np.array([len(x) for x in self.input_ids], dtype=np.int64)  # (N,)

    def __len__(self) -> int:
        return len(self.input_ids)

    def collate(self, indices) -> dict:
        """Rows `indices` as a batch padded to its longest row: input_ids, token_type_ids,
        attention_mask (B, T), all int32, and labels (B,)."""
        indices = np.asarray(indices)
        t = int(self.lengths[indices].max()) if len(indices) else 0
        b = len(indices)
        input_ids = np.full((b, t), self.pad_token_id, dtype=INT_DTYPE)  # (B, T)
        token_type_ids = np.zeros((b, t), dtype=INT_DTYPE)  # (B, T)
        attention_mask = np.zeros((b, t), dtype=INT_DTYPE)  # (B, T)
        for row, k in enumerate(indices):
            n = self.lengths[k]
            input_ids[row, :n] = self.input_ids[k]
            token_type_ids[row, :n] = self.token_type_ids[k]
            attention_mask[row, :n] = 1
        return {
            "input_ids": input_ids,
            "token_type_ids": token_type_ids,
            "attention_mask": attention_mask,
            "labels": self.labels[indices],  # (B,)
        }


def encode_examples(examples: Sequence[InputExample], tokenizer, max_length: int | None = 64) -> EncodedExamples:
    """Tokenize examples with `tokenizer.encode(text_a, text_b, max_length, truncation=
    'longest_first', padding=False)`, counting the rows cut; padding happens later, per
    batch. max_length None: no cutting. Float labels (a regression task's scores) give
    float32 labels, int labels int32."""
    ids, types = [], []
    num_truncated = longest = 0
    for ex in examples:
        enc = tokenizer.encode(ex.text_a, ex.text_b, max_length=max_length,
                               truncation="longest_first" if max_length else False, return_num_truncated=True)
        ids.append(enc["input_ids"])
        types.append(enc["token_type_ids"])
        num_truncated += enc["num_truncated_tokens"] > 0
        longest = max(longest, len(enc["input_ids"]) + enc["num_truncated_tokens"])
    regression = any(isinstance(ex.label, float) for ex in examples)
    labels = np.array([ex.label for ex in examples], dtype=SCORE_DTYPE if regression else INT_DTYPE)  # (N,)
    return EncodedExamples(ids, types, labels, tokenizer.pad_token_id, max_length, num_truncated, longest)


def truncation_note(num_truncated: int, total: int, what: str, max_length: int | None, longest: int) -> str | None:
    """'truncated 37 of 4000 training examples to 64 tokens (longest 143)', or None when nothing was cut."""
    if not num_truncated:
        return None
    return f"truncated {num_truncated} of {total} {what} to {max_length} tokens (longest {longest})"


def note_truncation(encoded: EncodedExamples, what: str, flag: str = "--max-length") -> None:
    """Say on stderr how many of `encoded` were cut to its max_length, if any (what: "training examples";
    flag: the setting that raises the limit)."""
    text = truncation_note(encoded.num_truncated, len(encoded), what, encoded.max_length, encoded.longest)
    if text:
        note(f"{text}; {flag} sets the limit")


def check_fits(encoded: EncodedExamples, model, flag: str = "--max-length") -> None:
    """ValueError if rows of up to encoded.max_length tokens cannot fit the model's position embeddings.

    Checked before training or evaluation starts, so that a length the model cannot take fails
    at once with both numbers, rather than at the first long row."""
    positions = model.config.max_position_embeddings
    if encoded.max_length is not None and encoded.max_length > positions:
        raise DataError(f"{flag} {encoded.max_length} is more than the model's {positions} position embeddings "
                        f"(max_position_embeddings): use {flag} {positions} or less")
