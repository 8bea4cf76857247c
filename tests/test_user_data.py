"""Your own data: CSV / TSV / JSON Lines read by column name, how labels become classes (or a
regression), the errors that name file and line, and the runs (finetune, evaluate, augment,
distill-task) on such files, with the label names a saved model carries in config.json."""
import json

import numpy as np
import pytest

from minibert import BertConfig, BertForSequenceClassification
from minibert import data as D
from minibert import distillation as T
from minibert.augment import Augmenter, GloveNeighbours, augment_table
from minibert.finetune import evaluate_folder, finetune
from minibert.settings import AugmentSettings, ModelSettings, TaskDataSettings, TaskDistillSettings
from minibert.settings import TrainArgs


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------
# reading files by column name
# ----------------------------------------------------------------------------------------


def test_csv_quotes_commas_newlines_and_line_numbers(tmp_path):
    p = write(tmp_path / "t.csv",
              '\ufefftext,label\n"good, really good",pos\n\n"two\nlines ""quoted""",neg\nplain,neg\n')
    table = D.read_table(p)
    assert table.columns == ["text", "label"]  # the byte-order mark is not part of the first name
    rows = D.table_rows(table, *D.resolve_columns(table))
    assert rows == [D.Row("good, really good", None, "pos", 2), D.Row('two\nlines "quoted"', None, "neg", 4),
                    D.Row("plain", None, "neg", 6)]  # a record spanning lines 4-5 is line 4; blank line 3 skipped


def test_tsv_splits_on_tabs_only_and_jsonl_keeps_json_values_as_text(tmp_path):
    tsv = write(tmp_path / "t.tsv", 'sentence1\tsentence2\tscore\n"a quote\tit, too\t4.5\r\n')
    assert D.table_rows(D.read_table(tsv), *D.resolve_columns(D.read_table(tsv))) == [
        D.Row('"a quote', "it, too", "4.5", 2)]  # sentence2 pairs with sentence1 by default; score is a label
    jsonl = write(tmp_path / "t.jsonl", '{"text": "x", "text_pair": "y", "label": 3}\n\n'
                                        '{"text": "z", "text_pair": "w", "label": 0.25, "id": 7}\n')
    table = D.read_table(jsonl)
    assert D.resolve_columns(table) == ("text", "text_pair", "label")
    assert [r.label for r in D.table_rows(table, "text", "text_pair", "label")] == ["3", "0.25"]
    assert [r.line for r in D.table_rows(table, "text", None, "label")] == [1, 3]
    assert D.resolve_columns(table, D.Columns(text="text_pair", text_pair="text")) == ("text_pair", "text", "label")


@pytest.mark.parametrize("name, content, message", [
    ("a.txt", "x", r"a\.txt: unknown data file type '\.txt'; use \.csv, \.tsv"),
    ("a.csv", "", r"a\.csv: file is empty \(expected a header line"),
    ("a.csv", "text,label\nfine,1\ntoo,many,2\n", r"a\.csv:3: 3 comma-separated fields, but the header has 2 \('text', "
                                                  r"'label'\)"),
    ("a.tsv", "text\tlabel\nno label\n", r"a\.tsv:2: 1 tab-separated fields, but the header has 2"),
    ("a.csv", 'text,label\n"open quote,1\n', r"a\.csv:\d: not valid CSV"),
    ("a.csv", "text,text\nx,y\n", r"a\.csv:1: the header names \['text'\] more than once"),
    ("a.jsonl", '{"text": "x", "label": 1}\n["x", 1]\n', r"a\.jsonl:2: expected a JSON object .*found list"),
    ("a.jsonl", '{"text": "x", "label": 1}\n{"text": "y", label: 0}\n', r"a\.jsonl:2: not valid JSON"),
    ("a.jsonl", '{"text": "x", "label": 1}\n{"text": "y"}\n', r"a\.jsonl:2: no 'label' in this row \(it has 'text'\)"),
    ("a.jsonl", '{"text": "x", "label": null}\n', r"a\.jsonl:1: 'label' is null, expected a string or a number"),
    ("a.jsonl", '{"text": ["x"], "label": 1}\n', r"a\.jsonl:1: 'text' is list"),
    ("a.csv", "text,label\n  ,1\n", r"a\.csv:2: empty text \('text'\)"),
    ("a.csv", "text,label\nfine,\n", r"a\.csv:2: empty label \('label'\)"),
])
def test_bad_files_are_errors_naming_file_and_line(tmp_path, name, content, message):
    p = write(tmp_path / name, content)
    with pytest.raises(ValueError, match=message):
        table = D.read_table(p)
        D.table_rows(table, *D.resolve_columns(table))


