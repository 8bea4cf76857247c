"""The checks of notebook 04's exercises (TinyBERT): the notebook calls them, and so does
tests/test_exercises_nb04.py (which also proves each one fails on plausible wrong answers).

Each check measures rather than trusts: the gradients against finite differences of
minibert's forward in float64 (gradcheck.py), the distillation step against minibert's own
`Distiller` on a tiny model. A failing check says *what* is wrong (a shape, a sign, a
factor, a missing term, the mask) and never prints the values it expected.
"""
import numpy as np

import minibert.functional as F
from gradcheck import numerical_grad, rel_error
from minibert import BertConfig
from minibert.distill import Distiller, FitDense, attention_loss_forward, hidden_loss_forward, layer_mapping
from minibert.model import BertForSequenceClassification


def _array(x, what):
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AssertionError(f"{what}: expected an array of numbers, got {type(x).__name__}") from e


def _compare(got, want, what, factors=()):
    """Assert got == want (float64 arrays of one shape); else say what is wrong, never the values.

    factors: (factor, explanation) pairs: when got is about factor x want, the explanation is the message.
    """
    got = _array(got, what)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = rel_error(got, want)
    if err < 1e-7:
        return err
    scale = float((got * want).sum() / (want * want).sum())  # got ~ scale x want along want's direction
    proportional = rel_error(got, scale * want) < 1e-6
    if proportional and np.isclose(scale, -1.0, rtol=1e-3):
        raise AssertionError(f"{what}: the sign is flipped (uphill: it increases the loss)")
    for factor, explanation in factors:
        if proportional and np.isclose(scale, factor, rtol=1e-3):
            raise AssertionError(f"{what}: {explanation}")
    if proportional:
        raise AssertionError(f"{what}: the right direction, but {scale:.3g} times too large (a missing or extra "
                             f"factor: the 2 of the square? the 1/n of the mean?)")
    raise AssertionError(f"{what}: relative error {err:.1e}, not the gradient")


# ---------------------------------------------------------------------------- §1 the teacher's targets


def check_teacher_targets(teacher_targets):
    """teacher_targets(t_hidden, t_scores, M) -> (M + 1 hidden targets, M score targets), uniform mapping."""
    for M, N in [(3, 6), (2, 6), (4, 12), (1, 4), (6, 6), (2, 4)]:
        # every entry a different constant array, so each answer is recognised by its value
        t_hidden = [np.full((1, 2, 3), 100.0 + i) for i in range(N + 1)]  # entry i: layer Ti (T0 = embeddings)
        t_scores = [np.full((1, 2, 2, 2), 200.0 + i) for i in range(N)]  # entry i: layer T(i+1)
        g = layer_mapping(M, N)  # minibert's uniform mapping: g(1..M), 1-based
        where = f"student of {M} layers, teacher of {N}"
        try:
            hidden, scores = teacher_targets(t_hidden, t_scores, M)
        except IndexError as e:
            raise AssertionError(f"{where}: an index past the end of a teacher list ({e}): attention_scores has "
                                 f"N entries, entry i is layer T(i+1)") from e
        assert len(hidden) == M + 1, (f"{where}: {len(hidden)} hidden-state targets; S0 (the embeddings) to S{M} "
                                      f"need M + 1")
        assert len(scores) == M, f"{where}: {len(scores)} attention-score targets; S1 to S{M} need M"
        picked = [int(np.asarray(h).flat[0]) - 100 for h in hidden]  # which hidden_states entry each is
        assert picked[0] == 0, f"{where}: S0, the embedding output, imitates the teacher's embedding output"
        assert picked == sorted(picked) and len(set(picked)) == len(picked), \
            f"{where}: the hidden-state targets are not in increasing teacher-layer order"
        for m in range(1, M + 1):
            assert picked[m] == g[m - 1], (f"{where}: S{m}'s hidden-state target is the wrong teacher layer: "
                                           f"uniform is g(m) = m N / M, and hidden_states[i] is layer Ti")
            got = int(np.asarray(scores[m - 1]).flat[0]) - 200
            assert got == g[m - 1] - 1, (f"{where}: S{m}'s attention-score target is off by {got - (g[m - 1] - 1)} "
                                         f"entries: attention_scores[i] is layer T(i+1)")
    print("correct on 6 (M, N) pairs, the student as deep as the teacher included")


