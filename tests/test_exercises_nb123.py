"""The "your turn" exercises of notebooks 01-03: each check passes with its reference solution,
fails with at least two plausible wrong answers, and says what is wrong without printing the
expected values — all without executing the notebooks.

The checks and solutions live in notebooks/solutions/ (checks_nb0X.py, nb0X.py); the notebooks
call the same check functions, and tests/test_notebooks.py executes them with the solutions.
"""
import contextlib
import functools
import io
import re
import unittest.mock

import nbformat
import numpy as np
import pytest

import minibert.functional as F
import minibert.kernels
from minibert import BertConfig, BertModel
from minibert.tokenizer import load_vocab

from conftest import ANSWER_CALL, NOTEBOOKS  # conftest puts notebooks/ on the path

from solutions import checks_nb01, checks_nb02, checks_nb03, nb01, nb02, nb03  # noqa: E402

NB123 = ("01_wordpiece.ipynb", "02_layers_by_hand.ipynb", "03_bert.ipynb")

# ---------------------------------------------------------------------------- the notebooks' cells


def exercises_in(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return [m.groups() for c in nb.cells if c.cell_type == "code" for m in ANSWER_CALL.finditer(c.source)]


def test_every_notebook_starts_with_the_setup_cell_of_the_readme():
    readme = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## The setup cell", 1)[1].split("```python\n", 1)[1].split("```", 1)[0].strip()
    assert setup.startswith("FULL = False")
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert first.source.strip() == setup, f"{path.name}: the first code cell is not the README's setup cell"


def test_every_exercise_cell_names_an_existing_solution_and_there_are_enough():
    found = {name: exercises_in(name) for name in NB123}
    for name, calls in found.items():
        assert calls, f"{name} has no exercise"
        for module, attr in calls:
            assert module == f"nb{name[:2]}", f"{name} asks {module} for {attr}"
            assert hasattr({"nb01": nb01, "nb02": nb02, "nb03": nb03}[module], attr), f"solutions.{module} lacks {attr}"
    assert sum(len(c) for c in found.values()) >= 12, found


def test_every_exercise_cell_is_stub_answer_check():
    """An exercise cell: the learner's stub (NotImplementedError or TODO), `answer(...)`, then `check(...)`.
    (tests/test_notebooks.py checks that its committed output is the "your turn" line.)"""
    for name in NB123:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        for cell in (c for c in nb.cells if c.cell_type == "code" and ANSWER_CALL.search(c.source)):
            src = cell.source
            assert "NotImplementedError" in src or "TODO" in src, f"{name}: an exercise without a stub:\n{src}"
            assert "check(" in src and src.index("answer(") < src.rindex("check("), \
                f"{name}: answer() must come before check():\n{src}"


# ---------------------------------------------------------------------------- failing without the answer

LONG_NUMBER = re.compile(r"\d\.\d{4,}")  # a value printed to 4+ decimals: no check message has one


def failure_text(check_fn, *args, **given):
    """What a learner sees when check_fn fails: its printed output and the AssertionError's message."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(AssertionError) as failure:
        check_fn(*args, **given)
    text = out.getvalue() + str(failure.value)
    assert not LONG_NUMBER.search(text), f"a value is printed: {text}"
    return text


def assert_values_not_shown(text, values, decimals=(2, 3, 4)):
    """None of `values` (the right answer) appears in `text` rounded to 2, 3 or 4 decimals."""
    for v in np.asarray(values, dtype=np.float64).ravel():
        if abs(v) >= 0.01:
            for d in decimals:
                assert f"{v:.{d}f}" not in text, f"the expected value {v:.{d}f} is printed: {text}"


# ---------------------------------------------------------------------------- notebook 01


def shortest_match(word, vocab):
    """A plausible wrong answer: the shortest piece that matches, not the longest."""
    pieces, start = [], 0
    while start < len(word):
        for end in range(start + 1, len(word) + 1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def unk_only_the_stuck_piece(word, vocab):
    """Another: longest match, but an unmatched character becomes [UNK] alone (the word is kept)."""
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                pieces.append(piece)
                break
        else:
            pieces.append("[UNK]")
            end = start + 1
        start = end
    return pieces


def no_length_limit(word, vocab):
    return nb01.wordpiece_word(word, vocab, max_chars=10**9)


@pytest.fixture(scope="module")
def bert_vocab(data_dir):
    return load_vocab(data_dir / "bert-base-uncased" / "vocab.txt")


WORDS = ["unaffable", "tokenization", "xylophonist", "snow☃man", "whaleman", "x" * 101, "the"]


def test_wordpiece_check_passes_with_the_solution(bert_vocab):
    checks_nb01.check_wordpiece_word(nb01.wordpiece_word, bert_vocab, WORDS)


def test_toy_words_tell_the_rules_apart():
    from minibert.wordpiece import WordpieceTokenizer
    library = WordpieceTokenizer(checks_nb01.TOY_VOCAB)
    assert library.tokenize_word("unaffable") == ["una", "##ffa", "##ble"]
    for wrong in (shortest_match, unk_only_the_stuck_piece, no_length_limit):
        assert any(wrong(w, checks_nb01.TOY_VOCAB) != library.tokenize_word(w) for w in checks_nb01.TOY_WORDS)


@pytest.mark.parametrize("wrong, says", [(shortest_match, "longer piece"),
                                         (unk_only_the_stuck_piece, "the whole word is one [UNK]"),
                                         (no_length_limit, "without searching")])
def test_wordpiece_check_fails_with_a_wrong_answer_and_says_why(wrong, says, bert_vocab):
    text = failure_text(checks_nb01.check_wordpiece_word, wrong, bert_vocab, WORDS)
    assert says in text, text
    for word in checks_nb01.TOY_WORDS:  # never the right pieces (of a word cut in several)
        expected = nb01.wordpiece_word(word, checks_nb01.TOY_VOCAB)
        if len(expected) > 1:
            assert str(expected) not in text and " ".join(expected) not in text, text


BOOK = "gutenberg/11-0.txt"  # Alice in Wonderland: the real text of the merges check


def test_bpe_merges_check_passes_with_the_solution(data_dir):
    checks_nb01.check_bpe_merges(nb01.bpe_merges, data_dir / BOOK)


def unweighted(word_counts, n):
    return nb01.bpe_merges(dict.fromkeys(word_counts, 1), n)


def _wrong_bpe(word_counts, n, keep_hashes=False, largest_tie=False):
    """BPE with one plausible mistake: keep_hashes joins a + b with b's '##' inside ('t' + '##h' ->
    't##h'); largest_tie breaks a tie of counts towards the largest pair instead of the smallest."""
    spelled = {w: [c if i == 0 else "##" + c for i, c in enumerate(w)] for w in word_counts}
    merges = []
    for _ in range(n):
        pairs = {}
        for w, s in spelled.items():
            for p in zip(s, s[1:]):
                pairs[p] = pairs.get(p, 0) + word_counts[w]
        a, b = (max(pairs, key=lambda p: (pairs[p], p)) if largest_tie else
                min(pairs, key=lambda p: (-pairs[p], p)))
        merged = a + b if keep_hashes else a + b[2:]
        for w, s in spelled.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == (a, b):
                    out.append(merged); i += 2
                else:
                    out.append(s[i]); i += 1
            spelled[w] = out
        merges.append(merged)
    return merges


@pytest.mark.parametrize("wrong, says", [(unweighted, "weight every pair"),
                                         (checks_nb01._merges_counted_once, "count them again"),
                                         (functools.partial(_wrong_bpe, keep_hashes=True), "'##' inside"),
                                         (functools.partial(_wrong_bpe, largest_tie=True), "ties go to the smallest")])
def test_bpe_merges_check_fails_with_a_wrong_answer_and_says_why(wrong, says, data_dir):
    text = failure_text(checks_nb01.check_bpe_merges, wrong, data_dir / BOOK)
    assert says in text, text
    right = nb01.bpe_merges(checks_nb01.TOY_COUNTS, 6)
    assert str(right) not in text and sum(t in text for t in right) <= 1, text  # at most the learner's own token


# ---------------------------------------------------------------------------- notebook 02


def test_embedding_backward_check():
    checks_nb02.check_embedding_backward(nb02.embedding_backward_without_scatter_add)
    checks_nb02.check_embedding_backward(
        lambda dout, ids, V: F.embedding_backward(dout, F.embedding_forward(ids, np.zeros((V, dout.shape[-1])))[1]))

    def fancy_index_add(dout, ids, V):  # dW[ids] += dout: of repeated ids only one survives
        dW = np.zeros((V, dout.shape[-1]))
        dW[ids] += dout
        return dW

    def mean_of_repeats(dout, ids, V):
        counts = np.maximum(np.bincount(ids.ravel(), minlength=V), 1)[:, None]
        return nb02.embedding_backward_without_scatter_add(dout, ids, V) / counts

    def unused_rows_not_zero(dout, ids, V):
        unused = np.bincount(ids.ravel(), minlength=V) == 0
        return nb02.embedding_backward_without_scatter_add(dout, ids, V) + unused[:, None]

    for wrong, says in ((fancy_index_add, "add up"), (mean_of_repeats, "add up"), (unused_rows_not_zero, "no id uses")):
        assert says in failure_text(checks_nb02.check_embedding_backward, wrong)


def test_layernorm_backward_check():
    checks_nb02.check_layernorm_backward(nb02.layernorm_backward)
    checks_nb02.check_layernorm_backward(F.layernorm_backward)  # the library agrees
    x, gamma, beta, G = checks_nb02.layernorm_case()
    right = nb02.layernorm_backward(G, F.layernorm_forward(x, gamma, beta)[1])

    def forgets(term):
        def backward(dout, cache):
            dx, dgamma, dbeta = nb02.layernorm_backward(dout, cache)
            g = dout * cache.gamma
            if term == "mean":
                dx = dx + cache.rstd * g.mean(-1, keepdims=True)
            elif term == "variance":
                dx = dx + cache.rstd * cache.xhat * (g * cache.xhat).mean(-1, keepdims=True)
            elif term == "gamma":
                dx = nb02.layernorm_backward(dout, cache._replace(gamma=np.ones_like(cache.gamma)))[0]
            elif term == "sign":
                dx = -dx
            elif term == "sum":
                dgamma = dout * cache.xhat  # not summed over the positions
            return dx, dgamma, dbeta
        return backward

    for term, says in (("mean", "mean term"), ("variance", "variance term"), ("gamma", "gamma is missing"),
                       ("sign", "sign"), ("sum", "shape")):
        text = failure_text(checks_nb02.check_layernorm_backward, forgets(term))
        assert says in text, text
        for values in right:
            assert_values_not_shown(text, values)


def test_layernorm_by_hand_check():
    checks_nb02.check_layernorm_by_hand(nb02.layernorm_dx_by_hand)
    x = np.array([1.0, 2.0, 6.0])
    y, cache = F.layernorm_forward(x, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(F.layernorm_backward(np.array([1.0, 0, 0]), cache)[0], nb02.layernorm_dx_by_hand,
                               atol=1e-12)
    r, xhat, g = cache.rstd, cache.xhat, np.array([1.0, 0, 0])
    for wrong, says in ((r * (g - xhat * (g * xhat).mean()), "mean term"),
                        (r * (g - g.mean()), "variance term"),
                        (np.array([1.0, 0, 0]), "dout itself"),
                        (np.array([0.2, -0.2, 0.1]), "sum to"),
                        (np.array([np.nan] * 3), "NaN"),
                        (nb02.layernorm_dx_by_hand + np.array([0.01, -0.01, 0.0]), "disagree")):
        text = failure_text(checks_nb02.check_layernorm_by_hand, wrong)
        assert says in text, text
        assert_values_not_shown(text, nb02.layernorm_dx_by_hand)


def test_gelu_tanh_backward_check():
    checks_nb02.check_gelu_tanh_backward(nb02.gelu_tanh_backward)
    checks_nb02.check_gelu_tanh_backward(F.gelu_tanh_backward)  # the library agrees

    def exact_gelu_derivative(dout, cache):  # the erf GELU's derivative: close, but another function
        return F.gelu_backward(dout, F.gelu_forward(cache[0])[1])

    def forgets_inner_derivative(dout, cache):
        x, t = cache
        return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t))

    def negated(dout, cache):
        return -nb02.gelu_tanh_backward(dout, cache)

    for wrong, says in ((exact_gelu_derivative, "erf"), (forgets_inner_derivative, "du/dx"), (negated, "sign")):
        assert says in failure_text(checks_nb02.check_gelu_tanh_backward, wrong)


def test_cross_entropy_backward_check():
    checks_nb02.check_cross_entropy_backward(nb02.cross_entropy_backward)

    def over_all_rows(logits, labels):  # divides by N, not by the labelled count
        return nb02.cross_entropy_backward(logits, labels) * (labels != -100).sum() / len(labels)

    def ignored_rows_not_zeroed(logits, labels):
        p = F.softmax_forward(logits)[0]
        valid = labels != -100
        p[np.arange(len(labels))[valid], labels[valid]] -= 1
        return p / valid.sum()

    def y_minus_p(logits, labels):
        return -nb02.cross_entropy_backward(logits, labels)

    for wrong, says in ((over_all_rows, "divide by the number of labelled rows"), (ignored_rows_not_zeroed, "-100"),
                        (y_minus_p, "sign")):
        assert says in failure_text(checks_nb02.check_cross_entropy_backward, wrong)


def reference_attention_forward(q, k, v, mask_add):
    """The forward the notebook gives with the exercise."""
    S = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1]) + mask_add
    P = F.softmax_forward(S)[0]
    return P @ v, P


def test_attention_backward_check():
    checks_nb02.check_attention_backward(nb02.attention_backward, reference_attention_forward)
    q, k, v, mask_add, G = checks_nb02.attention_case()
    right = nb02.attention_backward(G, q, k, v, reference_attention_forward(q, k, v, mask_add)[1])

    def softmax_without_rowsum(dcontext, q, k, v, P):
        dP = dcontext @ v.swapaxes(-1, -2)
        dS = P * dP  # the softmax backward without its "- rowsum(dP * P)"
        return dS @ k / np.sqrt(q.shape[-1]), dS.swapaxes(-1, -2) @ q / np.sqrt(q.shape[-1]), P.swapaxes(-1, -2) @ dcontext

    def untransposed_dk(dcontext, q, k, v, P):
        dq, _, dv = nb02.attention_backward(dcontext, q, k, v, P)
        dP = dcontext @ v.swapaxes(-1, -2)
        dS = P * (dP - (dP * P).sum(-1, keepdims=True))
        return dq, dS @ q / np.sqrt(q.shape[-1]), dv  # dS, not dS^T

    def unscaled(dcontext, q, k, v, P):
        dq, dk, dv = nb02.attention_backward(dcontext, q, k, v, P)
        return dq * np.sqrt(q.shape[-1]), dk * np.sqrt(q.shape[-1]), dv

    def untransposed_dv(dcontext, q, k, v, P):
        dq, dk, dv = nb02.attention_backward(dcontext, q, k, v, P)
        return dq, dk, P @ dcontext

    for wrong, says in ((softmax_without_rowsum, "rowsum"), (untransposed_dk, "transpose dS"),
                        (unscaled, "factor of 1.73"), (untransposed_dv, "transpose P")):
        text = failure_text(checks_nb02.check_attention_backward, wrong, reference_attention_forward)
        assert says in text, text
        for values in right:
            assert_values_not_shown(text, values)


def softmax_backward_forgets_sum(dout, y):
    return y * dout  # the "- sum(dout * y)" term dropped: notebook 02's broken softmax


@pytest.fixture(scope="module")
def softmax_failures():
    """(names, num_layers, the parameters whose gradient the broken softmax changes).

    (The notebook measures failures by finite differences; here the same fact is reached another
    way: compare the model's analytic gradients with the softmax backward correct and broken.)"""
    cfg = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16, initializer_range=0.5)
    model = BertModel(cfg, add_pooling_layer=False, seed=0).astype(np.float64).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(1, cfg.vocab_size, size=(2, 6))
    G = rng.normal(size=(2, 6, cfg.hidden_size))

    def gradients():
        model.zero_grad()
        model(ids)
        model.backward(dlast_hidden_state=G)
        return {n: g.copy() for n, g in model.named_gradients().items()}

    # the reference attention kernels call F.softmax_backward (the fast ones have their own)
    with unittest.mock.patch.multiple(minibert.kernels, attention_forward=F.attention_forward,
                                      attention_backward=F.attention_backward):
        good = gradients()
        with unittest.mock.patch.object(F, "softmax_backward", softmax_backward_forgets_sum):
            bad = gradients()
    changed = {n for n in good if not np.allclose(good[n], bad[n], rtol=1e-6, atol=1e-9)}
    return list(good), cfg.num_hidden_layers, changed


