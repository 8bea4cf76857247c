"""BERT's encoder: embeddings, post-LayerNorm encoder layers, pooler (the task heads: `heads.py`).

Every block's backward is the exact reverse of its forward; each backward step quotes the
forward line it inverts. What the distillation methods read is exposed on the way out and
accepted on the way back: all L+1 hidden states (embedding output first), every layer's
attention scores (pre-softmax, scaled, mask added: TinyBERT; their softmax: MiniLM) and its
per-head queries, keys and values (MiniLM's value relation, MiniLMv2's relations), plus the
logits of the heads.

Shapes: B batch, T sequence, H hidden, NH heads, HS head size, I intermediate, V vocab,
L layers, C classes, P labelled (masked) positions.

Kernels come from `kernels.py` at call time (`K.attention_forward(...)`): swap one there and
every model here runs it. Not here: the kernels' maths (`functional.py`, `fast.py`), the
generic modules (`nn.py`), the loss modules (`losses.py`), the file formats (`checkpoint.py`,
which `save_pretrained`/`from_pretrained` call), the distillation losses (`distill.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import checkpoint, fast_inference
from . import kernels as K  # the one place kernels come from (see kernels.py)
from .backend import RNG, get_array_module, like
from .config import BertConfig
from .nn import Dropout, Embedding, LayerNorm, Linear, Module, grad_enabled

# Added to the scores of padded keys. Finite, as in BERT/TinyBERT: exp underflows to 0 all
# the same, and TinyBERT's "<= -100 -> 0" clamp recognises it.
MASK_VALUE = -10000.0


@dataclass
class BertOutput:
    """What a forward pass returns. Fields a model does not compute stay None."""

    last_hidden_state: object = None  # (B, T, H)
    pooler_output: object = None  # (B, H)
    hidden_states: list = field(default_factory=list)  # L+1 x (B, T, H), embedding output first
    attention_scores: list = field(default_factory=list)  # L x (B, NH, T, T), pre-softmax, mask added
    qkv: list = field(default_factory=list)  # L x (q, k, v), each (B, NH, T, HS): the heads before attention
    logits: object = None  # (B, C) classification; (B, T, V) or (P, V) masked LM
    seq_relationship_logits: object = None  # (B, 2) next-sentence prediction
    loss: object = None  # 0-d array
    mlm_loss: object = None
    nsp_loss: object = None
    mlm_positions: object = None  # (P,) flat indices into B*T when logits are at labelled positions only

    @property
    def attentions(self):
        """Attention probabilities, softmax of the scores (what transformers' output_attentions gives)."""
        return [K.softmax_forward(s)[0] for s in self.attention_scores]


def _seeds(seed: int):
    """Two independent streams from one seed: parameter init, and dropout masks."""
    init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(init_seq), RNG(int(dropout_seq.generate_state(1)[0]))


class PreTrainedModel(Module):
    """A model built from a BertConfig that reads and writes Hugging Face folders.

    `save_pretrained` writes config.json + model.safetensors (+ the tokenizer's files);
    `from_pretrained` builds the class from such a folder or a short name ("minilm-l6").
    The formats, validation and name matching live in `checkpoint.py`.
    """

    config: BertConfig

    def save_pretrained(self, folder, tokenizer=None):
        """Write config.json + model.safetensors (+ the tokenizer's files) to `folder`."""
        return checkpoint.save_pretrained(self, folder, tokenizer=tokenizer)

    @classmethod
    def from_pretrained(cls, name_or_folder, **kwargs):
        """Build this model from a Hugging Face folder or a short name such as "minilm-l6"
        (kwargs: dtype, seed, num_labels, add_pooling_layer; see checkpoint.from_pretrained).

        The model comes back in eval mode (dropout off), as transformers' does: a loaded
        model is usually there to predict. Training switches it to train mode itself
        (`Trainer.train` calls `.train()` on what it trains)."""
        return checkpoint.from_pretrained(cls, name_or_folder, **kwargs).eval()


class BertEmbeddings(Module):
    """E = Dropout(LayerNorm(word[ids] + position[0..T-1] + token_type[segments]))."""

    def __init__(self, cfg: BertConfig, init: np.random.Generator, rng: RNG):
        super().__init__()
        std = cfg.initializer_range
        self.word = self.add("word_embeddings", Embedding(cfg.vocab_size, cfg.hidden_size, init, std, padding_idx=cfg.pad_token_id))
        self.position = self.add("position_embeddings", Embedding(cfg.max_position_embeddings, cfg.hidden_size, init, std))
        self.token_type = self.add("token_type_embeddings", Embedding(cfg.type_vocab_size, cfg.hidden_size, init, std))
        self.norm = self.add("LayerNorm", LayerNorm(cfg.hidden_size, cfg.layer_norm_eps))
        self.dropout = self.add("dropout", Dropout(cfg.hidden_dropout_prob, rng))

    def forward(self, input_ids, token_type_ids):
        xp = get_array_module(self.word.params["weight"])
        T = input_ids.shape[1]
        positions = xp.arange(T)[None, :]  # (1, T)
        x = self.word.forward(input_ids)  # (B, T, H)
        x = x + self.position.forward(positions)  # (B, T, H) broadcast over the batch
        x = x + self.token_type.forward(token_type_ids)  # (B, T, H)
        x = self.norm.forward(x)  # (B, T, H)
        return self.dropout.forward(x)  # (B, T, H)

    def backward(self, dout):
        # return self.dropout.forward(x)
        dx = self.dropout.backward(dout)
        # x = self.norm.forward(x)
        dx = self.norm.backward(dx)
        # x = x + self.token_type.forward(token_type_ids)
        self.token_type.backward(dx)
        # x = x + self.position.forward(positions): the (1, T) lookup was broadcast over B
        self.position.backward(dx.sum(axis=0, keepdims=True))
        # x = self.word.forward(input_ids)
        self.word.backward(dx)


class BertLayer(Module):
    """One post-LayerNorm transformer layer (names as Hugging Face's BertLayer).

        x1 = LayerNorm(x + Dropout(Attention(x) W_o + b_o))
        x2 = LayerNorm(x1 + Dropout(GELU(x1 W_1 + b_1) W_2 + b_2))

    Query, key and value stay separate parameters (for checkpoints) but run as one fused
    (3H, H) matmul: one BLAS call on a bigger matrix is faster than three small ones. The
    three weights (and biases) are views of one (3H, H) array, so the fused matrix is never a
    copy that could go stale: whatever writes into the parameters in place (an optimizer
    step, loading a checkpoint, `p *= 2`) writes into it. See `_qkv_weights` for the rest.
    """

    def __init__(self, cfg: BertConfig, init: np.random.Generator, rng: RNG):
        super().__init__()
        H, I, std = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range
        self.NH, self.HS = cfg.num_attention_heads, cfg.head_size
        self.query = self.add("attention.self.query", Linear(H, H, init, std))
        self.key = self.add("attention.self.key", Linear(H, H, init, std))
        self.value = self.add("attention.self.value", Linear(H, H, init, std))
        self.attn_out = self.add("attention.output.dense", Linear(H, H, init, std))
        self.attn_norm = self.add("attention.output.LayerNorm", LayerNorm(H, cfg.layer_norm_eps))
        self.ffn_in = self.add("intermediate.dense", Linear(H, I, init, std))
        self.ffn_out = self.add("output.dense", Linear(I, H, init, std))
        self.ffn_norm = self.add("output.LayerNorm", LayerNorm(H, cfg.layer_norm_eps))
        self.attn_dropout_p = cfg.attention_probs_dropout_prob
        self.attn_out_dropout = self.add("attention.output.dropout", Dropout(cfg.hidden_dropout_prob, rng))
        self.ffn_dropout = self.add("output.dropout", Dropout(cfg.hidden_dropout_prob, rng))
        self.rng = rng
        self.hidden_act = cfg.hidden_act  # its kernel pair is looked up at each call: K.activation
        self._share_qkv()

    def _share_qkv(self) -> None:
        """Make query, key and value's weights (biases) views of one (3H, H) ((3H,)) array."""
        qkv = (self.query, self.key, self.value)
        xp = get_array_module(self.query.params["weight"])
        W = xp.concatenate([m.params["weight"] for m in qkv])  # (3H, H)
        b = xp.concatenate([m.params["bias"] for m in qkv])  # (3H,)
        H = W.shape[1]
        for i, m in enumerate(qkv):
            m.params["weight"], m.params["bias"] = W[i * H:(i + 1) * H], b[i * H:(i + 1) * H]
        self._qkv = (W, b, tuple(p for m in qkv for p in (m.params["weight"], m.params["bias"])))

    def _arrays_replaced(self) -> None:
        # astype / to gave every parameter a new array: share them again
        self._share_qkv()

    def _qkv_weights(self):
        """The fused W (3H, H) and b (3H,): the shared array itself while the six parameters are
        still the views `_share_qkv` made of it (the same objects, their memory its memory: O(1)
        to check); otherwise (a parameter replaced by another array, a deep copy, a device that
        shares no memory) a fresh concatenation. A stale copy is never returned."""
        W, b, views = self._qkv
        params = [p for m in (self.query, self.key, self.value) for p in (m.params["weight"], m.params["bias"])]
        if all(p is v and getattr(p, "base", None) is (W if i % 2 == 0 else b)
               for i, (p, v) in enumerate(zip(params, views))):
            return W, b
        xp = get_array_module(params[0])
        return xp.concatenate(params[0::2]), xp.concatenate(params[1::2])  # (3H, H), (3H,)

    def forward(self, x, mask_add):
        """x (B, T, H), mask_add (B, 1, 1, T) -> x2 (B, T, H), scores (B, NH, T, T), (q, k, v) 3 x (B, NH, T, HS)."""
        B, T, H = x.shape
        W, b = self._qkv_weights()
        qkv, qkv_cache = K.linear_forward(x, W, b)  # (B, T, 3H)
        q, k, v = qkv.reshape(B, T, 3, self.NH, self.HS).transpose(2, 0, 3, 1, 4)  # 3 x (B, NH, T, HS)
        drop = None
        if self.training and self.attn_dropout_p > 0:
            drop = K.dropout_mask(self.rng, (B, self.NH, T, T), self.attn_dropout_p, x.dtype)
        ctx, scores, attn_cache = K.attention_forward(q, k, v, mask_add, drop)  # (B, NH, T, HS), (B, NH, T, T)
        ctx = ctx.transpose(0, 2, 1, 3).reshape(B, T, H)  # (B, T, H) heads concatenated
        a = self.attn_out.forward(ctx)  # (B, T, H)
        a = self.attn_out_dropout.forward(a)  # (B, T, H)
        x1 = self.attn_norm.forward(x + a)  # (B, T, H)
        h = self.ffn_in.forward(x1)  # (B, T, I)
        act_forward, _ = K.activation(self.hidden_act)
        h, act_cache = act_forward(h)  # (B, T, I)
        f = self.ffn_out.forward(h)  # (B, T, H)
        f = self.ffn_dropout.forward(f)  # (B, T, H)
        x2 = self.ffn_norm.forward(x1 + f)  # (B, T, H)
        self._cache = (qkv_cache, attn_cache, act_cache)
        return x2, scores, (q, k, v)

    def backward(self, dx2, dscores=None, dheads=None):
        """dx2 (B, T, H) [+ dscores (B, NH, T, T), + dheads (dq, dk, dv) each (B, NH, T, HS) or None, from
        distillation losses] -> dx (B, T, H)."""
        qkv_cache, attn_cache, act_cache = self._pop_cache()
        B, T, H = dx2.shape
        # x2 = self.ffn_norm.forward(x1 + f)
        dsum = self.ffn_norm.backward(dx2)
        dx1 = dsum  # residual branch
        # f = self.ffn_dropout.forward(f)
        df = self.ffn_dropout.backward(dsum)
        # f = self.ffn_out.forward(h)
        dh = self.ffn_out.backward(df)  # (B, T, I)
        # h, act_cache = act_forward(h)
        _, act_backward = K.activation(self.hidden_act)
        dh = act_backward(dh, act_cache)
        # h = self.ffn_in.forward(x1)
        dx1 = dx1 + self.ffn_in.backward(dh)
        # x1 = self.attn_norm.forward(x + a)
        dsum = self.attn_norm.backward(dx1)
        dx = dsum  # residual branch
        # a = self.attn_out_dropout.forward(a)
        da = self.attn_out_dropout.backward(dsum)
        # a = self.attn_out.forward(ctx)
        dctx = self.attn_out.backward(da)  # (B, T, H)
        # ctx = ctx.transpose(0, 2, 1, 3).reshape(B, T, H)
        dctx = dctx.reshape(B, T, self.NH, self.HS).transpose(0, 2, 1, 3)  # (B, NH, T, HS)
        # ctx, scores, attn_cache = K.attention_forward(q, k, v, mask_add, drop)
        dq, dk, dv = K.attention_backward(dctx, attn_cache, dscores)
        # q, k, v are also outputs: add the gradients a distillation loss put on them
        if dheads is not None:
            dq, dk, dv = (g if extra is None else g + extra for g, extra in zip((dq, dk, dv), dheads))
        # q, k, v = qkv.reshape(B, T, 3, NH, HS).transpose(2, 0, 3, 1, 4)
        xp = get_array_module(dq)
        dqkv = xp.stack([dq, dk, dv]).transpose(1, 3, 0, 2, 4).reshape(B, T, 3 * H)  # (B, T, 3H)
        # qkv, qkv_cache = K.linear_forward(x, W, b)
        dxq, dW, db = K.linear_backward(dqkv, qkv_cache)
        for i, m in enumerate((self.query, self.key, self.value)):
            m.grads["weight"] += dW[i * H:(i + 1) * H]
            m.grads["bias"] += db[i * H:(i + 1) * H]
        return dx + dxq


class BertModel(PreTrainedModel):
    """The encoder: embeddings, L layers, and (optionally) the pooler tanh(W h[:, 0] + b)."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True, seed: int = 0,
                 _init: np.random.Generator | None = None, _rng: RNG | None = None):
        super().__init__()
        if _init is None:
            _init, _rng = _seeds(seed)
        self.config = config
        self.rng = _rng  # one dropout generator shared by every Dropout below
        self.embeddings = self.add("embeddings", BertEmbeddings(config, _init, _rng))
        self.layers = [self.add(f"encoder.layer.{i}", BertLayer(config, _init, _rng)) for i in range(config.num_hidden_layers)]
        self.pooler = None
        if add_pooling_layer:
            self.pooler = self.add("pooler.dense", Linear(config.hidden_size, config.hidden_size, _init, config.initializer_range))

    def _check_inputs(self, input_ids, token_type_ids, attention_mask):
        xp = self.xp
        if not hasattr(input_ids, "ndim") or input_ids.ndim != 2:
            raise ValueError(f"input_ids must be a (batch, sequence) integer array, got {getattr(input_ids, 'shape', type(input_ids))}")
        if not xp.issubdtype(input_ids.dtype, xp.integer):
            raise ValueError(f"input_ids must be integers, got dtype {input_ids.dtype}")
        B, T = input_ids.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings={self.config.max_position_embeddings}")
        if token_type_ids is None:
            token_type_ids = get_array_module(input_ids).zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = get_array_module(input_ids).ones_like(input_ids)
        for name, a in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
            if a.shape != input_ids.shape:
                raise ValueError(f"{name} has shape {a.shape} but input_ids has {input_ids.shape}")
        if not xp.issubdtype(token_type_ids.dtype, xp.integer):
            raise ValueError(f"token_type_ids must be integers, got dtype {token_type_ids.dtype}")
        # a host mask meets device parameters on the device (the ids move in the embeddings, after their check)
        return token_type_ids, like(attention_mask, self.embeddings.word.params["weight"])

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> BertOutput:
        """input_ids, token_type_ids, attention_mask (B, T) -> BertOutput."""
        token_type_ids, attention_mask = self._check_inputs(input_ids, token_type_ids, attention_mask)
        if not grad_enabled() and not self.training and K.inference_path_on(self.embeddings.word.params["weight"]):
            # no backward will follow: the inference path, a specialisation of the lines below
            # (fast_inference.py; held to them by tests/test_fast_inference.py)
            h, pooled = fast_inference.bert_forward(self, input_ids, token_type_ids, attention_mask)
            return BertOutput(last_hidden_state=h, pooler_output=pooled, hidden_states=None, attention_scores=None,
                              qkv=None)
        dtype = self.dtype
        # (B, 1, 1, T): 0 for real keys, -10000 for padding, broadcast over heads and queries
        mask_add = ((1 - attention_mask.astype(dtype)) * dtype.type(MASK_VALUE))[:, None, None, :]
        h = self.embeddings.forward(input_ids, token_type_ids)  # (B, T, H)
        hidden_states, scores, qkv = [h], [], []
        for layer in self.layers:
            h, s, heads = layer.forward(h, mask_add)  # (B, T, H), (B, NH, T, T), 3 x (B, NH, T, HS)
            hidden_states.append(h)
            scores.append(s)
            qkv.append(heads)
        pooled = None
        if self.pooler is not None:
            pooled, self._cache = K.tanh_forward(self.pooler.forward(h[:, 0]))  # (B, H)
        if not grad_enabled():  # as the inference path: what a prediction needs, nothing kept
            hidden_states = scores = qkv = None
        return BertOutput(last_hidden_state=h, pooler_output=pooled, hidden_states=hidden_states, attention_scores=scores,
                          qkv=qkv)

    def backward(self, dlast_hidden_state=None, dpooler_output=None, dhidden_states=None, dattention_scores=None,
                 dqkv=None):
        """Accumulate parameter gradients from any of the outputs' gradients.

        dlast_hidden_state (B, T, H); dpooler_output (B, H); dhidden_states: L+1 entries
        (B, T, H) or None; dattention_scores: L entries (B, NH, T, T) or None; dqkv: L entries,
        each None or (dq, dk, dv) with (B, NH, T, HS) arrays or None.
        """
        L = len(self.layers)
        dhidden_states = dhidden_states if dhidden_states is not None else [None] * (L + 1)
        dattention_scores = dattention_scores if dattention_scores is not None else [None] * L
        dqkv = dqkv if dqkv is not None else [None] * L
        if len(dhidden_states) != L + 1 or len(dattention_scores) != L or len(dqkv) != L:
            raise ValueError(f"expected {L + 1} hidden-state, {L} attention-score and {L} qkv gradients, "
                             f"got {len(dhidden_states)}, {len(dattention_scores)} and {len(dqkv)}")
        if self.layers[0]._cache is None:
            raise RuntimeError("BertModel.backward called before forward (or called twice)")
        x = self.layers[0]._cache[0].x  # the first layer's input (B, T, H) gives the shape
        dh = self.xp.zeros(x.shape, dtype=x.dtype)  # (B, T, H)
        if dlast_hidden_state is not None:
            dh = dh + dlast_hidden_state
        if dpooler_output is not None:
            if self.pooler is None:
                raise ValueError("this BertModel has no pooler, so it takes no dpooler_output")
            # pooled = tanh(self.pooler.forward(h[:, 0]))
            dfirst = self.pooler.backward(K.tanh_backward(dpooler_output, self._pop_cache()))  # (B, H)
            dh[:, 0] += dfirst
        for i in range(L - 1, -1, -1):
            if dhidden_states[i + 1] is not None:
                dh = dh + dhidden_states[i + 1]
            # h, s, heads = layer.forward(h, mask_add)
            dh = self.layers[i].backward(dh, dattention_scores[i], dqkv[i])
        if dhidden_states[0] is not None:
            dh = dh + dhidden_states[0]
        # h = self.embeddings.forward(input_ids, token_type_ids)
        self.embeddings.backward(dh)


# The task heads (heads.py) are imported from here too, as they always were: `model.BertForSequenceClassification`.
from .heads import BertForMaskedLM, BertForPreTraining, BertForSequenceClassification  # noqa: E402,F401
