"""Model specs: what the strings of --model, --teacher and --student name, and the models they build.

    "tiny", "tinybert-3", ...   a preset: a fresh, randomly initialised model (config.PRESETS)
    "minilm-l6"                 a bundled teacher (checkpoint.TEACHERS), loaded
    "runs/teacher"              a Hugging Face folder (config.json + model.safetensors), loaded
    "teacher:0,2,4"             a student made of those layers of a teacher (DistilBERT-style)

with the tokenizer that goes with them, and what a classifier's outputs are called (its
labels, read from and written to config.json). Which layers to copy, and why the student
also takes the teacher's classifier, is discussed in `distillation.py`; reading and writing
checkpoint folders is `checkpoint.py`'s (via `Model.from_pretrained`). Nothing here trains.
"""
from __future__ import annotations


from .messages import say
from .errors import DataError
from . import data as D
from .checkpoint import load_config, resolve_model_path
from .config import PRESETS, BertConfig
from .model import BertForSequenceClassification, BertModel
from .tokenizer import BertTokenizer

DEFAULT_TEACHER = "minilm-l6"  # what "teacher:<layers>" copies from in finetune


def tokenizer_for(model: str, vocab: str | None = None) -> BertTokenizer:
    """vocab wins; else the model folder's vocab.txt; else BERT's uncased vocabulary (found under the data roots)."""
    if vocab:
        return BertTokenizer(vocab)
    if model.startswith("teacher:"):
        model = DEFAULT_TEACHER
    if model not in PRESETS:
        folder = resolve_model_path(model)
        if (folder / "vocab.txt").is_file():
            return BertTokenizer.from_pretrained(folder)
    return BertTokenizer(D.default_vocab())


def build_model(cls, model: str, tokenizer: BertTokenizer, seed: int, **kw):
    """A preset name -> a randomly initialised `cls`; else a folder or teacher name -> loaded."""
    if model in PRESETS:
        return cls(BertConfig.from_preset(model, vocab_size=len(tokenizer)), seed=seed, **kw)
    return cls.from_pretrained(resolve_model_path(model), **kw)


def parse_student_spec(spec: str) -> tuple[str, object]:
    """'teacher:0,2,4' -> ("teacher", [0, 2, 4]); a preset -> ("preset", name); else ("folder", path)."""
    if spec.startswith("teacher:"):
        try:
            return "teacher", [int(x) for x in spec[len("teacher:"):].split(",")]
        except ValueError:
            raise DataError(f"--student {spec!r}: expected teacher:<comma-separated layer numbers>") from None
    if spec in PRESETS:
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
        return BertModel(BertConfig.from_preset(value, vocab_size=len(tokenizer)), seed=seed)
    if kind == "teacher":
        return student_from_teacher_layers(teacher, value, seed=seed)
    return BertModel.from_pretrained(resolve_model_path(value))


def load_teacher(folder_or_name: str, num_labels: int | None = None) -> BertForSequenceClassification:
    """A fine-tuned teacher, in eval mode so that its distillation targets are deterministic.

    num_labels None: as many outputs as the folder's config.json names (see model_labels)."""
    teacher = BertForSequenceClassification.from_pretrained(resolve_model_path(folder_or_name), num_labels=num_labels)
    return teacher.eval()


def is_classifier_folder(model: str) -> bool:
    """True when --model names a folder holding a trained sequence classifier (config.json's
    architectures), whose classes a run must then follow; False for presets, teacher:<layers>
    and pre-trained encoders such as minilm-l6."""
    if model in PRESETS or model.startswith("teacher:"):
        return False
    config = load_config(resolve_model_path(model))
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
        student = BertForSequenceClassification.from_pretrained(resolve_model_path(value), num_labels=num_labels,
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
        return BertForSequenceClassification(BertConfig.from_preset(value, vocab_size=len(tokenizer)), num_labels,
                                             seed=seed)
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
