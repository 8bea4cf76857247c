"""See inside a model: its attention, and beside its teacher's, as one self-contained HTML page.

    page = minibert.explain("runs/quick/student", ["a gripping film"], teacher="runs/quick/teacher")
    page                        # in Jupyter: the interactive view (the same page, in an iframe)
    page.save("explain.html")   # what `python -m minibert.train explain ... --output explain.html` writes
    page.data                   # the numbers the page draws, also embedded in it as JSON

The page shows, for each sentence: its tokens; each model's prediction with its class
probabilities; the attention of any layer and head as a matrix and as BertViz-style lines (hover
a token to see where it attends). Given a teacher, the model is its student: the two stand side
by side, the layer mapping g(m) is drawn between them, and a table gives, per student layer,
what the distillation losses see on that sentence. Every number comes from the project's own
code, not re-derived here:

    attention      BertOutput.attentions, the softmax of the scores the model computed
    layer mapping  layer_matching.layer_mapping (TinyBERT's g(m); --mapping picks the strategy)
    attention MSE  distill_losses.attention_loss_forward on the pair (S_m, T_g(m)) alone: the
                   per-layer term of TinyBERT's L_att (clamped scores, mean over NH*T*T)
    hidden MSE     distill_losses.hidden_loss_forward on (fit_dense(H_S^m), H_T^g(m)): the terms of
                   L_hid, and (0, 0) L_emb, through the student's trained fit_dense (distill.FitDense,
                   loaded by checkpoint.load_fit_dense); without one, raw states if the widths match
    MiniLM KLs     attention_kl_loss_forward (MiniLM's L_AT, needs equal head counts) and
                   relation_kl_loss_forward on the values (L_VR, R = the teacher's heads as relation
                   heads, needs both widths divisible by R), on each mapped pair
    prediction     TextClassifier's scores (softmax, or the raw value of a regression)

The JSON is `<script type="application/json" id="minibert-data">`: `sentences` (text, tokens),
`models` (one per column: name, role, shape, labels, and per sentence the prediction and the
attention as [layer][head][query][key] probabilities, rounded to 7 decimals) and `comparison`
(null without a teacher: the mapping, where fit_dense came from, per sentence the per-layer losses).

Not here: the drawing (`explainer.js`, `explainer.css`: plain JavaScript, no build step, nothing
fetched, so the file opens offline), training, or the command line (`train.py` calls `explain_command`).

Shapes: T tokens, NH heads, M / N student / teacher layers, d_S / d_T their hidden sizes.
"""
from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import numpy as np

from . import checkpoint
from .backend import to_numpy
from .distill_losses import (attention_kl_loss_forward, attention_loss_forward, hidden_loss_forward,
                             relation_kl_loss_forward)
from .errors import DataError
from .inference import TextClassifier
from .layer_matching import FitDense, layer_mapping
from .model import BertForSequenceClassification, BertModel
from .runfolder import write_text_atomic
from .settings import ExplainSettings
from .specs import is_classifier_folder

HERE = Path(__file__).resolve().parent
DECIMALS = 7  # attention probabilities are kept to 5e-8, far inside float32's 1e-6 noise at 1


# ================================================================================ the models


def load_model(model):
    """A folder or short name -> (model in eval mode, its name, its folder); a model object passes through.

    A folder whose config.json says BertForSequenceClassification loads with its classifier (its
    prediction is shown); any other BERT folder (minilm-l6, a stage-1 student) as an encoder."""
    if not isinstance(model, (str, Path)):
        cfg = model.config
        return model.eval(), f"{type(model).__name__} ({cfg.num_hidden_layers} x {cfg.hidden_size})", None
    path = checkpoint.resolve_model_path(model)
    cls = BertForSequenceClassification if is_classifier_folder(str(path)) else BertModel
    return cls.from_pretrained(path).eval(), str(model), path


def run_model(model, tokenizer, ids: np.ndarray) -> dict:
    """One sentence through the model: its outputs as NumPy arrays, and its prediction (None for an encoder)."""
    x = ids[None]  # (1, T): one sentence, no padding
    out = model(x, np.zeros_like(x), np.ones_like(x))
    result = {"out": out, "attention": [to_numpy(a[0]) for a in out.attentions]}  # L x (NH, T, T)
    if isinstance(model, BertForSequenceClassification):
        clf = TextClassifier(model, tokenizer)  # the predict command's labels and scores
        scores = clf.scores(to_numpy(out.logits).astype(np.float64))[0]  # (C,)
        result["prediction"] = {"labels": clf.labels, "scores": [float(s) for s in scores],
                                "kind": "regression" if clf.regression else clf.default_function}
    return result


def _rounded(a: np.ndarray) -> list:
    return np.round(a.astype(np.float64), DECIMALS).tolist()


