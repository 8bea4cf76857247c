"""Model specs: what the strings of --model, --teacher and --student name, and the models they build.

    "tiny", "tinybert-3", ...   a preset: a fresh, randomly initialised model (config.PRESETS)
    "3x256", "4x312x12"         a shape, layers x hidden [x heads]: a fresh, randomly initialised model
    "minilm-l6"                 a bundled teacher (checkpoint.TEACHERS), loaded
    "runs/teacher"              a Hugging Face folder (config.json + model.safetensors), loaded
    "teacher:0,2,4"             a student made of those layers of a teacher (DistilBERT-style)

with the tokenizer that goes with them, and what a classifier's outputs are called (its
labels, read from and written to config.json). Which layers to copy, and why the student
also takes the teacher's classifier, is discussed in `distillation.py`; reading and writing
checkpoint folders is `checkpoint.py`'s (via `Model.from_pretrained`). Nothing here trains.
"""
from __future__ import annotations

import re

from .messages import say
from .errors import CheckpointError, DataError, UsageError
from . import data as D
from .checkpoint import TEACHERS, load_config, resolve_model_path
from .config import PRESETS, SHAPE_HELP, BertConfig
from .model import BertForSequenceClassification, BertModel
from .tokenizer import BertTokenizer

DEFAULT_TEACHER = "minilm-l6"  # what "teacher:<layers>" copies from in finetune
SHAPE = re.compile(r"([0-9]+)x([0-9]+)(?:x([0-9]+))?")  # LxH or LxHxA: layers x hidden size [x heads]
HEAD_SIZE = 64  # BERT's per-head width: a shape without heads gets hidden/64 of them (the nearest that divides)


def default_heads(hidden: int) -> int:
    """The divisor of `hidden` whose head width is nearest BERT's 64 (768 -> 12, 256 -> 4, 312 -> 6, 48 -> 1)."""
    divisors = [a for a in range(1, hidden + 1) if hidden % a == 0]
    return min(divisors, key=lambda a: (abs(hidden / a - HEAD_SIZE), a))


def shape_config(spec: str) -> dict | None:
    """'3x256' -> {num_hidden_layers: 3, hidden_size: 256, num_attention_heads: 4, intermediate_size: 1024};
    None when `spec` is not a shape. The feed-forward width is 4 x hidden, as every BERT's."""
    match = SHAPE.fullmatch(spec)
    if match is None:
        return None
    layers, hidden = int(match[1]), int(match[2])
    heads = int(match[3]) if match[3] else default_heads(hidden)
    if layers < 1 or hidden < 1 or heads < 1 or hidden % heads:
        raise UsageError(f"model shape {spec!r}: layers, hidden size and heads must be positive and the heads must "
                         f"divide the hidden size ({hidden} is not a multiple of {heads}); {SHAPE_HELP}")
    return dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads, intermediate_size=4 * hidden)


def is_random_spec(spec: str) -> bool:
    """True for a spec that builds a fresh, randomly initialised model: a preset or a shape."""
    return spec in PRESETS or SHAPE.fullmatch(spec) is not None


def random_config(spec: str, vocab_size: int) -> BertConfig:
    """The BertConfig of a preset or a shape (is_random_spec), with the tokenizer's vocabulary size."""
    if spec in PRESETS:
        return BertConfig.from_preset(spec, vocab_size=vocab_size)
    return BertConfig(**shape_config(spec), vocab_size=vocab_size)


def known_specs() -> str:
    """What a --model or --student may be, for an error message."""
    return (f"a preset ({', '.join(sorted(PRESETS))}), a shape {SHAPE_HELP}, a bundled model "
            f"({', '.join(sorted(TEACHERS))}), teacher:<layers> such as teacher:0,5, or a folder holding "
            f"config.json and model.safetensors")


