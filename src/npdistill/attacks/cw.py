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

The inner step (f and its gradient, the chain rule through tanh, Adam, the
best-so-far bookkeeping) runs in the kernels of ``npdistill.kernels`` (the
compiled ext/cw.pyx, or its NumPy reference). Defaults follow the authors'
reference code (github.com/carlini/nn_robust_attacks) but for two changes to
the L2 search, each of which can be turned off (``warm_start=False,
abort_early="batch"`` is the authors' algorithm; tests hold it to a line-by-line
PyTorch transcription, bench/cw_reference.py):

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
import functools

import numpy as np

from .. import kernels
from .._checks import check_choice, check_clip, check_labels, check_number, check_positive
from ..kernels.cw import cw_stalled
from ..placement import device_loop, passes
from ..progress import Progress
from .result import AttackResult
from .targets import goal
from .tanh_space import TanhSpace, preimage

_NEVER = np.inf
WARM_CHECK_EVERY = 30          # cw_l2's default check period with warm starts (at most)


def _check_logits_model(model, x):
    z = model.forward(x[:8])
    if z.ndim != 2:
        raise ValueError(f"the model must output (N, K) logits, got shape {z.shape}")
    if np.all(z >= 0) and np.allclose(z.sum(axis=1), 1, atol=1e-4):
        raise ValueError("Carlini-Wagner attacks work on logits, but this model's outputs are "
                         "non-negative rows summing to 1 (probabilities): remove the final "
                         "softmax and pass the model that returns logits")


def _prepare(model, x, y, target, clip, kappa, batch_size, name):
    """Check the inputs; return (labels, targeted, lo, hi)."""
    labels, targeted = goal(y, target, name)
    lo, hi = check_clip(clip)
    model.check_images(x, box=(lo, hi))
    labels = check_labels(labels, len(x), model.num_classes, "target" if targeted else "y")
    check_number(kappa, "kappa (confidence)", low=0)
    check_positive(batch_size, "batch_size", integer=True)
    _check_logits_model(model, x)
    return labels, targeted, lo, hi


