"""The checks of notebook 02's exercises: the notebook calls them, and so does
tests/test_exercises_nb123.py (which also proves each one fails on plausible wrong answers).

Each compares with finite differences in float64 (gradcheck.py), never with the library's
backward, and says what is wrong (a shape, the sign, a factor, a missing term, which rows)
without printing the values the answer should have.
"""
import numpy as np

import minibert.functional as F
from gradcheck import assert_gradients, numerical_grad, rel_error, what_is_wrong


def check_embedding_backward(embedding_backward):
    """embedding_backward(dout, ids, V) -> dW (V, D), with ids that repeat (in a row and across rows)."""
    rng = np.random.default_rng(2)
    V, D = 6, 3
    ids = np.array([[1, 3, 1, 5], [3, 3, 0, 1]])  # 1 three times, 3 three times, 2 and 4 never
    W = rng.normal(size=(V, D))
    G = rng.normal(size=(*ids.shape, D))
    numeric = numerical_grad(lambda: float((W[ids] * G).sum()), W)
    dW = np.asarray(embedding_backward(G, ids, V), dtype=np.float64)
    problem = what_is_wrong("dW", dW, numeric)
    if problem and dW.shape == numeric.shape:
        wrong = np.flatnonzero(np.abs(dW - numeric).max(axis=1) > 1e-7)
        used = np.bincount(ids.ravel(), minlength=V)
        if set(wrong) <= set(np.flatnonzero(used == 0)):
            problem = "dW: rows that no id uses must stay 0"
        elif set(wrong) <= set(np.flatnonzero(used > 1)):
            problem = "dW: only the rows of ids used more than once are wrong: do all their uses add up?"
    assert_gradients([problem])
    print(f"correct on repeated ids: relative error {rel_error(dW, numeric):.1e}")


def layernorm_case(seed=6):
    """Inputs of the LayerNorm checks: x (2, 3, 5), gamma, beta (5,), a random upstream G (2, 3, 5)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=1.0, scale=2.0, size=(2, 3, 5))
    gamma, beta = rng.normal(size=5), rng.normal(size=5)
    return x, gamma, beta, rng.normal(size=x.shape)


def check_layernorm_backward(layernorm_backward):
    """layernorm_backward(dout, cache) -> dx (..., D), dgamma (D,), dbeta (D,), cache = F.layernorm_forward's."""
    x, gamma, beta, G = layernorm_case()
    loss = lambda: float((F.layernorm_forward(x, gamma, beta)[0] * G).sum())
    cache = F.layernorm_forward(x, gamma, beta)[1]
    answer = layernorm_backward(G, cache)
    assert isinstance(answer, tuple) and len(answer) == 3, "return three arrays: dx, dgamma, dbeta"
    dx, dgamma, dbeta = answer
    xhat, r = cache.xhat, cache.rstd
    g = G * gamma  # the gradient reaching xhat
    mean_g, mean_gx = g.mean(-1, keepdims=True), (g * xhat).mean(-1, keepdims=True)
    dx_mistakes = [
        ("the mean term is missing (every x_i also moves mu)", r * (g - xhat * mean_gx)),
        ("the variance term is missing (every x_i also moves sigma)", r * (g - mean_g)),
        ("only the direct path: both the mean term and the variance term are missing", r * g),
        ("gamma is missing: the gradient reaching xhat is dout * gamma, not dout",
         r * (G - G.mean(-1, keepdims=True) - xhat * (G * xhat).mean(-1, keepdims=True))),
        ("the factor r = 1/sigma in front is missing", g - mean_g - xhat * mean_gx),
        ("the variance term has the wrong sign", r * (g - mean_g + xhat * mean_gx)),
        ("the means run over the wrong axis: LayerNorm normalises each position over its D features",
         r * (g - g.mean(0, keepdims=True) - xhat * (g * xhat).mean(0, keepdims=True))),
    ]
    param_mistakes = [("that is dbeta's formula: gamma multiplies xhat", G.sum((0, 1))),
                      ("that is dgamma's formula: beta is added as it is", (G * xhat).sum((0, 1)))]
    assert_gradients([what_is_wrong("dx", dx, numerical_grad(loss, x), dx_mistakes),
                      what_is_wrong("dgamma", dgamma, numerical_grad(loss, gamma), param_mistakes[:1]),
                      what_is_wrong("dbeta", dbeta, numerical_grad(loss, beta), param_mistakes[1:])],
                     hint="(gamma and beta are shared by every position: sum over all of them)")
    print("correct: dx, dgamma and dbeta agree with finite differences")


