"""A practitioner's day (issue 27): any model shape, honest notes, regression errors and their baseline,
the task line, declared classes, re-heading, dropped dev labels, a validation split, early stopping,
per-class metrics, the best/last folder convention, predict's blank lines and kept columns, augment's
samples and spelling, plot_metrics on a pipeline run, --device cupy without CuPy, the defaults' evidence,
and GLUE data that fetches itself from a (local) server."""
from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import io
import json
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minibert import data as D
from minibert.augment import Augmenter, restore_spelling
from minibert.config import PRESETS
from minibert.errors import CheckpointError, UsageError
from minibert.finetune import evaluate_folder, finetune
from minibert.model import BertForSequenceClassification
from minibert.settings import ModelSettings, TaskDataSettings, TaskDistillSettings, TrainArgs
from minibert.specs import build_model, build_student, default_heads, shape_config, student_encoder, tokenizer_for
from minibert.train import QUICK_PIPELINE, build_parser, main, parse_args

REPO = Path(__file__).resolve().parent.parent
WORDS = {"austen": "pride prejudice ball bennet", "melville": "whale ship sea ahab",
         "carroll": "alice rabbit queen tea"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def novels(folder: Path, n: int = 12, dev_extra: str = "") -> tuple[Path, Path]:
    """A tiny 3-class set (which author a line of words is from), learnable in a few steps."""
    rng = np.random.default_rng(0)
    paths = []
    for split in ("train", "dev"):
        rows = [(" ".join(rng.permutation(WORDS[a].split())), a) for _ in range(n) for a in WORDS]
        body = "".join(f"{i},{t},{a}\n" for i, (t, a) in enumerate(rows))
        paths.append(write(folder / f"{split}.csv", "id,text,label\n" + body + (dev_extra if split == "dev" else "")))
    return paths[0], paths[1]


def small_args(out: Path, **kw) -> TrainArgs:
    return TrainArgs(**{"output_dir": str(out), "max_steps": 6, "batch_size": 8, "lr": 3e-3, "eval_steps": 3,
                        "progress": False, "seed": 0, **kw})


# ------------------------------------------------------------------------------ 3, 4: shapes


def test_a_shape_builds_a_random_model_of_that_shape(tok, capsys):
    assert shape_config("3x256") == dict(num_hidden_layers=3, hidden_size=256, num_attention_heads=4,
                                         intermediate_size=1024)
    assert shape_config("4x312x12")["num_attention_heads"] == 12 and shape_config("tiny") is None
    assert [default_heads(h) for h in (768, 256, 312, 48, 100)] == [12, 4, 6, 1, 2]
    with pytest.raises(UsageError, match=r"3x100x7.*not a multiple of 7.*LxH or LxHxA"):
        shape_config("3x100x7")
    student = build_student("2x32", 3, tok, seed=0)  # a task student, random
    assert (student.config.num_hidden_layers, student.config.hidden_size, student.num_labels) == (2, 32, 3)
    encoder = student_encoder("2x32x2", None, tok, seed=0)  # stage 1's start
    assert encoder.config.num_attention_heads == 2 and encoder.config.vocab_size == len(tok)
    assert "randomly initialised" not in capsys.readouterr().err  # a shape says so itself
    build_student("tiny", 2, tok, seed=0)
    assert "note: student 'tiny' is a randomly initialised 2 x 64 BERT" in capsys.readouterr().err
    build_model(BertForSequenceClassification, "tiny-3", tok, seed=0, num_labels=2)  # as --model bert-base would
    assert "note: model 'tiny-3' is a randomly initialised 3 x 48 BERT (a preset's shape, no pre-trained weights)" in \
        capsys.readouterr().err


def test_an_unknown_model_lists_what_a_model_may_be(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["finetune", "--model", "bert-bse", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 1 and len(err.splitlines()) == 1
    assert "'bert-bse' is neither a folder nor a known model name" in err and "LxH or LxHxA" in err
    assert all(name in err for name in PRESETS) and "minilm-l6" in err and "teacher:<layers>" in err


# ---------------------------------------------------- 2, 10: regression, the task line, the cards


def test_regression_errors_baseline_and_the_task_line(tmp_path, capsys):
    rows = [("bad", 1.0), ("poor", 2.0), ("fine", 3.0), ("good", 4.0)] * 5
    train = write(tmp_path / "train.csv", "text,score\n" + "".join(f"{t},{s:.1f}\n" for t, s in rows))
    out = tmp_path / "m"
    summary = finetune(ModelSettings("1x32"), TaskDataSettings(train_file=str(train), dev_file=str(train)),
                       small_args(out))
    err = capsys.readouterr().err
    # labels 1.0 .. 4.0 become a regression, and the first line says so and how to read them as classes
    assert "regression (one output, scored by pearson, spearman, mse, mae)" in err
    assert "numbers written with decimals (1.0, 2.0, 3.0, 4.0) are read as scores" in err
    assert "give --task-type classification" in err
    assert "predicting the training labels' mean (2.5) for every dev example scores MSE 1.2500, MAE 1.0000" in err
    assert set(summary["final"]) == {"step", "pearson", "spearman", "mse", "mae"}
    assert summary["baseline"] == {"of": "training labels' mean", "mean": 2.5, "mse": 1.25, "mae": 1.0}
    results = json.loads((out / "results.json").read_text())
    assert results["baseline"]["mae"] == 1.0
    card = (out / "README.md").read_text()
    assert "regression model (one output, trained on the mean squared error)" in card and "classifier" not in card
    assert "| predicting the training labels' mean (2.5) | — | — | 1.2500 | 1.0000 |" in card
    assert 'clf("bad")' in card  # the usage example is the data's first text, not "a gripping film"
    assert "gripping" not in card
    metrics = evaluate_folder(ModelSettings(str(out)), TaskDataSettings(dev_file=str(train)))
    assert metrics["baseline"]["of"] == "dev labels' own mean" and {"mse", "mae"} <= set(metrics)
    # --task-type classification reads the same labels as four classes
    finetune(ModelSettings("1x32"), TaskDataSettings(train_file=str(train), dev_file=str(train),
                                                      task_type="classification"), small_args(tmp_path / "c"))
    assert "classification, 4 classes (1.0, 2.0, 3.0, 4.0); --task-type classification" in capsys.readouterr().err


def test_metrics_mse_mae_and_per_class():
    preds, labels = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    assert D.mse(preds, labels) == pytest.approx((0.25 + 0 + 1) / 3)
    assert D.mae(preds, labels) == pytest.approx(0.5)
    assert D.mean_baseline([1.0, 3.0], [2.0, 4.0]) == {"mean": 2.0, "mse": 2.0, "mae": 1.0}
    report = D.per_class([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 1], ["a", "b", "c"])
    assert report["confusion_matrix"] == {"labels": ["a", "b", "c"], "matrix": [[1, 0, 0], [0, 1, 1], [0, 1, 2]]}
    assert report["per_class"]["c"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": pytest.approx(2 / 3), "support": 3}
    assert report["per_class"]["a"]["f1"] == 1.0


# ---------------------------------------------------- 5: declared classes, new head, dropped labels


def test_declared_labels_dropped_dev_rows_and_a_new_head(tmp_path, capsys):
    train, dev = novels(tmp_path, dev_extra="99,whale tea,dickens\n100,ball sea,dickens\n")
    data = TaskDataSettings(train_file=str(train), dev_file=str(dev), max_length=16)
    with pytest.raises(D.UnknownLabelError, match=r"dev.csv:38: label 'dickens'.*--drop-unknown-dev-labels"):
        finetune(ModelSettings("1x32"), data, small_args(tmp_path / "a"))
    labels = ["melville", "carroll", "austen"]
    data = TaskDataSettings(train_file=str(train), dev_file=str(dev), max_length=16, labels=labels,
                            drop_unknown_dev_labels=True)
    summary = finetune(ModelSettings("1x32"), data, small_args(tmp_path / "b"))
    err = capsys.readouterr().err
    assert "left out 2 of 38 dev rows" in err and "('dickens'" in err and "dev.csv:38" in err
    assert "classification, 3 classes (melville, carroll, austen); the classes declared by --labels" in err
    assert json.loads((tmp_path / "b" / "config.json").read_text())["id2label"] == {str(i): n
                                                                                 for i, n in enumerate(labels)}
    assert summary["confusion_matrix"]["labels"] == labels
    assert sum(map(sum, summary["confusion_matrix"]["matrix"])) == 36
    # a trained 3-class folder on 2 new classes: refused without --new-head, a new classifier with it
    two = write(tmp_path / "two.csv", "text,label\n" + "".join(f"{w},{'sea' if w in WORDS['melville'] else 'land'}\n"
                                                             for words in WORDS.values() for w in words.split()))
    new_data = TaskDataSettings(train_file=str(two), dev_file=str(two), max_length=16)
    with pytest.raises(ValueError, match=r"label 'land' is not one of.*finetune --new-head starts a new classifier"):
        finetune(ModelSettings(str(tmp_path / "b")), new_data, small_args(tmp_path / "c"))
    finetune(ModelSettings(str(tmp_path / "b"), new_head=True), new_data, small_args(tmp_path / "c"))
    assert "--new-head" in capsys.readouterr().err
    old = BertForSequenceClassification.from_pretrained(tmp_path / "b")
    new = BertForSequenceClassification.from_pretrained(tmp_path / "c" / "last")
    assert new.num_labels == 2 and json.loads((tmp_path / "c" / "config.json").read_text())["id2label"] == {
        "0": "land", "1": "sea"}
    assert old.named_parameters()["bert.embeddings.word_embeddings.weight"].shape == \
        new.named_parameters()["bert.embeddings.word_embeddings.weight"].shape


# ----------------------------------------- 7: validation split, early stopping, per class, folders


def test_validation_split_is_seeded_and_stratified(tmp_path):
    examples = [D.InputExample(f"t{i}", None, i % 3 if i < 30 else 0, i + 2) for i in range(40)]  # class 0: 20
    train, dev = D.split_validation(examples, 0.25, seed=1)
    # each class holds out a quarter of its own rows, rounded (to even): 20 -> 5, 10 -> 2 (2.5), 10 -> 2
    assert [sum(e.label == c for e in dev) for c in range(3)] == [5, 2, 2] and len(train) == 31
    assert D.split_validation(examples, 0.25, seed=1) == (train, dev)  # seeded
    assert D.split_validation(examples, 0.25, seed=2)[1] != dev
    assert {e.text_a for e in train}.isdisjoint(e.text_a for e in dev)


def test_validation_split_early_stopping_and_the_folder_convention(tmp_path, capsys):
    train, _ = novels(tmp_path)
    out = tmp_path / "m"
    a = parse_args(["finetune", "--model", "1x32", "--train-file", str(train), "--validation-split", "0.25",
                    "--max-length", "16", "--max-steps", "40", "--eval-steps", "2", "--lr", "0",
                    "--early-stopping-patience", "2", "--batch-size", "8", "--progress", "false",
                    "--output-dir", str(out)])
    a.func(a)
    err = capsys.readouterr().err
    assert "9 of 36 training examples held out as the dev set (seed 42, stratified by class)" in err
    assert "early stopping at step 6: 2 evaluations without a better acc" in err  # lr 0: it never improves
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 6 and results["stopped_early"] and results["handed_over"] == "best"
    assert sum(c["support"] for c in results["per_class"].values()) == 9
    # the folder holds the best dev checkpoint, last/ the model at the end of training
    best = BertForSequenceClassification.from_pretrained(out / "best").named_parameters()
    here = BertForSequenceClassification.from_pretrained(out).named_parameters()
    assert all(np.array_equal(best[k], here[k]) for k in best)
    assert (out / "last" / "model.safetensors").is_file() and "hands over" in (out / "README.md").read_text()


def test_evaluate_reports_per_class_metrics_and_the_confusion_matrix(tmp_path, capsys):
    train, dev = novels(tmp_path)
    finetune(ModelSettings("1x32"), TaskDataSettings(train_file=str(train), dev_file=str(dev), max_length=16),
             small_args(tmp_path / "m"))
    capsys.readouterr()
    main(["evaluate", "--model", str(tmp_path / "m"), "--dev-file", str(dev), "--max-length", "16"])
    shown = json.loads(capsys.readouterr().out)
    assert set(shown["per_class"]) == {"austen", "carroll", "melville"}
    matrix = np.array(shown["confusion_matrix"]["matrix"])
    assert matrix.sum() == 36 and np.trace(matrix) / 36 == pytest.approx(shown["acc"])


# ------------------------------------------------------------------------------------ 6: predict


def test_predict_skips_blank_lines_keeps_columns_and_needs_a_model(tmp_path, capsys):
    train, dev = novels(tmp_path)
    finetune(ModelSettings("1x32"), TaskDataSettings(train_file=str(train), dev_file=str(dev), max_length=16),
             small_args(tmp_path / "m"))
    write(tmp_path / "in.csv", "id,text,label\n7,whale sea,melville\n8,   ,austen\n9,alice tea,carroll\n")
    capsys.readouterr()
    main(["predict", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "in.csv"), "--keep-columns", "id",
          "label", "--progress", "false"])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["id"], r["input_label"], r["text"]) for r in rows] == [("7", "melville", "whale sea"),
                                                                    ("9", "carroll", "alice tea")]
    assert "skipped 1 blank or whitespace-only input of" in captured.err and "(line 3)" in captured.err
    write(tmp_path / "in.txt", "whale\n\n  \nalice\n")
    main(["predict", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "in.txt"), "--progress", "false"])
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 and "(line 2, line 3)" in captured.err
    with pytest.raises(SystemExit) as info:
        main(["predict", "whale"])
    assert info.value.code == 2 and "predict needs --model FOLDER" in capsys.readouterr().err
    shown = " ".join(build_parser()._subparsers._group_actions[0].choices["predict"].format_help().split())
    assert "is skipped and counted on the terminal" in shown and "--model MODEL required" in shown


