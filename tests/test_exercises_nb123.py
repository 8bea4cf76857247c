"""The "your turn" exercises of notebooks 01-03: each check passes with its reference solution
and fails with a wrong answer, without executing the notebooks.

The checks and solutions live in notebooks/solutions/ (checks_nb0X.py, nb0X.py); the notebooks
call the same check functions, and tests/test_notebooks.py executes them with the solutions.
"""
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
    found = {name: exercises_in(name) for name in ("01_wordpiece.ipynb", "02_layers_by_hand.ipynb", "03_bert.ipynb")}
    for name, calls in found.items():
        assert calls, f"{name} has no exercise"
        for module, attr in calls:
            assert module == f"nb{name[:2]}", f"{name} asks {module} for {attr}"
            assert hasattr({"nb01": nb01, "nb02": nb02, "nb03": nb03}[module], attr), f"solutions.{module} lacks {attr}"
    assert sum(len(c) for c in found.values()) >= 6


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


@pytest.fixture(scope="module")
def bert_vocab(data_dir):
    return load_vocab(data_dir / "bert-base-uncased" / "vocab.txt")


WORDS = ["unaffable", "tokenization", "xylophonist", "snow☃man", "whaleman", "x" * 101, "the"]


def test_wordpiece_check_passes_with_the_solution(bert_vocab):
    checks_nb01.check_wordpiece_word(nb01.wordpiece_word, bert_vocab, WORDS)


def test_toy_cases_are_what_the_library_does():
    from minibert.wordpiece import WordpieceTokenizer
    library = WordpieceTokenizer(checks_nb01.TOY_VOCAB)
    for word, expected in checks_nb01.TOY_CASES.items():
        assert library.tokenize_word(word) == expected


@pytest.mark.parametrize("wrong", [shortest_match, unk_only_the_stuck_piece])
def test_wordpiece_check_fails_with_a_wrong_answer(wrong, bert_vocab):
    with pytest.raises(AssertionError):
        checks_nb01.check_wordpiece_word(wrong, bert_vocab, WORDS)


def test_wordpiece_stub_raises():
    def stub(word, vocab):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        checks_nb01.check_wordpiece_word(stub, {})


# ---------------------------------------------------------------------------- notebook 02


def test_gelu_tanh_backward_check():
    checks_nb02.check_gelu_tanh_backward(nb02.gelu_tanh_backward)
    checks_nb02.check_gelu_tanh_backward(F.gelu_tanh_backward)  # the library agrees

    def exact_gelu_derivative(dout, cache):  # the erf GELU's derivative: close, but another function
        return F.gelu_backward(dout, F.gelu_forward(cache[0])[1])

    def forgets_inner_derivative(dout, cache):
        x, t = cache
        return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t))

    for wrong in (exact_gelu_derivative, forgets_inner_derivative):
        with pytest.raises(AssertionError):
            checks_nb02.check_gelu_tanh_backward(wrong)


def test_layernorm_by_hand_check():
    checks_nb02.check_layernorm_by_hand(nb02.layernorm_dx_by_hand)
    x = np.array([1.0, 2.0, 6.0])
    y, cache = F.layernorm_forward(x, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(F.layernorm_backward(np.array([1.0, 0, 0]), cache)[0], nb02.layernorm_dx_by_hand,
                               atol=1e-12)
    r, xhat, g = cache.rstd, cache.xhat, np.array([1.0, 0, 0])
    for wrong in (r * (g - xhat * (g * xhat).mean()),  # the mean term forgotten
                  r * (g - g.mean()),  # the variance term forgotten
                  np.array([1.0, 0, 0])):  # dout passed through
        with pytest.raises(AssertionError):
            checks_nb02.check_layernorm_by_hand(wrong)


def test_embedding_backward_check():
    checks_nb02.check_embedding_backward(nb02.embedding_backward_without_scatter_add)
    checks_nb02.check_embedding_backward(
        lambda dout, ids, V: F.embedding_backward(dout, F.embedding_forward(ids, np.zeros((V, dout.shape[-1])))[1]))

    def fancy_index_add(dout, ids, V):  # dW[ids] += dout: of repeated ids only one survives
        dW = np.zeros((V, dout.shape[-1]))
        dW[ids] += dout
        return dW

    with pytest.raises(AssertionError):
        checks_nb02.check_embedding_backward(fancy_index_add)


def test_cross_entropy_backward_check():
    checks_nb02.check_cross_entropy_backward(nb02.cross_entropy_backward)

    def over_all_rows(logits, labels):  # divides by N, not by the labelled count
        return nb02.cross_entropy_backward(logits, labels) * (labels != -100).sum() / len(labels)

    def ignored_rows_not_zeroed(logits, labels):
        p = F.softmax_forward(logits)[0]
        valid = labels != -100
        p[np.arange(len(labels))[valid], labels[valid]] -= 1
        return p / valid.sum()

    for wrong in (over_all_rows, ignored_rows_not_zeroed):
        with pytest.raises(AssertionError):
            checks_nb02.check_cross_entropy_backward(wrong)


def softmax_backward_forgets_sum(dout, y):
    return y * dout  # the "- sum(dout * y)" term dropped: notebook 02's broken softmax


def test_softmax_failure_prediction_matches_what_breaks():
    """The parameters whose gradient the broken softmax changes are exactly the solution's prediction.

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
    predicted = nb02.predict_softmax_failures(list(good), cfg.num_hidden_layers)
    assert len(changed) == 25
    checks_nb02.check_softmax_failures(predicted, changed)
    layernorm_lesson = {n for n in good if not n.startswith("encoder.layer.1.output.LayerNorm")}
    with pytest.raises(AssertionError):  # the LayerNorm lesson's answer is not this one
        checks_nb02.check_softmax_failures(layernorm_lesson, changed)


# ---------------------------------------------------------------------------- notebook 03


def test_pooler_backward_check():
    checks_nb03.check_pooler_backward(nb03.pooler_backward)

    def forgets_tanh(dpooled, h, W, pooled):
        return nb03.pooler_backward(dpooled, h, W, np.zeros_like(pooled))  # as if tanh' were 1

    def every_position(dpooled, h, W, pooled):
        dh, dW, db = nb03.pooler_backward(dpooled, h, W, pooled)
        return dh + dh[:, :1], dW, db  # gradient sent to every position, not only [CLS]

    for wrong in (forgets_tanh, every_position):
        with pytest.raises(AssertionError):
            checks_nb03.check_pooler_backward(wrong)


def test_tied_embedding_grad_check():
    checks_nb03.check_tied_embedding_grad(nb03.tied_embedding_grad)

    def decoder_path_only(ids, dx_emb, t, dlogits, V):
        return dlogits.T @ t

    def input_path_only(ids, dx_emb, t, dlogits, V):
        return nb03.tied_embedding_grad(ids, dx_emb, t, np.zeros_like(dlogits), V)

    for wrong in (decoder_path_only, input_path_only):
        with pytest.raises(AssertionError):
            checks_nb03.check_tied_embedding_grad(wrong)
