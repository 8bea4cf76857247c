"""Data: corpus readers, BERT pre-training instances, GLUE readers and metrics, batching.

Everything here runs on the CPU with NumPy and the standard library; a batch is a dict of
NumPy int32 arrays that the training loop moves to the device once.

    documents = read_corpus(["data/wikitext-2-raw", "data/gutenberg"])   # list[list[str]]
    pre = create_pretraining_examples(documents, tok, rng=np.random.default_rng(0))
    for batch in Batcher(pre, 32, seed=0).iter_epoch(0): ...

    train = read_glue("sst-2", "data/SST-2/train.tsv")                  # list[InputExample]
    enc = encode_examples(train, tok, max_length=64)
    for batch in Batcher(enc, 32, seed=0).iter_epoch(epoch, start_batch=k): ...
    compute_metrics("sst-2", preds, labels)                              # {"acc": ...}

Three sections, in the order of the data flow:

1. Corpus readers (WikiText, Project Gutenberg, Google's one-sentence-per-line text) giving
   documents = lists of sentences, and the pre-training instances built from them with
   Google's BERT recipe (sentence pairs for NSP, masked-LM with 80/10/10 replacement).
2. GLUE: a task registry, tab-separated readers with errors that name file and line, and the
   task metrics (accuracy, binary F1, Matthews correlation).
3. Encoding and batching: dynamic padding, length bucketing, and an epoch order that is a
   pure function of (seed, epoch), so a run can resume exactly at batch k of epoch e.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Iterator, Sequence

import numpy as np

IGNORE_INDEX = -100  # mlm_labels value at positions that are not predicted (HF convention)
INT_DTYPE = np.int32  # every id, mask and label array produced here

# =========================================================================================
# 1. Corpora -> documents -> pre-training instances
# =========================================================================================

Document = list  # a document is a list of sentences (str), in reading order

# Words that end with a period without ending the sentence ("Mr. Bennet").
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr rev hon gen col capt lt sgt mt ft vs etc vol fig "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# A candidate boundary: end punctuation, optional closing quotes/brackets, whitespace, and a
# next sentence that starts with an upper-case letter or digit (optionally after an opening
# quote or bracket).
_SENTENCE_END = re.compile(r"""([.!?]+["'\u201d\u2019)\]]*)\s+(?=["'\u201c\u2018(\[]*[A-Z0-9])""")


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences with a simple rule.

    A sentence ends at `.`, `!` or `?` (plus closing quotes/brackets) followed by whitespace
    and a capital letter or digit, except after a known abbreviation ("Mr."), a single letter
    ("H. Wells") or a dotted word ("U.S."). Good enough for NSP pairs; not a linguistic
    sentence splitter.
    """
    text = " ".join(text.split())
    sentences, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        before = text[start : m.start(1)]
        word = before.rsplit(None, 1)[-1] if before and not before[-1].isspace() else ""
        word = word.lstrip("\"'\u201c\u2018([")
        if m.group(1).startswith(".") and not m.group(1).startswith(".."):
            if word.lower() in _ABBREVIATIONS or "." in word or (len(word) == 1 and word.isalpha()):
                continue
        sentences.append(text[start : m.end(1)])
        start = m.end()
    if start < len(text):
        sentences.append(text[start:])
    return [s for s in sentences if s]


def _read_text_file(path) -> str:
    """Whole file as text: UTF-8, a leading BOM dropped, CRLF/CR turned into LF."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid UTF-8 (byte {exc.start}): {exc.reason}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


_WIKI_TITLE = re.compile(r"^= (?!=)(.*?) =$")  # " = Homarus gammarus = "
_WIKI_HEADING = re.compile(r"^(= ){2,}.*( =){2,}$")  # " = = History = = ", " = = = Diet = = = "
_WIKI_AT = re.compile(r" ?@([-,.])@ ?")  # "60 @,@ 000" -> "60,000", "well @-@ known" -> "well-known"


def read_wikitext(path) -> list[Document]:
    """Read a WikiText(-2/-103) `.raw` or `.tokens` file into documents (one per article).

    `\\r` and blank lines are dropped; a ` = Title = ` line starts a new document (the title
    itself is not kept); section headings ` = = X = = ` are dropped; the word-internal
    markers `@-@`, `@,@`, `@.@` become `-`, `,`, `.`; each paragraph line is split into
    sentences with `split_sentences`. Articles without text are dropped.
    """
    documents: list[Document] = [[]]
    for line in _read_text_file(path).split("\n"):
        line = line.strip()
        if not line or _WIKI_HEADING.match(line):
            continue
        if _WIKI_TITLE.match(line):
            documents.append([])
            continue
        documents[-1].extend(split_sentences(_WIKI_AT.sub(r"\1", line)))
    return [d for d in documents if d]


_PG_START = re.compile(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG EBOOK.*$", re.M | re.I)
_PG_END = re.compile(r"^\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG EBOOK.*$", re.M | re.I)
# Paragraphs inside the body that are Project Gutenberg boilerplate, not book text.
_PG_BOILERPLATE = re.compile(r"^(End of (the )?Project Gutenberg|Produced by\b|\[Illustration)", re.I)


def read_gutenberg(path) -> list[Document]:
    """Read a Project Gutenberg plain-text book into one document (a list of sentences).

    A BOM and `\\r` are removed; when the `*** START OF THIS PROJECT GUTENBERG EBOOK` /
    `*** END OF ...` marker lines are present only the text between them is kept (the
    header and the licence go). Paragraphs are separated by blank lines; hard-wrapped
    lines are joined with spaces; `_italics_` underscores are removed. Paragraphs without
    any lower-case letter (chapter headings, `* * *`) and PG boilerplate lines
    ("End of the Project Gutenberg EBook ...", "Produced by ...") are dropped. Returns
    `[sentences]`, or `[]` for a book without text.
    """
    text = _read_text_file(path)
    start, end = _PG_START.search(text), _PG_END.search(text)
    if start:
        text = text[start.end() :]
        end = _PG_END.search(text)
    if end:
        text = text[: end.start()]
    sentences: list[str] = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        paragraph = " ".join(paragraph.replace("_", "").split())
        if not paragraph or not any(c.islower() for c in paragraph) or _PG_BOILERPLATE.match(paragraph):
            continue
        sentences.extend(split_sentences(paragraph))
    return [sentences] if sentences else []


def read_text(path) -> list[Document]:
    """Google's pre-training text format: one sentence per line, blank line = new document."""
    documents: list[Document] = [[]]
    for line in _read_text_file(path).split("\n"):
        line = line.strip()
        if line:
            documents[-1].append(line)
        elif documents[-1]:
            documents.append([])
    return [d for d in documents if d]


def detect_corpus_format(path) -> str:
    """'wikitext', 'gutenberg' or 'text', from the file name and then from its first 64 kB."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".raw", ".tokens")) or "wiki" in name:
        return "wikitext"
    with open(path, "rb") as f:
        head = f.read(65536).decode("utf-8", errors="replace")
    if _PG_START.search(head.replace("\r", "")) or "project gutenberg" in head.lower():
        return "gutenberg"
    if re.fullmatch(r"(pg)?\d+(-\d)?\.txt", name) or path.parent.name.lower() == "gutenberg":
        return "gutenberg"
    lines = [ln.strip() for ln in head.replace("\r", "").split("\n") if ln.strip()]
    if lines and _WIKI_TITLE.match(lines[0]):
        return "wikitext"
    return "text"


_READERS = {"wikitext": read_wikitext, "gutenberg": read_gutenberg, "text": read_text}


def read_corpus(paths) -> list[Document]:
    """Read one or more files or folders into one list of documents.

    `paths` is a path or a list of paths; a folder stands for its `*.txt`, `*.raw` and
    `*.tokens` files in sorted order (so the result is the same on every machine). Each file
    goes to `read_wikitext`, `read_gutenberg` or `read_text` as `detect_corpus_format` says.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".txt", ".raw", ".tokens"))
            if not found:
                raise FileNotFoundError(f"no .txt/.raw/.tokens files in folder {p}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    documents: list[Document] = []
    for f in files:
        documents.extend(_READERS[detect_corpus_format(f)](f))
    return documents


@dataclass
class PretrainingData:
    """Fixed-length pre-training instances, N rows of T = max_seq_length.

    input_ids, token_type_ids, attention_mask, mlm_labels: (N, T) int32; padding is 0 with
    mask 0; mlm_labels holds the original token id at predicted positions and -100
    elsewhere. next_sentence_label: (N,) int32 with the Hugging Face convention
    0 = B continues A, 1 = B is a random sentence.
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
        raise ValueError(f"max_seq_length must be at least 5 ([CLS] a [SEP] b [SEP]), got {max_seq_length}")
    if not 0.0 <= short_seq_prob <= 1.0 or not 0.0 <= masked_lm_prob <= 1.0:
        raise ValueError("short_seq_prob and masked_lm_prob must be probabilities in [0, 1]")
    if max_predictions_per_seq < 1 or dupe_factor < 1:
        raise ValueError("max_predictions_per_seq and dupe_factor must be at least 1")
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(12345 if rng is None else int(rng))

    docs = tokenize_documents(documents, tokenizer)
    if len(docs) < 2:
        raise ValueError(
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


# =========================================================================================
# 2. GLUE: tasks, readers, metrics
# =========================================================================================


@dataclass(frozen=True)
class InputExample:
    """One labelled example; `line` is its 1-based line number in the source file."""

    text_a: str
    text_b: str | None
    label: int
    line: int


@dataclass(frozen=True)
class TaskSpec:
    """How to read and score a GLUE task. Column numbers are 0-based; labels are read as
    strings and mapped to their index in `label_list`."""

    name: str
    text_a_col: int
    text_b_col: int | None
    label_col: int
    header: bool
    label_list: tuple
    metrics: tuple  # names computed by compute_metrics
    main_metric: str  # the one used for model selection (TinyBERT's choice)

    @property
    def num_labels(self) -> int:
        return len(self.label_list)

    @property
    def is_pair(self) -> bool:
        return self.text_b_col is not None


TASKS: dict[str, TaskSpec] = {
    # sentence<TAB>label, with a header line
    "sst-2": TaskSpec("sst-2", 0, None, 1, True, ("0", "1"), ("acc",), "acc"),
    # source<TAB>label<TAB>author's mark<TAB>sentence, no header
    "cola": TaskSpec("cola", 3, None, 1, False, ("0", "1"), ("mcc",), "mcc"),
    # Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String, header, UTF-8 BOM
    "mrpc": TaskSpec("mrpc", 3, 4, 0, True, ("0", "1"), ("acc", "f1", "acc_and_f1"), "acc"),
}


def get_task(task: str) -> TaskSpec:
    """The TaskSpec for a task name, case and '-'/'_' insensitive ('SST-2', 'sst2', 'sst_2')."""
    key = re.sub(r"[-_ ]", "", str(task).lower())
    for name, spec in TASKS.items():
        if name.replace("-", "") == key:
            return spec
    raise ValueError(f"unknown GLUE task {task!r}; known tasks: {', '.join(TASKS)}")


def read_tsv(
    path,
    text_a_col: int,
    text_b_col: int | None = None,
    *,
    label_col: int,
    header: bool = True,
    label_list: Sequence[str] | None = None,
) -> list[InputExample]:
    """Read a tab-separated file of labelled examples.

    Fields are split on tabs only (no CSV quoting: GLUE text contains `"`); a leading UTF-8
    BOM and a trailing `\\r` are removed; text is stripped of surrounding spaces; wholly
    empty lines are skipped. Labels are mapped to their index in `label_list`, or parsed
    as non-negative integers when `label_list` is None.

    Raises FileNotFoundError for a missing file, and ValueError naming the file and line
    for an empty file, a row with too few columns, an empty text, or an unknown label.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the .tsv file inside it (e.g. {path / 'train.tsv'})")
    cols = [c for c in (text_a_col, text_b_col, label_col) if c is not None]
    if min(cols) < 0:
        raise ValueError(f"column numbers must be >= 0, got {cols}")
    need = max(cols) + 1
    label_index = {s: i for i, s in enumerate(label_list)} if label_list is not None else None

    try:
        lines = path.read_bytes().decode("utf-8-sig").split("\n")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid UTF-8 (byte {exc.start}): {exc.reason}") from None
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        raise ValueError(f"{path}: file is empty")

    examples = []
    for lineno, raw in enumerate(lines, start=1):
        if header and lineno == 1:
            continue
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < need:
            raise ValueError(f"{path}:{lineno}: expected at least {need} tab-separated columns, found {len(fields)}")
        label_str = fields[label_col].strip()
        if label_index is not None:
            if label_str not in label_index:
                raise ValueError(f"{path}:{lineno}: label {label_str!r} is not one of {list(label_list)}")
            label = label_index[label_str]
        elif label_str.isdigit():
            label = int(label_str)
        else:
            raise ValueError(f"{path}:{lineno}: label {label_str!r} is not a non-negative integer")
        text_a = fields[text_a_col].strip()
        text_b = fields[text_b_col].strip() if text_b_col is not None else None
        if not text_a or text_b == "":
            raise ValueError(f"{path}:{lineno}: empty text")
        examples.append(InputExample(text_a, text_b, label, lineno))
    if not examples:
        raise ValueError(f"{path}: no examples (only a header or blank lines)")
    return examples


def read_glue(task: str, path) -> list[InputExample]:
    """Read a GLUE train/dev .tsv file of a task in TASKS ('sst-2'/'sst2', 'cola', 'mrpc')."""
    spec = get_task(task)
    return read_tsv(
        path, spec.text_a_col, spec.text_b_col, label_col=spec.label_col, header=spec.header, label_list=spec.label_list
    )


def _as_label_arrays(preds, labels) -> tuple[np.ndarray, np.ndarray]:
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.ndim != 1 or preds.shape != labels.shape:
        raise ValueError(f"preds and labels must be 1-D and the same shape, got {preds.shape} and {labels.shape}")
    if preds.size == 0:
        raise ValueError("metrics of an empty set are undefined")
    return preds, labels


def accuracy(preds, labels) -> float:
    """Fraction of predictions equal to the label."""
    preds, labels = _as_label_arrays(preds, labels)
    return float(np.mean(preds == labels))


def f1(preds, labels) -> float:
    """Binary F1 of the positive class 1: 2·tp / (2·tp + fp + fn); 0.0 when there is no
    positive prediction or label (tp + fp + fn = 0), as scikit-learn's default."""
    preds, labels = _as_label_arrays(preds, labels)
    tp = np.sum((preds == 1) & (labels == 1))
    fp = np.sum((preds == 1) & (labels != 1))
    fn = np.sum((preds != 1) & (labels == 1))
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom else 0.0


def matthews_corrcoef(preds, labels) -> float:
    """Matthews correlation coefficient (multi-class form of Gorodkin 2004, as scikit-learn).

    With confusion matrix C (rows true, columns predicted), t = row sums, p = column sums,
    c = trace, s = total: (c·s − t·p) / sqrt((s² − t·t)(s² − p·p)); 0.0 when a factor of the
    denominator is 0 (all predictions or all labels one class). For two classes this is
    (tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)).
    """
    preds, labels = _as_label_arrays(preds, labels)
    classes, inv = np.unique(np.concatenate([labels, preds]), return_inverse=True)
    k, n = len(classes), len(labels)
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (inv[:n], inv[n:]), 1.0)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    c, s = np.trace(cm), cm.sum()
    cov_tp = c * s - t @ p
    cov_tt = s * s - t @ t
    cov_pp = s * s - p @ p
    if cov_tt == 0 or cov_pp == 0:
        return 0.0
    return float(cov_tp / math.sqrt(cov_tt * cov_pp))


def compute_metrics(task: str, preds, labels) -> dict:
    """The task's metrics as a dict: SST-2 {acc}, CoLA {mcc}, MRPC {acc, f1, acc_and_f1}.

    preds may be class ids (N,) or logits (N, C), which are arg-maxed.
    """
    spec = get_task(task)
    preds = np.asarray(preds)
    if preds.ndim == 2:
        preds = preds.argmax(axis=-1)
    out = {}
    if "acc" in spec.metrics:
        out["acc"] = accuracy(preds, labels)
    if "f1" in spec.metrics:
        out["f1"] = f1(preds, labels)
    if "acc_and_f1" in spec.metrics:
        out["acc_and_f1"] = (out["acc"] + out["f1"]) / 2
    if "mcc" in spec.metrics:
        out["mcc"] = matthews_corrcoef(preds, labels)
    return out


# =========================================================================================
# 3. Encoding and batching
# =========================================================================================


@dataclass
class EncodedExamples:
    """Tokenized examples of variable length: `[CLS] a [SEP] (b [SEP])`, no padding.

    input_ids / token_type_ids: lists of N int lists; labels: (N,) int32.
    """

    input_ids: list
    token_type_ids: list
    labels: np.ndarray
    pad_token_id: int = 0
    lengths: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=INT_DTYPE)
        if not len(self.input_ids) == len(self.token_type_ids) == len(self.labels):
            raise ValueError("input_ids, token_type_ids and labels must have the same length")
        self.lengths = np.array([len(x) for x in self.input_ids], dtype=np.int64)  # (N,)

    def __len__(self) -> int:
        return len(self.input_ids)

    def collate(self, indices) -> dict:
        """Rows `indices` as a batch padded to its longest row: input_ids, token_type_ids,
        attention_mask (B, T) and labels (B,), all int32."""
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
    'longest_first', padding=False)`; padding happens later, per batch."""
    ids, types = [], []
    for ex in examples:
        enc = tokenizer.encode(ex.text_a, ex.text_b, max_length=max_length, truncation="longest_first", padding=False)
        ids.append(list(enc["input_ids"]))
        types.append(list(enc["token_type_ids"]))
    return EncodedExamples(ids, types, np.array([ex.label for ex in examples], dtype=INT_DTYPE), tokenizer.pad_token_id)


def make_epoch_batches(
    lengths,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    bucket: bool = True,
    drop_last: bool = False,
    bucket_chunk: int = 100,
) -> list[np.ndarray]:
    """The batches of one epoch, as a list of index arrays: a pure function of its arguments.

    lengths: (N,) example lengths, or an int N (all lengths equal, so no bucketing).
    shuffle: permute the examples with a generator seeded by (seed, epoch), so every epoch
    has its own order and regenerating an epoch gives the same batches (resume = regenerate
    and skip the first k). bucket: within consecutive chunks of `bucket_chunk` batches, sort
    the examples by length (stable) before cutting batches, so a batch holds similar lengths
    and pads little; the batch order is then shuffled. drop_last: drop the one batch smaller
    than batch_size, if any. Without drop_last every example is in exactly one batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(lengths, (int, np.integer)):
        n, lengths = int(lengths), None
    else:
        lengths = np.asarray(lengths)
        n = len(lengths)
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if bucket and lengths is not None:
        chunk = batch_size * bucket_chunk
        order = np.concatenate(
            [order[s : s + chunk][np.argsort(lengths[order[s : s + chunk]], kind="stable")] for s in range(0, n, chunk)]
            or [order]
        )
    batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if shuffle:
        batches = [batches[k] for k in rng.permutation(len(batches))]
    return batches


class Batcher:
    """Batches over an EncodedExamples (dynamic padding) or PretrainingData (fixed length).

    A dataset is anything with `__len__`, `collate(indices) -> dict` and either `lengths`
    (per-row lengths, used for bucketing) or `fixed_length = True`.

    The order of epoch e is `make_epoch_batches(dataset.lengths, batch_size, seed=seed,
    epoch=e, ...)`, so a loop that saved (epoch, batches done) resumes exactly with
    `iter_epoch(epoch, start_batch=k)`. Seeds are ints, not Generators, for that reason.
    """

    def __init__(self, dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, bucket: bool = True,
                 drop_last: bool = False, bucket_chunk: int = 100):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle, self.seed, self.bucket = shuffle, seed, bucket
        self.drop_last, self.bucket_chunk = drop_last, bucket_chunk

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Index arrays of the batches of `epoch`, in order."""
        lengths = len(self.dataset) if getattr(self.dataset, "fixed_length", False) else self.dataset.lengths
        return make_epoch_batches(
            lengths, self.batch_size, seed=self.seed, epoch=epoch, shuffle=self.shuffle,
            bucket=self.bucket, drop_last=self.drop_last, bucket_chunk=self.bucket_chunk,
        )

    def __len__(self) -> int:
        """Batches per epoch (the same for every epoch)."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def iter_epoch(self, epoch: int = 0, start_batch: int = 0) -> Iterator[dict]:
        """Yield the batch dicts of `epoch`, starting at batch number `start_batch`."""
        batches = self.epoch_batches(epoch)
        if not 0 <= start_batch <= len(batches):
            raise ValueError(f"start_batch {start_batch} outside [0, {len(batches)}] for epoch {epoch}")
        for idx in batches[start_batch:]:
            yield self.dataset.collate(idx)

    def __iter__(self) -> Iterator[dict]:
        return self.iter_epoch(0)


def iterate_batches(dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                    start_batch: int = 0, bucket: bool = True, drop_last: bool = False) -> Iterator[dict]:
    """Batches of one epoch of `dataset`; shorthand for `Batcher(...).iter_epoch(epoch, start_batch)`."""
    batcher = Batcher(dataset, batch_size, shuffle=shuffle, seed=seed, bucket=bucket, drop_last=drop_last)
    return batcher.iter_epoch(epoch, start_batch)