def note_random(spec: str, what: str = "model") -> None:
    """Say on the terminal that `spec` is a fresh random model: a preset name such as bert-base is easily
    read as pre-trained weights. A shape (3x256) says so itself."""
    if spec in PRESETS:
        cfg = PRESETS[spec]
        say(f"note: {what} {spec!r} is a randomly initialised {cfg['num_hidden_layers']} x {cfg['hidden_size']} "
            f"BERT (a preset's shape, no pre-trained weights); give a folder or minilm-l6 for pre-trained ones")


def resolve_spec_path(spec: str):
    """resolve_model_path for a --model or --student, its error listing every kind of spec they may be."""
    try:
        return resolve_model_path(spec)
    except CheckpointError as exc:
        if "neither a folder nor a known model name" in str(exc):
            raise CheckpointError(f"{spec!r} is neither a folder nor a known model name; expected {known_specs()}") \
                from None
        raise


def tokenizer_for(model: str, vocab: str | None = None) -> BertTokenizer:
    """vocab wins; else the model folder's vocab.txt; else BERT's uncased vocabulary (found under the data roots)."""
    if vocab:
        return BertTokenizer(vocab)
    if model.startswith("teacher:"):
        model = DEFAULT_TEACHER
    if not is_random_spec(model):
        folder = resolve_spec_path(model)
        if (folder / "vocab.txt").is_file():
            return BertTokenizer.from_pretrained(folder)
    return BertTokenizer(D.default_vocab())


def build_model(cls, model: str, tokenizer: BertTokenizer, seed: int, **kw):
    """A preset name or a shape -> a randomly initialised `cls` (said on the terminal); else a folder or
    teacher name -> loaded."""
    if is_random_spec(model):
        note_random(model)
        return cls(random_config(model, len(tokenizer)), seed=seed, **kw)
    return cls.from_pretrained(resolve_spec_path(model), **kw)


def parse_student_spec(spec: str) -> tuple[str, object]:
    """'teacher:0,2,4' -> ("teacher", [0, 2, 4]); a preset or a shape (3x256) -> ("preset", spec); else
    ("folder", path)."""
    if spec.startswith("teacher:"):
        try:
            return "teacher", [int(x) for x in spec[len("teacher:"):].split(",")]
        except ValueError:
            raise DataError(f"--student {spec!r}: expected teacher:<comma-separated layer numbers>") from None
    if is_random_spec(spec):
        shape_config(spec)  # a bad shape (3x100x7) stops here
        return "preset", spec
    return "folder", spec


def student_from_teacher_layers(teacher: BertModel, layers: list[int], seed: int = 0) -> BertModel:
    """A BertModel with the teacher's embeddings, pooler and the chosen layers (0-based), in that order."""
    tcfg = teacher.config
    if not layers or any(not 0 <= i < tcfg.num_hidden_layers for i in layers):
        raise DataError(f"teacher layers must be in [0, {tcfg.num_hidden_layers}), got {layers}")
    cfg = BertConfig.from_dict({**tcfg.to_dict(), "num_hidden_layers": len(layers)})
    student = BertModel(cfg, seed=seed)
    src = teacher.named_parameters()
    for name, p in student.named_parameters().items():
        if name.startswith("encoder.layer."):  # student layer i <- teacher layer layers[i]
            i, rest = name[len("encoder.layer."):].split(".", 1)
            name = f"encoder.layer.{layers[int(i)]}.{rest}"
        p[...] = src[name]
    return student


def student_encoder(spec: str, teacher: BertModel, tokenizer: BertTokenizer, seed: int) -> BertModel:
    """General distillation's student (an encoder, no head): a preset, teacher layers or a folder."""
    kind, value = parse_student_spec(spec)
    if kind == "preset":
        note_random(value, "student")
        return BertModel(random_config(value, len(tokenizer)), seed=seed)
    if kind == "teacher":
        return student_from_teacher_layers(teacher, value, seed=seed)
    return BertModel.from_pretrained(resolve_spec_path(value))


