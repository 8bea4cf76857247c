"""Encoding: labelled examples -> token ids, kept unpadded until a batch is cut.

    enc = encode_examples(read_glue("mrpc", path), tok, max_length=64)   # EncodedExamples
    batch = enc.collate([3, 1, 4])    # input_ids, token_type_ids, attention_mask (B, T); labels (B,)

Each example becomes `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` through the tokenizer's
`encode`; rows keep their own length, and `collate` pads a batch only to its longest row
(dynamic padding), which is what makes length bucketing in `batching.py` pay off. Labels
are int32 class ids, or float32 scores for a regression task (STS-B).

This does not read files (`tasks.read_glue` gives the examples), split text into pieces
(`minibert.tokenizer`), or choose which rows form a batch (`batching.py`). Fixed-length
pre-training rows are `pretraining.PretrainingData`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .batching import INT_DTYPE
from .tasks import InputExample

SCORE_DTYPE = np.float32  # the labels of a regression task


@dataclass
class EncodedExamples:
    """Tokenized examples of variable length: `[CLS] a [SEP] (b [SEP])`, no padding.

    input_ids / token_type_ids: lists of N int lists. labels: (N,), float32 when given as
    floats (a regression task's scores), int32 class ids otherwise.
    """

    input_ids: list
    token_type_ids: list
    labels: np.ndarray
    pad_token_id: int = 0
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


def encode_examples(examples: Sequence[InputExample], tokenizer, max_length: int = 128) -> EncodedExamples:
    """Tokenize examples with `tokenizer.encode(text_a, text_b, max_length, truncation=
    'longest_first', padding=False)`; padding happens later, per batch. Float labels
    (a regression task's scores) give float32 labels, int labels int32."""
    ids, types = [], []
    for ex in examples:
        enc = tokenizer.encode(ex.text_a, ex.text_b, max_length=max_length, truncation="longest_first", padding=False)
        ids.append(list(enc["input_ids"]))
        types.append(list(enc["token_type_ids"]))
    regression = any(isinstance(ex.label, float) for ex in examples)
    labels = np.array([ex.label for ex in examples], dtype=SCORE_DTYPE if regression else INT_DTYPE)  # (N,)
    return EncodedExamples(ids, types, labels, tokenizer.pad_token_id)
