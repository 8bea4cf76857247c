"""Where the GLUE tasks' files come from, and their pinned SHA-256: the table `download.py` fetches.

    FILES                          every GLUE file (train + dev) of the nine tasks, pinned
    glue_files(base, snapshot)     the same table with other download locations (a mirror, a test server)
    files_of(FILES, "SST-2")       one task's files

Downloads come from GLUE's own mirror (dl.fbaipublicfiles.com/glue/data/<TASK>.zip). GLUE does
not host MRPC (its download script builds it from Microsoft's corpus), so MRPC, and any file
whose canonical copy differs from the pinned bytes, comes from the public snapshot the checksums
were taken from (F0restL1n/BERT @ 0d0288be, glue_data/). QQP, MNLI and QNLI are pinned by the
SHA-256 of their GLUE archives (QQP-clean.zip, MNLI.zip, QNLIv2.zip, as published with the
Hugging Face `glue` loader's download checksums). The folder names are each task's `dir`
(`tasks.py`). Used by `data/prepare_glue.py` and by the commands' own fetching of a missing
task (`roots.find_data`); MINIBERT_DATA_URL replaces both locations (a mirror, or the tests'
local server).
"""
from __future__ import annotations

import os

from .download import DataFile, Source

GLUE = "https://dl.fbaipublicfiles.com/glue/data"
SNAPSHOT = "https://raw.githubusercontent.com/F0restL1n/BERT/0d0288be08079531c7b3a85af3d532f9adb0f13a/glue_data"
URL_ENV = "MINIBERT_DATA_URL"  # one base URL serving <TASK>.zip and <TASK>/<split>.tsv, for both locations

QQP_ZIP = ("QQP-clean.zip", "40e7c862c04eb26ee04b67fd900e76c45c6ba8e6d8fab4f8f1f8072a1a3fbae0")
MNLI_ZIP = ("MNLI.zip", "e7c1d896d26ed6caf700110645df426cc2d8ebf02a5ab743d5a5c68ac1c83633")
QNLI_ZIP = ("QNLIv2.zip", "e634e78627a29adaecd4f955359b22bf5e70f2cbd93b493f2d624138a0c0e5f5")

# (task folder, split, sha256 of the file, on GLUE's mirror as <task>.zip)
PINNED = (
    ("SST-2", "train", "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1", True),
    ("SST-2", "dev", "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0", True),
    ("CoLA", "train", "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624", True),
    ("CoLA", "dev", "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd", True),
    ("MRPC", "train", "f178bcc72ab4c2c1c778b480912e0c8e1dba3ead150dc1d490d70682ab888c1e", False),
    ("MRPC", "dev", "9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17", False),
    ("STS-B", "train", "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2", True),
    ("STS-B", "dev", "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59", True),
)
ARCHIVED = (("QQP", "train", QQP_ZIP), ("QQP", "dev", QQP_ZIP), ("MNLI", "train", MNLI_ZIP),
            ("MNLI", "dev_matched", MNLI_ZIP), ("MNLI", "dev_mismatched", MNLI_ZIP), ("QNLI", "train", QNLI_ZIP),
            ("QNLI", "dev", QNLI_ZIP))
PINNED_LAST = (
    ("RTE", "train", "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c", True),
    ("RTE", "dev", "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb", True),
    ("WNLI", "train", "9a88e9d54b6861cc796a088e9acf4f5f65064a9ef65ae6fa7a688b28391e5c9a", True),
    ("WNLI", "dev", "cba00490596dd14be8cf53b4f53bb744abe3a7b89f81ab210528d80225338ed5", True),
)


def glue_file(task: str, split: str, sha256: str, zip_on_glue: bool = True, base: str = GLUE,
              snapshot: str = SNAPSHOT) -> DataFile:
    """<task>/<split>.tsv, pinned: from <base>/<task>.zip, else the snapshot's copy."""
    rel = f"{task}/{split}.tsv"
    sources = ((Source(f"{base}/{task}.zip", rel),) if zip_on_glue else ()) + (Source(f"{snapshot}/{rel}"),)
    return DataFile(rel, sha256, sources)


def from_archive(task: str, split: str, archive: str, archive_sha256: str, base: str = GLUE) -> DataFile:
    """<task>/<split>.tsv, unpacked from the GLUE archive <base>/<archive> whose SHA-256 is pinned."""
    rel = f"{task}/{split}.tsv"
    return DataFile(rel, None, (Source(f"{base}/{archive}", rel, archive_sha256),))


def glue_files(base: str | None = None, snapshot: str | None = None) -> list[DataFile]:
    """Every GLUE file, in the tasks' order; base/snapshot default to MINIBERT_DATA_URL, else the public ones."""
    override = os.environ.get(URL_ENV, "").rstrip("/") or None
    base, snapshot = base or override or GLUE, snapshot or override or SNAPSHOT
    return ([glue_file(t, s, sha, z, base, snapshot) for t, s, sha, z in PINNED] +
            [from_archive(t, s, *archive, base=base) for t, s, archive in ARCHIVED] +
            [glue_file(t, s, sha, z, base, snapshot) for t, s, sha, z in PINNED_LAST])


def files_of(files: list[DataFile], folder: str) -> list[DataFile]:
    """The files under one task folder ("SST-2")."""
    return [f for f in files if f.path.split("/")[0] == folder]


FILES = glue_files(GLUE, SNAPSHOT)