def test_a_missing_column_or_header_names_the_flag_and_the_columns_found(tmp_path):
    table = D.read_table(write(tmp_path / "a.csv", "review,stars\nnice,5\n"))
    with pytest.raises(ValueError, match=r"a\.csv: no --text-column column: none of 'text', 'sentence', 'sentence1' "
                                         r"among the columns 'review', 'stars'; name it with --text-column"):
        D.resolve_columns(table)
    with pytest.raises(ValueError, match=r"a\.csv: no column 'body' \(--text-column\); the columns are 'review', "
                                         r"'stars'"):
        D.resolve_columns(table, D.Columns(text="body", label="stars"))
    assert D.resolve_columns(table, D.Columns(text="review", label="stars")) == ("review", None, "stars")
    # a file without its header line: its first row is taken for one, and names no column
    headerless = D.read_table(write(tmp_path / "b.tsv", "a fine film\t1\na bad one\t0\n"))
    with pytest.raises(ValueError, match=r"first line must be a header naming its columns"):
        D.resolve_columns(headerless)


# ----------------------------------------------------------------------------------------
# labels: classification (which order) or regression
# ----------------------------------------------------------------------------------------


def rows_of(*labels):
    return [D.Row(f"text {i}", None, label, i + 2) for i, label in enumerate(labels)]


def test_label_kind_rules():
    # integers: sorted numerically (10 after 2), named by their value ("07" is 7)
    assert D.label_kind(rows_of("2", "10", "07", "-1"), "auto", "f") == ("classification", ("-1", "2", "7", "10"))
    # words (or a mix with words): strings, sorted alphabetically, whatever the row order
    assert D.label_kind(rows_of("pos", "neg", "neutral", "pos"), "auto", "f") == (
        "classification", ("neg", "neutral", "pos"))
    assert D.label_kind(rows_of("1", "x"), "auto", "f") == ("classification", ("1", "x"))
    # decimals: a regression; integers too, when asked
    assert D.label_kind(rows_of("4.5", "3", "1e-1"), "auto", "f") == ("regression", None)
    assert D.label_kind(rows_of("1", "5", "3"), "regression", "f") == ("regression", None)
    assert D.label_kind(rows_of("0.5", "1.5"), "classification", "f") == ("classification", ("0.5", "1.5"))
    with pytest.raises(ValueError, match=r"f:3: label 'high' is not a number"):
        D.label_kind(rows_of("4.5", "high"), "regression", "f")
    with pytest.raises(ValueError, match="every training label is 'pos'; a classifier needs at least two classes"):
        D.label_kind(rows_of("pos", "pos"), "auto", "f")
    for weird in ("nan", "inf", "1_0", "٣"):  # not numbers here, whatever float() or int() say
        assert D.label_kind(rows_of("1", weird), "auto", "f")[1] == tuple(sorted(("1", weird)))


