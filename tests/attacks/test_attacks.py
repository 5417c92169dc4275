"""FGSM, TGSM, BIM, PGD, APGD, Square and the Carlini-Wagner attacks: one table of the properties
every attack promises (foolbox style), then the gradient methods' own claims (the
Carlini-Wagner attacks' are tests/attacks/test_cw.py's)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npdistill as nd
from npdistill import layers
from npdistill.attacks import apgd, bim, cw_l0, cw_l2, cw_linf, fgsm, pgd, square, tgsm
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
    (apgd, dict(eps=0.3, steps=20, seed=1), "untargeted", ("linf", 0.3)),
    (apgd, dict(eps=2.5, steps=20, norm=2, loss="ce", restarts=2, seed=1), "untargeted",
     ("l2", 2.5)),
    (apgd, dict(eps=0.4, steps=20, loss="ce", seed=1), "targeted", ("linf", 0.4)),
    (square, dict(eps=0.3, queries=300, p_init=0.3, seed=1), "untargeted", ("linf", 0.3)),
    (square, dict(eps=0.4, queries=300, p_init=0.3, seed=1), "targeted", ("linf", 0.4)),
    (square, dict(eps=2.0, norm=2, queries=300, p_init=0.3, seed=1), "untargeted", ("l2", 2.0)),
    (square, dict(eps=2.5, norm=2, queries=300, p_init=0.3, seed=1), "targeted", ("l2", 2.5)),
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
