"""Predictions from a trained classifier: texts in, labels and scores out, as transformers' pipeline.

    clf = TextClassifier.from_pretrained("runs/quick/student")
    clf("a gripping film")                  # [{"label": "positive", "score": 0.97}]
    clf(["a gripping film", "dull"])        # one {"label", "score"} per text
    clf({"text": "A man sings.", "text_pair": "A man is singing."})    # a pair: one dict
    clf("dull", top_k=None)                 # every class, best first
    clf.logits(texts, pairs)                # (N, C) float32, in input order
    predict(PredictSettings(model=..., input="dev.tsv", output="preds.jsonl"))   # the predict command

`TextClassifier` answers as `transformers.pipeline("text-classification", model=folder)` does on
the same folder: same inputs, same output shapes, same labels (config.json's `id2label`), same
scores (softmax over the logits; sigmoid for a one-output multi-label model; the raw value for a
regression), held to it within 1e-5 by `tests/test_predict.py`. Two things differ on purpose:

* Truncation. transformers' pipeline does not truncate, so a text longer than the model's
  position embeddings (512 tokens for BERT) fails inside the model. Here such a text is cut to
  `max_length` (default: the model's maximum), never silently: the call warns, and the predict
  command's log says, how many texts were cut and how long the longest was.
* Batching. Texts are sorted by length and batched (`batch_size`), so a batch pads only to
  its own longest text; results come back in input order. transformers' pipeline runs one text
  at a time unless given a batch size, and then pads each batch as it comes.

A one-output model is a regression in minibert (its loss is MSE), so its score is the raw output
unless config.json's `problem_type` says otherwise; models minibert saves carry
`problem_type: "regression"` so that transformers agrees.

This module also reads the predict command's input files (one text per line, or CSV/TSV/JSONL
with a header) and writes its output (JSONL or TSV). It does not train, score against labels
(`evaluation.py`) or parse flags (`train.py`).
"""
from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .messages import say
from .textfile import read_text
from .errors import DataError, UsageError
from . import checkpoint
from .backend import to_numpy
from .data.encoding import EncodedExamples, encode_examples, note_truncation, truncation_note
from .data.files import PAIR_COLUMNS, TEXT_COLUMNS, read_table
from .data.tasks import InputExample
from .model import BertForSequenceClassification
from .runfolder import write_text_atomic
from .settings import PredictSettings
from .tokenizer import BertTokenizer

