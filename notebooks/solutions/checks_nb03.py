"""The checks of notebook 03's exercises: the notebook calls them, and so does
tests/test_exercises_nb123.py (which also proves each one fails on a wrong answer).
Each compares with finite differences in float64 (gradcheck.py)."""
import numpy as np

import minibert.functional as F
from gradcheck import numerical_grad, rel_error


def check_pooler_backward(pooler_backward):
    """pooler_backward(dpooled, h, W, pooled) -> dh (B, T, H), dW, db for pooled = tanh(h[:, 0] W^T + b)."""
    rng = np.random.default_rng(4)
    B, T, H = 2, 4, 3
    h, W, b = rng.normal(size=(B, T, H)), rng.normal(size=(H, H)), rng.normal(size=H)
    G = rng.normal(size=(B, H))
    pooled = lambda: np.tanh(h[:, 0] @ W.T + b)  # (B, H)
    loss = lambda: float((pooled() * G).sum())
    dh, dW, db = pooler_backward(G, h, W, pooled())
    errors = {name: rel_error(a, numerical_grad(loss, x)) for name, a, x in (("h", dh, h), ("W", dW, W), ("b", db, b))}
    assert max(errors.values()) < 1e-7, f"relative errors {errors}"
    print("correct: relative errors", {k: f"{v:.0e}" for k, v in errors.items()})


def check_tied_embedding_grad(tied_embedding_grad):
    """A toy tied model: x = E[ids]; t = tanh(x A); logits = t E^T + b; L = cross-entropy(logits, labels).

    tied_embedding_grad(ids, dx_emb, t, dlogits, V) gets the gradients at both places E is used."""
    rng = np.random.default_rng(5)
    V, H = 7, 3
    ids = np.array([[1, 4, 1], [6, 4, 0]])  # (B, T), with repeats
    labels = np.array([4, -100, 2, 1, -100, 6])  # (B*T,)
    E, A, b = rng.normal(size=(V, H)), rng.normal(size=(H, H)), rng.normal(size=V)

    def forward():
        t = np.tanh(E[ids].reshape(-1, H) @ A)  # (N, H)
        logits = t @ E.T + b  # (N, V) the decoder is E itself
        return t, F.cross_entropy_forward(logits, labels)

    t, (_, cache) = forward()
    dlogits = F.cross_entropy_backward(1.0, cache)  # (N, V)
    dx_emb = (((dlogits @ E) * (1 - t**2)) @ A.T).reshape(*ids.shape, H)  # back through the decoder input, tanh, A
    numeric = numerical_grad(lambda: float(forward()[1][0]), E)
    err = rel_error(tied_embedding_grad(ids, dx_emb, t, dlogits, V), numeric)
    assert err < 1e-7, f"relative error {err:.1e}: both uses of E must add up"
    print(f"correct: relative error {err:.1e}")
