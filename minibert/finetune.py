"""Fine-tuning and evaluating a sequence classifier on a task (a GLUE task or your own files), as library calls.

    summary = finetune(ModelSettings("minilm-l6"), TaskDataSettings("sst-2"), TrainArgs(output_dir="runs/t"))
    metrics = evaluate_folder(ModelSettings("runs/t"), TaskDataSettings("sst-2"))
    finetune(ModelSettings("minilm-l6"), TaskDataSettings(train_file="my/train.csv", dev_file="my/dev.csv"), ...)

`finetune` is `python -m minibert.train finetune`: the model named by the spec (see specs.py),
the task's data (data.load_task_sets), the training loop (trainer.py) with dev evaluation and
the best model kept, and results.json. The model's config.json names its classes (id2label,
from the task's labels), and a run that starts from a fine-tuned folder (`finetune --model
FOLDER`, `evaluate`) takes the class ids and their number from that folder: data whose labels
the folder does not have is an error naming both. `train_classifier` is the loop alone, for a
model and data already in hand (the pipeline fine-tunes its teacher with it). This module does
not distil (that is `distillation.py`) and does not parse flags (`train.py`).
"""
from __future__ import annotations

import time
from dataclasses import replace

from . import data as D
from .checkpoint import resolve_model_path
from .evaluation import evaluate
from .model import BertForSequenceClassification
from .report import write_results
from .settings import ModelSettings, RunOptions, TaskDataSettings, TrainArgs, result_settings
from .specs import (DEFAULT_TEACHER, build_model, build_student, is_classifier_folder, label_classifier,
                    tokenizer_for, model_labels)
from .trainer import Trainer, TrainState


def load_task_data(settings: TaskDataSettings, tokenizer, model: D.ModelLabels | None = None,
                   splits: tuple[str, ...] = ("train", "dev"),
                   ) -> tuple[D.TaskSpec, D.EncodedExamples | None, dict[str, D.EncodedExamples]]:
    """The task's spec, its encoded training set and dev sets ({metric suffix: set}), as the
    settings ask; `model`: a trained model's labels, which the class ids then follow."""
    columns = D.Columns(settings.text_column, settings.text_pair_column, settings.label_column)
    spec, train, dev = D.load_task_sets(settings.task, tokenizer, data_dir=settings.data,
                                        train_file=settings.train_file, dev_file=settings.dev_file, columns=columns,
                                        task_type=settings.task_type, model=model, splits=splits,
                                        max_length=settings.max_length, max_train_examples=settings.max_train_examples,
                                        max_eval_examples=settings.max_eval_examples)
    for what, encoded in (("training examples", train), *((f"dev{suffix} examples", d) for suffix, d in dev.items())):
        if encoded is not None:
            D.note_truncation(encoded, what)  # "note: truncated 37 of 4000 training examples to 64 tokens (...)"
    return spec, train, dev


def load_task(settings: TaskDataSettings, tokenizer) -> tuple[D.TaskSpec, D.EncodedExamples, D.EncodedExamples]:
    """The task's spec and its encoded train and (main) dev sets, as the settings ask."""
    spec, train, dev = load_task_data(settings, tokenizer)
    return spec, train, dev[""]


def classification_step(model):
    """step_fn for the trainer: forward with labels, backward of scale * cross-entropy."""

    def step_fn(batch, scale):
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"])
        model.backward(dloss=scale)
        return {"loss": out.loss}

    return step_fn


def train_classifier(model, task: str | D.TaskSpec, train: D.EncodedExamples, dev, tokenizer, args: TrainArgs, *,
                     resume: str | None = None, device: str = "numpy", settings: dict | None = None) -> TrainState:
    """Fine-tune `model` on `train`; evaluate on `dev` (an EncodedExamples, a dict of them by
    metric suffix, or None: no evaluation); save to args.output_dir. settings: the run's other
    result settings, compared on resume (settings.result_settings)."""
    D.check_fits(train, model)  # --max-length against the model's position embeddings, before anything runs
    eval_fn = None if dev is None else (lambda: evaluate(model, task, dev))
    batcher = D.Batcher(train, args.batch_size, seed=args.seed)
    save_fn = lambda folder: model.save_pretrained(folder, tokenizer=tokenizer)
    trainer = Trainer(args, {"": model}, batcher, classification_step(model), eval_fn, save_fn, device=device,
                      settings=settings)
    return trainer.train(resume=resume)


def finetune(model: ModelSettings, data: TaskDataSettings, args: TrainArgs, run: RunOptions = RunOptions()) -> dict:
    """Fine-tune the model `model.model` names on the task; write results.json; return its content.

    The best dev checkpoint is kept (args.metric_for_best defaults to the task's main metric);
    every dev set is evaluated (MNLI: matched, and mismatched as "<metric>_mm").
    """
    tok = tokenizer_for(model.model, model.vocab)
    if is_classifier_folder(model.model):  # a fine-tuned classifier goes on learning its own classes
        net = BertForSequenceClassification.from_pretrained(resolve_model_path(model.model))
        spec, train, dev = load_task_data(data, tok, model=model_labels(net, model.model))
    else:
        spec, train, dev = load_task_data(data, tok)
        if model.model.startswith("teacher:"):  # layers of the pre-trained MiniLM (a DistilBERT-style baseline)
            source = BertForSequenceClassification.from_pretrained(resolve_model_path(DEFAULT_TEACHER),
                                                                   num_labels=spec.num_labels)
            # the pre-trained source has no trained classifier to copy
            net = build_student(model.model, spec.num_labels, tok, args.seed, source, copy_teacher_classifier=False)
        else:
            net = build_model(BertForSequenceClassification, model.model, tok, args.seed, num_labels=spec.num_labels)
    label_classifier(net, spec)
    if run.device != "numpy":
        net.to(run.device)
    if not args.metric_for_best:
        args = replace(args, metric_for_best=spec.main_metric)
    t0 = time.perf_counter()
    state = train_classifier(net, spec, train, dev, tok, args, resume=run.resume, device=run.device,
                             settings=result_settings(model))
    summary = {"task": spec.name, "model": model.model, "steps": state.step,
               "wall_s": round(time.perf_counter() - t0, 1),
               "final": state.history[-1] if state.history else {}, "best": state.best_metric}
    write_results(args.output_dir, summary, (model, data, args, run))  # with the model cards
    return summary


def evaluate_folder(model: ModelSettings, data: TaskDataSettings) -> dict:
    """The dev metrics of a fine-tuned classifier folder: {"task", "model", "examples", <metrics>}.

    The number of classes and their ids come from the folder's config.json; dev labels it
    does not have are an error naming both. Every dev set is scored (MNLI: "acc" and
    "acc_mm", "examples" and "examples_mm").
    """
    tok = tokenizer_for(model.model, model.vocab)
    net = BertForSequenceClassification.from_pretrained(resolve_model_path(model.model))
    spec, _, dev = load_task_data(data, tok, model=model_labels(net, model.model), splits=("dev",))
    sizes = {f"examples{suffix}": len(examples) for suffix, examples in dev.items()}
    return {"task": spec.name, "model": model.model, **sizes, **evaluate(net, spec, dev)}
