"""Layers, Sequential, tempered softmax / cross-entropy, SGD and the papers' nets."""
from . import architectures, layers
from .model import Sequential, load_model
from .optim import SGD
from .softmax import cross_entropy, log_softmax, softmax

__all__ = ["architectures", "layers", "Sequential", "load_model", "SGD",
           "cross_entropy", "log_softmax", "softmax"]
