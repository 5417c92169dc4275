"""The Carlini-Wagner inner step, NumPy reference (the specification of ext/cw.pyx).

Carlini & Wagner 2017, "Towards Evaluating the Robustness of Neural Networks".
The attack optimises a variable w (N, M) in tanh space:

    x(w) = x0 + mask * boxmul * (tanh(w) - s0),    s0 = tanh(w0),

where w0 is the preimage of the clean image x0 (so x(w0) = x0 exactly, and a
pixel whose mask is 0 stays at x0), boxmul = (hi - lo) / 2, and the result is
clipped into [lo, hi] (the clip only trims the 1e-6 by which the preimage was
shrunk to keep arctanh finite). One iteration is

    z = logits(x);  cw_margin -> const * f(z) and its gradient dz   (eq. 6, f_6)
    cw_track   -> best-so-far examples per image
    g_x = backward(dz);  cw_update -> penalty gradient, chain rule through
        tanh, one Adam step on w, the next x and its distance.

Three kernels, each filling the buffers it is given.
"""
import math

import numpy as np

L2, LINF = 0, 1          # the distance penalty of cw_update
# Adam as in TensorFlow, whose optimizer the authors' code uses; every backend's
# cw_update and the device loop of CW L2 take them from here.
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8


def adam_step_size(lr, step, beta1=ADAM_BETA1, beta2=ADAM_BETA2):
    """Adam's bias-corrected step size at step t >= 1: lr sqrt(1 - b2^t) / (1 - b1^t)."""
    return lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)


def preimage(x0, lo, hi):
    """w0 with x(w0) = x0: arctanh of x0 mapped from [lo, hi] to (-1, 1), shrunk by 1e-6
    so that arctanh stays finite at the box's edges (the reference code's 0.999999)."""
    boxmul = (hi - lo) / 2
    return np.arctanh((x0 - (hi + lo) / 2) / boxmul * 0.999999).astype(x0.dtype)


def image_of(w, x0, s0, mask, boxmul, lo, hi):
    """The image of w in tanh space: x0 + mask * boxmul * (tanh(w) - s0), clipped into
    [lo, hi] (s0 = tanh(preimage(x0)), boxmul = (hi - lo) / 2)."""
    return np.clip(x0 + mask * (boxmul * (np.tanh(w) - s0)), lo, hi)


def distance(x, x0, tau, norm):
    """Each image's penalty: sum (x - x0)^2 (L2) or sum max(|x - x0| - tau, 0) (L-inf,
    Carlini & Wagner's section VI-C); x, x0 (N, M), tau (N,)."""
    delta = x - x0
    if norm == L2:
        return (delta * delta).sum(axis=1)
    return np.maximum(np.abs(delta) - tau[:, None], 0).sum(axis=1)


def penalty_gradient(grad_x, x, x0, tau, norm):
    """d(c f + distance)/dx at x given grad_x = d(c f)/dx: + 2 (x - x0) (L2), or + sign(x - x0)
    where |x - x0| > tau (L-inf)."""
    delta = x - x0
    if norm == L2:
        return grad_x + 2 * delta
    return grad_x + np.where(np.abs(delta) > tau[:, None], np.sign(delta), 0).astype(x.dtype)


def start(x0, w, mask, lo, hi):
    """(s0, w, x) of images x0 (N, M) whose search starts from ``w`` (None: from x0's own
    preimage, where x is x0)."""
    w0 = preimage(x0, lo, hi)
    s0 = np.tanh(w0)
    w = w0 if w is None else w.copy()
    return s0, w, image_of(w, x0, s0, mask, (hi - lo) / 2, lo, hi).astype(x0.dtype)