def test_dev_labels_map_through_the_training_classes(tmp_path):
    write(tmp_path / "train.csv", "text,label\na,3\nb,1\nc,2\nd,1\n")
    write(tmp_path / "dev.jsonl", '{"text": "e", "label": 2}\n{"text": "f", "label": "01"}\n')
    files = D.task_files(train_file=tmp_path / "train.csv", dev_file=tmp_path / "dev.jsonl")
    assert files.task is None and all(files.by_name(p) for p in (files.train, files.dev[0][0]))
    spec, train, dev = D.read_task(files)
    assert spec.label_list == ("1", "2", "3") and spec.metrics == ("acc",) and spec.name == str(tmp_path / "train.csv")
    assert [e.label for e in train] == [2, 0, 1, 0] and [e.label for e in dev[""]] == [1, 0]
    write(tmp_path / "dev.jsonl", '{"text": "e", "label": 2}\n{"text": "f", "label": 4}\n')
    with pytest.raises(D.UnknownLabelError, match=r"dev\.jsonl:2: label '4' is not one of \['1', '2', '3'\] "
                                                  r"\(the classes of .*train\.csv\)"):
        D.read_task(files)
    # the dev file must have the training file's columns
    write(tmp_path / "dev.jsonl", '{"sentence": "e", "label": 2}\n')
    with pytest.raises(ValueError, match=r"dev\.jsonl: no column 'text' \(--text-column\); the columns are 'sentence'"):
        D.read_task(files)
    with pytest.raises(ValueError, match="your own data needs --dev-file too"):
        D.read_task(D.task_files(train_file=tmp_path / "train.csv"))
    with pytest.raises(ValueError, match="--data is a GLUE task's folder"):
        D.task_files(data_dir=tmp_path, train_file=tmp_path / "train.csv")


def test_regression_files(tmp_path, tok):
    write(tmp_path / "train.tsv", "sentence1\tsentence2\tscore\na\tb\t0.5\nc\td\t4\n")
    write(tmp_path / "dev.tsv", "sentence1\tsentence2\tscore\ne\tf\t2.25\n")
    spec, train, dev = D.load_task_sets(None, tok, train_file=tmp_path / "train.tsv", dev_file=tmp_path / "dev.tsv")
    assert spec.is_regression and spec.is_pair and spec.metrics == ("pearson", "spearman", "mse", "mae")
    assert train.labels.dtype == np.float32 and train.labels.tolist() == [0.5, 4.0]
    assert dev[""].labels.tolist() == [2.25]
    with pytest.raises(ValueError, match="--task-type classification: task 'sts-b' is a regression"):
        D.read_task(D.task_files("sts-b", train_file=tmp_path / "train.tsv", dev_file=tmp_path / "dev.tsv"),
                    task_type="classification")


def test_a_model_s_labels_decide_the_classes_of_your_data(tmp_path):
    write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\n")
    write(tmp_path / "dev.csv", "text,label\nc,neg\nd,pos\n")
    files = D.task_files(train_file=tmp_path / "train.csv", dev_file=tmp_path / "dev.csv")
    spec, train, _ = D.read_task(files, model=D.ModelLabels(("pos", "neg", "mixed"), "runs/m"))
    assert spec.label_list == ("pos", "neg", "mixed") and [e.label for e in train] == [0, 1]  # the model's ids
    with pytest.raises(D.UnknownLabelError, match=r"train\.csv:2: label 'pos' is not one of \['negative', 'positive'\] "
                                                  r"\(the labels of runs/m\)"):
        D.read_task(files, model=D.ModelLabels(("negative", "positive"), "runs/m"))
    # a model that does not name its classes: as many as the data's, in the data's order
    spec, train, _ = D.read_task(files, model=D.ModelLabels(("LABEL_0", "LABEL_1"), "runs/m"))
    assert spec.label_list == ("neg", "pos")
    with pytest.raises(ValueError, match=r"runs/m has the labels \['LABEL_0', 'LABEL_1', 'LABEL_2'\], but .*train\.csv "
                                         r"has the labels \['neg', 'pos'\]"):
        D.read_task(files, model=D.ModelLabels(("LABEL_0", "LABEL_1", "LABEL_2"), "runs/m"))
    with pytest.raises(ValueError, match=r"train\.csv:2: label 'pos' is not a number"):
        D.read_task(files, model=D.ModelLabels(None, "runs/reg"))  # a regression model reads scores


