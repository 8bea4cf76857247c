"""BERT pre-training instances: masked-LM and next-sentence pairs built from documents.

    documents = read_corpus("data/gutenberg")                           # corpus.py
    pre = create_pretraining_examples(documents, tok, rng=0)           # PretrainingData
    for batch in Batcher(pre, 32, seed=0).iter_epoch(0): ...            # batching.py

Google's recipe (google-research/bert `create_pretraining_data.py`, which TinyBERT's
pregeneration follows): the sentences of each document are packed into `[CLS] A [SEP] B
[SEP]` pairs, B being the true continuation or, half of the time, text from another
document; then about 15% of the tokens are chosen for prediction and replaced by [MASK]
(80%), a random token (10%) or kept (10%). The result is fixed-length int32 arrays, padded
to `max_seq_length`, with IGNORE_INDEX in `mlm_labels` wherever nothing is predicted.

This does not read files (`corpus.py` turns text files into documents), tokenize by itself
(it calls the given tokenizer, `minibert.tokenizer`), or decide the batch order
(`batching.py`). Labelled sentence-classification data is `tasks.py` + `encoding.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from ..errors import DataError
from ..functional import IGNORE_INDEX
from .batching import INT_DTYPE

@dataclass
class PretrainingData:
    """Fixed-length pre-training instances, N rows of T = max_seq_length.

    input_ids, token_type_ids, attention_mask, mlm_labels: (N, T) int32; padding is 0 with
    mask 0; mlm_labels holds the original token id at predicted positions and
    IGNORE_INDEX (the label cross-entropy skips) elsewhere. next_sentence_label: (N,)
    int32 with the Hugging Face convention 0 = B continues A, 1 = B is a random sentence.
    """

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    mlm_labels: np.ndarray
    next_sentence_label: np.ndarray

    fixed_length: ClassVar[bool] = True  # rows are padded to T already: no length bucketing

    def __post_init__(self):
        n, t = self.input_ids.shape
        for name in ("token_type_ids", "attention_mask", "mlm_labels"):
            if getattr(self, name).shape != (n, t):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {(n, t)}")
        if self.next_sentence_label.shape != (n,):
            raise ValueError(f"next_sentence_label has shape {self.next_sentence_label.shape}, expected {(n,)}")

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        """Real (unpadded) length of every row, (N,)."""
        return self.attention_mask.sum(axis=1)

    def collate(self, indices) -> dict:
        """The rows `indices` as a batch dict (keys as Hugging Face BertForPreTraining:
        input_ids, token_type_ids, attention_mask, labels (= mlm_labels), next_sentence_label)."""
        indices = np.asarray(indices)
        return {
            "input_ids": self.input_ids[indices],  # (B, T)
            "token_type_ids": self.token_type_ids[indices],  # (B, T)
            "attention_mask": self.attention_mask[indices],  # (B, T)
            "labels": self.mlm_labels[indices],  # (B, T)
            "next_sentence_label": self.next_sentence_label[indices],  # (B,)
        }

    def save(self, path) -> None:
        """Write the arrays to an .npz file (no pickle)."""
        np.savez(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path) -> "PretrainingData":
        with np.load(path, allow_pickle=False) as z:
            return cls(**{f.name: z[f.name] for f in fields(cls)})


def tokenize_documents(documents, tokenizer) -> list[list[list[str]]]:
    """WordPiece-tokenize every sentence; empty sentences and documents are dropped.

    A sentence that is already a list of tokens is kept as it is.
    """
    out = []
    for doc in documents:
        sents = [list(s) if isinstance(s, (list, tuple)) else tokenizer.tokenize(s) for s in doc]
        sents = [s for s in sents if s]
        if sents:
            out.append(sents)
    return out


def _truncate_seq_pair(tokens_a: list, tokens_b: list, max_num_tokens: int, rng) -> None:
    """Trim the longer side, one token at a time, randomly from its front or back (in place)."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _pairs_from_document(docs, doc_index, max_num_tokens, short_seq_prob, rng) -> list:
    """Google's NSP pairing for one document: a list of (tokens_a, tokens_b, is_random_next).

    Sentences accumulate into a chunk until it reaches the target length (max_num_tokens,
    or with probability `short_seq_prob` a random length in [2, max_num_tokens]; drawn
    afresh for every pair, where Google draws it once per document, so that a long
    document such as a whole book is not all-short or all-long). A = the first `a_end`
    sentences of the chunk, a_end uniform in [1, len(chunk) - 1]. With probability 0.5
    (always for a one-sentence chunk) B comes from a different random document, from a
    random sentence on, and the unused sentences of the chunk are put back to be read
    again; otherwise B is the rest of the chunk.
    """

    def draw_target() -> int:
        if rng.random() < short_seq_prob:
            return int(rng.integers(2, max_num_tokens + 1))
        return max_num_tokens

    document = docs[doc_index]
    pairs = []
    target = draw_target()
    chunk: list = []  # sentences (lists of tokens) of the pair being built
    chunk_len = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_len += len(document[i])
        if i == len(document) - 1 or chunk_len >= target:
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            tokens_a = [t for s in chunk[:a_end] for t in s]
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random_next = True
                # a different document, uniform over the others
                other = int(rng.integers(len(docs) - 1))
                other += other >= doc_index
                random_doc = docs[other]
                tokens_b: list = []
                for sentence in random_doc[int(rng.integers(len(random_doc))) :]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target - len(tokens_a):
                        break
                i -= len(chunk) - a_end  # put the unused sentences back
            else:
                is_random_next = False
                tokens_b = [t for s in chunk[a_end:] for t in s]
            _truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            pairs.append((tokens_a, tokens_b, is_random_next))
            chunk, chunk_len = [], 0
            target = draw_target()
        i += 1
    return pairs