def cw_margin(z, labels, targeted, kappa, const, loss, dz, success):
    """f(z) = max(margin + kappa, 0) per image, its gradient and the success flags.

    z : (N, K) logits IN; labels : (N,) int64 IN (targets, or true classes)
    targeted : bool; kappa : confidence; const : (N,) IN, the weight c of f
    loss : (N,) OUT c * f;  dz : (N, K) OUT d(c * f)/dz;  success : (N,) uint8 OUT

    margin = max_{j != t} z_j - z_t (targeted), z_y - max_{j != y} z_j (untargeted).
    The best other logit masks the label out with -inf, so it stays right
    when every logit is negative (multiplying by (1 - onehot) would pick 0).
    success: z_t - kappa > max_{j != t} z_j, or z_y + kappa < max_{j != y} z_j.
    """
    n = len(z)
    rows = np.arange(n)
    other = z.copy()
    other[rows, labels] = -np.inf
    j = other.argmax(axis=1)                       # first index on ties
    z_label, z_other = z[rows, labels], z[rows, j]
    margin = z_other - z_label if targeted else z_label - z_other
    hinge = margin + z.dtype.type(kappa)
    active = hinge > 0
    loss[...] = const * np.where(active, hinge, 0)
    sign = 1 if targeted else -1
    step = np.where(active, const * sign, 0).astype(z.dtype)
    dz[...] = 0
    dz[rows, j] = step
    dz[rows, labels] = -step
    kappa = z.dtype.type(kappa)
    success[...] = z_label - kappa > z_other if targeted else z_label + kappa < z_other


def cw_update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, *, norm, step, lr, boxmul, lo, hi,
              beta1=ADAM_BETA1, beta2=ADAM_BETA2, epsilon=ADAM_EPSILON):
    """One Adam step on w for the batch; writes the next image and its distance.

    w, m, v : (N, M) INOUT, the variable and Adam's moments
    s0, x0, grad_x, mask : (N, M) IN; grad_x = d(c * f)/dx at the current x
    tau : (N,) IN, the L-inf penalty's threshold (unused for L2)
    x : (N, M) INOUT, the current image in, the next one out
    dist : (N,) OUT, the next image's penalty: sum (x - x0)^2 (L2) or
        sum max(|x - x0| - tau, 0) (L-inf, Carlini & Wagner's section VI-C)
    step : Adam's step count t >= 1 (bias correction, as TensorFlow's Adam
        that the authors' code uses: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)).
    """
    g = penalty_gradient(grad_x, x, x0, tau, norm)
    s = np.tanh(w)
    g = g * (boxmul * (1 - s * s)) * mask
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    lr_t = adam_step_size(lr, step, beta1, beta2)
    w -= (lr_t * m / (np.sqrt(v) + epsilon)).astype(w.dtype)
    x[...] = image_of(w, x0, s0, mask, boxmul, lo, hi)
    dist[...] = distance(x, x0, tau, norm)


def cw_stalled(total, previous, rule):
    """The abort-early rule, checked every max_iterations // 10 Adam steps: which images
    stop. total : (N,) float64, each image's loss c f + distance now; previous : (N,) its
    total at the last check (inf at the first). rule "image": an image stops when its
    total fell by less than 0.01% since the last check; "batch" (the authors' code): all
    stop when the batch's summed total did."""
    if rule == "batch":
        return np.full(len(total), total.sum() > previous.sum() * 0.9999)
    return total > previous * 0.9999


def cw_track(x, w, dist, success, step_best, best_dist, best_x, best_w):
    """Best-so-far bookkeeping of the L2 attack.

    x, w : (N, M) IN, the images just evaluated and their tanh-space variables
    dist : (N,) IN their distances; success : (N,) uint8 IN
    step_best : (N,) INOUT, the least successful distance of this binary-search step
    best_dist : (N,) INOUT, best_x and best_w : (N, M) INOUT, the least over the whole
        attack, its image and its w (where the next round may start)
    """
    ok = success.astype(bool)
    step_best[...] = np.where(ok & (dist < step_best), dist, step_best)
    better = ok & (dist < best_dist)
    best_dist[better] = dist[better]
    best_x[better] = x[better]
    best_w[better] = w[better]
