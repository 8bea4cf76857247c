"""Prepare five public-domain Project Gutenberg novels under data/gutenberg/.

    python data/prepare_gutenberg.py --from /path/to/data     # copy from a local folder
    python data/prepare_gutenberg.py                           # download

Books: 11 Alice in Wonderland, 84 Frankenstein, 1342 Pride and Prejudice, 1661 The
Adventures of Sherlock Holmes, 2701 Moby Dick. Downloads try gutenberg.org first; its files
are re-issued over time, so when those bytes differ from the pinned ones the exact pinned
editions come from the public GitHub snapshots they were taken from (gutenbergbooks/<n>,
GITenberg). Files are kept byte-for-byte (BOM, CRLF, PG header and licence included);
minibert.data.read_gutenberg does the cleaning. Every file is checked against its pinned
SHA-256 before it is written.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DataFile, Source, main  # noqa: E402

GH = "https://raw.githubusercontent.com"
BOOKS = [  # (ebook number, sha256, snapshot repository @ commit)
    (11, "f17aa0bf7466424a8b357b688678666bad7a0148963ef349016a3098faa6bd1e",
     "gutenbergbooks/11/5e5120e12a58a10254e0e6a42661d887e61c2aac"),
    (84, "f572837d92b31a857df4f6d0612e54f4bd8003d134367ae6a35ef444b9a8336b",
     "gutenbergbooks/84/8bd92d5ea00b020a3b1224f3558019e5b4024f94"),
    (1342, "48e0522844402a86a3ea98f0947ba85ea54838db3c59022299298ed968a5a163",
     "GITenberg/Pride-and-Prejudice_1342/81db45c9c48c592f0b77f01fc59e677ad0a5634e"),
    (1661, "e21895308fe6da6919abc53e2cf77d81f914887897546153cc5d49b2eadefe50",
     "gutenbergbooks/1661/4583fe51c670727bf1edf51b41e7b67b7736224a"),
    (2701, "baf9b04fcf6e0008f30eaaa6697277751448c1070b20175e0082f28cbb161fd3",
     "GITenberg/Moby-Dick--Or-The-Whale_2701/bdf1948e6cd00963730971e5624e764a35f238c3"),
]

FILES = [
    DataFile(
        f"gutenberg/{n}-0.txt",
        sha256,
        (Source(f"https://www.gutenberg.org/files/{n}/{n}-0.txt"), Source(f"{GH}/{snapshot}/{n}-0.txt")),
    )
    for n, sha256, snapshot in BOOKS
]

if __name__ == "__main__":
    sys.exit(main(FILES, __doc__))