def test_softmax_failure_prediction_matches_what_breaks(softmax_failures):
    names, layers, changed = softmax_failures
    assert len(changed) == 25
    checks_nb02.check_softmax_failures(nb02.predict_softmax_failures, names=names, num_layers=layers, failed=changed)
    wrong_rules = {
        "the LayerNorm lesson's answer": lambda names, L: {n for n in names
                                                           if not n.startswith("encoder.layer.1.output.LayerNorm")},
        "nothing fails": lambda names, L: set(),
        "only queries and keys": lambda names, L: {n for n in names if ".query." in n or ".key." in n},
        "all but the key biases": lambda names, L: {n for n in changed if not n.endswith("key.bias")},
    }
    for rule in wrong_rules.values():
        text = failure_text(checks_nb02.check_softmax_failures, rule, names=names, num_layers=layers, failed=changed)
        assert "look again at" in text and "encoder.layer" not in text, text  # groups, never the names


# ---------------------------------------------------------------------------- notebook 03


def test_embeddings_backward_check():
    checks_nb03.check_embeddings_backward(nb03.embeddings_backward)
    ids, types, tables, G = checks_nb03.embeddings_case()
    right = nb03.embeddings_backward(G, ids, types, len(tables["word"]), len(tables["position"]))

    def position_not_summed(g, ids, types, V, P):
        dword, _, dtype = nb03.embeddings_backward(g, ids, types, V, P)
        return dword, g, dtype

    def fancy_word(g, ids, types, V, P):
        _, dpos, dtype = nb03.embeddings_backward(g, ids, types, V, P)
        dword = np.zeros((V, g.shape[-1]))
        dword[ids] += g
        return dword, dpos, dtype

    def position_mean(g, ids, types, V, P):
        dword, dpos, dtype = nb03.embeddings_backward(g, ids, types, V, P)
        return dword, dpos / len(g), dtype

    for wrong, says in ((position_not_summed, "sum over the batch"), (fancy_word, "repeated ids"),
                        (position_mean, "not averaged")):
        text = failure_text(checks_nb03.check_embeddings_backward, wrong)
        assert says in text, text
        for values in right:
            assert_values_not_shown(text, values)


