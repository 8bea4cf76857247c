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
from pathlib import Path

from . import data as D
from .checkpoint import resolve_model_path
from .distributed import world
from .errors import DataError
from .evaluation import evaluate, predict_encoded
from .messages import say
from .model import BertForSequenceClassification
from .report import write_results
from .settings import ModelSettings, RunOptions, TaskDataSettings, TrainArgs, result_settings
from .specs import (DEFAULT_TEACHER, build_model, build_student, is_classifier_folder, label_classifier,
                    tokenizer_for, model_labels)
from .trainer import Trainer, TrainState

LAST = "last"  # <model folder>/last/: the model at the end of training, beside the best handed over


def load_task_data(settings: TaskDataSettings, tokenizer, model: D.ModelLabels | None = None,
                   splits: tuple[str, ...] = ("train", "dev"), seed: int = 0,
                   ) -> tuple[D.TaskSpec, D.EncodedExamples | None, dict[str, D.EncodedExamples]]:
    """The task's spec, its encoded training set and dev sets ({metric suffix: set}), as the
    settings ask; `model`: a trained model's labels, which the class ids then follow; seed: the
    validation split's (--validation-split). Says on the terminal what the task is and how its
    kind and classes were found, and for a regression what predicting the training mean scores."""
    columns = D.Columns(settings.text_column, settings.text_pair_column, settings.label_column)
    spec, train, dev = D.load_task_sets(settings.task, tokenizer, data_dir=settings.data,
                                        train_file=settings.train_file, dev_file=settings.dev_file, columns=columns,
                                        task_type=settings.task_type, model=model, splits=splits,
                                        max_length=settings.max_length, max_train_examples=settings.max_train_examples,
                                        max_eval_examples=settings.max_eval_examples,
                                        labels=tuple(settings.labels) if settings.labels else None,
                                        drop_unknown_dev_labels=settings.drop_unknown_dev_labels,
                                        validation_split=settings.validation_split, seed=seed,
                                        offline=settings.offline)
    sizes = ([f"{len(train):,} training"] if train is not None else []) + [
        f"{len(d):,} dev{suffix}" for suffix, d in dev.items()]
    say(f"{D.task_summary(spec)}; {', '.join(sizes)} examples")
    for what, encoded in (("training examples", train), *((f"dev{suffix} examples", d) for suffix, d in dev.items())):
        if encoded is not None:
            D.note_truncation(encoded, what)  # "note: truncated 37 of 4000 training examples to 64 tokens (...)"
    baseline = regression_baseline(spec, train, dev)
    if baseline:
        say(f"regression baseline: predicting the {baseline['of']} ({baseline['mean']:.4g}) for every dev example "
            f"scores MSE {baseline['mse']:.4f}, MAE {baseline['mae']:.4f}; a model must do better")
    return spec, train, dev


def regression_baseline(spec: D.TaskSpec, train: D.EncodedExamples | None, dev: dict) -> dict | None:
    """For a regression: what predicting the training labels' mean (the dev labels' own, when no training
    set was read) scores on the main dev set, {"of", "mean", "mse", "mae"}; None for a classification."""
    if not spec.is_regression or "" not in dev:
        return None
    source = train if train is not None else dev[""]
    return {"of": "training labels' mean" if train is not None else "dev labels' own mean",
            **D.mean_baseline(source.labels, dev[""].labels)}


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
    state = trainer.train(resume=resume)
    state.stopped_early = trainer.stopped_early  # for results.json: not a field, a checkpoint's history decides it
    return state


