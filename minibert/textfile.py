"""Reading a text or JSON file the user gave, with the one-line errors that name it.

    text = read_text(path)                          # UTF-8, a leading byte-order mark dropped
    config = read_json_object(path, CheckpointError)

Every reader of a user's file (data files, vocabularies, configs, --input, GloVe, checkpoints'
trainer_state.json) goes through these two, so a missing file, bytes that are not UTF-8 and
JSON that does not parse read the same everywhere: `<path>: not valid UTF-8 (byte 17): ...`.
`error` is the UserError kind to raise (errors.DataError unless the file belongs to a
checkpoint); a missing file is FileNotFoundError (an OSError: also one line on the command line).

Not here: what the files hold (their readers: data/, tokenizer.py, config.py, ...).
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import DataError


def read_text(path, error: type = DataError) -> str:
    """The whole file as text: UTF-8, a leading byte-order mark dropped (line ends kept as they are)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file")
    try:
        return path.read_bytes().decode("utf-8-sig")  # a byte-order mark is not part of the first line
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 (byte {exc.start}): {exc.reason}") from None


def read_json_object(path, error: type = DataError) -> dict:
    """A file holding one JSON object, as a dict; `error` when it is not UTF-8, not JSON or not an object."""
    try:
        value = json.loads(read_text(path, error))
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:  # [[[[... nested deeper than Python's parser goes
        raise error(f"{path}: JSON nested too deeply to read") from None
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object")
    return value