def model_entry(name: str, role: str, model, runs: list[dict]) -> dict:
    """One column of the page: the model, and per sentence its prediction and attention."""
    cfg = model.config
    return {"name": name, "role": role, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
            "heads": cfg.num_attention_heads,
            "examples": [{"prediction": r.get("prediction"), "attention": [_rounded(a) for a in r["attention"]]}
                         for r in runs]}


# ============================================================================ the comparison


def find_fit_dense(student_cfg, teacher_cfg, source) -> tuple[FitDense | None, str]:
    """The student's trained fit_dense, and a line saying where it came from.

    source: a FitDense (used as is), a folder holding fit_dense.safetensors, or a list of folders
    to try in order. The projection is TinyBERT's shared one, else one per layer (as saved)."""
    if isinstance(source, FitDense):
        return source, "the fit_dense passed in"
    M = student_cfg.num_hidden_layers
    for folder in [f for f in (source if isinstance(source, list) else [source]) if f]:
        if not (Path(folder) / checkpoint.FIT_DENSE_NAME).is_file():
            continue
        for shared in (True, False):
            fit_dense = FitDense(student_cfg.hidden_size, teacher_cfg.hidden_size, M + 1, shared=shared)
            try:
                checkpoint.load_fit_dense(fit_dense, folder)
                return fit_dense, str(Path(folder) / checkpoint.FIT_DENSE_NAME)
            except checkpoint.CheckpointMismatchError:
                if not shared:
                    raise  # neither layout fits: the file is another pair's
    if student_cfg.hidden_size == teacher_cfg.hidden_size:
        return None, "no fit_dense found: raw hidden states (the widths match)"
    return None, "no fit_dense found, and the widths differ: no hidden-state loss"


def layer_losses(s_run: dict, t_run: dict, mapping: list[int], fit_dense, relation_heads: int | None) -> dict:
    """What each distillation loss sees on one sentence, per mapped pair (m, g(m)); None where shapes forbid it.

    attention_mse[m-1], att_kl[m-1], value_kl[m-1] for student layers m = 1..M; hidden_mse[m] for
    hidden states m = 0..M, index 0 the embedding outputs (L_emb's pair (0, 0))."""
    s, t = s_run["out"], t_run["out"]
    mask = np.ones(s.hidden_states[0].shape[:2], dtype=np.int32)  # (1, T) every token real
    same_heads = s.attention_scores[0].shape == t.attention_scores[0].shape
    losses = {"attention_mse": [], "att_kl": [], "value_kl": [], "hidden_mse": []}
    for m, g in enumerate(mapping, start=1):
        s_scores, t_scores = s.attention_scores[m - 1], t.attention_scores[g - 1]  # (1, NH, T, T)
        if same_heads:
            losses["attention_mse"].append(float(attention_loss_forward([s_scores], [t_scores], [1])[0]))
            losses["att_kl"].append(float(attention_kl_loss_forward(s_scores, t_scores, mask)[0]))
        else:
            losses["attention_mse"].append(None)
            losses["att_kl"].append(None)
        if relation_heads:
            v_s, v_t = s.qkv[m - 1][2], t.qkv[g - 1][2]  # (1, NH, T, HS) the values
            losses["value_kl"].append(float(relation_kl_loss_forward(v_s, v_t, mask, relation_heads)[0]))
        else:
            losses["value_kl"].append(None)
    same_width = s.hidden_states[0].shape == t.hidden_states[0].shape
    if fit_dense is not None or same_width:
        states = fit_dense.forward(s.hidden_states) if fit_dense is not None else s.hidden_states  # M+1 x (1, T, d_T)
        for m, g in enumerate([0, *mapping]):
            losses["hidden_mse"].append(float(hidden_loss_forward(states, t.hidden_states, [(m, g)])[0]))
    else:
        losses["hidden_mse"] = [None] * (len(mapping) + 1)
    return losses


def relation_heads_for(student_cfg, teacher_cfg) -> int | None:
    """MiniLMv2's default R (the teacher's heads), when it divides both widths; else None."""
    R = teacher_cfg.num_attention_heads
    return R if student_cfg.hidden_size % R == 0 and teacher_cfg.hidden_size % R == 0 else None


# =============================================================================== the page