FUNCTIONS = ("softmax", "sigmoid", "none")  # function_to_apply, as transformers spells them
OUTPUT_FORMATS = (".jsonl", ".tsv")


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, shifted by the row maximum (transformers' own formula)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))  # (N, C)
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


class TextClassifier:
    """A sequence classifier and its tokenizer, called like transformers' text-classification pipeline.

    Args:
        model: a BertForSequenceClassification (put in eval mode here: no dropout).
        tokenizer: its BertTokenizer.
        max_length: tokens per input, [CLS] and [SEP] included; longer inputs are cut (the longer
            text of a pair first) and counted. None: the model's max_position_embeddings.
        batch_size: inputs per forward pass.
    """

    def __init__(self, model: BertForSequenceClassification, tokenizer, *, max_length: int | None = None,
                 batch_size: int = 32):
        positions = model.config.max_position_embeddings
        if max_length is not None and not 2 < max_length <= positions:
            raise DataError(f"max_length {max_length} must be between 3 and the model's {positions} position "
                            "embeddings (max_position_embeddings)")
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length or positions
        self.batch_size = batch_size
        n = model.num_labels
        self.labels = model.config.label_names(n)  # config.json's id2label, else LABEL_0, LABEL_1, ...
        problem = model.config.problem_type
        self.regression = problem == "regression" or (n == 1 and problem is None)
        self.default_function = ("none" if self.regression else
                                 "sigmoid" if n == 1 or problem == "multi_label_classification" else "softmax")

    @classmethod
    def from_pretrained(cls, folder, *, max_length: int | None = None, batch_size: int = 32,
                        device: str = "numpy") -> "TextClassifier":
        """The classifier saved in `folder` (config.json, model.safetensors, vocab.txt or tokenizer.json),
        on `device`. A folder without trained weights for every parameter (an encoder without its
        classifier, say) is a CheckpointError: its predictions would be random."""
        path = checkpoint.resolve_model_path(folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", checkpoint.CheckpointWarning)  # missing weights are an error here
            model = BertForSequenceClassification.from_pretrained(path)
        if model.load_report["missing"]:
            raise checkpoint.CheckpointError(
                f"{path} holds no trained {', '.join(model.load_report['missing'][:3])}"
                f"{' ...' if len(model.load_report['missing']) > 3 else ''}: not a fine-tuned classifier "
                "(fine-tune or distil it on a task first)")
        if device != "numpy":
            model.to(device)
        return cls(model, BertTokenizer.from_pretrained(path), max_length=max_length, batch_size=batch_size)

    def __repr__(self) -> str:
        return (f"TextClassifier(labels={self.labels}, max_length={self.max_length}, batch_size={self.batch_size}, "
                f"function_to_apply={self.default_function!r})")

    # -------------------------------------------------------------------------- logits and scores
    def encode(self, texts: list[str], pairs: list[str | None] | None = None) -> EncodedExamples:
        """Texts (and their pairs: None for a lone text) as unpadded token ids, cut to max_length
        and counted (num_truncated, longest)."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts")
        if pairs is not None and len(pairs) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(pairs)} text pairs")
        examples = [InputExample(t, None if pairs is None else pairs[i], 0, i + 1)  # the label is unused
                    for i, t in enumerate(texts)]
        return encode_examples(examples, self.tokenizer, self.max_length)

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """The model's logits (N, C) float32 for texts (and their pairs), in input order; warns
        when inputs longer than max_length were cut."""
        encoded = self.encode(texts, pairs)
        note = truncation_note(encoded.num_truncated, len(encoded), "inputs", self.max_length, encoded.longest)
        if note:
            warnings.warn(note, stacklevel=2)
        return self.forward(encoded)

    def forward(self, encoded: EncodedExamples, progress: bool = False) -> np.ndarray:
        """Logits (N, C) float32 of encoded inputs, in their order, batch_size at a time, in eval mode."""
        logits = np.zeros((len(encoded), self.model.num_labels), dtype=np.float32)  # (N, C)
        # Shortest first: each batch pads only to its own longest row; rows go back to their place.
        order = np.argsort(encoded.lengths, kind="stable")
        with tqdm(total=len(order), disable=not progress, desc="predict", unit="text", dynamic_ncols=True) as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                b = encoded.collate(idx)
                out = self.model(b["input_ids"], b["token_type_ids"], b["attention_mask"])
                logits[idx] = to_numpy(out.logits)  # (B, C)
                bar.update(len(idx))
        return logits

    def scores(self, logits: np.ndarray, function_to_apply: str | None = None) -> np.ndarray:
        """Logits (N, C) -> scores (N, C): probabilities (softmax, sigmoid) or the raw values ("none")."""
        function = function_to_apply or self.default_function
        if function not in FUNCTIONS:
            raise DataError(f"function_to_apply must be one of {', '.join(FUNCTIONS)}, not {function!r}")
        return _softmax(logits) if function == "softmax" else _sigmoid(logits) if function == "sigmoid" else logits

    # --------------------------------------------------------------------------- the pipeline call
    def __call__(self, inputs, *, top_k: int | None = 1, function_to_apply: str | None = None):
        """Classify one input or a list of them, as transformers' pipeline does.

        An input is a text, or a pair as {"text": ..., "text_pair": ...}. top_k=1 (the default):
        one {"label", "score"} per input, and a lone text gives a list of one; top_k=k: the k best
        classes per input, best first; top_k=None: every class. function_to_apply: "softmax",
        "sigmoid" or "none" (default: softmax for several classes, the raw value for a regression).
        """
        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else list(inputs)
        texts, pairs = [], []  # a pair's second text, None for a lone text
        for item in items:
            if isinstance(item, str):
                texts.append(item)
                pairs.append(None)
            elif isinstance(item, dict) and set(item) <= {"text", "text_pair"} and "text" in item:
                texts.append(item["text"])
                pairs.append(item.get("text_pair"))
            else:
                raise DataError('each input must be a text or a {"text": ..., "text_pair": ...} dict, '
                                f"got {item!r}")
        scores = self.scores(self.logits(texts, pairs), function_to_apply)
        results = []
        for row in scores:  # (C,)
            ranked = sorted(({"label": self.labels[c], "score": float(row[c])} for c in range(len(row))),
                            key=lambda r: r["score"], reverse=True)
            results.append(ranked[0] if top_k == 1 else ranked[:top_k])
        if single:  # transformers: a lone text gives [result], a lone pair the result itself
            return [results[0]] if isinstance(inputs, str) and top_k == 1 else results[0]
        return results


# ================================================================================ the predict command


def read_inputs(path, text_column: str | None = None, text_pair_column: str | None = None
                ) -> tuple[list[str], list[str] | None]:
    """(texts, pairs or None) from a file: .txt, one text per line; .csv, .tsv (with a header) or
    .jsonl, read by `data.files.read_table`, with the texts in `text_column` and their pairs in
    `text_pair_column` (defaults as for training files: text, sentence or sentence1; text_pair
    next to text, sentence2 next to sentence1).

    Errors name the file and line: a row with another number of fields than the header, a
    missing column, a JSON value that is not a text.
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if text_pair_column:
            raise DataError(f"{path}: a .txt file holds one text per line; pairs need a .csv, .tsv or .jsonl file")
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        lines = read_text(path).split("\n")
        if lines[-1] == "":
            lines.pop()  # the final newline
        if not lines:
            raise DataError(f"{path}: no texts")
        return [line.rstrip("\r") for line in lines], None
    table = read_table(path)
    have = table.columns
    text_column = text_column or next((c for c in TEXT_COLUMNS if c in have), None)
    if text_column is None or text_column not in have:
        raise DataError(f"{path}: no text column {text_column or ' or '.join(TEXT_COLUMNS)!r} (--text-column); the "
                        f"columns are {', '.join(map(repr, have))}")
    if text_pair_column is None and PAIR_COLUMNS.get(text_column) in have:
        text_pair_column = PAIR_COLUMNS[text_column]
    columns = [c for c in (text_column, text_pair_column) if c]
    values = {c: [] for c in columns}
    for line, row in table.rows:
        for c in columns:
            if not isinstance(row.get(c), str):
                found = "nothing" if c not in row else repr(row[c])
                raise DataError(f"{path}:{line}: column {c!r} holds {found}, not a text")
            values[c].append(row[c])
    return values[text_column], (values[text_pair_column] if text_pair_column else None)


def input_details(path, keep: list[str] | None) -> tuple[list[int], dict[str, list]]:
    """(each input's line in `path`, {kept column: its values}) for the predict command's messages and
    --keep-columns; a .txt file has no columns to keep."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if keep:
            raise DataError(f"--keep-columns: {path} is a .txt file, one text per line, without columns")
        return list(range(1, len(read_inputs(path)[0]) + 1)), {}
    table = read_table(path)
    missing = [c for c in keep or () if c not in table.columns]
    if missing:
        raise DataError(f"--keep-columns: {path} has no column {missing[0]!r}; the columns are "
                        f"{', '.join(map(repr, table.columns))}")
    return [line for line, _ in table.rows], {c: [row.get(c) for _, row in table.rows] for c in keep or ()}


def skip_blank(texts: list[str], pairs: list[str] | None, lines: list[int] | None, where: str) -> list[int]:
    """The indices of the inputs to classify: blank or whitespace-only texts (or pairs) are left out, and
    said so on the terminal with their lines (a model would give them a confident label all the same)."""
    blank = [i for i, text in enumerate(texts) if not text.strip() or (pairs is not None and not pairs[i].strip())]
    if blank:
        places = [f"line {lines[i]}" if lines else f"text {i + 1}" for i in blank[:10]]
        say(f"note: skipped {len(blank)} blank or whitespace-only input{'s' if len(blank) > 1 else ''} of {where} "
            f"({', '.join(places)}{', ...' if len(blank) > 10 else ''}): no output row for them")
    skipped = set(blank)
    return [i for i in range(len(texts)) if i not in skipped]


def prediction_rows(classifier: TextClassifier, texts: list[str], pairs: list[str] | None, scores: np.ndarray
                    ) -> list[dict]:
    """One dict per input: text (text_pair), label, score and, for classes, every class's score by label name."""
    rows = []
    for i, row in enumerate(scores):  # (C,)
        out = {"text": texts[i]}
        if pairs is not None:
            out["text_pair"] = pairs[i]
        best = int(row.argmax())
        out.update(label=classifier.labels[best], score=float(row[best]))
        if not classifier.regression:
            out["scores"] = {label: float(s) for label, s in zip(classifier.labels, row)}
        rows.append(out)
    return rows


def check_output(path) -> None:
    """ValueError unless `path` names a format write_predictions writes (checked before predicting)."""
    if Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise DataError(f"--output {path}: unknown format {Path(path).suffix!r}; use {' or '.join(OUTPUT_FORMATS)}")


def write_predictions(path, rows: list[dict]) -> Path:
    """Write prediction rows as JSON Lines (.jsonl) or TSV (.tsv, one score_<label> column per class), atomically."""
    path = Path(path)
    check_output(path)
    if path.suffix.lower() == ".jsonl":
        return write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    flat = [{**{k: v for k, v in row.items() if k != "scores"},
             **{f"score_{label}": s for label, s in row.get("scores", {}).items()}} for row in rows]
    out = io.StringIO()
    # csv quotes a field holding a tab, a newline or a quote: csv and pandas readers get the columns back intact
    writer = csv.DictWriter(out, fieldnames=list(flat[0]) if flat else ["text", "label", "score"], delimiter="\t",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return write_text_atomic(path, out.getvalue())


def predict(settings: PredictSettings) -> list[dict]:
    """The predict command: settings.texts or the rows of settings.input through the classifier in
    settings.model; the rows (see prediction_rows) go to settings.output when given. Returns the rows."""
    if not settings.model:
        raise UsageError("predict needs --model FOLDER: a fine-tuned or distilled classifier's folder (e.g. "
                         "runs/quick/student, which `python -m minibert.train` writes)")
    if bool(settings.texts) == bool(settings.input):
        raise DataError("give texts to classify or --input FILE (one of them)")
    if settings.keep_columns and not settings.input:
        raise DataError("--keep-columns copies columns of --input FILE: give one")
    if settings.output:
        check_output(settings.output)
    if settings.texts:
        texts, pairs = list(settings.texts), None
    else:
        texts, pairs = read_inputs(settings.input, settings.text_column, settings.text_pair_column)
    lines, kept = input_details(settings.input, settings.keep_columns) if settings.input else (None, {})
    chosen = skip_blank(texts, pairs, lines, settings.input or "the texts")
    texts = [texts[i] for i in chosen]
    pairs = None if pairs is None else [pairs[i] for i in chosen]
    if not texts:
        raise DataError(f"{settings.input or 'the texts'}: every input is blank")
    classifier = TextClassifier.from_pretrained(settings.model, max_length=settings.max_length or None,
                                                batch_size=settings.batch_size, device=settings.device)
    encoded = classifier.encode(texts, pairs)
    note_truncation(encoded, "inputs")
    logits = classifier.forward(encoded, progress=settings.progress and bool(settings.input))
    rows = prediction_rows(classifier, texts, pairs, classifier.scores(logits))
    for row, i in zip(rows, chosen):  # --keep-columns, after the prediction's own fields
        for column, values in kept.items():
            row["input_" + column if column in row or column == "scores" else column] = values[i]
    if settings.output:
        write_predictions(settings.output, rows)
        say(f"wrote {len(rows)} predictions to {settings.output}")
    return rows
