"""BERT's task heads: masked LM, pre-training (masked LM + next sentence), sequence classification.

    model = BertForSequenceClassification(config, num_labels=2)
    out = model(input_ids, token_type_ids, attention_mask, labels=labels)   # logits, loss, all hidden states
    model.backward()                                                        # gradients of out.loss

Each head is `bert.` (the encoder, model.py) plus its own layers, under Hugging Face's names so
that checkpoints load as they are; backward quotes the forward line it inverts, as in model.py.

Shapes: B batch, T sequence, H hidden, V vocab, C classes, P labelled (masked) positions.

Not here: the encoder (`model.py`), the kernels (`functional.py`, `fast.py`), the loss modules
(`losses.py`), the file formats (`checkpoint.py`).
"""
from __future__ import annotations

import numpy as np

from . import kernels as K  # the one place kernels come from (see kernels.py)
from .backend import get_array_module, like
from .config import BertConfig
from .losses import CrossEntropyLoss, MSELoss
from .model import BertModel, BertOutput, PreTrainedModel, _seeds
from .nn import Dropout, Embedding, LayerNorm, Linear, Module


class BertLMPredictionHead(Module):
    """Masked-LM head: logits = LayerNorm(GELU(h W_t + b_t)) E^T + b, E the word embeddings (tied)."""

    def __init__(self, cfg: BertConfig, word_embeddings: Embedding, init: np.random.Generator):
        super().__init__()
        self.dense = self.add("transform.dense", Linear(cfg.hidden_size, cfg.hidden_size, init, cfg.initializer_range))
        self.norm = self.add("transform.LayerNorm", LayerNorm(cfg.hidden_size, cfg.layer_norm_eps))
        self.add_param("bias", np.zeros(cfg.vocab_size, dtype=np.float32))
        self.word_embeddings = word_embeddings  # not a child: its weight belongs to the encoder
        self.hidden_act = cfg.hidden_act

    def forward(self, h):
        """h (N, H) -> logits (N, V)."""
        t = self.dense.forward(h)  # (N, H)
        act_forward, _ = K.activation(self.hidden_act)
        t, act_cache = act_forward(t)  # (N, H)
        t = self.norm.forward(t)  # (N, H)
        E = self.word_embeddings.params["weight"]  # (V, H)
        logits, dec_cache = K.linear_forward(t, E, self.params["bias"])  # (N, V) the decoder, tied to the input embeddings
        self._cache = (act_cache, dec_cache)
        return logits

    def backward(self, dlogits, tied_grad: bool = True):
        """tied_grad=False skips the (V, H) gradient of the frozen, tied word embeddings."""
        act_cache, dec_cache = self._pop_cache()
        # logits = t E^T + bias: the tied weight gets this path's gradient added to its own
        if tied_grad:
            dt, dE, dbias = K.linear_backward(dlogits, dec_cache)  # (N, H), (V, H), (V,)
            self.word_embeddings.grads["weight"] += dE
        else:
            dt = K.linear_forward(dlogits, dec_cache.W.T)[0]  # (N, H) = dlogits E, no (V, H) product
            dbias = dlogits.sum(axis=0)
        self.grads["bias"] += dbias
        # t = self.norm.forward(t)
        dt = self.norm.backward(dt)
        # t, act_cache = act_forward(t)
        _, act_backward = K.activation(self.hidden_act)
        dt = act_backward(dt, act_cache)
        # t = self.dense.forward(h)
        return self.dense.backward(dt)


