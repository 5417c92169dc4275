"""The Carlini-Wagner attacks' own claims (npdistill.attacks.cw): the same examples on
every backend, the step backpropagating only what it must, the abort rules and warm
starts, the authors' algorithm when asked for, logits only, and each norm's distortion.
The properties every attack promises are tests/attacks/test_attacks.py's table."""
import numpy as np
import pytest

import npdistill as nd
from npdistill import layers
from npdistill.attacks import cw_l0, cw_l2, cw_linf
from tests.attacks.test_attacks import CW_FAST, saturated
from tests.backends import BACKEND_PAIRS, on_each_backend


def _cw_case():
    """A small conv net and eight images whose targets take CW L2 a few hundred steps."""
    rng = np.random.default_rng(3)
    model = nd.Sequential([layers.Conv2D(1, 4, 3), layers.ReLU(), layers.Flatten(),
                           layers.Dense(4 * 6 * 6, 3)], seed=1).astype(np.float64)
    x = rng.random((8, 1, 8, 8))
    return model, x, (model.predict(x) + 1) % 3


@pytest.mark.parametrize("pair", BACKEND_PAIRS)
def test_backends_give_the_same_cw_examples(toy, pair):
    model, x, _, target = toy
    results = on_each_backend(pair, lambda: cw_l2(model, x[:12], target=target[:12],
                                                  binary_search_steps=2, c=1.0, **CW_FAST))
    for r in results[1:]:           # float rounding (tanh) differs; 200 Adam steps, the second
        np.testing.assert_array_equal(r.success, results[0].success)   # round warm-started from
        np.testing.assert_allclose(r.x_adv, results[0].x_adv, atol=5e-3)  # the first, amplify it
        np.testing.assert_allclose(r.l2, results[0].l2, rtol=1e-2)


def test_cw_step_backpropagates_only_the_images_whose_f_is_not_zero(toy, monkeypatch):
    from npdistill.attacks.cw.tanh_space import TanhSpace
    model, x, y, target = toy
    n = 12
    labels = np.where(np.arange(n) % 2 == 0, y[:n], target[:n])   # half met already: f = 0
    x0 = np.ascontiguousarray(x[:n]).reshape(n, -1)
    problem = TanhSpace.start(x0, None, np.ones_like(x0), np.zeros(n, x.dtype),
                              np.full(n, 2.0, x.dtype), labels, lo=0.0, hi=1.0)
    seen = []
    backward = type(model).backward
    monkeypatch.setattr(type(model), "backward",
                        lambda self, dz, **kw: seen.append(len(dz)) or backward(self, dz, **kw))
    loss, ok, grad_x = problem.step(model, x.shape[1:], True, 0.0)
    zero = loss == 0
    assert 0 < zero.sum() < n and seen == [n - zero.sum()]
    z = model.forward(x[:n])
    assert np.all(grad_x[zero] == 0)
    whole = np.empty_like(z)
    nd.kernels.cw_margin(np.ascontiguousarray(z), labels, True, 0.0,
                         np.full(n, 2.0, z.dtype), np.empty(n, z.dtype), whole,
                         np.empty(n, np.uint8))
    expected = backward(model, whole, param_grads=False).reshape(n, -1)
    np.testing.assert_allclose(grad_x, expected, rtol=1e-4, atol=1e-6)   # float32 sums


def test_cw_abort_rules():
    from npdistill.kernels.cw import cw_stalled
    previous = np.array([10.0, 10.0, np.inf])
    total = np.array([9.0, 10.0, 5.0])                  # better, stalled, first check
    np.testing.assert_array_equal(cw_stalled(total, previous, "image"), [False, True, False])
    np.testing.assert_array_equal(cw_stalled(total, previous, "batch"), [False] * 3)
    np.testing.assert_array_equal(cw_stalled(total, total, "batch"), [True] * 3)   # all or none


def test_cw_batch_abort_runs_every_image_of_a_batch_as_long():
    """abort_early="batch" (the reference's rule): the images of a batch stop together,
    so each ran the batch's steps; "image" stops each apart."""
    model, x, target = _cw_case()
    options = dict(target=target, c=1.0, binary_search_steps=2, max_iterations=60,
                   warm_start=False, progress=False)
    together = cw_l2(model, x, abort_early="batch", batch_size=4, **options)
    for start in range(0, len(x), 4):
        assert len(set(together.iterations[start:start + 4])) == 1
    apart = cw_l2(model, x, abort_early="image", **options)
    assert len(set(apart.iterations)) > 1
    assert apart.iterations.sum() < together.iterations.sum()


