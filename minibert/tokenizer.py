"""BERT's WordPiece tokenizer, vocabulary files and a WordPiece vocabulary trainer.

Text becomes ids in two stages, exactly as in Google's ``tokenization.py``:

1. **BasicTokenizer** (text -> words)
   a. clean: drop NUL, U+FFFD and control characters; turn every whitespace
      character (``\\t \\n \\r`` and Unicode category Zs) into a space;
   b. put spaces around CJK ideographs, so each becomes its own word;
   c. (transformers) NFC-normalise, so "e" + COMBINING ACUTE and "é" are the same;
   d. split on whitespace (Python's ``str.split``, which also splits on U+2028/U+2029);
   e. per word, unless it is a special token such as ``[MASK]``: lower-case and strip
      accents (NFD, then drop category Mn) when ``do_lower_case``;
   f. split every punctuation character into its own word (ASCII non-alphanumerics
      plus every Unicode category P*).
2. **WordpieceTokenizer** (word -> pieces): greedy longest-match-first. Take the
   longest prefix of the word that is in the vocabulary, then repeatedly the longest
   ``##``-prefixed continuation. If some position cannot be matched, or the word has
   more than 100 characters, the *whole* word becomes ``[UNK]``.

``BertTokenizer`` adds what a model needs: special tokens found in the raw text are
never split (``"a [MASK] b"`` keeps ``[MASK]``), ``[CLS] A [SEP] B [SEP]`` with
token_type_ids and attention_mask, truncation, padding, batches, decoding and
character offsets into the original text.

**Which reference.** We reproduce transformers' pure-Python tokenizer
(``BertTokenizerLegacy`` in transformers 5.x, ``BertTokenizer`` in 4.x) bit for bit, and
through it Google's algorithm, with the changes transformers made to it: every Unicode
category C* counts as control, so private-use and unassigned code points are dropped
(Google: only Cc and Cf; the rest became part of a word, usually ``[UNK]``); the NFC
step (1c); a 100-character word limit (Google: 200); and the special-token handling.
Truncation follows Google's ``_truncate_seq_pair`` (see ``encode``).

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
in a dictionary ``chunk -> ids``; only unseen chunks run the readable algorithm above.
Real text repeats its words (Zipf), so after a few thousand lines almost every chunk is
a dictionary hit and pure Python outpaces the Rust tokenizer called line by line. The
slow path itself has ASCII shortcuts (no cleaning, CJK or accent work for ASCII, one
regex for ASCII punctuation) that give the same result as the per-character loops.
The cache is cleared when it reaches ``CACHE_SIZE`` entries and skips chunks longer than
``CACHE_MAX_CHUNK`` characters, which bounds its memory.

**Offsets.** Normalisation changes lengths ("İ" lower-cases to two code points, control
characters vanish, NFC composes), so a token's span in the original text is found by
normalising each raw character of its chunk on its own and matching lengths (exact for
all but composing sequences, which fall back to normalising prefixes). A token spans
the raw characters its first and last normalised characters came from, so characters
that normalise to nothing (a decomposed accent, a control character) at its edges are
left out, as in transformers' Rust tokenizer.

**Trainer.** ``train_wordpiece_vocab`` learns a vocabulary by BPE-style merges over
word counts (the same scheme as Hugging Face ``tokenizers``' WordPieceTrainer; Google
never released its likelihood-based trainer); see its docstring.

Not handled: bytes input (pass ``str``), added tokens beyond BERT's five specials,
``strip_accents``/``tokenize_chinese_chars`` switches (always BERT's defaults), and
stride/overflowing windows.
"""
from __future__ import annotations

import collections
import heapq
import json
import operator
import os
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

__all__ = [
    "BasicTokenizer", "WordpieceTokenizer", "BertTokenizer", "load_vocab", "save_vocab",
    "train_wordpiece_vocab", "count_words", "SPECIAL_TOKENS", "is_whitespace", "is_control", "is_punctuation",
    "is_cjk_char",
]

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# The trainer writes them first, in this order, so [PAD] is id 0 as in BERT's vocabulary.
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
MAX_INPUT_CHARS_PER_WORD = 100  # transformers' and TinyBERT's value (Google's: 200)

