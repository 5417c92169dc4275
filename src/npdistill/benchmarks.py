"""The data sets a net can be trained on, and what the reproductions need of each: one
registry, read by name by the command line (``train --dataset``) and the reproductions
(``reproduce --dataset``; those with the papers' numbers)."""
from dataclasses import dataclass

from . import datasets
from .nn import architectures

# The papers' numbers (MNIST). Papernot et al. 2016, table/figure 5 and section V;
# Papernot & McDaniel 2016; Carlini & Wagner 2017, table IV and section VIII.
PAPER_MNIST = {
    "train_images": 60000,
    "baseline_accuracy": 0.9951,
    "max_accuracy_cost": 0.0128,
    "jsma_success": {"baseline": 0.9589, 1: 0.91, 2: 0.8223, 5: 0.2467, 10: 0.0678, 20: 0.0134,
                     30: 0.0144, 40: 0.0045, 50: 0.0145, 100: 0.0045},
    "fgsm_success": {"baseline": 0.8803, 100: {"below": 0.015}},   # "< 1.5%" at T = 100
    "cw": {"baseline": {"success": 1.0, "l0": 16, "l2": 1.76, "linf": 0.13},
           "distilled": {"success": 1.0, "l0": 19, "l2": 2.2, "linf": 0.18}},
}
# CIFAR-10: Papernot et al. 2016, table/figure 5 and section V (no FGSM or CW figure of
# theirs for it: those cells show "-").
PAPER_CIFAR10 = {
    "train_images": 50000,
    "baseline_accuracy": 0.8095,
    "max_accuracy_cost": 0.0137,
    "jsma_success": {"baseline": 0.8789, 1: 0.9278, 2: 0.8767, 5: 0.67, 10: 0.4756, 20: 0.1823,
                     30: 0.1323, 40: 0.0934, 50: 0.0623, 100: 0.0511},
    "fgsm_success": {},
    "cw": {"baseline": {}, "distilled": {}},
}
# EMNIST balanced: the course report's (Fig. 5-7 and its text). The I-FGSM count is over
# the whole test set; its transfer to the T = 100 net is the share classified correctly.
# Its CW findings are qualitative: untargeted L-inf examples every distilled net
# misclassifies; targeted CW does not always succeed.
PAPER_EMNIST = {
    "train_images": 112800,
    "baseline_accuracy": 0.8907,
    "max_accuracy_cost": 0.0138,
    "jsma_success": {},
    "fgsm_success": {},
    "ifgsm": {"images": 18800, "to_target": 9500, "transfer_accuracy": {"100": 0.86}},
    "cw_fools_all": {"linf_untargeted": "found", "l0_targeted": "not always",
                     "l2_targeted": "not always", "linf_targeted": "not always"},
}


@dataclass(frozen=True)
class Benchmark:
    """A data set: what the tables call it, its loader (``load(path, download=...)``), the
    papers' net for it, FGSM's eps on it, the papers' numbers (None: no paper to
    reproduce) and the module of npdistill whose ``reproduce`` and ``settings_from`` run
    their protocol."""
    title: str
    load: object
    net: object
    eps: float
    paper: dict | None = None
    protocol: str = "reproduce"


BENCHMARKS = {
    "mnist": Benchmark("MNIST", datasets.load_mnist, architectures.papernot_mnist, 0.3,
                       PAPER_MNIST),
    "fashion-mnist": Benchmark("Fashion-MNIST", datasets.load_fashion_mnist,
                               architectures.papernot_mnist, 0.3),
    # eps = 8/255: the L-inf budget usual on CIFAR-10 (Madry et al., 2018); MNIST's 0.3
    # would wipe out a 32x32 colour image
    "cifar10": Benchmark("CIFAR-10", datasets.load_cifar10, architectures.papernot_cifar10,
                         8 / 255, PAPER_CIFAR10),
    # the balanced split (47 classes), the course report's net and its protocol
    "emnist": Benchmark("EMNIST (balanced)", datasets.load_emnist, architectures.emnist_net,
                        0.3, PAPER_EMNIST, "reproduce_emnist"),
}
REPRODUCIBLE = tuple(name for name, b in BENCHMARKS.items() if b.paper is not None)


def reproduction(name):
    """The module running ``name``'s reproduction (its ``reproduce``, ``settings_from``)."""
    import importlib
    return importlib.import_module(f"npdistill.{benchmark(name, reproducible=True).protocol}")


def benchmark(name, reproducible=False):
    """The Benchmark called ``name`` (a ValueError naming the choices otherwise)."""
    names = REPRODUCIBLE if reproducible else tuple(BENCHMARKS)
    if name not in names:
        raise ValueError(f"dataset must be one of {names}, got {name!r}")
    return BENCHMARKS[name]
