"""The TinyBERT recipe as training runs: general distillation, task distillation, the pipeline.

    stage 1  general distillation   teacher encoder -> student encoder on a general corpus,
                                    L_att + L_hid + L_emb (no labels, no heads)
    stage 2a intermediate layers    fine-tuned teacher -> student on (augmented) task data,
                                    L_att + L_hid + L_emb, constant learning rate
    stage 2b prediction layer       the same pair, L_pred only, warmup + linear decay,
                                    evaluated on dev, the best checkpoint kept

The losses live in `distill.py`; the loop in `trainer.py`. Decisions (the reference code's
choice in brackets):
- The teacher runs in eval mode, so its targets are deterministic [dropout left on].
  Distillation targets that change from step to step only add noise to a regression loss.
- AdamW with bias correction and global-norm clipping [BertAdam, per-tensor clipping]: the
  same optimiser everywhere in minibert, and the first steps of a constant-LR stage (2a)
  are not inflated by the missing bias correction. `--optimizer bertadam --clip per_tensor`
  reproduces the reference.
- The student may also start from chosen teacher layers ("teacher:0,2,4"), DistilBERT-style,
  instead of (or before) general distillation. In distill-task/pipeline they are the
  *fine-tuned* teacher's layers, with its classifier: the student starts where the teacher's
  task knowledge is. Which layers matters: with a fine-tuned teacher the top one carries
  the task (`bench/student_sizes.py --probe` scores every subset before training), and the
  README's trade-off table is why 2 layers (teacher:0,5) is the >= 3x student.
  distill-general also takes "teacher:0,5": the *pre-trained* teacher's layers, distilled
  further on the general corpus (TinyBERT's "smart init" plus stage 1); distill-task then
  starts from that folder and copies the fine-tuned teacher's classifier onto it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from . import data as D
from .backend import to_numpy
from .config import PRESETS, BertConfig
from .distill import Distiller
from .model import BertModel

FIT_DENSE_FILE = "fit_dense.safetensors"


# ============================================================================== students


def student_from_teacher_layers(teacher: BertModel, layers: list[int], seed: int = 0) -> BertModel:
    """A BertModel with the teacher's embeddings, pooler and the chosen layers (0-based)."""
    tcfg = teacher.config
    if not layers or any(not 0 <= i < tcfg.num_hidden_layers for i in layers):
        raise ValueError(f"teacher layers must be in [0, {tcfg.num_hidden_layers}), got {layers}")
    cfg = BertConfig.from_dict({**tcfg.to_dict(), "num_hidden_layers": len(layers)})
    student = BertModel(cfg, seed=seed)
    src = teacher.named_parameters()
    for name, p in student.named_parameters().items():
        if name.startswith("encoder.layer."):
            i, rest = name[len("encoder.layer."):].split(".", 1)
            name = f"encoder.layer.{layers[int(i)]}.{rest}"
        p[...] = src[name]
    return student


def parse_student_spec(spec: str) -> tuple[str, object]:
    """'teacher:0,2,4' -> ("teacher", [0, 2, 4]); a preset -> ("preset", name); else ("folder", path)."""
    if spec.startswith("teacher:"):
        try:
            return "teacher", [int(x) for x in spec[len("teacher:"):].split(",")]
        except ValueError:
            raise ValueError(f"--student {spec!r}: expected teacher:<comma-separated layer numbers>") from None
    if spec in PRESETS:
        return "preset", spec
    return "folder", spec


def save_student(folder, student, distiller: Distiller | None, tokenizer) -> None:
    """The student in Hugging Face layout, plus fit_dense so a later stage can continue it."""
    student.save_pretrained(folder, tokenizer=tokenizer)
    if distiller is not None:
        arrays = {k: np.ascontiguousarray(to_numpy(v)) for k, v in distiller.fit_dense.named_parameters().items()}
        save_file(arrays, str(Path(folder) / FIT_DENSE_FILE))