def check_layernorm_by_hand(dx):
    """dx: dL/dx for x = (1, 2, 6), gamma = 1, beta = 0, L = y_0 (dout = (1, 0, 0))."""
    x = np.array([1.0, 2.0, 6.0])
    numeric = numerical_grad(lambda: float(F.layernorm_forward(x, np.ones(3), np.zeros(3))[0][0]), x)
    dx = np.asarray(dx, dtype=np.float64)
    assert dx.shape == (3,), f"write three numbers, one per x_i (got shape {dx.shape})"
    assert np.isfinite(dx).all(), "some of your numbers are NaN or inf"
    if np.allclose(dx, numeric, atol=1e-6):
        print(f"correct: the three numbers agree with finite differences (and sum to {dx.sum():.0e})")
        return
    _, cache = F.layernorm_forward(x, np.ones(3), np.zeros(3))
    r, xhat, g = cache.rstd, cache.xhat, np.array([1.0, 0.0, 0.0])
    mistakes = [("the mean term is missing", r * (g - xhat * (g * xhat).mean())),
                ("the variance term is missing", r * (g - g.mean())),
                ("both the mean and the variance terms are missing: that is only the direct path", r * g),
                ("the factor r in front is missing", g - g.mean() - xhat * (g * xhat).mean()),
                ("the sign is wrong", -numeric),
                ("that is dout itself: the normalisation passes nothing through unchanged", g)]
    for description, wrong in mistakes:
        assert not np.allclose(dx, wrong, atol=1e-6), description
    assert abs(dx.sum()) < 1e-6, (f"your numbers sum to {dx.sum():.3g}: shifting every x_i by the same amount "
                                  "changes nothing, so the right ones sum to 0")
    wrong = [i for i in range(3) if abs(dx[i] - numeric[i]) > 1e-6]
    raise AssertionError(f"dL/dx_{wrong[0]}" + (" and the others" if len(wrong) > 1 else "")
                         + " disagree with finite differences: check mu, sigma^2 and r first")


def check_gelu_tanh_backward(gelu_tanh_backward):
    rng = np.random.default_rng(1)
    x = rng.normal(scale=2.0, size=(3, 7))
    G = rng.normal(size=x.shape)  # random upstream gradient: L = sum(gelu_tanh(x) * G)
    y, (x_, t) = F.gelu_tanh_forward(x)
    du = np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * x**2)
    mistakes = [
        ("that is the derivative of the exact (erf) GELU, Phi(x) + x phi(x): close, but not the tanh form's",
         F.gelu_backward(G, F.gelu_forward(x)[1])),
        ("the chain rule through u = sqrt(2/pi) (x + c x^3) is missing du/dx",
         G * (0.5 * (1 + t) + 0.5 * x * (1 - t**2))),
        ("the product rule's first term, 0.5 (1 + t), is missing", G * 0.5 * x * (1 - t**2) * du),
        ("tanh' is 1 - tanh^2, not 1 - tanh", G * (0.5 * (1 + t) + 0.5 * x * (1 - t) * du)),
    ]
    analytic = gelu_tanh_backward(G, (x_, t))
    assert_gradients([what_is_wrong("dx", analytic, numerical_grad(lambda: float((F.gelu_tanh_forward(x)[0] * G).sum()), x),
                                    mistakes)])
    print("correct: agrees with finite differences")


def check_cross_entropy_backward(cross_entropy_backward):
    """cross_entropy_backward(logits, labels) -> dlogits of F.cross_entropy_forward's mean loss."""
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(6, 5))
    labels = np.array([2, -100, 0, 4, -100, 2])  # two ignored rows: the mean is over the other 4
    numeric = numerical_grad(lambda: float(F.cross_entropy_forward(logits, labels)[0]), logits)
    dlogits = np.asarray(cross_entropy_backward(logits, labels), dtype=np.float64)
    problem = what_is_wrong("dlogits", dlogits, numeric)
    if problem and dlogits.shape == numeric.shape:
        ignored = labels == -100
        if np.abs(dlogits[ignored]).max() > 0:
            problem = "dlogits: the rows whose label is -100 must get zero gradient"
        elif rel_error(dlogits, numeric * 4 / 6) < 1e-7:
            problem = "dlogits: divide by the number of labelled rows, not by all rows"
    assert_gradients([problem], hint="(p - y on labelled rows, zero on ignored rows, and the right divisor)")
    print("correct: agrees with finite differences")


