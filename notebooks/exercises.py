"""The plumbing of the notebooks' "your turn" exercises: whose answer a check runs, and what a
check says before the learner has written anything.

An exercise cell defines the learner's attempt, hands it to `answer`, then checks it with `check`:

    def gelu_tanh_backward(dout, cache):
        raise NotImplementedError                             # your code here
    gelu_tanh_backward = answer("nb02", "gelu_tanh_backward", gelu_tanh_backward)
    check(check_gelu_tanh_backward, gelu_tanh_backward)      # an assertion that can fail

A value to fill in starts as `TODO` (`layernorm_dx = TODO`). `answer` returns the attempt
itself, unless MINIBERT_SOLUTIONS=1 is set (CI), in which case it returns the reference
solution from `solutions/<notebook>.py`: so CI proves every check passes with its solution, and
tests/test_exercises_nb123.py and tests/test_exercises_nb04.py prove every check fails with
wrong answers. The committed outputs are executed without it, so a reader sees "your turn"
under each exercise, never its answer. Solutions live apart so a learner does not read them by
accident.

This file is not a grader: the checks themselves (solutions/checks_nb0X.py) say what is wrong
(a shape, a sign, a missing term, a factor) without printing the expected values.
"""
from __future__ import annotations

import importlib
import os


class _Todo:
    """The placeholder of a value the learner has not filled in yet."""

    def __repr__(self) -> str:
        return "TODO"


TODO = _Todo()

YOUR_TURN = "your turn: fill in the cell above, then run it again"


def using_solutions() -> bool:
    return os.environ.get("MINIBERT_SOLUTIONS") == "1"


def answer(notebook: str, name: str, attempt):
    """The learner's `attempt`, or solutions.<notebook>.<name> when MINIBERT_SOLUTIONS=1."""
    if using_solutions():
        return getattr(importlib.import_module(f"solutions.{notebook}"), name)
    return attempt


def check(check_fn, *attempts, **given) -> None:
    """Run check_fn(*attempts, **given). `given` is what the check needs besides the learner's
    attempts (a vocabulary, measured results). An attempt not written yet (a TODO value, or a
    function that raises NotImplementedError) prints YOUR_TURN instead of failing; with
    MINIBERT_SOLUTIONS=1 every attempt is a solution, so there it is an error. Returns None, so
    that a notebook cell ending with a check shows only what the check prints."""
    if not using_solutions():
        if any(a is TODO for a in attempts):
            print(YOUR_TURN)
            return
        try:
            check_fn(*attempts, **given)
        except NotImplementedError:
            print(YOUR_TURN)
        return
    check_fn(*attempts, **given)
