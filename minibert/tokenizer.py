"""BERT's tokenizer: ``BertTokenizer`` and its vocabulary files.

    tok = BertTokenizer("vocab.txt", do_lower_case=True)      # or BertTokenizer.from_pretrained(folder)
    tok.encode("a sentence", "its pair", max_length=128)      # input_ids, token_type_ids, attention_mask
    tok.decode(ids)

Text becomes ids in the two stages of Google's ``tokenization.py``, written out in
``minibert.wordpiece``: **BasicTokenizer** (text -> words: clean, split CJK, lower-case and
strip accents, split punctuation) and **WordpieceTokenizer** (word -> pieces, greedy
longest-match-first, ``[UNK]`` for a word it cannot match).

``BertTokenizer`` adds what a model needs: special tokens found in the raw text are
never split (``"a [MASK] b"`` keeps ``[MASK]``), ``[CLS] A [SEP] B [SEP]`` with
token_type_ids and attention_mask, truncation, padding, batches, decoding and
character offsets into the original text.

**Truncation, as transformers.** Nothing is cut unless asked: without ``max_length`` a
text keeps all its tokens, and one longer than ``model_max_length`` (the model's position
embeddings, 512 for BERT) gets transformers' warning "Token indices sequence length is
longer than the specified maximum sequence length for this model (N > M)", once per
tokenizer. Giving ``max_length`` (or ``truncation=True``, which means the model's
maximum) cuts to it, longest first for pairs; ``return_num_truncated`` says how many
tokens went, so callers can count what they cut (``minibert.data.encoding`` does).

**Which reference.** We reproduce transformers' pure-Python tokenizer
(``BertTokenizerLegacy`` in transformers 5.x, ``BertTokenizer`` in 4.x) bit for bit, and
through it Google's algorithm, with the changes transformers made to it: every Unicode
category C* counts as control, so private-use and unassigned code points are dropped
(Google: only Cc and Cf; the rest became part of a word, usually ``[UNK]``); the NFC
step (1c in ``minibert.wordpiece``); a 100-character word limit (Google: 200); and the
special-token handling. Truncation follows Google's ``_truncate_seq_pair`` (see ``encode``).

The Rust-backed transformers tokenizer gives the same ids on all our real data but
differs on unusual Unicode (``docs/tokenizer.md`` lists what we measured):

* Final sigma: Python's ``str.lower`` maps a word-final "Σ" to "ς", Rust to "σ".
* Unicode tables: Python 3.11's ``unicodedata`` is Unicode 14. Code points unassigned
  there (Cn) are dropped here but kept (so ``[UNK]``) by Rust, whose own tables are
  older: recent combining marks, punctuation and format characters (U+07FD, U+2E5D,
  U+0890, ...) and some CJK Extension E code points are classified differently.
* Cased (``do_lower_case=False``) text is NFC-composed here, not in Rust, so combining
  sequences ("e" + U+0301) and NFC singletons (U+037E, U+2329, CJK compatibility
  ideographs) differ.
* A special token that appears only after cleaning (``"[SE\x00P]"``) stays ``[SEP]`` here.
* Truncation of pairs: when both sequences must be cut and one token of budget is left
  over, Rust gives it to the longer (or the second) sequence, Google to the first. An
  empty ``text_pair`` is "no pair" in Rust, an empty second segment here.

**Speed, and the cache.** Everything up to WordPiece acts on one whitespace-separated
chunk of the raw text at a time (whitespace never joins or splits anything across
chunks), so a chunk's ids depend on the chunk alone. ``BertTokenizer`` therefore cuts
the text into chunks with one precompiled regular expression and looks each chunk up
in a dictionary ``chunk -> ids``; only unseen chunks run the readable algorithm of
``minibert.wordpiece``. Real text repeats its words (Zipf), so after a few thousand lines almost every chunk is
a dictionary hit and pure Python outpaces the Rust tokenizer called line by line.
The cache is cleared when it reaches ``CACHE_SIZE`` entries and skips chunks longer than
``CACHE_MAX_CHUNK`` characters, which bounds its memory.

**Offsets.** Normalisation changes lengths ("İ" lower-cases to two code points, control
characters vanish, NFC composes), so a token's span in the original text is found by
normalising each raw character of its chunk on its own and matching lengths (exact for
all but composing sequences, which fall back to normalising prefixes). A token spans
the raw characters its first and last normalised characters came from, so characters
that normalise to nothing (a decomposed accent, a control character) at its edges are
left out, as in transformers' Rust tokenizer.

Not handled: bytes input (pass ``str``), added tokens beyond BERT's five specials,
``strip_accents``/``tokenize_chinese_chars`` switches (always BERT's defaults), and
stride/overflowing windows. Not here: the two stages themselves (``minibert.wordpiece``,
re-exported below), learning a vocabulary (``minibert.wordpiece_trainer``), and turning
GLUE examples or documents into batches (``minibert.data``).
"""
from __future__ import annotations

