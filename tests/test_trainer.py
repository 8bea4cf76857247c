"""The training loop (minibert.trainer): learning, non-finite stops, host syncs only at log
steps, exact resume in process, and checkpoints that do not fit the run."""
import json
from pathlib import Path

import numpy as np
import pytest

from minibert import BertConfig, BertForSequenceClassification
from minibert import data as D
from minibert.checkpoint import CheckpointError
from minibert.evaluation import predict_encoded
from minibert.finetune import classification_step
from conftest import HostReads
from minibert.trainer import Trainer, TrainArgs, TrainingError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sst2(data_dir, tok):
    train = D.read_glue("sst-2", data_dir / "SST-2" / "train.tsv")[:1024]
    dev = D.read_glue("sst-2", data_dir / "SST-2" / "dev.tsv")[:200]
    return D.encode_examples(train, tok, 32), D.encode_examples(dev, tok, 32)


def tiny_classifier(tok, seed=0, dropout=0.1):
    cfg = BertConfig.from_preset("tiny", vocab_size=len(tok), hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForSequenceClassification(cfg, num_labels=2, seed=seed)


def test_overfits_one_tiny_batch(tok, sst2, tmp_path):
    train, _ = sst2
    model = tiny_classifier(tok, dropout=0.0)
    batch = train.collate(np.arange(8))

    class OneBatch:  # the same 8 examples every step
        def __len__(self):
            return 1

        def iter_epoch(self, epoch, start_batch=0):
            yield from [batch][start_batch:]

    args = TrainArgs(output_dir=str(tmp_path), max_steps=60, lr=3e-3, warmup_ratio=0.0, weight_decay=0.0, progress=False)
    losses = []
    step = classification_step(model)

    def logged(b, s):
        out = step(b, s)
        losses.append(float(out["loss"]))
        return out

    Trainer(args, {"": model}, OneBatch(), logged).train()
    assert losses[0] > 0.5 and losses[-1] < 0.02, (losses[0], losses[-1])
    model.eval()
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert np.array_equal(out.logits.argmax(-1), batch["labels"])


def test_loss_falls_on_real_sst2(tok, sst2, tmp_path):
    train, dev = sst2
    model = tiny_classifier(tok)
    args = TrainArgs(output_dir=str(tmp_path), max_steps=120, batch_size=32, lr=2e-3, progress=False)
    trainer = Trainer(args, {"": model}, D.Batcher(train, 32, seed=0), classification_step(model),
                      lambda: D.compute_metrics("sst-2", predict_encoded(model, dev), dev.labels))
    trainer.train()
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert np.mean(losses[-3:]) < np.mean(losses[:2]) - 0.05, losses
    assert log[-1]["eval"]["acc"] > 0.55  # above chance on held-out sentences after 120 tiny steps
    assert (tmp_path / "checkpoint-120" / "trainer_state.json").is_file()


def test_non_finite_loss_stops_and_names_the_interval(tok, sst2, tmp_path):
    """Losses are read at log, evaluation and checkpoint steps: a NaN at step 7 is found at the
    checkpoint of step 9, which is not written; checkpoint-6 stays the last good one."""
    train, _ = sst2
    model = tiny_classifier(tok)
    step = classification_step(model)
    calls = {"n": 0}

    def exploding(batch, scale):
        calls["n"] += 1
        out = step(batch, scale)
        return {"loss": float("nan")} if calls["n"] == 7 else out

    args = TrainArgs(output_dir=str(tmp_path), max_steps=20, save_steps=3, progress=False)
    with pytest.raises(TrainingError, match=r"not finite between steps 7 and 9 .*checkpoint-6"):
        Trainer(args, {"": model}, D.Batcher(train, 16, seed=0), exploding).train()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]


@pytest.mark.parametrize("clip", ["global", "per_tensor"])
def test_losses_are_read_only_at_log_steps(tok, sst2, tmp_path, clip):
    train, _ = sst2
    model = tiny_classifier(tok)
    step = classification_step(model)

    def counted(batch, scale):
        return {"loss": np.asarray(step(batch, scale)["loss"]).view(HostReads)}

    n, every = 12, 4
    HostReads.reads = 0
    args = TrainArgs(output_dir=str(tmp_path), max_steps=n, log_steps=every, clip=clip, progress=False)
    Trainer(args, {"": model}, D.Batcher(train, 8, seed=0), counted).train()
    logs = n // every
    # per log step: the interval's sum (the NaN check) and the logged value; never once per step
    assert HostReads.reads == 2 * logs, HostReads.reads
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12]
    assert all(isinstance(r["loss"], float) for r in records)
    assert ("grad_norm" in records[0]) == (clip == "global")


def test_checkpoint_of_another_model_is_a_checkpoint_error(tok, sst2, tmp_path):
    train, _ = sst2

    def trainer(model, steps):
        args = TrainArgs(output_dir=str(tmp_path), max_steps=steps, progress=False)
        return Trainer(args, {"": model}, D.Batcher(train, 16, seed=0), classification_step(model))

    trainer(tiny_classifier(tok), 1).train()
    other = BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=len(tok)), num_labels=3, seed=0)
    before = {k: v.copy() for k, v in other.named_parameters().items()}
    with pytest.raises(CheckpointError, match=r"checkpoint-1/params.safetensors: tensor 'classifier.weight' has "
                                              r"shape \[2, 64\] but \[3, 64\] is expected"):
        trainer(other, 2).train(resume="auto")
    assert all(np.array_equal(v, before[k]) for k, v in other.named_parameters().items())  # untouched
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text('{"step": 1, "epo')  # cut short
    with pytest.raises(CheckpointError, match=r"checkpoint-1/trainer_state.json: not valid JSON"):
        trainer(tiny_classifier(tok), 2).train(resume="auto")


def test_in_process_resume_is_bit_identical(tok, sst2, tmp_path):
    train, _ = sst2

    def run(out, steps, resume=None, seed=0):
        model = tiny_classifier(tok, seed=seed)
        args = TrainArgs(output_dir=str(out), max_steps=steps, save_steps=5, lr=1e-3, progress=False, grad_accum=2)
        Trainer(args, {"": model}, D.Batcher(train, 16, seed=0), classification_step(model)).train(resume=resume)
        return model

    full = run(tmp_path / "a", 12)
    run(tmp_path / "b", 12)
    # pretend the run died after checkpoint-10: drop the final checkpoint and resume
    import shutil
    shutil.rmtree(tmp_path / "b" / "checkpoint-12")
    resumed = run(tmp_path / "b", 12, resume="auto", seed=99)  # different init: all must come from the checkpoint
    # "auto" with no checkpoint yet (a first run, or a later stage of distill-task) starts fresh
    fresh = run(tmp_path / "c", 12, resume="auto")
    for k, v in full.named_parameters().items():
        assert np.array_equal(v, resumed.named_parameters()[k]), k
        assert np.array_equal(v, fresh.named_parameters()[k]), k


