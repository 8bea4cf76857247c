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
from .config import PRESETS, BertConfig
from .model import BertForPreTraining, BertForSequenceClassification
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
    if model not in PRESETS:
        from .checkpoint import resolve_model_path

        folder = Path(resolve_model_path(model))
        if (folder / "vocab.txt").is_file():
            return BertTokenizer.from_pretrained(folder)
    return BertTokenizer(default_vocab())


def build_model(cls, model: str, tok: BertTokenizer, seed: int, **kw):
    """A preset name → a randomly initialised model; else a folder or teacher name → loaded."""
    if model in PRESETS:
        cfg = BertConfig.from_preset(model, vocab_size=len(tok))
        return cls(cfg, seed=seed, **kw)
    from .checkpoint import resolve_model_path

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
    train = D.read_glue(task.name, folder / "train.tsv")
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
        from .backend import to_numpy

        logits[idx] = to_numpy(out.logits)
    model.train(was_training)
    return logits


def cmd_finetune(a) -> None:
    tok = load_tokenizer(a.model, a.vocab)
    task, train, dev = classification_data(a, tok)
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
    from .checkpoint import resolve_model_path

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
    from .backend import to_numpy

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
    model.train()
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
                   help="continue from the latest checkpoint in --output-dir (auto) or from a checkpoint folder")
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
    p.add_argument("--max-length", type=int, default=64, help="maximum tokens per example, [CLS] and [SEP] included (default: 64)")
    p.add_argument("--max-train-examples", type=int, default=0, help="use only the first N training examples (0: all)")
    p.add_argument("--max-eval-examples", type=int, default=0, help="use only the first N dev examples (0: all)")


def add_model_flags(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--model", default=default,
                   help=f"a preset for a fresh random model ({', '.join(sorted(PRESETS))}), a Hugging Face "
                        f"folder (config.json + model.safetensors), or minilm-l6 (the teacher package) (default: {default})")
    p.add_argument("--vocab", default=None, help="vocab.txt to use (default: the model folder's, else bert-base-uncased)")


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
    p.add_argument("--corpus", nargs="+", default=None, help="corpus files or folders (default: WikiText-2 + the Gutenberg books)")
    p.add_argument("--max-seq-length", type=int, default=128, help="tokens per instance (default: 128)")
    p.add_argument("--masked-lm-prob", type=float, default=0.15, help="fraction of tokens to predict (default: 0.15)")
    p.add_argument("--max-predictions-per-seq", type=int, default=20, help="cap on predicted tokens per instance (default: 20)")
    p.add_argument("--whole-word-mask", action="store_true", help="mask all pieces of a word together")
    p.add_argument("--dupe-factor", type=int, default=2, help="passes over the corpus with different masks (default: 2)")
    p.add_argument("--heldout-fraction", type=float, default=0.05, help="documents held out for evaluation (default: 0.05)")
    add_train_flags(p, output_dir="runs/pretrain", lr=1e-3, batch_size=32, max_steps=1000, eval_steps=200,
                    save_steps=200, warmup_ratio=0.05)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("finetune", help="fine-tune a BERT on a GLUE task")
    add_model_flags(p, "minilm-l6")
    add_task_flags(p)
    add_train_flags(p, output_dir="runs/finetune", lr=5e-5, batch_size=32, epochs=1.0, eval_steps=500, save_steps=200)
    p.set_defaults(func=cmd_finetune)

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
        parser.print_help()
        return
    try:
        a.func(a)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc


if __name__ == "__main__":
    main()