class _HeadModel(PreTrainedModel):
    """Shared plumbing of the task heads: seeding, the `bert.` encoder, the masked-LM path."""

    def _build_encoder(self, config: BertConfig, seed: int, add_pooling_layer: bool):
        self.config = config
        init, self.rng = _seeds(seed)
        self.bert = self.add("bert", BertModel(config, add_pooling_layer, _init=init, _rng=self.rng))
        return init

    def _mlm_forward(self, h, labels, only_labelled):
        """Masked-LM logits and loss. h (B, T, H), labels (B, T) with IGNORE_INDEX at unscored positions.

        -> logits (B, T, V), or (P, V) at the labelled positions only; loss (None without
        labels); positions (P,) flat indices into B*T or None; the cache `_mlm_backward` takes.
        """
        B, T, H = h.shape
        positions, labels = None, like(labels, h)  # host labels move to h's device
        if only_labelled:
            if labels is None:
                raise ValueError("logits only at labelled positions needs labels")
            xp = get_array_module(h)
            positions = xp.nonzero(labels.reshape(-1) != K.IGNORE_INDEX)[0]  # (P,)
            logits = self.lm_head.forward(h.reshape(B * T, H)[positions])  # (P, V)
            flat_labels = labels.reshape(-1)[positions]  # (P,)
        else:
            logits = self.lm_head.forward(h.reshape(B * T, H)).reshape(B, T, -1)  # (B, T, V)
            flat_labels = None if labels is None else labels.reshape(-1)  # (B*T,)
        loss = None
        if labels is not None:
            loss = self.mlm_loss.forward(logits.reshape(-1, logits.shape[-1]), flat_labels)
        return logits, loss, positions, (h.shape, positions, loss is not None)

    def _mlm_backward(self, dloss, dlogits, cache, tied_grad=True):
        """Gradient on h (B, T, H) from dloss * loss and/or dlogits; None when neither is given."""
        (B, T, H), positions, has_loss = cache
        V = self.config.vocab_size
        g = None
        # loss = self.mlm_loss.forward(logits, flat_labels)
        if has_loss:
            g = self.mlm_loss.backward(dloss)  # (P or B*T, V)
        if dlogits is not None:
            g = dlogits.reshape(-1, V) if g is None else g + dlogits.reshape(-1, V)
        if g is None:
            return None
        # logits = self.lm_head.forward(h.reshape(B * T, H)[positions])
        dflat = self.lm_head.backward(g, tied_grad)  # (P or B*T, H)
        if positions is None:
            return dflat.reshape(B, T, H)
        dh = self.bert.xp.zeros((B * T, H), dtype=dflat.dtype)
        dh[positions] = dflat  # positions are distinct, so plain assignment is exact
        return dh.reshape(B, T, H)


class BertForMaskedLM(_HeadModel):
    """BERT with the masked-LM head (no pooler, as Hugging Face's BertForMaskedLM)."""

    def __init__(self, config: BertConfig, seed: int = 0):
        super().__init__()
        init = self._build_encoder(config, seed, add_pooling_layer=False)
        self.lm_head = self.add("cls.predictions", BertLMPredictionHead(config, self.bert.embeddings.word, init))
        self.mlm_loss = CrossEntropyLoss()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, only_labelled=False) -> BertOutput:
        """labels (B, T): token ids at scored positions, IGNORE_INDEX (-100) elsewhere.

        only_labelled=True computes the (V-wide) logits at labelled positions only: logits
        are then (P, V) and `out.mlm_positions` holds their flat indices into B*T.
        """
        out = self.bert.forward(input_ids, token_type_ids, attention_mask)
        out.logits, out.loss, out.mlm_positions, self._cache = self._mlm_forward(out.last_hidden_state, labels,
                                                                                 only_labelled)
        out.mlm_loss = out.loss
        return out

    def backward(self, dloss=1.0, dlogits=None, dhidden_states=None, dattention_scores=None, head_only=False,
                 dqkv=None):
        """Gradient of dloss * loss, plus any extra gradients on logits, hidden states, scores, q/k/v.

        head_only=True stops at the head (a frozen encoder: only `cls.predictions` receives
        gradients; the tied word embeddings do not).
        """
        dh = self._mlm_backward(dloss, dlogits, self._pop_cache(), tied_grad=not head_only)
        if not head_only:
            self.bert.backward(dh, None, dhidden_states, dattention_scores, dqkv)