class Explanation:
    """The numbers of one explain call, and the page that draws them (`_repr_html_`: Jupyter shows it)."""

    def __init__(self, data: dict):
        self.data = data

    def html(self) -> str:
        """The whole page: one HTML file, its style, script and numbers inline."""
        # "<" escaped inside the JSON, so no text in it can close the script element early
        payload = json.dumps(self.data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
        title = "minibert: " + " vs ".join(m["name"] for m in self.data["models"])
        return PAGE.format(title=html.escape(title), css=(HERE / "explainer.css").read_text(encoding="utf-8"),
                           data=payload, js=(HERE / "explainer.js").read_text(encoding="utf-8"))

    def save(self, path) -> Path:
        """Write the page to `path` (atomically); returns the path."""
        return write_text_atomic(path, self.html())

    def _repr_html_(self) -> str:
        # An iframe keeps the page whole: its element ids and script cannot clash with another output's.
        # Its height, roughly the page's (explainer.js's sizes; the frame can be resized): the header,
        # the mapping, a column's prediction, then its matrix and lines: side by side in one column
        # alone, one under the other in two columns side by side.
        T = max(len(s["tokens"]) for s in self.data["sentences"])
        matrix, lines = 80 + T * max(6, min(22, 360 // T)), 18 * T + 14
        views = matrix + lines if self.data["comparison"] else max(matrix, lines)
        height = 150 + (330 if self.data["comparison"] else 0) + 200 + views + 40
        return (f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" title="minibert explain" '
                f'style="width:100%;height:{height}px;border:1px solid #ddd;resize:vertical"></iframe>')

    def __repr__(self) -> str:
        names = " vs ".join(m["name"] for m in self.data["models"])
        return f"Explanation({names}; {len(self.data['sentences'])} sentence(s); .save(path) writes the page)"


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<div id="app"><noscript>This page draws with JavaScript; its numbers are in the minibert-data element.</noscript></div>
<script type="application/json" id="minibert-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""


# =========================================================================== the entry points


def explain(model, texts, teacher=None, *, tokenizer=None, mapping: str = "uniform", fit_dense=None,
            max_length: int = 128, names: tuple[str, str] | None = None) -> Explanation:
    """Attention, predictions and (given a teacher) the distillation losses of `model` on `texts`.

    model, teacher: folders (or short names such as "minilm-l6"), or models in memory (then pass
    `tokenizer`). texts: a sentence or a list of them, each one input. mapping: the layer mapping's
    strategy (layer_matching.layer_mapping). fit_dense: the student's projection, a FitDense or a folder
    holding fit_dense.safetensors (default: the student's folder, then the prediction/best/ of the
    pipeline run a `.../student` folder came from). names: the two columns' titles.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise DataError("explain: give at least one sentence")
    model, name, folder = load_model(model)
    tokenizer = tokenizer or (checkpoint.load_tokenizer(folder) if folder else None)
    if tokenizer is None:
        raise DataError("explain: a model passed in memory needs its tokenizer (tokenizer=...)")
    max_length = min(max_length, model.config.max_position_embeddings)  # the model reads no more
    encoded = [tokenizer.encode(t, max_length=max_length, return_num_truncated=True) for t in texts]
    cut = sum(e["num_truncated_tokens"] > 0 for e in encoded)
    if cut:
        print(f"note: cut {cut} of {len(texts)} sentences to {max_length} tokens (max_length)", file=sys.stderr)
    ids = [np.array(e["input_ids"]) for e in encoded]
    sentences = [{"text": t, "tokens": tokenizer.convert_ids_to_tokens(i.tolist())} for t, i in zip(texts, ids)]
    runs = [run_model(model, tokenizer, i) for i in ids]
    columns = [model_entry(names[0] if names else name, "student" if teacher is not None else "model", model, runs)]
    comparison = None
    if teacher is not None:
        teacher, t_name, t_folder = load_model(teacher)
        if t_folder is not None:  # the same text must give the same tokens, or nothing lines up
            t_tok = checkpoint.load_tokenizer(t_folder)
            if any(t_tok.encode(t, max_length=max_length)["input_ids"] != i.tolist() for t, i in zip(texts, ids)):
                raise DataError(f"explain: {t_name} tokenises the sentences differently from {name}; "
                                "a student and its teacher share one vocabulary")
        t_runs = [run_model(teacher, tokenizer, i) for i in ids]
        columns.append(model_entry(names[1] if names else t_name, "teacher", teacher, t_runs))
        s_cfg, t_cfg = model.config, teacher.config
        g = layer_mapping(s_cfg.num_hidden_layers, t_cfg.num_hidden_layers, mapping)
        sources = fit_dense
        if sources is None and folder is not None:  # the student's folder, else its pipeline run's best checkpoint
            sources = [folder] + ([folder.parent / "prediction" / "best"] if folder.name == "student" else [])
        projection, where = find_fit_dense(s_cfg, t_cfg, sources)
        R = relation_heads_for(s_cfg, t_cfg)
        comparison = {"mapping": g, "strategy": mapping, "fit_dense": where, "relation_heads": R,
                      "examples": [layer_losses(s, t, g, projection, R) for s, t in zip(runs, t_runs)]}
    return Explanation({"version": 1, "sentences": sentences, "models": columns, "comparison": comparison})


def explain_command(settings: ExplainSettings) -> Path:
    """The explain command: the page for settings.texts, written to settings.output. Returns its path."""
    if not settings.texts:
        raise DataError("explain: give one or more sentences to look at")
    page = explain(settings.model, settings.texts, settings.teacher, mapping=settings.mapping,
                   fit_dense=settings.fit_dense, max_length=settings.max_length)
    return page.save(settings.output)
