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


def embeddings_backward(g, ids, types, num_words, num_positions, num_types=2):
    """e = word[ids] + position[0..T-1] + type[types]: g = dL/de (B, T, H) -> the three tables' gradients."""
    B, T, H = g.shape
    dword = np.zeros((num_words, H))
    np.add.at(dword, ids, g)  # a lookup's backward is a scatter-add: repeated ids add up
    dtype = np.zeros((num_types, H))
    np.add.at(dtype, types, g)  # the same, with two rows used by many positions
    dposition = np.zeros((num_positions, H))
    dposition[:T] = g.sum(axis=0)  # (T, H): the (1, T, H) lookup was broadcast over the batch
    return dword, dposition, dtype


def mask_tokens(input_ids, special_ids, vocab_size, mask_id, rng, prob=0.15):
    """BERT's masked-LM corruption: each token not in `special_ids` is chosen with probability
    `prob`; a chosen token becomes mask_id (80%), a uniformly random id (10%) or stays (10%).
    Returns (corrupted ids, labels), both (B, T); labels are the original id where chosen, -100 elsewhere."""
    ids = input_ids.copy()
    chosen = (rng.random(ids.shape) < prob) & ~np.isin(ids, list(special_ids))  # (B, T)
    labels = np.where(chosen, input_ids, -100)
    r = rng.random(ids.shape)  # one draw per position decides what a chosen one becomes
    ids[chosen & (r < 0.8)] = mask_id
    to_random = chosen & (r >= 0.9)
    ids[to_random] = rng.integers(vocab_size, size=int(to_random.sum()))
    return ids, labels
