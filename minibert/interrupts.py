"""Graceful interrupts: SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler sends before it
pre-empts a job) end a command at the next safe point, with a checkpoint.

One stop request lives for the whole command. The command line enters `StopSignals` once
around everything a command does (every stage of a pipeline, its evaluations and its latency
benchmark); a Trainer entering it again gets that same request (a library run without the
command line gets one for its training alone):

    with StopSignals() as stop:                    # train.main: the whole command
        ...
        with StopSignals() as stop:                # trainer.py: the same object
            while training:
                one optimizer step
                if world.first_signal(stop.signum):  # a signal came, to any process
                    write a checkpoint
                    raise Interrupted(signum, step, checkpoint)
        ...
        check()                                    # evaluation and benchmark loops, between batches

The first signal only sets `stop.signum` and says on stderr what will happen; it is never
reset, so a stage that starts after it stops before its first step, an evaluation stops at
its next batch (`check` raises `StopRequested`; the trainer then writes its checkpoint), and
a benchmark stops at its next repeat. A second signal restores the default handlers and
raises `SignalledTwice` (a KeyboardInterrupt) at once, wherever the run is (a step, an
evaluation, a checkpoint being written: run_checkpoints.py removes its partial folder on
the way out). All three are KeyboardInterrupts, so code that catches Exception does not
swallow them, and the command line turns each into one line and exit code 128 + the signal
number (130 for SIGINT, 143 for SIGTERM).

Several processes: a signal may reach one rank only (a scheduler signalling a pid). The
trainer shares it at every step with one collective (`distributed.World.first_signal`), and
every process then holds the same `signum`, so all of them stop at the same step (a signal
handled while that collective is under way is carried by the next one).

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


def _name(signum: int) -> str:
    return signal.Signals(signum).name


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal at `step`, after writing `checkpoint` (None: nothing to save yet)."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.exit_code = 128 + signum
        saved = f"saved {checkpoint}" if checkpoint is not None else "nothing to save yet"
        super().__init__(f"interrupted by {_name(signum)} at step {step}: {saved}; continue with --resume auto")


class StopRequested(KeyboardInterrupt):
    """A stop request noticed outside a training step (an evaluation, a benchmark, between stages)."""

    def __init__(self, signum: int, where: str = ""):
        self.signum, self.exit_code = signum, 128 + signum
        super().__init__(f"stopped by {_name(signum)}{' during ' + where if where else ''}; the checkpoints "
                         f"written so far stay; continue with --resume auto")


class SignalledTwice(KeyboardInterrupt):
    """A second signal: stopped at once, without a checkpoint."""

    def __init__(self, signum: int):
        self.signum, self.exit_code = signum, 128 + signum
        super().__init__(f"{_name(signum)} again: stopped at once")


_ACTIVE: StopSignals | None = None  # the command's stop request, while one is entered


class StopSignals:
    """`with StopSignals() as stop:` turns the first SIGINT/SIGTERM into `stop.signum`; a second one stops at once.

    Entered while another is active, it gives the active one: one request per command."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}
        self._depth = 0

    def __enter__(self) -> StopSignals:
        global _ACTIVE
        if _ACTIVE is not None and _ACTIVE is not self:
            _ACTIVE._depth += 1
            return _ACTIVE
        self._depth += 1
        if self._depth == 1:
            _ACTIVE = self
            if threading.current_thread() is threading.main_thread():
                self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        global _ACTIVE
        outer = _ACTIVE if _ACTIVE is not None else self
        outer._depth -= 1
        if outer._depth == 0:
            outer._restore()
            _ACTIVE = None

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            self._restore()
            raise SignalledTwice(signum)
        self.signum = signum
        # print, not messages.say: a signal handler must not wait for tqdm's lock, which the
        # interrupted code may hold
        print(f"\n{_name(signum)}: finishing this step and writing a checkpoint "
              "(Ctrl-C again stops at once, without one)", file=sys.stderr, flush=True)


def requested() -> int | None:
    """The signal of this command's stop request, or None (also when no StopSignals is active)."""
    return _ACTIVE.signum if _ACTIVE is not None else None


def check(where: str = "") -> None:
    """Raise StopRequested if a stop was requested: called between the batches of an evaluation or a benchmark."""
    signum = requested()
    if signum is not None:
        raise StopRequested(signum, where)
