"""Input-gradient regularization: the penalty's value and its exact parameter gradient
(forward mode through the backward) against central differences in float64."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npdistill as nd
from npdistill import layers
from npdistill.defenses.gradient_regularization import (InputGradientPenalty,
                                                        gradient_regularization,
                                                        penalty_and_gradient)
from tests.gradcheck import gradcheck, numerical_gradient


def small_net(channels, padding, hidden, classes, seed):
    size = 6 if padding == "same" else 4               # 6x6 input -> 6 or 4 -> pooled 3 or 2
    net = nd.Sequential([layers.Conv2D(2, channels, 3, padding=padding), layers.ReLU(),
                         layers.MaxPool2D(2), layers.Flatten(),
                         layers.Dense(channels * (size // 2) ** 2, hidden), layers.ReLU(),
                         layers.Dense(hidden, classes)], seed=seed).astype(np.float64)
    rng = np.random.default_rng(seed)
    for layer in net.layers:                   # non-zero biases: every term of the rule shows
        if "b" in layer.params:
            layer.params["b"] = rng.normal(0, 0.1, layer.params["b"].shape)
    return net


def objective(model, x, y, T, lam):
    """L + lam * mean_n ||d CE_n / d x_n||^2, by a plain forward and backward."""
    z = model.forward(x)
    loss, dlogits = nd.cross_entropy(z, y, T)
    g = model.backward(dlogits, param_grads=False)
    return loss + lam * len(x) * np.sum(g ** 2)


cases = st.tuples(st.integers(1, 4), st.integers(1, 3), st.sampled_from(["valid", "same"]),
                  st.integers(2, 6), st.integers(2, 4), st.sampled_from([1.0, 2.5, 10.0]),
                  st.sampled_from([0.1, 1.0, 30.0]), st.booleans(), st.integers(0, 2**31))


@given(cases)
def test_parameter_gradient_of_loss_plus_penalty_matches_central_differences(case):
    n, channels, padding, hidden, classes, T, lam, soft, seed = case
    rng = np.random.default_rng(seed)
    model = small_net(channels, padding, hidden, classes, seed)
    x = rng.random((n, 2, 6, 6))
    y = rng.dirichlet(np.ones(classes), n) if soft else rng.integers(0, classes, n)
    z = model.forward(x, training=True)
    _, dlogits = nd.cross_entropy(z, y, T)
    penalty_and_gradient(model, z, dlogits, T, lam)
    analytic = {k: v.copy() for k, v in model.grads.items()}
    # every tensor, at 24 of its entries drawn from the example's seed (each entry costs
    # two double backward passes; all of them took minutes)
    for key, value in model.params.items():
        gradcheck(lambda: objective(model, x, y, T, lam), value, analytic[key],
                  rtol=1e-5, atol=1e-8, entries=24, seed=seed)


def test_penalty_is_the_mean_squared_per_sample_input_gradient(rng):
    model = small_net(3, "same", 5, 4, seed=3)
    x, y = rng.random((5, 2, 6, 6)), rng.integers(0, 4, 5)
    z = model.forward(x)
    _, dlogits = nd.cross_entropy(z, y, 2.0)
    penalty, g = penalty_and_gradient(model, z, dlogits, 2.0, lam=0.7)
    per_sample = []
    for i in range(5):                       # one image at a time: CE_i's own input gradient
        xi = x[i:i + 1].copy()
        per_sample.append(numerical_gradient(
            lambda: nd.cross_entropy(model.forward(xi), y[i:i + 1], 2.0)[0], xi))
    np.testing.assert_allclose(g * 5, np.concatenate(per_sample), rtol=1e-5, atol=1e-9)
    assert penalty == pytest.approx(0.7 * np.mean([np.sum(gi ** 2) for gi in per_sample]),
                                    rel=1e-6)


def test_dropout_masks_of_the_training_pass_are_kept():
    # with dropout, the penalty is that of the net the training forward drew
    rng = np.random.default_rng(5)
    model = nd.Sequential([layers.Flatten(), layers.Dense(8, 6), layers.ReLU(), layers.Dropout(0.5),
                           layers.Dense(6, 3)], seed=1).astype(np.float64)
    x, y = rng.random((4, 2, 2, 2)), rng.integers(0, 3, 4)
    model.set_rng(np.random.default_rng(9))
    z = model.forward(x, training=True)
    mask = model.layers[3].mask.copy()
    _, dlogits = nd.cross_entropy(z, y)
    penalty_and_gradient(model, z, dlogits, 1.0, 2.0)
    analytic = {k: v.copy() for k, v in model.grads.items()}

    def fixed_mask_objective():
        model.forward(x, training=False)
        h = model.layers[2].forward(model.layers[1].forward(model.layers[0].forward(x)))
        zz = model.layers[4].forward(h * mask)
        loss, dz = nd.cross_entropy(zz, y)
        dh = model.layers[4].backward(dz, param_grads=False) * mask
        g = model.layers[0].backward(model.layers[1].backward(model.layers[2].backward(
            dh, param_grads=False), param_grads=False), param_grads=False)
        return loss + 2.0 * 4 * np.sum(g ** 2)

    for key, value in model.params.items():
        gradcheck(fixed_mask_objective, value, analytic[key], rtol=1e-5, atol=1e-8)


def test_regularized_training_lowers_the_input_gradient(mnist):
    """The defense's claim: the same net trained with the penalty has smaller ||dL/dx||."""
    (x, y), (x_test, y_test) = mnist
    x, y = x[:1500], y[:1500]

    def net():
        return nd.Sequential([layers.Conv2D(1, 8, 5), layers.ReLU(), layers.MaxPool2D(4),
                              layers.Flatten(), layers.Dense(288, 10)], seed=0)

    options = dict(epochs=2, batch_size=50, lr=0.05, momentum=0.9, seed=0, progress=False)
    plain, _ = nd.train(net(), (x, y), **options)
    # measured: ||dL/dx|| 0.90 plain, 0.50 at lam = 0.5 (accuracy 87% both); lam >= 3
    # collapses this small net to a constant output (the trivial zero gradient)
    regular, history = gradient_regularization(net(), (x, y), lam=0.5, **options)
    assert history["penalty"][-1] is not None and history["penalty"][-1] > 0
    assert regular.metadata["training"]["penalty"] == {"defense": "input_gradient_regularization",
                                                     "lam": 0.5}

    def input_gradient_norm(model):
        g = nd.attacks.loss_gradient(model, x_test[:500], y_test[:500])
        return float(np.sqrt((g.astype(np.float64) ** 2).reshape(500, -1).sum(axis=1)).mean())

    assert input_gradient_norm(regular) < 0.7 * input_gradient_norm(plain)
    assert nd.metrics.accuracy(regular, x_test[:500], y_test[:500]) > 0.8


def test_penalty_rejects_a_non_positive_weight():
    with pytest.raises(ValueError, match="lam"):
        InputGradientPenalty(0.0)
