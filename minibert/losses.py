"""Loss modules: a loss kernel pair with its cache, so heads read like `BertLayer`.

    loss = self.loss_fct.forward(logits, labels)     # a 0-d array (no host sync)
    dlogits = self.loss_fct.backward(dloss)          # the gradient of dloss * loss

Each module keeps the one cache its kernel returns, and raises if backward comes without a
forward (as every Module does). The maths is in the kernels (`functional.py`, taken through
`kernels.py` so a swap reaches these too); this file only holds state.

Not here: the distillation losses, which compare two models' outputs and carry a layer
mapping and a projection (`distill.py`).
"""
from __future__ import annotations

from . import kernels as K
from .nn import Module


class CrossEntropyLoss(Module):
    """Mean of -log softmax(logits)[label] over rows whose label is not `ignore_index`.

    logits (N, C), labels (N,) integer -> loss (); backward -> dlogits (N, C).
    """

    def __init__(self, ignore_index: int = K.IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits, labels):
        loss, self._cache = K.cross_entropy_forward(logits, labels, self.ignore_index)
        return loss

    def backward(self, dloss=1.0):
        return K.cross_entropy_backward(dloss, self._pop_cache())


class MSELoss(Module):
    """Mean of (pred - target)^2 over every element; target is a constant.

    pred, target (...) of one shape -> loss (); backward -> dpred (...).
    """

    def forward(self, pred, target):
        loss, self._cache = K.mse_forward(pred, target)
        return loss

    def backward(self, dloss=1.0):
        return K.mse_backward(dloss, self._pop_cache())
