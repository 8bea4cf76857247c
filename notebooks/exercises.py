"""The plumbing of the notebooks' "your turn" exercises: whose answer a check runs.

An exercise cell defines the learner's attempt and hands it to `answer`, then checks it:

    def gelu_tanh_backward(dout, cache):
        ...                                                   # your code here
    gelu_tanh_backward = answer("nb02", "gelu_tanh_backward", gelu_tanh_backward)
    check_gelu_tanh_backward(gelu_tanh_backward)              # an assertion that can fail

`answer` returns the attempt itself, unless MINIBERT_SOLUTIONS=1 is set (CI and the committed
outputs), in which case it returns the reference solution from `solutions/<notebook>.py`: so
CI proves every check passes with its solution, and tests/test_exercises_nb123.py and
tests/test_exercises_nb04.py prove every check fails with a wrong answer. Solutions live apart so a learner does not read them by accident.
"""
from __future__ import annotations

import importlib
import os


def using_solutions() -> bool:
    return os.environ.get("MINIBERT_SOLUTIONS") == "1"


def answer(notebook: str, name: str, attempt):
    """The learner's `attempt`, or solutions.<notebook>.<name> when MINIBERT_SOLUTIONS=1."""
    if using_solutions():
        return getattr(importlib.import_module(f"solutions.{notebook}"), name)
    return attempt