# ---------------------------------------------------------------------------- §2a the attention loss


def check_attention_loss_backward(attention_loss_backward):
    """attention_loss_backward(dL, s_scores, t_scores, mapping) -> M gradients dL/dS_m (B, NH, T, T)."""
    rng = np.random.default_rng(7)
    B, NH, T = 2, 2, 5
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])  # (B, T) the second sequence ends in 2 padded keys
    additive = (1 - mask)[:, None, None, :] * -10000.0  # (B, 1, 1, T)
    s_scores = [rng.normal(scale=3.0, size=(B, NH, T, T)) + additive for _ in range(2)]  # M = 2
    t_scores = [rng.normal(scale=3.0, size=(B, NH, T, T)) + additive for _ in range(4)]  # N = 4
    # a few real keys where the *student* alone scores below -100, so the clamp cuts its side only
    s_scores[0][0, 1, 2, 1] = s_scores[1][0, 0, 4, 2] = -150.0
    mapping = layer_mapping(2, 4)
    dL = 0.7  # the upstream gradient

    def loss():
        return dL * float(attention_loss_forward(s_scores, t_scores, mapping)[0])

    numeric = [numerical_grad(loss, s) for s in s_scores]
    got = attention_loss_backward(dL, s_scores, t_scores, mapping)
    assert len(got) == 2, f"{len(got)} gradients: one per student layer (M = 2)"
    padded = (np.broadcast_to(additive, (B, NH, T, T)) < 0)  # the padded keys
    for m in range(2):
        g = _array(got[m], f"layer S{m + 1}")
        assert g.shape == (B, NH, T, T), f"layer S{m + 1}: shape {g.shape}, expected {(B, NH, T, T)}"
        assert not g[padded].any(), f"layer S{m + 1}: a gradient on padded keys: clamp both sides first"
        cut = (s_scores[m] <= -100) & ~padded  # where the clamp replaced the student's score by a constant
        assert not g[cut].any(), (f"layer S{m + 1}: a gradient where the student's score is clamped: there the "
                                  f"clamp outputs the constant 0, so no gradient passes (the mask 1[S > -100])")
        _compare(g, numeric[m], f"layer S{m + 1}",
                 factors=[(0.5, "half the gradient: the derivative of a square brings a 2"),
                          (1 / dL, "the upstream gradient dL is missing"),
                          (B * NH * T * T, "n times too large: each layer's term is a mean over its n = B NH T T "
                                           "entries"),
                          (NH * T * T, "divided by B only: each layer's term is a mean over all B NH T T entries")])
    print("correct: padded keys and clamped scores get no gradient, the rest matches finite differences")


# ---------------------------------------------------------------------------- §2b the hidden-state loss