def test_pooler_backward_check():
    checks_nb03.check_pooler_backward(nb03.pooler_backward)

    def forgets_tanh(dpooled, h, W, pooled):
        return nb03.pooler_backward(dpooled, h, W, np.zeros_like(pooled))  # as if tanh' were 1

    def every_position(dpooled, h, W, pooled):
        dh, dW, db = nb03.pooler_backward(dpooled, h, W, pooled)
        return np.repeat(dh[:, :1], h.shape[1], axis=1), dW, db  # gradient sent to every position, not only [CLS]

    def transposed_dW(dpooled, h, W, pooled):
        dh, dW, db = nb03.pooler_backward(dpooled, h, W, pooled)
        return dh, dW.T, db

    for wrong, says in ((forgets_tanh, "tanh'"), (every_position, "only position 0"), (transposed_dW, "transposed")):
        assert says in failure_text(checks_nb03.check_pooler_backward, wrong)


def test_tied_embedding_grad_check():
    checks_nb03.check_tied_embedding_grad(nb03.tied_embedding_grad)

    def decoder_path_only(ids, dx_emb, t, dlogits, V):
        return dlogits.T @ t

    def input_path_only(ids, dx_emb, t, dlogits, V):
        return nb03.tied_embedding_grad(ids, dx_emb, t, np.zeros_like(dlogits), V)

    def fancy_lookup(ids, dx_emb, t, dlogits, V):
        dE = np.zeros((V, dx_emb.shape[-1]))
        dE[ids.reshape(-1)] += dx_emb.reshape(-1, dx_emb.shape[-1])
        return dE + dlogits.T @ t

    for wrong, says in ((decoder_path_only, "only the decoder"), (input_path_only, "only the lookup"),
                        (fancy_lookup, "scatter-add")):
        assert says in failure_text(checks_nb03.check_tied_embedding_grad, wrong)


