"""A run's output folder that protects itself: one run at a time, checksummed files, nothing stale.

    prepare_folder(out)                  # the folder exists and is a folder (else a RunFolderError)
    with RunLock(out):                   # a second run on `out` fails at once, naming the holder
        remove_stale_temporaries(out)    # what an interrupted or failed write left behind
        check_free_space(out, nbytes, "one checkpoint")
        write_checksums(folder, ["params.safetensors", ...])   # checksums.sha256, `sha256sum -c` format
        checksum_problems(folder, names) # None (no checksum file: an older checkpoint), [] or the problems
    data_fingerprint(batcher.dataset)    # recorded with a checkpoint: resuming on other data is noticed

The lock is `fcntl.flock` on `<out>/.minibert.lock`, which holds the holder's pid, host, start
time and command. The kernel drops a flock when its process dies (even by SIGKILL), so a lock
file left by a dead run is taken over with a note, and a live holder is never mistaken for a
dead one because its pid was reused. It is also released (and the file removed) on exit.

This module also names the temporary files and folders every writer uses (`temp_file`,
`temp_folder`: checkpoint.py's save_tensors and save_pretrained, run_checkpoints.py's checkpoint
folders), all starting with TMP_PREFIX (`.minibert-tmp-`, a prefix no user's file has), so
`remove_stale_temporaries` removes exactly those and never a user's `.notes.tmp`; it gives
what is written the user's normal permissions (`set_default_mode`: safetensors creates its
files 0600, mkdtemp 0700) and fsyncs a folder after a rename into it (`fsync_folder`). The
output folder may not be a file system's root.

It does not know what a checkpoint holds (run_checkpoints.py) or how a tensor file is laid out
(checkpoint.py); it imports from minibert only its error class and `messages`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import RunFolderError
from .messages import describe_os_error, note

try:
    import fcntl
except ImportError:  # not POSIX: runs go unlocked (see RunLock.acquire)
    fcntl = None

LOCK_NAME = ".minibert.lock"
CHECKSUMS_NAME = "checksums.sha256"
# Every temporary minibert writes starts with TMP_PREFIX, a prefix no user's file would have: a
# file's `.minibert-tmp-<name>.<pid>`, a folder's `.minibert-tmp-<name>.<8 mkdtemp characters>`,
# a checkpoint's `.minibert-tmp-checkpoint-<step>-<pid>`, a folder being deleted
# `.minibert-tmp-removed-<name>.<pid>` (remove_folder). Only those are ever removed as stale
# (and `.tmp-checkpoint-<step>-<pid>`, the checkpoint temporaries of earlier versions).
TMP_PREFIX = ".minibert-tmp-"
CHECKPOINT_TMP_PREFIX = TMP_PREFIX + "checkpoint-"  # run_checkpoints.py's .minibert-tmp-checkpoint-<step>-<pid>
# A checkpoint being replaced by a new one of the same step, kept until the new one is in place
CHECKPOINT_OLD_PREFIX = ".minibert-old-checkpoint-"
_LEGACY_TEMP_CHECKPOINT = re.compile(r"\.tmp-checkpoint-\d+-\d+")
_OLD_CHECKPOINT = re.compile(re.escape(CHECKPOINT_OLD_PREFIX) + r"(\d+)")


# -- the folder and its lock ------------------------------------------------------------------

def prepare_folder(folder: Path) -> None:
    """Create `folder` (and its parents); a RunFolderError if it is a file, a file system's root or cannot be
    created."""
    if str(folder) == "" or folder.resolve() == Path(folder.resolve().anchor):
        raise RunFolderError(f"the output folder cannot be a file system's root: choose a folder of its own, "
                             f"{folder.resolve()}")
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"the output folder is a file, {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create the output folder ({describe_os_error(exc)})") from None


class RunLock:
    """`with RunLock(folder):` holds the folder's lock, or raises RunFolderError naming the run that holds it."""

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_NAME
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if fcntl is None:
            note(f"file locks are not available here: nothing stops a second run on {self.path.parent}")
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, default_mode())
            except OSError as exc:
                raise RunFolderError(f"the output folder is not writable ({describe_os_error(exc)})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunFolderError(f"the output folder is in use by another run ({_describe_holder(holder)}); "
                                     f"wait for it or choose another --output-dir, {self.path.parent}") from None
            except OSError as exc:  # a file system without flock (some network mounts)
                os.close(fd)
                note(f"cannot lock {self.path} ({exc.strerror}): nothing stops a second run on this folder")
                return
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
        previous = _holder(fd)
        if previous:
            note(f"took over the lock of a run that is no longer running ({_describe_holder(previous)})")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(getattr(sys, "orig_argv", sys.argv))}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it, so no one locks the file we remove
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None


def _holder(fd: int) -> dict | None:
    raw = os.pread(fd, 4096, 0)
    try:
        holder = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"unreadable": raw[:80].decode("utf-8", "replace")}
    return holder if isinstance(holder, dict) else None


def _describe_holder(holder: dict | None) -> str:
    if not holder:
        return "a run that is just starting"
    if "unreadable" in holder:
        return f"lock file holds {holder['unreadable']!r}"
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}: "
            f"{holder.get('command', '')}").rstrip(": ")


# -- temporaries, permissions, disk space -----------------------------------------------------

def temp_file(path: Path) -> Path:
    """Where a file is written before os.replace moves it to `path` (same folder: the move is atomic)."""
    return path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")


