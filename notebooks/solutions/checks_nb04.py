"""The checks of notebook 04's exercises (TinyBERT): the notebook calls them, and so does
tests/test_exercises_nb04.py (which also proves each one fails on a wrong answer).

Each check measures rather than trusts: the mapping against worked cases, the gradient
against finite differences in float64 (gradcheck.py), the stages against what a real
`Distiller` computes on a tiny student and teacher.
"""
import numpy as np

import minibert.functional as F
from gradcheck import numerical_grad, rel_error
from minibert import BertConfig
from minibert.distill import LOSSES, Distiller
from minibert.model import BertForSequenceClassification


def check_top_mapping(top_mapping):
    """top_mapping(M, N) -> the M teacher layers (1-based) that student layers 1..M learn from."""
    cases = {(3, 6): [4, 5, 6], (2, 6): [5, 6], (4, 12): [9, 10, 11, 12], (1, 4): [4],
             (6, 6): [1, 2, 3, 4, 5, 6], (3, 7): [5, 6, 7]}
    for (M, N), want in cases.items():
        got = [int(g) for g in top_mapping(M, N)]
        assert got == want, f"student {M} layers, teacher {N}: expected {want}, got {got}"
    print(f"correct on all {len(cases)} cases, e.g. 3 student layers on 6 teacher layers -> {cases[3, 6]}")


def check_soft_cross_entropy_backward(soft_cross_entropy_backward):
    """soft_cross_entropy_backward(z_S, z_T, t) -> dL/dz_S of F.soft_cross_entropy_forward (batchmean)."""
    rng = np.random.default_rng(4)
    z_s, z_t = rng.normal(scale=2.0, size=(2, 5, 3))  # (B, C) each
    for t in (1.0, 2.0, 5.0):
        numeric = numerical_grad(lambda: float(F.soft_cross_entropy_forward(z_s, z_t, t)[0]), z_s)
        err = rel_error(np.asarray(soft_cross_entropy_backward(z_s, z_t, t), dtype=np.float64), numeric)
        assert err < 1e-7, f"temperature {t}: relative error {err:.1e} (both softmaxes at z/t? the 1/t? the 1/B?)"
    print(f"correct at temperatures 1, 2 and 5: relative error {err:.1e} at t = 5")


def tiny_pair(seed=0):
    """A tiny random teacher (4 layers x 16) and student (2 layers x 8) with classifiers, both with 2 heads."""
    def model(layers, hidden, s):
        cfg = BertConfig(vocab_size=30, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=16)
        return BertForSequenceClassification(cfg, num_labels=2, seed=s).eval()
    return model(4, 16, seed), model(2, 8, seed + 1)


def measured_stage_losses():
    """{stage: the losses a Distiller computes (nonzero) for a random student against a random teacher}."""
    teacher, student = tiny_pair()
    ids = np.random.default_rng(5).integers(1, 30, size=(2, 6))
    t_out, s_out = teacher(ids), student(ids)
    distiller = Distiller(student.config, teacher.config)
    return {stage: {k for k in LOSSES if float(distiller(s_out, t_out, stage=stage)[k]) != 0.0}
            for stage in ("general", "intermediate", "prediction")}


def check_stage_losses(stage_losses):
    """stage_losses: {"general" | "intermediate" | "prediction": set of "att", "hid", "emb", "pred"}."""
    measured = measured_stage_losses()
    for stage, ran in measured.items():
        predicted = set(stage_losses.get(stage, ()))
        assert predicted == ran, f"stage {stage!r}: you predicted {sorted(predicted)}, the Distiller ran {sorted(ran)}"
    print("correct: " + "; ".join(f"{s}: {' + '.join(sorted(r))}" for s, r in measured.items()))
