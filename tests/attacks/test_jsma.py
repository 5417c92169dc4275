"""JSMA: the properties the paper's algorithm promises, as one table, plus the edge cases."""
import numpy as np
import pytest

import npdistill as nd
from tests.backends import BACKEND_PAIRS, on_each_backend


# (parameters, expected property) — every row runs on the toy model
CASES = [
    (dict(theta=1.0, on="softmax"), "increasing"),
    (dict(theta=1.0, on="logits"), "increasing"),
    (dict(theta=0.5, on="softmax", gamma=0.3), "increasing"),
    (dict(theta=-1.0, on="logits", gamma=0.5), "decreasing"),
    (dict(theta=1.0, on="softmax", T=10.0), "increasing"),
]


@pytest.mark.parametrize("params, direction", CASES)
def test_jsma_properties(toy, params, direction):
    model, x, _, target = toy
    r = nd.attacks.jsma(model, x, target=target, **params)
    gamma = params.get("gamma", 0.145)
    max_iter = int(np.floor(gamma * 64 / 2))
    assert r.x_adv.dtype == x.dtype and r.x_adv.shape == x.shape
    assert r.x_adv.min() >= 0.0 and r.x_adv.max() <= 1.0                # inside the clip box
    assert np.all(r.iterations <= max_iter)
    assert np.all(r.l0 <= 2 * r.iterations)                              # two pixels per iteration
    delta = r.x_adv - x
    assert np.all(delta >= 0) if direction == "increasing" else np.all(delta <= 0)
    predicted = model.predict(r.x_adv)
    np.testing.assert_array_equal(predicted == target, r.success)        # success = on target
    assert r.success.mean() >= 0.5
    np.testing.assert_array_equal(r.target, target)


@pytest.mark.parametrize("pair", BACKEND_PAIRS)
def test_jsma_is_deterministic_and_backends_agree(toy, pair):
    model, x, _, target = toy
    results = on_each_backend(pair, lambda: nd.attacks.jsma(model, x, target=target, on="logits",
                                                            batch_size=7))
    results.append(nd.attacks.jsma(model, x, target=target, on="logits"))      # one batch, not three
    for r in results[1:]:
        np.testing.assert_array_equal(r.x_adv, results[0].x_adv)
        np.testing.assert_array_equal(r.iterations, results[0].iterations)


def test_no_admissible_pair_stops_as_a_failure_without_touching_the_image(toy):
    model, x, _, target = toy
    flat = model.copy()
    for layer in flat.layers:                 # a constant function: every derivative is 0
        for value in layer.params.values():
            value[...] = 0
    r = nd.attacks.jsma(flat, x[:5], target=np.array([1, 2, 1, 2, 1]))    # all logits 0: predicts 0
    assert not r.success.any()
    assert np.all(r.iterations == 0) and np.all(r.l0 == 0)
    np.testing.assert_array_equal(r.x_adv, x[:5])


def test_search_domain_confines_the_changes(toy):
    model, x, _, target = toy
    allowed = np.zeros(x.shape, bool)
    allowed[:, :, :, :4] = True                       # the left half of every image only
    r = nd.attacks.jsma(model, x, target=target, on="logits", gamma=0.5, search_domain=allowed)
    assert r.l0.sum() > 0
    assert np.all((r.x_adv != x) <= allowed)
    free = nd.attacks.jsma(model, x, target=target, on="logits", gamma=0.5)
    assert np.any((free.x_adv != x) & ~allowed)       # the mask did something
    with pytest.raises(ValueError, match="shape of x"):
        nd.attacks.jsma(model, x, target=target, search_domain=allowed[:, :, :4])
    with pytest.raises(TypeError, match="bool"):
        nd.attacks.jsma(model, x, target=target, search_domain=allowed.astype(np.uint8))


def test_already_on_target_costs_nothing(toy):
    model, x, y, _ = toy
    r = nd.attacks.jsma(model, x[:5], target=model.predict(x[:5]))
    assert r.success.all() and np.all(r.l0 == 0) and np.all(r.iterations == 0)


def test_long_runs_show_progress(toy, capsys):
    model, x, _, target = toy
    nd.attacks.jsma(model, x[:6], target=target[:6])
    assert capsys.readouterr().err == ""                       # a short run: quiet
    nd.attacks.jsma(model, x[:6], target=target[:6], batch_size=4, progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("jsma: 6/6 images, success")


def test_all_targets_protocol(toy):
    model, x, y, _ = toy
    r = nd.attacks.jsma_all_targets(model, x[:4], y[:4])
    assert len(r.success) == 4 * 2
    np.testing.assert_array_equal(r.target.reshape(4, 2), (y[:4, None] + [1, 2]) % 3)
    assert np.all(r.target != np.repeat(y[:4], 2))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(theta=0.0), ValueError, "theta"),
    (dict(gamma=0.0), ValueError, "gamma"),
    (dict(on="probs"), ValueError, "on must be one of 'softmax', 'logits'"),
    (dict(clip=(1.0, 0.0)), ValueError, "low < high"),
    (dict(T=0.0), ValueError, "positive"),
])
def test_bad_parameters_are_refused(toy, kwargs, error, match):
    model, x, _, target = toy
    with pytest.raises(error, match=match):
        nd.attacks.jsma(model, x[:2], target=target[:2], **kwargs)


def test_bad_inputs_are_refused(toy):
    model, x, _, target = toy
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        nd.attacks.jsma(model, x[:2], target=np.array([0, 3]))
    with pytest.raises(TypeError, match="integer"):
        nd.attacks.jsma(model, x[:2], target=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="clip box"):
        nd.attacks.jsma(model, x[:2] * 0.5, target=target[:2], clip=(0.2, 1.0))
    with pytest.raises(ValueError, match=r"x must lie in the clip box \[0, 1\]"):
        nd.attacks.jsma(model, x[:2] + 1, target=target[:2])
