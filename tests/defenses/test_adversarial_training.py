"""Adversarial training: the batch hook, and the defense's claim on a small MNIST net."""
import numpy as np
import pytest

import npdistill as nd
from npdistill import layers
from npdistill.defenses.adversarial_training import AdversarialExamples, adversarial_training


def small_net():
    return nd.Sequential([layers.Conv2D(1, 8, 5), layers.ReLU(), layers.MaxPool2D(4),
                          layers.Flatten(), layers.Dense(288, 10)], seed=0)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("ratio", [0.0, 0.25, 1.0])
def test_hook_replaces_the_given_fraction_with_attacks_inside_the_budget(toy, attack, ratio):
    model, x, y, _ = toy
    hook = AdversarialExamples(attack, eps=0.1, ratio=ratio, steps=3)
    x_new, y_new = hook(model, x, y, np.random.default_rng(0))
    changed = np.any(x_new != x, axis=(1, 2, 3))
    assert y_new is y
    assert changed.sum() <= round(ratio * len(x))
    assert changed.sum() >= round(ratio * len(x)) * 0.9      # sign(0) may leave a pixel, not an image
    assert np.abs(x_new - x).max() <= 0.1 + 1e-6 and x_new.min() >= 0 and x_new.max() <= 1
    if attack == "fgsm" and ratio == 1.0:
        np.testing.assert_array_equal(x_new, nd.attacks.fgsm(model, x, y, eps=0.1).x_adv)
    again, _ = hook(model, x, y, np.random.default_rng(0))
    np.testing.assert_array_equal(again, x_new)


def test_hook_uses_the_hard_label_of_soft_targets(toy):
    model, x, y, _ = toy
    soft = np.eye(3, dtype=np.float32)[y] * 0.8 + 0.2 / 3
    hook = AdversarialExamples("fgsm", eps=0.1, ratio=1.0)
    x_soft, y_soft = hook(model, x, soft, np.random.default_rng(0))
    x_hard, _ = hook(model, x, y, np.random.default_rng(0))
    np.testing.assert_array_equal(x_soft, x_hard)
    assert y_soft is soft


@pytest.mark.parametrize("kwargs, match", [
    (dict(attack="cw"), "attack"), (dict(ratio=1.5), "ratio"), (dict(ratio=True), "ratio"),
    (dict(eps=0), "eps"), (dict(steps=0), "steps"), (dict(norm=1), "norm")])
def test_hook_rejects_bad_settings(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AdversarialExamples(**kwargs)


def test_adversarial_training_raises_fgsm_accuracy(mnist):
    (x, y), (x_test, y_test) = mnist
    x, y, x_test, y_test = x[:2000], y[:2000], x_test[:500], y_test[:500]
    options = dict(epochs=2, batch_size=50, lr=0.05, momentum=0.9, seed=0, progress=False)
    plain, _ = nd.train(small_net(), (x, y), **options)
    defended, _ = adversarial_training(small_net(), (x, y), attack="fgsm", eps=0.2, ratio=0.5,
                                       **options)
    assert defended.metadata["defense"]["attack"] == "fgsm"
    assert defended.metadata["training"]["batch_transform"]["ratio"] == 0.5

    def fgsm_accuracy(model):
        x_adv = nd.attacks.fgsm(model, x_test, y_test, eps=0.2, progress=False).x_adv
        return nd.metrics.accuracy(model, x_adv, y_test)

    # measured: 23% plain, 37% defended after 2 epochs on 2,000 images
    assert fgsm_accuracy(defended) > fgsm_accuracy(plain) + 0.08
    assert nd.metrics.accuracy(defended, x_test, y_test) > 0.8