def _mask_tokens(tokens, masked_lm_prob, max_predictions_per_seq, whole_word_mask, special, vocab_size, mask_id, rng):
    """Choose the positions to predict and how to corrupt them (Google's recipe).

    tokens: list of ids of `[CLS] A [SEP] B [SEP]`; `special` holds ids never masked.
    Candidates are all other positions; with whole-word masking a `##` piece joins the word
    right before it. Candidates are shuffled, and taken in that order until
    n = min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob))) positions
    are chosen, skipping a word that would overshoot n. Each chosen position becomes [MASK]
    with probability 0.8, stays with 0.1, becomes a uniformly random vocabulary id with 0.1.
    Returns (corrupted ids, labels with IGNORE_INDEX at unchosen positions).
    """
    groups: list[list[int]] = []
    for pos, (tid, is_piece) in enumerate(tokens):
        if tid in special:
            continue
        if whole_word_mask and is_piece and groups and groups[-1][-1] == pos - 1:
            groups[-1].append(pos)
        else:
            groups.append([pos])
    order = rng.permutation(len(groups))
    n_target = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
    ids = [tid for tid, _ in tokens]
    labels = [IGNORE_INDEX] * len(tokens)
    n_chosen = 0
    for g in order:
        if n_chosen >= n_target:
            break
        group = groups[g]
        if n_chosen + len(group) > n_target:
            continue
        for pos in group:
            labels[pos] = ids[pos]
            r = rng.random()
            if r < 0.8:
                ids[pos] = mask_id
            elif r >= 0.9:
                ids[pos] = int(rng.integers(vocab_size))
            # else: keep the original token
        n_chosen += len(group)
    return ids, labels


