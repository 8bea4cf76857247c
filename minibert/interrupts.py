"""Graceful interrupts: SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler sends before it
pre-empts a job) end a training run at the next step boundary, with a checkpoint.

    with StopSignals() as stop:
        while training:
            one optimizer step
            if stop.signum is not None:           # a signal came during the step
                write a checkpoint
                raise Interrupted(stop.signum, step, checkpoint)

The first signal only sets `stop.signum` and says on stderr what will happen; the step
finishes and the trainer writes its checkpoint. A second signal restores the default
handlers and raises KeyboardInterrupt at once, wherever the run is (a step, an evaluation,
a checkpoint being written: trainer.py removes its partial folder on the way out).
`Interrupted` is a KeyboardInterrupt, so code that catches Exception does not swallow it,
and the command line turns it into one line and exit code 128 + the signal number (130 for
SIGINT, 143 for SIGTERM).

Handlers can only be installed from the main thread; elsewhere (a training run in a worker
thread) `StopSignals` changes nothing and signals keep their usual effect. The training loop
itself is trainer.py's; the exit codes are the command line's (train.py).
"""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal after writing `checkpoint` at `step`."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}: saved {checkpoint}; "
                         f"continue with --resume auto")


class StopSignals:
    """`with StopSignals() as stop:` turns the first SIGINT/SIGTERM into `stop.signum`; a second one stops at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            self._restore()
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopped at once")
        self.signum = signum
        # print, not messages.say: a signal handler must not wait for tqdm's lock, which the
        # interrupted code may hold
        print(f"\n{signal.Signals(signum).name}: finishing this step and writing a checkpoint "
              "(Ctrl-C again stops at once, without one)", file=sys.stderr, flush=True)
