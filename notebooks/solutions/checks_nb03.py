"""The checks of notebook 03's exercises: the notebook calls them, and so does
tests/test_exercises_nb123.py (which also proves each one fails on plausible wrong answers).

Gradients are compared with finite differences in float64 (gradcheck.py); the masking function
is checked statistically on a large batch. A failing check says what is wrong (a shape, a
missing path, a transpose, which rule of the recipe) without printing the expected values.
"""
import numpy as np

import minibert.functional as F
from gradcheck import assert_gradients, numerical_grad, what_is_wrong


def embeddings_case(seed=8):
    """ids and types (2, 5) with repeats, tables word (9, 3), position (7, 3) (more rows than T), type (2, 3), G."""
    rng = np.random.default_rng(seed)
    ids = np.array([[2, 5, 5, 8, 3], [2, 7, 5, 3, 4]])  # 5 three times, 2 and 3 twice; 0, 1, 6 unused
    types = np.array([[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]])
    tables = {"word": rng.normal(size=(9, 3)), "position": rng.normal(size=(7, 3)), "type": rng.normal(size=(2, 3))}
    return ids, types, tables, rng.normal(size=(2, 5, 3))


def check_embeddings_backward(embeddings_backward):
    """embeddings_backward(g, ids, types, V, P) -> dword (V, H), dposition (P, H), dtype (2, H) for
    e = word[ids] + position[0..T-1] + type[types], g = dL/de (B, T, H)."""
    ids, types, tables, G = embeddings_case()
    T = ids.shape[1]
    word, position, type_ = tables["word"], tables["position"], tables["type"]
    loss = lambda: float(((word[ids] + position[np.arange(T)] + type_[types]) * G).sum())
    answer = embeddings_backward(G, ids, types, len(word), len(position))
    assert isinstance(answer, tuple) and len(answer) == 3, "return three arrays: dword, dposition, dtype"
    dword, dpos, dtype = (np.asarray(a, dtype=np.float64) for a in answer)
    if dpos.shape == G.shape or dpos.shape == (T, G.shape[-1]):
        raise AssertionError(f"dposition: shape {dpos.shape}, but the position table has shape {position.shape}: "
                             "the lookup position[0..T-1] was broadcast over the batch, so sum over the batch, "
                             "and the rows from T on were never used")
    fancy = np.zeros_like(word)
    fancy[ids] += G  # repeated ids collapse to one
    problems = [what_is_wrong("dword", dword, numerical_grad(loss, word),
                              [("the rows of repeated ids must add up (dW[ids] += g keeps only one of them)", fancy)]),
                what_is_wrong("dposition", dpos, numerical_grad(loss, position),
                              [("position t's row gets g[:, t] summed over the batch, not averaged",
                                np.pad(G.mean(0), ((0, len(position) - T), (0, 0))))]),
                what_is_wrong("dtype", dtype, numerical_grad(loss, type_))]
    assert_gradients(problems)
    print("correct: all three tables agree with finite differences")


def check_pooler_backward(pooler_backward):
    """pooler_backward(dpooled, h, W, pooled) -> dh (B, T, H), dW, db for pooled = tanh(h[:, 0] W^T + b)."""
    rng = np.random.default_rng(4)
    B, T, H = 2, 4, 3
    h, W, b = rng.normal(size=(B, T, H)), rng.normal(size=(H, H)), rng.normal(size=H)
    G = rng.normal(size=(B, H))
    pooled = lambda: np.tanh(h[:, 0] @ W.T + b)  # (B, H)
    loss = lambda: float((pooled() * G).sum())
    answer = pooler_backward(G, h, W, pooled())
    assert isinstance(answer, tuple) and len(answer) == 3, "return three arrays: dh, dW, db"
    dh, dW, db = answer
    dz = G * (1 - pooled() ** 2)
    every = np.repeat((dz @ W)[:, None], T, axis=1)
    problems = [what_is_wrong("dh", dh, numerical_grad(loss, h),
                              [("only position 0 ([CLS]) feeds the pooler: the other positions get 0 from it", every),
                               ("tanh' = 1 - tanh^2 is missing", np.pad((G @ W)[:, None], ((0, 0), (0, T - 1), (0, 0))))]),
                what_is_wrong("dW", dW, numerical_grad(loss, W),
                              [("transposed: W is (out, in), so dW = dz^T h[:, 0]", h[:, 0].T @ dz),
                               ("tanh' = 1 - tanh^2 is missing", G.T @ h[:, 0])]),
                what_is_wrong("db", db, numerical_grad(loss, b), [("tanh' = 1 - tanh^2 is missing", G.sum(0))])]
    assert_gradients(problems)
    print("correct: dh, dW and db agree with finite differences")


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
    decoder = dlogits.T @ t
    lookup = np.zeros_like(E)
    np.add.at(lookup, ids.reshape(-1), dx_emb.reshape(-1, H))
    fancy = np.zeros_like(E)
    fancy[ids.reshape(-1)] += dx_emb.reshape(-1, H)
    mistakes = [("only the decoder's gradient: the lookup at the input uses E too, and the two add", decoder),
                ("only the lookup's gradient: the decoder (logits = t E^T) uses E too, and the two add", lookup),
                ("the lookup's rows of repeated ids must add up (scatter-add)", decoder + fancy)]
    assert_gradients([what_is_wrong("dE", tied_embedding_grad(ids, dx_emb, t, dlogits, V), numeric, mistakes)])
    print("correct: both uses of E add up, and agree with finite differences")


