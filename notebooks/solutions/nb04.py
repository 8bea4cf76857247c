"""Reference solutions of notebook 04's exercises (TinyBERT). Read them after trying."""
import numpy as np


def top_mapping(student_layers, teacher_layers):
    """The "top" strategy: student layer m = 1..M learns from teacher layer N - M + m (the last M)."""
    M, N = student_layers, teacher_layers
    return [N - M + m for m in range(1, M + 1)]


def soft_cross_entropy_backward(student_logits, teacher_logits, temperature):
    """dL/dz_S of L = -(1/B) sum_b sum_c p_T log q, p_T = softmax(z_T/t), q = softmax(z_S/t).

    d log q_c / d z_j = (delta_cj - q_j) / t, and sum_c p_c (delta_cj - q_j) = p_j - q_j since
    sum_c p_c = 1, so dL/dz_j = (q_j - p_j) / (t B).
    """
    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    t, B = temperature, student_logits.shape[0]
    return (softmax(student_logits / t) - softmax(teacher_logits / t)) / (t * B)  # (B, C)


# distill.STAGE_LOSSES: general distillation and task step 2a match the intermediate layers
# (attention scores, hidden states, embeddings); step 2b the predictions alone.
stage_losses = {
    "general": {"att", "hid", "emb"},
    "intermediate": {"att", "hid", "emb"},
    "prediction": {"pred"},
}
