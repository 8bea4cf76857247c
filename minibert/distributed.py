"""Data-parallel training over several processes: MPI (mpi4py) between CPUs, NCCL between GPUs.

    mpiexec -n 2 python -m minibert.train finetune --batch-size 32 ...   # 2 processes, 16 rows each

Every process holds the whole model and runs the same loop (trainer.py) on its own slice of
every global batch (data/batching.shard_batch); after the micro-batches of an optimizer step,
the gradients of all processes are summed, so every process applies the same update to the same
parameters and they never drift apart:

    start     parameters broadcast from rank 0 (the initialisation or the checkpoint it read)
    each step local gradients, each loss weighted by this process's share of the global
              batch (trainer.py) -> one sum over the processes of ONE flat buffer that every
              gradient is a view of (`flatten_gradients`) -> clipping and the optimizer,
              identically everywhere; whether a stop signal reached any process, and which
              (`first_signal`, host bytes)
    log steps the losses and the NaN/Inf check summed over the processes (host values)

The sum is one `Allreduce` per step (MPI on NumPy arrays; NCCL's ncclAllReduce on CuPy arrays,
on the current stream, with no host synchronisation). `MINIBERT_REDUCTION=ordered` replaces it
by an all-gather followed by a sum in rank order on every process (`ordered_sum`): N times the
memory and traffic, but the same bits on every run whatever the MPI or NCCL library's algorithm
(a plain Allreduce may sum in an order that depends on message sizes, topology or library version).

One process, or no MPI launcher at all, is exactly the one-process program: `world()` imports
mpi4py only when a launcher says there are several processes (PMI_SIZE: MPICH, Intel MPI, Slurm's
PMI-2; OMPI_COMM_WORLD_SIZE: Open MPI), and the trainer then skips every step above.

Processes started with different settings would compute different things under one reduction,
or one would finish early and leave the others waiting: the command line compares the parsed
settings first (`same_everywhere`) and every process refuses to run when they differ. A
process that fails while the others wait in a reduction would leave them waiting for ever
(MPI has no timeout): `abort_on_error` (the command line wraps every run in it) prints the
error with its rank and calls MPI_Abort, which ends every process at once. A process killed
outright (SIGKILL, out of memory) is noticed by mpiexec, which ends the others. Checkpoints are
written by rank 0 alone, atomically (trainer.py), so the last one stays intact either way.

On GPUs each process takes the device of its rank on its machine (`local_rank`, from
MPI's shared-memory split) and the NCCL communicator is bootstrapped by broadcasting NCCL's
unique id over MPI (`nccl_communicator`).

This module is the only one that imports mpi4py and `cupy.cuda.nccl` (both lazily, as
backend.py imports CuPy). It does not slice batches (data/batching.py), weight losses or decide
what rank 0 alone does (trainer.py), and holds no model code.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from contextlib import contextmanager

import numpy as np

from .errors import DataError
from .backend import get_array_module
from .interrupts import Interrupted

# What launchers put in each process's environment: the number of processes of the job.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
REDUCTIONS = ("allreduce", "ordered")  # MINIBERT_REDUCTION


def launched_size(environ=os.environ) -> int:
    """The number of processes an MPI launcher started (1 without one)."""
    for name in SIZE_VARIABLES:
        if environ.get(name):
            return int(environ[name])
    return 1


def reduction_mode(environ=os.environ) -> str:
    """MINIBERT_REDUCTION: allreduce (the default) or ordered (bit-identical across runs)."""
    mode = environ.get("MINIBERT_REDUCTION", "allreduce")
    if mode not in REDUCTIONS:
        raise DataError(f"MINIBERT_REDUCTION={mode!r}: expected one of {', '.join(REDUCTIONS)}")
    return mode


def _mpi():
    """mpi4py's MPI module, imported on first use (which initialises MPI)."""
    try:
        return importlib.import_module("mpi4py.MPI")
    except ImportError as exc:
        raise RuntimeError("this run was started by an MPI launcher with several processes, but mpi4py is not "
                           "installed: pip install -e '.[mpi]' (mpi4py and the mpich wheel)") from exc


