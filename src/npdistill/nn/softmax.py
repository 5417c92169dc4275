"""Tempered softmax, log-softmax and cross-entropy with hard or soft targets, and their
derivatives as the seeds of a backward pass (the attacks' and the Jacobian's).

Temperature is a property of the probabilities and of the loss, never of a
layer: F(X) = softmax(z / T). A model trained at T and deployed at T = 1 sees
its logits scaled by about T, which saturates the softmax (Papernot et al.,
2016, "Distillation as a Defense to Adversarial Perturbations", eq. 1).
"""
import numpy as np

from .._checks import check_float_array, check_positive, check_targets


def _scaled(z, T):
    """(z - max z) / T row by row, in z's dtype: <= 0, with 0 at each row's maximum.

    Shift first, then divide (in float64): z / T - max(z / T) overflows or divides by
    a T that float32 flushes to 0 (T = 1e-50 gave all NaN). Terms below the dtype's
    range become its most negative finite number, so log-probabilities stay finite
    and their probabilities are exactly 0.
    """
    check_float_array(z, "logits", ndim=2)
    T = check_positive(T, "temperature T")
    if z.shape[1] == 0:
        raise ValueError(f"logits must have at least one column, got shape {z.shape}")
    shifted = z - z.max(axis=1, keepdims=True)       # log-sum-exp: logits reach 1e3 and more
    s = shifted / np.float64(T)
    np.maximum(s, np.finfo(z.dtype).min, out=s)
    return s.astype(z.dtype, copy=False)


def softmax(z, T=1.0):
    """Probabilities softmax(z / T) of logits z (N, K); rows sum to 1."""
    s = _scaled(z, T)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z, T=1.0):
    """log softmax(z / T) of logits z (N, K), finite for any finite logits."""
    s = _scaled(z, T)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def cross_entropy(z, target, T=1.0):
    """Mean cross-entropy of softmax(z / T) against ``target``, and its gradient.

    Parameters
    ----------
    z : (N, K) float logits
    target : (N,) int labels, or (N, K) float soft-label rows summing to 1
    T : temperature > 0

    Returns
    -------
    loss : float, -1/N sum_i sum_k q_ik log softmax(z_i / T)_k
    dlogits : (N, K), dloss/dz = (softmax(z / T) - q) / (T N)
    """
    T = check_positive(T, "temperature T")
    if isinstance(z, np.ndarray) and z.dtype.kind == "f" and T < 1 / np.finfo(z.dtype).max:
        # (p - q) / T reaches 1 / T: past the dtype's largest number
        raise ValueError(f"temperature T={T:g} is too small for {z.dtype} logits: the gradient "
                         f"(p - q) / T would overflow; T must be at least "
                         f"{1 / float(np.finfo(z.dtype).max):.3g}")
    logp = log_softmax(z, T)
    n, k = z.shape
    if n == 0:
        raise ValueError("cross_entropy needs at least one row of logits, got shape (0, K)")
    check_targets(target, n, k, "target")
    p = np.exp(logp)
    if np.issubdtype(target.dtype, np.integer):
        rows = np.arange(n)
        loss = -logp[rows, target].sum() / n
        dlogits = p
        dlogits[rows, target] -= 1
    else:
        q = target.astype(z.dtype, copy=False)
        loss = -(q * logp).sum() / n
        dlogits = p - q
    dlogits /= np.float64(T) * n      # in float64: T * n may be below float32's range
    return float(loss), dlogits


def softmax_seed(z, classes, T):
    """Seed rows s (N, K) with s^T dZ/dX = dF_c/dX, F = softmax(Z / T), c = ``classes``.

    dF_c/dz_k = p_c (delta_ck - p_k) / T.
    """
    n = len(z)
    p = softmax(z, T)
    onehot = np.zeros_like(z)
    onehot[np.arange(n), classes] = 1
    return p[np.arange(n), classes][:, None] * (onehot - p) / z.dtype.type(T)


def softmax_jacobian(z, T):
    """dF/dZ (N, K, K) of F = softmax(Z / T): (diag(p) - p p^T) / T."""
    p = softmax(z, T)
    k = z.shape[1]
    return (p[:, :, None] * np.eye(k, dtype=z.dtype) - p[:, :, None] * p[:, None, :]) \
        / z.dtype.type(T)


def loss_seed(z, labels, T):
    """d CE(softmax(Z / T), labels) / dZ per row (the sum of the losses, not their mean):
    (softmax(z / T) - onehot) / T; a saturated softmax gives exactly 0."""
    dlogits = softmax(z, T)
    dlogits[np.arange(len(z)), labels] -= 1
    dlogits /= z.dtype.type(T)
    return dlogits
