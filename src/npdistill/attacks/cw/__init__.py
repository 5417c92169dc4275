"""Carlini-Wagner attacks L2, L0 and L-inf (Carlini & Wagner, 2017, "Towards
Evaluating the Robustness of Neural Networks"), batched.

All three minimise distance + c * f(x) over a tanh-space variable w with Adam,
where f is the paper's f_6 on the logits Z (eq. 6, section V-A):

    targeted    f = max(max_{j != t} Z_j - Z_t + kappa, 0)
    untargeted  f = max(Z_y - max_{j != y} Z_j + kappa, 0)

They attack the logits, which is why defensive distillation does not stop
them: dividing the logits by T changes nothing here, while the softmax of a
distilled net at T = 1 is saturated. A model whose outputs are probabilities
is refused.

The change of variables is x(w) = x0 + boxmul * (tanh(w) - tanh(w0)) with
tanh(w0) = (x0 - boxplus) / boxmul * 0.999999 (the authors' shrink, which
keeps arctanh finite at the box edges). It is the paper's 0.5 (tanh(w) + 1)
shifted by the tiny shrink error, so that x(w0) is exactly x0: a pixel the
attack leaves alone reports no change, and the L0 count is honest.

The inner step (f and its gradient, the chain rule through tanh, Adam, the best-so-far
bookkeeping) runs in the kernels of ``npdistill.kernels`` (the compiled ext/cw.pyx, or
its NumPy reference, kernels/reference/cw.py, which holds every formula once). The
package: ``l2`` (the L2 attack and its binary search over c), ``restricted`` (L0 and
L-inf: a restricted L2-like problem solved again and again), ``tanh_space`` (the state
of a set of images optimised together), ``common`` (checks). Defaults follow the
authors' reference code (github.com/carlini/nn_robust_attacks) but for two changes to
the L2 search, each of which can be turned off (``warm_start=False,
abort_early="batch"`` is the authors' algorithm; tests hold it to a line-by-line PyTorch
transcription, bench/cw_reference.py):

- abort early per image: at every check an image whose own loss stalled stops,
  where the reference stops the batch when its summed loss does, so easy images
  no longer wait for hard ones;
- warm starts: each round of the search over c starts from the best example
  found so far (Adam's moments reset), not from x, so that a round spends its
  steps near the boundary instead of walking the dark pixels' tanh-space
  variables back out of saturation (about 500 steps at lr 1e-2). A warm start
  is adversarial from its first step whatever c is, so such a round counts as a
  success at its c only if it succeeded in its last check period; and since it
  begins near its answer, it checks for a stall every 30 steps (at most) where
  the reference checks every max_iterations // 10.

bench/cw_speed.py measures both against the reference (bench/RESULTS.md). And
an image whose f is 0 (the goal met with margin kappa) has d(c f)/dx = 0
exactly: only the others go backward through the network
(``Sequential.backward(rows=)``), which after the first successes is often less
than half of the batch.
"""
from .l2 import WARM_CHECK_EVERY, cw_l2
from .restricted import cw_l0, cw_linf

__all__ = ["WARM_CHECK_EVERY", "cw_l0", "cw_l2", "cw_linf"]