def wrong_masking(mistake):
    """nb03.mask_tokens with one plausible mistake."""
    def mask_tokens(input_ids, special_ids, vocab_size, mask_id, rng, prob=0.15):
        ids = input_ids if mistake == "in place" else input_ids.copy()
        eligible = ~np.isin(ids, list(special_ids)) if mistake != "specials" else ids != 0
        if mistake == "padding":
            eligible = ~np.isin(ids, [s for s in special_ids if s != 0])
        draw = np.random.random if mistake == "global rng" else rng.random
        chosen = (draw(ids.shape) < prob) & eligible
        labels = np.where(chosen, input_ids, -100) if mistake != "labels everywhere" else input_ids.copy()
        r = draw(ids.shape)
        to_mask = r < (0.9 if mistake == "90/10/0" else 0.8)
        to_random = r >= 0.9
        original = input_ids.copy()
        ids[chosen & to_mask] = mask_id
        ids[chosen & to_random] = rng.integers(vocab_size, size=int((chosen & to_random).sum()))
        if mistake == "label what it sees":
            labels = np.where(chosen, ids, -100)
        del original
        return ids, labels
    return mask_tokens


def test_mask_tokens_check():
    checks_nb03.check_mask_tokens(nb03.mask_tokens)
    for mistake, says in (("in place", "in place"), ("specials", "special tokens"), ("padding", "padding"),
                          ("labels everywhere", "labels are -100"), ("90/10/0", "became [MASK]"),
                          ("label what it sees", "original token"), ("global rng", "rng you are given")):
        text = failure_text(checks_nb03.check_mask_tokens, wrong_masking(mistake))
        assert says in text, (mistake, text)


def test_the_masking_check_accepts_google_s_fixed_count_too():
    """Choosing exactly round(15%) per sequence (Google's create_pretraining_data) passes as well."""
    def fixed_count(input_ids, special_ids, vocab_size, mask_id, rng, prob=0.15):
        ids, labels = input_ids.copy(), np.full(input_ids.shape, -100)
        for row in range(len(ids)):
            candidates = np.flatnonzero(~np.isin(ids[row], list(special_ids)))
            n = max(1, int(round(len(candidates) * prob)))
            for pos in rng.permutation(candidates)[:n]:
                labels[row, pos] = ids[row, pos]
                r = rng.random()
                if r < 0.8:
                    ids[row, pos] = mask_id
                elif r >= 0.9:
                    ids[row, pos] = rng.integers(vocab_size)
        return ids, labels
    checks_nb03.check_mask_tokens(fixed_count)