def check_hidden_loss_backward(hidden_loss_backward):
    """hidden_loss_backward(dL, s_hidden, t_hidden, pairs, W, b) -> (dstates, dW, db)."""
    rng = np.random.default_rng(8)
    B, T, d_s, d_t = 2, 3, 4, 6
    fit = FitDense(d_s, d_t, num_states=3, seed=1).astype(np.float64)
    W, b = fit.named_parameters()["fit_dense.weight"], fit.named_parameters()["fit_dense.bias"]  # (d_t, d_s), (d_t,)
    W[...] = rng.normal(size=W.shape)  # not fit_dense's small start: every term visible
    b[...] = rng.normal(size=b.shape)
    s_hidden = [rng.normal(size=(B, T, d_s)) for _ in range(3)]  # S0, S1, S2
    t_hidden = [rng.normal(size=(B, T, d_t)) for _ in range(5)]  # T0..T4
    pairs = [(0, 0), (1, 2), (2, 4)]  # the embeddings, then g(m) = 2m
    dL = 1.3

    def loss():
        return dL * float(hidden_loss_forward(fit.forward(s_hidden), t_hidden, pairs)[0])

    got = hidden_loss_backward(dL, s_hidden, t_hidden, pairs, W.copy(), b.copy())
    assert isinstance(got, tuple) and len(got) == 3, "return (dstates, dW, db)"
    dstates, dW, db = got
    assert len(dstates) == 3, f"{len(dstates)} state gradients: one per student state S0, S1, S2"
    dW, db = _array(dW, "dW"), _array(db, "db")
    assert dW.shape == W.shape, f"dW: shape {dW.shape}, expected {W.shape} (W is d_T x d_S, as PyTorch stores it)"
    assert db.shape == b.shape, f"db: shape {db.shape}, expected {b.shape} (sum over the batch and the positions)"
    for m in range(3):
        _compare(dstates[m], numerical_grad(loss, s_hidden[m]), f"dstate S{m}",
                 factors=[(0.5, "half the gradient: the derivative of a square brings a 2"),
                          (1 / dL, "the upstream gradient dL is missing"),
                          (B * T * d_t, "n times too large: each pair's term is a mean over n = B T d_T entries")])
    one_pair = [numerical_grad(lambda p=p: dL * float(hidden_loss_forward(fit.forward(s_hidden), t_hidden, [p])[0]), W)
                for p in pairs]  # dW of each pair's term alone
    for p, term in zip(pairs, one_pair):
        if rel_error(dW, term) < 1e-7:
            raise AssertionError(f"dW: only the term of pair {p}: W serves every pair, so its gradient is the sum "
                                 f"of one term per pair")
    _compare(dW, numerical_grad(loss, W), "dW", factors=[(0.5, "half the gradient: the 2 of the square")])
    _compare(db, numerical_grad(loss, b), "db", factors=[(0.5, "half the gradient: the 2 of the square")])
    print("correct: every state, and W and b summed over the 3 pairs, match finite differences")


# ---------------------------------------------------------------------------- §2d the soft cross-entropy


def check_soft_cross_entropy_backward(soft_cross_entropy_backward):
    """soft_cross_entropy_backward(z_S, z_T, t) -> dL/dz_S of F.soft_cross_entropy_forward (batchmean)."""
    rng = np.random.default_rng(4)
    z_s, z_t = rng.normal(scale=2.0, size=(2, 5, 3))  # (B, C) each
    for t in (1.0, 2.0, 5.0):
        numeric = numerical_grad(lambda: float(F.soft_cross_entropy_forward(z_s, z_t, t)[0]), z_s)
        got = soft_cross_entropy_backward(z_s, z_t, t)
        _compare(got, numeric, f"temperature {t:g}",
                 factors=[(t, "t times too large: the chain rule through z/t brings a 1/t"),
                          (t ** 2, "t^2 times too large: that is Hinton's factor, not part of this loss"),
                          (5.0, "B times too large: the loss is a mean over the batch")] if t != 1 else
                 [(5.0, "B times too large: the loss is a mean over the batch")])
    print("correct at temperatures 1, 2 and 5")


# ---------------------------------------------------------------------------- §5 one distillation step


def tiny_student(seed=3):
    """A tiny float64 classifier (2 layers x 8, 2 heads, 3 classes) in eval mode: no dropout."""
    cfg = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                     max_position_embeddings=16, initializer_range=0.2)
    return BertForSequenceClassification(cfg, num_labels=3, seed=seed).astype(np.float64).eval()