# ---------------------------------------------------------------------------------------
# Character classes (BERT's definitions)
# ---------------------------------------------------------------------------------------

# Category Zs as Python 3.11's unicodedata defines it (a test checks this list against
# every code point). Listed literally so the chunking regex below needs no Unicode
# tables of its own that could disagree with unicodedata.
_ZS_CHARS = "\u0020\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"

# CJK ideograph blocks (Google's list). Hangul, Hiragana and Katakana are not included:
# those scripts separate words with spaces.
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


# split_on_punctuation for ASCII text in one regex pass: each of BERT's ASCII punctuation
# characters (33-47, 58-64, 91-96, 123-126) alone, runs of anything else together.
_ASCII_PIECES_RE = re.compile(r"[!-/:-@\[-`{-~]|[^!-/:-@\[-`{-~]+")


def is_whitespace(char: str) -> bool:
    """True for space, tab, newline, carriage return and category Zs."""
    # \t \n \r are category Cc, but BERT counts them as whitespace, not control.
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    """True for category C* (Cc, Cf, Cs, Co, Cn) except tab, newline and carriage return.

    Google's original counted only Cc and Cf, transformers' Rust tokenizer counts Cc, Cf
    and Co; we follow transformers' pure-Python tokenizer, which counts all of C*.
    """
    if char in "\t\n\r":
        return False
    return unicodedata.category(char).startswith("C")


def is_punctuation(char: str) -> bool:
    """True for every non-alphanumeric printable ASCII character and Unicode category P*."""
    cp = ord(char)
    # "$", "^", "`", "+", "<" ... are symbols (S*) in Unicode, but BERT splits every
    # printable non-alphanumeric ASCII character off as punctuation.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_cjk_char(char: str) -> bool:
    """True for a code point in one of the CJK ideograph blocks BERT splits out."""
    cp = ord(char)
    if cp < 0x3400:  # below the first block: answers most characters at once
        return False
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


# ---------------------------------------------------------------------------------------
# Vocabulary files
# ---------------------------------------------------------------------------------------

def _check_vocab(tokens: Sequence[str], source: str) -> dict[str, int]:
    """Build ``token -> id`` and reject empty tokens, duplicates and missing specials."""
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if not isinstance(token, str) or token == "":
            raise ValueError(f"{source}: line {index + 1}: empty token (every line must hold one token)")
        if token in vocab:
            raise ValueError(f"{source}: line {index + 1}: duplicate token {token!r} "
                             f"(first on line {vocab[token] + 1})")
        vocab[token] = index
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"{source}: missing special token(s) {', '.join(missing)}; "
                         f"a BERT vocabulary needs {', '.join(SPECIAL_TOKENS)}")
    return vocab