# ------------------------------------------------------------------------------ the 80/10/10 masking

PAD, CLS, SEP, MASK, VOCAB = 0, 101, 102, 103, 30522  # BERT's uncased ids


def masking_batch(seed=9, rows=1000, length=64):
    """(rows, length) ids of `[CLS] A [SEP] B [SEP]` pairs with padding, words drawn from a Zipf-like law."""
    rng = np.random.default_rng(seed)
    ids = np.full((rows, length), PAD)
    for r in range(rows):
        n = int(rng.integers(length // 2, length + 1))  # real length; the rest is padding
        words = 1000 + np.minimum(rng.zipf(1.3, size=n), VOCAB - 1001)  # frequent words repeat, as in text
        ids[r, :n] = words
        ids[r, 0], ids[r, n // 2], ids[r, n - 1] = CLS, SEP, SEP
    return ids


def check_mask_tokens(mask_tokens):
    """mask_tokens(input_ids, special_ids, vocab_size, mask_id, rng) -> (corrupted ids, labels), both (B, T)."""
    ids = masking_batch()
    special = {PAD, CLS, SEP}
    before = ids.copy()
    answer = mask_tokens(ids, special, VOCAB, MASK, np.random.default_rng(0))
    assert isinstance(answer, tuple) and len(answer) == 2, "return two arrays: the corrupted ids and the labels"
    corrupted, labels = (np.asarray(a) for a in answer)
    assert np.array_equal(ids, before), "input_ids changed in place: work on a copy (the caller keeps the original)"
    for name, a in (("the corrupted ids", corrupted), ("labels", labels)):
        assert a.shape == ids.shape, f"{name}: shape {a.shape}, but the input has shape {ids.shape}"
    chosen = labels != -100
    is_special = np.isin(ids, list(special))
    assert chosen.mean() < 0.5, f"{chosen.mean():.0%} of the labels are not -100: labels are -100 wherever the token was not chosen"
    assert not (chosen & (ids == PAD)).any(), "a padding position was chosen: padding is never predicted"
    assert not (chosen & is_special).any(), "[CLS] or [SEP] was chosen: special tokens are never predicted"
    share = chosen.sum() / (~is_special).sum()
    assert 0.14 < share < 0.16, (f"you chose {share:.1%} of the real tokens, BERT chooses 15%"
                                 + (" (are labels -100 wherever the token was not chosen?)" if share > 0.9 else ""))
    assert np.array_equal(labels[chosen], ids[chosen]), \
        "at a chosen position the label is the original token id (what the model must recover), not what it sees"
    assert np.array_equal(corrupted[~chosen], ids[~chosen]), "a position that was not chosen changed"
    to_mask, kept = corrupted[chosen] == MASK, corrupted[chosen] == ids[chosen]
    other = ~to_mask & ~kept
    for what, part, want in (("became [MASK]", to_mask, 0.8), ("kept their token", kept, 0.1),
                             ("became another token", other, 0.1)):
        assert abs(part.mean() - want) < 0.03, f"of the chosen positions {part.mean():.1%} {what}; BERT: {want:.0%}"
    random_ids = corrupted[chosen][other]
    assert len(np.unique(random_ids)) > 0.8 * len(random_ids) and random_ids.max() > VOCAB // 2, \
        "the replacements are not spread over the vocabulary: draw each one uniformly from 0..vocab_size-1"
    again = mask_tokens(ids, special, VOCAB, MASK, np.random.default_rng(0))
    other_seed = mask_tokens(ids, special, VOCAB, MASK, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(answer, again)) and \
        not np.array_equal(answer[1], other_seed[1]), \
        "draw every random choice from the rng you are given (the same rng seed must give the same masks)"
    print(f"correct on {int((~is_special).sum()):,} real tokens: {share:.1%} chosen; of those {to_mask.mean():.1%} "
          f"[MASK], {kept.mean():.1%} kept, {other.mean():.1%} another token; specials and padding never")
