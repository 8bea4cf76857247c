"""Shared code of the data/prepare_*.py scripts: minibert's own fetching (`minibert/data/download.py`).

Each script lists its files (`DataFile`: where it goes, its SHA-256, and where to download it
from) and calls `main`, which copies them from a local folder (`--from DIR`) or downloads them,
verifies each pinned SHA-256 and writes it atomically under `--out` (default: this `data/`
folder, whose sub-folders are git-ignored). The logic lives in the library, which the commands
also use to fetch a missing GLUE task; this file only points the scripts at it (they run from a
checkout, with minibert's dependencies installed, not necessarily minibert itself).
"""
from __future__ import annotations

import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DATA_DIR.parent))  # the checkout's minibert, installed or not

from minibert.data import download  # noqa: E402
from minibert.data.download import DataFile, PrepareError, Source, sha256_hex  # noqa: E402,F401


def main(files: list[DataFile], description: str, argv=None, groups: bool = False) -> int:
    """Obtain, verify and write every file under --out (default: this data/ folder); the exit status."""
    return download.main(files, description, argv, groups, default_out=DATA_DIR)
