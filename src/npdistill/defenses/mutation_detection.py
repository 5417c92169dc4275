"""Adversarial-sample detection by model mutation testing (Wang et al., 2019,
"Adversarial Sample Detection for Deep Neural Network through Model Mutation
Testing", ICSE; arXiv 1812.05793).

Adversarial examples sit close to a decision boundary, so small random changes
of the model (mutants) flip their label far more often than a clean input's.
The label-change rate of x over mutants m_1..m_n is

    LCR(x) = |{i : m_i(x) != f(x)}| / n.

The detector calibrates a threshold kappa on the LCRs of clean inputs and
decides per input with Wald's sequential probability ratio test: mutants are
drawn one at a time, with H1 "adversarial, LCR >= kappa + sigma" against H0
"clean, LCR <= kappa - sigma"; after n mutants with c label changes the
log-likelihood ratio is

    c log(p1 / p0) + (n - c) log((1 - p1) / (1 - p0)),  p1 = kappa + sigma, p0 = kappa - sigma,

and the test stops at log((1 - beta) / alpha) (adversarial) or at
log(beta / (1 - alpha)) (clean), or calls x clean when ``max_mutants`` run out.
alpha bounds the rate of flagging an input whose LCR is at most p0, beta that
of missing one whose LCR is at least p1.

The mutation operators (from DeepMutation, Ma et al., 2018) act on the hidden
neurons (a Dense unit, or a Conv2D output channel) and weights of every Conv2D
and Dense layer but the last (the logits); on an ``interop.TorchModel``, of every
``nn.Conv2d`` and ``nn.Linear`` but the last, in the order the module registers them
(``TorchModel.weight_layers``):

- GF, Gaussian fuzzing: a fraction ``rate`` of the weights get Gaussian noise of
  ``gf_scale`` times their layer's weight standard deviation;
- NAI, neuron activation inverse: a fraction ``rate`` of the neurons have their
  pre-activation negated (weights and bias times -1), inverting their ReLU's state;
- NS, neuron switch: a fraction ``rate`` of the neurons each swap places with
  another neuron of the same layer (weights and bias exchanged);
- WS, weight shuffling: a fraction ``rate`` of the neurons have their incoming
  weights permuted.

At least one neuron (or weight) is mutated per mutant. As in the paper, a
mutant is kept only if its accuracy on labelled data is at least
``min_accuracy`` (default 90%) of the original model's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .._checks import (check_choice, check_labels, check_pair,
                       check_positive, check_probability, check_seed)
from ..interop import TorchModel
from ..nn.layers import Conv2D, Dense
from ..nn.model import Sequential
from ..placement import passes
from ..progress import Progress, check_progress
from ..typing import Images, Labels, ProgressArg

OPERATORS = ("GF", "NAI", "NS", "WS")
# mutants predict in batches of this many images: 500 MNIST images through the
# papers' net took 0.18 s at 64 or 100, 0.21 s at 128, 0.34 s at 512 (2 cores)
PREDICT_BATCH = 100


def _mutable_layers(model):
    """The hidden weight layers, each with ``params`` {"W", "b"} stored as Conv2D's
    (F, C, kh, kw) or Dense's (in, out); assigning to them changes the model."""
    if isinstance(model, Sequential):
        layers = [layer for layer in model.layers if isinstance(layer, (Conv2D, Dense))]
    elif isinstance(model, TorchModel):
        layers = model.weight_layers()
    else:
        raise TypeError(f"mutation testing changes a model's weights: model must be a "
                        f"Sequential or an interop.TorchModel, got {type(model).__name__}")
    if len(layers) < 2:
        raise ValueError("mutation testing needs a hidden Conv2D or Dense layer before the "
                         f"output layer; the model has {len(layers)} weight layer(s)")
    return layers[:-1]


def _incoming(layer):
    """The weights feeding each neuron, one row per neuron (a view for Conv2D, a copy for Dense)."""
    W = layer.params["W"]
    return W.reshape(len(W), -1) if W.ndim == 4 else W.T.copy()


def _set_incoming(layer, rows):
    W = layer.params["W"]
    layer.params["W"] = (rows.reshape(W.shape) if W.ndim == 4
                         else np.ascontiguousarray(rows.T))


def _pick(rng, total, rate):
    return rng.choice(total, max(1, int(round(rate * total))), replace=False)


def _check_mutation(model, operator, rate):
    check_choice(operator, "operator", OPERATORS)
    check_probability(rate, "rate", zero=False)
    _mutable_layers(model)


