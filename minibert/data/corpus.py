"""Corpus readers: text files -> documents, a document being a list of sentences.

    documents = read_corpus(["data/wikitext-2-raw", "data/gutenberg"])   # list[list[str]]

Three formats, detected from the file name and its first 64 kB (`detect_corpus_format`):
WikiText(-2/-103) `.raw`/`.tokens` files (one document per article), Project Gutenberg
books (one document per book, licence and header removed) and Google's pre-training text
(one sentence per line, a blank line between documents). Paragraphs are cut into sentences
by `split_sentences`, a simple rule that is good enough for next-sentence pairs.

This does not tokenize, pair sentences or mask anything: the pre-training instances built
from these documents are in `pretraining.py`. Labelled GLUE files are read by `tasks.py`,
and where the corpora live on disk (the data roots) is `roots.py`'s concern.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..textfile import read_text

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
    text = read_text(path)
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


def read_plain_text(path) -> list[Document]:
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


_READERS = {"wikitext": read_wikitext, "gutenberg": read_gutenberg, "text": read_plain_text}


def read_corpus(paths) -> list[Document]:
    """Read one or more files or folders into one list of documents.

    `paths` is a path or a list of paths; a folder stands for its `*.txt`, `*.raw` and
    `*.tokens` files in sorted order (so the result is the same on every machine). Each file
    goes to `read_wikitext`, `read_gutenberg` or `read_plain_text` as `detect_corpus_format` says.
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
