"""Defensive distillation: the student learns the teacher's soft labels, and deployed at
T = 1 its logits are scaled up, its softmax saturates and its gradients vanish."""
import numpy as np
import pytest

import npdistill as nd
from npdistill import layers


def toy_architecture(seed=0):
    return nd.Sequential([layers.Conv2D(1, 6, 3), layers.ReLU(), layers.MaxPool2D(2),
                          layers.Flatten(), layers.Dense(54, 24), layers.ReLU(),
                          layers.Dense(24, 3)], seed=seed)


@pytest.fixture(scope="module")
def bands():
    """Three classes of 8x8 images: a bright band on the left, middle or right."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 900)
    x = (rng.random((900, 1, 8, 8)) * 0.3).astype(np.float32)
    for k in range(3):
        x[y == k, :, :, 3 * k:3 * k + 2] += 0.6
    return (x[:600], y[:600]), (x[600:], y[600:])


@pytest.fixture(scope="module")
def distilled(bands):
    train, test = bands
    options = dict(epochs=6, batch_size=32, lr=0.05, momentum=0.9, progress=False)
    baseline, _ = nd.train(toy_architecture(0), train, **options)
    teacher, student = nd.defensive_distillation(toy_architecture, train, 50.0, **options)
    return baseline, teacher, student, test


def test_soft_labels_are_the_teachers_tempered_probabilities(distilled):
    _, teacher, _, (x, _) = distilled
    soft = nd.defenses.soft_labels(teacher, x, 50.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(soft, nd.softmax(teacher.logits(x), T=50.0), rtol=1e-6)


def test_student_keeps_accuracy_and_records_the_temperature(distilled, tmp_path):
    baseline, teacher, student, (x, y) = distilled
    assert nd.metrics.accuracy(student, x, y) >= nd.metrics.accuracy(baseline, x, y) - 0.05
    assert student.metadata["training_temperature"] == 50.0
    assert student.metadata["distillation"]["temperature"] == 50.0
    assert student.metadata["distillation"]["teacher_checksum"] == teacher.checksum()
    student.save(tmp_path / "student.npz")
    assert nd.load_model(tmp_path / "student.npz").metadata["distillation"]["temperature"] == 50.0


def test_deployed_at_one_the_student_saturates_and_its_gradients_vanish(distilled):
    baseline, _, student, (x, y) = distilled
    spread = [np.ptp(m.logits(x), axis=1).mean() for m in (baseline, student)]
    assert spread[1] > 5 * spread[0]                    # logits learnt at a scale of about T
    p = student.predict_proba(x)
    assert np.median(p.max(axis=1)) == 1.0               # saturated in float32
    amplitude = [np.median(nd.metrics.adversarial_gradient_amplitude(m, x)) for m in (baseline, student)]
    assert amplitude[1] < 1e-6 * amplitude[0]
    masking = nd.metrics.gradient_masking(student, x, y)
    assert masking["fgsm"]["all_zero_images"] > 0.5      # FGSM cannot move these images at all
    assert masking["cw"]["zero_fraction"] < masking["fgsm"]["zero_fraction"]
    r = nd.attacks.fgsm(student, x, y, eps=0.3)
    assert (r.l0 == 0).mean() == pytest.approx(masking["fgsm"]["all_zero_images"])


def test_distill_trains_a_fresh_student_of_the_teachers_architecture(distilled, bands):
    _, teacher, _, _ = distilled
    student = nd.distill(teacher, bands[0], 5.0, epochs=1, batch_size=64, progress=False, seed=3)
    assert [type(a) for a in student.layers] == [type(b) for b in teacher.layers]
    assert student.checksum() != teacher.checksum()
    with pytest.raises(ValueError, match="temperature"):
        nd.distill(teacher, bands[0], 0.0, epochs=1, progress=False)
