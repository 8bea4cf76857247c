"""BertConfig: the model's shape, with Hugging Face's field names and defaults.

A config read from a Hugging Face `config.json` builds the same model here as there, and a
config we write is one `transformers.BertConfig` reads back. Validation happens at
construction, so a bad field fails with its name before any array is allocated.

A classifier's outputs are named as in transformers: `id2label` ({0: "negative", ...}),
`label2id` (its inverse) and `problem_type` ("regression" for one float output). They live
in `extra`, the fields a config carries for transformers' sake, and `set_labels` /
`label_names` read and write them, so a saved folder tells every later command (and
transformers' `pipeline`) what each output means.

Not here: reading and writing config.json inside a model folder, with the checks a
checkpoint needs (`checkpoint.load_config`); the settings of a training run
(`settings.py`, `settings.TrainArgs`).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .textfile import read_json_object

HIDDEN_ACTS = ("gelu", "gelu_new", "relu")

# The largest size each field may take: above every BERT published (bert-large: 1024 wide, 24
# layers, 4096 intermediate; multilingual vocabularies: 250k), far below what would exhaust a
# machine before a check could run. A config.json is untrusted input: it is bounded before any
# array is allocated (and checkpoint.from_pretrained checks it against the weights' header).
MAX_SIZES = {"vocab_size": 1_000_000, "hidden_size": 16_384, "num_hidden_layers": 256, "num_attention_heads": 1024,
             "intermediate_size": 131_072, "max_position_embeddings": 131_072, "type_vocab_size": 1024}

# Shapes people ask for by name. TinyBERT-4 is the paper's student (head size 26).
PRESETS: dict[str, dict[str, Any]] = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tinybert-4": dict(hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200),
    # 3 x 312: the depth the 6-layer MiniLM teacher maps onto uniformly (g(m) = 2m)
    "tinybert-3": dict(hidden_size=312, num_hidden_layers=3, num_attention_heads=12, intermediate_size=1200),
    "tinybert-6": dict(hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072),
    # half the MiniLM teacher's width, a quarter of its heads: only MiniLMv2's relations can teach them
    "narrow-4x192": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768),
    "narrow-3x192": dict(hidden_size=192, num_hidden_layers=3, num_attention_heads=3, intermediate_size=768),
    # 3 layers x 48 wide with the MiniLM teacher's 12 heads: a student for tests and demos
    "tiny-3": dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=12, intermediate_size=96),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
}

# Any other shape, from the command line (specs.shape_config): layers x hidden [x heads], 4 x hidden feed-forward
SHAPE_HELP = "LxH or LxHxA (layers x hidden size [x heads], e.g. 3x256: a fresh random model of that shape)"


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder (names and defaults as `transformers.BertConfig`)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: float | None = None
    # Fields we do not use but keep so a config round-trips (model_type, architectures, ...).
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive integer, got {value!r}")
            if value > MAX_SIZES[name]:
                raise ValueError(f"BertConfig.{name}={value} is larger than minibert builds (at most "
                                 f"{MAX_SIZES[name]:,})")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_act not in HIDDEN_ACTS:
            raise ValueError(f"BertConfig.hidden_act {self.hidden_act!r} is not supported; use one of {HIDDEN_ACTS}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
                raise ValueError(f"BertConfig.{name} must be a number, got {value!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"BertConfig.{name} must be in [0, 1), got {p!r}")
        if self.classifier_dropout is not None and not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"BertConfig.classifier_dropout must be in [0, 1) or null, got {self.classifier_dropout!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"BertConfig.layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"BertConfig.pad_token_id ({self.pad_token_id}) must be inside the vocabulary")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def encoder_parameters(self) -> int:
        """The number of parameters of the encoder's embeddings and layers (no pooler, no head): what a
        model.safetensors must hold at least, checked before a model is built from an untrusted config."""
        H, I = self.hidden_size, self.intermediate_size
        embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * H + 2 * H
        layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H  # attention, its LayerNorm, FFN, LayerNorm
        return embeddings + self.num_hidden_layers * layer

    # -- what a classifier's outputs mean (transformers' PretrainedConfig fields, kept in `extra`) --

    @property
    def problem_type(self) -> str | None:
        """transformers' problem_type: "regression", "single_label_classification", ... or None."""
        return self.extra.get("problem_type")

    def label_names(self, num_labels: int) -> list[str]:
        """The names of a classifier's `num_labels` outputs, in id order: config.json's
        `id2label` when it names exactly ids 0..num_labels-1, else transformers' defaults
        LABEL_0, LABEL_1, ..."""
        id2label = self.extra.get("id2label")
        if isinstance(id2label, dict) and sorted(map(str, id2label)) == sorted(map(str, range(num_labels))):
            return [str(id2label.get(str(i), id2label.get(i))) for i in range(num_labels)]
        return [f"LABEL_{i}" for i in range(num_labels)]

    def set_labels(self, names: Sequence[str] | None) -> None:
        """Name a classifier's outputs: id2label {i: names[i]} and label2id, as transformers
        writes them; None: a regression (one output, problem_type "regression", LABEL_0).

        Raises ValueError for fewer than two names or a name given twice.
        """
        if names is None:
            self.extra.update(problem_type="regression", id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
            return
        names = [str(n) for n in names]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"a classifier's label names must be two or more distinct strings, got {names}")
        self.extra.pop("problem_type", None)  # a classification: transformers infers it from the labels' dtype
        self.extra["id2label"] = {str(i): name for i, name in enumerate(names)}
        self.extra["label2id"] = {name: i for i, name in enumerate(names)}

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BertConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> "BertConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        if d.get("model_type", "bert") != "bert":
            raise ValueError(f"model_type is {d['model_type']!r}; minibert reads BERT configs (model_type 'bert')")
        extra = {k: v for k, v in d.items() if k not in names and k != "model_type"}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {"model_type": "bert", **self.extra, **d}

    @classmethod
    def from_json_file(cls, path) -> "BertConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        d = read_json_object(path, ValueError)  # checkpoint.load_config names it a CheckpointError
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def to_json_file(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