# ------------------------------------------------------------------------------------ 7: augment


def test_augmented_copies_keep_the_user_s_spelling():
    tokens = ["holmes", "sat", "down", ",", "smiling", "."]
    assert restore_spelling("Holmes  sat down, SMILING.", tokens,
                            ["watson", "sat", "down", ",", "laughing", "."]) == "Watson  sat down, LAUGHING."
    assert restore_spelling("Holmes sat.", ["holmes", "sat", "."], ["holmes", "sat", "."]) == "Holmes sat."

    class Glove:  # every candidate word's neighbours
        def neighbours_many(self, words, k):
            return [["watson"] for _ in words]

    sentence = "Holmes smiled, and Holmes wrote."
    plain = Augmenter(None, Glove(), k=1, p=1.0, n_aug=2, seed=0).augment(sentence)
    kept = Augmenter(None, Glove(), k=1, p=1.0, n_aug=2, seed=0, keep_spelling=True).augment(sentence)
    assert plain == [sentence, "watson watson , and watson watson ."]
    assert kept == [sentence, "Watson watson, and Watson watson."]


def test_augment_prints_samples_of_the_data_it_read(tmp_path, capsys):
    train = write(tmp_path / "train.csv", "text,label\nHolmes smiled at Watson.,a\nThe whale dived deep.,b\n")
    main(["augment", "--train-file", str(train), "--candidates", "glove", "--n-aug", "2", "--progress", "false",
          "--output-dir", str(tmp_path / "aug")])
    out = capsys.readouterr().out
    assert "Holmes smiled at Watson." in out and "charming" not in out
    rows = [json.loads(line) for line in (tmp_path / "aug" / "train_aug.jsonl").read_text().splitlines()]
    assert all(r["text"][0].isupper() and r["text"].endswith(".") and " ." not in r["text"] for r in rows)


