"""The Square attack: its margin and window schedule, its query count, budget and seed,
and that it reads only the logits, so a saturated (distilled) net hides nothing from it.
(The properties every attack promises are tests/attacks/test_attacks.py's table.)"""
import numpy as np
import pytest

from npdistill.attacks import fgsm, square
from npdistill.attacks.square import margin, window_share
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


def test_queries_budget_box_and_seed(toy):
    model, x, y, _ = toy
    r = square(model, x, y, eps=0.2, queries=200, seed=5)
    assert r.linf.max() <= 0.2 * (1 + 1e-6) and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert 1 <= r.iterations.min() and r.iterations.max() <= 200
    assert (r.iterations[~r.success] == 200).all()                 # the unbroken used them all
    np.testing.assert_array_equal(r.success, model.predict(r.x_adv) != y)
    again = square(model, x, y, eps=0.2, queries=200, seed=5)
    np.testing.assert_array_equal(again.x_adv, r.x_adv)
    other = square(model, x, y, eps=0.2, queries=200, seed=6)
    assert not np.array_equal(other.x_adv, r.x_adv)
    clean = square(model, x, y, eps=0.0)
    np.testing.assert_array_equal(clean.x_adv, x)


def test_a_saturated_net_hides_nothing_from_a_search_on_the_logits(toy):
    model, x, y, _ = toy
    hot = saturated(model, 1e4)
    assert fgsm(hot, x, y, eps=0.3).success.mean() == 0            # masked
    broken = square(hot, x, y, eps=0.3, queries=1000, p_init=0.3).success.mean()
    base = square(model, x, y, eps=0.3, queries=1000, p_init=0.3).success.mean()
    assert broken >= 0.9 and abs(broken - base) <= 0.1


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(queries=0), ValueError, "queries"),
    (dict(p_init=0.0), ValueError, "p_init"),
    (dict(eps=-0.1), ValueError, "eps"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_arguments_are_refused_by_name(toy, kwargs, error, match):
    model, x, y, _ = toy
    with pytest.raises(error, match=match):
        square(model, x, y, **kwargs)
