"""The conventions a transformers user expects: a loaded model predicts (eval mode) and training turns
dropout back on; no silent truncation (every command counts what it cuts); --max-length checked
against the model's position embeddings before anything trains."""
import warnings

import numpy as np
import pytest

from minibert import BertConfig, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertModel
from minibert import data as D
from minibert.evaluation import evaluate
from minibert.finetune import classification_step, load_task_data
from minibert.settings import TaskDataSettings
from minibert.train import main
from minibert.trainer import Trainer, TrainArgs


@pytest.fixture
def folder(tok, tmp_path):
    """A small classifier folder with dropout 0.1 (BERT's default)."""
    model = BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=len(tok)), num_labels=2, seed=0)
    return model.save_pretrained(tmp_path / "model", tokenizer=tok)


@pytest.mark.parametrize("cls", [BertModel, BertForSequenceClassification, BertForMaskedLM, BertForPreTraining])
def test_from_pretrained_returns_a_model_in_eval_mode(cls, folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heads the folder lacks are initialised
        model = cls.from_pretrained(folder)
    assert not any(m.training for m in model.modules())
    ids = np.array([[101, 7592, 2088, 102]])
    first, second = model(ids), model(ids)  # dropout off: the same input gives the same output twice
    np.testing.assert_array_equal(first.last_hidden_state if cls is BertModel else first.logits,
                                  second.last_hidden_state if cls is BertModel else second.logits)


def test_training_a_loaded_model_turns_dropout_on_even_after_evaluations(folder, tok, data_dir, tmp_path):
    model = BertForSequenceClassification.from_pretrained(folder)
    _, train, dev = D.load_task_data("sst-2", tok, max_length=16, max_train_examples=32, max_eval_examples=16)
    step, modes = classification_step(model), []

    def recorded(batch, scale):
        modes.append(all(m.training for m in model.modules()))
        return step(batch, scale)

    args = TrainArgs(output_dir=str(tmp_path / "run"), max_steps=4, batch_size=8, eval_steps=1, progress=False)
    Trainer(args, {"": model}, D.Batcher(train, 8, seed=0), recorded, lambda: evaluate(model, "sst-2", dev)).train()
    assert modes == [True] * 4  # dropout on in every step, the evaluations between them notwithstanding


def test_training_data_says_how_many_examples_it_cut(tok, data_dir, capsys):
    settings = TaskDataSettings(task="mrpc", max_length=32, max_train_examples=300, max_eval_examples=100)
    spec, train, dev = load_task_data(settings, tok)
    err = capsys.readouterr().err
    for what, split, n in (("training", "train.tsv", 300), ("dev", "dev.tsv", 100)):
        rows = D.read_glue("mrpc", data_dir / "MRPC" / split)[:n]
        lengths = [len(tok.encode(r.text_a, r.text_b)["input_ids"]) for r in rows]  # uncut
        cut = sum(length > 32 for length in lengths)
        assert 0 < cut < n
        assert f"note: truncated {cut} of {n} {what} examples to 32 tokens (longest {max(lengths)})" in err, err
    assert max(train.lengths) == 32 and train.num_truncated == sum(
        len(tok.encode(r.text_a, r.text_b)["input_ids"]) > 32
        for r in D.read_glue("mrpc", data_dir / "MRPC" / "train.tsv")[:300])
    load_task_data(TaskDataSettings(task="sst-2", max_length=128, max_train_examples=50, max_eval_examples=50), tok)
    assert "truncated" not in capsys.readouterr().err  # nothing cut, nothing said


@pytest.mark.parametrize("command", ["finetune", "distill-task"])
def test_max_length_beyond_the_position_embeddings_stops_before_training(command, folder, tmp_path, capsys):
    out = tmp_path / "out"
    model = ["--model", "tiny"] if command == "finetune" else ["--teacher", str(folder), "--student", "teacher:0"]
    with pytest.raises(SystemExit) as info:
        main([command, *model, "--task", "sst-2", "--max-length", "600", "--max-train-examples", "16",
              "--max-eval-examples", "16", "--output-dir", str(out), "--progress", "false"])
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert "error: --max-length 600 is more than the model's 512 position embeddings" in err, err
    assert not list(out.rglob("checkpoint-*"))  # nothing trained
