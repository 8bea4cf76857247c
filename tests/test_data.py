"""Tests of the data layer (minibert.data: corpora, pre-training instances, the task registry,
metrics, encoding, batching, data roots) and the data/prepare_*.py scripts, on the real shared data."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minibert import data as D
from minibert.functional import IGNORE_INDEX

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "data"


# ----------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok(data_dir):
    from minibert.tokenizer import BertTokenizer

    return BertTokenizer(str(data_dir / "bert-base-uncased" / "vocab.txt"), do_lower_case=True)


@pytest.fixture(scope="module")
def wiki_docs(data_dir):
    return D.read_wikitext(data_dir / "wikitext-2-raw" / "wiki.valid.raw")


@pytest.fixture(scope="module")
def wiki_tokens(wiki_docs, tok):
    """The first 16 WikiText validation articles, WordPiece-tokenized (about 60k tokens)."""
    return D.tokenize_documents(wiki_docs[:16], tok)


@pytest.fixture(scope="module")
def pretrain(wiki_tokens, tok):
    return D.create_pretraining_examples(wiki_tokens, tok, rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------------------
# corpus readers
# ----------------------------------------------------------------------------------------


def test_split_sentences():
    text = "\u201cMy dear Mr. Bennet,\u201d said his lady. \u201cHave you heard?\u201d He said no.  H. G. Wells wrote it!  6 lb ."
    assert D.split_sentences(text) == [
        "\u201cMy dear Mr. Bennet,\u201d said his lady.",
        "\u201cHave you heard?\u201d",
        "He said no.",
        "H. G. Wells wrote it!",
        "6 lb .",
    ]
    assert D.split_sentences("closely related , H. americanus . It may grow") == [
        "closely related , H. americanus .", "It may grow"]
    assert D.split_sentences("   ") == []


def test_read_wikitext_synthetic(tmp_path):
    raw = (
        " \r\n = First Article = \r\n \r\n Opening text , with a well @-@ known fact . Then 1 @,@ 000 "
        "people came . It was 2 @.@ 5 m high .\r\n \r\n = = History = = \r\n \r\n More text here .\r\n"
        " = = = Sub section = = = \r\n Last line .\r\n = Second Article = \r\n \r\n"
        " = Third Article = \r\n Only one .\r\n"
    )
    p = tmp_path / "wiki.test.raw"
    p.write_bytes(raw.encode("utf-8"))
    assert D.read_wikitext(p) == [
        ["Opening text , with a well-known fact .", "Then 1,000 people came .", "It was 2.5 m high .",
         "More text here .", "Last line ."],
        ["Only one ."],  # the empty Second Article is dropped
    ]


def test_read_wikitext_real(data_dir, wiki_docs):
    path = data_dir / "wikitext-2-raw" / "wiki.valid.raw"
    lines = path.read_text(encoding="utf-8").replace("\r", "").split("\n")
    n_titles = sum(1 for ln in lines if ln.startswith(" = ") and not ln.startswith(" = = "))
    assert n_titles == 60
    assert len(wiki_docs) == n_titles  # every validation article has text
    assert wiki_docs[0][0].startswith("Homarus gammarus , known as the European lobster")
    assert wiki_docs[0][1] == "It is closely related to the American lobster , H. americanus ."
    everything = "\n".join(s for d in wiki_docs for s in d)
    for bad in ("@-@", "@,@", "@.@", "\r", "\ufeff", " = = ", "= Homarus gammarus ="):
        assert bad not in everything, bad
    assert "red-tipped" in everything and "hard-shelled" in everything  # from "red @-@ tipped" etc.
    assert all(s == s.strip() and s for d in wiki_docs for s in d)
    test_docs = D.read_wikitext(data_dir / "wikitext-2-raw" / "wiki.test.raw")
    assert len(test_docs) == 62 and test_docs[0][0].startswith("Robert Boulter is an English film")


def _gutenberg_like(body: str, bom=True) -> bytes:
    text = (
        "The Project Gutenberg EBook of Test, by Someone\n\nThis eBook is for the use of anyone anywhere.\n\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK TEST ***\n\n\n\nProduced by Volunteers\n\n\n"
        f"{body}\n\nEnd of the Project Gutenberg EBook of Test\n\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK TEST ***\n\n***** This file should be named x.txt *****\n"
        "Section 1. General Terms of Use and Redistributing Project Gutenberg-tm electronic works\n"
    )
    return (b"\xef\xbb\xbf" if bom else b"") + text.replace("\n", "\r\n").encode("utf-8")


def test_read_gutenberg_synthetic(tmp_path):
    body = ("CHAPTER I.\n\nIt was a dark and stormy night; the\nrain fell in _torrents_. Mr. Smith\nsaid "
            "nothing.\n\n    * * * * *\n\n\u201cWhy?\u201d asked\nshe.")
    p = tmp_path / "book.txt"
    p.write_bytes(_gutenberg_like(body))
    assert D.read_gutenberg(p) == [[
        "It was a dark and stormy night; the rain fell in torrents.",
        "Mr. Smith said nothing.",
        "\u201cWhy?\u201d asked she.",
    ]]
    # Without markers the whole file is the book (body-only files such as 11-0.txt).
    q = tmp_path / "plain.txt"
    q.write_text("First paragraph\nwrapped here.\n\nSecond one.\n", encoding="utf-8")
    assert D.read_gutenberg(q) == [["First paragraph wrapped here.", "Second one."]]


def test_read_gutenberg_real(data_dir):
    raw = (data_dir / "gutenberg" / "1342-0.txt").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw  # the quirks are really there
    (book,) = D.read_gutenberg(data_dir / "gutenberg" / "1342-0.txt")
    assert book[:3] == [
        "By Jane Austen",
        "Chapter 1",
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife.",
    ]
    assert book[-1].endswith("had been the means of uniting them.")
    text = "\n".join(book)
    for bad in ("\r", "\ufeff", "Gutenberg", "GUTENBERG", "LICENSE", "*** "):
        assert bad not in text, bad
    assert len(book) > 4000
    (alice,) = D.read_gutenberg(data_dir / "gutenberg" / "11-0.txt")  # body-only edition, no markers
    assert "Alice was beginning to get very tired of sitting by her sister on the bank, and of having " \
           "nothing to do: once or twice she had peeped into the book her sister was reading, but it had " \
           "no pictures or conversations in it, \u201cand what is the use of a book,\u201d thought Alice " \
           "\u201cwithout pictures or conversations?\u201d" in alice


def test_read_text_and_corpus(tmp_path, data_dir):
    p = tmp_path / "corpus.txt"
    p.write_bytes(b"\xef\xbb\xbfDoc one, sentence one.\r\nDoc one, sentence two.\r\n\r\n\r\nDoc two.\r\n\r\n")
    assert D.read_plain_text(p) == [["Doc one, sentence one.", "Doc one, sentence two."], ["Doc two."]]
    assert D.detect_corpus_format(p) == "text"
    assert D.detect_corpus_format(data_dir / "wikitext-2-raw" / "wiki.test.raw") == "wikitext"
    assert D.detect_corpus_format(data_dir / "gutenberg" / "84-0.txt") == "gutenberg"
    docs = D.read_corpus([data_dir / "wikitext-2-raw", data_dir / "gutenberg", p])
    assert len(docs) == 60 + 62 + 5 + 2
    assert docs[-2:] == D.read_plain_text(p)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        D.read_corpus(tmp_path / "nope.txt")


# ----------------------------------------------------------------------------------------
# pre-training instances
# ----------------------------------------------------------------------------------------


def test_pretraining_layout(pretrain, tok):
    x = pretrain
    n, t = x.input_ids.shape
    assert t == 128 and n > 300
    for a in (x.input_ids, x.token_type_ids, x.attention_mask, x.mlm_labels, x.next_sentence_label):
        assert a.dtype == np.int32
    lengths = x.attention_mask.sum(1)
    # the mask is a prefix of ones, padding is id 0, segment 0, label IGNORE_INDEX
    assert np.array_equal(x.attention_mask, (np.arange(t)[None] < lengths[:, None]).astype(np.int32))
    pad = x.attention_mask == 0
    assert (x.input_ids[pad] == 0).all() and (x.token_type_ids[pad] == 0).all()
    assert (x.mlm_labels[pad] == IGNORE_INDEX).all()
    assert (x.input_ids[:, 0] == tok.cls_token_id).all()
    orig = np.where(x.mlm_labels != IGNORE_INDEX, x.mlm_labels, x.input_ids)  # the uncorrupted tokens
    for i in range(n):
        L = lengths[i]
        seps = np.flatnonzero(orig[i, :L] == tok.sep_token_id)
        assert len(seps) == 2 and seps[1] == L - 1 and 1 < seps[0] < L - 2  # A and B non-empty
        assert (x.token_type_ids[i, : seps[0] + 1] == 0).all() and (x.token_type_ids[i, seps[0] + 1 : L] == 1).all()
        assert L <= 128
    assert (lengths == 128).mean() > 0.7  # most sequences are filled up (short_seq_prob 0.1)
    assert (lengths < 100).sum() > 0  # ...but some are short


def test_pretraining_masking_statistics(pretrain, tok):
    x = pretrain
    lengths = x.attention_mask.sum(1)
    masked = x.mlm_labels != IGNORE_INDEX
    n_masked = masked.sum(1)
    expected = np.minimum(20, np.maximum(1, np.round(lengths * 0.15))).astype(int)
    assert np.array_equal(n_masked, expected)
    # never [CLS], [SEP] or padding
    specials = np.isin(x.mlm_labels, [tok.cls_token_id, tok.sep_token_id, tok.pad_token_id])
    assert not (masked & specials).any()
    assert not masked[:, 0].any()
    non_special = lengths - 3
    assert 0.145 < n_masked.sum() / non_special.sum() < 0.16
    # 80% [MASK], 10% kept, 10% random, over ~7000 masked positions (tolerance ~ 4 sigma)
    inp, lab = x.input_ids[masked], x.mlm_labels[masked]
    frac_mask = np.mean(inp == tok.mask_token_id)
    frac_kept = np.mean(inp == lab)
    frac_random = np.mean((inp != lab) & (inp != tok.mask_token_id))
    assert masked.sum() > 5000
    assert abs(frac_mask - 0.8) < 0.02 and abs(frac_kept - 0.1) < 0.015 and abs(frac_random - 0.1) < 0.015
    # unmasked positions are never changed to [MASK]
    assert not (x.input_ids[~masked] == tok.mask_token_id).any()
    # random replacements are spread over the vocabulary, not a few ids
    rand_ids = inp[(inp != lab) & (inp != tok.mask_token_id)]
    assert len(np.unique(rand_ids)) > 0.9 * len(rand_ids) and rand_ids.max() < len(tok)


def test_pretraining_nsp_fraction(pretrain):
    frac = pretrain.next_sentence_label.mean()
    # 0.5 plus the one-sentence chunks, which always take a random next
    assert 0.45 < frac < 0.62, frac
    assert set(np.unique(pretrain.next_sentence_label)) == {0, 1}


def test_pretraining_deterministic(wiki_tokens, tok, pretrain):
    again = D.create_pretraining_examples(wiki_tokens, tok, rng=np.random.default_rng(0))
    same_int = D.create_pretraining_examples(wiki_tokens[:4], tok, rng=7)
    same_gen = D.create_pretraining_examples(wiki_tokens[:4], tok, rng=np.random.default_rng(7))
    other = D.create_pretraining_examples(wiki_tokens, tok, rng=np.random.default_rng(1))
    for name in ("input_ids", "token_type_ids", "attention_mask", "mlm_labels", "next_sentence_label"):
        assert np.array_equal(getattr(again, name), getattr(pretrain, name)), name
        assert np.array_equal(getattr(same_int, name), getattr(same_gen, name)), name
    assert other.input_ids.shape != pretrain.input_ids.shape or not np.array_equal(other.input_ids, pretrain.input_ids)
    other_small = D.create_pretraining_examples(wiki_tokens[:4], tok, rng=8)
    assert not np.array_equal(other_small.mlm_labels[:10], same_int.mlm_labels[:10])


def test_pretraining_from_raw_text_equals_from_tokens(wiki_docs, wiki_tokens, tok):
    raw = D.create_pretraining_examples(wiki_docs[:4], tok, rng=3)
    pre = D.create_pretraining_examples(wiki_tokens[:4], tok, rng=3)
    assert np.array_equal(raw.input_ids, pre.input_ids) and np.array_equal(raw.mlm_labels, pre.mlm_labels)


def test_pretraining_pairs_follow_the_recipe(tok):
    """Pre-tokenized documents whose every sentence is one distinct word repeated 3 times, so
    each token says which (document, sentence) it came from. Checks: A is consecutive
    sentences of one document; B continues A for label 0 and comes from another document for
    label 1; with the put-back rule every sentence is read exactly once as own-document text."""
    n_docs, n_sent = 6, 40
    words = [w for w in tok.ids_to_tokens[2000:6000] if w.isalpha()][: n_docs * n_sent]
    where = {}
    docs = []
    for d in range(n_docs):
        doc = []
        for j in range(n_sent):
            w = words[d * n_sent + j]
            where[tok.convert_tokens_to_ids([w])[0]] = (d, j)
            doc.append([w] * 3)
        docs.append(doc)
    x = D.create_pretraining_examples(docs, tok, max_seq_length=64, rng=np.random.default_rng(5))
    orig = np.where(x.mlm_labels != IGNORE_INDEX, x.mlm_labels, x.input_ids)
    own_use = {}
    for i in range(len(x)):
        L = x.attention_mask[i].sum()
        seg = x.token_type_ids[i, :L]
        ids = orig[i, :L]
        a = [where[t] for t in ids[1:][seg[1:] == 0][:-1]]  # drop [CLS], [SEP]
        b = [where[t] for t in ids[seg == 1][:-1]]
        sents_a = sorted({s for s in a}, key=lambda s: s[1])
        sents_b = sorted({s for s in b}, key=lambda s: s[1])
        assert len({d for d, _ in a}) == 1 and len({d for d, _ in b}) == 1
        for sents in (sents_a, sents_b):
            js = [j for _, j in sents]
            assert js == list(range(js[0], js[0] + len(js)))  # consecutive sentences
        if x.next_sentence_label[i] == 0:
            assert sents_b[0][0] == sents_a[0][0] and sents_b[0][1] == sents_a[-1][1] + 1
            used = sents_a + sents_b
        else:
            assert sents_b[0][0] != sents_a[0][0]
            used = sents_a
        for s in used:
            own_use[s] = own_use.get(s, 0) + 1
    assert own_use == {(d, j): 1 for d in range(n_docs) for j in range(n_sent)}


def test_whole_word_masking(wiki_tokens, tok, pretrain):
    x = D.create_pretraining_examples(wiki_tokens, tok, whole_word_mask=True, rng=np.random.default_rng(0))
    is_piece = np.array([t.startswith("##") for t in tok.ids_to_tokens])

    def partial_words(data):
        orig = np.where(data.mlm_labels != IGNORE_INDEX, data.mlm_labels, data.input_ids)
        masked = data.mlm_labels != IGNORE_INDEX
        count = 0
        for i in range(len(data)):
            L = data.attention_mask[i].sum()
            start = 0
            for p in range(1, L + 1):  # words = a head followed by its ## pieces
                if p == L or not is_piece[orig[i, p]] or orig[i, p - 1] == tok.sep_token_id:
                    group = masked[i, start:p]
                    count += group.any() and not group.all()
                    start = p
        return count

    assert partial_words(x) == 0
    assert partial_words(pretrain) > 0  # without whole-word masking pieces are masked alone
    n_masked = (x.mlm_labels != IGNORE_INDEX).sum(1)
    assert (n_masked <= 20).all() and (n_masked >= 1).all()
    assert 0.13 < n_masked.sum() / (x.attention_mask.sum() - 3 * len(x)) < 0.16


def test_pretraining_errors_and_save(tmp_path, tok, pretrain):
    with pytest.raises(ValueError, match="at least 2 non-empty documents"):
        D.create_pretraining_examples([["one sentence .", "another ."]], tok, rng=0)
    with pytest.raises(ValueError, match="max_seq_length"):
        D.create_pretraining_examples([["a b"], ["c d"]], tok, max_seq_length=4, rng=0)
    f = tmp_path / "pre.npz"
    pretrain.save(f)
    back = D.PretrainingData.load(f)
    assert np.array_equal(back.mlm_labels, pretrain.mlm_labels) and back.input_ids.dtype == np.int32
    assert np.array_equal(back.next_sentence_label, pretrain.next_sentence_label)


# ----------------------------------------------------------------------------------------
# GLUE readers
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task, folder, counts",
    [
        ("sst-2", "SST-2", {"train": (67349, 29780, 37569), "dev": (872, 428, 444)}),
        ("cola", "CoLA", {"train": (8551, 2528, 6023), "dev": (1043, 322, 721)}),
        ("mrpc", "MRPC", {"train": (3667, 1194, 2473), "dev": (408, 129, 279)}),
        # label 0 = entailment, 1 = not_entailment (the order of the label list)
        ("rte", "RTE", {"train": (2490, 1249, 1241), "dev": (277, 146, 131)}),
        ("wnli", "WNLI", {"train": (635, 323, 312), "dev": (71, 40, 31)}),
    ],
)
def test_read_glue_counts(data_dir, task, folder, counts):
    spec = D.get_task(task)
    for split, (n, n0, n1) in counts.items():
        ex = D.read_glue(task, data_dir / folder / f"{split}.tsv")
        labels = np.array([e.label for e in ex])
        assert len(ex) == n and (labels == 0).sum() == n0 and (labels == 1).sum() == n1
        assert all(e.text_a and e.text_a == e.text_a.strip() for e in ex)
        assert all((e.text_b is not None) == spec.is_pair for e in ex)
        assert [e.line for e in ex] == list(range(2 if spec.header else 1, n + (2 if spec.header else 1)))


def test_read_glue_content(data_dir):
    sst = D.read_glue("SST2", data_dir / "SST-2" / "dev.tsv")
    assert sst[0] == D.InputExample("it 's a charming and often affecting journey .", None, 1, 2)
    cola = D.read_glue("cola", data_dir / "CoLA" / "dev.tsv")
    assert cola[4] == D.InputExample("As you eat the most, you want the least.", None, 0, 5)
    assert cola[-1].line == 1043  # the last row has no final newline
    mrpc = D.read_glue("MRPC", data_dir / "MRPC" / "dev.tsv")
    assert mrpc[0].text_a == "He said the foodservice pie business doesn 't fit the company 's long-term growth strategy ."
    assert mrpc[0].text_b.startswith('" The foodservice pie business does not fit')  # quotes kept, no CSV
    assert mrpc[0].label == 1 and mrpc[1].label == 0
    assert not any("\ufeff" in e.text_a for e in mrpc)


def test_tasks_registry():
    assert D.get_task("SST-2") is D.get_task("sst2") is D.TASKS["sst-2"]
    assert D.get_task("STS_B") is D.get_task(D.TASKS["sts-b"]) is D.TASKS["sts-b"]
    assert D.TASKS["mrpc"].is_pair and not D.TASKS["cola"].is_pair
    assert {k: v.main_metric for k, v in D.TASKS.items()} == {
        "sst-2": "acc", "cola": "mcc", "mrpc": "acc", "sts-b": "pearson", "qqp": "acc", "mnli": "acc", "qnli": "acc",
        "rte": "acc", "wnli": "acc"}
    assert {k: v.metrics for k, v in D.TASKS.items() if len(v.metrics) > 1} == {  # GLUE's official metrics (+ errors)
        "mrpc": ("acc", "f1", "acc_and_f1"), "sts-b": ("pearson", "spearman", "mse", "mae"),
        "qqp": ("acc", "f1", "acc_and_f1")}
    assert {k: v.dir for k, v in D.TASKS.items()} == {
        "sst-2": "SST-2", "cola": "CoLA", "mrpc": "MRPC", "sts-b": "STS-B", "qqp": "QQP", "mnli": "MNLI", "qnli": "QNLI",
        "rte": "RTE", "wnli": "WNLI"}
    assert {k: v.num_labels for k, v in D.TASKS.items() if v.is_regression} == {"sts-b": 1}
    assert {k: v.num_labels for k, v in D.TASKS.items() if v.num_labels > 2} == {"mnli": 3}
    # class ids in the order of transformers' GLUE processors; readable names for config.json
    assert D.TASKS["mnli"].label_list == ("contradiction", "entailment", "neutral")
    assert D.TASKS["qnli"].label_list == D.TASKS["rte"].label_list == ("entailment", "not_entailment")
    assert D.TASKS["sst-2"].label_list == ("0", "1") and D.TASKS["sst-2"].id2label == ("negative", "positive")
    assert D.TASKS["wnli"].id2label == ("not_entailment", "entailment")  # GLUE's WNLI: 1 = entailment
    assert D.TASKS["mnli"].dev_sets == (("dev_matched.tsv", ""), ("dev_mismatched.tsv", "_mm"))
    with pytest.raises(ValueError, match="unknown GLUE task 'mnli2'"):
        D.get_task("mnli2")
    with pytest.raises(ValueError, match="a task named 'sst-2' is already registered"):
        D.register_task(D.TaskSpec("SST_2", "x", 0, None, 1, True, ("0", "1"), ("acc",), "acc"))
    # a spec is checked when it is made, naming the task and the field
    with pytest.raises(ValueError, match=r"task 'x': metrics \['acc'\] must be a non-empty subset of the regression"):
        D.TaskSpec("x", "X", 0, None, 1, True, None, ("acc",), "acc")
    with pytest.raises(ValueError, match="task 'x': main_metric 'f1' is not one of"):
        D.TaskSpec("x", "X", 0, None, 1, True, ("0", "1"), ("acc",), "f1")
    with pytest.raises(ValueError, match="task 'x': a classification task needs at least 2 labels"):
        D.TaskSpec("x", "X", 0, None, 1, True, ("0",), ("acc",), "acc")


def test_sts_b_reads_as_regression(data_dir, tok):
    """STS-B (data README section 7): 5,749 train and 1,500 dev pairs, a header of 10
    columns, sentences in columns 7-8 (quotes kept: tabs only), the score in [0, 5] last."""
    spec = D.get_task("sts-b")
    assert spec.is_regression and spec.is_pair and spec.num_labels == 1
    train = D.read_glue("sts-b", data_dir / "STS-B" / "train.tsv")
    dev = D.read_glue("sts-b", data_dir / "STS-B" / "dev.tsv")
    assert len(train) == 5749 and len(dev) == 1500
    assert dev[0] == D.InputExample("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 5.0, 2)
    assert dev[1].label == 4.75 and all(isinstance(e.label, float) for e in dev)
    scores = np.array([e.label for e in train])
    assert scores.min() == 0.0 and scores.max() == 5.0 and scores.mean() == pytest.approx(2.701, abs=5e-4)
    assert np.mean([e.label for e in dev]) == pytest.approx(2.364, abs=5e-4)
    assert sum(e.text_a.startswith('"') or e.text_b.startswith('"') for e in train) > 100  # no CSV quoting
    enc = D.encode_examples(dev[:50], tok, max_length=64)
    assert enc.labels.dtype == np.float32 and enc.labels[1] == np.float32(4.75)
    assert enc.collate([1, 0])["labels"].dtype == np.float32


def test_register_a_regression_task(tmp_path, tok, monkeypatch, request):
    """A new task joins in one place: one register_task call makes it readable, encodable,
    scorable and loadable by name from a data root."""
    spec = D.register_task(D.TaskSpec(name="toy-sim", dir="TOY", text_a_col=1, text_b_col=2, label_col=0, header=False,
                                      label_list=None, metrics=("pearson", "spearman"), main_metric="spearman"))
    request.addfinalizer(lambda: D.TASKS.pop("toy-sim"))  # the registry as it was, after the test
    assert D.get_task("TOY_SIM") is spec and spec.num_labels == 1 and "toy-sim" in D.TASKS
    folder = tmp_path / "TOY"
    folder.mkdir()
    (folder / "train.tsv").write_text('0.5\ta cat\t"a dog\n3\tthe sun\tthe sun\n', encoding="utf-8")
    (folder / "dev.tsv").write_text("1.25\tred\tblue\n4.0\tone\tone\n2\ttwo\tthree\n", encoding="utf-8")
    monkeypatch.setenv("MINIBERT_DATA", str(tmp_path))
    got, train, dev = D.load_task_data("toy-sim", tok)
    assert got is spec and len(train) == 2 and len(dev) == 3
    assert train.labels.dtype == np.float32 and train.labels.tolist() == [0.5, 3.0]
    assert D.read_glue("toy-sim", folder / "train.tsv")[0].text_b == '"a dog'
    (folder / "bad.tsv").write_text("high\ta\tb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv:1: label 'high' is not a number"):
        D.read_glue("toy-sim", folder / "bad.tsv")
    # metrics: predictions (N, 1) or (N,); the main metric selects models
    preds = np.array([[1.0], [3.0], [3.5]])  # ranks 1 2 3 against the labels' 1 3 2
    m = D.compute_metrics("toy-sim", preds, dev.labels)
    assert list(m) == ["pearson", "spearman"] and m[spec.main_metric] == pytest.approx(0.5)
    assert D.compute_metrics(spec, preds[:, 0], dev.labels) == m
    with pytest.raises(ValueError, match=r"expected predictions \(N,\) or \(N, 1\), got \(3, 2\)"):
        D.compute_metrics("toy-sim", np.zeros((3, 2)), dev.labels)


def test_glue_bad_data(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("sentence\tlabel\ngood one\t1\nbad label\t2\n", encoding="utf-8")
    # a label names its class as the file writes it or by its readable name
    with pytest.raises(D.UnknownLabelError, match=r"bad\.tsv:3: label '2' is not one of \['0', '1', 'negative', "
                                                  r"'positive'\]"):
        D.read_glue("sst-2", p)
    p.write_text("sentence\tlabel\ngood one\t1\nno label here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv:3: expected at least 2 tab-separated columns, found 1"):
        D.read_glue("sst-2", p)
    p.write_text("gj04\t1\t\tfine\ngj04\t1\tonly three\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: expected at least 4"):
        D.read_glue("cola", p)
    p.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv: file is empty"):
        D.read_glue("cola", p)
    p.write_text("sentence\tlabel\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv: no examples"):
        D.read_glue("sst-2", p)
    p.write_text("\ufeffQuality\ta\tb\tc\td\n1\tx\ty\t \tsecond\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: empty text"):
        D.read_glue("mrpc", p)
    p.write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")  # Latin-1, not UTF-8
    with pytest.raises(ValueError, match=r"bad\.tsv: not valid UTF-8"):
        D.read_glue("sst-2", p)
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        D.read_glue("cola", tmp_path / "missing.tsv")
    # generic reader: integer labels without a label list; CRLF tolerated
    p.write_bytes(b"a\tb\tl\r\nx\ty\t3\r\n")
    assert D.read_tsv(p, 0, 1, label_col=2) == [D.InputExample("x", "y", 3, 2)]
    p.write_bytes(b"x\ty\tpos\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:1: label 'pos' is not a non-negative integer"):
        D.read_tsv(p, 0, 1, label_col=2, header=False)
    assert D.read_tsv(p, 0, label_col=2, header=False, label_list=["neg", "pos"])[0].label == 1


# ----------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------


def test_metrics_hand_computed():
    preds = [1, 1, 0, 0, 1, 0, 1, 1, 0, 0]
    labels = [1, 0, 0, 0, 1, 1, 1, 0, 0, 1]
    # tp = 3 (0,4,6), fp = 2 (1,7), fn = 2 (5,9), tn = 3 (2,3,8)
    assert D.accuracy(preds, labels) == pytest.approx(0.6)
    assert D.f1(preds, labels) == pytest.approx(2 * 3 / (2 * 3 + 2 + 2))  # 0.6
    assert D.matthews_corrcoef(preds, labels) == pytest.approx((3 * 3 - 2 * 2) / np.sqrt(5 * 5 * 5 * 5))  # 0.2
    assert D.compute_metrics("mrpc", preds, labels) == pytest.approx({"acc": 0.6, "f1": 0.6, "acc_and_f1": 0.6})
    assert D.compute_metrics("cola", preds, labels) == pytest.approx({"mcc": 0.2})
    logits = np.eye(2)[preds] * 3.0 - 1.0
    assert D.compute_metrics("sst-2", logits, labels) == pytest.approx({"acc": 0.6})
    # degenerate cases follow scikit-learn: 0.0 instead of a division by zero
    assert D.matthews_corrcoef([1, 1, 1], [0, 1, 1]) == 0.0
    assert D.f1([0, 0], [0, 0]) == 0.0
    assert D.matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert D.matthews_corrcoef([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same shape"):
        D.accuracy([1, 0], [1])


def test_correlations_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (2, 3, 17, 500):
        labels = rng.integers(0, 11, size=n) / 2  # STS-B-like scores with many ties
        preds = (labels + rng.normal(scale=1.5, size=n)).astype(np.float32)
        preds[: n // 3] = np.round(preds[: n // 3])  # ties in the predictions too
        assert D.pearson(preds, labels) == pytest.approx(stats.pearsonr(preds.astype(np.float64), labels)[0], abs=1e-12)
        assert D.spearman(preds, labels) == pytest.approx(stats.spearmanr(preds, labels)[0], abs=1e-12)
    assert D.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])
    assert D.spearman([1, 2, 3], [2, 4, 70]) == pytest.approx(1.0)
    assert D.pearson([1, 1, 1], [1, 2, 3]) == 0.0  # undefined for a constant side: 0.0 (scipy: nan)
    with pytest.raises(ValueError, match="empty set"):
        D.spearman([], [])
    dev = D.compute_metrics("sts-b", [[0.1], [0.4], [0.2]], [1.0, 3.0, 2.5])
    assert dev == pytest.approx({"pearson": stats.pearsonr([0.1, 0.4, 0.2], [1.0, 3.0, 2.5])[0], "spearman": 1.0,
                                 "mse": (0.9 ** 2 + 2.6 ** 2 + 2.3 ** 2) / 3, "mae": (0.9 + 2.6 + 2.3) / 3})


def test_metrics_match_written_out_formulas():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, size=50)
        preds = np.where(rng.random(50) < 0.7, labels, 1 - labels)
        tp = np.sum((preds == 1) & (labels == 1)); tn = np.sum((preds == 0) & (labels == 0))
        fp = np.sum((preds == 1) & (labels == 0)); fn = np.sum((preds == 0) & (labels == 1))
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        assert D.f1(preds, labels) == pytest.approx(2 * precision * recall / (precision + recall))
        mcc = (tp * tn - fp * fn) / np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
        assert D.matthews_corrcoef(preds, labels) == pytest.approx(mcc)
        # for binary labels the MCC is the Pearson correlation of preds and labels
        assert D.matthews_corrcoef(preds, labels) == pytest.approx(np.corrcoef(preds, labels)[0, 1])
        assert D.accuracy(preds, labels) == pytest.approx((tp + tn) / 50)
    # multi-class: scikit-learn's covariance formula written with explicit loops
    labels = rng.integers(0, 3, size=200)
    preds = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 3, size=200))
    C = np.zeros((3, 3))
    for t_, p_ in zip(labels, preds):
        C[t_, p_] += 1
    s, c = C.sum(), np.trace(C)
    t, p = C.sum(1), C.sum(0)
    expected = (c * s - sum(t[k] * p[k] for k in range(3))) / np.sqrt(
        (s**2 - sum(p[k] ** 2 for k in range(3))) * (s**2 - sum(t[k] ** 2 for k in range(3))))
    assert D.matthews_corrcoef(preds, labels) == pytest.approx(expected)


# ----------------------------------------------------------------------------------------
# encoding and batching
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mrpc_encoded(data_dir, tok):
    return D.encode_examples(D.read_glue("mrpc", data_dir / "MRPC" / "dev.tsv"), tok, max_length=128)


def test_encode_examples(mrpc_encoded, tok, data_dir):
    enc = mrpc_encoded
    assert len(enc) == 408 and enc.labels.dtype == np.int32 and enc.labels.sum() == 279
    for ids, types in zip(enc.input_ids, enc.token_type_ids):
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and len(ids) <= 128
        assert ids.count(tok.sep_token_id) == 2 and tok.pad_token_id not in ids
        first_sep = ids.index(tok.sep_token_id)
        assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    short = D.encode_examples(D.read_glue("sst-2", data_dir / "SST-2" / "dev.tsv")[:50], tok, max_length=16)
    assert short.lengths.max() == 16 and all(set(t) == {0} for t in short.token_type_ids)


def test_dynamic_padding(mrpc_encoded, tok):
    enc = mrpc_encoded
    for idx, batch in zip(D.Batcher(enc, 16, seed=3).epoch_batches(0), D.Batcher(enc, 16, seed=3).iter_epoch(0)):
        B, T = batch["input_ids"].shape
        assert B == len(idx) and T == enc.lengths[idx].max()
        assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
        assert all(batch[k].dtype == np.int32 for k in batch)
        assert np.array_equal(batch["attention_mask"].sum(1), enc.lengths[idx])
        assert np.array_equal(batch["labels"], enc.labels[idx])
        for row, k in enumerate(idx):
            n = enc.lengths[k]
            assert batch["input_ids"][row, :n].tolist() == enc.input_ids[k]
            assert (batch["input_ids"][row, n:] == tok.pad_token_id).all()
            assert (batch["token_type_ids"][row, n:] == 0).all()


@pytest.mark.parametrize("bucket", [True, False])
@pytest.mark.parametrize("drop_last", [False, True])
def test_epoch_covers_every_example_once(bucket, drop_last):
    lengths = np.random.default_rng(0).integers(3, 60, size=1003)
    seen_orders = []
    for epoch in range(3):
        batches = D.make_epoch_batches(lengths, 32, seed=11, epoch=epoch, bucket=bucket, drop_last=drop_last,
                                       bucket_chunk=4)
        sizes = [len(b) for b in batches]
        flat = np.concatenate(batches)
        if drop_last:
            assert sizes == [32] * 31 and len(np.unique(flat)) == 992
        else:
            assert sorted(sizes) == [11] + [32] * 31
            assert np.array_equal(np.sort(flat), np.arange(1003))
        seen_orders.append(flat)
        again = D.make_epoch_batches(lengths, 32, seed=11, epoch=epoch, bucket=bucket, drop_last=drop_last,
                                     bucket_chunk=4)
        assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # same seed, same order
    assert not np.array_equal(seen_orders[0], seen_orders[1])  # each epoch has its own order
    other_seed = np.concatenate(D.make_epoch_batches(lengths, 32, seed=12, epoch=0, bucket=bucket,
                                                     drop_last=drop_last, bucket_chunk=4))
    assert not np.array_equal(other_seed, seen_orders[0])
    plain = D.make_epoch_batches(1003, 32, shuffle=False)
    assert np.array_equal(np.concatenate(plain), np.arange(1003)) and len(plain[-1]) == 11


def test_bucketing_reduces_padding(data_dir, tok):
    enc = D.encode_examples(D.read_glue("sst-2", data_dir / "SST-2" / "dev.tsv"), tok, max_length=64)

    def padded_tokens(bucket):
        return sum(enc.lengths[b].max() * len(b) for b in D.make_epoch_batches(enc.lengths, 32, seed=0, bucket=bucket))

    real = enc.lengths.sum()
    assert padded_tokens(True) - real < 0.35 * (padded_tokens(False) - real)
    # within a chunk the batches hold consecutive lengths, yet the batch order is shuffled
    batches = D.make_epoch_batches(enc.lengths, 32, seed=0, bucket=True)
    firsts = [enc.lengths[b].min() for b in batches]
    assert firsts != sorted(firsts)


def test_resume_mid_epoch(mrpc_encoded):
    batcher = D.Batcher(mrpc_encoded, 24, seed=5)
    assert len(batcher) == 17 and len(D.Batcher(mrpc_encoded, 24, drop_last=True)) == 17
    full = list(batcher.iter_epoch(2))
    assert len(full) == 17
    for k in (0, 1, 9, 17):
        resumed = list(D.Batcher(mrpc_encoded, 24, seed=5).iter_epoch(2, start_batch=k))
        assert len(resumed) == len(full) - k
        for a, b in zip(resumed, full[k:]):
            assert all(np.array_equal(a[key], b[key]) for key in a)
    tail = list(D.iterate_batches(mrpc_encoded, 24, seed=5, epoch=2, start_batch=9))
    assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(tail, full[9:]))
    with pytest.raises(ValueError, match="start_batch 18"):
        next(batcher.iter_epoch(0, start_batch=18))


def test_pretraining_batches(pretrain):
    batcher = D.Batcher(pretrain, 32, seed=0, drop_last=True)
    batches = list(batcher.iter_epoch(1))
    assert len(batches) == len(pretrain) // 32 == len(batcher)
    b = batches[0]
    assert set(b) == {"input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label"}
    assert b["input_ids"].shape == (32, 128) and b["next_sentence_label"].shape == (32,)
    idx = batcher.epoch_batches(1)
    assert np.array_equal(b["labels"], pretrain.mlm_labels[idx[0]])
    resumed = list(batcher.iter_epoch(1, start_batch=3))
    assert all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(resumed, batches[3:]))
    flat = np.concatenate(D.Batcher(pretrain, 32, seed=0).epoch_batches(4))
    assert np.array_equal(np.sort(flat), np.arange(len(pretrain)))
    # fixed-length rows are not bucketed: the order is the plain shuffle
    assert all(np.array_equal(a, b) for a, b in zip(batcher.epoch_batches(1),
                                                    D.make_epoch_batches(len(pretrain), 32, seed=0, epoch=1, drop_last=True)))


# ----------------------------------------------------------------------------------------
# data roots and task loading
# ----------------------------------------------------------------------------------------


def test_load_task_data_finds_and_truncates(data_dir, tok, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIBERT_DATA", str(data_dir))
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "cache"))
    assert D.data_roots()[0] == data_dir and D.data_roots()[1:] == [Path("data"), REPO / "data", tmp_path / "cache"]
    assert D.default_vocab() == data_dir / "bert-base-uncased" / "vocab.txt"
    spec, train, dev = D.load_task_data("MRPC", tok, max_length=32, max_train_examples=10, max_eval_examples=7)
    assert spec is D.TASKS["mrpc"] and len(train) == 10 and len(dev) == 7
    assert train.lengths.max() <= 32 and train.labels.dtype == np.int32
    full_dev = D.read_glue("mrpc", data_dir / "MRPC" / "dev.tsv")
    assert dev.labels.tolist() == [e.label for e in full_dev[:7]]  # the first N, in file order
    assert dev.input_ids == D.encode_examples(full_dev[:7], tok, max_length=32).input_ids
    _, train, dev = D.load_task_data(D.TASKS["sst-2"], tok, max_eval_examples=0)
    assert len(train) == 67349 and len(dev) == 872  # 0 = everything
    # data_dir and train_file override the lookup (an augmented train file, say)
    (tmp_path / "dev.tsv").write_bytes((data_dir / "CoLA" / "dev.tsv").read_bytes())
    (tmp_path / "aug.tsv").write_text("x\t1\t\tA sentence.\nx\t0\t*\tSentence a.\n", encoding="utf-8")
    _, train, dev = D.load_task_data("cola", tok, data_dir=tmp_path, train_file=tmp_path / "aug.tsv")
    assert train.labels.tolist() == [1, 0] and len(dev) == 1043


def test_find_data_error_says_how_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIBERT_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no ./data here
    monkeypatch.setattr(D.roots, "_REPO_DATA", tmp_path / "repo-data")
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(D.DataNotFoundError) as err:
        D.find_data("NOPE", "--data")
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert f"cannot find 'NOPE' under {tmp_path}, data, {tmp_path / 'repo-data'}, {tmp_path / 'cache'}" in msg
    assert "Point --data at it, set MINIBERT_DATA" in msg and "python data/prepare_glue.py" in msg
    with pytest.raises(D.DataNotFoundError, match="cannot find 'STS-B'.*Staying offline"):  # conftest: offline
        D.load_task_data("sts-b", tokenizer=None)
    (tmp_path / "STS-B").mkdir()
    assert D.find_data("STS-B", "--data") == tmp_path / "STS-B"


def test_public_names_resolve_from_the_package():
    """`from minibert import data as D; D.<name>` works for every public name of the
    submodules, and each is the submodule's own object."""
    import minibert.data
    from minibert.data import batching, corpus, encoding, metrics, pretraining, roots, tasks

    for module in (batching, corpus, encoding, metrics, pretraining, roots, tasks):
        public = [n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", None)
                  == module.__name__]
        for name in public:
            assert getattr(minibert.data, name) is getattr(module, name), f"{module.__name__}.{name}"
    assert set(minibert.data.__all__) <= set(dir(minibert.data))
    assert D.IGNORE_INDEX is IGNORE_INDEX and D.INT_DTYPE is np.int32
    for name in ("get_task", "Batcher", "read_glue", "encode_examples", "compute_metrics", "make_epoch_batches",
                 "create_pretraining_examples", "read_corpus", "PretrainingData", "TASKS", "load_task_data",
                 "find_data", "data_roots", "default_vocab", "DataNotFoundError", "register_task", "TaskSpec"):
        assert name in D.__all__