def load_vocab(path: str | os.PathLike) -> dict[str, int]:
    """Read a ``vocab.txt``: one token per line, the id is the 0-based line number.

    Raises FileNotFoundError for a missing file and ValueError (naming the file, and the
    line for duplicates and empty lines) for an invalid one. A final newline, a UTF-8
    BOM and CRLF line ends are accepted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not valid UTF-8 ({err})") from None
    # Split on "\n" only: str.splitlines() would also split on U+2028, U+0085, ... which
    # are legitimate (if odd) characters in a token.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline
    tokens = [line[:-1] if line.endswith("\r") else line for line in lines]
    return _check_vocab(tokens, str(path))


def _tokens_in_id_order(vocab: Sequence[str] | dict[str, int]) -> list[str]:
    """A list of tokens (id = position) from a list or a ``token -> id`` dict."""
    if isinstance(vocab, dict):
        ordered = sorted(vocab.items(), key=lambda item: item[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise ValueError("vocabulary ids must be exactly 0 .. len(vocab) - 1")
        return [t for t, _ in ordered]
    return list(vocab)


def save_vocab(tokens: Sequence[str] | dict[str, int], path: str | os.PathLike) -> Path:
    """Write tokens (a list in id order, or a ``token -> id`` dict) one per line; return the path."""
    tokens = _tokens_in_id_order(tokens)
    path = Path(path)
    for index, token in enumerate(tokens):
        if "\n" in token or "\r" in token:
            raise ValueError(f"token {index} ({token!r}) contains a line break")
    _check_vocab(tokens, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8", newline="\n")
    return path


# ---------------------------------------------------------------------------------------
# Stage 1: BasicTokenizer
# ---------------------------------------------------------------------------------------

class BasicTokenizer:
    """Text -> words: clean, split CJK, (lower-case + strip accents), split punctuation.

    ``never_split`` words (the special tokens, for BertTokenizer) are neither lower-cased
    nor split when they appear as a whole whitespace-separated word.
    """

    def __init__(self, do_lower_case: bool = True, never_split: Iterable[str] = ()):
        self.do_lower_case = do_lower_case
        self.never_split = frozenset(never_split)

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into words, following BERT step by step."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        text = self.clean_text(text)
        text = self.space_cjk_chars(text)
        # transformers' addition: one code point sequence per character, so a composed
        # and a decomposed "é" give the same word in cased mode.
        text = unicodedata.normalize("NFC", text)
        words = []
        for word in text.split():
            if word in self.never_split:
                words.append(word)
                continue
            if self.do_lower_case:
                word = self.strip_accents(word.lower())
            words.extend(self.split_on_punctuation(word))
        # Google re-splits the words on whitespace here. lower() and NFD never create
        # whitespace and no word is empty, so it changes nothing; kept to mirror Google.
        return " ".join(words).split()

    @staticmethod
    def clean_text(text: str) -> str:
        """Drop NUL, U+FFFD and control characters; map whitespace to a plain space."""
        if text.isascii() and text.isprintable():
            return text  # printable ASCII has no controls, and its only whitespace is " "
        out = []
        for char in text:
            if char == "\x00" or char == "\ufffd" or is_control(char):
                continue
            out.append(" " if is_whitespace(char) else char)
        return "".join(out)

    @staticmethod
    def space_cjk_chars(text: str) -> str:
        """Surround every CJK ideograph with spaces (Chinese is written without them)."""
        if not text or max(text) < "\u3400":
            return text  # nothing at or above the first CJK block
        return "".join(f" {c} " if is_cjk_char(c) else c for c in text)

    @staticmethod
    def strip_accents(word: str) -> str:
        """Decompose (NFD) and drop the combining marks (category Mn): "café" -> "cafe"."""
        if word.isascii():
            return word  # ASCII neither decomposes nor has combining marks
        return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")

    @staticmethod
    def split_on_punctuation(word: str) -> list[str]:
        """Make every punctuation character its own word: "can't!" -> ["can", "'", "t", "!"]."""
        if word.isascii():
            return _ASCII_PIECES_RE.findall(word)  # the same split, done by the regex
        pieces: list[str] = []
        current = ""
        for char in word:
            if is_punctuation(char):
                if current:
                    pieces.append(current)
                pieces.append(char)
                current = ""
            else:
                current += char
        if current:
            pieces.append(current)
        return pieces


# ---------------------------------------------------------------------------------------
# Stage 2: WordPiece
# ---------------------------------------------------------------------------------------

class WordpieceTokenizer:
    """Word -> pieces by greedy longest-match-first against a vocabulary.

    "unaffable" -> ["un", "##aff", "##able"]. A word with an unmatchable position, or
    longer than ``max_input_chars_per_word`` characters, becomes the single ``unk_token``.
    """

    def __init__(self, vocab, unk_token: str = UNK, max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD):
        self.vocab = vocab  # anything supporting `in` (a dict or a set of tokens)
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text: str) -> list[str]:
        """WordPiece every whitespace-separated word of ``text`` (BasicTokenizer output)."""
        pieces = []
        for word in text.split():
            pieces.extend(self.tokenize_word(word))
        return pieces

    def tokenize_word(self, word: str) -> list[str]:
        """The pieces of one word, or ``[unk_token]``."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        vocab = self.vocab
        pieces = []
        start = 0
        while start < len(word):
            # Try the longest candidate first and shrink it from the right.
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            else:
                return [self.unk_token]  # nothing matches at `start`: the whole word is unknown
            pieces.append(piece)
            start = end
        return pieces


