"""Prepare WikiText-2 (raw) validation + test splits under data/wikitext-2-raw/.

    python data/prepare_wikitext2.py --from /path/to/data     # copy from a local folder
    python data/prepare_wikitext2.py                           # download

Downloads come from Salesforce's wikitext-2-raw-v1.zip (the S3 bucket of the dataset's
release), falling back to the public snapshot the checksums were taken from
(DRAGNLabs/LLMHumanModeling @ a76c4773, data/). The pinned files have CRLF line endings.
Only valid and test are prepared (the ~11 MB train split is not part of the pinned set).
Every file is checked against its pinned SHA-256 before it is written.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DataFile, Source, main  # noqa: E402

ZIP = "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-raw-v1.zip"
SNAPSHOT = "https://raw.githubusercontent.com/DRAGNLabs/LLMHumanModeling/a76c47739e890a857b138b0adc5ca47a10c4c18f/data"

FILES = [
    DataFile(
        f"wikitext-2-raw/wiki.{split}.raw",
        sha256,
        (Source(ZIP, f"wikitext-2-raw/wiki.{split}.raw"), Source(f"{SNAPSHOT}/wiki.{split}.raw")),
    )
    for split, sha256 in [
        ("valid", "f117e548b59c18638ecfdc5db1b457927434551c185d7f59c7882cb2110a551a"),
        ("test", "e4fbb284c0a4dbd0c912e35ad507efa55d0831f54bc761a23363a4b3ff3e3e90"),
    ]
]

if __name__ == "__main__":
    sys.exit(main(FILES, __doc__))
