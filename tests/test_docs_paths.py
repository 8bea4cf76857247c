"""Every repository path the project names in prose exists: docs, READMEs, docstrings, notebooks.

A path is a word with a slash under one of the repository's folders (`minibert/trainer.py`,
`docs/results.md`; `data/tasks.py` and `data/batching.shard_batch` inside minibert/ too), a
Markdown link's target, or a bare file name (`trainer.py`), which must be the name of some
file in the repository. Not checked: what lives in a data root rather than in the repository
(`data/SST-2/`: only data/'s scripts are repository files), what a run writes (`runs/...`,
OUTPUTS), placeholders (`nb0X.py`), and files of other projects named in prose
(OTHER_PROJECTS: Google's `tokenization.py`, the TinyBERT reference's `task_distill.py`).
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FOLDERS = ("minibert", "tests", "bench", "docs", "notebooks", "data")
SUFFIXES = ("py", "md", "ipynb", "sh", "png", "toml", "cfg")
# A word with a slash under one of the repository's folders, or a bare file name.
FOLDER_PATH = re.compile(r"(?<![\w./-])(?:" + "|".join(FOLDERS) + r")/[\w./-]*[\w/]")
FILE_NAME = re.compile(r"(?<![\w./-])[\w-]+\.(?:" + "|".join(SUFFIXES) + r")\b(?![\w/-])")
MD_LINK = re.compile(r"\]\(([^)#\s]+)\)")
# Files of other projects that the prose names, with whose they are.
OTHER_PROJECTS = {
    "tokenization.py",  # Google's BERT
    "task_distill.py", "general_distill.py", "data_augmentation.py",  # the TinyBERT reference
    "modeling_bert.py", "run_glue.py", "trainer_pt_utils.py",  # transformers
    "create_pretraining_data.py",  # Google's BERT
}
OUTPUTS = {"run.toml", "gpu_check.md", "study.png"}  # files a user or a run writes, named in examples


def exists(word: str) -> bool:
    """A repository path, also relative to minibert/, also as module.attribute (data/batching.shard_batch)."""
    candidates = [word, "minibert/" + word]
    if "." in word.rsplit("/", 1)[-1]:
        stem = word.rsplit(".", 1)[0]
        candidates += [stem + ".py", "minibert/" + stem + ".py"]
    return any((REPO / c).exists() for c in candidates)


def checked(word: str) -> bool:
    """Whether a folder path is a repository path to check (not a data set, a placeholder or a prefix)."""
    if word.startswith("data/") and not word.endswith((".py", ".md")):
        return False  # a data root's contents (data/SST-2/train.tsv), not the repository's
    return not (word.endswith(("_", "-")) or "0X" in word or "*" in word or "<" in word)


def prose_sources():
    """(where, text) for every Markdown file, every docstring of the Python files, every notebook's cells."""
    for path in sorted(REPO.rglob("*.md")):
        if not any(part.startswith(".") or part in ("runs", "node_modules") for part in path.relative_to(REPO).parts):
            yield path, path.read_text(encoding="utf-8")
    for folder in ("minibert", "bench", "notebooks", "tests", "data"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        yield path, doc
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "markdown":
                yield path, "".join(cell["source"])


def missing_in(where: Path, text: str, names: set[str]) -> list[str]:
    """The paths `text` (found in the file `where`) names that the repository does not have."""
    rel, missing = where.relative_to(REPO), []
    for match in FOLDER_PATH.finditer(text):
        word = match.group().rstrip(".")
        if checked(word) and not exists(word):
            missing.append(f"{rel}: {word}")
    if where.suffix == ".md":
        for target in MD_LINK.findall(text):
            if "://" not in target and not (where.parent / target).exists():
                missing.append(f"{rel}: link {target}")
    for match in FILE_NAME.finditer(text):
        name = match.group()
        if name not in names | OTHER_PROJECTS | OUTPUTS and "0X" not in name:
            missing.append(f"{rel}: {name}")
    return missing


def repository_file_names() -> set[str]:
    return {p.name for p in REPO.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_every_repository_path_named_in_prose_exists():
    names = repository_file_names()
    missing = sorted({m for where, text in prose_sources() for m in missing_in(where, text, names)})
    assert missing == []


def test_the_check_finds_a_missing_path():
    text = "see `minibert/trainer.py`, `data/tasks.py`, trainer.py; not minibert/gone.py, gone.py or [x](nowhere.md)"
    assert missing_in(REPO / "README.md", text, repository_file_names()) == [
        "README.md: minibert/gone.py", "README.md: link nowhere.md", "README.md: gone.py", "README.md: nowhere.md"]