def _nccl():
    """cupy.cuda.nccl, imported on first use."""
    try:
        return importlib.import_module("cupy.cuda.nccl")
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError("several processes on --device cupy need CuPy built with NCCL "
                           "(pip install 'minibert[gpu]')") from exc


# ============================================================================== the world


class World:
    """The processes of this run: rank, size, rank on this machine, and the few collectives the trainer uses.

    With one process (comm None) every method returns its input: nothing is communicated.
    """

    def __init__(self, comm=None, local_rank: int = 0, local_size: int = 1):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.local_rank, self.local_size = local_rank, local_size
        self._nccl_comm = None

    @property
    def is_root(self) -> bool:
        """Rank 0: the process that writes files, logs and shows the progress bar."""
        return self.rank == 0

    @property
    def tag(self) -> str:
        """What log lines add to say the world size: " [2 processes]", nothing for one process."""
        return f" [{self.size} processes]" if self.size > 1 else ""

    def __repr__(self) -> str:
        return f"World(rank {self.rank} of {self.size})"

    def wait(self) -> None:
        """Wait for every process, sleeping: MPICH's blocking calls spin a core, which a process
        waiting while rank 0 evaluates or writes a checkpoint would take from it."""
        if self.size == 1:
            return
        request = self.comm.Ibarrier()
        while not request.Test():
            time.sleep(0.002)

    def broadcast(self, obj):
        """Rank 0's `obj` on every process (any picklable value)."""
        if self.size == 1:
            return obj
        self.wait()
        return self.comm.bcast(obj, root=0)

    def gather(self, obj) -> list | None:
        """[rank 0's obj, rank 1's, ...] on rank 0, None elsewhere."""
        if self.size == 1:
            return [obj]
        return self.comm.gather(obj, root=0)

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the processes, in rank order (host floats: losses at log steps)."""
        if self.size == 1:
            return values
        every = self.comm.allgather([float(v) for v in values])  # size x len(values)
        return [sum(column) for column in zip(*every)]

    def first_signal(self, signum: int | None) -> int | None:
        """The stop signal of the lowest rank that received one, on every process (None: none did).

        A scheduler may signal one process only: the others learn of it here, at the same step."""
        if self.size == 1:
            return signum
        return next((s for s in self.comm.allgather(signum) if s is not None), None)

    def same_everywhere(self, what: str, value) -> None:
        """Raise DataError on every process unless `value` (picklable) is equal on all of them.

        The command line compares the parsed settings at start-up: processes started with other
        flags would run other computations under one reduction, or wait for ever for a peer that
        finished early."""
        if self.size == 1:
            return
        values = self.comm.allgather(value)
        differ = [r for r, v in enumerate(values) if v != values[0]]
        if differ:
            detail = ""
            if isinstance(value, dict):
                keys = sorted(k for k in value if any(v.get(k) != values[0].get(k) for v in values))
                detail = ": " + "; ".join(f"{k} is {values[0].get(k)!r} on rank 0 but {values[differ[0]].get(k)!r} "
                                          f"on rank {differ[0]}" for k in keys[:5])
            raise DataError(f"the processes were started with different {what}{detail}: start every process with "
                            f"the same command line")

    def reducer(self, device: str, mode: str) -> "Reducer":
        """How this run sums gradient buffers: MPI on NumPy arrays, NCCL on CuPy arrays."""
        if device == "cupy":
            if self._nccl_comm is None:  # one communicator for all the trainers of a run (pipeline stages)
                self._nccl_comm = nccl_communicator(self.comm, self.rank, self.size)
            return NCCLReducer(self._nccl_comm, _nccl(), self.size, mode)
        return MPIReducer(self.comm, mode)


_WORLD: World | None = None


def world() -> World:
    """This run's World: one process unless an MPI launcher started several (then MPI is initialised)."""
    global _WORLD
    if _WORLD is None:
        if launched_size() == 1:
            _WORLD = World()
        else:
            MPI = _mpi()
            comm = MPI.COMM_WORLD
            local = comm.Split_type(MPI.COMM_TYPE_SHARED)  # the processes on this machine
            _WORLD = World(comm, local.Get_rank(), local.Get_size())
    return _WORLD


# ===================================================================== the command line


