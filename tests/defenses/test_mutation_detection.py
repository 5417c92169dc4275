"""Model-mutation detection: the operators do what their names say, and the detector
flags adversarial inputs while its false-positive rate on clean ones stays near alpha."""
import numpy as np
import pytest

import npdistill as nd
from npdistill import layers
from npdistill.defenses.mutation_detection import OPERATORS, MutationDetector, mutate


def dense_net():
    return nd.Sequential([layers.Flatten(), layers.Dense(16, 40), layers.ReLU(),
                          layers.Dense(40, 30), layers.ReLU(), layers.Dense(30, 3)], seed=2)


def changed_neurons(model, mutant):
    return sum(int(np.any(a.params["W"] != b.params["W"], axis=0).sum())
               for a, b in zip(model.layers[1:4:2], mutant.layers[1:4:2]))


@pytest.mark.parametrize("operator", OPERATORS)
def test_operators_touch_only_hidden_layers_and_leave_the_model_alone(operator):
    model = dense_net()
    before = {k: v.copy() for k, v in model.params.items()}
    mutant = mutate(model, operator, 0.1, np.random.default_rng(0))
    for key, value in model.params.items():
        np.testing.assert_array_equal(value, before[key])
    np.testing.assert_array_equal(mutant.layers[5].params["W"], model.layers[5].params["W"])
    assert any(np.any(mutant.params[k] != v) for k, v in model.params.items())
    again = mutate(model, operator, 0.1, np.random.default_rng(0))
    assert again.checksum() == mutant.checksum()


def test_nai_negates_a_rate_of_the_neurons():
    model = dense_net()
    mutant = mutate(model, "NAI", 0.1, np.random.default_rng(1))
    assert changed_neurons(model, mutant) == 7              # round(0.1 * 70 hidden neurons)
    for a, b in zip(model.layers[1:4:2], mutant.layers[1:4:2]):
        flipped = np.any(a.params["W"] != b.params["W"], axis=0)
        np.testing.assert_array_equal(b.params["W"][:, flipped], -a.params["W"][:, flipped])
        np.testing.assert_array_equal(b.params["b"][flipped], -a.params["b"][flipped])


def test_ns_and_ws_keep_each_layers_weights_and_ws_each_neurons():
    model = dense_net()
    switched = mutate(model, "NS", 0.2, np.random.default_rng(2))
    shuffled = mutate(model, "WS", 0.2, np.random.default_rng(2))
    for a, s, w in zip(model.layers[1:4:2], switched.layers[1:4:2], shuffled.layers[1:4:2]):
        np.testing.assert_array_equal(np.sort(s.params["W"], axis=None), np.sort(a.params["W"], axis=None))
        np.testing.assert_array_equal(np.sort(s.params["b"]), np.sort(a.params["b"]))
        columns = lambda W: sorted(map(tuple, W.T))             # NS: neurons trade places
        assert columns(s.params["W"]) == columns(a.params["W"])
        np.testing.assert_array_equal(np.sort(w.params["W"], axis=0), np.sort(a.params["W"], axis=0))
        np.testing.assert_array_equal(w.params["b"], a.params["b"])
    assert changed_neurons(model, shuffled) == 14


def test_gf_fuzzes_a_rate_of_the_weights_of_conv_and_dense_layers(toy):
    model = toy[0]
    mutant = mutate(model, "GF", 0.05, np.random.default_rng(3))
    changed = sum(int((a.params["W"] != b.params["W"]).sum())
                  for a, b in zip(model.layers, mutant.layers) if "W" in a.params)
    assert changed == round(0.05 * (8 * 9 + 72 * 32))


@pytest.mark.parametrize("kwargs, match", [
    (dict(operator="XX"), "operator"), (dict(rate=0), "rate"), (dict(rate=2), "rate"),
    (dict(alpha=0), "alpha"), (dict(sigma=1), "sigma"), (dict(max_mutants=0), "max_mutants")])
def test_detector_rejects_bad_settings(toy, kwargs, match):
    model, x, y, _ = toy
    with pytest.raises(ValueError, match=match):
        MutationDetector(model, (x, y), **kwargs)


def test_detect_needs_calibration_and_a_model_with_a_hidden_layer(toy):
    model, x, y, _ = toy
    with pytest.raises(ValueError, match="calibrate"):
        MutationDetector(model, (x, y)).detect(x)
    linear = nd.Sequential([layers.Flatten(), layers.Dense(64, 3)], seed=0)
    with pytest.raises(ValueError, match="hidden"):
        MutationDetector(linear, (x, y))


@pytest.fixture(scope="module")
def mnist_net(mnist):
    (x, y), (x_test, y_test) = mnist
    model = nd.Sequential([layers.Conv2D(1, 8, 5), layers.ReLU(), layers.MaxPool2D(4),
                           layers.Flatten(), layers.Dense(288, 64), layers.ReLU(),
                           layers.Dense(64, 10)], seed=0)
    model, _ = nd.train(model, (x[:6000], y[:6000]), epochs=3, batch_size=50, lr=0.05,
                        momentum=0.9, progress=False)
    return model, x_test[:1200], y_test[:1200]


def test_false_positives_stay_near_alpha_and_attacks_are_flagged(mnist_net):
    model, x, y = mnist_net
    detector = MutationDetector(model, (x[:300], y[:300]), operator="NAI", rate=0.01,
                                alpha=0.05, beta=0.05, max_mutants=100, seed=0)
    detector.calibrate(x[300:700])
    clean = detector.detect(x[700:1200])
    assert clean.rate <= 0.05 + 0.05                     # alpha plus the calibration's noise
    assert np.all((clean.mutants_used >= 1) & (clean.mutants_used <= 100))
    # near the decision boundary, where mutants flip labels (CW; FGSM overshoots more)
    fooled = nd.attacks.cw_l2(model, x[700:760], y[700:760], max_iterations=100,
                              binary_search_steps=3, c=1.0, progress=False)
    adversarial = detector.detect(fooled.x_adv[fooled.success])
    assert fooled.success.sum() > 40
    assert adversarial.rate > clean.rate + 0.3
    # decisions come early: the SPRT rarely needs every mutant
    assert np.median(adversarial.mutants_used) < 100
    auc = nd.metrics.roc_auc(detector.label_change_rate(x[700:1200]),
                             detector.label_change_rate(fooled.x_adv[fooled.success]))
    assert auc > 0.8