def attention_case(seed=7):
    """q, k, v (2, 2, 4, 3), an additive mask (the last key of sequence 0 is padding), a random dcontext."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(2, 2, 4, 3)) for _ in range(3))
    mask_add = np.zeros((2, 1, 1, 4))
    mask_add[0, ..., -1] = -10000.0
    return q, k, v, mask_add, rng.normal(size=q.shape)


def check_attention_backward(attention_backward, attention_forward):
    """attention_backward(dcontext, q, k, v, P) -> dq, dk, dv, for the notebook's attention_forward."""
    q, k, v, mask_add, G = attention_case()
    context, P = attention_forward(q, k, v, mask_add)
    answer = attention_backward(G, q, k, v, P)
    assert isinstance(answer, tuple) and len(answer) == 3, "return three arrays: dq, dk, dv"
    dq, dk, dv = answer
    loss = lambda: float((attention_forward(q, k, v, mask_add)[0] * G).sum())
    s = 1 / np.sqrt(q.shape[-1])
    T = lambda a: a.swapaxes(-1, -2)
    dP = G @ T(v)
    dS = F.softmax_backward(dP, P)
    dS_no_sum = P * dP  # softmax backward without its - rowsum(dP * P) term
    mistakes = {
        "q": [("the softmax backward lacks its - rowsum(dP * P) term", dS_no_sum @ k * s),
              ("dq = dS K / sqrt(d): with K, not with Q", dS @ q * s),
              ("dq = dS K / sqrt(d): the transpose of dS does not belong here", T(dS) @ k * s)],
        "k": [("the softmax backward lacks its - rowsum(dP * P) term", T(dS_no_sum) @ q * s),
              ("dk = dS^T Q / sqrt(d): the keys are the columns of S, so transpose dS", dS @ q * s),
              ("dk = dS^T Q / sqrt(d): with Q, not with K", T(dS) @ k * s)],
        "v": [("dv = P^T dcontext: the values are the columns of P, so transpose P", P @ G),
              ("dv = P^T dcontext, with the probabilities P, not the scores", T(dS) @ G)],
    }
    assert_gradients([what_is_wrong(f"d{name}", a, numerical_grad(loss, x), mistakes[name])
                      for name, a, x in (("q", dq, q), ("k", dk, k), ("v", dv, v))])
    print("correct: dq, dk and dv agree with finite differences (with a padded key)")


# What the exercise's parameter names look like, for naming the groups a prediction gets wrong.
def _group(name, num_layers):
    if name.startswith("embeddings."):
        return "the embeddings"
    layer = int(name.split(".")[2])
    part = name.split(".", 3)[3]
    where = "the last layer" if layer == num_layers - 1 else f"layer {layer}"
    for prefix, what in (("attention.self.query", "query"), ("attention.self.key", "key"),
                         ("attention.self.value", "value"), ("attention.output.dense", "attention output"),
                         ("attention.output.LayerNorm", "first LayerNorm"), ("intermediate", "feed-forward"),
                         ("output.dense", "feed-forward"), ("output.LayerNorm", "second LayerNorm")):
        if part.startswith(prefix):
            return f"{where}'s {what}"
    return where


def check_softmax_failures(predict_softmax_failures, names, num_layers, failed):
    """predict_softmax_failures(names, num_layers) -> the names you expect to fail; failed: the measured ones."""
    predicted = set(predict_softmax_failures(list(names), num_layers))
    unknown = predicted - set(names)
    assert not unknown, f"{len(unknown)} predicted names are not parameters of the model, e.g. {sorted(unknown)[0]!r}"
    missed, extra = set(failed) - predicted, predicted - set(failed)
    problems = []
    if missed:
        groups = sorted({_group(n, num_layers) for n in missed})
        problems.append(f"{len(missed)} parameters fail that your rule says pass; look again at: {', '.join(groups)}")
    if extra:
        groups = sorted({_group(n, num_layers) for n in extra})
        problems.append(f"{len(extra)} parameters pass that your rule says fail; look again at: {', '.join(groups)}")
    assert not problems, "; ".join(problems)
    print(f"correct: all {len(failed)} failing parameters predicted, and no others")