# ----------------------------------------------------------------------------------------
# prepare scripts
# ----------------------------------------------------------------------------------------


def _run(script, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(f"_prep_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


SHARED_GLUE = ("SST-2", "CoLA", "MRPC", "STS-B", "RTE", "WNLI")  # the GLUE tasks ../shared/data holds


def test_prepare_glue_copies_and_verifies(data_dir, tmp_path):
    out = tmp_path / "out"
    r = _run("prepare_glue.py", "--from", data_dir, "--out", out, "--only", *SHARED_GLUE)
    assert r.returncode == 0, r.stderr
    shared = [spec for spec in D.TASKS.values() if spec.dir in SHARED_GLUE]
    assert len(shared) == len(SHARED_GLUE)
    for spec in shared:  # every registered task, in the folder its spec names
        for name in ["train.tsv"] + [name for name, _ in spec.dev_sets]:
            assert (out / spec.dir / name).read_bytes() == (data_dir / spec.dir / name).read_bytes()
    assert "sha256 verified" in r.stdout
    again = _run("prepare_glue.py", "--from", data_dir, "--out", out, "--only", *(t.lower() for t in SHARED_GLUE))
    assert again.returncode == 0 and again.stdout.count("already present") == 2 * len(SHARED_GLUE)
    # the other three are not in the shared folder: each is named, nothing else goes wrong
    r = _run("prepare_glue.py", "--from", data_dir, "--out", out)
    assert r.returncode == 1 and "7 of 19 file(s) failed" in r.stderr
    assert "MNLI/dev_mismatched.tsv: not found in --from folder" in r.stderr


def test_prepare_detects_corruption(data_dir, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(data_dir / "CoLA", src / "CoLA")
    shutil.copytree(data_dir / "SST-2", src / "SST-2")
    shutil.copytree(data_dir / "MRPC", src / "MRPC")
    for folder in ("STS-B", "RTE", "WNLI"):
        shutil.copytree(data_dir / folder, src / folder)
    bad = bytearray((src / "CoLA" / "dev.tsv").read_bytes())
    bad[100] ^= 1
    (src / "CoLA" / "dev.tsv").write_bytes(bytes(bad))
    r = _run("prepare_glue.py", "--from", src, "--out", out, "--only", *SHARED_GLUE)
    assert r.returncode == 1 and "1 of 12 file(s) failed" in r.stderr
    assert "checksum mismatch" in r.stderr and "CoLA/dev.tsv" in r.stderr
    assert "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd" in r.stderr
    assert not (out / "CoLA" / "dev.tsv").exists()  # nothing written for the bad file
    assert (out / "CoLA" / "train.tsv").read_bytes() == (data_dir / "CoLA" / "train.tsv").read_bytes()
    (src / "MRPC" / "dev.tsv").unlink()
    r = _run("prepare_glue.py", "--from", src, "--out", tmp_path / "out2", "--only", "MRPC")
    assert r.returncode == 1 and "MRPC/dev.tsv: not found in --from folder" in r.stderr


def test_prepare_scripts_pin_the_published_checksums(data_dir, tmp_path):
    published = dict(line.split()[::-1] for line in (data_dir / "SHA256SUMS").read_text().splitlines() if line.strip())
    pinned, archives = {}, {}
    for name in ("prepare_glue", "prepare_wikitext2", "prepare_gutenberg", "prepare_vocab"):
        for f in _load_script(name).FILES:
            if f.sha256 is None:  # pinned by its GLUE archive's published checksum
                archives[f.path] = f.sources[0].url.rsplit("/", 1)[1]
            else:
                pinned[f.path] = f.sha256
        r = _run(f"{name}.py", "--help")
        assert r.returncode == 0 and "--from DIR" in r.stdout and "sha256" in r.stdout
    assert pinned == published
    assert archives == {"QQP/train.tsv": "QQP-clean.zip", "QQP/dev.tsv": "QQP-clean.zip",
                        "MNLI/train.tsv": "MNLI.zip", "MNLI/dev_matched.tsv": "MNLI.zip",
                        "MNLI/dev_mismatched.tsv": "MNLI.zip", "QNLI/train.tsv": "QNLIv2.zip", "QNLI/dev.tsv": "QNLIv2.zip"}
    out = tmp_path / "all"
    for name in ("prepare_wikitext2", "prepare_gutenberg", "prepare_vocab"):
        r = _run(f"{name}.py", "--from", data_dir, "--out", out)
        assert r.returncode == 0, r.stderr
    assert (out / "bert-base-uncased" / "vocab.txt").read_bytes() == (data_dir / "bert-base-uncased" / "vocab.txt").read_bytes()


def test_prepare_download_path_with_file_urls(tmp_path, capsys):
    """The download code path, offline: file:// URLs, a zip member, and source fallback."""
    common = _load_script("_common")
    good = b"hello\tworld\n"
    sha = hashlib.sha256(good).hexdigest()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("TASK/train.tsv", good)
        z.writestr("TASK/dev.tsv", b"other")
    (tmp_path / "TASK.zip").write_bytes(buf.getvalue())
    (tmp_path / "wrong.tsv").write_bytes(b"not it")
    (tmp_path / "right.tsv").write_bytes(good)
    url = (tmp_path / "x").as_uri()[:-1]
    zipped = common.DataFile("TASK/train.tsv", sha, (common.Source(url + "TASK.zip", "TASK/train.tsv"),))
    fallback = common.DataFile("B/f.tsv", sha, (common.Source(url + "missing.zip", "f.tsv"), common.Source(url + "wrong.tsv"),
                                                common.Source(url + "right.tsv")))
    failing = common.DataFile("C/f.tsv", sha, (common.Source(url + "wrong.tsv"), common.Source(url + "TASK.zip", "nope.tsv")))
    assert common.main([zipped, fallback], "test", ["--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "TASK" / "train.tsv").read_bytes() == good
    assert (tmp_path / "out" / "B" / "f.tsv").read_bytes() == good
    assert common.main([failing], "test", ["--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch for " + url + "wrong.tsv" in err and "has no member 'nope.tsv'" in err
    assert not (tmp_path / "out" / "C").exists()
