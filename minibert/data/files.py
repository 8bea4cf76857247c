"""Your own data: CSV, TSV and JSON Lines files read by column name, and how their labels become classes.

    table = read_table("reviews/train.csv")                     # Table: columns + rows, each with its line
    cols = resolve_columns(table, Columns(text="review"))        # ("review", None, "label")
    rows = table_rows(table, *cols)                              # [Row(text_a, text_b, label, line), ...]
    label_kind(rows, "auto", table.path)                         # ("classification", ("neg", "pos"))

The format comes from the extension: `.csv` (RFC 4180: comma-separated, fields may be
quoted and hold commas, quotes and newlines), `.tsv` (tab-separated, split on tabs only, no
quoting, as GLUE's files) and `.jsonl` / `.json` (JSON Lines: one object per line). A CSV or
TSV file must start with a header line naming its columns.

Columns: `--text-column` (default: the first of text, sentence, sentence1 the file has),
`--text-pair-column` (default: text_pair next to text, sentence2 next to sentence1, else
none: a single-text task) and `--label-column` (default: label, else score).

Labels (`label_kind`), with `--task-type auto` (the default):

* every training label is an integer ("0", "3", -1)            -> classification, the classes
  sorted numerically ("1".."5" star ratings are ids 0..4, named "1".."5");
* any label is not a number ("positive", "austen")            -> classification, every label
  read as a string, the classes sorted alphabetically;
* all labels are numbers and one is not an integer ("0.5", "4.75") -> regression (one output).

`--task-type classification` or `regression` says so instead (integers and decimals as
class names, or integer scores as a regression). Classes are sorted rather than taken in
order of first appearance, so the same data gives the same ids whatever its row order (as
scikit-learn's LabelEncoder). The dev file's labels map through the training file's classes;
one the training file does not have is an error naming the file and line.

Every other defect is an error naming the file and line too: a missing header (its first
line holds no column the run asked for), a row with another number of fields than the
header, a column a row lacks, an empty text, a JSON line that is not an object. This module
does not know GLUE tasks (`tasks.py`: their positional TSV layouts, labels and metrics) or
tokenize (`encoding.py`).
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..errors import DataError
from ..textfile import read_text

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}  # extension -> reader
TEXT_COLUMNS = ("text", "sentence", "sentence1")  # --text-column's default: the first the file has
PAIR_COLUMNS = {"text": "text_pair", "sentence1": "sentence2"}  # --text-pair-column's default, by text column
LABEL_COLUMNS = ("label", "score")  # --label-column's default
TASK_TYPES = ("auto", "classification", "regression")

_INTEGER = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: int() would also take "1_000" and "٣"
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")  # no "nan", "inf"


@dataclass(frozen=True)
class Columns:
    """Which columns hold the text, the optional second text and the label; None: the default (above)."""

    text: str | None = None
    text_pair: str | None = None
    label: str | None = None


class Row(NamedTuple):
    """One labelled row: its texts, its label as written (stripped), its 1-based line."""

    text_a: str
    text_b: str | None
    label: str
    line: int


@dataclass
class Table:
    """A parsed file: its column names (the header, or the first JSON object's keys) and its
    rows as (line, {column: value}): strings in a CSV/TSV file, parsed JSON values in JSON
    Lines (turned into text when a column is read: numbers as JSON writes them, "3", "0.5")."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict]]


def file_format(path) -> str:
    """'csv', 'tsv' or 'jsonl' from the extension; ValueError naming the supported ones."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown data file type {Path(path).suffix!r}; use .csv, .tsv (with a header line) "
                        f"or .jsonl/.json (JSON Lines)")
    return fmt


def _header(path: Path, line: int, names: list[str]) -> list[str]:
    names = [n.strip() for n in names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{path}:{line}: the header names {twice} more than once")
    return names


def _delimited(path: Path, text: str, fmt: str) -> Table:
    """CSV (csv module: quotes, embedded newlines) or TSV (tabs only) with a header line."""
    if fmt == "csv":
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        records, end = [], 0
        try:
            for fields in reader:
                records.append((end + 1, fields))  # a quoted newline spans lines: the record starts after the last
                end = reader.line_num
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: not valid CSV: {exc}") from None
    else:
        records = [(i, line.rstrip("\r").split("\t")) for i, line in enumerate(text.split("\n"), start=1)]
    records = [(line, fields) for line, fields in records if any(f.strip() for f in fields)]  # blank lines
    if not records:
        raise DataError(f"{path}: file is empty (expected a header line naming the columns)")
    (line, names), rows = records[0], []
    names = _header(path, line, names)
    for line, fields in records[1:]:
        if len(fields) != len(names):
            sep = "comma" if fmt == "csv" else "tab"
            raise DataError(f"{path}:{line}: {len(fields)} {sep}-separated fields, but the header has {len(names)} "
                            f"({', '.join(map(repr, names))})")
        rows.append((line, dict(zip(names, fields))))
    if not rows:
        raise DataError(f"{path}: a header line ({', '.join(map(repr, names))}) and no rows of data")
    return Table(path, names, rows)


def _json_text(value, path: Path, line: int, key: str) -> str:
    """A JSON value as text: strings as they are, numbers as written ('3', '0.5'), true/false."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    kind = "null" if value is None else type(value).__name__
    raise DataError(f"{path}:{line}: {key!r} is {kind}, expected a string or a number")


def _refuse_lone_surrogates(value, path: Path, line: int, key: str) -> None:
    """A JSON string may spell half a UTF-16 pair ("\\ud800"): no character at all, which no
    tokenizer or output file can take, so it stops here with its file and line."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(f"{path}:{line}: {key!r} holds a lone surrogate ({value[exc.start]!r} at character "
                            f"{exc.start + 1}), which is not text") from None


def _json_lines(path: Path, text: str) -> Table:
    rows, columns = [], None
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line}: not valid JSON ({exc.msg}); a JSON Lines file holds one object per "
                            f"line") from None
        except RecursionError:
            raise DataError(f"{path}:{line}: JSON nested too deeply to read") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{line}: expected a JSON object ({{\"text\": ..., \"label\": ...}}), found "
                            f"{type(obj).__name__}")
        for key, value in obj.items():
            _refuse_lone_surrogates(value, path, line, key)
        columns = columns if columns is not None else list(obj)
        rows.append((line, obj))  # values become text when a column is read (table_rows)
    if not rows:
        raise DataError(f"{path}: file is empty (expected one JSON object per line)")
    return Table(path, columns, rows)


def read_table(path) -> Table:
    """Parse a .csv/.tsv/.jsonl/.json file (see the module docstring); errors name the file and line."""
    path = Path(path)
    fmt = file_format(path)
    text = read_text(path)
    return _json_lines(path, text) if fmt == "jsonl" else _delimited(path, text, fmt)


def resolve_columns(table: Table, columns: Columns = Columns()) -> tuple[str, str | None, str]:
    """(text, text pair or None, label) column names of `table`, the defaults filled in.

    Raises ValueError naming the file, the flag and the columns the file has: a named column
    it lacks, or no default found (a CSV/TSV without a header line fails here: its first row
    of data is read as the header and names none of the columns).
    """
    have = table.columns

    def pick(given: str | None, defaults: tuple[str, ...], flag: str) -> str | None:
        if given is not None:
            if given not in have:
                raise DataError(f"{table.path}: no column {given!r} ({flag}); the columns are "
                                f"{', '.join(map(repr, have))}")
            return given
        found = next((name for name in defaults if name in have), None)
        if found is None and defaults:
            raise DataError(f"{table.path}: no {flag} column: none of {', '.join(map(repr, defaults))} among the "
                            f"columns {', '.join(map(repr, have))}; name it with {flag} (a CSV or TSV file's "
                            f"first line must be a header naming its columns)")
        return found

    text = pick(columns.text, TEXT_COLUMNS, "--text-column")
    pair_default = (PAIR_COLUMNS[text],) if text in PAIR_COLUMNS and PAIR_COLUMNS[text] in have else ()
    pair = pick(columns.text_pair, pair_default, "--text-pair-column") if columns.text_pair or pair_default else None
    label = pick(columns.label, LABEL_COLUMNS, "--label-column")
    return text, pair, label


def table_rows(table: Table, text: str, text_pair: str | None, label: str) -> list[Row]:
    """The named columns of every row, stripped; ValueError naming the file and line for a row
    that lacks one (JSON Lines), an empty text or an empty label."""
    rows = []
    for line, record in table.rows:
        values = []
        for key in (text, text_pair, label):
            if key is None:
                values.append(None)
                continue
            if key not in record:
                raise DataError(f"{table.path}:{line}: no {key!r} in this row (it has "
                                f"{', '.join(map(repr, record))})")
            value = _json_text(record[key], table.path, line, key).strip()
            if not value:
                raise DataError(f"{table.path}:{line}: empty {'label' if key == label else 'text'} ({key!r})")
            values.append(value)
        rows.append(Row(*values, line))
    return rows


def is_integer(label: str) -> bool:
    return _INTEGER.fullmatch(label) is not None


def parse_number(label: str, where: str) -> float:
    """A regression label -> float; ValueError naming `where` (file:line) if it is not a finite decimal number."""
    if _NUMBER.fullmatch(label) is None:
        raise DataError(f"{where}: label {label!r} is not a number (a regression's labels are scores such as 3.5)")
    return float(label)


def _non_finite(label: str) -> bool:
    """'nan', 'inf', '-Infinity' and the like: what float() reads as a number that is not finite."""
    try:
        return not math.isfinite(float(label))
    except ValueError:
        return False


def class_key(label: str) -> str:
    """How a class label is compared: integers by value ("01" and "1" are one class), others as written."""
    return str(int(label)) if is_integer(label) else label


def why_label_kind(rows: list[Row], task_type: str, kind: str) -> str:
    """Why `label_kind` read these labels as it did, for the log line every run starts with. Labels that
    are all whole numbers written with decimals ("1.0".."4.0") become a regression under auto, which may
    well be classes: the reason then says how to read them as classes."""
    if task_type != "auto":
        return f"--task-type {task_type}"
    labels = [r.label for r in rows]
    if kind == "classification":
        return ("--task-type auto: every label is an integer, classes sorted numerically" if all(map(is_integer, labels))
                else "--task-type auto: the labels are words, classes sorted alphabetically")
    values = {float(label) for label in labels}
    if len(values) <= 20 and all(v.is_integer() for v in values):
        shown = ", ".join(sorted({label for label in labels}, key=float)[:6])
        return (f"--task-type auto: numbers written with decimals ({shown}) are read as scores; if they are "
                f"{len(values)} classes, give --task-type classification")
    return "--task-type auto: the labels are numbers, some not integers, read as scores"


def label_kind(rows: list[Row], task_type: str, path) -> tuple[str, tuple[str, ...] | None]:
    """("classification", the class names in id order) or ("regression", None) for these
    training rows, by `task_type` (auto, classification, regression; see the module docstring).

    Raises ValueError for a classification with a single class, or (regression) a label that
    is not a number, naming the file and line.
    """
    if task_type not in TASK_TYPES:
        raise DataError(f"task type {task_type!r}: expected one of {', '.join(TASK_TYPES)}")
    labels = [r.label for r in rows]
    integers = all(map(is_integer, labels))
    numbers = all(_NUMBER.fullmatch(label) for label in labels)
    if task_type != "classification":  # decimal scores and a nan/inf among them: a broken score, not a class
        broken = [r for r in rows if not _NUMBER.fullmatch(r.label) and _non_finite(r.label)]
        scores = [label for label in labels if _NUMBER.fullmatch(label)]
        regression = task_type == "regression" or not all(map(is_integer, scores))
        if broken and regression and len(scores) + len(broken) == len(labels):
            raise DataError(f"{path}:{broken[0].line}: label {broken[0].label!r} is not a finite number (a "
                            f"regression's scores are numbers such as 3.5)")
    if task_type == "regression" or (task_type == "auto" and numbers and not integers):
        for r in rows:
            parse_number(r.label, f"{path}:{r.line}")
        return "regression", None
    if integers:
        classes = tuple(str(v) for v in sorted({int(label) for label in labels}))
    else:
        classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        raise DataError(f"{path}: every training label is {classes[0]!r}; a classifier needs at least two classes "
                        f"(or use --task-type regression for scores)")
    return "classification", classes
