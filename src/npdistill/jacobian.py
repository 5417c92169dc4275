"""Exact Jacobians dF/dX of a model's logits or of its softmax at temperature T.

One backward pass gives J^T s for a seed s; stacking the K one-hot seeds on the
batch axis gives every row of the logits Jacobian at once. The softmax-at-T
Jacobian follows from it: dF/dX = (diag(p) - p p^T) / T . dZ/dX with
p = softmax(z / T) (Papernot et al., 2016, "The Limitations of Deep Learning
in Adversarial Settings", the forward derivative of eq. 1).
"""
from __future__ import annotations

import numpy as np

from ._checks import check_choice, check_positive
from .nn.softmax import softmax_jacobian
from .placement import passes
from .progress import Progress
from .typing import FloatArray, Images, Model, ProgressArg


def jacobian(model: Model, x: Images, T: float = 1.0, of: str = "softmax", batch_size: int = 32,
             progress: ProgressArg = None) -> FloatArray:
    """Exact Jacobian of the model at x.

    Parameters
    ----------
    model : Sequential returning logits (K classes)
    x : (B, C, H, W) float, the model's dtype
    T : temperature of the softmax (ignored for of="logits")
    of : "softmax" (dF/dX, F = softmax(Z / T)) or "logits" (dZ/dX)
    batch_size : images per pass (each pass runs batch_size * K rows)
    progress : True, False, None (shown once it has run 2 s) or a callable taking a
        ``npdistill.progress.ProgressEvent``, one per batch

    Returns
    -------
    J : (B, K, C, H, W), J[b, k] = d output_k / d x[b]
    """
    check_choice(of, "of", ("softmax", "logits"))
    check_positive(T, "temperature T")
    check_positive(batch_size, "batch_size", integer=True)
    model = passes(model)
    model.check_input(x)
    logits, parts = [], []
    shown = Progress(progress, "jacobian", len(x), "images")
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        z = model.forward(chunk)
        k = z.shape[1]
        # the K one-hot seeds of every image, stacked seed-major on the batch axis
        seeds = np.repeat(np.eye(k, dtype=x.dtype), len(chunk), axis=0)
        dx = model.backward(seeds, param_grads=False)
        logits.append(z)
        parts.append(dx.reshape(k, len(chunk), *x.shape[1:]).swapaxes(0, 1))
        shown.update(start + len(chunk))
    if not parts:
        raise ValueError("x holds no samples")
    J = np.concatenate(parts)
    if of == "logits":
        return J
    return np.einsum("bij,bj...->bi...", softmax_jacobian(np.concatenate(logits), T), J)