def temp_folder(folder: Path) -> Path:
    """A new empty folder next to `folder`, to be renamed into place, with the user's normal mode."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{folder.name}.", dir=folder.parent))
    set_default_mode(tmp)
    return tmp


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary file and a rename: readers see the old
    file or the new one, never half of one (results.json, model cards, predictions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file(path)
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as exc:
        if exc.filename or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # a full disk names the file it was writing
    finally:
        if tmp.exists():  # only when something failed before the rename
            tmp.unlink()
    return path


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries an interrupted write left in `folder` (and those of `folder` itself
    next to it); call it holding the folder's lock, so none of them can be in use. Returns them.

    Only names minibert makes (TMP_PREFIX) are touched: a user's `.notes.tmp` stays. A checkpoint
    renamed aside while a new one of its step was written (`.minibert-old-checkpoint-<step>`)
    is put back when the new one never arrived, else removed."""
    for p in sorted(folder.iterdir()):
        m = _OLD_CHECKPOINT.fullmatch(p.name)
        if m and p.is_dir() and not (folder / f"checkpoint-{m.group(1)}").exists():
            os.replace(p, folder / f"checkpoint-{m.group(1)}")
            note(f"restored {folder / f'checkpoint-{m.group(1)}'}, set aside by a write that was interrupted")
    found = [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX) or _OLD_CHECKPOINT.fullmatch(p.name)
             or _LEGACY_TEMP_CHECKPOINT.fullmatch(p.name)]
    mine = re.compile(re.escape(f"{TMP_PREFIX}{folder.name}.") + r"[a-z0-9_]{8}")  # save_pretrained(folder)'s
    found += [p for p in folder.resolve().parent.iterdir() if mine.fullmatch(p.name)]
    for p in found:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        note(f"removed {p}, left by an interrupted or failed write")
    return found


def remove_folder(folder: Path) -> None:
    """Delete `folder` so that no half of it is ever left under its own name.

    A kill during `shutil.rmtree` would leave, say, a checkpoint-4/ with some of its files gone
    (and, since deleting changes a folder's time, looking like the newest). The folder is first
    renamed to a temporary, atomically, and deleted there; a kill midway leaves only that
    temporary, which the next start removes (remove_stale_temporaries)."""
    aside = folder.with_name(f"{TMP_PREFIX}removed-{folder.name}.{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(folder, aside)
    except FileNotFoundError:  # already gone
        return
    shutil.rmtree(aside, ignore_errors=True)


def _umask() -> int:
    try:  # Linux says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a file (or folder) created by `open` (or `mkdir`) gets: 0o666 (0o777) less the umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def set_default_mode(path: Path) -> None:
    os.chmod(path, default_mode(Path(path).is_dir()))


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """RunFolderError unless the file system of `folder` has `needed` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise RunFolderError(f"not enough free disk space for {what}: {needed / 1e6:.1f} MB needed, "
                             f"{free / 1e6:.1f} MB free, {folder}")


# -- checksums -------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checksums(folder: Path, names) -> Path:
    """folder/checksums.sha256: one `<sha256>  <name>` line per file (what `sha256sum -c` reads)."""
    path = folder / CHECKSUMS_NAME
    path.write_text("".join(f"{sha256_file(folder / name)}  {name}\n" for name in names), encoding="utf-8")
    return path


def checksum_problems(folder: Path, required=()) -> list[str] | None:
    """What differs from folder/checksums.sha256 ([] when every file matches; None: no such file).

    required: the files it must list (a checksum file with a line deleted, or emptied, verifies
    nothing: it is a problem, not a pass)."""
    path = folder / CHECKSUMS_NAME
    if not path.is_file():
        return None
    problems, listed = [], set()
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        digest, _, name = line.partition("  ")
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not name or "/" in name:
            problems.append(f"{path}:{i}: not a '<sha256>  <file name>' line")
            continue
        listed.add(name)
        if not (folder / name).is_file():
            problems.append(f"{folder / name}: not found (listed in {CHECKSUMS_NAME})")
        elif sha256_file(folder / name) != digest:
            problems.append(f"{folder / name}: its bytes differ from those written (sha256 in {CHECKSUMS_NAME}): "
                            "the file is damaged or was changed")
    for name in required:
        if name not in listed:
            problems.append(f"{path}: does not list {name} (every file of the folder has its line)")
    return problems


def data_fingerprint(dataset) -> str | None:
    """A short sha256 of a data set's contents (its arrays, its lists of token ids, its numbers),
    or None when it holds something else. Changes with the examples, their order, --max-length,
    the vocabulary: what a resumed run must see unchanged."""
    if dataset is None or not hasattr(dataset, "__dict__"):
        return None
    h = hashlib.sha256()
    for name, value in sorted(vars(dataset).items()):
        h.update(name.encode())
        if isinstance(value, np.ndarray):
            h.update(f"{value.dtype.str}{value.shape}".encode())
            h.update(np.ascontiguousarray(value).data)
        elif isinstance(value, list) and all(isinstance(row, list) for row in value):  # token id rows
            h.update(np.array([len(row) for row in value], np.int64).data)
            h.update(np.fromiter(itertools.chain.from_iterable(value), np.int64).data)
        elif isinstance(value, (int, float, str, bool, type(None))):
            h.update(repr(value).encode())
        else:
            return None
    return h.hexdigest()[:16]