def test_cw_round_with_a_window_does_not_count_the_warm_starts_first_steps():
    """A round warm-started from an example at a c far too small to keep it: the first
    steps are adversarial, then the iterate falls back towards x. Counting every success
    of the round (the reference's rule, right for a cold start) would call that c
    enough; counting the last check period only (``window``) does not. Both keep the
    early successes as examples."""
    from npdistill.attacks.cw.l2 import _NEVER, Best, Round, _l2_round
    from npdistill.attacks.cw.tanh_space import preimage
    model, x, target = _cw_case()
    found = cw_l2(model, x, target=target, c=10.0, kappa=0.5, binary_search_steps=1,
                  max_iterations=300, progress=False)          # a margin: x(w) shrinks by 1e-6
    assert found.success.all()
    n = len(x)
    x0, start = x.reshape(n, -1), preimage(found.x_adv.reshape(n, -1), 0.0, 1.0)
    hits = {}
    for window in (False, True):
        best = Best(np.full(n, _NEVER), x0.copy(), start.copy())
        settings = Round(max_iterations=200, lr=1e-2, abort_early=None, check_every=20,
                         window=window, lo=0.0, hi=1.0)
        step_best, w_end = _l2_round(model, x0, start, x.shape[1:], target, np.full(n, 1e-6),
                                     True, 0.0, settings, best, np.zeros(n, np.int64))
        hits[window] = step_best < _NEVER
        assert np.all(best.dist < _NEVER)                         # the start was an example
        np.testing.assert_array_equal(model.predict(best.x.reshape(x.shape)), target)
        assert not np.array_equal(w_end, start)
    assert hits[False].all() and not hits[True].any()


def test_cw_warm_start_breaks_as_many_images_as_cold_in_fewer_steps(toy):
    model, x, _, target = toy
    options = dict(target=target[:16], c=1e-2, binary_search_steps=6, max_iterations=200,
                   progress=False)
    cold = cw_l2(model, x[:16], warm_start=False, **options)
    warm = cw_l2(model, x[:16], **options)
    assert warm.success.sum() >= cold.success.sum() > 8
    assert warm.iterations.sum() < 0.8 * cold.iterations.sum()
    both = warm.success & cold.success
    assert warm.l2[both].mean() <= 1.05 * cold.l2[both].mean()


def test_cw_without_warm_start_and_with_the_batch_rule_is_the_authors_algorithm(toy):
    """bench/cw_reference.py, the authors' l2_attack.py line by line in PyTorch, on a twin
    with the same weights: the same examples, successes and step counts."""
    torch = pytest.importorskip("torch", reason="the reference runs on PyTorch")
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "bench" / "cw_reference.py"
    spec = importlib.util.spec_from_file_location("cw_reference", path)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    model, x, _, target = toy
    x, target = x[:10], target[:10]
    budget = dict(binary_search_steps=4, max_iterations=200)
    ours = cw_l2(model, x, target=target, c=1e-3, lr=1e-2, warm_start=False, abort_early="batch",
                 batch_size=5, progress=False, **budget)
    theirs, steps = reference.carlini_l2(torch, nd.interop.to_torch(model), x, target,
                                         batch_size=5, initial_const=1e-3, learning_rate=1e-2,
                                         **budget)
    np.testing.assert_array_equal(ours.success, model.predict(theirs) == target)
    np.testing.assert_array_equal(ours.iterations, steps)           # the batches stop apart
    assert len(set(steps)) == 2 and ours.success.all()
    # float32 over 500 Adam steps: the examples agree to 1e-4 or so, but where a rounding
    # moves a best-so-far update by a step (NPDISTILL_CONV=winograd4: one image) by 4e-3
    l2 = np.sqrt(((theirs - x).reshape(len(x), -1) ** 2).sum(axis=1))
    np.testing.assert_allclose(ours.l2, l2, rtol=2e-3)
    np.testing.assert_allclose(ours.x_adv, theirs, atol=1e-2)


def test_cw_still_breaks_the_saturated_net(toy):
    model, x, _, target = toy
    hot = saturated(model, 1e2)
    r = cw_l2(hot, x[:10], target=target[:10], binary_search_steps=3, c=1e-2, **CW_FAST)
    assert r.success.all()


def test_cw_best_other_logit_is_right_when_every_logit_is_negative(toy):
    model, x, _, target = toy
    shifted = model.copy()
    shifted.layers[-1].params["b"] -= 1000                  # same argmax, all logits << 0
    assert (shifted.forward(x) < 0).all()
    options = dict(binary_search_steps=2, c=1.0, **CW_FAST)
    r = cw_l2(shifted, x[:10], target=target[:10], **options)
    base = cw_l2(model, x[:10], target=target[:10], **options)
    np.testing.assert_array_equal(r.success, base.success)
    np.testing.assert_allclose(r.l2, base.l2, atol=1e-3)


def test_cw_l0_changes_fewer_pixels_and_cw_linf_moves_them_less_than_cw_l2(toy):
    model, x, _, target = toy
    l2 = cw_l2(model, x, target=target, binary_search_steps=5, c=1e-1, **CW_FAST)
    l0 = cw_l0(model, x, target=target, c=1e-1, **CW_FAST)
    linf = cw_linf(model, x, target=target, c=1e-2, lr=2e-2, **CW_FAST)
    both = l2.success & l0.success & linf.success
    assert both.mean() > 0.5
    assert l0.l0[both].mean() < 0.5 * l2.l0[both].mean()
    assert linf.linf[both].mean() < l2.linf[both].mean()


def test_cw_refuses_a_model_that_outputs_probabilities():
    dense = layers.Dense(4, 3)
    dense.params["W"][...] = 0
    dense.params["b"][...] = [0.2, 0.3, 0.5]                  # constant rows summing to 1
    model = nd.Sequential([layers.Flatten(), dense])
    x = np.full((2, 1, 2, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="logits"):
        cw_l2(model, x, target=np.array([0, 1]))
