"""`python -m minibert.train`: the command line.

    python -m minibert.train                      # the quick TinyBERT pipeline on SST-2
    python -m minibert.train vocab --files data/gutenberg --vocab-size 8000 --output-dir runs/vocab
    python -m minibert.train pretrain --model tiny --max-steps 2000 --output-dir runs/pretrain
    python -m minibert.train finetune --task sst-2 --model minilm-l6 --output-dir runs/teacher
    python -m minibert.train evaluate --task sst-2 --model runs/teacher
    python -m minibert.train <command> --help     # every flag, explained

Every flag can also come from a JSON or TOML file (`--config run.toml`, keys spelled like
the flags with underscores); flags given on the command line win over the file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from . import data as D
from .backend import to_numpy
from .checkpoint import resolve_model_path
from .config import PRESETS, BertConfig
from . import tinybert as T
from .distill import Distiller
from .model import BertForPreTraining, BertForSequenceClassification, BertModel
from .tokenizer import BertTokenizer, save_vocab, train_wordpiece_vocab
from .trainer import Trainer, TrainArgs

# Where a task's files live under a data root (the layout of data/ and of ../shared/data).
TASK_DIRS = {"sst-2": "SST-2", "cola": "CoLA", "mrpc": "MRPC"}
CORPUS_DIRS = ("wikitext-2-raw", "gutenberg")


# =========================================================================== data lookup


def data_roots() -> list[Path]:
    """Candidate data roots: $MINIBERT_DATA, ./data (the prepare scripts), ../shared/data."""
    roots = []
    if os.environ.get("MINIBERT_DATA"):
        roots.append(Path(os.environ["MINIBERT_DATA"]))
    roots += [Path("data"), Path(__file__).resolve().parent.parent / "data", Path("../shared/data")]
    return roots


def find_data(sub: str, flag: str) -> Path:
    """The first data root that has `sub`, or an error that says how to get the data."""
    for root in data_roots():
        if (root / sub).exists():
            return root / sub
    raise SystemExit(
        f"error: cannot find '{sub}' under {', '.join(str(r) for r in data_roots())}.\n"
        f"Point {flag} at it, set MINIBERT_DATA to the folder that holds it, or fetch it with the "
        f"scripts in data/ (e.g. `python data/prepare_glue.py`, or `--from <folder>` to copy a local copy).")


def default_vocab() -> Path:
    return find_data("bert-base-uncased/vocab.txt", "--vocab")


# ======================================================================== model lookup


def load_tokenizer(model: str, vocab: str | None) -> BertTokenizer:
    """--vocab wins; else the model folder's vocab.txt; else BERT's uncased vocabulary."""
    if vocab:
        return BertTokenizer(vocab)
    if model.startswith("teacher:"):
        model = "minilm-l6"
    if model not in PRESETS:
        folder = Path(resolve_model_path(model))
        if (folder / "vocab.txt").is_file():
            return BertTokenizer.from_pretrained(folder)
    return BertTokenizer(default_vocab())


def build_model(cls, model: str, tok: BertTokenizer, seed: int, **kw):
    """A preset name → a randomly initialised model; else a folder or teacher name → loaded."""
    if model in PRESETS:
        cfg = BertConfig.from_preset(model, vocab_size=len(tok))
        return cls(cfg, seed=seed, **kw)
    return cls.from_pretrained(resolve_model_path(model), **kw)


# ============================================================================ commands


def cmd_vocab(a) -> None:
    files = [str(p) for p in (a.files or [find_data("gutenberg", "--files")])]
    tokens = train_wordpiece_vocab(files, a.vocab_size, min_frequency=a.min_frequency, do_lower_case=not a.cased)
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_vocab(tokens, out / "vocab.txt")
    print(f"wrote {len(tokens)} tokens to {out / 'vocab.txt'}")


def classification_data(a, tok):
    task = D.get_task(a.task)
    folder = Path(a.data) if a.data else find_data(TASK_DIRS[task.name], "--data")
    train = D.read_glue(task.name, Path(a.train_file) if getattr(a, "train_file", None) else folder / "train.tsv")
    dev = D.read_glue(task.name, folder / "dev.tsv")
    if a.max_train_examples:
        train = train[: a.max_train_examples]
    if a.max_eval_examples:
        dev = dev[: a.max_eval_examples]
    return task, D.encode_examples(train, tok, a.max_length), D.encode_examples(dev, tok, a.max_length)


def predict(model, encoded, batch_size: int = 64):
    """Logits (N, C) for every example, in order, in eval mode."""
    was_training = model.training
    model.eval()
    logits = np.zeros((len(encoded), model.num_labels), dtype=np.float32)
    for idx in D.make_epoch_batches(encoded.lengths, batch_size, shuffle=False, bucket=False):
        b = encoded.collate(idx)
        out = model(b["input_ids"], b["token_type_ids"], b["attention_mask"])
        logits[idx] = to_numpy(out.logits)
    model.train(was_training)
    return logits


def cmd_finetune(a) -> None:
    tok = load_tokenizer(a.model, a.vocab)
    task, train, dev = classification_data(a, tok)
    if a.model.startswith("teacher:"):  # layers copied from the pre-trained MiniLM (a DistilBERT-style baseline)
        source = BertForSequenceClassification.from_pretrained(resolve_model_path("minilm-l6"), num_labels=task.num_labels)
        model = build_student(a.model, task.num_labels, tok, a.seed, source, copy_classifier=False)
    else:
        model = build_model(BertForSequenceClassification, a.model, tok, a.seed, num_labels=task.num_labels)
    if a.device != "numpy":
        model.to(a.device)
    args = train_args(a, metric_for_best=task.main_metric)

    def step_fn(batch, scale):
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"])
        model.backward(dloss=scale)
        return {"loss": out.loss}

    def eval_fn():
        return D.compute_metrics(task.name, predict(model, dev), dev.labels)

    def save_fn(folder):
        model.save_pretrained(folder, tokenizer=tok)

    batcher = D.Batcher(train, args.batch_size, seed=args.seed)
    t0 = time.perf_counter()
    state = Trainer(args, {"": model}, batcher, step_fn, eval_fn, save_fn, device=a.device).train(resume=a.resume)
    final = state.history[-1] if state.history else {}
    summary = {"task": task.name, "model": a.model, "steps": state.step, "wall_s": round(time.perf_counter() - t0, 1),
               "final": final, "best": state.best_metric}
    (Path(args.output_dir) / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def cmd_evaluate(a) -> None:
    tok = load_tokenizer(a.model, a.vocab)
    task, _, dev = classification_data(a, tok)
    model = BertForSequenceClassification.from_pretrained(resolve_model_path(a.model), num_labels=task.num_labels)
    metrics = D.compute_metrics(task.name, predict(model, dev), dev.labels)
    print(json.dumps({"task": task.name, "model": a.model, "examples": len(dev), **metrics}, indent=2))


def pretraining_data(a, tok):
    """Documents from the corpus files, split into train and held-out documents."""
    paths = a.corpus or [find_data(d, "--corpus") for d in CORPUS_DIRS]
    docs = D.read_corpus(paths)
    if len(docs) < 4:
        raise SystemExit(f"error: the corpus has {len(docs)} documents; pre-training needs at least 4")
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(len(docs))
    n_held = max(2, int(round(a.heldout_fraction * len(docs))))
    held = [docs[i] for i in order[:n_held]]
    train = [docs[i] for i in order[n_held:]]
    kw = dict(max_seq_length=a.max_seq_length, masked_lm_prob=a.masked_lm_prob,
              max_predictions_per_seq=a.max_predictions_per_seq, whole_word_mask=a.whole_word_mask)
    train_data = D.create_pretraining_examples(train, tok, dupe_factor=a.dupe_factor, rng=a.seed, **kw)
    held_data = D.create_pretraining_examples(held, tok, dupe_factor=1, rng=a.seed + 1, **kw)
    return train_data, held_data


def evaluate_pretraining(model, held, batch_size: int = 64, max_batches: int = 20) -> dict:
    """Held-out masked-LM accuracy and loss, and NSP accuracy."""
    was_training = model.training
    model.eval()
    correct = total = nsp_correct = nsp_total = 0
    loss_sum = 0.0
    for i, idx in enumerate(D.make_epoch_batches(len(held), batch_size, shuffle=False)):
        if i >= max_batches:
            break
        b = held.collate(idx)
        out = model(b["input_ids"], b["token_type_ids"], b["attention_mask"], labels=b["labels"],
                    next_sentence_label=b["next_sentence_label"], only_labelled=True)
        labels = b["labels"].reshape(-1)[to_numpy(out.mlm_positions)]
        pred = to_numpy(out.logits).argmax(-1)
        n = len(labels)
        correct += int((pred == labels).sum())
        total += n
        loss_sum += float(out.mlm_loss) * n
        nsp_correct += int((to_numpy(out.seq_relationship_logits).argmax(-1) == b["next_sentence_label"]).sum())
        nsp_total += len(idx)
    model.train(was_training)
    return {"mlm_acc": correct / max(total, 1), "mlm_loss": loss_sum / max(total, 1), "nsp_acc": nsp_correct / max(nsp_total, 1)}


def cmd_pretrain(a) -> None:
    tok = load_tokenizer(a.model, a.vocab)
    print("building pre-training instances ...", file=sys.stderr)
    train, held = pretraining_data(a, tok)
    print(f"{len(train)} training and {len(held)} held-out instances of length {a.max_seq_length}", file=sys.stderr)
    model = build_model(BertForPreTraining, a.model, tok, a.seed)
    if a.device != "numpy":
        model.to(a.device)
    args = train_args(a)

    def step_fn(batch, scale):
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"],
                    next_sentence_label=batch["next_sentence_label"], only_labelled=True)
        model.backward(dloss=scale)
        return {"loss": out.loss, "mlm_loss": out.mlm_loss, "nsp_loss": out.nsp_loss}

    def save_fn(folder):
        model.save_pretrained(folder, tokenizer=tok)

    batcher = D.Batcher(train, args.batch_size, seed=args.seed)
    state = Trainer(args, {"": model}, batcher, step_fn, lambda: evaluate_pretraining(model, held), save_fn,
                    device=a.device).train(resume=a.resume)
    summary = {"model": a.model, "params": model.num_parameters(), "steps": state.step, "history": state.history}
    (Path(args.output_dir) / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["history"][-1], indent=2))


def load_teacher(folder_or_name: str, num_labels: int) -> BertForSequenceClassification:
    """A fine-tuned teacher, frozen and in eval mode (deterministic distillation targets)."""
    teacher = BertForSequenceClassification.from_pretrained(resolve_model_path(folder_or_name), num_labels=num_labels)
    return teacher.eval()


def build_student(spec: str, num_labels: int, tok, seed: int, teacher=None,
                  copy_classifier: bool = True) -> BertForSequenceClassification:
    """--student: teacher:0,2,4 (copy teacher layers), a preset (random), or a folder (e.g. stage 1's).

    With copied layers, or a stage-1 folder of the teacher's width, the student also starts from the teacher's
    classifier (copy_classifier), which reads the same pooled space; finetune's pre-trained MiniLM source has no
    trained classifier to copy."""
    kind, value = T.parse_student_spec(spec)
    if kind == "folder":
        student = BertForSequenceClassification.from_pretrained(resolve_model_path(value), num_labels=num_labels,
                                                                seed=seed)
        # A stage-1 student of the teacher's width has no classifier yet; its top layer was distilled
        # towards the teacher's, so the teacher's classifier is a better start than a random one.
        new_head = "classifier.weight" in getattr(student, "load_report", {}).get("missing", ())
        if copy_classifier and new_head and teacher is not None and student.config.hidden_size == teacher.config.hidden_size:
            _copy_classifier(teacher, student)
            print("the student's new classifier starts as a copy of the teacher's", file=sys.stderr)
        return student
    if kind == "preset":
        return BertForSequenceClassification(BertConfig.from_preset(value, vocab_size=len(tok)), num_labels, seed=seed)
    encoder = T.student_from_teacher_layers(teacher.bert, value, seed=seed)
    student = BertForSequenceClassification(encoder.config, num_labels, seed=seed)
    params = student.named_parameters()
    for name, p in encoder.named_parameters().items():
        params["bert." + name][...] = p
    if copy_classifier:
        _copy_classifier(teacher, student)
    return student


def _copy_classifier(teacher, student) -> None:
    params, source = student.named_parameters(), teacher.named_parameters()
    for name in ("classifier.weight", "classifier.bias"):
        params[name][...] = source[name]


def cmd_distill_general(a) -> None:
    """Stage 1: the pre-trained teacher's encoder -> a student encoder (random or copied layers) on the general corpus."""
    teacher = BertModel.from_pretrained(resolve_model_path(a.teacher)).eval()
    tok = load_tokenizer(a.teacher, a.vocab)
    kind, value = T.parse_student_spec(a.student)
    if kind == "preset":
        student = BertModel(BertConfig.from_preset(value, vocab_size=len(tok)), seed=a.seed)
    elif kind == "teacher":
        student = T.student_from_teacher_layers(teacher, value, seed=a.seed)
    else:
        student = BertModel.from_pretrained(resolve_model_path(value))
    distiller = Distiller(student.config, teacher.config, strategy=a.mapping, seed=a.seed)
    print("building the general corpus ...", file=sys.stderr)
    # plain text: one "masked" token per sequence, which general_batches then puts back
    a.masked_lm_prob, a.max_predictions_per_seq, a.whole_word_mask = 0.0, 1, False
    train, held = pretraining_data(a, tok)
    train, held = T.general_batches(train), T.general_batches(held)
    print(f"{len(train)} training sequences of length {a.max_seq_length}; student {student.num_parameters():,} "
          f"parameters, teacher layers {distiller.mapping}", file=sys.stderr)
    args = train_args(a)

    def eval_fn():  # held-out distillation losses (no metric exists before task data)
        sums = {}
        for i, idx in enumerate(D.make_epoch_batches(len(held), args.batch_size, shuffle=False)[:10]):
            b = held.collate(idx)
            student.eval()
            s_out = student(b["input_ids"], b["token_type_ids"], b["attention_mask"])
            t_out = teacher(b["input_ids"], b["token_type_ids"], b["attention_mask"])
            losses = distiller(s_out, t_out, stage="general")
            student.train()
            for k in ("att", "rep", "total"):
                sums[k] = sums.get(k, 0.0) + float(losses[k])
        return {f"heldout_{k}": v / (i + 1) for k, v in sums.items()}

    Trainer(args, {"": student, "distill.": distiller.fit_dense}, D.Batcher(train, args.batch_size, seed=args.seed),
            T.distill_step(student, teacher, distiller, "general"), eval_fn,
            lambda folder: T.save_student(folder, student, distiller, tok), device=a.device).train(resume=a.resume)


def task_distillation(a, tok, teacher, student, train, dev, out: Path) -> dict:
    """Stage 2: intermediate layers (2a) then the prediction layer (2b, best dev kept)."""
    task = D.get_task(a.task)
    distiller = Distiller(student.config, teacher.config, strategy=a.mapping, temperature=a.temperature, seed=a.seed)
    init = a.student if T.parse_student_spec(a.student)[0] == "folder" else None
    if init and T.load_fit_dense(distiller, init):
        print(f"fit_dense continues from {init}", file=sys.stderr)
    save = lambda folder: T.save_student(folder, student, distiller, tok)
    modules = {"": student, "distill.": distiller.fit_dense}
    common = dict(batch_size=a.batch_size, seed=a.seed, progress=a.progress, log_steps=a.log_steps,
                  save_steps=a.save_steps, optimizer=a.optimizer, clip=a.clip, weight_decay=a.weight_decay)
    if a.inter_epochs > 0 or a.inter_steps > 0:
        args = TrainArgs(output_dir=str(out / "intermediate"), epochs=a.inter_epochs or 1.0, max_steps=a.inter_steps,
                         lr=a.inter_lr, schedule="constant", warmup_ratio=0.0, **common)
        Trainer(args, modules, D.Batcher(train, args.batch_size, seed=args.seed),
                T.distill_step(student, teacher, distiller, "intermediate"), None, save).train(resume=a.resume)
    args = TrainArgs(output_dir=str(out / "prediction"), epochs=a.pred_epochs or 1.0, max_steps=a.pred_steps,
                     lr=a.pred_lr, schedule="linear", warmup_ratio=0.1, eval_steps=a.eval_steps,
                     metric_for_best=task.main_metric, **common)
    trainer = Trainer(args, modules, D.Batcher(train, args.batch_size, seed=args.seed + 1),
                      T.distill_step(student, teacher, distiller, "prediction"),
                      lambda: D.compute_metrics(task.name, predict(student, dev), dev.labels), save)
    state = trainer.train(resume=a.resume)
    # the best dev checkpoint is the student we hand over
    best = BertForSequenceClassification.from_pretrained(out / "prediction" / "best", num_labels=task.num_labels)
    save_dir = out / "student"
    best.save_pretrained(save_dir, tokenizer=tok)
    return {"best_dev": state.best_metric, "history": state.history, "folder": str(save_dir), "model": best}


def cmd_distill_task(a) -> None:
    tok = load_tokenizer(a.teacher, a.vocab)
    task = D.get_task(a.task)
    teacher = load_teacher(a.teacher, task.num_labels)
    _, train, dev = classification_data(a, tok)
    student = build_student(a.student, task.num_labels, tok, a.seed, teacher)
    out = Path(a.output_dir)
    res = task_distillation(a, tok, teacher, student, train, dev, out)
    results = {"task": task.name, "teacher": T.describe(teacher, task.name, dev, predict),
               "student": T.describe(res.pop("model"), task.name, dev, predict), **res}
    T.write_results(out, results)
    print(T.results_table(results))


def cmd_pipeline(a) -> None:
    """Teacher fine-tuning (unless --teacher is given) -> student -> task distillation -> table."""
    out = Path(a.output_dir)
    task = D.get_task(a.task)
    t0 = time.perf_counter()
    if a.teacher:
        tok = load_tokenizer(a.teacher, a.vocab)
        teacher = load_teacher(a.teacher, task.num_labels)
        _, train, dev = classification_data(a, tok)
    else:
        tok = load_tokenizer("minilm-l6", a.vocab)
        _, train, dev = classification_data(a, tok)
        teacher = BertForSequenceClassification.from_pretrained(resolve_model_path("minilm-l6"), num_labels=task.num_labels)
        print(f"== fine-tuning the MiniLM-L6 teacher on {len(train)} {task.name} examples", file=sys.stderr)
        args = TrainArgs(output_dir=str(out / "teacher"), epochs=a.teacher_epochs, batch_size=a.batch_size,
                         lr=a.teacher_lr, seed=a.seed, progress=a.progress, log_steps=a.log_steps)

        def step_fn(batch, scale):
            o = teacher(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"])
            teacher.backward(dloss=scale)
            return {"loss": o.loss}

        Trainer(args, {"": teacher}, D.Batcher(train, a.batch_size, seed=a.seed), step_fn, None,
                lambda folder: teacher.save_pretrained(folder, tokenizer=tok)).train()
        teacher.eval()
    student = build_student(a.student, task.num_labels, tok, a.seed, teacher)
    print(f"== distilling into a student of {student.num_parameters():,} parameters ({a.student})", file=sys.stderr)
    res = task_distillation(a, tok, teacher, student, train, dev, out)
    results = {"task": task.name, "teacher": T.describe(teacher, task.name, dev, predict),
               "student": T.describe(res.pop("model"), task.name, dev, predict),
               "student_folder": res["folder"], "best_dev": res["best_dev"],
               "wall_s": round(time.perf_counter() - t0, 1)}
    t, s = results["teacher"], results["student"]
    results["retained"] = s["score"] / t["score"]  # of the task's main metric
    results["speedup_b1"] = t["latency_ms"] / s["latency_ms"]
    results["speedup_b32"] = t["latency_ms_b32"] / s["latency_ms_b32"]
    T.write_results(out, results)
    print(T.results_table(results))
    print(f"student keeps {100 * results['retained']:.1f}% of the teacher's dev {t['main_metric']} at "
          f"{results['speedup_b1']:.1f}x (batch 1) / {results['speedup_b32']:.1f}x (batch 32) its speed; "
          f"results in {out / 'results.json'}")


def cmd_augment(a) -> None:
    """TinyBERT data augmentation of a GLUE training file (an MLM head is trained first if needed)."""
    from .augment import Augmenter, GloveNeighbours, MLMCandidates, augment_tsv
    from .model import BertForMaskedLM

    tok = load_tokenizer(a.teacher, a.vocab)
    if a.candidates == "glove":
        mlm = None
    elif a.mlm:
        mlm = BertForMaskedLM.from_pretrained(resolve_model_path(a.mlm))
    else:
        head_dir = Path(a.output_dir) / "mlm-head"
        print(f"== training a masked-LM head on the frozen {a.teacher} encoder ({a.mlm_steps} steps) -> {head_dir}",
              file=sys.stderr)
        mlm = BertForMaskedLM.from_pretrained(resolve_model_path(a.teacher), seed=a.seed)
        a.masked_lm_prob, a.max_predictions_per_seq, a.whole_word_mask = 0.15, 20, False  # BERT's MLM data
        train, held = pretraining_data(a, tok)
        args = TrainArgs(output_dir=str(head_dir), max_steps=a.mlm_steps, batch_size=32, lr=1e-3, warmup_ratio=0.05,
                         weight_decay=0.0, seed=a.seed, progress=a.progress, log_steps=10)
        Trainer(args, {"cls.predictions.": mlm.lm_head}, D.Batcher(train, 32, seed=a.seed), T.mlm_head_step(mlm),
                lambda: evaluate_mlm(mlm, held), lambda folder: mlm.save_pretrained(folder, tokenizer=tok)).train()
    task = D.get_task(a.task)
    src = Path(a.data) if a.data else find_data(TASK_DIRS[task.name], "--data")
    out = Path(a.output_dir) / "train_aug.tsv"
    candidates = None if mlm is None else MLMCandidates(mlm, tok, k=a.k)
    augmenter = Augmenter(candidates, GloveNeighbours(), k=a.k, p=a.p, n_aug=a.n_aug, seed=a.seed)
    rows = augment_tsv(task, src / "train.tsv", out, augmenter, max_examples=a.max_train_examples or None,
                       progress=a.progress)
    print(f"wrote {rows} rows to {out}")
    for sentence in ["it 's a charming and often affecting journey .", "the plot is nothing but boilerplate clichés ."]:
        for variant in augmenter.augment(sentence)[:4]:
            print("   ", variant)


def evaluate_mlm(model, held, batches: int = 10) -> dict:
    """Held-out masked-word accuracy of a BertForMaskedLM (the model is left in eval mode: a frozen encoder)."""
    model.eval()
    correct = total = 0
    for idx in D.make_epoch_batches(len(held), 32, shuffle=False)[:batches]:
        b = held.collate(idx)
        out = model(b["input_ids"], b["token_type_ids"], b["attention_mask"], labels=b["labels"], only_labelled=True)
        labels = b["labels"].reshape(-1)[to_numpy(out.mlm_positions)]
        correct += int((to_numpy(out.logits).argmax(-1) == labels).sum())
        total += len(labels)
    return {"mlm_acc": correct / max(total, 1)}


# ========================================================================== arguments

TRAIN_FLAG_HELP = {
    "output_dir": "folder for the final model (Hugging Face layout), checkpoint-<step>/ folders, metrics.jsonl and results.json",
    "max_steps": "optimizer steps to run; 0 means use --epochs",
    "epochs": "passes over the training data (fractions allowed) when --max-steps is 0",
    "batch_size": "examples per micro-batch",
    "grad_accum": "micro-batches per optimizer step (the effective batch is batch_size x grad_accum)",
    "lr": "peak learning rate",
    "weight_decay": "decoupled weight decay (never applied to biases and LayerNorm weights)",
    "warmup_ratio": "fraction of the steps spent warming the learning rate up from 0",
    "schedule": "learning-rate schedule: linear (warmup then linear decay to 0), constant, constant_with_warmup",
    "optimizer": "adamw (bias-corrected, as torch) or bertadam (BERT/TinyBERT reference: no bias correction)",
    "max_grad_norm": "clip gradients to this norm; 0 disables clipping",
    "clip": "global (one norm over all gradients, as BERT) or per_tensor (each tensor alone, as TinyBERT's BertAdam)",
    "seed": "seed for initialisation, data order and dropout",
    "log_steps": "log to the progress bar and metrics.jsonl every this many steps",
    "eval_steps": "evaluate every this many steps (0: only at the end)",
    "save_steps": "write checkpoint-<step>/ every this many steps (0: only at the end)",
    "save_total_limit": "how many checkpoint folders to keep",
    "metric_for_best": "evaluation metric whose best value is kept in output_dir/best",
    "progress": "show a progress bar",
}


def add_train_flags(p: argparse.ArgumentParser, **defaults) -> None:
    g = p.add_argument_group("training")
    for f in fields(TrainArgs):
        default = defaults.get(f.name, f.default)
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            g.add_argument(flag, type=_bool, default=None, metavar="BOOL", help=f"{TRAIN_FLAG_HELP[f.name]} (default: {default})")
        else:
            typ = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            g.add_argument(flag, type=typ, default=None, help=f"{TRAIN_FLAG_HELP[f.name]} (default: {default})")
    # Flags default to None so a --config file can fill them; these are the real defaults.
    p.set_defaults(_train_defaults={f.name: defaults.get(f.name, f.default) for f in fields(TrainArgs)})
    g.add_argument("--resume", default=None, metavar="auto|FOLDER",
                   help="continue from the latest checkpoint in --output-dir (auto; a fresh start if there is none) "
                        "or from a checkpoint folder")
    g.add_argument("--device", default="numpy", choices=["numpy", "cupy"], help="numpy (CPU) or cupy (CUDA GPU)")


def train_args(a, **extra) -> TrainArgs:
    values = {f.name: getattr(a, f.name) for f in fields(TrainArgs)}
    values.update({k: v for k, v in extra.items() if not values.get(k)})  # the command's choice unless set
    return TrainArgs(**{k: v for k, v in values.items() if v is not None})


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def add_task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="sst-2", choices=sorted(TASK_DIRS), help="GLUE task (default: sst-2)")
    p.add_argument("--data", default=None, help="folder with the task's train.tsv and dev.tsv "
                   "(default: <data root>/SST-2 etc., data roots: $MINIBERT_DATA, ./data, ../shared/data)")
    p.add_argument("--train-file", default=None, help="training TSV in the task's format, e.g. augment's train_aug.tsv "
                   "(default: <data>/train.tsv)")
    p.add_argument("--max-length", type=int, default=64, help="maximum tokens per example, [CLS] and [SEP] included (default: 64)")
    p.add_argument("--max-train-examples", type=int, default=0, help="use only the first N training examples (0: all)")
    p.add_argument("--max-eval-examples", type=int, default=0, help="use only the first N dev examples (0: all)")


def add_model_flags(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--model", default=default,
                   help=f"a preset for a fresh random model ({', '.join(sorted(PRESETS))}), a Hugging Face "
                        f"folder (config.json + model.safetensors), minilm-l6 (the teacher package), or teacher:0,2,4 "
                        f"(those MiniLM layers, finetune only) (default: {default})")
    p.add_argument("--vocab", default=None, help="vocab.txt to use (default: the model folder's, else bert-base-uncased)")


def add_corpus_flags(p: argparse.ArgumentParser, dupe_factor: int) -> None:
    """The general corpus: files, sequence length, passes, held-out documents."""
    p.add_argument("--corpus", nargs="+", default=None, help="corpus files or folders (default: WikiText-2 + the Gutenberg books)")
    p.add_argument("--max-seq-length", type=int, default=128, help="tokens per sequence (default: 128)")
    p.add_argument("--dupe-factor", type=int, default=dupe_factor,
                   help=f"passes over the corpus with different pairings and masks (default: {dupe_factor})")
    p.add_argument("--heldout-fraction", type=float, default=0.05, help="documents held out for evaluation (default: 0.05)")


def add_distill_task_flags(p: argparse.ArgumentParser, teacher_required: bool) -> None:
    p.add_argument("--teacher", default="runs/teacher-sst2" if teacher_required else None,
                   help="folder of the teacher fine-tuned on the task" + (" (default: runs/teacher-sst2)" if teacher_required
                        else "; without it the MiniLM-L6 teacher is fine-tuned first on the training examples"))
    p.add_argument("--student", default="teacher:0,2,4",
                   help="teacher:0,2,4 (copy teacher layers), a preset (random init), or a folder such as "
                        "distill-general's output (default: teacher:0,2,4)")
    p.add_argument("--vocab", default=None, help="vocab.txt (default: the teacher's)")
    p.add_argument("--mapping", default="uniform", choices=["uniform", "top", "bottom"], help="layer mapping (default: uniform)")
    p.add_argument("--temperature", type=float, default=1.0, help="prediction-layer temperature (default: 1)")
    p.add_argument("--inter-steps", type=int, default=0, help="intermediate-layer steps (0: use --inter-epochs)")
    p.add_argument("--inter-epochs", type=float, default=0.0, help="intermediate-layer epochs; 0 with --inter-steps 0 skips the stage")
    p.add_argument("--inter-lr", type=float, default=5e-5, help="intermediate-layer learning rate, constant (default: 5e-5)")
    p.add_argument("--pred-steps", type=int, default=0, help="prediction-layer steps (0: use --pred-epochs)")
    p.add_argument("--pred-epochs", type=float, default=1.0, help="prediction-layer epochs (default: 1)")
    p.add_argument("--pred-lr", type=float, default=3e-5, help="prediction-layer peak learning rate (default: 3e-5)")
    p.add_argument("--teacher-epochs", type=float, default=1.0, help="pipeline without --teacher: fine-tuning epochs (default: 1)")
    p.add_argument("--teacher-lr", type=float, default=5e-5, help="pipeline without --teacher: fine-tuning rate (default: 5e-5)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step (default: 32)")
    p.add_argument("--eval-steps", type=int, default=100, help="evaluate the student every N prediction steps (default: 100)")
    p.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: at the end of each stage)")
    p.add_argument("--log-steps", type=int, default=10, help="log every N steps (default: 10)")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "bertadam"], help="(default: adamw)")
    p.add_argument("--clip", default="global", choices=["global", "per_tensor"], help="gradient clipping (default: global)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="(default: 0.01)")
    p.add_argument("--seed", type=int, default=42, help="(default: 42)")
    p.add_argument("--output-dir", default="runs/distill" if teacher_required else "runs/pipeline", help="where everything is written")
    p.add_argument("--resume", default=None,
                   help="auto: continue each stage from its latest checkpoint (a stage without one starts fresh)")
    p.add_argument("--progress", type=_bool, default=True, help="progress bars (default: true)")


# The quick pipeline `python -m minibert.train` runs with no arguments: minutes on 2 cores.
QUICK_PIPELINE = ["pipeline", "--max-train-examples", "4000", "--inter-steps", "150", "--pred-steps", "150",
                  "--eval-steps", "50", "--output-dir", "runs/quick"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minibert.train",
        description="Train, fine-tune, evaluate and distil BERT models written in NumPy. "
                    "With no command, runs the quick TinyBERT pipeline on SST-2.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", default=None, help="JSON or TOML file of flag values (flags given here win)")
    sub = parser.add_subparsers(dest="command", metavar="command")

    p = sub.add_parser("vocab", help="learn a WordPiece vocabulary from text files")
    p.add_argument("--files", nargs="+", default=None, help="text files or folders (default: the Gutenberg books)")
    p.add_argument("--vocab-size", type=int, default=8000, help="vocabulary size, special tokens included (default: 8000)")
    p.add_argument("--min-frequency", type=int, default=2, help="ignore words seen fewer times (default: 2)")
    p.add_argument("--cased", action="store_true", help="keep case and accents (default: lower-case and strip accents)")
    p.add_argument("--output-dir", default="runs/vocab", help="where vocab.txt is written (default: runs/vocab)")
    p.set_defaults(func=cmd_vocab)

    p = sub.add_parser("pretrain", help="pre-train a BERT with masked-LM + next-sentence prediction")
    add_model_flags(p, "tiny")
    add_corpus_flags(p, dupe_factor=2)
    p.add_argument("--masked-lm-prob", type=float, default=0.15, help="fraction of tokens to predict (default: 0.15)")
    p.add_argument("--max-predictions-per-seq", type=int, default=20, help="cap on predicted tokens per instance (default: 20)")
    p.add_argument("--whole-word-mask", action="store_true", help="mask all pieces of a word together")
    add_train_flags(p, output_dir="runs/pretrain", lr=1e-3, batch_size=32, max_steps=1000, eval_steps=200,
                    save_steps=200, warmup_ratio=0.05)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("finetune", help="fine-tune a BERT on a GLUE task")
    add_model_flags(p, "minilm-l6")
    add_task_flags(p)
    add_train_flags(p, output_dir="runs/finetune", lr=5e-5, batch_size=32, epochs=1.0, eval_steps=500, save_steps=200)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("distill-general", help="TinyBERT stage 1: distil the pre-trained teacher into a student (random, or copied teacher layers) on the general corpus")
    p.add_argument("--teacher", default="minilm-l6", help="pre-trained teacher: minilm-l6 or a folder (default: minilm-l6)")
    p.add_argument("--student", default="tinybert-3", help="a preset (random init), teacher:0,2,4 (copied layers) or a folder (default: tinybert-3)")
    p.add_argument("--vocab", default=None, help="vocab.txt (default: the teacher's)")
    p.add_argument("--mapping", default="uniform", choices=["uniform", "top", "bottom"], help="layer mapping (default: uniform)")
    add_corpus_flags(p, dupe_factor=1)
    add_train_flags(p, output_dir="runs/general", lr=1e-4, batch_size=32, max_steps=2000, eval_steps=500,
                    save_steps=250, warmup_ratio=0.05)
    p.set_defaults(func=cmd_distill_general)

    p = sub.add_parser("augment", help="TinyBERT data augmentation of a task's train.tsv (masked-LM + GloVe candidates)")
    p.add_argument("--task", default="sst-2", choices=sorted(TASK_DIRS), help="GLUE task (default: sst-2)")
    p.add_argument("--data", default=None, help="folder with the task's train.tsv (default: found under the data roots)")
    p.add_argument("--teacher", default="minilm-l6", help="encoder whose MLM head proposes words (default: minilm-l6)")
    p.add_argument("--vocab", default=None, help="vocab.txt (default: the teacher's)")
    p.add_argument("--candidates", choices=["tinybert", "glove"], default="tinybert",
                   help="tinybert: masked-LM candidates for single-piece words, GloVe for the others; glove: GloVe "
                        "neighbours for every word, no masked LM (much faster, not the paper's) (default: tinybert)")
    p.add_argument("--mlm", default=None, help="a BertForMaskedLM folder to use as is (default: train a head, see --mlm-steps)")
    p.add_argument("--mlm-steps", type=int, default=300, help="steps of MLM-head training on the general corpus (default: 300)")
    add_corpus_flags(p, dupe_factor=1)
    p.add_argument("--n-aug", type=int, default=20, help="augmented copies per sentence, N_a (default: 20)")
    p.add_argument("--p", type=float, default=0.4, help="replacement probability per word (default: 0.4)")
    p.add_argument("--k", type=int, default=15, help="candidates per word, K (default: 15)")
    p.add_argument("--max-train-examples", type=int, default=0, help="augment only the first N rows (0: all)")
    p.add_argument("--seed", type=int, default=42, help="(default: 42)")
    p.add_argument("--output-dir", default="runs/augment", help="train_aug.tsv (and mlm-head/) go here (default: runs/augment)")
    p.add_argument("--progress", type=_bool, default=True, help="progress bars (default: true)")
    p.set_defaults(func=cmd_augment)

    for name, func, helptext in (
            ("distill-task", cmd_distill_task, "TinyBERT stage 2: intermediate-layer then prediction-layer distillation on a task"),
            ("pipeline", cmd_pipeline, "teacher fine-tuning (unless --teacher) + task distillation + the teacher/student table")):
        p = sub.add_parser(name, help=helptext)
        add_task_flags(p)
        add_distill_task_flags(p, teacher_required=(name == "distill-task"))
        p.set_defaults(func=func)

    p = sub.add_parser("evaluate", help="evaluate a fine-tuned model on a GLUE dev set")
    add_model_flags(p, "runs/finetune")
    add_task_flags(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def read_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: --config {path}: no such file")
    try:
        if p.suffix == ".toml":
            import tomllib

            return tomllib.loads(p.read_text(encoding="utf-8"))
        return json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: --config {path}: {exc}") from exc


def parse_args(argv=None, parser=None) -> argparse.Namespace:
    parser = parser or build_parser()
    a = parser.parse_args(argv)
    if a.config:
        conf = read_config_file(a.config)
        known = vars(a)
        for key, value in conf.items():
            key = key.replace("-", "_")
            if key not in known:
                raise SystemExit(f"error: --config {a.config}: unknown setting {key!r} for '{a.command}'")
            explicit = f"--{key.replace('_', '-')}" in (argv if argv is not None else sys.argv)
            if not explicit:
                setattr(a, key, value)
    for key, value in getattr(a, "_train_defaults", {}).items():
        if getattr(a, key, None) is None:
            setattr(a, key, value)
    return a


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    a = parse_args(argv, parser)
    if a.command is None:
        print("no command given: running the quick TinyBERT pipeline on SST-2 "
              f"(python -m minibert.train {' '.join(QUICK_PIPELINE)}); see --help for the rest", file=sys.stderr)
        a = parse_args(QUICK_PIPELINE, parser)
    try:
        a.func(a)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc


if __name__ == "__main__":
    main()
