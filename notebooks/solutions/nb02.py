"""Reference solutions of notebook 02's exercises (layers by hand). Read them after trying."""
import numpy as np

SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


def gelu_tanh_backward(dout, cache):
    """d/dx of 0.5 x (1 + t), t = tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3)."""
    x, t = cache
    du = SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x**2)  # du/dx
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * du)  # product rule; tanh' = 1 - tanh^2


# x = (1, 2, 6), gamma = 1, beta = 0, dout = (1, 0, 0). mu = 3, x - mu = (-2, -1, 3), var = 14/3,
# r = sqrt(3/14); mean(g) = 1/3, mean(g xhat) = -2r/3, so dx = r (g - 1/3 + (x - mu) r^2 2/3)
# = r (g - 1/3 + (x - mu) / 7) = r (8, -10, 2) / 21.
layernorm_dx_by_hand = np.sqrt(3 / 14) * np.array([8.0, -10.0, 2.0]) / 21


def embedding_backward_without_scatter_add(dout, ids, num_embeddings):
    """dW (V, D) as a matrix product: one-hot(ids)^T @ dout sums the rows of repeated ids."""
    onehot = (ids.reshape(-1, 1) == np.arange(num_embeddings)).astype(dout.dtype)  # (N, V)
    return onehot.T @ dout.reshape(-1, dout.shape[-1])  # (V, D)


def cross_entropy_backward(logits, labels, ignore_index=-100):
    """dL/dlogits of the mean cross-entropy over the rows whose label is not ignore_index."""
    valid = labels != ignore_index  # (N,)
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)  # (N, C)
    y = np.zeros_like(p)
    y[np.arange(len(labels))[valid], labels[valid]] = 1.0  # one-hot of the labelled rows
    return (p - y) * valid[:, None] / max(int(valid.sum()), 1)


def predict_softmax_failures(names, num_layers):
    """Everything whose gradient passes through an attention softmax fails: all but the last
    layer's parameters that act after its attention probabilities (value, output, feed-forward)."""
    last = f"encoder.layer.{num_layers - 1}."
    after_probs = ("attention.self.value.", "attention.output.", "intermediate.", "output.")
    return {n for n in names if not (n.startswith(last) and n[len(last):].startswith(after_probs))}


def layernorm_backward(dout, cache):
    """dout (..., D) -> dx (..., D), dgamma (D,), dbeta (D,) for y = gamma * xhat + beta.

    With g = dout * gamma (the gradient reaching xhat) and r = 1/sigma:
    dx_i = r (g_i - mean_j g_j - xhat_i mean_j g_j xhat_j): the direct path, the path through
    mu (the mean term) and the path through sigma (the variance term).
    """
    xhat, r, gamma = cache.xhat, cache.rstd, cache.gamma  # (..., D), (..., 1), (D,)
    rows = tuple(range(dout.ndim - 1))  # every position shares gamma and beta
    dbeta = dout.sum(axis=rows)  # y = ... + beta
    dgamma = (dout * xhat).sum(axis=rows)  # y = gamma * xhat + ...
    g = dout * gamma  # (..., D) dL/dxhat
    dx = r * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def attention_backward(dcontext, q, k, v, P):
    """dq, dk, dv (each (B, NH, T, d)) of S = q k^T / sqrt(d) + mask, P = softmax(S), context = P v."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    # context = P @ v
    dv = P.swapaxes(-1, -2) @ dcontext  # (B, NH, T, d)
    dP = dcontext @ v.swapaxes(-1, -2)  # (B, NH, T, T)
    # P = softmax(S), row by row
    dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))  # (B, NH, T, T)
    # S = q @ k^T * scale + mask (the mask is a constant)
    dq = dS @ k * scale  # (B, NH, T, d)
    dk = dS.swapaxes(-1, -2) @ q * scale  # (B, NH, T, d)
    return dq, dk, dv
