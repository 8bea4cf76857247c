"""Shared pytest fixtures: where the real data lives, and float64 helpers."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The folder named by MINIBERT_DATA (CI sets it to ../shared/data)."""
    return Path(os.environ.get("MINIBERT_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if not (root / "SST-2" / "train.tsv").is_file():
        raise RuntimeError(f"real data not found under {root}: set MINIBERT_DATA to the shared data folder")
    return root