def load_fit_dense(distiller: Distiller, folder) -> bool:
    """Restore fit_dense saved next to a student (general distillation's); False if absent."""
    path = Path(folder) / FIT_DENSE_FILE
    if not path.is_file():
        return False
    arrays = load_file(str(path))
    params = distiller.fit_dense.named_parameters()
    if set(arrays) != set(params) or any(arrays[k].shape != params[k].shape for k in params):
        return False  # a different student/teacher width: start the projection afresh
    for k, p in params.items():
        p[...] = arrays[k]
    return True


# ================================================================================ steps


def distill_step(student, teacher, distiller: Distiller, stage: str):
    """step_fn for the trainer: teacher forward (a constant), student forward, losses, backward."""

    logged = ("pred",) if stage == "prediction" else ("att", "rep")  # the stage's losses, no device sync

    def step_fn(batch, scale):
        ids, types, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
        t_out = teacher(ids, types, mask)
        s_out = student(ids, types, mask)
        losses = distiller(s_out, t_out, stage=stage)
        distiller.backward_into(student, scale)
        return {"loss": losses["total"], **{k: losses[k] for k in logged}}

    return step_fn


def general_batches(pre: D.PretrainingData) -> D.PretrainingData:
    """General distillation reads plain text: undo the one masked token per sequence."""
    ids = np.where(pre.mlm_labels != D.IGNORE_INDEX, pre.mlm_labels, pre.input_ids).astype(pre.input_ids.dtype)
    return D.PretrainingData(ids, pre.token_type_ids, pre.attention_mask,
                             np.full_like(pre.mlm_labels, D.IGNORE_INDEX), pre.next_sentence_label)


# ========================================================================= augmentation


def mlm_head_step(model):
    """step_fn training only the masked-LM head over a frozen encoder (eval mode, no dropout).

    The MiniLM teacher ships without an MLM head, and augmentation needs masked-word
    candidates. Training the head alone (transform, LayerNorm, output bias; the decoder is
    the frozen word embeddings) costs one encoder forward per batch and borrows everything
    the teacher knows about context; a student-sized BERT pre-trained here from scratch
    would propose mostly frequent words.
    """

    def step_fn(batch, scale):
        model.bert.eval()
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"],
                    only_labelled=True)
        model.backward(dloss=scale, head_only=True)
        return {"loss": out.loss}

    return step_fn


# ============================================================================ measuring


def measure_latency(model, batch_size: int, seq_len: int, repeats: int = 10, vocab: int = 1000, seed: int = 0) -> float:
    """Median forward time in milliseconds of a (batch_size, seq_len) batch in eval mode."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 1000 + vocab, size=(batch_size, seq_len)).astype(np.int32)
    was = model.training
    model.eval()
    model(ids)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(ids)
        times.append(time.perf_counter() - t0)
    model.train(was)
    return float(np.median(times) * 1000)


def encoder_params(model) -> int:
    """Parameters of the encoder without the embeddings and the head (the 'compute' size)."""
    return int(sum(p.size for n, p in model.named_parameters().items() if ".encoder." in f".{n}"))


def describe(model, task: str, dev, predict, repeats: int = 10) -> dict:
    """Accuracy (task metrics), parameters and latency at batch 1 and 32, sequence 64."""
    metrics = D.compute_metrics(task, predict(model, dev), dev.labels)
    main = D.get_task(task).main_metric  # acc for SST-2/MRPC, mcc for CoLA
    return {**metrics, "accuracy": metrics.get("acc"), "main_metric": main, "score": metrics[main],
            "params": model.num_parameters(),
            "encoder_params": encoder_params(model),
            "latency_ms": measure_latency(model, 1, 64, repeats), "latency_ms_b32": measure_latency(model, 32, 64, max(3, repeats // 3))}


def results_table(results: dict) -> str:
    """A small text table: one row per model in results (teacher first)."""
    rows = [("model", "params", "encoder", "dev metric", "latency b1 (ms)", "latency b32 (ms)")]
    for name, r in results.items():
        if not isinstance(r, dict) or "params" not in r:
            continue
        rows.append((name, f"{r['params']:,}", f"{r['encoder_params']:,}", f"{r['main_metric']} {100 * r['score']:.2f}",
                     f"{r['latency_ms']:.1f}", f"{r['latency_ms_b32']:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def write_results(folder, results: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