def finetune(model: ModelSettings, data: TaskDataSettings, args: TrainArgs, run: RunOptions = RunOptions()) -> dict:
    """Fine-tune the model `model.model` names on the task; write results.json; return its content.

    The best dev checkpoint is what the run hands over (args.metric_for_best defaults to the task's
    main metric): it is saved in args.output_dir itself, and the model at the end of training in
    <output_dir>/last/ (the convention of every command; the pipeline's is student/ and
    student/last/). Every dev set is evaluated (MNLI: matched, and mismatched as "<metric>_mm");
    results.json adds the per-class precision, recall, F1 and confusion matrix of a
    classification, and the predict-the-mean baseline of a regression.
    """
    tok = tokenizer_for(model.model, model.vocab)
    if is_classifier_folder(model.model) and not model.new_head:  # a fine-tuned classifier goes on learning its own
        net = BertForSequenceClassification.from_pretrained(resolve_model_path(model.model))  # classes
        spec, train, dev = load_task_data(data, tok, model=model_labels(net, model.model), seed=args.seed)
    else:
        spec, train, dev = load_task_data(data, tok, seed=args.seed)
        if model.new_head:
            if not is_classifier_folder(model.model):
                raise DataError(f"--new-head: {model.model} is not a trained classifier's folder (it has no classifier "
                                f"to replace); leave the flag out")
            net = reheaded_classifier(model.model, spec.num_labels, args.seed)
        elif model.model.startswith("teacher:"):  # layers of the pre-trained MiniLM (a DistilBERT-style baseline)
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
    out = Path(args.output_dir)
    summary = {"task": spec.name, "model": model.model, "steps": state.step,
               "wall_s": round(time.perf_counter() - t0, 1),
               "final": state.history[-1] if state.history else {}, "best": state.best_metric,
               "best_eval": max((h for h in state.history if args.metric_for_best in h), default=None,
                                key=lambda h: h[args.metric_for_best]),  # the first of the best, as the trainer keeps
               "stopped_early": state.stopped_early, "handed_over": "last"}
    if world().is_root:
        handed = hand_over_best(out, net, tok)
        summary["handed_over"] = handed
        if dev:
            chosen = BertForSequenceClassification.from_pretrained(out, num_labels=spec.num_labels)
            summary.update(class_report(chosen, spec, dev[""]))
        baseline = regression_baseline(spec, train, dev)
        if baseline:
            summary["baseline"] = baseline
    write_results(args.output_dir, summary, (model, data, args, run))  # with the model cards
    return summary


def hand_over_best(out: Path, net, tokenizer) -> str:
    """The folder convention: `out` holds the best dev checkpoint when the run kept one (out/best/), the
    model at the end of training goes to out/last/. Returns "best" or "last" (no evaluation: the last)."""
    net.save_pretrained(out / LAST, tokenizer=tokenizer)
    if not (out / "best" / "config.json").is_file():
        return "last"
    best = BertForSequenceClassification.from_pretrained(out / "best")
    best.save_pretrained(out, tokenizer=tokenizer)
    return "best"


def reheaded_classifier(folder: str, num_labels: int, seed: int) -> BertForSequenceClassification:
    """A trained classifier's encoder under a new, randomly initialised classifier of `num_labels` outputs
    (--new-head: transformers' ignore_mismatched_sizes, for other labels)."""
    old = BertForSequenceClassification.from_pretrained(resolve_model_path(folder))
    net = BertForSequenceClassification(old.config, num_labels, seed=seed)
    params = net.named_parameters()
    for name, p in old.named_parameters().items():
        if not name.startswith("classifier."):
            params[name][...] = p
    say(f"--new-head: {folder}'s encoder with a new {num_labels}-output classifier (its old {old.num_labels}-output "
        f"one is dropped)")
    return net


def class_report(model, spec: D.TaskSpec, dev: D.EncodedExamples) -> dict:
    """A classification's per-class precision, recall, F1 and confusion matrix on `dev` ({} for a regression)."""
    if spec.is_regression:
        return {}
    preds = predict_encoded(model, dev).argmax(-1)  # (N,)
    return D.per_class(preds, dev.labels, spec.id2label)


def evaluate_folder(model: ModelSettings, data: TaskDataSettings) -> dict:
    """The dev metrics of a fine-tuned classifier folder: {"task", "model", "examples", <metrics>}, with the
    per-class precision, recall, F1 and confusion matrix of a classification, and the predict-the-mean
    baseline of a regression (the training labels' mean when a training file is at hand).

    The number of classes and their ids come from the folder's config.json; dev labels it
    does not have are an error naming both (or left out, --drop-unknown-dev-labels). Every dev
    set is scored (MNLI: "acc" and "acc_mm", "examples" and "examples_mm").
    """
    tok = tokenizer_for(model.model, model.vocab)
    net = BertForSequenceClassification.from_pretrained(resolve_model_path(model.model))
    labels = model_labels(net, model.model)
    # a regression's baseline is the training labels' mean: read the training file when there is one
    regression_with_train = labels.names is None and (data.train_file or (data.task and not data.dev_file))
    spec, train, dev = load_task_data(data, tok, model=labels,
                                      splits=("train", "dev") if regression_with_train else ("dev",))
    sizes = {f"examples{suffix}": len(examples) for suffix, examples in dev.items()}
    out = {"task": spec.name, "model": model.model, **sizes, **evaluate(net, spec, dev), **class_report(net, spec, dev[""])}
    baseline = regression_baseline(spec, train, dev)
    if baseline:
        out["baseline"] = baseline
    return out