def create_pretraining_examples(
    documents,
    tokenizer,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    masked_lm_prob: float = 0.15,
    max_predictions_per_seq: int = 20,
    whole_word_mask: bool = False,
    dupe_factor: int = 1,
    rng: np.random.Generator | int | None = None,
) -> PretrainingData:
    """BERT pre-training instances (masked LM + next-sentence prediction) from documents.

    documents: list of documents, each a list of sentences (strings, or lists of WordPiece
    tokens if already tokenized); at least two non-empty documents (random "next" sentences
    come from a different document). tokenizer: a BertTokenizer (tokenize,
    convert_tokens_to_ids, special-token ids, len). rng: a np.random.Generator, or an int
    seed; None means seed 12345 (Google's default). The result depends only on the inputs
    and the rng state.

    The recipe (google-research/bert create_pretraining_data, TinyBERT's pregeneration):
    documents are shuffled; `dupe_factor` passes are made over them, each pass pairing the
    sentences of every document (see `_pairs_from_document`) and masking each pair afresh
    (see `_mask_tokens`); the instances are shuffled at the end. Layout
    `[CLS] A [SEP] B [SEP]` with token_type 0 up to the first [SEP] and 1 after it.
    Note: the number of predictions is max(1, ...), so masked_lm_prob=0 still predicts one
    token per sequence (as TinyBERT's general distillation data does).
    """
    if max_seq_length < 5:
        raise DataError(f"max_seq_length must be at least 5 ([CLS] a [SEP] b [SEP]), got {max_seq_length}")
    if not 0.0 <= short_seq_prob <= 1.0 or not 0.0 <= masked_lm_prob <= 1.0:
        raise DataError("short_seq_prob and masked_lm_prob must be probabilities in [0, 1]")
    if max_predictions_per_seq < 1 or dupe_factor < 1:
        raise DataError("max_predictions_per_seq and dupe_factor must be at least 1")
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(12345 if rng is None else int(rng))

    docs = tokenize_documents(documents, tokenizer)
    if len(docs) < 2:
        raise DataError(
            f"need at least 2 non-empty documents for next-sentence pairs, got {len(docs)} "
            "(in one-sentence-per-line text, separate documents with a blank line)"
        )
    docs = [docs[k] for k in rng.permutation(len(docs))]
    # Sentences as ids, plus whether each token is a ## continuation piece.
    docs = [[list(zip(tokenizer.convert_tokens_to_ids(s), (t.startswith("##") for t in s))) for s in d] for d in docs]

    cls_id, sep_id, mask_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
    special = {cls_id, sep_id, tokenizer.pad_token_id}
    vocab_size = len(tokenizer)
    max_num_tokens = max_seq_length - 3

    rows = []  # (ids, labels, n_a, is_random_next)
    for _ in range(dupe_factor):
        for d in range(len(docs)):
            for a, b, is_random in _pairs_from_document(docs, d, max_num_tokens, short_seq_prob, rng):
                tokens = [(cls_id, False)] + a + [(sep_id, False)] + b + [(sep_id, False)]
                ids, labels = _mask_tokens(
                    tokens, masked_lm_prob, max_predictions_per_seq, whole_word_mask, special, vocab_size, mask_id, rng
                )
                rows.append((ids, labels, len(a) + 2, is_random))
    order = rng.permutation(len(rows))

    n, t = len(rows), max_seq_length
    input_ids = np.zeros((n, t), dtype=INT_DTYPE)  # (N, T)
    token_type_ids = np.zeros((n, t), dtype=INT_DTYPE)  # (N, T)
    attention_mask = np.zeros((n, t), dtype=INT_DTYPE)  # (N, T)
    mlm_labels = np.full((n, t), IGNORE_INDEX, dtype=INT_DTYPE)  # (N, T)
    next_sentence_label = np.zeros(n, dtype=INT_DTYPE)  # (N,)
    for row, k in enumerate(order):
        ids, labels, n_a, is_random = rows[k]
        input_ids[row, : len(ids)] = ids
        token_type_ids[row, n_a : len(ids)] = 1
        attention_mask[row, : len(ids)] = 1
        mlm_labels[row, : len(ids)] = labels
        next_sentence_label[row] = int(is_random)
    return PretrainingData(input_ids, token_type_ids, attention_mask, mlm_labels, next_sentence_label)