def test_a_glue_task_from_a_csv_file_keeps_its_labels_and_metrics(tmp_path, data_dir):
    write(tmp_path / "sst.csv", "sentence,label\n\"great, just great\",positive\nawful,0\n")
    files = D.task_files("sst-2", data_dir=data_dir / "SST-2", train_file=tmp_path / "sst.csv")
    assert files.by_name(files.train) and not files.by_name(files.dev[0][0])  # dev.tsv: the GLUE layout
    spec, train, dev = D.read_task(files)
    assert spec is D.TASKS["sst-2"] and [e.label for e in train] == [1, 0] and len(dev[""]) == 872
    write(tmp_path / "mrpc.csv", "text,label\nx,1\n")
    with pytest.raises(ValueError, match=r"mrpc\.csv: task 'mrpc' takes two texts, but the columns read are "
                                         r"\['text'\]"):
        D.read_task(D.task_files("mrpc", data_dir=data_dir / "MRPC", train_file=tmp_path / "mrpc.csv"))
    # a .tsv with a column flag is read by name too
    write(tmp_path / "named.tsv", "label\tsentence\n1\tnice\n")
    files = D.task_files("sst-2", data_dir=data_dir / "SST-2", train_file=tmp_path / "named.tsv",
                         columns=D.Columns(label="label"))
    assert [e.text_a for e in D.read_task(files, splits=("train",))[1]] == ["nice"]


# ----------------------------------------------------------------------------------------
# the runs on your own files
# ----------------------------------------------------------------------------------------

WORDS = {"austen": "pride prejudice ball bennet", "melville": "whale ship sea ahab",
         "carroll": "alice rabbit queen tea"}


def novels(folder, n=12):
    """A tiny 3-class data set: which author a line of words is from (learnable in a few steps)."""
    rng = np.random.default_rng(0)
    lines = {}
    for split in ("train", "dev"):
        rows = [(" ".join(rng.permutation(WORDS[a].split())), a) for _ in range(n) for a in WORDS]
        lines[split] = write(folder / f"{split}.csv", "text,label\n" + "".join(f"{t},{a}\n" for t, a in rows))
    return lines["train"], lines["dev"]


def test_finetune_and_evaluate_on_a_csv_with_string_labels(tmp_path):
    train, dev = novels(tmp_path)
    data = TaskDataSettings(train_file=str(train), dev_file=str(dev), max_length=16)
    out = tmp_path / "model"
    summary = finetune(ModelSettings("tiny"), data, TrainArgs(output_dir=str(out), max_steps=60, batch_size=8, lr=3e-3,
                                                              eval_steps=60, progress=False, seed=0))
    assert summary["task"] == str(train) and summary["final"]["acc"] > 0.6  # chance is 1/3
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "austen", "1": "carroll", "2": "melville"}  # alphabetical
    assert config["label2id"] == {"austen": 0, "carroll": 1, "melville": 2} and "problem_type" not in config
    # evaluate takes the classes from the folder: the dev file alone is enough
    metrics = evaluate_folder(ModelSettings(str(out)), TaskDataSettings(dev_file=str(dev), max_length=16))
    assert metrics["acc"] == pytest.approx(summary["final"]["acc"]) and metrics["examples"] == 36
    # ... and refuses data whose labels the folder does not have, naming both
    with pytest.raises(ValueError, match=r"has the labels \['austen', 'carroll', 'melville'\], but task 'sst-2' has "
                                         r"\['negative', 'positive'\]"):
        evaluate_folder(ModelSettings(str(out)), TaskDataSettings("sst-2", max_eval_examples=8))


def test_a_regression_model_is_saved_and_read_as_transformers_does(tmp_path):
    write(tmp_path / "train.jsonl", "".join(json.dumps({"text": w, "label": i / 4}) + "\n"
                                            for i, w in enumerate(["bad", "poor", "fine", "good", "great"] * 4)))
    data = TaskDataSettings(train_file=str(tmp_path / "train.jsonl"), dev_file=str(tmp_path / "train.jsonl"))
    summary = finetune(ModelSettings("tiny"), data, TrainArgs(output_dir=str(tmp_path / "m"), max_steps=2, batch_size=4,
                                                              eval_steps=2, progress=False))
    assert set(summary["final"]) == {"step", "pearson", "spearman", "mse", "mae"}
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "LABEL_0"}
    model = BertForSequenceClassification.from_pretrained(tmp_path / "m")
    assert model.num_labels == 1
    assert set(evaluate_folder(ModelSettings(str(tmp_path / "m")), data)) >= {"pearson", "spearman"}


