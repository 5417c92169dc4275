"""Carlini-Wagner L0 (section VI-B) and L-inf (section VI-C): each solves a restricted
problem again and again -- L0 on the pixels still allowed to change, L-inf with a
threshold tau under which a change costs nothing -- warm-started from its last solution,
and tightens the restriction after every success, until a round fails. The last
solution is the example. What differs between the two is a small strategy class
(``L0``, ``Linf``: the restriction, how it tightens, the distortion reported); the
search itself (``Search``) is shared."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ... import kernels
from ..._checks import check_positive
from ...kernels.cw import cw_stalled, penalty_gradient
from ...placement import passes
from ...progress import Progress
from ...typing import Clip, Images, Labels, Model, ProgressArg
from ..result import AttackResult
from .common import prepare
from .tanh_space import TanhSpace, preimage


@dataclass(frozen=True)
class Search:
    """How each round searches, per image: Adam (``lr``) for at most ``max_iterations``
    steps at its c, stopping early where the loss stalls (``abort_early``); a round that
    ends without meeting the goal multiplies c by ``const_factor`` and starts again, until
    c reaches ``largest_const``. [lo, hi]: the clip box."""
    max_iterations: int
    lr: float
    abort_early: bool
    largest_const: float
    const_factor: float
    lo: float
    hi: float


class L0:
    """The L0 attack's restriction: the pixels (all channels) still allowed to change.
    After a success it freezes the pixels with the least |delta| * |gradient of the
    objective| (summed over channels): pixels in increasing order until one whose
    product exceeds 0.01, or 0.3 * sqrt(number of changed pixels) of them."""

    name, norm = "L0", kernels.CW_L2

    def __init__(self, x, search):
        self.channels, self.pixels = x.shape[1], int(np.prod(x.shape[2:]))
        self.valid = np.ones((len(x), self.pixels), x.dtype)   # 1: may still change

    def restriction(self, alive):
        """(mask, tau) of the images ``alive``."""
        return (np.tile(self.valid[alive], self.channels),
                np.zeros(len(alive), self.valid.dtype))

    def shrink(self, won, x0, x_sol, grad_sol):
        """Tighten the restriction of the images ``won``; those that go on."""
        channels, pixels, valid = self.channels, self.pixels, self.valid
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

    def distortion(self, delta):
        return (delta != 0).reshape(len(delta), self.channels, self.pixels).any(axis=1).sum(axis=1)


class Linf:
    """The L-inf attack's restriction: tau, from the width of the clip box; after a success
    min(tau, max |delta|) times ``decrease_factor``, until tau falls below 1/256 of the box."""

    name, norm = "Linf", kernels.CW_LINF

    def __init__(self, x, search, decrease_factor):
        self.width = search.hi - search.lo
        self.features = int(np.prod(x.shape[1:]))
        self.tau = np.full(len(x), self.width, x.dtype)
        self.decrease_factor = decrease_factor

    def restriction(self, alive):
        return np.ones((len(alive), self.features), self.tau.dtype), self.tau[alive]

    def shrink(self, won, x0, x_sol, grad_sol):
        reached = np.abs(x_sol - x0).max(axis=1)
        self.tau[won] = np.minimum(self.tau[won], reached) * self.decrease_factor
        return won[self.tau[won] > self.width / 256]

    def distortion(self, delta):
        return np.abs(delta).max(axis=1)


def cw_l0(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
          kappa: float = 0.01, c: float = 1e-3, max_iterations: int = 1000, lr: float = 1e-2,
          abort_early: bool = True, largest_const: float = 2e1, const_factor: float = 2.0,
          clip: Clip = (0.0, 1.0), batch_size: int = 100,
          progress: ProgressArg = None) -> AttackResult:
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
    return _restricted_attack("cw_l0", L0, model, x, y, target, kappa=kappa, c=c,
                              max_iterations=max_iterations, lr=lr, abort_early=abort_early,
                              largest_const=largest_const, const_factor=const_factor, clip=clip,
                              batch_size=batch_size, progress=progress)


def cw_linf(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
            kappa: float = 0.0, c: float = 1e-5, max_iterations: int = 1000, lr: float = 5e-3,
            abort_early: bool = True, largest_const: float = 2e1, const_factor: float = 2.0,
            decrease_factor: float = 0.9, clip: Clip = (0.0, 1.0), batch_size: int = 100,
            progress: ProgressArg = None) -> AttackResult:
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
    return _restricted_attack("cw_linf", functools.partial(Linf, decrease_factor=decrease_factor),
                              model, x, y, target, kappa=kappa, c=c,
                              max_iterations=max_iterations, lr=lr, abort_early=abort_early,
                              largest_const=largest_const, const_factor=const_factor, clip=clip,
                              batch_size=batch_size, progress=progress)


def _restricted_attack(name, strategy, model, x, y, target, *, kappa, c, max_iterations, lr,
                       abort_early, largest_const, const_factor, clip, batch_size, progress):
    """Check, then attack ``x`` batch by batch, each batch with its own ``strategy(x,
    search)`` (L0 or Linf)."""
    model = passes(model)                      # the logits check below runs there too
    labels, targeted, lo, hi = prepare(model, x, y, target, clip, kappa, batch_size, name)
    for value, what in ((c, "c"), (lr, "lr"), (largest_const, "largest_const")):
        check_positive(value, what)
    check_positive(max_iterations, "max_iterations", integer=True)
    if not const_factor > 1:
        raise ValueError(f"const_factor must be > 1, got {const_factor!r}")
    search = Search(max_iterations=max_iterations, lr=lr, abort_early=abort_early,
                    largest_const=largest_const, const_factor=const_factor, lo=lo, hi=hi)
    shown = Progress(progress, name, len(x), "images")
    x_adv = x.copy()
    success = np.zeros(len(x), bool)
    iterations = np.zeros(len(x), np.int64)
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        found, examples = _shrinking_rounds(
            model, x[rows], labels[rows], targeted, iterations[rows], kappa=kappa, c=c,
            search=search, strategy=strategy(x[rows], search),
            report=lambda finished, start=start, **figures: shown.update(start + finished,
                                                                         **figures))
        success[rows] = found
        x_adv[rows][found] = examples[found]
    return AttackResult.from_examples(x, x_adv, success, iterations,
                                      target=labels if targeted else None)


def _shrinking_rounds(model, x, labels, targeted, iterations, *, kappa, c, search, strategy,
                      report):
    """The outer loop of the L0 and L-inf attacks: every image still shrinking solves its
    restricted problem (``strategy.restriction(alive) -> (mask, tau)``), warm-started from
    its last solution; ``strategy.shrink(won, x0, x_sol, grad_sol)`` tightens the
    restriction of those that succeeded and returns the ones that go on. The last
    solution is the example."""
    n, shape = len(x), x.shape[1:]
    x0 = np.ascontiguousarray(x).reshape(n, -1)
    w_start = preimage(x0, search.lo, search.hi)
    const = np.full(n, c)
    best, found = x0.copy(), np.zeros(n, bool)
    alive = np.arange(n)
    rounds = 0
    while alive.size:
        rounds += 1
        mask, tau = strategy.restriction(alive)
        spent = np.zeros(len(alive), np.int64)
        worked, x_sol, w_sol, grad_sol, const[alive] = _solve(
            model, shape, x0[alive], w_start[alive], mask, tau, const[alive], labels[alive],
            targeted, kappa, norm=strategy.norm, search=search, iterations=spent)
        iterations[alive] += spent
        won = alive[worked]
        found[won], best[won], w_start[won] = True, x_sol[worked], w_sol[worked]
        alive = strategy.shrink(won, x0[won], x_sol[worked], grad_sol[worked])
        mean = strategy.distortion(best[found] - x0[found]).mean() if found.any() \
            else float("nan")
        report(n - alive.size, rounds=rounds, success=float(found.mean()),
               **{f"mean_{strategy.name}": float(mean)})
    return found, best.reshape(x.shape)


def _solve(model, shape, x0, w_start, mask, tau, const, labels, targeted, kappa, *, norm,
           search, iterations):
    """The inner search of the L0 and L-inf attacks, per image: Adam from ``w_start``
    at its c until the goal is met (L-inf: with the penalty below 1e-4 c, as the
    reference asks); a round that ends without it multiplies c by ``search.const_factor``
    and starts again from ``w_start``, until c reaches ``search.largest_const``.

    Returns worked (n,), and for those images the solution x, its w, the gradient
    of the whole objective at it (what L0 ranks pixels by) and the c that worked.
    """
    n = len(x0)
    worked = np.zeros(n, bool)
    x_sol, w_sol, grad_sol = x0.copy(), w_start.copy(), np.zeros_like(x0)
    const = const.copy()
    check_every = max(search.max_iterations // 10, 1)
    pending = np.arange(n)
    while pending.size:
        problem = TanhSpace.start(x0[pending], w_start[pending], mask[pending], tau[pending],
                                  const[pending].astype(x0.dtype), labels[pending],
                                  lo=search.lo, hi=search.hi)
        problem.dist[...] = problem.distances(norm)
        previous = np.full(len(pending), np.inf)
        for it in range(search.max_iterations):
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
                grad_sol[done] = penalty_gradient(grad_x[stop], problem.x[stop],
                                                  problem.x0[stop], problem.tau[stop], norm)
            keep = ~stop
            if search.abort_early and it % check_every == 0:
                total = loss.astype(np.float64) + problem.dist
                keep &= ~cw_stalled(total, previous, "image")   # stalled: give up at this c
                previous = total
            if not keep.all():
                problem = problem.take(keep)
                grad_x, previous = grad_x[keep], previous[keep]
                if not len(problem.idx):
                    break
            problem.update(grad_x, norm, it + 1, search.lr)
        failed = pending[~worked[pending]]
        const[failed] *= search.const_factor
        pending = failed[const[failed] < search.largest_const]
    return worked, x_sol, w_sol, grad_sol, const
