"""Re-execute notebooks top to bottom and write their outputs back (what the committed copies hold).

    python notebooks/execute.py                      # all of them; the data in $MINIBERT_DATA, default data/
    python notebooks/execute.py 04_tinybert.ipynb

Runs each on the registered `python3` kernel with its working directory in notebooks/ (as
Jupyter and tests/test_notebooks.py do), with MINIBERT_SOLUTIONS unset so every exercise shows
the learner's stub ("your turn", exercises.py) rather than its answer, and stops at the first
failing cell. tests/test_notebooks.py executes them again with the solutions.
"""
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def main(names) -> None:
    data = Path(os.environ.get("MINIBERT_DATA", "data"))
    os.environ["MINIBERT_DATA"] = str(data if data.is_absolute() else (Path.cwd() / data).resolve())
    os.environ.pop("MINIBERT_SOLUTIONS", None)
    for path in [HERE / n for n in names] or sorted(HERE.glob("*.ipynb")):
        t0 = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(nb, path)
        print(f"executed {path.name} in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
