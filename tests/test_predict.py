"""Predictions out: minibert's TextClassifier against transformers' text-classification pipeline on
the same folders, and the predict command's files (texts in, JSONL/TSV out, clear errors).

The references are transformers 5's `pipeline("text-classification", model=folder)` on folders
minibert saved: a small random classifier with named labels, the real MiniLM-L6 encoder with a
classifier, and a regression. Same labels, scores within 1e-5, for single texts, pairs and a
batch with mixed lengths.
"""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import transformers

from minibert import BertConfig, BertForSequenceClassification, TextClassifier
from minibert.checkpoint import CheckpointError
from minibert.inference import read_inputs, write_predictions
from minibert.settings import PredictSettings
from minibert.train import main

transformers.logging.set_verbosity_error()
TOL = 1e-5
REPO = Path(__file__).resolve().parent.parent


def read_tsv(path, n):
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:n + 1]]


@pytest.fixture(scope="module")
def inputs(data_dir):
    """Real single texts (SST-2 dev), real pairs (MRPC dev) and a batch of very different lengths."""
    sst = [row[0] for row in read_tsv(data_dir / "SST-2" / "dev.tsv", 12)]
    mrpc = [{"text": row[3], "text_pair": row[4]} for row in read_tsv(data_dir / "MRPC" / "dev.tsv", 6)]
    mixed = ["dull", sst[0] * 4, "a gripping film", " ".join(sst)]  # 1 to ~250 tokens in one batch
    return {"single": sst, "pairs": mrpc, "mixed": mixed}


def save(model, folder, tok, labels):
    model.config.set_labels(labels)
    model.save_pretrained(folder, tokenizer=tok)
    return folder


