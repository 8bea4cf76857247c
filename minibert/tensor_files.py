"""safetensors files, read and written safely: a header validated before any data, a file written whole or not at all.

    infos, metadata, data_start = read_header(path)       # {name: TensorInfo}, checked against the file
    arrays = load_tensors(path, {"w": (3, 4)})            # every tensor, names and shapes as expected
    save_tensors(path, {"w": w}, metadata={"format": "pt"})

No pickle anywhere. Before safetensors touches a file, `read_header` validates its header
itself (the length prefix, the JSON, every dtype x shape against its byte range, the byte
ranges against the file's size), so a truncated or lying file fails with a `CheckpointError`
naming the file and the tensor, never deep inside NumPy. A file is written to a temporary name
in its folder, flushed and renamed into place (os.replace): it appears whole or not at all.
BF16 tensors (which NumPy lacks) are read as float32.

Not here: what the files hold, the Hugging Face folders made of them (`checkpoint.py`) and a
training run's checkpoint folders (`run_checkpoints.py`).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from .backend import to_numpy
from .errors import CheckpointError
from .runfolder import set_default_mode, temp_file


class CheckpointMismatchError(CheckpointError):
    """A readable tensor file holding other tensors (or other shapes) than the caller expects."""


# Bytes per element of every safetensors dtype; the float ones are what we load as weights.
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
WEIGHT_DTYPES = ("F32", "F64", "F16", "BF16")
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit



class TensorInfo(NamedTuple):
    """One header entry: dtype, shape, and its byte range inside the data section."""

    dtype: str
    shape: tuple
    begin: int
    end: int




def read_header(path) -> tuple[dict[str, TensorInfo], dict, int]:
    """Validate a safetensors file's header: -> ({name: TensorInfo}, metadata, data start).

    Layout: 8 bytes little-endian header length N, N bytes of JSON
    {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then
    the data section, which the tensors must tile exactly (no gaps, no overlaps).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: {size} bytes is too short for a safetensors file (truncated?)")
        n = int.from_bytes(prefix, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(f"{path}: the header claims {n} bytes but the file has {size} (truncated or not safetensors)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header must be a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: __metadata__ must be a JSON object")
    data_bytes = size - 8 - n
    infos = {name: _tensor_info(path, name, entry, data_bytes) for name, entry in header.items()}
    # The tensors must tile the data section: sorted by start, each begins where the last ended.
    at = 0
    for name, info in sorted(infos.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if info.begin != at:
            what = "overlaps the previous tensor" if info.begin < at else f"leaves a gap of {info.begin - at} bytes before it"
            raise CheckpointError(f"{path}: tensor {name!r} starts at data byte {info.begin}, which {what}")
        at = info.end
    if at != data_bytes:
        raise CheckpointError(f"{path}: {data_bytes - at} bytes after the last tensor that no header entry describes")
    return infos, metadata, 8 + n


def _tensor_info(path: Path, name: str, entry, data_bytes: int) -> TensorInfo:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise CheckpointError(f"{path}: tensor {name!r}: header entry needs dtype, shape and data_offsets, got {entry!r}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise CheckpointError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")

    def is_count(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(shape, list) or not all(is_count(d) for d in shape):
        raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise CheckpointError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    needed = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != needed:
        raise CheckpointError(f"{path}: tensor {name!r}: shape {shape} of {dtype} needs {needed} bytes "
                              f"but its data_offsets {offsets} span {end - begin}")
    if end > data_bytes:
        raise CheckpointError(f"{path}: tensor {name!r} ends at data byte {end} but the file holds only "
                              f"{data_bytes} data bytes (truncated?)")
    return TensorInfo(dtype, tuple(shape), begin, end)


def read_tensors(path, names=None) -> dict[str, np.ndarray]:
    """{name: array} for `names` (default: all) of a validated safetensors file.

    Arrays come back in their stored dtype (bit-exact), except BF16, which NumPy lacks: float32.
    """
    return load_tensors(path, names=names)


def load_tensors(path, expected: dict[str, tuple] | None = None, *, names=None) -> dict[str, np.ndarray]:
    """`read_tensors`, checked against `expected` = {name: shape}, the whole file's contents.

    A tensor missing from the file, one the file has but `expected` lacks, or a shape that
    differs raises `CheckpointMismatchError` naming the file and the tensor (and both shapes),
    before any data is read. `names` picks which tensors to read (default: all). Dtypes stay
    as stored, so a save_tensors/load_tensors round trip is bit-exact.
    """
    path = Path(path)
    infos, _, data_start = read_header(path)
    if expected is not None:
        _check_expected(path, infos, {name: tuple(shape) for name, shape in expected.items()})
    return dict(_iter_tensors(path, infos, data_start, sorted(infos) if names is None else list(names)))


def _check_expected(path: Path, infos: dict[str, TensorInfo], expected: dict[str, tuple]) -> None:
    def listed(keys):
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        return f"{keys[0]!r}{more}"

    missing = sorted(set(expected) - set(infos))
    unexpected = sorted(set(infos) - set(expected))
    if missing:
        also = f"; it has unexpected tensor {listed(unexpected)}" if unexpected else ""
        raise CheckpointMismatchError(f"{path}: tensor {listed(missing)} is missing (expected shape "
                                      f"{list(expected[missing[0]])}){also}")
    if unexpected:
        raise CheckpointMismatchError(f"{path}: unexpected tensor {listed(unexpected)} (shape "
                                      f"{list(infos[unexpected[0]].shape)})")
    for name, shape in expected.items():
        if infos[name].shape != shape:
            raise CheckpointMismatchError(f"{path}: tensor {name!r} has shape {list(infos[name].shape)} "
                                          f"but {list(shape)} is expected")


def _iter_tensors(path: Path, infos: dict, data_start: int, names):
    """Yield (name, array) one at a time, so a big file never sits in memory twice."""
    unknown = [name for name in names if name not in infos]
    if unknown:
        raise CheckpointError(f"{path}: no tensor {unknown[0]!r} in the file (it has {sorted(infos)[:3]}...)")
    try:
        with safe_open(str(path), framework="np") as f:
            for name in names:
                info = infos[name]
                try:
                    if info.dtype == "BF16":
                        array = _read_bf16(path, info, data_start)
                    else:
                        array = f.get_tensor(name)
                except Exception as exc:  # safetensors' messages do not name the file
                    raise CheckpointError(f"{path}: cannot read tensor {name!r} ({info.dtype}, "
                                          f"shape {list(info.shape)}): {exc}") from exc
                yield name, array
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: safetensors cannot open the file: {exc}") from exc


def _read_bf16(path: Path, info: TensorInfo, data_start: int) -> np.ndarray:
    """bfloat16 is the top half of a float32: widen each uint16 to the high bits of a uint32."""
    count = math.prod(info.shape)
    bits = np.fromfile(path, dtype="<u2", count=count, offset=data_start + info.begin)
    if bits.size != count:
        raise CheckpointError(f"{path}: tensor data ends early (truncated?)")
    return (bits.astype(np.uint32) << 16).view(np.float32).reshape(info.shape)



def save_tensors(path, arrays: dict, metadata: dict | None = None) -> Path:
    """Write {name: array} as one safetensors file, atomically; returns the path.

    Arrays may live on the device: each is written as a contiguous NumPy copy in its own
    dtype (float64 optimizer moments stay float64). `metadata` is {str: str}. The data goes
    to a temporary file in the same folder, is flushed to disk, then renamed over `path`
    (os.replace), so a crash leaves the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(to_numpy(a)) for name, a in arrays.items()}
    tmp = temp_file(path)  # same folder, so os.replace is atomic
    try:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # its I/O errors ("File too large (os error 27)") name no file
            code = re.search(r"os error (\d+)", str(exc))
            raise (OSError(int(code[1]), os.strerror(int(code[1])), str(path)) if code else OSError(str(exc))) from exc
        set_default_mode(tmp)  # safetensors creates its files 0600: make them readable like any other
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # only when something failed before the rename
            os.remove(tmp)
    return path


