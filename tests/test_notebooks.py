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
    # a hang guard per cell, not a speed test: notebook 4's longest cell takes minutes on a quiet
    # machine and CI's may run the suite 2-3x slower
    client = NotebookClient(nb, timeout=2400, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, on the first failing cell
    nbformat.write(nb, tmp_path / path.name)  # the executed copy, for inspection after a failure
    cells = code_cells(nb)
    assert all(c.execution_count is not None for c in cells)
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]


# ------------------------------------------------------------------ what the committed outputs show

# A warning printed by a library (tqdm's TqdmWarning, minibert's CheckpointWarning, ...) is noise
# to a reader, and a path of the machine that ran the notebook means nothing on theirs.
WARNING_NOISE = re.compile(r"\b\w*Warning\b|warnings\.warn")
MACHINE_PATH = re.compile(r"/work/|/root/|/home/|/tmp/|/check/|site-packages")


def output_texts(cell):
    """(kind, text) of every output of a code cell: streams by name, results and displays by MIME type."""
    for o in cell.outputs:
        if o.output_type == "stream":
            yield o.name, o.text
        elif o.output_type in ("execute_result", "display_data"):
            for mime, data in o.get("data", {}).items():
                if mime.startswith("text/") or mime.endswith("json"):
                    yield mime, data if isinstance(data, str) else str(data)
        elif o.output_type == "error":
            yield "error", "\n".join(o.get("traceback", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_free_of_warnings_and_machine_paths(path):
    nb = nbformat.read(path, as_version=4)
    for number, cell in enumerate(code_cells(nb), 1):
        for kind, text in output_texts(cell):
            if kind == "stderr":
                noise = WARNING_NOISE.search(text)
                assert not noise, f"{path.name}, code cell {number}: a warning in the output: {text[:300]!r}"
            where = MACHINE_PATH.search(text)
            assert not where, f"{path.name}, code cell {number}: a machine path in the output: {text[max(0, where.start() - 80):where.end() + 80]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_exercise_cells_show_your_turn_not_a_solution(path):
    """The committed outputs were executed without MINIBERT_SOLUTIONS (notebooks/execute.py): every
    exercise cell shows the learner's stub answering "your turn", and nothing else."""
    from exercises import YOUR_TURN  # tests/conftest.py puts notebooks/ on the path
    from conftest import ANSWER_CALL

    nb = nbformat.read(path, as_version=4)
    exercises = [c for c in code_cells(nb) if ANSWER_CALL.search(c.source)]
    assert exercises, f"{path.name} has no exercise"
    for cell in exercises:
        shown = list(output_texts(cell))
        assert shown == [("stdout", YOUR_TURN + "\n")], \
            f"{path.name}: the exercise cell\n{cell.source[:400]}\n...committed with {shown!r}, not the 'your turn' line"


def test_the_four_notebooks_hold_at_least_16_exercises():
    from conftest import ANSWER_CALL

    count = {p.name: sum(len(ANSWER_CALL.findall(c.source)) for c in code_cells(nbformat.read(p, as_version=4)))
             for p in NOTEBOOKS}
    assert len(count) == 4 and sum(count.values()) >= 16, count


def test_check_says_your_turn_for_an_unwritten_answer_and_fails_a_wrong_one(monkeypatch, capsys):
    from exercises import TODO, YOUR_TURN, check

    def check_is_two(x):
        assert x() == 2, "not two"

    def stub():
        raise NotImplementedError

    monkeypatch.delenv("MINIBERT_SOLUTIONS", raising=False)
    check(check_is_two, stub)
    check(lambda value: None, TODO)
    assert capsys.readouterr().out == (YOUR_TURN + "\n") * 2
    with pytest.raises(AssertionError, match="not two"):
        check(check_is_two, lambda: 3)
    check(check_is_two, lambda: 2)
    monkeypatch.setenv("MINIBERT_SOLUTIONS", "1")  # CI: a solution that raised would be an error
    with pytest.raises(NotImplementedError):
        check(check_is_two, stub)