def mutate(model: Sequential | TorchModel, operator: str, rate: float,
           rng: np.random.Generator, gf_scale: float = 1.0) -> Sequential | TorchModel:
    """A mutated copy of ``model``: one of OPERATORS applied with mutation rate ``rate``."""
    _check_mutation(model, operator, rate)
    check_positive(gf_scale, "gf_scale")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    mutant = model.copy()
    layers = _mutable_layers(mutant)
    if operator == "GF":
        sizes = [layer.params["W"].size for layer in layers]
        chosen = np.sort(_pick(rng, sum(sizes), rate))
        offsets = np.cumsum([0] + sizes)
        for layer, lo, hi in zip(layers, offsets[:-1], offsets[1:]):
            here = chosen[(chosen >= lo) & (chosen < hi)] - lo
            W = layer.params["W"].copy()
            flat = W.reshape(-1)
            flat[here] += (rng.standard_normal(len(here)) * gf_scale * flat.std()).astype(W.dtype)
            layer.params["W"] = W
        return mutant
    counts = [len(layer.params["b"]) for layer in layers]
    chosen = np.sort(_pick(rng, sum(counts), rate))
    offsets = np.cumsum([0] + counts)
    for layer, lo, hi in zip(layers, offsets[:-1], offsets[1:]):
        neurons = chosen[(chosen >= lo) & (chosen < hi)] - lo
        if len(neurons) == 0:
            continue
        rows, b = _incoming(layer).copy(), layer.params["b"].copy()
        for j in neurons:
            if operator == "NAI":
                rows[j], b[j] = -rows[j], -b[j]
            elif operator == "WS":
                rows[j] = rows[j][rng.permutation(rows.shape[1])]
            elif len(b) > 1:                                    # NS
                k = (j + 1 + rng.integers(len(b) - 1)) % len(b)     # another neuron
                rows[[j, k]], b[[j, k]] = rows[[k, j]], b[[k, j]]
        _set_incoming(layer, rows)
        layer.params["b"] = b
    return mutant


@dataclass
class Detection:
    """Per input: ``adversarial`` (bool), ``mutants_used`` and ``label_changes`` (int)."""
    adversarial: np.ndarray
    mutants_used: np.ndarray
    label_changes: np.ndarray

    @property
    def rate(self) -> float:
        """Fraction of the inputs flagged adversarial."""
        return float(self.adversarial.mean())


