"""The TinyBERT stages as library calls: students, general and task distillation, fit_dense hand-over, the pipeline."""
import json
from pathlib import Path

import numpy as np
import pytest

from minibert import BertConfig, BertForSequenceClassification, BertModel
from minibert import data as D
from minibert import distillation as T
from minibert.checkpoint import FIT_DENSE_NAME, CheckpointError, CheckpointWarning
from minibert.distill import Distiller
from minibert.finetune import finetune
from minibert.report import measure_latency, results_table
from minibert.settings import (CorpusSettings, GeneralDistillSettings, ModelSettings, TaskDataSettings,
                               TaskDistillSettings)
from minibert.specs import build_student, parse_student_spec, student_from_teacher_layers
from minibert.settings import TrainArgs


def tiny_classifier(tok, seed=0):
    return BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=len(tok)), num_labels=2, seed=seed)


def test_student_from_teacher_layers_copies_them_exactly():
    cfg = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=4, num_attention_heads=2, intermediate_size=16)
    teacher = BertModel(cfg, seed=1).eval()
    student = student_from_teacher_layers(teacher, [1, 3]).eval()
    assert student.config.num_hidden_layers == 2
    t, s = teacher.named_parameters(), student.named_parameters()
    assert np.array_equal(s["encoder.layer.0.output.dense.weight"], t["encoder.layer.1.output.dense.weight"])
    assert np.array_equal(s["encoder.layer.1.attention.self.query.bias"], t["encoder.layer.3.attention.self.query.bias"])
    assert np.array_equal(s["embeddings.word_embeddings.weight"], t["embeddings.word_embeddings.weight"])
    ids = np.array([[5, 6, 7, 8]])
    # the student's first layer sees what the teacher's layer 1 sees only if layer 0 is the identity; instead
    # check that running the teacher's layer 1 on the embeddings equals the student's layer 0
    h = teacher.embeddings.forward(ids, np.zeros_like(ids))
    mask = np.zeros((1, 1, 1, 4), dtype=np.float32)
    expect, _, _ = teacher.layers[1].forward(h, mask)
    got = student(ids).hidden_states[1]
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="teacher layers"):
        student_from_teacher_layers(teacher, [0, 4])


def test_parse_student_spec():
    assert parse_student_spec("teacher:0,2,4") == ("teacher", [0, 2, 4])
    assert parse_student_spec("tinybert-3") == ("preset", "tinybert-3")
    assert parse_student_spec("runs/general") == ("folder", "runs/general")
    with pytest.raises(ValueError, match="teacher:"):
        parse_student_spec("teacher:a,b")


@pytest.mark.filterwarnings("ignore:.*newly initialised")
def test_build_student_starts_from_the_teachers_classifier_when_it_reads_the_same_space(tok, tmp_path):
    teacher = tiny_classifier(tok, seed=3)
    params = teacher.named_parameters()

    def same_head(student):
        s = student.named_parameters()
        return all(np.array_equal(s[n], params[n]) for n in ("classifier.weight", "classifier.bias"))

    copied = build_student("teacher:0", 2, tok, seed=0, teacher=teacher)
    assert same_head(copied)
    assert not same_head(build_student("teacher:0", 2, tok, seed=0, teacher=teacher, copy_teacher_classifier=False))
    # A stage-1 encoder folder of the teacher's width has no classifier: it gets the teacher's.
    BertModel(teacher.config, seed=5).save_pretrained(tmp_path / "stage1", tokenizer=tok)
    assert same_head(build_student(str(tmp_path / "stage1"), 2, tok, seed=0, teacher=teacher))
    # A folder that has its own classifier keeps it.
    copied.named_parameters()["classifier.bias"][...] = 7.0
    copied.save_pretrained(tmp_path / "with-head", tokenizer=tok)
    kept = build_student(str(tmp_path / "with-head"), 2, tok, seed=0, teacher=teacher)
    assert np.all(kept.named_parameters()["classifier.bias"] == 7.0)


@pytest.fixture(scope="module")
def general_student(tmp_path_factory, data_dir):
    """A few steps of stage 1 on WikiText-2 valid: MiniLM teacher -> a 3-layer, 48-wide student."""
    out = tmp_path_factory.mktemp("general")
    T.general_distillation(GeneralDistillSettings(student="tiny-3"),
                           CorpusSettings(corpus=[str(data_dir / "wikitext-2-raw" / "wiki.valid.raw")], max_seq_length=32),
                           TrainArgs(output_dir=str(out), batch_size=8, max_steps=40, lr=1e-3, warmup_ratio=0.05,
                                     eval_steps=20, save_steps=0, log_steps=5, progress=False))
    return out