def reference_kd_step(student, batch, teacher_logits, t, alpha, lr):
    """minibert's kd (Distiller, method "kd"), its backward, and the SGD update: the loss, as a float."""
    distiller = Distiller(student.config, student.config, method="kd", weights={"kd": alpha, "hard": 1 - alpha},
                          temperature=t)
    student.zero_grad()
    out = student(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    losses = distiller(out, {"logits": teacher_logits}, stage="prediction", attention_mask=batch["attention_mask"],
                       labels=batch["labels"])
    distiller.backward_into(student)
    grads = student.named_gradients()
    for name, p in student.named_parameters().items():
        p -= lr * grads[name]
    return float(losses["total"])


def _kd_terms(z, teacher_logits, labels, t):
    """(the soft cross-entropy at t without t^2, the gold labels' cross-entropy) of logits z: for diagnosis."""
    return (float(F.soft_cross_entropy_forward(z, teacher_logits, t)[0]), float(F.cross_entropy_forward(z, labels)[0]))


def check_kd_step(kd_step):
    """kd_step(student, batch, teacher_logits, t, alpha, lr) -> the loss; updates the student in place."""
    rng = np.random.default_rng(9)
    ids = rng.integers(1, 30, size=(4, 6))  # (B, T)
    ids[2, 4:] = ids[3, 3:] = 0  # two padded rows
    batch = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": (ids != 0).astype(np.int64),
             "labels": np.array([0, 2, 1, 2])}
    z_t = rng.normal(scale=2.0, size=(4, 3))  # (B, C) the teacher's logits
    lr = 0.1
    for t, alpha in [(1.0, 1.0), (3.0, 1.0), (2.0, 0.0), (2.0, 0.3)]:
        where = f"t = {t:g}, alpha = {alpha:g}"
        mine, ref = tiny_student(), tiny_student()
        before = {k: p.copy() for k, p in ref.named_parameters().items()}
        z = ref(ids, None, batch["attention_mask"]).logits
        soft, hard = _kd_terms(z, z_t, batch["labels"], t)
        want_loss = reference_kd_step(ref, batch, z_t, t, alpha, lr)
        got_loss = kd_step(mine, batch, z_t, t, alpha, lr)
        assert np.ndim(got_loss) == 0, f"{where}: return the loss as one number"
        got_loss = float(got_loss)
        if not np.isclose(got_loss, want_loss, rtol=1e-6):
            mistakes = [(alpha * soft + (1 - alpha) * hard, "the loss lacks Hinton's t^2 on the soft term"),
                        ((1 - alpha) * t * t * soft + alpha * hard,
                         "alpha and 1 - alpha swapped: alpha weighs the soft targets, 1 - alpha the gold labels"),
                        (alpha * t * t * soft, "the loss lacks the gold labels' term (1 - alpha) CE(z, y)")]
            for value, mistake in mistakes:
                if np.isclose(got_loss, value, rtol=1e-6) and not np.isclose(value, want_loss, rtol=1e-6):
                    raise AssertionError(f"{where}: {mistake}")
            raise AssertionError(f"{where}: the loss is not alpha t^2 softCE_t + (1 - alpha) CE")
        names = list(ref.named_parameters())
        # every parameter's step in one vector (the key biases' true gradient is 0: only rounding there)
        step = np.concatenate([_array(mine.named_parameters()[k] - before[k], k).ravel() for k in names])
        want = np.concatenate([(ref.named_parameters()[k] - before[k]).ravel() for k in names])
        _compare(step, want, f"{where}, the update of the parameters",
                 factors=[(1 / t, "a factor t too small: the soft term's gradient is t^2 x (q - p)/(t B)"),
                          (t, "a factor t too large: the t^2 and the chain rule's 1/t leave t (q - p)/B"),
                          (1 / t ** 2, "t^2 too small: the t^2 multiplies the gradient as well as the loss"),
                          (t ** 2, "t^2 too large: the t^2 once, times the chain rule's 1/t, leaves t (q - p)/B"),
                          (4.0, "B times too large: the loss is a mean over the batch")] if t != 1 else
                 [(4.0, "B times too large: the loss is a mean over the batch")])
    print("correct at 4 settings: the loss and every parameter after one step match minibert's kd")
