"""Evaluation: a model's predictions and scores on held-out data, in eval mode (no dropout).

    predict_encoded(model, dev)                    logits (N, C) of a sequence classifier, in example order
    evaluate(model, "sst-2", dev)          the task's metrics ({"acc": ...}, {"mcc": ...}, ...)
    evaluate(model, spec, {"": m, "_mm": mm})  several dev sets at once: {"acc": ..., "acc_mm": ...}
    evaluate_pretraining(model, held)      masked-LM accuracy and loss, NSP accuracy
    evaluate_mlm(model, held)              masked-word accuracy of a BertForMaskedLM

Each function runs the model under `no_grad` (no caches kept; on NumPy the inference path of
`fast_inference.py`), restores its train/eval mode (except evaluate_mlm: see there) and moves
nothing between devices beyond the logits it scores. The metrics themselves (accuracy, F1,
Matthews) live with the task registry in `minibert.data`; latency and parameter counts, the
other half of a results table, in `report.py`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from . import data as D
from .backend import to_numpy
from .interrupts import check
from .nn import no_grad


def predict_encoded(model, encoded: D.EncodedExamples, batch_size: int = 64) -> np.ndarray:
    """Logits (N, C) float32 for every example of `encoded`, in order, in eval mode."""
    was_training = model.training
    model.eval()
    logits = np.zeros((len(encoded), model.num_labels), dtype=np.float32)  # (N, C)
    # In input order, unbucketed: the rows of `logits` are the examples' rows.
    for idx in D.make_epoch_batches(encoded.lengths, batch_size, shuffle=False, bucket=False):
        check("an evaluation")  # a stop request (interrupts.py) ends it between batches
        b = encoded.collate(idx)
        with no_grad():  # no backward follows: the inference path on NumPy
            out = model(b["input_ids"], b["token_type_ids"], b["attention_mask"])
        logits[idx] = to_numpy(out.logits)  # (B, C)
    model.train(was_training)
    return logits


def evaluate(model, task: str | D.TaskSpec, encoded: D.EncodedExamples | Mapping[str, D.EncodedExamples]) -> dict:
    """The task's metrics of `model` on `encoded` (e.g. {"acc": 0.84} for SST-2).

    encoded: one dev set, or several by metric suffix, each scored with its suffix: MNLI's
    {"": matched, "_mm": mismatched} gives {"acc": ..., "acc_mm": ...}.
    """
    if isinstance(encoded, D.EncodedExamples):
        return D.compute_metrics(task, predict_encoded(model, encoded), encoded.labels)
    return {name + suffix: value for suffix, dev in encoded.items()
            for name, value in evaluate(model, task, dev).items()}


def evaluate_pretraining(model, held: D.PretrainingData, batch_size: int = 64, max_batches: int = 20) -> dict:
    """Held-out masked-LM accuracy and loss (per predicted token), and NSP accuracy, of a BertForPreTraining."""
    was_training = model.training
    model.eval()
    correct = total = nsp_correct = nsp_total = 0
    loss_sum = 0.0
    for idx in D.make_epoch_batches(len(held), batch_size, shuffle=False)[:max_batches]:
        check("an evaluation")
        b = held.collate(idx)
        with no_grad():
            out = model(b["input_ids"], b["token_type_ids"], b["attention_mask"], labels=b["labels"],
                        next_sentence_label=b["next_sentence_label"], only_labelled=True)
        # only_labelled: logits (P, V) at the P predicted positions, mlm_positions their flat indices
        labels = b["labels"].reshape(-1)[to_numpy(out.mlm_positions)]  # (P,)
        pred = to_numpy(out.logits).argmax(-1)  # (P,)
        n = len(labels)
        correct += int((pred == labels).sum())
        total += n
        loss_sum += float(out.mlm_loss) * n  # a mean over the batch's P tokens -> a sum
        nsp_correct += int((to_numpy(out.seq_relationship_logits).argmax(-1) == b["next_sentence_label"]).sum())
        nsp_total += len(idx)
    model.train(was_training)
    return {"mlm_acc": correct / max(total, 1), "mlm_loss": loss_sum / max(total, 1),
            "nsp_acc": nsp_correct / max(nsp_total, 1)}


def evaluate_mlm(model, held: D.PretrainingData, batches: int = 10, batch_size: int = 32) -> dict:
    """Held-out masked-word accuracy of a BertForMaskedLM.

    The model is left in eval mode: this scores augmentation's MLM head, trained over a frozen
    encoder that never runs in train mode (see tinybert.mlm_head_step).
    """
    model.eval()
    correct = total = 0
    for idx in D.make_epoch_batches(len(held), batch_size, shuffle=False)[:batches]:
        check("an evaluation")
        b = held.collate(idx)
        with no_grad():
            out = model(b["input_ids"], b["token_type_ids"], b["attention_mask"], labels=b["labels"], only_labelled=True)
        labels = b["labels"].reshape(-1)[to_numpy(out.mlm_positions)]  # (P,)
        correct += int((to_numpy(out.logits).argmax(-1) == labels).sum())
        total += len(labels)
    return {"mlm_acc": correct / max(total, 1)}
