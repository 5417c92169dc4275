"""Auto-PGD: the DLR loss and its gradient, the step-size checkpoints, the budget and the
seed, and what it is for: a distilled (saturated) net masks FGSM and PGD on the
cross-entropy, not APGD on the DLR loss, which does not change when the logits are scaled.
(The properties every attack promises are tests/attacks/test_attacks.py's table.)"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npdistill as nd
from npdistill import layers
from npdistill.attacks import apgd, dlr_loss, fgsm, pgd
from npdistill.attacks.apgd import checkpoints
from tests.attacks.test_attacks import saturated
from tests.gradcheck import numerical_jacobian


def _distinct_logits(rng, n, k, spread):
    """Logits with every pair at least 0.1 apart (the DLR is smooth away from ties)."""
    z = np.stack([rng.permutation(k) for _ in range(n)]).astype(np.float64) * spread
    return z + rng.uniform(-0.04, 0.04, (n, k)) * spread


@given(st.integers(1, 4), st.integers(4, 8), st.booleans(), st.sampled_from([0.1, 1.0, 30.0]),
       st.integers(0, 2**31))
def test_dlr_gradient_is_its_central_difference(n, k, targeted, spread, seed):
    rng = np.random.default_rng(seed)
    z = _distinct_logits(rng, n, k, spread)
    labels = rng.integers(0, k, n)
    target = (labels + 1 + rng.integers(0, k - 1, n)) % k if targeted else None
    _, analytic = dlr_loss(z, labels, target)
    numeric = numerical_jacobian(lambda: dlr_loss(z, labels, target)[0], z, eps=1e-6 * spread)
    # row i of the loss depends on row i of z only
    np.testing.assert_allclose(analytic, numeric[np.arange(n), np.arange(n)], rtol=1e-5,
                               atol=1e-8 / spread)


@given(st.integers(1, 5), st.booleans(), st.floats(1e-2, 1e4), st.integers(0, 2**31))
def test_dlr_does_not_change_when_the_logits_are_scaled(n, targeted, scale, seed):
    rng = np.random.default_rng(seed)
    z = _distinct_logits(rng, n, 6, 1.0)
    labels = rng.integers(0, 6, n)
    target = (labels + 1) % 6 if targeted else None
    np.testing.assert_allclose(dlr_loss(scale * z, labels, target)[0],
                               dlr_loss(z, labels, target)[0], rtol=1e-9)


def test_dlr_is_minus_the_margin_over_the_spread_of_the_top_logits():
    z = np.array([[5.0, 1.0, 3.0, 0.0], [1.0, 4.0, 2.0, 3.0]])
    loss, _ = dlr_loss(z, np.array([0, 2]))
    np.testing.assert_allclose(loss, [-(5 - 3) / (5 - 1), -(2 - 4) / (4 - 2)], rtol=1e-9)
    loss, _ = dlr_loss(z, np.array([0, 1]), np.array([2, 0]))
    np.testing.assert_allclose(loss, [-(5 - 3) / (5 - 0.5), -(4 - 1) / (4 - 1.5)], rtol=1e-9)


def test_the_checkpoints_are_the_papers():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9]
    assert all(0 < w < n for n in (1, 2, 5, 37, 1000) for w in checkpoints(n))


def _five_classes():
    rng = np.random.default_rng(3)
    model = nd.Sequential([layers.Flatten(), layers.Dense(36, 16), layers.ReLU(),
                           layers.Dense(16, 5)], seed=3)
    return model, rng.random((12, 1, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("norm, eps", [("inf", 0.1), (2, 0.8)])
def test_targeted_dlr_stays_in_budget_and_box_and_repeats_under_its_seed(norm, eps):
    model, x = _five_classes()
    target = (model.predict(x) + 2) % 5
    first = apgd(model, x, target=target, eps=eps, norm=norm, steps=15, restarts=2, seed=4)
    bound = first.linf if norm == "inf" else first.l2
    assert bound.max() <= eps * (1 + 1e-5) and 0 <= first.x_adv.min() and first.x_adv.max() <= 1
    np.testing.assert_array_equal(first.success, model.predict(first.x_adv) == target)
    assert first.iterations.max() <= 15 * 2
    again = apgd(model, x, target=target, eps=eps, norm=norm, steps=15, restarts=2, seed=4)
    np.testing.assert_array_equal(again.x_adv, first.x_adv)
    np.testing.assert_array_equal(again.iterations, first.iterations)


def test_an_image_stops_at_its_first_success_and_eps_zero_is_the_clean_image(toy):
    model, x, y, _ = toy
    r = apgd(model, x, y, eps=0.3, steps=30)
    assert r.success.mean() >= 0.85 and r.iterations.max() <= 30
    assert np.median(r.iterations[r.success]) < 10               # most break in a few steps
    assert (r.iterations[~r.success] == 30).all()                # the others ran every step
    clean = apgd(model, x, y, eps=0.0)
    np.testing.assert_array_equal(clean.x_adv, x)
    np.testing.assert_array_equal(clean.success, model.predict(x) != y)


def test_a_saturated_net_masks_fgsm_and_pgd_on_the_cross_entropy_not_apgd_on_dlr(toy):
    # the logits 1e4 times larger: a net distilled at T = 1e4 and deployed at T = 1
    model, x, y, _ = toy
    hot = saturated(model, 1e4)
    assert fgsm(hot, x, y, eps=0.3).success.mean() == 0
    assert pgd(hot, x, y, eps=0.3, steps=20).success.mean() == 0
    assert apgd(hot, x, y, eps=0.3, steps=20, loss="ce").success.mean() == 0
    dlr = apgd(hot, x, y, eps=0.3, steps=20)                    # loss="dlr", no T given
    assert dlr.success.mean() >= 0.8
    base = apgd(model, x, y, eps=0.3, steps=20)
    assert dlr.success.mean() >= base.success.mean() - 0.1      # masking bought nothing


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(loss="margin"), ValueError, "loss"),
    (dict(steps=0), ValueError, "steps"),
    (dict(restarts=1.5), TypeError, "restarts"),
    (dict(eps=-1), ValueError, "eps"),
    (dict(norm=1), ValueError, "norm"),
])
def test_bad_arguments_are_refused_by_name(toy, kwargs, error, match):
    model, x, y, _ = toy
    with pytest.raises(error, match=match):
        apgd(model, x, y, **kwargs)


def test_the_targeted_dlr_on_three_classes_says_to_use_the_cross_entropy(toy):
    model, x, _, target = toy
    with pytest.raises(ValueError, match="needs at least 4 classes, the model has 3"):
        apgd(model, x, target=target)
