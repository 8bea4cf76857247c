"""Reference solutions of notebook 04's exercises (TinyBERT). Read them after trying."""
import numpy as np


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def teacher_targets(t_hidden, t_scores, student_layers):
    """The teacher tensors a student of M layers learns from under the uniform mapping.

    t_hidden: N + 1 hidden states (entry i = layer Ti, entry 0 the embedding output);
    t_scores: N attention-score tensors (entry i = layer T(i+1)). Returns (hidden targets of
    S0..SM: M + 1 entries, score targets of S1..SM: M entries), g(m) = m N / M, g(0) = 0.
    """
    M, N = student_layers, len(t_scores)
    g = [m * N // M for m in range(M + 1)]  # g[0] = 0: the embeddings imitate the embeddings
    hidden = [t_hidden[g[m]] for m in range(M + 1)]  # hidden_states[i] is layer Ti
    scores = [t_scores[g[m] - 1] for m in range(1, M + 1)]  # attention_scores[i] is layer T(i+1)
    return hidden, scores


def attention_loss_backward(dL, s_scores, t_scores, mapping):
    """dL/dS_m of L = sum_m mean((clamp(S_m) - clamp(T_g(m)))^2), clamp(x) = x if x > -100 else 0.

    Per layer, with n = B NH T T: dL/dS_m = dL (2/n) (clamp(S_m) - clamp(T_g(m))) 1[S_m > -100]:
    the clamp passes the value through or replaces it by a constant (no gradient there).
    """
    grads = []
    for s, g in zip(s_scores, mapping):
        t = t_scores[g - 1]  # layer Tg is entry g - 1
        keep = s > -100  # (B, NH, T, T) where the clamp passes the student's score through
        diff = np.where(keep, s, 0.0) - np.where(t > -100, t, 0.0)  # (B, NH, T, T)
        grads.append(dL * 2.0 / s.size * diff * keep)
    return grads


def hidden_loss_backward(dL, s_hidden, t_hidden, pairs, W, b):
    """Gradients of L = sum_{(m, n) in pairs} mean((H_m W^T + b - T_n)^2) (every element of (B, T, d_T)).

    Returns (dstates: one (B, T, d_S) array per student state, zeros where no pair reads it;
    dW (d_T, d_S); db (d_T,)). W and b serve every pair, so their gradients sum over pairs.
    """
    dstates = [np.zeros_like(h) for h in s_hidden]
    dW, db = np.zeros_like(W), np.zeros_like(b)
    for m, n in pairs:
        y = s_hidden[m] @ W.T + b  # (B, T, d_T) the projected state
        dy = dL * 2.0 / y.size * (y - t_hidden[n])  # (B, T, d_T)
        dstates[m] += dy @ W  # (B, T, d_S)
        dW += np.einsum("bti,btj->ij", dy, s_hidden[m])  # (d_T, d_S): a term from every pair
        db += dy.sum(axis=(0, 1))  # (d_T,)
    return dstates, dW, db


def soft_cross_entropy_backward(student_logits, teacher_logits, temperature):
    """dL/dz_S of L = -(1/B) sum_b sum_c p_T log q, p_T = softmax(z_T/t), q = softmax(z_S/t).

    d log q_c / d z_j = (delta_cj - q_j) / t, and sum_c p_c (delta_cj - q_j) = p_j - q_j since
    sum_c p_c = 1, so dL/dz_j = (q_j - p_j) / (t B).
    """
    t, B = temperature, student_logits.shape[0]
    return (_softmax(student_logits / t) - _softmax(teacher_logits / t)) / (t * B)  # (B, C)


def kd_step(student, batch, teacher_logits, t, alpha, lr):
    """One step of Hinton's distillation: L = alpha t^2 softCE_t(z, z_T) + (1 - alpha) CE(z, y), then SGD.

    softCE_t is the batch mean of -sum_c softmax(z_T/t)_c log softmax(z/t)_c. Its gradient is
    (q_t - p_t)/(t B), so with the t^2 factor the soft term's is t (q_t - p_t)/B; the gold
    labels' cross-entropy adds (softmax(z) - onehot(y))/B.
    """
    student.zero_grad()  # modules add into their gradients
    z = student(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).logits  # (B, C)
    y = batch["labels"]  # (B,)
    B = len(z)
    p, q = _softmax(teacher_logits / t), _softmax(z / t)  # (B, C) each
    soft = t ** 2 * float(-(p * np.log(q)).sum() / B)
    probs = _softmax(z)  # (B, C) at t = 1, for the gold labels
    hard = float(-np.log(probs[np.arange(B), y]).mean())
    loss = alpha * soft + (1 - alpha) * hard
    onehot = np.eye(z.shape[1])[y]  # (B, C)
    dz = alpha * t * (q - p) / B + (1 - alpha) * (probs - onehot) / B  # (B, C)
    student.backward(dlogits=dz)  # dz through the classifier and every layer into the gradients
    grads = student.named_gradients()
    for name, param in student.named_parameters().items():
        param -= lr * grads[name]  # in place: the model's own arrays
    return loss
