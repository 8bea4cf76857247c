"""Prepare the nine GLUE tasks (train + dev): data/SST-2, CoLA, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI.

    python data/prepare_glue.py --from /path/to/data --only SST-2 CoLA MRPC STS-B RTE WNLI   # copy
    python data/prepare_glue.py                          # download all nine (MNLI is 300 MB)
    python data/prepare_glue.py --only MNLI QNLI         # download some

The commands fetch a missing GLUE task themselves (into a cache folder, see the README); this
script puts the tasks in ./data ahead of time. Where each file comes from and its pinned SHA-256
are `minibert/data/glue_sources.py`: GLUE's own mirror (dl.fbaipublicfiles.com/glue/data/<TASK>.zip),
MRPC and any file whose canonical copy differs from the pinned bytes from the public snapshot
the checksums were taken from; QQP, MNLI and QNLI pinned by the SHA-256 of their GLUE archives
(a `--from` copy of those files is unverified and says so). Every file is checked before it is
written.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import main  # noqa: E402  (puts the checkout on sys.path)
from minibert.data.glue_sources import FILES, GLUE, SNAPSHOT, from_archive, glue_file  # noqa: E402,F401

_from_archive, _file = from_archive, glue_file  # the names the tests and older notes use

if __name__ == "__main__":
    sys.exit(main(FILES, __doc__, groups=True))