class MutationDetector:
    """Model-mutation detector of adversarial inputs (Wang et al., 2019).

    Parameters
    ----------
    model : the deployed Sequential, or an interop.TorchModel
    accuracy_data : (x, y) labelled clean images on which mutants are screened
    operator : "GF", "NAI", "NS" or "WS"; rate : mutation rate (fraction of
        neurons, or of weights for GF)
    alpha, beta : the SPRT's error bounds; sigma : the indifference region's
        half-width, as a fraction of the threshold (p0, p1 = kappa (1 -/+ sigma))
    max_mutants : most mutants one input may use
    min_accuracy : a mutant is kept if accuracy >= min_accuracy * the model's
    seed : mutant i is drawn from default_rng([seed, i]): the same seed, the same mutants
    progress : True, False, None (shown once a pass over the mutants has run 2 s) or a
        callable taking a ``npdistill.progress.ProgressEvent``, one per mutant
    """

    def __init__(self, model: Sequential | TorchModel, accuracy_data: tuple[Images, Labels], *,
                 operator: str = "NAI", rate: float = 0.01, alpha: float = 0.05,
                 beta: float = 0.05, sigma: float = 0.5, max_mutants: int = 200,
                 min_accuracy: float = 0.9, gf_scale: float = 1.0, seed: int = 0,
                 progress: ProgressArg = None) -> None:
        for name, value in (("alpha", alpha), ("beta", beta), ("sigma", sigma),
                            ("min_accuracy", min_accuracy)):
            check_probability(value, name, zero=False, one=False)
        check_positive(max_mutants, "max_mutants", integer=True)
        _check_mutation(model, operator, rate)
        check_positive(gf_scale, "gf_scale")
        check_seed(seed)
        x_acc, y_acc = check_pair(accuracy_data, "accuracy_data")
        model.check_images(x_acc, "accuracy_data x")
        self.y_acc = check_labels(y_acc, len(x_acc), model.num_classes, "accuracy_data y")
        self.model, self.x_acc = model, x_acc
        self.operator, self.rate, self.gf_scale, self.seed = operator, float(rate), gf_scale, seed
        self.alpha, self.beta, self.sigma = float(alpha), float(beta), float(sigma)
        self.max_mutants, self.min_accuracy = int(max_mutants), min_accuracy
        self.progress = check_progress(progress)
        self.passes = passes(model)       # placed when the detector is made, as its mutants
        self.accuracy = float((self.passes.predict(x_acc) == self.y_acc).mean())
        self.mutants: list[Sequential | TorchModel] = []
        self.rejected = 0
        self.threshold: float | None = None         # set by calibrate
        self._mutant_passes: list = []

    def config(self):
        return {"operator": self.operator, "rate": self.rate, "alpha": self.alpha,
                "beta": self.beta, "sigma": self.sigma, "max_mutants": self.max_mutants,
                "min_accuracy": self.min_accuracy, "seed": self.seed, "threshold": self.threshold}

    def mutant(self, i):
        """The i-th accepted mutant, drawn (and screened) on first use."""
        while len(self.mutants) <= i:
            tries = len(self.mutants) + self.rejected
            if self.rejected > 10 * max(1, len(self.mutants)) + 50:
                raise ValueError(f"{self.operator} at rate {self.rate} keeps too few mutants: "
                                 f"{self.rejected} of {tries} fell below {self.min_accuracy:.0%} "
                                 f"of the model's accuracy; lower the rate")
            candidate = mutate(self.model, self.operator, self.rate,
                               np.random.default_rng([self.seed, tries]), self.gf_scale)
            candidate_passes = passes(candidate)
            accuracy = float((candidate_passes.predict(self.x_acc, PREDICT_BATCH)
                              == self.y_acc).mean())
            if accuracy >= self.min_accuracy * self.accuracy:
                self.mutants.append(candidate)
                self._mutant_passes.append(candidate_passes)
            else:
                self.rejected += 1
        return self.mutants[i]

    def _mutant_predict(self, i, x):
        """The i-th mutant's classes of x."""
        self.mutant(i)
        return self._mutant_passes[i].predict(x, PREDICT_BATCH)

    def _labels(self, x):
        self.model.check_images(x)
        if len(x) == 0:
            raise ValueError("x holds no images")
        return self.passes.predict(x, PREDICT_BATCH)

    def label_change_rate(self, x: Images,
                          mutants: int | None = None) -> npt.NDArray[np.float64]:
        """LCR of every input over the first ``mutants`` mutants (default max_mutants): (N,)."""
        count = self.max_mutants if mutants is None else mutants
        check_positive(count, "mutants", integer=True)
        labels = self._labels(x)
        changes = np.zeros(len(x), dtype=np.int64)
        shown = Progress(self.progress, "mutation detector, label-change rates", count, "mutants")
        for i in range(count):
            changes += self._mutant_predict(i, x) != labels
            shown.update(i + 1)
        return changes / count

    def calibrate(self, x_clean: Images, mutants: int | None = None) -> float:
        """Set the threshold from clean inputs: the (1 - alpha) quantile of their LCRs,
        at least 1 / max_mutants (below that no count of mutants can tell rates apart)."""
        lcr = self.label_change_rate(x_clean, mutants)
        self.threshold = max(float(np.quantile(lcr, 1 - self.alpha)), 1.0 / self.max_mutants)
        if self.threshold * (1 + self.sigma) >= 1:
            raise ValueError(f"clean inputs change label under {self.threshold:.0%} of the "
                             f"mutants: the mutation rate {self.rate} is too high to detect anything")
        return self.threshold

    def detect(self, x: Images) -> Detection:
        """The sequential test on every input of x (N, C, H, W): a ``Detection``."""
        if self.threshold is None:
            raise ValueError("calibrate(x_clean) the detector before detect()")
        p1, p0 = self.threshold * (1 + self.sigma), self.threshold * (1 - self.sigma)
        accept, reject = np.log((1 - self.beta) / self.alpha), np.log(self.beta / (1 - self.alpha))
        up, down = np.log(p1 / p0), np.log((1 - p1) / (1 - p0))
        labels = self._labels(x)
        n = len(x)
        changes, used = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        adversarial = np.zeros(n, dtype=bool)
        open_ = np.arange(n)
        shown = Progress(self.progress, "mutation detector, SPRT", self.max_mutants, "mutants")
        for i in range(self.max_mutants):
            if len(open_) == 0:
                shown.update(self.max_mutants, undecided=0)
                break
            changes[open_] += self._mutant_predict(i, x[open_]) != labels[open_]
            used[open_] = i + 1
            ratio = changes[open_] * up + (i + 1 - changes[open_]) * down
            adversarial[open_[ratio >= accept]] = True
            open_ = open_[(ratio < accept) & (ratio > reject)]
            shown.update(i + 1, undecided=len(open_))
        return Detection(adversarial, used, changes)
