"""A tokenizer's files: vocab.txt, tokenizer_config.json, and transformers' tokenizer.json, read and written.

    vocab = load_vocab("vocab.txt")                 # token -> id, the id being the 0-based line number
    save_vocab(tokens, "out/vocab.txt")
    vocab, kwargs = read_tokenizer_folder(folder)   # what BertTokenizer.from_pretrained builds from
    write_tokenizer_folder(folder, tokens, do_lower_case=True, model_max_length=512)

A vocabulary must hold BERT's five special tokens; an empty or duplicate token is an error
naming the file and line. A tokenizer_config.json asking for something minibert does not
implement (other special tokens, no basic tokenization, accents kept while lower-casing) is
refused rather than giving other ids; a tokenizer.json (what transformers 5.x saves) is read
when it describes BERT's standard WordPiece.

Not here: turning text into ids (`tokenizer.py`, `wordpiece.py`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from .errors import DataError
from .runfolder import write_text_atomic
from .textfile import read_json_object, read_text
from .wordpiece import MAX_INPUT_CHARS_PER_WORD, UNK

PAD, CLS, SEP, MASK = "[PAD]", "[CLS]", "[SEP]", "[MASK]"  # UNK comes from wordpiece.py
# The vocabulary trainer writes them first, in this order, so [PAD] is id 0 as in BERT's vocabulary.
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)


def check_vocab(tokens: Sequence[str], source: str) -> dict[str, int]:
    """Build ``token -> id`` and reject empty tokens, duplicates and missing specials."""
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if not isinstance(token, str) or token == "":
            raise DataError(f"{source}: line {index + 1}: empty token (every line must hold one token)")
        if token in vocab:
            raise DataError(f"{source}: line {index + 1}: duplicate token {token!r} "
                            f"(first on line {vocab[token] + 1})")
        vocab[token] = index
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise DataError(f"{source}: missing special token(s) {', '.join(missing)}; "
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
    text = read_text(path)
    # Split on "\n" only: str.splitlines() would also split on U+2028, U+0085, ... which
    # are legitimate (if odd) characters in a token.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline
    tokens = [line[:-1] if line.endswith("\r") else line for line in lines]
    return check_vocab(tokens, str(path))


def tokens_in_id_order(vocab: Sequence[str] | dict[str, int]) -> list[str]:
    """A list of tokens (id = position) from a list or a ``token -> id`` dict."""
    if isinstance(vocab, dict):
        ordered = sorted(vocab.items(), key=lambda item: item[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise DataError("vocabulary ids must be exactly 0 .. len(vocab) - 1")
        return [t for t, _ in ordered]
    return list(vocab)


def save_vocab(tokens: Sequence[str] | dict[str, int], path: str | os.PathLike) -> Path:
    """Write tokens (a list in id order, or a ``token -> id`` dict) one per line; return the path."""
    tokens = tokens_in_id_order(tokens)
    path = Path(path)
    for index, token in enumerate(tokens):
        if "\n" in token or "\r" in token:
            raise DataError(f"token {index} ({token!r}) contains a line break")
    check_vocab(tokens, str(path))
    return write_text_atomic(path, "".join(t + "\n" for t in tokens))  # whole or not at all; errors name it

def read_tokenizer_folder(folder: str | os.PathLike) -> tuple[Path | list[str], dict]:
    """(vocab.txt's path, or tokenizer.json's tokens; BertTokenizer's keyword arguments) of a tokenizer folder.

    do_lower_case and model_max_length come from tokenizer_config.json when present; a folder
    without vocab.txt but with a BERT tokenizer.json is read from that file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {folder}")
    kwargs = {}
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        config = read_json_object(config_path)
        for key in ("do_lower_case", "model_max_length"):
            if key in config:
                kwargs[key] = config[key]
        _check_supported_config(config, config_path, kwargs.get("do_lower_case", True))
    vocab: Path | list[str] = folder / "vocab.txt"
    if not vocab.is_file() and (folder / "tokenizer.json").is_file():
        vocab, kwargs["do_lower_case"] = _read_tokenizer_json(folder / "tokenizer.json")
    return vocab, kwargs


def write_tokenizer_folder(folder: str | os.PathLike, tokens: Sequence[str], do_lower_case: bool,
                           model_max_length: int) -> list[Path]:
    """vocab.txt and tokenizer_config.json (loadable by transformers' AutoTokenizer); their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path = save_vocab(tokens, folder / "vocab.txt")
    config = {"do_lower_case": do_lower_case, "tokenizer_class": "BertTokenizer", "model_max_length": model_max_length}
    config_path = folder / "tokenizer_config.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return [vocab_path, config_path]


def _read_tokenizer_json(path: Path) -> tuple[list[str], bool]:
    """(tokens, do_lower_case) from a Hugging Face ``tokenizer.json`` of a BERT tokenizer."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        model, normalizer = spec["model"], spec["normalizer"] or {}
        pre_tokenizer = spec["pre_tokenizer"] or {}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a tokenizer.json we can read ({err!r})") from None
    lower = normalizer.get("lowercase")
    expected = [(model.get("type"), "WordPiece"), (model.get("continuing_subword_prefix"), "##"),
                (model.get("max_input_chars_per_word"), MAX_INPUT_CHARS_PER_WORD), (model.get("unk_token"), UNK),
                (normalizer.get("type"), "BertNormalizer"), (normalizer.get("clean_text"), True),
                (normalizer.get("handle_chinese_chars"), True), (normalizer.get("strip_accents"), lower),
                (pre_tokenizer.get("type"), "BertPreTokenizer"), (isinstance(lower, bool), True)]
    if normalizer.get("strip_accents") is None:
        expected.pop(7)  # None means "as lowercase"
    if any(found != wanted for found, wanted in expected):
        raise DataError(f"{path}: not a BERT WordPiece tokenizer with the standard settings; "
                        "minibert cannot reproduce it")
    return tokens_in_id_order(model["vocab"]), lower


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
            raise DataError(f"{path}: {key}={value!r} is not supported (minibert implements {default!r})")
    strip_accents = config.get("strip_accents")
    if strip_accents is not None and strip_accents != do_lower_case:
        raise DataError(f"{path}: strip_accents={strip_accents!r} with do_lower_case={do_lower_case!r} is not "
                        "supported (minibert strips accents exactly when it lower-cases)")
