"""Fine-tuning and evaluating a sequence classifier on a GLUE task, as library calls.

    summary = finetune(ModelSettings("minilm-l6"), TaskDataSettings("sst-2"), TrainArgs(output_dir="runs/t"))
    metrics = evaluate_folder(ModelSettings("runs/t"), TaskDataSettings("sst-2"))

`finetune` is `python -m minibert.train finetune`: the model named by the spec (see specs.py),
the task's data (data.load_task_data), the training loop (trainer.py) with dev evaluation and
the best model kept, and results.json. `train_classifier` is the loop alone, for a model and data
already in hand (the pipeline fine-tunes its teacher with it). This module does not distil (that
is `tinybert.py`) and does not parse flags (`train.py`).
"""
from __future__ import annotations

import time
from dataclasses import replace

from . import data as D
from .checkpoint import resolve_model_path
from .evaluation import evaluate
from .model import BertForSequenceClassification
from .report import write_results
from .settings import ModelSettings, RunOptions, TaskDataSettings
from .specs import DEFAULT_TEACHER, build_model, build_student, load_tokenizer
from .trainer import Trainer, TrainArgs, TrainState


def load_task(settings: TaskDataSettings, tokenizer) -> tuple[D.TaskSpec, D.EncodedExamples, D.EncodedExamples]:
    """The task's spec and its encoded train and dev sets, as the settings ask."""
    return D.load_task_data(settings.task, tokenizer, data_dir=settings.data, train_file=settings.train_file,
                            max_length=settings.max_length, max_train_examples=settings.max_train_examples,
                            max_eval_examples=settings.max_eval_examples)


def classification_step(model):
    """step_fn for the trainer: forward with labels, backward of scale * cross-entropy."""

    def step_fn(batch, scale):
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"])
        model.backward(dloss=scale)
        return {"loss": out.loss}

    return step_fn


def train_classifier(model, task: str, train: D.EncodedExamples, dev: D.EncodedExamples | None, tokenizer,
                     args: TrainArgs, *, resume: str | None = None, device: str = "numpy") -> TrainState:
    """Fine-tune `model` on `train`; evaluate on `dev` (None: no evaluation); save to args.output_dir."""
    eval_fn = None if dev is None else (lambda: evaluate(model, task, dev))
    batcher = D.Batcher(train, args.batch_size, seed=args.seed)
    save_fn = lambda folder: model.save_pretrained(folder, tokenizer=tokenizer)
    trainer = Trainer(args, {"": model}, batcher, classification_step(model), eval_fn, save_fn, device=device)
    return trainer.train(resume=resume)


def finetune(model: ModelSettings, data: TaskDataSettings, args: TrainArgs, run: RunOptions = RunOptions()) -> dict:
    """Fine-tune the model `model.model` names on the task; write results.json; return its content.

    The best dev checkpoint is kept (args.metric_for_best defaults to the task's main metric).
    """
    tok = load_tokenizer(model.model, model.vocab)
    spec, train, dev = load_task(data, tok)
    if model.model.startswith("teacher:"):  # layers copied from the pre-trained MiniLM (a DistilBERT-style baseline)
        source = BertForSequenceClassification.from_pretrained(resolve_model_path(DEFAULT_TEACHER),
                                                               num_labels=spec.num_labels)
        # the pre-trained source has no trained classifier to copy
        net = build_student(model.model, spec.num_labels, tok, args.seed, source, copy_teacher_classifier=False)
    else:
        net = build_model(BertForSequenceClassification, model.model, tok, args.seed, num_labels=spec.num_labels)
    if run.device != "numpy":
        net.to(run.device)
    if not args.metric_for_best:
        args = replace(args, metric_for_best=spec.main_metric)
    t0 = time.perf_counter()
    state = train_classifier(net, spec.name, train, dev, tok, args, resume=run.resume, device=run.device)
    summary = {"task": spec.name, "model": model.model, "steps": state.step,
               "wall_s": round(time.perf_counter() - t0, 1),
               "final": state.history[-1] if state.history else {}, "best": state.best_metric}
    write_results(args.output_dir, summary)
    return summary


def evaluate_folder(model: ModelSettings, data: TaskDataSettings) -> dict:
    """The dev metrics of a fine-tuned classifier folder: {"task", "model", "examples", <metrics>}."""
    tok = load_tokenizer(model.model, model.vocab)
    spec, _, dev = load_task(data, tok)
    net = BertForSequenceClassification.from_pretrained(resolve_model_path(model.model), num_labels=spec.num_labels)
    return {"task": spec.name, "model": model.model, "examples": len(dev), **evaluate(net, spec.name, dev)}