def load_teacher(folder_or_name: str, num_labels: int | None = None) -> BertForSequenceClassification:
    """A fine-tuned teacher, in eval mode so that its distillation targets are deterministic.

    num_labels None: as many outputs as the folder's config.json names (see model_labels)."""
    teacher = BertForSequenceClassification.from_pretrained(resolve_model_path(folder_or_name), num_labels=num_labels)
    return teacher.eval()


def is_classifier_folder(model: str) -> bool:
    """True when --model names a folder holding a trained sequence classifier (config.json's
    architectures), whose classes a run must then follow; False for presets, teacher:<layers>
    and pre-trained encoders such as minilm-l6."""
    if is_random_spec(model) or model.startswith("teacher:"):
        return False
    config = load_config(resolve_spec_path(model))
    return "BertForSequenceClassification" in config.extra.get("architectures", ())


def model_labels(model: BertForSequenceClassification, source: str) -> D.ModelLabels:
    """What a loaded classifier says about its outputs, for data.match_labels: its class names
    in id order (config.json's id2label), or None for a regression (one output, as transformers
    reads num_labels = 1)."""
    if model.num_labels == 1 or model.config.problem_type == "regression":
        return D.ModelLabels(None, source)
    return D.ModelLabels(tuple(model.config.label_names(model.num_labels)), source)


def label_classifier(model: BertForSequenceClassification, task: D.TaskSpec) -> BertForSequenceClassification:
    """Name the model's outputs after the task's classes (config.json's id2label/label2id, or
    problem_type "regression"), so every later command and transformers' pipeline know them."""
    if model.num_labels != task.num_labels:
        raise DataError(f"the model has {model.num_labels} outputs but task {task.name!r} has {task.num_labels}")
    model.config.set_labels(task.id2label)
    return model


def copy_classifier(teacher: BertForSequenceClassification, student: BertForSequenceClassification) -> None:
    """Overwrite the student's classifier with the teacher's (the same hidden width)."""
    params, source = student.named_parameters(), teacher.named_parameters()
    for name in ("classifier.weight", "classifier.bias"):
        params[name][...] = source[name]


def build_student(spec: str, num_labels: int, tokenizer: BertTokenizer, seed: int,
                  teacher: BertForSequenceClassification | None = None,
                  copy_teacher_classifier: bool = True) -> BertForSequenceClassification:
    """A task student: teacher:0,2,4 (copied teacher layers), a preset (random), or a folder (e.g. stage 1's).

    With copied layers, or a stage-1 folder of the teacher's width, the student also starts from
    the teacher's classifier (copy_teacher_classifier), which reads the same pooled space;
    finetune's pre-trained MiniLM source has no trained classifier to copy.
    """
    kind, value = parse_student_spec(spec)
    if kind == "folder":
        student = BertForSequenceClassification.from_pretrained(resolve_spec_path(value), num_labels=num_labels,
                                                                seed=seed)
        # A stage-1 student of the teacher's width has no classifier yet; its top layer was distilled
        # towards the teacher's, so the teacher's classifier is a better start than a random one.
        new_head = "classifier.weight" in getattr(student, "load_report", {}).get("missing", ())
        same_width = teacher is not None and student.config.hidden_size == teacher.config.hidden_size
        if copy_teacher_classifier and new_head and same_width:
            copy_classifier(teacher, student)
            say("the student's new classifier starts as a copy of the teacher's")
        return student
    if kind == "preset":
        note_random(value, "student")
        return BertForSequenceClassification(random_config(value, len(tokenizer)), num_labels, seed=seed)
    if teacher is None:
        raise DataError(f"--student {spec}: copying teacher layers needs a teacher")
    encoder = student_from_teacher_layers(teacher.bert, value, seed=seed)
    student = BertForSequenceClassification(encoder.config, num_labels, seed=seed)
    params = student.named_parameters()
    for name, p in encoder.named_parameters().items():
        params["bert." + name][...] = p
    if copy_teacher_classifier:
        copy_classifier(teacher, student)
    return student
