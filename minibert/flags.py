"""Settings dataclasses as argparse flags: each flag, its type, default and help declared once.

    add_flags(parser, TrainArgs, "training", lr=1e-3, max_steps=1000)   # --lr, --max-steps, ...
    args = parser.parse_args(argv); fill_defaults(args)
    train_args = from_args(TrainArgs, args)

A field `max_seq_length: int = field(default=128, metadata={"help": ...})` becomes the flag
`--max-seq-length` of type int, with its help and "(default: 128)" appended; `metadata["choices"]`
becomes argparse choices; `metadata["positional"]` makes a list field the command's plain
arguments (`predict "a gripping film" "dull"`). Types: int, float, str, bool (`--flag`, `--flag true|false`),
list[str] (one or more values) and `X | None`. A command may override a field's default
(pre-training's learning rate is not fine-tuning's).

argparse only turns the command line's strings into these types; every value, from a flag or a
`--config` file, is validated by type and range when `from_args` builds the dataclass
(`settings.check_fields`), and a refusal is a UsageError (exit 2) naming the field and its flag.

Every flag's argparse default is None, so that a `--config` file can fill exactly the flags the
command line left out; the real defaults are recorded on the parser and `fill_defaults` puts them in
afterwards. This module knows no command (that is `train.py`) and no setting (`settings.py`,
`settings.TrainArgs`).
"""
from __future__ import annotations

import argparse
import types
import typing
from dataclasses import fields

from .errors import UsageError  # noqa: F401 (flags.UsageError, as before)

DEFAULTS = "_defaults"  # namespace attribute: {field name: the command's default}, filled by add_flags




def parse_bool(text: str) -> bool:
    """'true'/'false' (also 1/0, yes/no, on/off) for boolean flags."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _argparse_type(annotation) -> tuple[object, str | None]:
    """A field's annotation -> (argparse type, nargs)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None: the flag is X
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], "+"
    if annotation is bool:
        return parse_bool, "?"  # "--whole-word-mask" alone means true
    if annotation in (int, float, str):
        return annotation, None
    raise TypeError(f"no flag type for {annotation!r}: use int, float, str, bool, list[str] or one of them | None")


def _shown(default) -> str:
    return str(default).lower() if isinstance(default, bool) else str(default)


def add_flags(parser: argparse.ArgumentParser, cls, title: str, *, only: tuple[str, ...] | None = None,
              **defaults) -> None:
    """Add one flag per field of the dataclass `cls` (or only those named) as the argument group `title`.

    defaults: this command's default for some fields, e.g. `output_dir="runs/pretrain"`.
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title)
    chosen = [f for f in fields(cls) if only is None or f.name in only]
    unknown = set(defaults) - {f.name for f in chosen}
    if unknown:
        raise TypeError(f"{cls.__name__} has no flag {', '.join(sorted(unknown))}")
    recorded = dict(parser.get_default(DEFAULTS) or {})
    for f in chosen:
        default = defaults.get(f.name, f.default)
        kind, nargs = _argparse_type(hints[f.name])
        # A None or "" default is explained by the help text itself ("default: the teacher's").
        suffix = "" if default in (None, "") else f" (default: {_shown(default)})"
        kw = dict(type=kind, default=None, help=f.metadata["help"] + suffix)
        if nargs:
            kw["nargs"] = nargs
        if kind is parse_bool:
            kw.update(const=True, metavar="BOOL")
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if "metavar" in f.metadata:
            kw["metavar"] = f.metadata["metavar"]
        if f.metadata.get("positional"):
            kw["nargs"] = "*"  # argparse gives [] when none are given: fill_defaults reads that as not given
            group.add_argument(f.name, **kw)
        else:
            group.add_argument("--" + f.name.replace("_", "-"), **kw)
        recorded[f.name] = default
    parser.set_defaults(**{DEFAULTS: recorded})


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Put the command's default into every flag that neither the command line nor --config set."""
    for name, default in getattr(args, DEFAULTS, {}).items():
        if getattr(args, name) in (None, []):  # [] from a positional list given nothing
            setattr(args, name, default)
    return args


def from_args(cls, args: argparse.Namespace):
    """The dataclass `cls` from parsed flags; fields the command has no flag for keep the class default.

    A value the class refuses (its __post_init__'s ValueError) is a UsageError."""
    try:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
