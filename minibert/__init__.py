"""minibert: BERT and TinyBERT distillation from scratch in NumPy (CuPy on a GPU)."""
from .config import BertConfig, PRESETS
from .model import (BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertModel,
                    BertOutput)

__version__ = "0.1.0"

__all__ = ["BertConfig", "PRESETS", "BertModel", "BertForMaskedLM", "BertForPreTraining",
           "BertForSequenceClassification", "BertOutput"]
