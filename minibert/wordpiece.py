"""BERT's tokenization algorithm: text -> words -> WordPiece pieces, exactly as Google's ``tokenization.py``.

    BasicTokenizer(do_lower_case=True).tokenize("Héllo, world!")    # ['hello', ',', 'world', '!']
    WordpieceTokenizer(vocab).tokenize_word("unaffable")             # ['un', '##aff', '##able']

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

The character classes these stages use (whitespace, control, punctuation, CJK) are BERT's
definitions, written out below. The slow paths have ASCII shortcuts (no cleaning, CJK or
accent work for ASCII, one regex for ASCII punctuation) that give the same result as the
per-character loops.

This is not the tokenizer a model uses: ``minibert.tokenizer.BertTokenizer`` adds the
vocabulary files, special tokens, ``[CLS] A [SEP] B [SEP]`` model inputs, truncation,
padding, the chunk cache that makes it fast, and offsets; its docstring also says how
these stages compare with transformers' tokenizers. Learning a vocabulary from text is
``minibert.wordpiece_trainer``.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable

__all__ = ["BasicTokenizer", "WordpieceTokenizer", "CHUNK_RE", "UNK", "MAX_INPUT_CHARS_PER_WORD",
           "is_whitespace", "is_control", "is_punctuation", "is_cjk_char"]

UNK = "[UNK]"  # the one piece a word becomes when WordPiece cannot match it
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


# A chunk is a maximal run of characters that are not whitespace to BERT. Whitespace is
# what clean_text turns into a space (\t \n \r and Zs) plus U+2028/U+2029, which survive
# cleaning (categories Zl/Zp) but are split on by str.split(). Every other character,
# control characters included, belongs to a chunk and is handled inside it. Chunks are
# tokenized independently, which is what BertTokenizer's cache and the vocabulary
# trainer's word counts rely on.
CHUNK_RE = re.compile("[^\t\n\r" + _ZS_CHARS + "\u2028\u2029]+")


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
