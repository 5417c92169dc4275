"""The Square attack in L-inf and L2: its margin and window schedule, the L2 attack's
bumps and its norm bookkeeping, its query count, budget and seed, and that it reads only
the logits, so a saturated (distilled) net hides nothing from it.
(The properties every attack promises are tests/attacks/test_attacks.py's table.)"""
import numpy as np
import pytest

import npdistill as nd
from npdistill import layers

from npdistill.attacks import fgsm, square
from npdistill.attacks.square import bump, margin, window_share
from tests.attacks.test_attacks import saturated


def test_the_margin_is_below_zero_exactly_where_the_goal_is_reached():
    z = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    np.testing.assert_array_equal(margin(z, np.array([0, 0])), [1.0, -5.0])
    np.testing.assert_array_equal(margin(z, np.array([2, 1]), targeted=True), [1.0, -4.0])


def test_the_window_halves_on_the_papers_schedule():
    assert window_share(0.4, 0, 10_000) == 0.4 == window_share(0.4, 10, 10_000)
    assert window_share(0.4, 11, 10_000) == 0.2
    assert window_share(0.4, 8001, 10_000) == 0.4 / 2 ** 9
    assert window_share(0.4, 3, 1000) == 0.2                       # rescaled to the budget


def test_a_bump_is_a_unit_peak_beside_its_negative():
    b = bump(5)
    assert b.shape == (5, 5) and np.isclose((b ** 2).sum(), 1)
    assert (b[:2] > 0).all() and (b[2:] < 0).all()                 # 2 rows up, 3 down
    assert b[1, 2] == b[:2].max() and b[3, 2] == b[2:].min()       # peaks at the centres
    # nested rings weighted 1, 1/4, 1/9: the centre holds all three, the next ring two
    np.testing.assert_allclose(b[3, 1:4] / b[3, 2], [(1 / 4 + 1 / 9) / (1 + 1 / 4 + 1 / 9), 1,
                                                     (1 / 4 + 1 / 9) / (1 + 1 / 4 + 1 / 9)])
    np.testing.assert_array_equal(bump(6, transposed=True), bump(6).T)
    assert bump(1).shape == (1, 1) and abs(bump(1)[0, 0]) == 1


@pytest.mark.parametrize("norm, eps, size", [("inf", 0.2, "linf"), (2, 1.5, "l2")])
def test_queries_budget_box_and_seed(toy, norm, eps, size):
    model, x, y, _ = toy
    r = square(model, x, y, eps=eps, norm=norm, queries=200, seed=5)
    assert getattr(r, size).max() <= eps * (1 + 1e-6)
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert 1 <= r.iterations.min() and r.iterations.max() <= 200
    assert (r.iterations[~r.success] == 200).all()                 # the unbroken used them all
    assert r.success.any()
    np.testing.assert_array_equal(r.success, model.predict(r.x_adv) != y)
    again = square(model, x, y, eps=eps, norm=norm, queries=200, seed=5)
    np.testing.assert_array_equal(again.x_adv, r.x_adv)
    other = square(model, x, y, eps=eps, norm=norm, queries=200, seed=6)
    assert not np.array_equal(other.x_adv, r.x_adv)
    clean = square(model, x, y, eps=0.0, norm=norm)
    np.testing.assert_array_equal(clean.x_adv, x)


def _linear(features, bias):
    """A linear net on flattened images whose class 0 leads by ``bias``."""
    model = nd.Sequential([layers.Flatten(), layers.Dense(features, 3)], seed=0)
    model = model.astype(np.float64)
    model.layers[-1].params["b"][0] = bias
    return model


def test_l2_keeps_the_perturbation_at_norm_eps_away_from_the_box():
    """Inside the box's interior the L2 search's every point has norm exactly eps (the
    bumps only move mass between windows), so an unbroken image ends at norm eps."""
    model = _linear(64, 100.0)                                     # unbreakable
    x = np.full((6, 1, 8, 8), 0.5)
    y = model.predict(x)
    r = square(model, x, y, eps=0.5, norm=2, queries=50, seed=0)
    assert not r.success.any() and (r.iterations == 50).all()
    np.testing.assert_allclose(r.l2[~r.success], 0.5, rtol=1e-12)
    assert (r.linf < 0.5).all()                                    # never reached the box


def test_l2_only_moves_within_the_windows_it_draws():
    """One query on a net that never breaks: the proposal differs from the start only
    inside two windows (plus the rescaling to eps, a common factor)."""
    from npdistill.attacks.square import _SearchL2
    model = _linear(144, 100.0)
    x = np.full((3, 1, 12, 12), 0.5)
    search = _SearchL2(model, False, 1.0, 0.0, 1.0, 1000, 0.1, np.random.default_rng(0))
    start = search.start(x)
    np.testing.assert_allclose(np.sqrt(((start - x) ** 2).sum(axis=(1, 2, 3))), 1.0)
    proposal = search.propose(x, start, query=1)
    before, after = start - x, proposal - x
    np.testing.assert_allclose(np.sqrt((after ** 2).sum(axis=(1, 2, 3))), 1.0)
    # away from the windows every pixel is scaled by one common factor per image
    ratio = after / before
    for image in range(3):
        values = np.round(ratio[image].ravel(), 9)
        common = np.bincount(np.unique(values, return_inverse=True)[1]).max()
        side = search.side(1, 12, 12, smallest=3)
        assert common >= 144 - 2 * side * side


@pytest.mark.parametrize("norm, eps, p_init, least", [("inf", 0.3, 0.3, 0.9), (2, 1.5, 0.3, 0.5)])
def test_a_saturated_net_hides_nothing_from_a_search_on_the_logits(toy, norm, eps, p_init,
                                                                   least):
    model, x, y, _ = toy
    hot = saturated(model, 1e4)
    assert fgsm(hot, x, y, eps=eps, norm=norm).success.mean() == 0        # masked
    broken = square(hot, x, y, eps=eps, norm=norm, queries=1000, p_init=p_init).success
    base = square(model, x, y, eps=eps, norm=norm, queries=1000, p_init=p_init).success
    # the margin's sign, and so every decision of the search, is the same on both nets
    assert broken.mean() >= least and abs(broken.mean() - base.mean()) <= 0.1


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(queries=0), ValueError, "queries"),
    (dict(p_init=0.0), ValueError, "p_init"),
    (dict(eps=-0.1), ValueError, "eps"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(norm=1), ValueError, "norm"),
    (dict(norm=2, p_init=1.5), ValueError, "p_init"),
])
def test_bad_arguments_are_refused_by_name(toy, kwargs, error, match):
    model, x, y, _ = toy
    with pytest.raises(error, match=match):
        square(model, x, y, **kwargs)