def test_augment_then_distill_your_own_data(tmp_path):
    """augment writes train_aug.jsonl with the input's columns; distill-task reads it back with the same
    flags, the teacher's classes follow into the student's config.json."""
    train, dev = novels(tmp_path, n=4)
    write(tmp_path / "train.csv", train.read_text().replace("text,label", "words,author"))
    write(tmp_path / "dev.csv", dev.read_text().replace("text,label", "words,author"))
    columns = dict(text_column="words", label_column="author", max_length=16)
    result = T.augment(TaskDataSettings(train_file=str(tmp_path / "train.csv"), **columns),
                       AugmentSettings(candidates="glove", n_aug=2, output_dir=str(tmp_path / "aug"), progress=False))
    assert result["file"] == str(tmp_path / "aug" / "train_aug.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "aug" / "train_aug.jsonl").read_text().splitlines()]
    assert len(rows) == result["rows"] > 12 and all(set(r) == {"words", "author"} for r in rows)
    teacher = BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=30522), num_labels=3)
    teacher.config.set_labels(["melville", "austen", "carroll"])  # not alphabetical: the student must follow
    teacher.save_pretrained(tmp_path / "teacher")
    data = TaskDataSettings(train_file=result["file"], dev_file=str(tmp_path / "dev.csv"), **columns)
    results = T.pipeline(data, TaskDistillSettings(teacher=str(tmp_path / "teacher"), student="tiny", vocab=None,
                                                   pred_steps=2),
                         TrainArgs(eval_steps=2, batch_size=8, progress=False, output_dir=str(tmp_path / "distill")))
    assert results["task"] == result["file"] and 0 <= results["student"]["acc"] <= 1
    config = json.loads((tmp_path / "distill" / "student" / "config.json").read_text())
    assert config["id2label"] == {"0": "melville", "1": "austen", "2": "carroll"}


def test_augment_table_keeps_every_column_and_writes_atomically(tmp_path):
    glove = write(tmp_path / "glove.txt", "good 1 0\nfine 0.9 0.1\nbad -1 0\nawful -0.9 -0.1\n")
    src = write(tmp_path / "t.csv", 'id,text,label\n7,"a good film",1\n8,awful stuff,0\n')
    out = tmp_path / "out" / "aug.jsonl"
    n = augment_table(src, out, Augmenter(None, GloveNeighbours(glove), k=1, p=1.0, n_aug=3, seed=0), progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert n == len(rows) and rows[0] == {"id": "7", "text": "a good film", "label": "1"}
    assert {"id": "7", "text": "a fine film", "label": "1"} in rows
    assert {"id": "8", "text": "bad stuff", "label": "0"} in rows
    assert sorted(p.name for p in out.parent.iterdir()) == ["aug.jsonl"]
    n = augment_table(src, out, Augmenter(None, GloveNeighbours(glove), k=1, p=1.0, n_aug=3), max_examples=1,
                      progress=False)
    assert n == 2 and all(json.loads(line)["id"] == "7" for line in out.read_text().splitlines())


def test_config_names_a_classifier_s_outputs_as_transformers_does():
    config = BertConfig.from_preset("tiny")
    assert config.label_names(3) == ["LABEL_0", "LABEL_1", "LABEL_2"] and config.problem_type is None
    config.set_labels(["neg", "pos"])
    assert config.to_dict()["id2label"] == {"0": "neg", "1": "pos"}
    assert config.to_dict()["label2id"] == {"neg": 0, "pos": 1}
    assert config.label_names(2) == ["neg", "pos"] and config.label_names(3)[2] == "LABEL_2"  # names fit 2 outputs only
    config.set_labels(None)
    assert config.problem_type == "regression" and config.label_names(1) == ["LABEL_0"]
    config.set_labels(["a", "b", "c"])
    assert config.problem_type is None  # a classification again
    for bad in (["a"], ["a", "a"]):
        with pytest.raises(ValueError, match="two or more distinct strings"):
            config.set_labels(bad)
