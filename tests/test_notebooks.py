"""The walk-through notebooks run top to bottom on the real data, and are committed executed.

Each notebook is read from notebooks/, executed by nbclient on the registered `python3`
kernel with its working directory in notebooks/ (as Jupyter runs it), and the executed copy
is written to a temporary folder: the committed files are never rewritten here. Any cell
that raises fails the test.
"""
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_the_walk_through_notebooks_are_there():
    names = [p.name for p in NOTEBOOKS]
    for name in ("01_wordpiece.ipynb", "02_layers_by_hand.ipynb", "03_bert.ipynb"):
        assert name in names, f"notebooks/{name} is missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_was_executed_in_order_with_quick_settings(path):
    """Outputs in the repository come from one real top-to-bottom run with FULL = False."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = code_cells(nb)
    assert cells, f"{path.name} has no code"
    assert re.search(r"^FULL = False\b", cells[0].source, re.MULTILINE), \
        f"{path.name}: the first code cell must set `FULL = False` (the quick settings)"
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), \
        f"{path.name}: code cells were not executed once, in order, from a fresh kernel (counts {counts})"
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was committed with an error output: {errors[0].ename}: {errors[0].evalue}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_without_errors(path, data_dir, tmp_path, monkeypatch):
    # The kernel inherits the environment: give it the data folder as an absolute path, and
    # have every exercise run its reference solution (notebooks/exercises.py).
    monkeypatch.setenv("MINIBERT_DATA", str(data_dir))
    monkeypatch.setenv("MINIBERT_SOLUTIONS", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, on the first failing cell
    nbformat.write(nb, tmp_path / path.name)  # the executed copy, for inspection after a failure
    cells = code_cells(nb)
    assert all(c.execution_count is not None for c in cells)
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
