"""What minibert says to the person running it: one place that writes to them, on stderr.

    say("building the general corpus ...")       # progress: a line, above any progress bar
    note("checkpoint-8 has no checksums.sha256")  # worth knowing, nothing to do: "note: ..."
    print(error_line(exc), file=sys.stderr)       # the command line's "error: ..." (train.py)

stdout is kept for results (the pipeline's table, predict's JSON lines, a summary), so that
they can be piped; every other line goes to stderr through `say`, which writes through tqdm so
that a progress bar on the terminal is redrawn below the line rather than torn. The one other
writer is interrupts.py's signal handler, which prints directly (a handler must not wait for
tqdm's lock, which the interrupted code may hold). Warnings that
a library caller may want to filter or turn into errors (a checkpoint's fit_dense started
afresh) stay `warnings.warn` with their own category (checkpoint.CheckpointWarning).

Not here: which errors are the user's to fix (`errors.py`).
"""
from __future__ import annotations

import sys

from tqdm import tqdm


def say(message: str) -> None:
    """One line on stderr, drawn above any progress bar."""
    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()


def note(message: str) -> None:
    """One line on stderr, for what the user should know but need not act on."""
    say(f"note: {message}")


def describe_os_error(exc: OSError) -> str:
    """'No space left on device, runs/x/params.safetensors' from an OSError (its own text otherwise)."""
    if exc.strerror and exc.filename:
        return f"{exc.strerror}, {exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return str(exc)


def error_line(exc: BaseException) -> str:
    """An error as the one line the command line prints: "error: <what>, <where>", whatever its text holds."""
    message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
    return "error: " + " ".join(message.split())
