"""The TinyBERT stages as runs: student initialisation, general and task distillation, the pipeline."""
import json
from pathlib import Path

import numpy as np
import pytest

from minibert import BertConfig, BertForSequenceClassification, BertModel
from minibert import tinybert as T
from minibert.checkpoint import teacher_path
from minibert.train import main


def test_student_from_teacher_layers_copies_them_exactly():
    cfg = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=4, num_attention_heads=2, intermediate_size=16)
    teacher = BertModel(cfg, seed=1).eval()
    student = T.student_from_teacher_layers(teacher, [1, 3]).eval()
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
    expect, _ = teacher.layers[1].forward(h, mask)
    got = student(ids).hidden_states[1]
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="teacher layers"):
        T.student_from_teacher_layers(teacher, [0, 4])


def test_parse_student_spec():
    assert T.parse_student_spec("teacher:0,2,4") == ("teacher", [0, 2, 4])
    assert T.parse_student_spec("tinybert-3") == ("preset", "tinybert-3")
    assert T.parse_student_spec("runs/general") == ("folder", "runs/general")
    with pytest.raises(ValueError, match="teacher:"):
        T.parse_student_spec("teacher:a,b")


@pytest.fixture(scope="module")
def general_student(tmp_path_factory, data_dir):
    """A few steps of stage 1 on WikiText-2 valid: MiniLM teacher -> a 3-layer, 48-wide student."""
    out = tmp_path_factory.mktemp("general")
    main(["distill-general", "--corpus", str(data_dir / "wikitext-2-raw" / "wiki.valid.raw"),
          "--student", "tiny-3", "--max-seq-length", "32", "--batch-size", "8", "--max-steps", "40", "--lr", "1e-3",
          "--eval-steps", "20", "--save-steps", "0", "--log-steps", "5", "--progress", "false", "--output-dir", str(out)])
    return out


def test_general_distillation_learns_and_saves_fit_dense(general_student):
    log = [json.loads(line) for line in (general_student / "metrics.jsonl").read_text().splitlines()]
    att = [r["att"] for r in log if "att" in r]
    assert att[-1] < 0.8 * att[0], att  # the student's attention scores move toward the teacher's
    evals = [r["eval"] for r in log if "eval" in r]
    assert evals[-1]["heldout_total"] < evals[0]["heldout_total"]
    assert (general_student / T.FIT_DENSE_FILE).is_file() and (general_student / "config.json").is_file()
    student = BertModel.from_pretrained(general_student)
    assert student.config.num_hidden_layers == 3 and student.config.hidden_size == 48


def test_task_distillation_from_the_general_student(general_student, tmp_path):
    """distill-task continues stage 1's student (and its fit_dense) on SST-2 with a quickly tuned teacher."""
    teacher_dir = tmp_path / "teacher"
    main(["finetune", "--model", "minilm-l6", "--max-train-examples", "64", "--max-eval-examples", "32",
          "--max-steps", "2", "--batch-size", "16", "--progress", "false", "--output-dir", str(teacher_dir)])
    out = tmp_path / "task"
    main(["distill-task", "--teacher", str(teacher_dir), "--student", str(general_student), "--max-train-examples", "64",
          "--max-eval-examples", "32", "--inter-steps", "3", "--pred-steps", "4", "--eval-steps", "2",
          "--batch-size", "16", "--progress", "false", "--output-dir", str(out)])
    results = json.loads((out / "results.json").read_text())
    for who in ("teacher", "student"):
        assert {"accuracy", "params", "latency_ms"} <= set(results[who])
    assert results["student"]["params"] < results["teacher"]["params"]
    student = BertForSequenceClassification.from_pretrained(out / "student", num_labels=2)
    assert student.config.hidden_size == 48
    inter = [json.loads(line) for line in (out / "intermediate" / "metrics.jsonl").read_text().splitlines()]
    assert all("att" in r and "rep" in r for r in inter if "loss" in r)
    pred = [json.loads(line) for line in (out / "prediction" / "metrics.jsonl").read_text().splitlines()]
    assert all("pred" in r for r in pred if "loss" in r)


def test_pipeline_writes_results_and_table(tmp_path, capsys):
    out = tmp_path / "pipe"
    main(["pipeline", "--max-train-examples", "96", "--max-eval-examples", "48", "--inter-steps", "2", "--pred-steps", "3",
          "--eval-steps", "2", "--batch-size", "16", "--progress", "false", "--output-dir", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert 0 < results["student"]["accuracy"] <= 1 and 0 < results["teacher"]["accuracy"] <= 1
    assert results["student"]["score"] == results["student"]["acc"] and results["student"]["main_metric"] == "acc"
    assert results["student"]["encoder_params"] * 2 == results["teacher"]["encoder_params"]  # 3 of 6 layers
    assert "teacher" in capsys.readouterr().out
    assert (Path(results["student_folder"]) / "model.safetensors").is_file()


def test_missing_teacher_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="nowhere"):
        main(["distill-task", "--teacher", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "o")])
    assert teacher_path("minilm-l6").is_dir()