import operator
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

from .tokenizer_files import (CLS, MASK, PAD, SEP, SPECIAL_TOKENS, check_vocab, load_vocab, read_tokenizer_folder,
                              save_vocab, tokens_in_id_order, write_tokenizer_folder)
from .wordpiece import (CHUNK_RE, UNK, BasicTokenizer, WordpieceTokenizer, is_cjk_char,
                        is_control, is_punctuation, is_whitespace)

__all__ = [
    "BertTokenizer", "load_vocab", "save_vocab", "SPECIAL_TOKENS",
    # the two stages and BERT's character classes, from wordpiece.py
    "BasicTokenizer", "WordpieceTokenizer", "CHUNK_RE", "is_whitespace", "is_control", "is_punctuation",
    "is_cjk_char",
]

# ---------------------------------------------------------------------------------------
# The full tokenizer
# ---------------------------------------------------------------------------------------

_TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
_NO_TRUNCATION = (False, "do_not_truncate")


class BertTokenizer:
    """BERT's tokenizer: BasicTokenizer + WordPiece + special tokens and model inputs.

    Args:
        vocab: path of a ``vocab.txt`` (one token per line, id = line number), or the
            tokens themselves: a list in id order or a ``token -> id`` dict.
        do_lower_case: lower-case and strip accents (True for ``*-uncased`` models).
        model_max_length: the longest input the model takes (its position embeddings), written
            to ``tokenizer_config.json``: the length ``truncation=True`` cuts to without a
            ``max_length``, and the one an untruncated text is warned about.
    """

    CACHE_SIZE = 1 << 17  # chunks remembered before the cache is cleared
    CACHE_MAX_CHUNK = 1000  # longer chunks are not remembered (they rarely repeat)

    def __init__(self, vocab: str | os.PathLike | Sequence[str] | dict[str, int], do_lower_case: bool = True,
                 model_max_length: int = 512):
        if isinstance(vocab, (str, os.PathLike)):
            self.vocab_file: Path | None = Path(vocab)
            self.vocab = load_vocab(vocab)
        else:
            self.vocab_file = None
            self.vocab = check_vocab(tokens_in_id_order(vocab), "vocabulary")
        self.ids_to_tokens: list[str] = list(self.vocab)  # dict order is id order
        self.do_lower_case = do_lower_case
        self.model_max_length = model_max_length
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case, never_split=SPECIAL_TOKENS)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, unk_token=UNK)
        self.pad_token_id = self.vocab[PAD]
        self.unk_token_id = self.vocab[UNK]
        self.cls_token_id = self.vocab[CLS]
        self.sep_token_id = self.vocab[SEP]
        self.mask_token_id = self.vocab[MASK]
        self.all_special_ids = frozenset(self.vocab[t] for t in SPECIAL_TOKENS)
        # Special tokens are cut out of the raw text before anything else, wherever they
        # occur ("a[MASK]b" -> a, [MASK], b), as transformers does.
        self._special_re = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))
        self._cache: dict[str, list[int]] = {}
        self._offset_cache: dict[str, list[tuple[int, int, int]]] = {}
        self._warned_too_long = False  # transformers warns once per tokenizer

    # -- basics ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids_to_tokens)

    def __repr__(self) -> str:
        return (f"BertTokenizer(vocab_size={len(self)}, do_lower_case={self.do_lower_case}, "
                f"vocab_file={str(self.vocab_file) if self.vocab_file else None!r})")

    @property
    def vocab_size(self) -> int:
        return len(self.ids_to_tokens)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Token(s) -> id(s); a token not in the vocabulary gets the ``[UNK]`` id."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        return [self.vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        """Id(s) -> token(s); an id outside the vocabulary raises ValueError."""
        try:
            return self._id_to_token(ids)  # one integer (Python or NumPy)
        except TypeError:
            return [self._id_to_token(i) for i in ids]

    def _id_to_token(self, index) -> str:
        index = operator.index(index)  # TypeError for floats and sequences
        if not 0 <= index < len(self.ids_to_tokens):
            raise ValueError(f"token id {index} is outside the vocabulary (0 .. {len(self) - 1})")
        return self.ids_to_tokens[index]

    # -- text -> ids -----------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece tokens (no [CLS]/[SEP])."""
        return [self.ids_to_tokens[i] for i in self._text_to_ids(text)]

    def _segments(self, text: str):
        """Yield ``(start, end, is_special)`` pieces of ``text``, special tokens cut out."""
        pos = 0
        for match in self._special_re.finditer(text):
            if match.start() > pos:
                yield pos, match.start(), False
            yield match.start(), match.end(), True
            pos = match.end()
        if pos < len(text):
            yield pos, len(text), False

    def _chunk_ids(self, chunk: str) -> list[int]:
        """The ids of one whitespace-free chunk of raw text (the cache's slow path)."""
        ids = []
        for word in self.basic_tokenizer.tokenize(chunk):
            for piece in self.wordpiece_tokenizer.tokenize_word(word):
                ids.append(self.vocab[piece])
        if len(chunk) <= self.CACHE_MAX_CHUNK:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def _text_to_ids(self, text: str) -> list[int]:
        """Text -> ids through the chunk cache (same result as BasicTokenizer + WordPiece)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        cache = self._cache
        ids: list[int] = []
        if self._special_re.search(text) is None:  # the common case: one regex pass
            for chunk in CHUNK_RE.findall(text):
                chunk_ids = cache.get(chunk)
                ids += chunk_ids if chunk_ids is not None else self._chunk_ids(chunk)
            return ids
        for start, end, special in self._segments(text):
            if special:
                ids.append(self.vocab[text[start:end]])
                continue
            for chunk in CHUNK_RE.findall(text, start, end):
                chunk_ids = cache.get(chunk)
                ids += chunk_ids if chunk_ids is not None else self._chunk_ids(chunk)
        return ids

    # -- model inputs ----------------------------------------------------------------

    def encode(self, text: str, text_pair: str | None = None, max_length: int | None = None,
               truncation: str | bool | None = None, padding: str | bool | None = False,
               return_offsets: bool = False, return_num_truncated: bool = False) -> dict[str, list]:
        """``[CLS] text [SEP]`` or ``[CLS] text [SEP] text_pair [SEP]`` as model inputs.

        Returns a dict of lists: ``input_ids``, ``token_type_ids`` (0 up to and including
        the first [SEP], 1 after), ``attention_mask`` (1 real, 0 padding) and, with
        ``return_offsets``, ``offsets``: (start, end) character spans into ``text`` or
        ``text_pair``, (0, 0) for special and padding tokens.

        truncation: "longest_first" (drop one token at a time from the longer sequence,
        the second on ties), "only_first", "only_second", or False / "do_not_truncate"
        (ValueError if the result would exceed ``max_length``); True means
        "longest_first". The default, None, is transformers' default: "longest_first"
        when a ``max_length`` is given, no truncation without one. A strategy without a
        ``max_length`` cuts to ``model_max_length``. An untruncated input longer than
        ``model_max_length`` is warned about once per tokenizer (the model would fail on it).
        padding: False, or "max_length" to pad up to ``max_length`` ("longest" is accepted
        and does nothing for one sequence). ``return_num_truncated``: also return
        ``num_truncated_tokens``, how many tokens truncation removed (0: none).
        """
        if return_offsets:
            ids_a, offs_a = text_to_ids_offsets(self, text)
            ids_b, offs_b = text_to_ids_offsets(self, text_pair) if text_pair is not None else (None, None)
        else:
            ids_a = self._text_to_ids(text)
            ids_b = self._text_to_ids(text_pair) if text_pair is not None else None
        if truncation is None:  # transformers' default: cut only to a max_length the caller gave
            truncation = "longest_first" if max_length is not None else False
        elif truncation not in _NO_TRUNCATION and max_length is None:
            max_length = self.model_max_length  # truncation asked for without a length: the model's
        keep_a, keep_b = truncated_lengths(len(ids_a), None if ids_b is None else len(ids_b),
                                           max_length, truncation)
        n_tokens = len(ids_a) + (0 if ids_b is None else len(ids_b) + 1) + 2  # untruncated, specials included
        if max_length is None and n_tokens > self.model_max_length and not self._warned_too_long:
            self._warned_too_long = True
            warnings.warn("Token indices sequence length is longer than the specified maximum sequence length "
                          f"for this model ({n_tokens} > {self.model_max_length}). Running this sequence through "
                          "the model will result in indexing errors", stacklevel=2)
        cls, sep = self.cls_token_id, self.sep_token_id
        input_ids = [cls] + ids_a[:keep_a] + [sep]
        token_type_ids = [0] * len(input_ids)
        if ids_b is not None:
            input_ids += ids_b[:keep_b] + [sep]
            token_type_ids += [1] * (keep_b + 1)
        encoding = {"input_ids": input_ids, "token_type_ids": token_type_ids,
                    "attention_mask": [1] * len(input_ids)}
        if return_offsets:
            offsets = [(0, 0)] + offs_a[:keep_a] + [(0, 0)]
            if ids_b is not None:
                offsets += offs_b[:keep_b] + [(0, 0)]
            encoding["offsets"] = offsets
        if return_num_truncated:
            encoding["num_truncated_tokens"] = n_tokens - len(input_ids)
        padding = _padding_mode(padding)
        if padding == "max_length":
            if max_length is None:
                raise ValueError('padding="max_length" needs a max_length')
            pad_encoding(encoding, max_length, self.pad_token_id)
        return encoding

    def batch_encode(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                     max_length: int | None = None, truncation: str | bool | None = None,
                     padding: str | bool | None = "longest", return_offsets: bool = False) -> dict[str, list[list]]:
        """Encode many texts (or pairs); returns a dict of lists of lists.

        max_length, truncation: as ``encode`` (no truncation unless asked). padding:
        "longest" (to the longest in the batch), "max_length", or False (ragged).
        """
        if isinstance(texts, str):
            raise TypeError("batch_encode takes a list of texts; use encode for one text")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(text_pairs)} text_pairs")
        padding = _padding_mode(padding)
        if padding == "max_length" and max_length is None:
            raise ValueError('padding="max_length" needs a max_length')
        encodings = [self.encode(t, None if text_pairs is None else text_pairs[i], max_length=max_length,
                                 truncation=truncation, padding=False, return_offsets=return_offsets)
                     for i, t in enumerate(texts)]
        if padding is not None and encodings:
            target = max_length if padding == "max_length" else max(len(e["input_ids"]) for e in encodings)
            for e in encodings:
                pad_encoding(e, target, self.pad_token_id)
        keys = ["input_ids", "token_type_ids", "attention_mask"] + (["offsets"] if return_offsets else [])
        return {k: [e[k] for e in encodings] for k in keys}

    # -- ids -> text -----------------------------------------------------------------

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Ids -> text: tokens joined by spaces with "##" continuations glued back on.

        Like transformers' ``decode(..., clean_up_tokenization_spaces=False)``: the text
        is the normalised one (lower-cased, accents stripped, punctuation spaced out).
        With ``skip_special_tokens`` all five specials ([UNK] too) are dropped.
        """
        tokens = self.convert_ids_to_tokens(list(ids))
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in SPECIAL_TOKENS]
        return " ".join(tokens).replace(" ##", "").strip()

    # -- folders ---------------------------------------------------------------------

    def save_pretrained(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``vocab.txt`` and ``tokenizer_config.json`` (loadable by transformers' AutoTokenizer)."""
        return write_tokenizer_folder(folder, self.ids_to_tokens, self.do_lower_case, self.model_max_length)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **overrides) -> "BertTokenizer":
        """Load ``folder/vocab.txt``, with ``do_lower_case`` and ``model_max_length`` from
        ``folder/tokenizer_config.json`` when present; keyword arguments override them.

        A folder without ``vocab.txt`` but with a BERT ``tokenizer.json`` (what
        transformers 5.x saves) is read from that file instead."""
        vocab, kwargs = read_tokenizer_folder(folder)
        kwargs.update(overrides)
        return cls(vocab, **kwargs)


def _padding_mode(padding) -> str | None:
    """Normalise the padding argument to None, "longest" or "max_length"."""
    if padding in (False, None, "do_not_pad"):
        return None
    if padding is True or padding == "longest":
        return "longest"
    if padding == "max_length":
        return "max_length"
    raise ValueError(f'padding must be False, "longest" or "max_length", not {padding!r}')


def truncated_lengths(len_a: int, len_b: int | None, max_length: int | None,
                      truncation) -> tuple[int, int]:
        """How many tokens of each sequence to keep so the result fits ``max_length``."""
        if truncation is True:
            truncation = "longest_first"
        if truncation not in _TRUNCATION_STRATEGIES and truncation not in _NO_TRUNCATION:
            raise ValueError(f"truncation must be one of {_TRUNCATION_STRATEGIES} or False / "
                             f'"do_not_truncate", not {truncation!r}')
        if truncation == "only_second" and len_b is None:
            raise ValueError('truncation="only_second" needs a text_pair')
        pair = len_b is not None
        len_b = len_b or 0
        if max_length is None:
            return len_a, len_b
        n_special = 3 if pair else 2
        budget = max_length - n_special  # room for real tokens
        if budget < 0:
            raise ValueError(f"max_length={max_length} cannot hold the {n_special} special tokens")
        excess = len_a + len_b - budget
        if excess <= 0:
            return len_a, len_b
        total = len_a + len_b + n_special
        lengths = f"{len_a}" + (f" + {len_b}" if pair else "") + f" tokens + {n_special} special"
        if truncation in _NO_TRUNCATION:
            raise ValueError(f"input is {total} tokens ({lengths}), more than max_length={max_length}, "
                             "and truncation is disabled")
        if truncation == "only_first" or not pair:
            if excess > len_a:
                raise ValueError(f"cannot fit max_length={max_length} by truncating only the first "
                                 f"sequence ({lengths})")
            return len_a - excess, len_b
        if truncation == "only_second":
            if excess > len_b:
                raise ValueError(f"cannot fit max_length={max_length} by truncating only the second "
                                 f"sequence ({lengths})")
            return len_a, len_b - excess
        # longest_first: removing one token at a time from the longer sequence (the second
        # on ties) first evens the lengths out, then alternates, second first.
        gap = min(abs(len_a - len_b), excess)
        if len_a > len_b:
            len_a -= gap
        else:
            len_b -= gap
        excess -= gap
        return len_a - excess // 2, len_b - (excess - excess // 2)


def pad_encoding(encoding: dict[str, list], length: int, pad_id: int) -> None:
    """Pad an encoding in place to ``length`` ([PAD] id, type 0, mask 0, offsets (0, 0))."""
    n = length - len(encoding["input_ids"])
    if n <= 0:
        return
    encoding["input_ids"] += [pad_id] * n
    encoding["token_type_ids"] += [0] * n
    encoding["attention_mask"] += [0] * n
    if "offsets" in encoding:
        encoding["offsets"] += [(0, 0)] * n


def char_spans(tokenize, chunk: str, normalized: str) -> list[tuple[int, int]]:
    """For each character of ``normalized`` (the chunk's words joined), the span of
    raw chunk characters it came from; ``tokenize`` is BasicTokenizer.tokenize."""
    if chunk.isascii() and len(chunk) == len(normalized):
        return [(k, k + 1) for k in range(len(chunk))]  # ASCII without controls: 1:1
    # Normalise each raw character alone; exact unless characters compose (NFC).
    lengths = [len("".join(tokenize(c))) for c in chunk]
    if sum(lengths) == len(normalized):
        return [(k, k + 1) for k, n in enumerate(lengths) for _ in range(n)]
    if len(chunk) > 256:
        # A long chunk with composing characters: normalising every prefix would be
        # quadratic, so every character gets the whole chunk.
        return [(0, len(chunk))] * len(normalized)
    # Composition: normalise growing prefixes. New output characters come from the
    # raw character just added; if the output changed without growing, that
    # character was composed into the last output character, whose span grows.
    spans: list[tuple[int, int]] = []
    previous = ""
    for k in range(1, len(chunk) + 1):
        current = "".join(tokenize(chunk[:k]))
        if len(current) > len(spans):
            spans.extend([(k - 1, k)] * (len(current) - len(spans)))
        elif current != previous and spans:
            spans[-1] = (spans[-1][0], k)
        previous = current
    return spans[: len(normalized)]


# -- character offsets (encode(..., return_offsets=True)) ---------------------------------

def chunk_ids_offsets(tok: "BertTokenizer", chunk: str) -> list[tuple[int, int, int]]:
    """``(id, start, end)`` for each token of a chunk, offsets relative to the chunk."""
    cached = tok._offset_cache.get(chunk)
    if cached is not None:
        return cached
    words = tok.basic_tokenizer.tokenize(chunk)
    spans_of = char_spans(tok.basic_tokenizer.tokenize, chunk, "".join(words))
    out = []
    pos = 0  # position in the joined normalised words
    for word in words:
        pieces = tok.wordpiece_tokenizer.tokenize_word(word)
        if pieces == [UNK]:
            spans = [(pos, pos + len(word))]
        else:
            spans, p = [], pos
            for i, piece in enumerate(pieces):
                n = len(piece) - (2 if i > 0 else 0)  # "##" is not in the text
                spans.append((p, p + n))
                p += n
        for piece, (a, b) in zip(pieces, spans):
            out.append((tok.vocab[piece], spans_of[a][0], spans_of[b - 1][1]))
        pos += len(word)
    if len(chunk) <= tok.CACHE_MAX_CHUNK:
        if len(tok._offset_cache) >= tok.CACHE_SIZE:
            tok._offset_cache.clear()
        tok._offset_cache[chunk] = out
    return out

def text_to_ids_offsets(tok: "BertTokenizer", text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Text -> (ids, character spans into ``text``)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    ids, offsets = [], []
    for start, end, special in tok._segments(text):
        if special:
            ids.append(tok.vocab[text[start:end]])
            offsets.append((start, end))
            continue
        for match in CHUNK_RE.finditer(text, start, end):
            base = match.start()
            for token_id, a, b in chunk_ids_offsets(tok, match.group()):
                ids.append(token_id)
                offsets.append((base + a, base + b))
    return ids, offsets