# ---------------------------------------------------------------------------------------
# The full tokenizer
# ---------------------------------------------------------------------------------------

# A chunk is a maximal run of characters that are not whitespace to BERT. Whitespace is
# what clean_text turns into a space (\t \n \r and Zs) plus U+2028/U+2029, which survive
# cleaning (categories Zl/Zp) but are split on by str.split(). Every other character,
# control characters included, belongs to a chunk and is handled inside it.
_CHUNK_RE = re.compile("[^\t\n\r" + _ZS_CHARS + "\u2028\u2029]+")

_TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
_NO_TRUNCATION = (False, None, "do_not_truncate")


class BertTokenizer:
    """BERT's tokenizer: BasicTokenizer + WordPiece + special tokens and model inputs.

    Args:
        vocab: path of a ``vocab.txt`` (one token per line, id = line number), or the
            tokens themselves: a list in id order or a ``token -> id`` dict.
        do_lower_case: lower-case and strip accents (True for ``*-uncased`` models).
        model_max_length: written to ``tokenizer_config.json``; not used for truncation.
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
            self.vocab = _check_vocab(_tokens_in_id_order(vocab), "vocabulary")
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
            for chunk in _CHUNK_RE.findall(text):
                chunk_ids = cache.get(chunk)
                ids += chunk_ids if chunk_ids is not None else self._chunk_ids(chunk)
            return ids
        for start, end, special in self._segments(text):
            if special:
                ids.append(self.vocab[text[start:end]])
                continue
            for chunk in _CHUNK_RE.findall(text, start, end):
                chunk_ids = cache.get(chunk)
                ids += chunk_ids if chunk_ids is not None else self._chunk_ids(chunk)
        return ids

    # -- offsets ---------------------------------------------------------------------

    def _char_spans(self, chunk: str, normalized: str) -> list[tuple[int, int]]:
        """For each character of ``normalized`` (the chunk's words joined), the span of
        raw chunk characters it came from."""
        if chunk.isascii() and len(chunk) == len(normalized):
            return [(k, k + 1) for k in range(len(chunk))]  # ASCII without controls: 1:1
        tokenize = self.basic_tokenizer.tokenize
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

    def _chunk_ids_offsets(self, chunk: str) -> list[tuple[int, int, int]]:
        """``(id, start, end)`` for each token of a chunk, offsets relative to the chunk."""
        cached = self._offset_cache.get(chunk)
        if cached is not None:
            return cached
        words = self.basic_tokenizer.tokenize(chunk)
        char_spans = self._char_spans(chunk, "".join(words))
        out = []
        pos = 0  # position in the joined normalised words
        for word in words:
            pieces = self.wordpiece_tokenizer.tokenize_word(word)
            if pieces == [UNK]:
                spans = [(pos, pos + len(word))]
            else:
                spans, p = [], pos
                for i, piece in enumerate(pieces):
                    n = len(piece) - (2 if i > 0 else 0)  # "##" is not in the text
                    spans.append((p, p + n))
                    p += n
            for piece, (a, b) in zip(pieces, spans):
                out.append((self.vocab[piece], char_spans[a][0], char_spans[b - 1][1]))
            pos += len(word)
        if len(chunk) <= self.CACHE_MAX_CHUNK:
            if len(self._offset_cache) >= self.CACHE_SIZE:
                self._offset_cache.clear()
            self._offset_cache[chunk] = out
        return out

    def _text_to_ids_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Text -> (ids, character spans into ``text``)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        ids, offsets = [], []
        for start, end, special in self._segments(text):
            if special:
                ids.append(self.vocab[text[start:end]])
                offsets.append((start, end))
                continue
            for match in _CHUNK_RE.finditer(text, start, end):
                base = match.start()
                for token_id, a, b in self._chunk_ids_offsets(match.group()):
                    ids.append(token_id)
                    offsets.append((base + a, base + b))
        return ids, offsets

    # -- model inputs ----------------------------------------------------------------

    def encode(self, text: str, text_pair: str | None = None, max_length: int | None = 128,
               truncation: str | bool | None = "longest_first", padding: str | bool | None = False,
               return_offsets: bool = False) -> dict[str, list]:
        """``[CLS] text [SEP]`` or ``[CLS] text [SEP] text_pair [SEP]`` as model inputs.

        Returns a dict of lists: ``input_ids``, ``token_type_ids`` (0 up to and including
        the first [SEP], 1 after), ``attention_mask`` (1 real, 0 padding) and, with
        ``return_offsets``, ``offsets``: (start, end) character spans into ``text`` or
        ``text_pair``, (0, 0) for special and padding tokens.

        truncation: "longest_first" (drop one token at a time from the longer sequence,
        the second on ties), "only_first", "only_second", or False / "do_not_truncate"
        (ValueError if the result would exceed ``max_length``); True means
        "longest_first". padding: False, or "max_length" to pad up to ``max_length``
        ("longest" is accepted and does nothing for one sequence). ``max_length=None``:
        no limit.
        """
        if return_offsets:
            ids_a, offs_a = self._text_to_ids_offsets(text)
            ids_b, offs_b = self._text_to_ids_offsets(text_pair) if text_pair is not None else (None, None)
        else:
            ids_a = self._text_to_ids(text)
            ids_b = self._text_to_ids(text_pair) if text_pair is not None else None
        keep_a, keep_b = self._truncated_lengths(len(ids_a), None if ids_b is None else len(ids_b),
                                                 max_length, truncation)
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
        padding = _padding_mode(padding)
        if padding == "max_length":
            if max_length is None:
                raise ValueError('padding="max_length" needs a max_length')
            self._pad(encoding, max_length)
        return encoding

    @staticmethod
    def _truncated_lengths(len_a: int, len_b: int | None, max_length: int | None,
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

    def _pad(self, encoding: dict[str, list], length: int) -> None:
        """Pad an encoding in place to ``length`` ([PAD] id, type 0, mask 0, offsets (0, 0))."""
        n = length - len(encoding["input_ids"])
        if n <= 0:
            return
        encoding["input_ids"] += [self.pad_token_id] * n
        encoding["token_type_ids"] += [0] * n
        encoding["attention_mask"] += [0] * n
        if "offsets" in encoding:
            encoding["offsets"] += [(0, 0)] * n

    def batch_encode(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                     max_length: int | None = 128, truncation: str | bool | None = "longest_first",
                     padding: str | bool | None = "longest", return_offsets: bool = False) -> dict[str, list[list]]:
        """Encode many texts (or pairs); returns a dict of lists of lists.

        padding: "longest" (to the longest in the batch), "max_length", or False (ragged).
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
                self._pad(e, target)
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
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vocab_path = save_vocab(self.ids_to_tokens, folder / "vocab.txt")
        config = {"do_lower_case": self.do_lower_case, "tokenizer_class": "BertTokenizer",
                  "model_max_length": self.model_max_length}
        config_path = folder / "tokenizer_config.json"
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return [vocab_path, config_path]

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **overrides) -> "BertTokenizer":
        """Load ``folder/vocab.txt``, with ``do_lower_case`` and ``model_max_length`` from
        ``folder/tokenizer_config.json`` when present; keyword arguments override them.

        A folder without ``vocab.txt`` but with a BERT ``tokenizer.json`` (what
        transformers 5.x saves) is read from that file instead."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"tokenizer folder not found: {folder}")
        kwargs = {}
        config_path = folder / "tokenizer_config.json"
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{config_path}: invalid JSON ({err})") from None
            if not isinstance(config, dict):
                raise ValueError(f"{config_path}: expected a JSON object")
            for key in ("do_lower_case", "model_max_length"):
                if key in config:
                    kwargs[key] = config[key]
            _check_supported_config(config, config_path, kwargs.get("do_lower_case", True))
        vocab: Path | list[str] = folder / "vocab.txt"
        if not vocab.is_file() and (folder / "tokenizer.json").is_file():
            vocab, kwargs["do_lower_case"] = _read_tokenizer_json(folder / "tokenizer.json")
        kwargs.update(overrides)
        return cls(vocab, **kwargs)


def _read_tokenizer_json(path: Path) -> tuple[list[str], bool]:
    """(tokens, do_lower_case) from a Hugging Face ``tokenizer.json`` of a BERT tokenizer."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        model, normalizer = spec["model"], spec["normalizer"] or {}
        pre_tokenizer = spec["pre_tokenizer"] or {}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a tokenizer.json we can read ({err!r})") from None
    lower = normalizer.get("lowercase")
    expected = [(model.get("type"), "WordPiece"), (model.get("continuing_subword_prefix"), "##"),
                (model.get("max_input_chars_per_word"), MAX_INPUT_CHARS_PER_WORD), (model.get("unk_token"), UNK),
                (normalizer.get("type"), "BertNormalizer"), (normalizer.get("clean_text"), True),
                (normalizer.get("handle_chinese_chars"), True), (normalizer.get("strip_accents"), lower),
                (pre_tokenizer.get("type"), "BertPreTokenizer"), (isinstance(lower, bool), True)]
    if normalizer.get("strip_accents") is None:
        expected.pop(7)  # None means "as lowercase"
    if any(found != wanted for found, wanted in expected):
        raise ValueError(f"{path}: not a BERT WordPiece tokenizer with the standard settings; "
                         "minibert cannot reproduce it")
    return _tokens_in_id_order(model["vocab"]), lower


