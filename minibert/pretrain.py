"""Pre-training a BERT with masked-LM + next-sentence prediction, as library calls.

    train, held = pretraining_data(tok, CorpusSettings(), MaskingSettings(), seed=42)
    summary = pretrain(ModelSettings("tiny"), CorpusSettings(dupe_factor=2), MaskingSettings(),
                       TrainArgs(output_dir="runs/pretrain", lr=1e-3, max_steps=1000))

`pretraining_data` splits the corpus by *document* into training and held-out instances (so
held-out sentences were never seen in any pairing); TinyBERT's general distillation and the
augmentation head reuse it with their own masking. How instances are made (80/10/10 masking,
NSP pairs) is `data/pretraining.py`; the loop is `trainer.py`; flags are `train.py`'s.
"""
from __future__ import annotations


import numpy as np

from .messages import say
from .errors import DataError
from . import data as D
from . import kernels as K
from .backend import like
from .evaluation import evaluate_pretraining
from .report import write_results
from .model import BertForPreTraining
from .settings import CorpusSettings, MaskingSettings, ModelSettings, RunOptions, TrainArgs, result_settings
from .specs import build_model, tokenizer_for
from .trainer import Trainer, weighs_labelled_tokens


def pretraining_data(tokenizer, corpus: CorpusSettings, masking: MaskingSettings,
                     seed: int) -> tuple[D.PretrainingData, D.PretrainingData]:
    """Training and held-out instances from the corpus files, split by document."""
    paths = corpus.corpus or [D.find_data(d, "--corpus") for d in D.CORPUS_DIRS]
    docs = D.read_corpus(paths)
    if len(docs) < 4:
        raise DataError(f"the corpus has {len(docs)} documents; pre-training needs at least 4")
    order = np.random.default_rng(seed).permutation(len(docs))
    n_held = max(2, int(round(corpus.heldout_fraction * len(docs))))
    held = [docs[i] for i in order[:n_held]]
    train = [docs[i] for i in order[n_held:]]
    kw = dict(max_seq_length=corpus.max_seq_length, masked_lm_prob=masking.masked_lm_prob,
              max_predictions_per_seq=masking.max_predictions_per_seq, whole_word_mask=masking.whole_word_mask)
    # different generators: the held-out masks do not depend on how much training text there is
    train_data = D.create_pretraining_examples(train, tokenizer, dupe_factor=corpus.dupe_factor, rng=seed, **kw)
    held_data = D.create_pretraining_examples(held, tokenizer, dupe_factor=1, rng=seed + 1, **kw)
    return train_data, held_data


def pretraining_step(model):
    """step_fn for the trainer: MLM + NSP loss of a BertForPreTraining, logits only at the masked positions.

    The MLM loss is a mean over labelled tokens, the NSP loss a mean over rows: in several
    processes they weigh differently in the global batch's loss (trainer.weighs_labelled_tokens).
    """

    @weighs_labelled_tokens
    def step_fn(batch, scale, labelled_scale):
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"],
                    next_sentence_label=batch["next_sentence_label"], only_labelled=True)
        dnsp = None
        if labelled_scale != scale:  # several processes: backward weighs both losses by labelled_scale, so the
            # NSP logits get the rest of their own weight, (scale - labelled_scale) x d nsp_loss / d logits
            logits = out.seq_relationship_logits  # (B, 2)
            _, cache = K.cross_entropy_forward(logits, like(batch["next_sentence_label"], logits))
            dnsp = K.cross_entropy_backward(scale - labelled_scale, cache)  # (B, 2)
        model.backward(dloss=labelled_scale, dseq_relationship_logits=dnsp)
        return {"loss": out.loss, "mlm_loss": out.mlm_loss, "nsp_loss": out.nsp_loss}

    return step_fn


def pretrain(model: ModelSettings, corpus: CorpusSettings, masking: MaskingSettings, args: TrainArgs,
             run: RunOptions = RunOptions()) -> dict:
    """Pre-train the model `model.model` names (a preset: from scratch); write results.json; return its content."""
    tok = tokenizer_for(model.model, model.vocab)
    say("building pre-training instances ...")
    train, held = pretraining_data(tok, corpus, masking, args.seed)
    say(f"{len(train)} training and {len(held)} held-out instances of length {corpus.max_seq_length}")
    net = build_model(BertForPreTraining, model.model, tok, args.seed)
    if run.device != "numpy":
        net.to(run.device)
    state = Trainer(args, {"": net}, D.Batcher(train, args.batch_size, seed=args.seed), pretraining_step(net),
                    lambda: evaluate_pretraining(net, held), lambda folder: net.save_pretrained(folder, tokenizer=tok),
                    device=run.device, settings=result_settings(model)).train(resume=run.resume)
    summary = {"model": model.model, "params": net.num_parameters(), "steps": state.step, "history": state.history}
    write_results(args.output_dir, summary)
    return summary
