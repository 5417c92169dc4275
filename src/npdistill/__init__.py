"""npdistill: adversarial robustness of conv nets in NumPy.

Hand-written forward and backward passes, tempered softmax, defensive
distillation and the classic attacks, with the hot loops compiled (Cython).
"""
from . import datasets, kernels
from ._version import __version__
from . import attacks, defenses, distributed, interop, metrics, placement, progress, teaching
from . import typing
from .defenses import defensive_distillation, distill
from .evaluation import Evaluation, evaluate
from .jacobian import jacobian
from .nn import architectures, layers
from .nn.model import Sequential, load_model
from .nn.passes import Passes
from .nn.softmax import cross_entropy, log_softmax, softmax
from .train import TrainingDiverged, train

__all__ = ["__version__", "architectures", "attacks", "cross_entropy", "datasets", "defenses",
           "defensive_distillation", "distill", "distributed", "Evaluation", "evaluate",
           "interop", "jacobian", "kernels", "layers", "load_model", "log_softmax", "metrics",
           "Passes", "placement", "plots", "progress", "Sequential", "softmax", "teaching",
           "typing", "train", "TrainingDiverged"]


def __getattr__(name):
    """``npdistill.plots`` is imported when first used: matplotlib loads only for figures."""
    if name == "plots":
        import importlib
        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module 'npdistill' has no attribute {name!r}")
