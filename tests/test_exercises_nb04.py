"""The "your turn" exercises of notebook 04 (TinyBERT): each check passes with its reference
solution and fails with a wrong answer, without executing the notebook.

The checks and solutions live in notebooks/solutions/ (checks_nb04.py, nb04.py); the notebook
calls the same check functions, and tests/test_notebooks.py executes it with the solutions.
"""

import nbformat
import numpy as np
import pytest

import minibert.distill

from conftest import ANSWER_CALL, NOTEBOOKS  # conftest puts notebooks/ on the path

from solutions import checks_nb04, nb04  # noqa: E402



def test_every_exercise_cell_of_notebook_04_names_an_existing_solution():
    nb = nbformat.read(NOTEBOOKS / "04_tinybert.ipynb", as_version=4)
    calls = [m.groups() for c in nb.cells if c.cell_type == "code" for m in ANSWER_CALL.finditer(c.source)]
    assert len(calls) >= 3, f"notebook 04 has {len(calls)} exercises"
    for module, attr in calls:
        assert module == "nb04" and hasattr(nb04, attr), f"the notebook asks solutions.{module} for {attr}"
        # each exercise's answer goes through its check in the same cell
        cell = next(c.source for c in nb.cells if c.cell_type == "code" and f'"{attr}"' in c.source)
        assert f"check_{attr}(" in cell, f"the exercise cell of {attr} does not check the answer"


# ---------------------------------------------------------------------------- the top mapping


def test_top_mapping_check_passes_with_the_solution():
    checks_nb04.check_top_mapping(nb04.top_mapping)


@pytest.mark.parametrize("wrong", [
    lambda M, N: list(range(1, M + 1)),  # bottom
    lambda M, N: [m * N // M for m in range(1, M + 1)],  # uniform (rounded down): top only when M == N
    lambda M, N: [N - M + m - 1 for m in range(1, M + 1)],  # off by one: 0-based
    lambda M, N: list(range(N, N - M, -1)),  # the right layers, in the wrong order
], ids=["bottom", "uniform", "0-based", "reversed"])
def test_top_mapping_check_fails_on_a_wrong_mapping(wrong):
    with pytest.raises(AssertionError):
        checks_nb04.check_top_mapping(wrong)


# ---------------------------------------------------------------------------- the soft cross-entropy


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_soft_cross_entropy_check_passes_with_the_solution():
    checks_nb04.check_soft_cross_entropy_backward(nb04.soft_cross_entropy_backward)


@pytest.mark.parametrize("wrong", [
    lambda zs, zt, t: (_softmax(zs / t) - _softmax(zt / t)) / len(zs),  # the 1/t forgotten
    lambda zs, zt, t: (_softmax(zs / t) - _softmax(zt)) / (t * len(zs)),  # temperature on the student only
    lambda zs, zt, t: (_softmax(zs / t) - _softmax(zt / t)) / t,  # no mean over the batch
    lambda zs, zt, t: (_softmax(zt / t) - _softmax(zs / t)) / (t * len(zs)),  # sign flipped
    lambda zs, zt, t: (_softmax(zs / t) - _softmax(zt / t)) * t / len(zs),  # Hinton's t^2 applied: t, not 1/t
], ids=["no-1/t", "student-only-t", "no-batch-mean", "sign", "t-squared"])
def test_soft_cross_entropy_check_fails_on_a_wrong_gradient(wrong):
    with pytest.raises(AssertionError):
        checks_nb04.check_soft_cross_entropy_backward(wrong)


# ---------------------------------------------------------------------------- the stages


def test_stage_check_passes_with_the_solution_and_measures_the_distiller():
    checks_nb04.check_stage_losses(nb04.stage_losses)
    measured = checks_nb04.measured_stage_losses()
    assert measured == {s: set(minibert.distill.STAGE_LOSSES[s]) for s in measured}


@pytest.mark.parametrize("wrong", [
    {"general": {"att", "hid", "emb", "pred"}, "intermediate": {"att", "hid", "emb"}, "prediction": {"pred"}},
    {"general": {"att", "hid", "emb"}, "intermediate": {"att", "hid"}, "prediction": {"pred"}},
    {"general": {"att", "hid", "emb"}, "intermediate": {"att", "hid", "emb"}, "prediction": {"pred", "hid"}},
    {"general": set(), "intermediate": set(), "prediction": set()},
], ids=["general-with-pred", "intermediate-without-emb", "prediction-with-hid", "empty"])
def test_stage_check_fails_on_a_wrong_prediction(wrong):
    with pytest.raises(AssertionError):
        checks_nb04.check_stage_losses(wrong)


def test_stage_check_runs_the_distiller_rather_than_reading_the_answer_back(monkeypatch):
    """Change what a stage runs and the reference answer no longer passes: the check measures."""
    monkeypatch.setitem(minibert.distill.STAGE_LOSSES, "prediction", ("pred", "att"))
    with pytest.raises(AssertionError, match="prediction"):
        checks_nb04.check_stage_losses(nb04.stage_losses)