class BertForPreTraining(_HeadModel):
    """BERT with masked-LM and next-sentence heads; loss = MLM loss + NSP loss."""

    def __init__(self, config: BertConfig, seed: int = 0):
        super().__init__()
        init = self._build_encoder(config, seed, add_pooling_layer=True)
        self.lm_head = self.add("cls.predictions", BertLMPredictionHead(config, self.bert.embeddings.word, init))
        self.nsp_head = self.add("cls.seq_relationship", Linear(config.hidden_size, 2, init, config.initializer_range))
        self.mlm_loss, self.nsp_loss = CrossEntropyLoss(), CrossEntropyLoss()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                next_sentence_label=None, only_labelled=False) -> BertOutput:
        """labels (B, T) as in BertForMaskedLM; next_sentence_label (B,): 0 continuation, 1 random."""
        out = self.bert.forward(input_ids, token_type_ids, attention_mask)
        out.logits, out.mlm_loss, out.mlm_positions, mlm_cache = self._mlm_forward(out.last_hidden_state, labels,
                                                                                   only_labelled)
        out.seq_relationship_logits = self.nsp_head.forward(out.pooler_output)  # (B, 2)
        if next_sentence_label is not None:
            nsp_label = like(next_sentence_label, out.seq_relationship_logits)  # host labels move to the device
            out.nsp_loss = self.nsp_loss.forward(out.seq_relationship_logits, nsp_label)
        if out.mlm_loss is not None and out.nsp_loss is not None:
            out.loss = out.mlm_loss + out.nsp_loss
        self._cache = (mlm_cache, out.nsp_loss is not None)
        return out

    def backward(self, dloss=1.0, dlogits=None, dseq_relationship_logits=None, dhidden_states=None, dattention_scores=None,
                 dqkv=None):
        mlm_cache, has_nsp = self._pop_cache()
        # out.loss = out.mlm_loss + out.nsp_loss: each gets dloss
        dh = self._mlm_backward(dloss, dlogits, mlm_cache)
        # out.nsp_loss = self.nsp_loss.forward(out.seq_relationship_logits, next_sentence_label)
        dnsp = self.nsp_loss.backward(dloss) if has_nsp else None
        if dseq_relationship_logits is not None:
            dnsp = dseq_relationship_logits if dnsp is None else dnsp + dseq_relationship_logits
        # out.seq_relationship_logits = self.nsp_head.forward(out.pooler_output)
        dpooled = self.nsp_head.backward(dnsp) if dnsp is not None else None
        self.bert.backward(dh, dpooled, dhidden_states, dattention_scores, dqkv)


class BertForSequenceClassification(_HeadModel):
    """logits = classifier(dropout(pooled)) as in Hugging Face; regression (MSE) when num_labels = 1."""

    def __init__(self, config: BertConfig, num_labels: int = 2, seed: int = 0):
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
        init = self._build_encoder(config, seed, add_pooling_layer=True)
        self.num_labels = num_labels
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = self.add("dropout", Dropout(p, self.rng))
        self.classifier = self.add("classifier", Linear(config.hidden_size, num_labels, init, config.initializer_range))
        self.loss_fct = MSELoss() if num_labels == 1 else CrossEntropyLoss()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None) -> BertOutput:
        """labels (B,): class ids, or floats when num_labels = 1. logits (B, C)."""
        out = self.bert.forward(input_ids, token_type_ids, attention_mask)
        x = self.dropout.forward(out.pooler_output)  # (B, H)
        out.logits = self.classifier.forward(x)  # (B, C)
        if labels is not None:
            # regression compares the (B, 1) logits with the labels as a (B, 1) column
            labels = like(labels, out.logits)  # host labels move to the logits' device
            target = labels.astype(out.logits.dtype)[:, None] if self.num_labels == 1 else labels
            out.loss = self.loss_fct.forward(out.logits, target)
        self._cache = labels is not None
        return out

    def backward(self, dloss=1.0, dlogits=None, dhidden_states=None, dattention_scores=None, dqkv=None):
        has_loss = self._pop_cache()
        # out.loss = self.loss_fct.forward(out.logits, target)
        g = self.loss_fct.backward(dloss) if has_loss else None  # (B, C)
        if dlogits is not None:
            g = dlogits if g is None else g + dlogits
        if g is None:
            raise ValueError("nothing to backpropagate: no labels were given and no dlogits passed")
        # out.logits = self.classifier.forward(x); x = self.dropout.forward(pooled)
        dpooled = self.dropout.backward(self.classifier.backward(g))
        self.bert.backward(None, dpooled, dhidden_states, dattention_scores, dqkv)