_REAL_STDERR = sys.stderr  # where a failing process writes, whatever setup() did to sys.stderr
ABORT_GRACE_S = 1.0  # seconds between writing the error line and MPI_Abort (see abort_on_error)


def setup(device: str = "numpy", parallel: bool = True) -> World:
    """What the command line does first under mpiexec (nothing with one process).

    - Ranks other than 0 write nothing to stdout and stderr (the same run's messages N times
      over would bury the ones that matter); an error still reaches the terminal, naming its
      rank (`abort_on_error`).
    - Each process's thread pool gets its share of the machine's cores, unless
      MINIBERT_NUM_THREADS says otherwise (2 processes on 2 cores: 1 thread each).
    - On --device cupy, each process takes the GPU of its rank on this machine, before any
      array is made there.

    parallel=False (a command that does not train: vocab, augment, evaluate, predict) refuses
    several processes, which would only repeat its work and write its files N times.
    """
    global _REAL_STDERR
    w = world()
    if w.size == 1:
        return w
    if not parallel:
        raise DataError(f"this command runs in one process, not {w.size}: start it without mpiexec (several "
                        f"processes share the training commands' batches)")
    _REAL_STDERR = sys.stderr
    if not w.is_root:
        sys.stdout = sys.stderr = open(os.devnull, "w")
    os.environ.setdefault("MINIBERT_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // w.local_size)))
    if device == "cupy":
        select_gpu(w.local_rank)
    return w


def select_gpu(local_rank: int, cuda=None) -> None:
    """Make GPU number `local_rank` of this machine the current device of this process."""
    cuda = cuda or importlib.import_module("cupy.cuda")
    count = cuda.runtime.getDeviceCount()
    if local_rank >= count:
        raise RuntimeError(f"process {local_rank} on this machine has no GPU of its own ({count} GPUs): start at "
                           f"most {count} processes per machine")
    cuda.Device(local_rank).use()


@contextmanager
def abort_on_error(expected: tuple = ()):
    """In several processes, an exception on one ends them all at once, naming its rank.

    An `expected` exception (a user's error: bad data, a folder in use) is one line, others
    their traceback, on the terminal's stderr; then MPI_Abort ends every process with exit
    code 1 (130 after a second Ctrl-C). An `interrupts.Interrupted` is not an error: every
    process raises it at the same step, after rank 0 wrote the checkpoint.
    """
    w = world()
    if w.size == 1:
        yield
        return
    try:
        yield
    except (Interrupted, SystemExit):
        raise
    except BaseException as exc:
        where = f"rank {w.rank} of {w.size}"
        if isinstance(exc, expected):
            _REAL_STDERR.write(f"error on {where}: {' '.join(str(exc).split())}\n")
        else:
            _REAL_STDERR.write("".join(traceback.format_exception(exc)))
            _REAL_STDERR.write(f"error on {where}: {type(exc).__name__}: {exc}; ending every process\n")
        _REAL_STDERR.flush()
        # The launcher forwards our stderr through a pipe and MPI_Abort tears its proxies down at
        # once: on a loaded machine the line above was lost. A short pause lets it be forwarded.
        time.sleep(ABORT_GRACE_S)
        w.comm.Abort(getattr(exc, "exit_code", 130) if isinstance(exc, KeyboardInterrupt) else 1)


# ============================================================== gradients in one buffer


def flatten_gradients(modules: dict):
    """Make every gradient of `modules` ({prefix: Module}) a view into one new flat buffer; return it.

    The modules' backward passes accumulate into their `grads` arrays in place (`+=`), so after
    this they fill the buffer directly, and one message sums all of them. Gradients keep their
    values; they must share one dtype. A later `module.to()` or `astype()` makes new arrays,
    so flatten after moving the model.
    """
    owners, seen = [], set()  # (module, gradient name), in the modules' fixed order: the same on every process
    for module in modules.values():
        for m in module.modules():
            for name in m.grads:
                if (id(m), name) not in seen:
                    seen.add((id(m), name))
                    owners.append((m, name))
    grads = [m.grads[name] for m, name in owners]
    dtypes = {g.dtype for g in grads}
    if len(dtypes) != 1:
        raise ValueError(f"gradients of several dtypes ({sorted(map(str, dtypes))}) cannot share one buffer")
    xp = get_array_module(grads[0])
    flat = xp.zeros(sum(g.size for g in grads), dtype=grads[0].dtype)  # (n,)
    offset = 0
    for (m, name), g in zip(owners, grads):
        view = flat[offset:offset + g.size].reshape(g.shape)
        view[...] = g
        m.grads[name] = view
        offset += g.size
    return flat


def flatten_parameters(params: dict):
    """All parameters in one new flat array (a copy), in the dict's order: one message to broadcast."""
    xp = get_array_module(next(iter(params.values())))
    return xp.concatenate([p.reshape(-1) for p in params.values()])


def unflatten_parameters(flat, params: dict) -> None:
    """Copy `flat` (made by flatten_parameters) back into the parameters, in place."""
    offset = 0
    for p in params.values():
        p[...] = flat[offset:offset + p.size].reshape(p.shape)
        offset += p.size


def ordered_sum(parts, out) -> None:
    """out = parts[0] + parts[1] + ... + parts[N-1], added in rank order.

    parts (N, n), one row per process; out (n,). Floating-point addition is not associative,
    so only a fixed order gives the same bits on every process and every run.
    """
    out[...] = parts[0]
    for part in parts[1:]:
        out += part


class Reducer:
    """Sums a flat gradient buffer over the processes in place, and broadcasts rank 0's buffers."""

    def sum(self, flat) -> None:
        raise NotImplementedError

    def broadcast(self, flat) -> None:
        raise NotImplementedError


class MPIReducer(Reducer):
    """NumPy buffers over MPI: one Allreduce, or Allgather + `ordered_sum` (mode "ordered")."""

    def __init__(self, comm, mode: str = "allreduce"):
        self.comm, self.mode = comm, mode

    def sum(self, flat) -> None:
        if self.mode == "ordered":
            parts = np.empty((self.comm.Get_size(), flat.size), dtype=flat.dtype)  # (N, n)
            self.comm.Allgather(flat, parts)
            ordered_sum(parts, flat)
        else:
            self.comm.Allreduce(_mpi().IN_PLACE, flat)  # op SUM

    def broadcast(self, flat) -> None:
        self.comm.Bcast(flat, root=0)


class NCCLReducer(Reducer):
    """CuPy buffers over NCCL, queued on the current CUDA stream: the host does not wait for the GPU."""

    def __init__(self, comm, nccl, size: int, mode: str = "allreduce"):
        self.comm, self.nccl, self.size, self.mode = comm, nccl, size, mode

    def _dtype(self, flat) -> int:
        types = {"float32": self.nccl.NCCL_FLOAT32, "float64": self.nccl.NCCL_FLOAT64}
        if flat.dtype.name not in types:
            raise ValueError(f"NCCL reduction of {flat.dtype} buffers is not supported (float32, float64)")
        return types[flat.dtype.name]

    @staticmethod
    def _stream(flat) -> int:
        return get_array_module(flat).cuda.get_current_stream().ptr

    def sum(self, flat) -> None:
        if self.mode == "ordered":
            parts = get_array_module(flat).empty((self.size, flat.size), dtype=flat.dtype)  # (N, n)
            self.comm.allGather(flat.data.ptr, parts.data.ptr, flat.size, self._dtype(flat), self._stream(flat))
            ordered_sum(parts, flat)
        else:
            self.comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self._dtype(flat), self.nccl.NCCL_SUM,
                                self._stream(flat))

    def broadcast(self, flat) -> None:
        self.comm.bcast(flat.data.ptr, flat.size, self._dtype(flat), 0, self._stream(flat))


def nccl_communicator(comm, rank: int, size: int, nccl=None):
    """NCCL's communicator over the MPI processes: rank 0 makes NCCL's unique id, MPI broadcasts it,
    and every process joins with its rank (ncclCommInitRank, on its current GPU: `select_gpu`)."""
    nccl = nccl or _nccl()
    unique_id = nccl.get_unique_id() if rank == 0 else None
    unique_id = comm.bcast(unique_id, root=0)
    return nccl.NcclCommunicator(size, unique_id, rank)