def cw_l2(model, x, y=None, *, target=None, kappa=0.0, c=1e-3, binary_search_steps=9,
          max_iterations=10000, lr=1e-2, abort_early=True, warm_start=True, check_every=None,
          clip=(0.0, 1.0), batch_size=100, progress=None):
    """Carlini-Wagner L2 attack.

    Parameters
    ----------
    model : Sequential returning logits
    x : (N, C, H, W) float in the clip box, the model's dtype
    y : (N,) int true classes (untargeted), or
    target : (N,) int target classes (targeted); give exactly one
    kappa : confidence: the margin by which the goal must be reached
    c : the first weight of f; the binary search multiplies it by 10 while no
        example is found, then bisects (per image)
    binary_search_steps : rounds of the search over c (the reference's 9)
    max_iterations : Adam steps per round (the reference's 10,000)
    lr : Adam's learning rate
    abort_early : at every check (see check_every), stop what no longer improves:
        True or "image", each image whose loss + distance fell by less than 0.01%
        since the last check; "batch", the whole batch when its summed loss did
        (the reference's rule: an image that stalls runs on while others improve);
        False, never
    warm_start : True: each round starts from the best example found so far (else
        from where the image's last round ended), with Adam's moments reset, and a
        round counts as a success at its c only if it succeeded in its last check
        period (its first steps start adversarial). False: every round starts from
        x, as the reference does. ``warm_start=False, abort_early="batch"`` with the
        reference's batch size is the reference's algorithm
    check_every : Adam steps between two checks of abort_early (and, with
        warm_start, the length of the check period that decides a round). None:
        max_iterations // 10, the reference's, from a cold start; min(that, 30) with
        warm_start, whose rounds begin near their answer (bench/RESULTS.md: on the
        bench's MNIST net at lr 1e-2, checks every 50, 40, 30 and 25 steps kept the
        reference's success with mean L2 1.000, 1.005, 1.015 and 1.013 times its, in
        32%, 29%, 24% and 22% of its Adam steps)
    batch_size : images optimised together
    progress : True, False, None (shown once the attack has run 2 s) or a callable
        taking a ``npdistill.progress.ProgressEvent``, one per binary-search step of
        each batch; its figures: ``successes`` (images broken so far, earlier batches
        included), the batch's ``success`` rate and ``mean_L2``

    Returns
    -------
    AttackResult: x_adv is the successful example of least L2 (x where none was
    found); ``iterations`` counts Adam steps per image over all rounds.
    """
    model = passes(model)                      # the logits check below runs there too
    labels, targeted, lo, hi = _prepare(model, x, y, target, clip, kappa, batch_size, "cw_l2")
    check_positive(c, "c")
    check_positive(binary_search_steps, "binary_search_steps", integer=True)
    check_positive(max_iterations, "max_iterations", integer=True)
    check_positive(lr, "lr")
    abort_early = _abort_rule(abort_early)
    if not isinstance(warm_start, (bool, np.bool_)):
        raise TypeError(f"warm_start must be True or False, got {warm_start!r}")
    if check_every is None:
        check_every = max(max_iterations // 10, 1)
        check_every = min(check_every, WARM_CHECK_EVERY) if warm_start else check_every
    check_positive(check_every, "check_every", integer=True)
    batches = -(-len(x) // batch_size)
    shown = Progress(progress, "cw_l2", batches * binary_search_steps, "binary steps")
    x_adv = x.copy()
    success = np.zeros(len(x), bool)
    iterations = np.zeros(len(x), np.int64)
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        done, before = start // batch_size * binary_search_steps, int(success.sum())
        found, examples, steps = _l2_batch(
            model, x[rows], labels[rows], targeted, kappa=kappa, c=c,
            binary_search_steps=binary_search_steps, max_iterations=max_iterations, lr=lr,
            abort_early=abort_early, warm_start=bool(warm_start), check_every=int(check_every),
            lo=lo, hi=hi,
            report=lambda step, found, **figures: shown.update(
                done + step, successes=before + found, **figures))
        success[rows], iterations[rows] = found, steps
        x_adv[rows][found] = examples[found]
    return AttackResult.from_examples(x, x_adv, success, iterations,
                                      target=labels if targeted else None)


def _abort_rule(abort_early):
    """abort_early as the rule kernels.cw_stalled takes ("image", "batch"), or None."""
    if isinstance(abort_early, (bool, np.bool_)):
        return "image" if abort_early else None
    return check_choice(abort_early, "abort_early", (True, False, "image", "batch"))


def _l2_batch(model, x, labels, targeted, *, kappa, c, binary_search_steps, max_iterations, lr,
              abort_early, warm_start, check_every, lo, hi, report):
    n, shape = len(x), x.shape[1:]
    dtype = x.dtype
    x0 = np.ascontiguousarray(x).reshape(n, -1)
    lower, upper = np.zeros(n), np.full(n, 1e10)
    const = np.full(n, c)
    best_dist = np.full(n, _NEVER, dtype)
    best_x, w_start = x0.copy(), preimage(x0, lo, hi)
    best_w = w_start.copy()
    iterations = np.zeros(n, np.int64)
    l2_round = device_loop("cw_l2", model) or functools.partial(_l2_round, model)
    for outer in range(binary_search_steps):
        if binary_search_steps >= 10 and outer == binary_search_steps - 1:
            const = np.where(upper < 1e9, upper, const)     # the reference's last "repeat" step
        step_best, w_end = l2_round(
            x0, w_start, shape, labels, const, targeted, kappa, max_iterations=max_iterations,
            lr=lr, abort_early=abort_early, check_every=check_every, window=warm_start, lo=lo,
            hi=hi, best_dist=best_dist, best_x=best_x, best_w=best_w, iterations=iterations)
        hit = step_best < _NEVER
        upper = np.where(hit, np.minimum(upper, const), upper)
        lower = np.where(hit, lower, np.maximum(lower, const))
        const = np.where(upper < 1e9, (lower + upper) / 2, np.where(hit, const, const * 10))
        found = best_dist < _NEVER
        if warm_start:
            w_start = np.where(found[:, None], best_w, w_end)
        report(outer + 1, int(found.sum()), success=float(found.mean()),
               mean_L2=float(np.sqrt(best_dist[found]).mean()) if found.any() else float("nan"))
    found = best_dist < _NEVER
    return found, best_x.reshape(x.shape), iterations


def _l2_round(model, x0, w_start, shape, labels, const, targeted, kappa, *, max_iterations, lr,
              abort_early, check_every, window, lo, hi, best_dist, best_x, best_w, iterations):
    """One round of the binary search at ``const``: Adam from ``w_start`` (fresh moments)
    for every image until max_iterations or, with ``abort_early``, until the rule of
    ``kernels.cw_stalled`` stops it at a check (every ``check_every`` steps). best_dist,
    best_x, best_w and iterations are updated in place. Returns (step_best, w_end): the least distance of a success in the round
    (with ``window``: in its last check period only, so that a warm start's first steps,
    adversarial already, say nothing of this c), and where each image's w ended."""
    n, dtype = len(x0), x0.dtype
    step_best, w_end = np.full(n, _NEVER, dtype), w_start.copy()
    problem = TanhSpace.start(x0, w_start, np.ones_like(x0), np.zeros(n, dtype),
                              const.astype(dtype), labels, lo=lo, hi=hi,
                              step_best=step_best.copy(), best_dist=best_dist.copy(),
                              best_x=best_x.copy(), best_w=best_w.copy())
    problem.dist[...] = problem.distances(kernels.CW_L2)
    previous = np.full(n, np.inf)
    for it in range(max_iterations):
        loss, ok, grad_x = problem.step(model, shape, targeted, kappa)
        kernels.cw_track(problem.x, problem.w, problem.dist, ok, problem.step_best,
                         problem.best_dist, problem.best_x, problem.best_w)
        iterations[problem.idx] += 1
        if it % check_every == 0:
            if abort_early:
                total = loss.astype(np.float64) + problem.dist
                stalled = cw_stalled(total, previous, abort_early)
                previous = total
                if stalled.any():
                    problem = _store(problem, ~stalled, step_best, best_dist, best_x, best_w,
                                     w_end)
                    previous, grad_x = previous[~stalled], grad_x[~stalled]
                    if not len(problem.idx):
                        break
            if window:
                problem.step_best[...] = _NEVER           # the next check period starts
        problem.update(grad_x, kernels.CW_L2, it + 1, lr)
    _store(problem, np.zeros(len(problem.idx), bool), step_best, best_dist, best_x, best_w, w_end)
    return step_best, w_end


def _store(problem, keep, step_best, best_dist, best_x, best_w, w_end):
    """Write the bookkeeping of the images that stop back; the problem without them."""
    gone = ~keep
    rows = problem.idx[gone]
    step_best[rows] = problem.step_best[gone]
    best_dist[rows] = problem.best_dist[gone]
    best_x[rows] = problem.best_x[gone]
    best_w[rows] = problem.best_w[gone]
    w_end[rows] = problem.w[gone]
    return problem.take(keep)
def _solve(model, shape, x0, w_start, mask, tau, const, labels, targeted, kappa, *, norm,
           max_iterations, lr, abort_early, largest_const, const_factor, lo, hi, iterations):
    """The inner search of the L0 and L-inf attacks, per image: Adam from ``w_start``
    at its c until the goal is met (L-inf: with the penalty below 1e-4 c, as the
    reference asks); a round that ends without it multiplies c by ``const_factor``
    and starts again from ``w_start``, until c reaches ``largest_const``.

    Returns worked (n,), and for those images the solution x, its w, the gradient
    of the whole objective at it (what L0 ranks pixels by) and the c that worked.
    """
    n = len(x0)
    worked = np.zeros(n, bool)
    x_sol, w_sol, grad_sol = x0.copy(), w_start.copy(), np.zeros_like(x0)
    const = const.copy()
    check_every = max(max_iterations // 10, 1)
    pending = np.arange(n)
    while pending.size:
        problem = TanhSpace.start(x0[pending], w_start[pending], mask[pending], tau[pending],
                                  const[pending].astype(x0.dtype), labels[pending], lo=lo, hi=hi)
        problem.dist[...] = problem.distances(norm)
        previous = np.full(len(pending), np.inf)
        for it in range(max_iterations):
            loss, ok, grad_x = problem.step(model, shape, targeted, kappa)
            rows = pending[problem.idx]
            iterations[rows] += 1
            stop = ok.view(bool)
            if norm == kernels.CW_LINF:
                stop = stop & (problem.dist < 1e-4 * problem.const)
            if stop.any():
                done = rows[stop]
                worked[done] = True
                x_sol[done], w_sol[done] = problem.x[stop], problem.w[stop]
                grad_sol[done] = kernels.cw.penalty_gradient(
                    grad_x[stop], problem.x[stop], problem.x0[stop], problem.tau[stop], norm)
            keep = ~stop
            if abort_early and it % check_every == 0:
                total = loss.astype(np.float64) + problem.dist
                keep &= ~cw_stalled(total, previous, "image")   # stalled: give up at this c
                previous = total
            if not keep.all():
                problem = problem.take(keep)
                grad_x, previous = grad_x[keep], previous[keep]
                if not len(problem.idx):
                    break
            problem.update(grad_x, norm, it + 1, lr)
        failed = pending[~worked[pending]]
        const[failed] *= const_factor
        pending = failed[const[failed] < largest_const]
    return worked, x_sol, w_sol, grad_sol, const


def _restricted_attack(name, model, x, y, target, *, kappa, c, max_iterations, lr, abort_early,
                       largest_const, const_factor, clip, batch_size, progress, batch_attack):
    model = passes(model)                      # the logits check below runs there too
    labels, targeted, lo, hi = _prepare(model, x, y, target, clip, kappa, batch_size, name)
    for value, what in ((c, "c"), (lr, "lr"), (largest_const, "largest_const")):
        check_positive(value, what)
    check_positive(max_iterations, "max_iterations", integer=True)
    if not const_factor > 1:
        raise ValueError(f"const_factor must be > 1, got {const_factor!r}")
    shown = Progress(progress, name, len(x), "images")
    x_adv = x.copy()
    success = np.zeros(len(x), bool)
    iterations = np.zeros(len(x), np.int64)
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        found, examples = batch_attack(
            model, x[rows], labels[rows], targeted, iterations[rows], kappa=kappa, c=c,
            options=dict(max_iterations=max_iterations, lr=lr, abort_early=abort_early,
                         largest_const=largest_const, const_factor=const_factor, lo=lo, hi=hi),
            report=lambda finished, start=start, **figures: shown.update(start + finished,
                                                                         **figures))
        success[rows] = found
        x_adv[rows][found] = examples[found]
    return AttackResult.from_examples(x, x_adv, success, iterations,
                                      target=labels if targeted else None)


def cw_l0(model, x, y=None, *, target=None, kappa=0.01, c=1e-3, max_iterations=1000, lr=1e-2,
          abort_early=True, largest_const=2e1, const_factor=2.0, clip=(0.0, 1.0), batch_size=100,
          progress=None):
    """Carlini-Wagner L0 attack (section VI-B).

    Repeatedly solves the L2 problem restricted to the pixels still allowed to
    change, warm-started from the last solution; after each success it freezes
    the pixels with the least |delta| * |gradient of the objective| (summed over
    channels): pixels in increasing order until one whose product exceeds 0.01,
    or 0.3 * sqrt(number of changed pixels) of them. It ends when the restricted
    problem has no solution for c up to ``largest_const``; the last solution is
    the example. kappa 0.01 is the reference's fixed margin.

    Parameters as ``cw_l2``; ``c`` grows by ``const_factor`` while a round fails.
    ``iterations`` counts Adam steps per image over all rounds.
    """
    return _restricted_attack("cw_l0", model, x, y, target, kappa=kappa, c=c,
                              max_iterations=max_iterations, lr=lr, abort_early=abort_early,
                              largest_const=largest_const, const_factor=const_factor, clip=clip,
                              batch_size=batch_size, progress=progress, batch_attack=_l0_batch)


def _l0_batch(model, x, labels, targeted, iterations, *, kappa, c, options, report):
    channels, pixels = x.shape[1], int(np.prod(x.shape[2:]))
    valid = np.ones((len(x), pixels), x.dtype)             # 1: the pixel may still change

    def restriction(alive):
        return np.tile(valid[alive], channels), np.zeros(len(alive), x.dtype)

    def shrink(won, x0, x_sol, grad_sol):
        for row, clean, sol, grad in zip(won, x0, x_sol, grad_sol):
            delta = np.abs(sol - clean).reshape(channels, pixels)
            changed = int(np.count_nonzero((delta >= 1e-4).any(axis=0)))
            total_change = (delta * np.abs(grad).reshape(channels, pixels)).sum(axis=0)
            frozen = 0
            for p in np.argsort(total_change, kind="stable"):
                if valid[row, p]:
                    valid[row, p] = 0
                    frozen += 1
                    if total_change[p] > 0.01 or frozen >= 0.3 * changed ** 0.5:
                        break
        return won[valid[won].any(axis=1)]

    def l0(delta):
        return (delta != 0).reshape(len(delta), channels, pixels).any(axis=1).sum(axis=1)

    return _shrinking_rounds(model, x, labels, targeted, iterations, kappa=kappa, c=c,
                             norm=kernels.CW_L2, options=options, report=report,
                             restriction=restriction, shrink=shrink, distortion=("L0", l0))


def _shrinking_rounds(model, x, labels, targeted, iterations, *, kappa, c, norm, options, report,
                      restriction, shrink, distortion):
    """The outer loop of the L0 and L-inf attacks: every image still shrinking solves its
    restricted problem (``restriction(alive) -> (mask, tau)``), warm-started from its last
    solution; ``shrink(won, x0, x_sol, grad_sol)`` tightens the restriction of those that
    succeeded and returns the ones that go on. The last solution is the example."""
    n, shape = len(x), x.shape[1:]
    x0 = np.ascontiguousarray(x).reshape(n, -1)
    w_start = preimage(x0, options["lo"], options["hi"])
    const = np.full(n, c)
    best, found = x0.copy(), np.zeros(n, bool)
    alive = np.arange(n)
    name, measure = distortion
    rounds = 0
    while alive.size:
        rounds += 1
        mask, tau = restriction(alive)
        spent = np.zeros(len(alive), np.int64)
        worked, x_sol, w_sol, grad_sol, const[alive] = _solve(
            model, shape, x0[alive], w_start[alive], mask, tau, const[alive], labels[alive],
            targeted, kappa, norm=norm, iterations=spent, **options)
        iterations[alive] += spent
        won = alive[worked]
        found[won], best[won], w_start[won] = True, x_sol[worked], w_sol[worked]
        alive = shrink(won, x0[won], x_sol[worked], grad_sol[worked])
        mean = measure(best[found] - x0[found]).mean() if found.any() else float("nan")
        report(n - alive.size, rounds=rounds, success=float(found.mean()),
               **{f"mean_{name}": float(mean)})
    return found, best.reshape(x.shape)


def cw_linf(model, x, y=None, *, target=None, kappa=0.0, c=1e-5, max_iterations=1000, lr=5e-3,
            abort_early=True, largest_const=2e1, const_factor=2.0, decrease_factor=0.9,
            clip=(0.0, 1.0), batch_size=100, progress=None):
    """Carlini-Wagner L-inf attack (section VI-C).

    Minimises c f(x) + sum_i max(|delta_i| - tau, 0): tau starts at the width of
    the clip box; after each success tau becomes min(tau, max |delta|) times
    ``decrease_factor``, and the search restarts from that solution, until a
    round fails (for c up to ``largest_const``) or tau falls below 1/256 of the
    box. The last solution is the example.

    Parameters as ``cw_l2``; the defaults are the reference code's.
    """
    if not 0 < decrease_factor < 1:
        raise ValueError(f"decrease_factor must lie in (0, 1), got {decrease_factor!r}")

    def batch(model, x, labels, targeted, iterations, *, kappa, c, options, report):
        return _linf_batch(model, x, labels, targeted, iterations, kappa=kappa, c=c,
                           options=options, report=report, decrease_factor=decrease_factor)

    return _restricted_attack("cw_linf", model, x, y, target, kappa=kappa, c=c,
                              max_iterations=max_iterations, lr=lr, abort_early=abort_early,
                              largest_const=largest_const, const_factor=const_factor, clip=clip,
                              batch_size=batch_size, progress=progress, batch_attack=batch)


def _linf_batch(model, x, labels, targeted, iterations, *, kappa, c, options, report,
                decrease_factor):
    width = options["hi"] - options["lo"]
    tau = np.full(len(x), width, x.dtype)

    def restriction(alive):
        return np.ones((len(alive), int(np.prod(x.shape[1:]))), x.dtype), tau[alive]

    def shrink(won, x0, x_sol, grad_sol):
        reached = np.abs(x_sol - x0).max(axis=1)
        tau[won] = np.minimum(tau[won], reached) * decrease_factor
        return won[tau[won] > width / 256]

    return _shrinking_rounds(model, x, labels, targeted, iterations, kappa=kappa, c=c,
                             norm=kernels.CW_LINF, options=options, report=report,
                             restriction=restriction, shrink=shrink,
                             distortion=("Linf", lambda delta: np.abs(delta).max(axis=1)))
