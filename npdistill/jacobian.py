"""Exact Jacobians dF/dX of a model's logits or of its softmax at temperature T.

One backward pass gives J^T s for a seed s; stacking the K one-hot seeds on the
batch axis gives every row of the logits Jacobian at once. The softmax-at-T
Jacobian follows from it: dF/dX = (diag(p) - p p^T) / T . dZ/dX with
p = softmax(z / T) (Papernot et al., 2016, "The Limitations of Deep Learning
in Adversarial Settings", the forward derivative of eq. 1).
"""
import numpy as np

from ._checks import check_positive
from .nn.softmax import softmax


def vector_jacobian(model, x, seeds):
    """For each seed row s of ``seeds`` (S, N, K), s^T dZ/dX: returns (S, N, C, H, W).

    One forward pass of x, then one backward pass with the S seeds of every
    image stacked on the batch axis (no parameter gradients).
    """
    s, n, k = seeds.shape
    model.forward(x)
    dx = model.backward(seeds.reshape(s * n, k).astype(x.dtype, copy=False), param_grads=False)
    return dx.reshape(s, n, *x.shape[1:])


def jacobian(model, x, T=1.0, of="softmax", batch_size=32):
    """Exact Jacobian of the model at x.

    Parameters
    ----------
    model : Sequential returning logits (K classes)
    x : (B, C, H, W) float, the model's dtype
    T : temperature of the softmax (ignored for of="logits")
    of : "softmax" (dF/dX, F = softmax(Z / T)) or "logits" (dZ/dX)
    batch_size : images per pass (each pass runs batch_size * K rows)

    Returns
    -------
    J : (B, K, C, H, W), J[b, k] = d output_k / d x[b]
    """
    if of not in ("softmax", "logits"):
        raise ValueError(f"of must be 'softmax' or 'logits', got {of!r}")
    check_positive(T, "temperature T")
    check_positive(batch_size, "batch_size", integer=True)
    z = model.logits(x)
    k = z.shape[1]
    eye = np.eye(k, dtype=x.dtype)
    parts = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        seeds = np.broadcast_to(eye[:, None, :], (k, len(chunk), k))   # seed k for every image
        parts.append(vector_jacobian(model, chunk, seeds).swapaxes(0, 1))
    J = np.concatenate(parts) if parts else np.zeros((0, k, *x.shape[1:]), x.dtype)
    if of == "logits":
        return J
    p = softmax(z, T)
    dsoftmax = (np.einsum("bi,ij->bij", p, eye) - p[:, :, None] * p[:, None, :]) / x.dtype.type(T)
    return np.einsum("bij,bj...->bi...", dsoftmax, J)
