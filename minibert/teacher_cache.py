"""The frozen teacher's small outputs, computed once per example and reused in later epochs.

In a stage whose losses read only small teacher targets (its logits; Patient KD's [CLS]
states: `distill.SMALL_TARGETS`), the teacher's forward pass gives the same answer every time
an example comes back: the teacher is frozen and in eval mode (no dropout). So a
TeacherCache runs the teacher only on the rows of a batch it has not seen, keeps their
targets one row per example, and serves the rows it has seen from memory:

    cache = TeacherCache(teacher, distiller, "prediction")
    targets = cache(batch)                       # {"logits": (B, C)}, as distiller.teacher_targets gives
    losses = distiller(student(...), targets, stage="prediction")

An example is keyed by a hash of its token ids and token types (its real tokens only), so
augmented rows are keyed by what they say, and a repeated sentence is computed once.

Exactness: a row's output does not depend on the other rows of its batch, except through the
batch's shape: padded further, its softmaxes sum more (zero) terms, and BLAS may block a
matmul of another size differently, either of which can round the last bit another way. So
a cached row equals a recomputation in another batch to float rounding, and bit for bit when
the batches have the same shape (tests/test_methods.py trains identical students with and
without the cache). On a GPU the cache is not used: looking a row up needs its ids on the
host, a device synchronisation at every step, and the teacher's forward is cheap there.

Exact resume: a cached row keeps the bits of the batch it was first computed in, so a run
resumed with an empty cache would recompute rows in other batches and drift by rounding from
the run it continues. The trainer therefore saves the cache with each checkpoint
(`state_arrays`, in checkpoint-<step>/extra.safetensors) and restores it (`load_state_arrays`):
a resumed run serves exactly the rows the uninterrupted one would.

Not here: which targets a stage needs (`Distiller.teacher_targets`), the stage's loop
(`distillation.py`).
"""
from __future__ import annotations

import hashlib

import numpy as np

from .backend import get_array_module
from .distill import SMALL_TARGETS


def example_keys(input_ids, token_type_ids, attention_mask) -> list[bytes]:
    """One 16-byte key per row: a hash of its real tokens' ids and types (rows are padded on the right)."""
    lengths = attention_mask.sum(axis=1)  # (B,)
    return [hashlib.blake2b(input_ids[i, :n].tobytes() + token_type_ids[i, :n].tobytes(), digest_size=16).digest()
            for i, n in enumerate(lengths.tolist())]


def _row(value, i):
    """Row i of a target: a (B, ...) array, or a list of them (copied: the batch's arrays are freed)."""
    if isinstance(value, list):
        return [a[i].copy() for a in value]
    return value[i].copy()


def _stack(rows):
    """The inverse of _row over a batch's rows: (B, ...) arrays, or lists of them."""
    xp = get_array_module(rows[0][0] if isinstance(rows[0], list) else rows[0])
    if isinstance(rows[0], list):
        return [xp.stack([r[j] for r in rows]) for j in range(len(rows[0]))]
    return xp.stack(rows)


class TeacherCache:
    """A stage's teacher targets, one row per example, computed the first time the example is seen.

    `hits` and `misses` count the rows served from memory and those the teacher computed.
    """

    def __init__(self, teacher, distiller, stage: str):
        if not distiller.cacheable(stage):
            raise ValueError(f"TeacherCache: stage {stage!r} of method {distiller.method!r} reads teacher outputs "
                             f"too large to keep per example (only {', '.join(SMALL_TARGETS)} are)")
        self.teacher, self.distiller, self.stage = teacher, distiller, stage
        self.rows: dict[bytes, dict] = {}  # key -> {target name: its row}
        self.hits = self.misses = 0

    def __call__(self, batch: dict) -> dict:
        """The batch's teacher targets {name: (B, ...) array or list of them} (host arrays: the CPU backend)."""
        ids, types, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
        if not isinstance(ids, np.ndarray):
            raise ValueError("TeacherCache: the batch must be on the host (NumPy); it is not used on a GPU")
        keys = example_keys(ids, types, mask)
        missing = [i for i, k in enumerate(keys) if k not in self.rows]
        if missing:
            # the whole batch when nothing is known: the teacher sees exactly what an uncached step gives it
            rows = slice(None) if len(missing) == len(keys) else np.asarray(missing)
            targets = self.distiller.teacher_targets(self.teacher(ids[rows], types[rows], mask[rows]), self.stage)
            for j, i in enumerate(missing):
                self.rows.setdefault(keys[i], {name: _row(value, j) for name, value in targets.items()})
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        names = self.rows[keys[0]].keys()
        return {name: _stack([self.rows[k][name] for k in keys]) for name in names}

    # ---------------------------------------------------------- saved with a checkpoint

    def state_arrays(self) -> dict:
        """The cache as host arrays: "keys" (n, 16) uint8, one (n, ...) array per target (per list item:
        "<name>.<j>"), and "counts" [hits, misses]: what a checkpoint keeps for an exact resume."""
        arrays = {"counts": np.array([self.hits, self.misses], dtype=np.int64)}
        if not self.rows:
            return arrays
        keys = list(self.rows)
        arrays["keys"] = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
        for name, first in self.rows[keys[0]].items():
            if isinstance(first, list):
                for j in range(len(first)):
                    arrays[f"{name}.{j}"] = np.stack([self.rows[k][name][j] for k in keys])
            else:
                arrays[name] = np.stack([self.rows[k][name] for k in keys])
        return arrays

    def load_state_arrays(self, arrays: dict) -> None:
        """Replace the cache by what `state_arrays` gave (an empty dict: an empty cache)."""
        self.rows = {}
        self.hits, self.misses = (int(x) for x in arrays.get("counts", np.zeros(2, np.int64)))
        if "keys" not in arrays:
            return
        keys = [bytes(row) for row in arrays["keys"]]
        names = sorted({name.split(".")[0] for name in arrays if name not in ("keys", "counts")})
        for i, k in enumerate(keys):
            row = {}
            for name in names:
                if name in arrays:
                    row[name] = arrays[name][i].copy()
                else:
                    parts = sorted((int(n.split(".")[1]), a) for n, a in arrays.items() if n.startswith(name + "."))
                    row[name] = [a[i].copy() for _, a in parts]
            self.rows[k] = row
