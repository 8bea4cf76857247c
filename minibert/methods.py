"""The distillation methods' registry: each method's losses per stage, what it logs, how --alpha/--beta weigh it.

    method      general (stage 1)    intermediate (2a)    prediction (2b)
    tinybert    att + hid + emb      att + hid + emb      pred
    kd          -                    -                    kd (+ hard)
    distilbert  cos                  -                    kd (+ hard) + cos
    pkd         -                    -                    kd (+ hard) + pt
    minilm      att_kl + vr          att_kl + vr          pred
    minilmv2    qq + kk + vv         qq + kk + vv         pred

A method is one `Method` entry in `METHODS`: the loss names it runs in each stage (a stage it
lacks runs nothing), the one-line summaries `--method`'s help is made of, the sums it logs
under names of their own (TinyBERT's reference logs L_hid + L_emb as "rep"), and the weights
`--alpha`/`--beta` give its losses. Everything that differs between methods is here, so the
Distiller, the runs (distillation.py) and the flags (settings.py) name no method.

This module is plain data: it imports nothing from minibert, so settings.py can derive the
flags' choices and help from it. Not here: the losses (`distill.py`'s LOSSES table, each a
named function over a kernel pair of `distill_losses.py`) and the Distiller that runs them.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

# Which teacher layer each student layer learns from (distill.layer_mapping).
MAPPING_STRATEGIES = ("uniform", "top", "bottom")

# TinyBERT's stages: general distillation and task step 2a match the intermediate layers, task
# step 2b the predictions; "all" (every loss at once) is for tests and notebooks.
STAGE_LOSSES = {
    "general": ("att", "hid", "emb"),
    "intermediate": ("att", "hid", "emb"),
    "prediction": ("pred",),
    "all": ("att", "hid", "emb", "pred"),
}
STAGES = tuple(STAGE_LOSSES)


def no_weights(alpha: float, beta: float) -> dict:
    """A method whose losses all weigh 1 (TinyBERT, MiniLM, MiniLMv2)."""
    return {}


def soft_and_hard(alpha: float, beta: float) -> dict:
    """Hinton's mix: alpha x the soft targets, (1 - alpha) x the gold labels' cross-entropy."""
    return {"kd": alpha, "hard": 1.0 - alpha}


class Method(NamedTuple):
    stages: dict  # {stage: loss names}; a stage not listed runs nothing ("all": every loss of the method)
    summary: str  # what it distils, for --method's help
    general: str = ""  # what stage 1 distils, for distill-general's --method help ("": no stage 1)
    log_sums: dict = {}  # {logged name: the losses it sums}, logged instead of them
    weights: Callable = no_weights  # (alpha, beta) -> {loss: weight}; the others weigh 1 (DEFAULT_WEIGHTS aside)


METHODS = {
    "tinybert": Method(STAGE_LOSSES, "attention-score and hidden-state MSE, then soft cross-entropy",
                       "attention-score and hidden-state MSE", log_sums={"rep": ("hid", "emb")}),
    "kd": Method({"prediction": ("kd", "hard")}, "Hinton's soft targets, t^2", weights=soft_and_hard),
    "distilbert": Method({"general": ("cos",), "prediction": ("kd", "hard", "cos")},
                         "soft targets + cosine of the last hidden states", "cosine of the last hidden states",
                         weights=lambda alpha, beta: {**soft_and_hard(alpha, beta), "cos": beta}),
    "pkd": Method({"prediction": ("kd", "hard", "pt")}, "soft targets + Patient KD's normalised [CLS] states",
                  weights=lambda alpha, beta: {**soft_and_hard(alpha, beta), "pt": beta}),
    "minilm": Method({"general": ("att_kl", "vr"), "intermediate": ("att_kl", "vr"), "prediction": ("pred",)},
                     "last-layer attention and value-relation KL, then soft cross-entropy",
                     "last-layer attention and value-relation KL"),
    "minilmv2": Method({"general": ("qq", "kk", "vv"), "intermediate": ("qq", "kk", "vv"),
                        "prediction": ("pred",)},
                       "query/key/value relation KL with --relation-heads, any width or head count, then soft "
                       "cross-entropy", "query/key/value relation KL with --relation-heads: any width or head count"),
}
GENERAL_METHODS = tuple(name for name, m in METHODS.items() if "general" in m.stages)  # those with a stage 1


def method_help(stage1: bool = False) -> str:
    """--method's help, from the entries: each method and what it distils (in stage 1, or in task distillation)."""
    if stage1:
        without = [name for name in METHODS if name not in GENERAL_METHODS]
        return ("stage-1 method: " + ", ".join(f"{n} ({METHODS[n].general})" for n in GENERAL_METHODS) +
                f"; {' and '.join(without)} have no stage 1")
    return "distillation method: " + ", ".join(f"{name} ({m.summary})" for name, m in METHODS.items())
