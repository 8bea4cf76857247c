"""Reference solutions of notebook 03's exercises (BERT's pieces between the layers). Read them after trying."""
import numpy as np


def pooler_backward(dpooled, h, W, pooled):
    """pooled = tanh(h[:, 0] W^T + b): dpooled (B, H) -> dh (B, T, H), dW (H, H), db (H,)."""
    dz = dpooled * (1.0 - pooled**2)  # (B, H) through tanh
    dW = dz.T @ h[:, 0]  # (H, H)
    db = dz.sum(axis=0)  # (H,)
    dh = np.zeros_like(h)  # (B, T, H): only the [CLS] position feeds the pooler
    dh[:, 0] = dz @ W
    return dh, dW, db


def tied_embedding_grad(ids, dx_emb, t, dlogits, num_embeddings):
    """dE (V, H) of a word-embedding table used twice: looked up at the input, and as the decoder
    (logits = t E^T + b). The two paths' gradients add."""
    dE = np.zeros((num_embeddings, dx_emb.shape[-1]))
    np.add.at(dE, ids.reshape(-1), dx_emb.reshape(-1, dx_emb.shape[-1]))  # input path: scatter-add
    return dE + dlogits.T @ t  # decoder path: the weight gradient of a Linear, (V, N) @ (N, H)