def _check_supported_config(config: dict, path: Path, do_lower_case: bool) -> None:
    """Refuse transformers tokenizer settings we do not implement, rather than silently
    giving different ids."""
    defaults = {"do_basic_tokenize": True, "tokenize_chinese_chars": True, "never_split": None,
                "unk_token": UNK, "sep_token": SEP, "pad_token": PAD, "cls_token": CLS, "mask_token": MASK}
    for key, default in defaults.items():
        value = config.get(key, default)
        if isinstance(value, dict):  # transformers may store special tokens as AddedToken dicts
            value = value.get("content")
        if value != default and not (key == "never_split" and not value):
            raise ValueError(f"{path}: {key}={value!r} is not supported (minibert implements {default!r})")
    strip_accents = config.get("strip_accents")
    if strip_accents is not None and strip_accents != do_lower_case:
        raise ValueError(f"{path}: strip_accents={strip_accents!r} with do_lower_case={do_lower_case!r} is not "
                         "supported (minibert strips accents exactly when it lower-cases)")


def _padding_mode(padding) -> str | None:
    """Normalise the padding argument to None, "longest" or "max_length"."""
    if padding in (False, None, "do_not_pad"):
        return None
    if padding is True or padding == "longest":
        return "longest"
    if padding == "max_length":
        return "max_length"
    raise ValueError(f'padding must be False, "longest" or "max_length", not {padding!r}')


# ---------------------------------------------------------------------------------------
# Vocabulary trainer
# ---------------------------------------------------------------------------------------

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
            chunk_counts.update(_CHUNK_RE.findall(line))
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
        raise ValueError("no training files given")
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
        raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(vocab)} special and "
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
