"""Model cards: every model folder a fine-tuning or a pipeline saves gets a README.md in the Hugging Face
layout, whose numbers are results.json's and whose front matter the hub's own parser reads."""
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from minibert import BertForSequenceClassification
from minibert.settings import RunOptions, TaskDataSettings, TaskDistillSettings, TrainArgs
from minibert.distillation import pipeline

REPO = Path(__file__).resolve().parent.parent


def parse(folder: Path) -> tuple[dict, str]:
    """(front matter, body) of folder/README.md, the front matter as YAML."""
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def index_metrics(meta: dict) -> dict:
    """{metric name: value} of the card's model-index, through huggingface_hub's own reader."""
    return {r["name"]: r["value"] for r in meta["model-index"][0]["results"][0]["metrics"]}


def table_row(body: str, name: str) -> list[str]:
    line = next(l for l in body.splitlines() if l.startswith(f"| {name}"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_finetune_writes_a_card_whose_numbers_are_the_runs(tmp_path, data_dir):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "MINIBERT_DATA": str(data_dir)}
    argv = ["finetune", "--model", "tiny", "--task", "sst-2", "--max-train-examples", "64", "--max-eval-examples",
            "32", "--max-length", "32", "--batch-size", "16", "--max-steps", "4", "--eval-steps", "2",
            "--progress", "false", "--output-dir", "ft"]
    out = subprocess.run([sys.executable, "-m", "minibert.train", *argv], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "ft"
    results = json.loads((folder / "results.json").read_text())
    meta, body = parse(folder)
    assert meta["library_name"] == "minibert" and meta["pipeline_tag"] == "text-classification"
    assert meta["datasets"] == ["nyu-mll/glue"] and meta["metrics"] == ["accuracy"]
    final = {k: v for k, v in results["final"].items() if k != "step"}
    best = {k: v for k, v in results["best_eval"].items() if k != "step"}  # the folder holds the best checkpoint
    assert results["handed_over"] == "best" and best["acc"] == results["best"]
    assert index_metrics(meta) == {f"dev {k}": v for k, v in best.items()}  # exactly results.json's values
    card = ModelCard.load(folder / "README.md")  # the hub's parser agrees
    (result,) = card.data.eval_results
    assert (result.dataset_type, result.dataset_config, result.metric_type, result.metric_value) == (
        "nyu-mll/glue", "sst2", "accuracy", best["acc"])
    model = BertForSequenceClassification.from_pretrained(folder)
    row = table_row(body, "**this model**")
    assert row == ["**this model**", f"{100 * best['acc']:.2f}", f"{model.num_parameters():,}",
                   f"{sum(p.size for n, p in model.named_parameters().items() if '.encoder.' in n):,}"]
    assert f"Fine-tuned from**: a randomly initialised `tiny`, {results['steps']} steps at learning rate 5e-05" in body
    assert "python -m minibert.train " + " ".join(argv) in body  # the command as typed
    assert 'TextClassifier.from_pretrained(\'ft\')' in body and "pipeline(\"text-classification\", model='ft')" in body
    assert "the checkpoint with the best dev acc, the model this run hands over" in body
    best_meta, best_body = parse(folder / "best")  # the trainer's copy of the best has its own card
    assert index_metrics(best_meta) == {"dev acc": results["best"]}
    assert "the trainer's copy of the best checkpoint" in best_body
    last_meta, last_body = parse(folder / "last")  # and the model at the end of training
    assert index_metrics(last_meta) == {f"dev {k}": v for k, v in final.items()}
    assert "the model at the end of training" in last_body
    assert "a gripping film" not in body  # the usage example is a dev sentence of the task


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe")
    data = TaskDataSettings(task="sst-2", max_train_examples=64, max_eval_examples=32, max_length=32)
    settings = TaskDistillSettings(student="teacher:0,5", inter_steps=2, pred_steps=3)
    training = TrainArgs(eval_steps=2, batch_size=16, progress=False, output_dir=str(out))
    return out, pipeline(data, settings, training), (data, settings, training)


def test_pipeline_cards_for_the_student_and_the_teacher_it_fine_tuned(pipeline_run):
    out, results, (data, settings, training) = pipeline_run
    assert results == json.loads((out / "results.json").read_text())
    meta, body = parse(out / "student")
    assert index_metrics(meta) == {"dev acc": results["student"]["acc"]}
    assert "knowledge-distillation" in meta["tags"]
    for name, entry in (("teacher", results["teacher"]), ("**this model**", results["student"])):
        row = table_row(body, name)
        assert row[1:] == [f"{100 * entry['acc']:.2f}", f"{entry['params']:,}", f"{entry['encoder_params']:,}",
                           f"{entry['latency_ms']:.1f}", f"{entry['latency_ms_b32']:.1f}"]
    assert f"keeps {100 * results['retained']:.1f}% of the teacher's dev acc" in body
    assert "encoder layers 0,5 (0-based)" in body and "its first 64 examples" in body
    # run from Python: the call with the settings that differ from the defaults, then every setting
    assert ("minibert.distillation.pipeline(TaskDataSettings(task='sst-2', max_length=32, max_train_examples=64, "
            "max_eval_examples=32), TaskDistillSettings(inter_steps=2") in body
    settings_json = body.split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(settings_json) == {"TaskDataSettings": asdict(data), "TaskDistillSettings": asdict(settings),
                                         "TrainArgs": asdict(training), "RunOptions": asdict(RunOptions())}
    t_meta, t_body = parse(out / "teacher")  # the teacher fine-tuned in the run
    assert index_metrics(t_meta) == {"dev acc": results["teacher"]["acc"]}
    assert f"the teacher of `{out / 'student'}`" in t_body
