"""Carlini-Wagner L2 (section VI-A): a binary search over c per image, each round Adam in
tanh space from a warm start (see the package's docstring)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ... import kernels
from ..._checks import check_choice, check_positive
from ...kernels.cw import cw_stalled
from ...placement import device_loop, passes
from ...progress import Progress
from ...typing import Clip, Images, Labels, Model, ProgressArg
from ..result import AttackResult
from .common import prepare
from .tanh_space import TanhSpace, preimage

_NEVER = np.inf
WARM_CHECK_EVERY = 30          # cw_l2's default check period with warm starts (at most)


@dataclass(frozen=True)
class Round:
    """How a round of the binary search runs: at most ``max_iterations`` Adam steps at
    ``lr``; ``abort_early`` the rule of kernels.cw_stalled ("image", "batch") or None,
    checked every ``check_every`` steps; ``window``: a success counts for the round's c
    only in its last check period (warm starts); [lo, hi] the clip box."""
    max_iterations: int
    lr: float
    abort_early: str
    check_every: int
    window: bool
    lo: float
    hi: float


@dataclass
class Best:
    """Each image's best example so far (its squared L2 ``dist``, _NEVER where none, the
    image ``x`` and its ``w``), (n,) and (n, M): a round updates them in place."""
    dist: np.ndarray
    x: np.ndarray
    w: np.ndarray


def cw_l2(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
          kappa: float = 0.0, c: float = 1e-3, binary_search_steps: int = 9,
          max_iterations: int = 10000, lr: float = 1e-2, abort_early: bool = True,
          warm_start: bool = True, check_every: int | None = None, clip: Clip = (0.0, 1.0),
          batch_size: int = 100, progress: ProgressArg = None) -> AttackResult:
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
    labels, targeted, lo, hi = prepare(model, x, y, target, clip, kappa, batch_size, "cw_l2")
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
    w_start = preimage(x0, lo, hi)
    best = Best(np.full(n, _NEVER, dtype), x0.copy(), w_start.copy())
    settings = Round(max_iterations=max_iterations, lr=lr, abort_early=abort_early,
                     check_every=check_every, window=warm_start, lo=lo, hi=hi)
    iterations = np.zeros(n, np.int64)
    l2_round = device_loop("cw_l2", model) or functools.partial(_l2_round, model)
    for outer in range(binary_search_steps):
        if binary_search_steps >= 10 and outer == binary_search_steps - 1:
            const = np.where(upper < 1e9, upper, const)     # the reference's last "repeat" step
        step_best, w_end = l2_round(x0, w_start, shape, labels, const, targeted, kappa,
                                    settings, best, iterations)
        hit = step_best < _NEVER
        upper = np.where(hit, np.minimum(upper, const), upper)
        lower = np.where(hit, lower, np.maximum(lower, const))
        const = np.where(upper < 1e9, (lower + upper) / 2, np.where(hit, const, const * 10))
        found = best.dist < _NEVER
        if warm_start:
            w_start = np.where(found[:, None], best.w, w_end)
        report(outer + 1, int(found.sum()), success=float(found.mean()),
               mean_L2=float(np.sqrt(best.dist[found]).mean()) if found.any() else float("nan"))
    found = best.dist < _NEVER
    return found, best.x.reshape(x.shape), iterations


def _l2_round(model, x0, w_start, shape, labels, const, targeted, kappa, settings, best,
              iterations):
    """One round of the binary search at ``const``: Adam from ``w_start`` (fresh moments)
    for every image until ``settings.max_iterations`` or, with ``settings.abort_early``,
    until the rule of ``kernels.cw_stalled`` stops it at a check (every
    ``settings.check_every`` steps). ``best`` (a Best) and ``iterations`` are updated in
    place. Returns (step_best, w_end): the least distance of a success in the round (with
    ``settings.window``: in its last check period only, so that a warm start's first
    steps, adversarial already, say nothing of this c), and where each image's w ended."""
    abort_early, check_every = settings.abort_early, settings.check_every
    n, dtype = len(x0), x0.dtype
    step_best, w_end = np.full(n, _NEVER, dtype), w_start.copy()
    problem = TanhSpace.start(x0, w_start, np.ones_like(x0), np.zeros(n, dtype),
                              const.astype(dtype), labels, lo=settings.lo, hi=settings.hi,
                              step_best=step_best.copy(), best_dist=best.dist.copy(),
                              best_x=best.x.copy(), best_w=best.w.copy())
    problem.dist[...] = problem.distances(kernels.CW_L2)
    previous = np.full(n, np.inf)
    for it in range(settings.max_iterations):
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
                    problem = _store(problem, ~stalled, step_best, best, w_end)
                    previous, grad_x = previous[~stalled], grad_x[~stalled]
                    if not len(problem.idx):
                        break
            if settings.window:
                problem.step_best[...] = _NEVER           # the next check period starts
        problem.update(grad_x, kernels.CW_L2, it + 1, settings.lr)
    _store(problem, np.zeros(len(problem.idx), bool), step_best, best, w_end)
    return step_best, w_end


def _store(problem, keep, step_best, best, w_end):
    """Write the bookkeeping of the images that stop back; the problem without them."""
    gone = ~keep
    rows = problem.idx[gone]
    step_best[rows] = problem.step_best[gone]
    best.dist[rows] = problem.best_dist[gone]
    best.x[rows] = problem.best_x[gone]
    best.w[rows] = problem.best_w[gone]
    w_end[rows] = problem.w[gone]
    return problem.take(keep)
