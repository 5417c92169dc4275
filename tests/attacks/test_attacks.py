"""FGSM, TGSM, BIM, PGD and the Carlini-Wagner attacks: one table of the properties
every attack promises (foolbox style), then each method's own claims."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npdistill as nd
from npdistill import layers
from npdistill.attacks import bim, cw_l0, cw_l2, cw_linf, fgsm, pgd, tgsm
from tests.backends import BACKEND_PAIRS, on_each_backend
from tests.gradcheck import gradcheck

CW_FAST = dict(max_iterations=100, progress=False)

# (attack, parameters, goal, budget): goal is "untargeted" (pass y) or "targeted"
# (pass target=); budget is (norm, bound) that every example must respect.
CASES = [
    (fgsm, dict(eps=0.3), "untargeted", ("linf", 0.3)),
    (fgsm, dict(eps=2.0, norm=2), "untargeted", ("l2", 2.0)),
    (tgsm, dict(eps=0.4), "targeted", ("linf", 0.4)),
    (bim, dict(eps=0.3, steps=10), "untargeted", ("linf", 0.3)),
    (bim, dict(eps=0.3, steps=10), "targeted", ("linf", 0.3)),
    (pgd, dict(eps=0.3, steps=20, seed=1), "untargeted", ("linf", 0.3)),
    (pgd, dict(eps=2.5, steps=20, norm=2, seed=1), "targeted", ("l2", 2.5)),
    (cw_l2, dict(binary_search_steps=4, c=1e-1, **CW_FAST), "targeted", None),
    (cw_l2, dict(binary_search_steps=4, c=1e-1, kappa=1.0, **CW_FAST), "untargeted", None),
    (cw_linf, dict(c=1e-2, lr=2e-2, **CW_FAST), "targeted", None),
    (cw_l0, dict(c=1e-1, **CW_FAST), "targeted", None),
]
IDS = [f"{a.__name__}-{goal}-{i}" for i, (a, _, goal, _) in enumerate(CASES)]


def run(attack, params, goal, model, x, y, target):
    if goal == "targeted":
        return attack(model, x, target=target, **params)         # one signature for all
    return attack(model, x, y, **params)


@pytest.mark.parametrize("attack, params, goal, budget", CASES, ids=IDS)
def test_attack_properties(toy, attack, params, goal, budget):
    model, x, y, target = toy
    r = run(attack, params, goal, model, x, y, target)
    assert r.x_adv.shape == x.shape and r.x_adv.dtype == x.dtype
    assert r.x_adv.min() >= 0.0 and r.x_adv.max() <= 1.0                 # inside the clip box
    if budget is not None:
        norm, bound = budget
        assert getattr(r, norm).max() <= bound * (1 + 1e-5)              # inside the budget
    predicted = model.predict(r.x_adv)
    if goal == "targeted":
        np.testing.assert_array_equal(r.success, predicted == target)    # success = on target
        np.testing.assert_array_equal(r.target, target)
    else:
        np.testing.assert_array_equal(r.success, predicted != y)
        assert r.target is None
    assert r.success.mean() >= 0.5
    assert nd.metrics.accuracy(model, r.x_adv, y) < nd.metrics.accuracy(model, x, y)
    failed = ~r.success
    if attack in (cw_l2, cw_linf, cw_l0):                               # a failure is left untouched
        np.testing.assert_array_equal(r.x_adv[failed], x[failed])
        assert np.all(r.l0[failed] == 0)
    again = run(attack, params, goal, model, x, y, target)              # same seed, same result
    np.testing.assert_array_equal(again.x_adv, r.x_adv)
    np.testing.assert_array_equal(again.iterations, r.iterations)


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
    from npdistill.attacks.tanh_space import TanhSpace
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


def test_fgsm_is_one_signed_step_of_the_loss_gradient(toy):
    model, x, y, _ = toy
    r = fgsm(model, x, y, eps=0.1)
    g = nd.attacks.loss_gradient(model, x, y)
    np.testing.assert_array_equal(r.x_adv, np.clip(x + np.float32(0.1) * np.sign(g), 0, 1))
    t = tgsm(model, x, target=y, eps=0.1)                      # targeted: down the loss of the target
    np.testing.assert_array_equal(t.x_adv, np.clip(x - np.float32(0.1) * np.sign(g), 0, 1))


@given(st.integers(1, 4), st.sampled_from([0.5, 1.0, 7.0]), st.integers(0, 2**31))
def test_loss_gradient_is_the_gradient_of_the_summed_cross_entropy(n, T, seed):
    rng = np.random.default_rng(seed)
    model = nd.Sequential([layers.Conv2D(1, 3, 3), layers.ReLU(), layers.Flatten(),
                           layers.Dense(3 * 4 * 4, 4)], seed=seed % 1000).astype(np.float64)
    x = rng.random((n, 1, 6, 6))
    y = rng.integers(0, 4, n)
    analytic = nd.attacks.loss_gradient(model, x, y, T)
    gradcheck(lambda: nd.cross_entropy(model.forward(x), y, T)[0] * n, x, analytic)


def saturated(model, scale):
    """The toy model with its logits multiplied by ``scale`` (what training at T = scale
    and deploying at 1 does to a distilled net)."""
    hot = model.copy()
    last = hot.layers[-1]
    last.params["W"] *= scale
    last.params["b"] *= scale
    return hot


def test_fgsm_leaves_a_saturated_net_untouched_unless_the_logits_are_divided_by_T(toy):
    model, x, y, _ = toy
    hot = saturated(model, 1e4)
    assert not nd.attacks.loss_gradient(hot, x, y).any()       # float32 underflow: exactly 0
    r = fgsm(hot, x, y, eps=0.3)
    np.testing.assert_array_equal(r.x_adv, x)                   # sign(0) = 0: nothing moves
    assert np.all(r.l0 == 0)
    countered = fgsm(hot, x, y, eps=0.3, T=1e4)                 # the attacker's counter
    assert countered.success.mean() > 0.5


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


def _cw_case():
    """A small conv net and eight images whose targets take CW L2 a few hundred steps."""
    rng = np.random.default_rng(3)
    model = nd.Sequential([layers.Conv2D(1, 4, 3), layers.ReLU(), layers.Flatten(),
                           layers.Dense(4 * 6 * 6, 3)], seed=1).astype(np.float64)
    x = rng.random((8, 1, 8, 8))
    return model, x, (model.predict(x) + 1) % 3


def test_cw_round_with_a_window_does_not_count_the_warm_starts_first_steps():
    """A round warm-started from an example at a c far too small to keep it: the first
    steps are adversarial, then the iterate falls back towards x. Counting every success
    of the round (the reference's rule, right for a cold start) would call that c
    enough; counting the last check period only (``window``) does not. Both keep the
    early successes as examples."""
    from npdistill.attacks.cw import _NEVER, _l2_round
    from npdistill.attacks.tanh_space import preimage
    model, x, target = _cw_case()
    found = cw_l2(model, x, target=target, c=10.0, kappa=0.5, binary_search_steps=1,
                  max_iterations=300, progress=False)          # a margin: x(w) shrinks by 1e-6
    assert found.success.all()
    n = len(x)
    x0, start = x.reshape(n, -1), preimage(found.x_adv.reshape(n, -1), 0.0, 1.0)
    hits = {}
    for window in (False, True):
        best_dist, best_x, best_w = np.full(n, _NEVER), x0.copy(), start.copy()
        step_best, w_end = _l2_round(
            model, x0, start, x.shape[1:], target, np.full(n, 1e-6), True, 0.0,
            max_iterations=200, lr=1e-2, abort_early=None, check_every=20, window=window,
            lo=0.0, hi=1.0,
            best_dist=best_dist, best_x=best_x, best_w=best_w, iterations=np.zeros(n, np.int64))
        hits[window] = step_best < _NEVER
        assert np.all(best_dist < _NEVER)                         # the start was an example
        np.testing.assert_array_equal(model.predict(best_x.reshape(x.shape)), target)
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


@pytest.mark.parametrize("call, error, match", [
    (lambda m, x, y: fgsm(m, x, y, eps=-0.1), ValueError, "eps"),
    (lambda m, x, y: fgsm(m, x, y, eps=0.1, norm=1), ValueError, "norm"),
    (lambda m, x, y: fgsm(m, x * 2, y, eps=0.1), ValueError, r"\[0, 1\]"),
    (lambda m, x, y: fgsm(m, x.astype(np.float64), y), TypeError, "float32"),
    (lambda m, x, y: fgsm(m, x, y[:-1]), ValueError, "shape"),
    (lambda m, x, y: bim(m, x, y, target=y), TypeError, "exactly one"),
    (lambda m, x, y: pgd(m, x), TypeError, "exactly one"),
    (lambda m, x, y: bim(m, x, y, steps=0), ValueError, "steps"),
    (lambda m, x, y: cw_l2(m, x), TypeError, "exactly one"),
    (lambda m, x, y: cw_l2(m, x, y, kappa=-1), ValueError, "kappa"),
    (lambda m, x, y: cw_l2(m, x, target=y + 5), ValueError, "target"),
    (lambda m, x, y: cw_l2(m, x, y, clip=(0.2, 0.8)), ValueError, "clip box"),
    (lambda m, x, y: cw_l2(m, x, y, abort_early="images"), ValueError, "abort_early"),
    (lambda m, x, y: cw_l2(m, x, y, warm_start="yes"), TypeError, "warm_start"),
    (lambda m, x, y: cw_l2(m, x, y, check_every=0), ValueError, "check_every"),
    (lambda m, x, y: cw_l2(m, x, y, check_every=2.5), (TypeError, ValueError), "check_every"),
    (lambda m, x, y: cw_linf(m, x, y, decrease_factor=1.5), ValueError, "decrease_factor"),
    (lambda m, x, y: cw_l0(m, x, y, const_factor=1.0), ValueError, "const_factor"),
])
def test_bad_input_is_refused_with_a_clear_error(toy, call, error, match):
    model, x, y, _ = toy
    with pytest.raises(error, match=match):
        call(model, x[:4], y[:4])


def test_random_targets_are_other_classes_drawn_from_the_seed():
    y = np.arange(1000) % 10
    t = nd.attacks.random_targets(y, 10, seed=3)
    assert t.dtype == np.int64 and t.min() >= 0 and t.max() < 10
    assert not np.any(t == y)
    assert len(np.unique(t[y == 0])) == 9                       # every other class occurs
    np.testing.assert_array_equal(t, nd.attacks.random_targets(y, 10, seed=3))
    with pytest.raises(ValueError, match="labels"):
        nd.attacks.random_targets(np.array([0, 10]), 10)


# -- any input box, and models that take pixels through a Normalize layer ---------------------
def _normalized_pair(seed=0):
    """(pixel model [Normalize, *layers], the same layers taking normalized inputs, m, s)."""
    m, s = 0.25, 0.5
    inner = [nd.layers.Conv2D(1, 3, 3), nd.layers.ReLU(), nd.layers.MaxPool2D(2),
             nd.layers.Flatten(), nd.layers.Dense(3 * 2 * 2, 4)]
    normalized = nd.Sequential(inner, seed=seed).astype(np.float64)
    pixels = nd.Sequential([nd.layers.Normalize(m, s)] +
                           [layer.astype(np.float64) for layer in normalized.layers])
    return pixels, normalized, m, s


@pytest.mark.parametrize("attack, options, scaled", [
    ("fgsm", {"eps": 0.2}, ("eps",)),
    ("bim", {"eps": 0.2, "steps": 3}, ("eps",)),
    ("pgd", {"eps": 0.2, "steps": 3, "seed": 4}, ("eps",)),
    ("jsma", {"theta": 1.0, "gamma": 0.3}, ("theta",)),
])
def test_attacking_pixels_through_normalize_equals_attacking_the_normalized_inputs(
        attack, options, scaled):
    pixels, normalized, m, s = _normalized_pair()
    rng = np.random.default_rng(3)
    x = rng.random((6, 1, 6, 6))
    goal = {"target": (pixels.predict(x) + 1) % 4} if attack == "jsma" else \
        {"y": pixels.predict(x)}
    run = getattr(nd.attacks, attack)
    in_pixels = run(pixels, x, **goal, **options, progress=False)
    in_normalized = run(normalized, (x - m) / s, **goal, progress=False,
                        clip=((0 - m) / s, (1 - m) / s),
                        **{k: v / s if k in scaled else v for k, v in options.items()})
    np.testing.assert_allclose(in_normalized.x_adv * s + m, in_pixels.x_adv, atol=1e-12)
    np.testing.assert_array_equal(in_normalized.success, in_pixels.success)


@pytest.mark.parametrize("attack", ["fgsm", "jsma", "cw_l2"])
def test_attacks_take_any_clip_box(attack):
    pixels, normalized, m, s = _normalized_pair()
    x = np.random.default_rng(5).random((3, 1, 6, 6)) * 2 - 1           # in [-1, 1]
    goal = {"target": (normalized.predict(x) + 1) % 4}
    options = {"cw_l2": {"max_iterations": 20, "binary_search_steps": 2}}.get(attack, {})
    r = getattr(nd.attacks, attack)(normalized, x, **goal, clip=(-1, 1), **options)
    assert r.x_adv.min() >= -1 and r.x_adv.max() <= 1
    with pytest.raises(ValueError, match=r"x must lie in the clip box \[-1, 0.5\]"):
        getattr(nd.attacks, attack)(normalized, x, **goal, clip=(-1, 0.5), **options)


@pytest.mark.parametrize("attack", ["fgsm", "tgsm", "bim", "pgd"])
def test_eps_zero_returns_the_clean_images(attack):
    model, _, _, _ = _normalized_pair()
    x = np.random.default_rng(6).random((5, 1, 6, 6))
    predicted = model.predict(x)
    target = (predicted + 1) % 4
    target[0] = predicted[0]                              # one already "reached"
    goal = {"target": target} if attack == "tgsm" else {"y": np.where(
        np.arange(5) == 0, (predicted + 1) % 4, predicted)}            # one already wrong
    r = getattr(nd.attacks, attack)(model, x, **goal, eps=0)
    np.testing.assert_array_equal(r.x_adv, x)
    np.testing.assert_array_equal(r.success, [True, False, False, False, False])


@pytest.mark.parametrize("attack", ["jsma", "tgsm"])
def test_the_old_positional_target_says_what_to_write(attack):
    model, _, _, _ = _normalized_pair()
    x = np.random.default_rng(7).random((2, 1, 6, 6))
    with pytest.raises(TypeError, match=rf"{attack} is a targeted attack: pass .* as target="):
        getattr(nd.attacks, attack)(model, x, np.array([1, 2]))


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd", "cw_l2", "cw_l0", "cw_linf"])
def test_every_attack_takes_y_or_target_and_not_both(attack):
    model, _, _, _ = _normalized_pair()
    x = np.random.default_rng(8).random((2, 1, 6, 6))
    t = np.array([1, 2])
    for goal in ({}, {"y": t, "target": t}):
        with pytest.raises(TypeError, match="give exactly one of y"):
            getattr(nd.attacks, attack)(model, x, **goal)