def test_general_distillation_learns_and_saves_fit_dense(general_student):
    log = [json.loads(line) for line in (general_student / "metrics.jsonl").read_text().splitlines()]
    att = [r["att"] for r in log if "att" in r]
    assert att[-1] < 0.8 * att[0], att  # the student's attention scores move toward the teacher's
    evals = [r["eval"] for r in log if "eval" in r]
    assert evals[-1]["heldout_total"] < evals[0]["heldout_total"]
    assert (general_student / FIT_DENSE_NAME).is_file() and (general_student / "config.json").is_file()
    student = BertModel.from_pretrained(general_student)
    assert student.config.num_hidden_layers == 3 and student.config.hidden_size == 48


def test_task_distillation_from_the_general_student(general_student, tmp_path):
    """distill-task continues stage 1's student (and its fit_dense) on SST-2 with a quickly tuned teacher."""
    teacher_dir = tmp_path / "teacher"
    data = TaskDataSettings(max_train_examples=64, max_eval_examples=32)
    finetune(ModelSettings("minilm-l6"), data,
             TrainArgs(output_dir=str(teacher_dir), max_steps=2, batch_size=16, progress=False))
    out = tmp_path / "task"
    results = T.pipeline(data, TaskDistillSettings(teacher=str(teacher_dir), student=str(general_student), inter_steps=3,
                                                   pred_steps=4),
                         TrainArgs(eval_steps=2, batch_size=16, progress=False, output_dir=str(out)))
    assert results == json.loads((out / "results.json").read_text())
    for who in ("teacher", "student"):
        assert {"accuracy", "params", "latency_ms"} <= set(results[who])
    assert results["student"]["params"] < results["teacher"]["params"]
    student = BertForSequenceClassification.from_pretrained(out / "student", num_labels=2)
    assert student.config.hidden_size == 48
    inter = [json.loads(line) for line in (out / "intermediate" / "metrics.jsonl").read_text().splitlines()]
    assert all("att" in r and "rep" in r for r in inter if "loss" in r)
    pred = [json.loads(line) for line in (out / "prediction" / "metrics.jsonl").read_text().splitlines()]
    assert all("pred" in r for r in pred if "loss" in r)


def test_a_stage1_fit_dense_of_another_width_is_an_error_unless_reinit_is_asked_for(tok, data_dir, tmp_path):
    teacher, student = tiny_classifier(tok, seed=1).eval(), tiny_classifier(tok, seed=2)  # 64 wide
    wider = BertConfig.from_preset("tiny", vocab_size=len(tok), hidden_size=128)  # a 128-wide teacher's projection
    stage1 = tmp_path / "stage1"
    T.save_student(stage1, student.bert, Distiller(student.config, wider), tok)
    _, train, dev = D.load_task_data("sst-2", tok, max_length=16, max_train_examples=8, max_eval_examples=8)
    settings = TaskDistillSettings(pred_steps=1)
    training = TrainArgs(batch_size=8, progress=False, output_dir=str(tmp_path / "out"))
    with pytest.raises(CheckpointError, match=FIT_DENSE_NAME):
        T.task_distillation("sst-2", teacher, student, train, dev, tok, settings, training, fit_dense_from=stage1)
    settings.fit_dense_mismatch = "reinit"
    with pytest.warns(CheckpointWarning, match="fresh"):
        res = T.task_distillation("sst-2", teacher, student, train, dev, tok, settings, training,
                                  fit_dense_from=stage1)
    assert Path(res["folder"], "model.safetensors").is_file()


def test_pipeline_writes_results_and_table(tmp_path):
    out = tmp_path / "pipe"
    results = T.pipeline(TaskDataSettings(max_train_examples=96, max_eval_examples=48),
                         TaskDistillSettings(inter_steps=2, pred_steps=3),
                         TrainArgs(eval_steps=2, batch_size=16, progress=False, output_dir=str(out)))
    assert results == json.loads((out / "results.json").read_text())
    assert 0 < results["student"]["accuracy"] <= 1 and 0 < results["teacher"]["accuracy"] <= 1
    assert results["student"]["score"] == results["student"]["acc"] and results["student"]["main_metric"] == "acc"
    assert results["student"]["encoder_params"] * 3 == results["teacher"]["encoder_params"]  # teacher:0,5: 2 of 6
    assert results["retained"] == results["student"]["score"] / results["teacher"]["score"]
    table = results_table(results)
    assert table.splitlines()[2].startswith("teacher") and table.splitlines()[3].startswith("student")
    assert (Path(results["student_folder"]) / "model.safetensors").is_file()


@pytest.mark.parametrize("vocab_size", [30, 1500, 30522])
def test_latency_ids_stay_inside_the_vocabulary(vocab_size):
    """measure_latency feeds ids the model has, whatever its vocabulary size (else: a ValueError)."""
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=8, max_position_embeddings=16)
    assert measure_latency(BertModel(cfg), 2, 16, repeats=1) > 0