# ------------------------------------------------------------------------------- plot_metrics


def test_plot_metrics_draws_a_figure_per_stage(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("plot_metrics", REPO / "bench" / "plot_metrics.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    for stage, lines in (("intermediate", [{"step": 1, "loss": 2.0, "att": 1.0, "rep": 1.0, "lr": 1e-4}]),
                         ("prediction", [{"step": 1, "loss": 1.0, "pred": 1.0}, {"step": 1, "eval": {"acc": 0.5}}])):
        write(tmp_path / "run" / stage / "metrics.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    assert plot.main([str(tmp_path / "run"), "--out", str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig-intermediate.png").stat().st_size > 0 and (tmp_path / "fig-prediction.png").is_file()
    assert plot.main([str(tmp_path / "run" / "prediction"), "--out", str(tmp_path / "one.png")]) == 0
    assert plot.main([str(tmp_path), "--out", str(tmp_path / "none.png")]) == 2
    assert "holds no metrics.jsonl" in capsys.readouterr().err


# ------------------------------------------------------------------------- 8: --device cupy


def test_device_cupy_without_cupy_is_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError, as on a machine without it
    with pytest.raises(SystemExit) as info:
        main(["finetune", "--device", "cupy", "--model", "tiny"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: --device cupy needs CuPy") and len(err.splitlines()) == 1


# -------------------------------------------------------------------------------- 1: defaults


def test_defaults_help_and_the_quick_job_agree():
    s = TaskDistillSettings()
    assert s.method == "tinybert" and s.inter_epochs > 0 and s.student == "teacher:0,5"
    assert QUICK_PIPELINE[QUICK_PIPELINE.index("--student") + 1] == s.student
    helps = {a.dest: a.help for a in build_parser()._subparsers._group_actions[0].choices["pipeline"]._actions}
    assert "docs/study.md" in helps["method"] and "+2.75" in helps["method"] and "docs/results.md" in helps["method"]
    assert "(default: tinybert)" in helps["method"] and "(default: 1.0)" in helps["inter_epochs"]
    assert "(default: teacher:0,5)" in helps["student"]
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("finetune", "evaluate", "augment", "distill-task", "pipeline"):  # not for GLUE tasks alone
        assert "your own" in " ".join(commands[name].description.split()), name
    readme = (REPO / "README.md").read_text()
    assert "--student teacher:0,2,4`)" not in readme and "skip" not in readme.split("## Distillation in one screen")[1][
        :1500]


# ---------------------------------------------------------------------- 9: data that fetches itself


class Server:
    """A local HTTP server on 127.0.0.1 serving a folder, in a thread."""

    def __init__(self, folder: Path):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # no request lines on stderr
                pass

        handler = functools.partial(Quiet, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_missing_glue_task_is_downloaded_verified_into_the_cache(data_dir, tok, tmp_path, monkeypatch, capsys):
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "SST-2.zip", "w") as z:  # GLUE's layout: SST-2/train.tsv, SST-2/dev.tsv
        for split in ("train", "dev"):
            z.write(data_dir / "SST-2" / f"{split}.tsv", f"SST-2/{split}.tsv")
    server = Server(served)
    try:
        monkeypatch.setenv("MINIBERT_DATA_URL", server.url)
        monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("MINIBERT_DATA", str(tmp_path / "empty"))
        monkeypatch.setattr(D.roots, "_REPO_DATA", tmp_path / "repo-data")
        monkeypatch.chdir(tmp_path)
        # offline (the tests' default, conftest): not found, and it says why it was not downloaded
        with pytest.raises(D.DataNotFoundError, match="Staying offline"):
            D.load_task_sets("sst-2", tok, max_train_examples=5)
        monkeypatch.setenv("MINIBERT_OFFLINE", "0")
        with pytest.raises(D.DataNotFoundError, match="cannot find 'SST-2'"):  # --offline wins over the default
            D.load_task_sets("sst-2", tok, offline=True)
        spec, train, dev = D.load_task_sets("sst-2", tok, max_train_examples=5)
        err = capsys.readouterr().err
        assert f"downloading it from {server.url}/SST-2.zip into {tmp_path / 'cache'}" in err
        assert len(train) == 5 and len(dev[""]) == 872
        for split in ("train", "dev"):
            assert (tmp_path / "cache" / "SST-2" / f"{split}.tsv").read_bytes() == \
                (data_dir / "SST-2" / f"{split}.tsv").read_bytes()
        assert not list((tmp_path / "cache").rglob("*.part"))  # atomic: no temporaries left
        D.load_task_sets("sst-2", tok, max_train_examples=5)  # found in the cache now: no second download
        assert "downloading" not in capsys.readouterr().err
        # a served file that is not the pinned one: refused, nothing written, a clear message
        with zipfile.ZipFile(served / "CoLA.zip", "w") as z:
            z.writestr("CoLA/train.tsv", "x\t1\t\tA sentence.\n")
            z.writestr("CoLA/dev.tsv", "x\t1\t\tA sentence.\n")
        with pytest.raises(D.DataNotFoundError, match=r"(?s)could not download 'CoLA'.*checksum mismatch"):
            D.find_data("CoLA", "--data", fetch=True)
        assert not (tmp_path / "cache" / "CoLA").exists()
    finally:
        server.close()


def test_prepare_glue_uses_the_library_and_roots_stay_in_the_repository(monkeypatch):
    script = (REPO / "data" / "prepare_glue.py").read_text()
    assert "minibert.data.glue_sources" in script and "sha256" not in script.split('"""', 2)[2]
    assert "minibert.data.download" in (REPO / "data" / "_common.py").read_text()
    monkeypatch.delenv("MINIBERT_DATA")
    monkeypatch.delenv("MINIBERT_CACHE", raising=False)
    assert D.data_roots() == [Path("data"), REPO / "data", Path.home() / ".cache" / "minibert" / "data"]
    assert hashlib.sha256(b"").hexdigest() == D.download.sha256_hex(b"")
    help_text = TaskDataSettings.__dataclass_fields__["data"].metadata["help"]
    assert "shared" not in help_text and "~/.cache/minibert/data" in help_text


def test_a_regression_pipeline_with_a_shaped_student(tmp_path, tok, capsys):
    """distill-task on your own scores: a 1x32x4 student (tinybert compares heads: the teacher's 4), the teacher's score as target, the baseline in
    results.json and in the card, the best in student/ and the last in student/last/."""
    from minibert.config import BertConfig
    from minibert.distillation import pipeline

    rows = [("bad", 1.0), ("poor", 2.0), ("fine", 3.5), ("good", 4.0)] * 4
    train = write(tmp_path / "train.jsonl", "".join(json.dumps({"text": t, "label": s}) + "\n" for t, s in rows))
    teacher = BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=len(tok)), num_labels=1)
    teacher.config.set_labels(None)
    teacher.save_pretrained(tmp_path / "teacher", tokenizer=tok)
    results = pipeline(TaskDataSettings(train_file=str(train), dev_file=str(train)),
                       TaskDistillSettings(teacher=str(tmp_path / "teacher"), student="1x32x4", pred_steps=2),
                       TrainArgs(eval_steps=1, batch_size=8, progress=False, output_dir=str(tmp_path / "d")))
    assert results["baseline"]["mean"] == pytest.approx(2.625) and {"mse", "mae"} <= set(results["student"])
    assert (tmp_path / "d" / "student" / "last" / "model.safetensors").is_file()
    card = (tmp_path / "d" / "student" / "README.md").read_text()
    assert "regression model" in card and "the teacher's score as the target" in card
    assert "| predicting the training labels' mean (2.625) |" in card
    err = capsys.readouterr().err
    assert "tinybert: the intermediate-layer stage (1 epoch), then the prediction stage (2 steps)" in err
