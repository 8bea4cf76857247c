"""The errors a user can fix: one base class, `UserError`, and its kinds.

A `UserError` is something the person running minibert caused and can fix (a flag, a data
file, a damaged checkpoint, a full disk, a loss that went NaN with these settings): the
command line prints it as one line, `error: <what>, <where>`, and exits with its
`exit_code` (2 for a usage error, 1 otherwise; `--debug` shows the traceback). Anything else
(a NumPy error, a bug) is not caught: its traceback is the report. OSErrors from the disk
(not found, no space, no permission) are treated as user errors too, described by
`messages.describe_os_error`.

Each kind also derives from the built-in error it refines (ValueError, RuntimeError,
FileNotFoundError), so `except ValueError` in a caller still catches a bad data file.
Where they are raised: DataError in data/, specs.py and the run modules; UsageError in
flags.py and train.py; CheckpointError in checkpoint.py and run_checkpoints.py;
RunFolderError in runfolder.py; TrainingError in trainer.py and run_checkpoints.py.

Not here: the wording of messages and where they go (`messages.py`).
"""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; printed as one line, exit status `exit_code`."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """A flag, a --config file or a setting's value that cannot be used (exit status 2)."""

    exit_code = 2


class DataError(UserError, ValueError):
    """Data, a model folder or a combination of settings that cannot be used, named with where it is."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or model folder that is damaged or does not fit the model, naming the file (and tensor)."""


class RunFolderError(UserError, RuntimeError):
    """An output folder that cannot hold this run: in use, another run's, unwritable, too small."""


class TrainingError(UserError, RuntimeError):
    """Training stopped: a non-finite loss, a checkpoint that could not be written (full disk), or a
    metric_for_best the evaluation does not report."""