@pytest.fixture(scope="module")
def folders(tok, tmp_path_factory):
    """{name: folder}: a small random 3-class model, MiniLM-L6 with a 2-class head, a regression."""
    root = tmp_path_factory.mktemp("classifiers")
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37)
    out = {"small": save(BertForSequenceClassification(cfg, num_labels=3, seed=1), root / "small", tok,
                         ["negative", "neutral", "positive"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the classifier is not in the checkpoint: freshly initialised
        minilm = BertForSequenceClassification.from_pretrained("minilm-l6", num_labels=2, seed=3)
    out["minilm"] = save(minilm, root / "minilm", tok, ["not_equivalent", "equivalent"])
    out["regression"] = save(BertForSequenceClassification(cfg, num_labels=1, seed=2), root / "regression", tok, None)
    return out


def assert_same(ours, theirs):
    """Same structure and labels, scores within TOL."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours["label"] == theirs["label"], (ours, theirs)
        assert abs(ours["score"] - theirs["score"]) <= TOL, (ours, theirs)
        return
    assert isinstance(ours, list) and len(ours) == len(theirs), (ours, theirs)
    for a, b in zip(ours, theirs):
        assert_same(a, b)


@pytest.mark.parametrize("name", ["small", "minilm", "regression"])
def test_predictions_agree_with_transformers_pipeline(name, folders, inputs):
    ours = TextClassifier.from_pretrained(folders[name], batch_size=3)  # several batches, sorted by length
    theirs = transformers.pipeline("text-classification", model=str(folders[name]))
    for kind, batch in inputs.items():
        assert_same(ours(batch), theirs(batch))  # one best label per input
        assert_same(ours(batch, top_k=None), theirs(batch, top_k=None))  # every class, best first
        assert_same(ours(batch[0]), theirs(batch[0]))  # a lone text: [result]; a lone pair: the result
    assert_same(ours(inputs["single"][1], top_k=2), theirs(inputs["single"][1], top_k=2))
    assert_same(ours(inputs["single"], function_to_apply="sigmoid"),
                theirs(inputs["single"], function_to_apply="sigmoid"))
    # the labels are config.json's, and a regression gives its raw value (transformers: problem_type)
    assert ours.regression == (name == "regression")
    if name == "small":
        assert {r["label"] for r in ours(inputs["mixed"], top_k=None)[0]} == {"negative", "neutral", "positive"}


def test_batching_and_order_do_not_change_the_logits(folders, inputs):
    clf = TextClassifier.from_pretrained(folders["minilm"], batch_size=1)
    texts = inputs["mixed"] + inputs["single"]
    one = clf.logits(texts)
    clf.batch_size = 5
    np.testing.assert_allclose(clf.logits(texts), one, atol=2e-6)
    np.testing.assert_allclose(clf.logits(texts[::-1]), one[::-1], atol=2e-6)
    assert not clf.model.training


def test_a_text_longer_than_the_model_is_cut_and_said(folders, inputs):
    clf = TextClassifier.from_pretrained(folders["minilm"])
    long = " ".join(inputs["single"] * 3)  # ~700 tokens
    with pytest.warns(UserWarning, match=r"truncated 1 of 2 inputs to 512 tokens \(longest \d{3}\)"):
        ours = clf([long, "dull"], top_k=None)
    # transformers fails on it unless asked to truncate; asked, it agrees
    theirs = transformers.pipeline("text-classification", model=str(folders["minilm"]))
    assert_same(ours, theirs([long, "dull"], top_k=None, truncation=True))
    short = TextClassifier.from_pretrained(folders["minilm"], max_length=8)
    with pytest.warns(UserWarning, match=r"truncated 1 of 2 inputs to 8 tokens \(longest 12\)"):
        short.logits([inputs["single"][0], "dull"])
    with pytest.raises(ValueError, match="600.*512 position embeddings"):
        TextClassifier.from_pretrained(folders["small"], max_length=600)


def test_bad_inputs_are_clear_errors(folders):
    clf = TextClassifier.from_pretrained(folders["small"])
    with pytest.raises(ValueError, match="text_pair"):
        clf([{"sentence": "a"}])
    with pytest.raises(ValueError, match="function_to_apply"):
        clf("a", function_to_apply="relu")
    assert clf([]) == []
    with pytest.raises(CheckpointError, match="holds no trained classifier.bias, classifier.weight: not a fine-tuned"):
        TextClassifier.from_pretrained("minilm-l6")  # an encoder alone: its predictions would be random


# ------------------------------------------------------------------------ the predict command


def test_read_inputs_by_format_and_errors_name_file_and_line(tmp_path):
    (tmp_path / "a.txt").write_text("first text\n\nthird\n")
    assert read_inputs(tmp_path / "a.txt") == (["first text", "", "third"], None)  # one output row per line
    (tmp_path / "p.csv").write_text('sentence1,sentence2,label\n"a, quoted",b,1\nc,"d ""e""",0\n')
    assert read_inputs(tmp_path / "p.csv") == (["a, quoted", "c"], ["b", 'd "e"'])  # the pair column found
    (tmp_path / "t.tsv").write_text("id\treview\n1\tgreat\n2\tpoor\n")
    assert read_inputs(tmp_path / "t.tsv", "review") == (["great", "poor"], None)
    (tmp_path / "j.jsonl").write_text('{"text": "x"}\n\n{"text": "y"}\n')
    assert read_inputs(tmp_path / "j.jsonl") == (["x", "y"], None)
    (tmp_path / "bad.tsv").write_text("text\tlabel\nok\t1\nmisaligned\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:3: 1 tab-separated fields"):
        read_inputs(tmp_path / "bad.tsv")
    with pytest.raises(ValueError, match=r"t\.tsv: no text column 'text or sentence or sentence1'.*'review'"):
        read_inputs(tmp_path / "t.tsv")
    (tmp_path / "n.jsonl").write_text('{"text": "x"}\n{"text": 3}\n')
    with pytest.raises(ValueError, match=r"n\.jsonl:2: column 'text' holds 3, not a text"):
        read_inputs(tmp_path / "n.jsonl")
    with pytest.raises(ValueError, match="pairs need"):
        read_inputs(tmp_path / "a.txt", text_pair_column="b")


def test_predict_command_writes_jsonl_and_tsv(folders, tmp_path, capsys):
    folder = folders["small"]
    main(["predict", "--model", str(folder), "a gripping film", "dull"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = TextClassifier.from_pretrained(folder)(["a gripping film", "dull"], top_k=None)
    assert [r["text"] for r in rows] == ["a gripping film", "dull"]
    for row, ranked in zip(rows, expected):
        assert row["label"] == ranked[0]["label"] and row["score"] == pytest.approx(ranked[0]["score"], abs=1e-6)
        assert row["scores"] == pytest.approx({r["label"]: r["score"] for r in ranked}, abs=1e-6)
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-5)

    (tmp_path / "in.csv").write_text("text,text_pair\nA man sings.,A man is singing.\n\"tab\there\",x\n")
    main(["predict", "--model", str(folder), "--input", str(tmp_path / "in.csv"), "--output",
          str(tmp_path / "out.tsv"), "--progress", "false", "--batch-size", "1"])
    lines = (tmp_path / "out.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["text", "text_pair", "label", "score", "score_negative", "score_neutral",
                                    "score_positive"]
    assert lines[2].startswith('"tab\there"\tx\t')  # quoted: the tab stays inside its field
    main(["predict", "--model", str(folder), "--input", str(tmp_path / "in.csv"), "--output",
          str(tmp_path / "out.jsonl"), "--max-length", "5"])
    err = capsys.readouterr().err
    assert "note: truncated 2 of 2 inputs to 5 tokens (longest 12)" in err and "wrote 2 predictions" in err
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[0]["text_pair"] == "A man is singing." and set(rows[0]["scores"]) == {"negative", "neutral", "positive"}

    regression = folders["regression"]
    main(["predict", "--model", str(regression), "two texts", "here"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    values = TextClassifier.from_pretrained(regression).logits(["two texts", "here"])[:, 0]
    assert [r["score"] for r in rows] == pytest.approx(values.tolist(), abs=1e-6) and "scores" not in rows[0]


def test_predict_usage_errors(folders, tmp_path, capsys):
    for argv, message in [(["predict", "--model", str(folders["small"])], "give texts to classify or --input"),
                          (["predict", "--model", str(tmp_path / "none"), "x"], "none"),
                          (["predict", "--model", str(folders["small"]), "x", "--output", str(tmp_path / "o.csv")],
                           "unknown format '.csv'")]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 1 and err.startswith("error: ") and message in err, err
    with pytest.raises(ValueError, match="batch_size"):
        PredictSettings(batch_size=0)
    with pytest.raises(ValueError, match="unknown format"):
        write_predictions(tmp_path / "x.txt", [])


def test_bench_predict_runs_end_to_end(data_dir):
    """bench/bench_predict.py in smoke mode (numbers meaningless): it runs, and its agreement check holds."""
    out = subprocess.run([sys.executable, "bench/bench_predict.py", "--quick"], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "MINIBERT_DATA": str(data_dir)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "agreement: same label for 64 of 64 texts" in out.stdout and "| batch 1: ms per text" in out.stdout
