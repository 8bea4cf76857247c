"""Prepare the bert-base-uncased WordPiece vocabulary as data/bert-base-uncased/vocab.txt.

    python data/prepare_vocab.py --from /path/to/data       # copy from a local folder
    python data/prepare_vocab.py                           # download

Downloads come from the Hugging Face hub (bert-base-uncased, resolve/main/vocab.txt),
falling back to the public snapshot the checksum was taken from (the TinyBERT authors'
huawei-noah/Pretrained-Language-Model @ 0598f02d, CAME/bert-large-uncased-vocab.txt, the
same 30,522-line file). The file is checked against its pinned SHA-256 before it is written.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DataFile, Source, main  # noqa: E402

FILES = [
    DataFile(
        "bert-base-uncased/vocab.txt",
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        (
            Source("https://huggingface.co/bert-base-uncased/resolve/main/vocab.txt"),
            Source(
                "https://raw.githubusercontent.com/huawei-noah/Pretrained-Language-Model/"
                "0598f02d7fc4eaa7b4cbc1e9d7ab18bc875c24f9/CAME/bert-large-uncased-vocab.txt"
            ),
        ),
    )
]

if __name__ == "__main__":
    sys.exit(main(FILES, __doc__))
