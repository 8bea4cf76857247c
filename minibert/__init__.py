"""minibert: BERT and TinyBERT distillation from scratch in NumPy (CuPy on a GPU)."""
from .checkpoint import teacher_path
from .config import PRESETS, BertConfig
from .distill import Distiller
from .explainer import Explanation, explain
from .inference import TextClassifier
from .model import (BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertModel,
                    BertOutput)
from .nn import no_grad
from .tokenizer import BertTokenizer

__version__ = "0.1.0"

__all__ = ["BertConfig", "PRESETS", "BertModel", "BertForMaskedLM", "BertForPreTraining",
           "BertForSequenceClassification", "BertOutput", "BertTokenizer", "Distiller", "Explanation", "TextClassifier",
           "explain", "no_grad", "teacher_path"]
