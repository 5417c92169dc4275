"""Accuracy, attack success, and the adversarial-gradient amplitude of
Papernot et al. (2016), "Distillation as a Defense to Adversarial
Perturbations against Deep Neural Networks", Section V-B and Figure 8; the
gradient-masking checklist of Carlini et al. (2019), ``masking_report`` (from
npdistill.masking).
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._checks import check_images, check_labels, check_positive
from .masking import MaskingReport, gradient_zeros, masking_report
from .nn.softmax import softmax_seed
from .placement import passes
from .progress import Progress
from .typing import Images, Labels, Model, ProgressArg

# The paper's log-scale bins of Figure 8, five decades wide; the last bin
# catches anything above 1 so that no sample is dropped.
AMPLITUDE_BINS = np.array([0.0, 1e-40, 1e-35, 1e-30, 1e-25, 1e-20, 1e-15, 1e-10, 1e-5, 1.0,
                           np.inf])


def accuracy(model: Model, x: Images, y: Labels) -> float:
    """Fraction of x (N, C, H, W) in [0, 1] the model classifies as y (N,) integer labels."""
    model = passes(model)
    model.check_images(x)
    y = check_labels(y, len(x), model.num_classes, "y")
    return float((model.predict(x) == y).mean())


def _predicted_class_gradient(model, x, T, batch_size, progress=None, stage="gradients"):
    """dF_c/dX for c the predicted class, F = softmax(Z / T): (N, C, H, W) in the model's dtype."""
    check_positive(T, "temperature T")
    check_positive(batch_size, "batch_size", integer=True)
    model = passes(model)
    parts = []
    shown = Progress(progress, stage, len(x), "images")
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        z = model.logits(chunk)
        seed = softmax_seed(z, z.argmax(axis=1), T)
        parts.append(model.backward(seed, param_grads=False))     # the forward of logits()
        shown.update(start + len(chunk))
    return np.concatenate(parts)


def adversarial_gradient_amplitude(model: Model, x: Images, T: float = 1.0, batch_size: int = 64,
                                   progress: ProgressArg = None) -> npt.NDArray[np.float64]:
    """Per sample, the mean over input components of |dF_c/dX|, c the predicted class.

    Computed on a float64 copy of the model, so amplitudes far below float32's
    smallest normal (1e-38) are measured instead of flushed to 0 (a model from elsewhere
    without ``astype`` is measured in its own dtype).

    x : (N, C, H, W) float in [0, 1]. Returns (N,) float64.
    """
    check_images(x, "x")
    if model.dtype != np.float64 and hasattr(model, "astype"):
        model = model.astype(np.float64)
    grad = _predicted_class_gradient(model, x.astype(model.dtype), T, batch_size, progress,
                                     "gradient amplitude")
    return np.abs(grad).reshape(len(x), -1).mean(axis=1)


def zero_gradient_fraction(model: Model, x: Images, T: float = 1.0, batch_size: int = 64,
                           progress: ProgressArg = None) -> npt.NDArray[np.float64]:
    """Per sample, the fraction of components of dF_c/dX that are exactly 0 in the model's dtype.

    A distilled net deployed at T = 1 in float32 gives exactly-zero gradients
    (underflow): the gradient masking that makes JSMA and FGSM fail.
    """
    model.check_images(x)
    grad = _predicted_class_gradient(model, x, T, batch_size, progress, "zero gradients")
    return (grad == 0).reshape(len(x), -1).mean(axis=1)


def _numbers(values: object, name: str) -> npt.NDArray[np.float64]:
    """``values`` as a float64 array, or a TypeError naming ``name`` (a string, objects)."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numbers, got {type(values).__name__} of "
                        f"{array.dtype} ({str(values)[:40]!r})")
    return array.astype(np.float64)


def amplitude_histogram(amplitudes: npt.ArrayLike,
                        bins: npt.ArrayLike = AMPLITUDE_BINS) -> npt.NDArray[np.float64]:
    """Fraction of samples in each bin [bins[i], bins[i+1]) (0 goes in the first)."""
    values = _numbers(amplitudes, "amplitudes")
    if values.size and (np.isnan(values).any() or values.min() < 0):
        raise ValueError("amplitudes must be non-negative numbers")
    counts = np.histogram(values, bins=bins)[0]
    return counts / max(len(values), 1)


def gradient_masking(model: Model, x: Images, y: Labels, T: float = 1.0,
                     batch_size: int = 64) -> dict[str, dict[str, float]]:
    """How much of each attack's input gradient is exactly 0 or not finite, in the model's dtype.

    x : (N, C, H, W) in [0, 1]; y : (N,) true classes. Returns a dict per gradient:
      "fgsm" : d CE(softmax(Z / T), y) / dX (FGSM's and BIM's)
      "jsma" : dF_c / dX, F = softmax(Z / T), c the predicted class (JSMA's, Figure 8's)
      "cw"   : d(Z_a - Z_b) / dX, a and b the two largest logits (a logit-margin attack's)
    each with "zero_fraction" (of all components), "all_zero_images" (fraction of
    images whose whole gradient is 0: FGSM cannot move them) and "nonfinite_fraction".
    """
    from .attacks.fgsm import loss_gradient           # attacks sit below metrics

    model.check_images(x)
    y = check_labels(y, len(x), model.num_classes, "y")
    check_positive(batch_size, "batch_size", integer=True)
    model = passes(model)
    parts: dict[str, list] = {"fgsm": [], "cw": []}
    for start in range(0, len(x), batch_size):
        chunk, labels = x[start:start + batch_size], y[start:start + batch_size]
        parts["fgsm"].append(loss_gradient(model, chunk, labels, T))
        z = model.forward(chunk)
        top = np.argsort(z, axis=1)[:, ::-1][:, :2]
        seed = np.zeros_like(z)
        rows = np.arange(len(z))
        seed[rows, top[:, 0]], seed[rows, top[:, 1]] = 1, -1
        parts["cw"].append(model.backward(seed, param_grads=False))
    grads = {name: np.concatenate(p) for name, p in parts.items()}
    grads["jsma"] = _predicted_class_gradient(model, x, T, batch_size)
    return {name: gradient_zeros(grads[name]) for name in ("fgsm", "jsma", "cw")}


def roc_auc(negative_scores: npt.ArrayLike, positive_scores: npt.ArrayLike) -> float:
    """Area under the ROC curve of a detector whose score should be higher on positives:
    P(score of a positive > score of a negative), ties counting one half (Mann-Whitney U).

    negative_scores : (N,) e.g. label-change rates of clean inputs;
    positive_scores : (M,) those of adversarial inputs. Returns a float in [0, 1].
    """
    neg = _numbers(negative_scores, "negative_scores").reshape(-1)
    pos = _numbers(positive_scores, "positive_scores").reshape(-1)
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError(f"roc_auc needs scores of both kinds, got {len(neg)} negative and "
                         f"{len(pos)} positive")
    if not (np.isfinite(neg).all() and np.isfinite(pos).all()):
        raise ValueError("roc_auc scores must be finite")
    ranks = _average_ranks(np.concatenate([neg, pos]))
    u = ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(neg) * len(pos)))


def _average_ranks(values):
    """1-based ranks, tied values sharing their average rank."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks
