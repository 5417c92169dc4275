"""metrics.masking_report: the checklist of Carlini et al. (2019). A saturated net (a
distilled one deployed at T = 1) is flagged by the checks that see the masking, each with
its measurement; the same net unsaturated clears them all; bad input is refused by name."""
import json

import numpy as np
import pytest

import npdistill as nd
from tests.attacks.test_attacks import saturated

FAST = {"pgd": {"steps": 20}, "apgd-ce": {"steps": 20}, "apgd-dlr": {"steps": 20},
        "square": {"queries": 300}}


@pytest.fixture(scope="module")
def reports(toy):
    model, x, y, _ = toy
    return {"plain": nd.metrics.masking_report(model, x, y, eps=0.3, options=FAST),
            "saturated": nd.metrics.masking_report(saturated(model, 1e4), x, y, eps=0.3,
                                                   options=FAST)}


def verdicts(report):
    return {check.name: check.flagged for check in report.checks}


def test_a_saturated_net_is_flagged_by_the_checks_that_see_masking(reports):
    report = reports["saturated"]
    assert report.masked
    assert verdicts(report) == {
        "single-step beats iterative": False,        # both fail alike: nothing to compare
        "gradient-free beats gradient-based": True,
        "loss-scale sensitivity": True,
        "unbounded budget": True,
        "accuracy not monotone": False,
        "zero or non-finite gradients": True}
    numbers = {check.name: check.numbers for check in report.checks}
    assert numbers["zero or non-finite gradients"]["all_zero_images"] == 1.0
    assert numbers["loss-scale sensitivity"]["apgd_ce"] == 0.0
    assert numbers["loss-scale sensitivity"]["apgd_dlr"] >= 0.8
    # the measurements are the evaluation's own numbers at eps
    ev = report.evaluation
    assert ev.eps == (0.1, 0.2, 0.3, 1.0)
    assert numbers["gradient-free beats gradient-based"]["square"] == ev.success_rate[2, 4]


def test_the_same_net_unsaturated_clears_every_check(reports):
    report = reports["plain"]
    assert not report.masked and report.flagged == []
    assert set(verdicts(report).values()) == {False}


def test_its_table_and_json_say_what_was_measured(reports, tmp_path):
    report = reports["saturated"]
    table = report.table()
    assert "| loss-scale sensitivity | APGD-DLR breaks" in table and "**masking**" in table
    assert table.endswith("point at it.")
    assert "no check points at gradient masking" in reports["plain"].table()
    doc = json.loads(report.to_json(tmp_path / "masking.json"))
    assert doc["masked"] is True and len(doc["checks"]) == 6
    assert doc["evaluation"]["eps"] == [0.1, 0.2, 0.3, 1.0]
    assert json.loads((tmp_path / "masking.json").read_text()) == doc


def test_a_single_step_attack_beating_an_iterative_one_is_flagged(toy):
    """PGD given too few, too small steps to leave its random start's neighbourhood: FGSM
    breaks more, which the check reports."""
    model, x, y, _ = toy
    options = {**FAST, "pgd": {"steps": 1, "step_size": 0.01, "random_start": False}}
    report = nd.metrics.masking_report(model, x, y, eps=0.3, options=options)
    check = report.checks[0]
    assert check.name == "single-step beats iterative" and check.flagged
    assert check.numbers["fgsm"] > check.numbers["pgd"] + 0.05


def test_in_l2_square_sees_through_the_masking_too(toy):
    model, x, y, _ = toy
    report = nd.metrics.masking_report(saturated(model, 1e4), x[:20], y[:20], eps=2.0,
                                       norm=2, options=FAST)
    assert report.evaluation.attacks[-1] == "Square" and report.evaluation.norm == "2"
    check = report.checks[1]
    assert check.name == "gradient-free beats gradient-based" and check.flagged
    assert check.numbers["square"] >= 0.5 and check.numbers["best_gradient"] == 0
    np.testing.assert_allclose(report.evaluation.eps[-1], 8.0)    # the box's diagonal, 8x8


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(eps=0), ValueError, "eps must be positive"),
    (dict(margin=1), ValueError, r"margin must be in \[0, 1\)"),
    (dict(options={"deepfool": {}}), ValueError, "options names the attack 'deepfool'"),
    (dict(options={"pgd": 3}), TypeError, r"options\['pgd'\] must be a dict"),
    (dict(norm="l1"), ValueError, "norm must be 'inf' or 2"),
])
def test_bad_arguments_are_refused_by_name(toy, kwargs, error, match):
    model, x, y, _ = toy
    with pytest.raises(error, match=match):
        nd.metrics.masking_report(model, x, y, **kwargs)


@pytest.mark.slow
@pytest.mark.mnist
def test_on_real_mnist_it_flags_the_distilled_net_and_clears_the_baseline(mnist):
    """Nets like the quick reproduction's, smaller (one epoch on 8,000 images; ~1 min):
    the T = 100 student is flagged, the undistilled baseline cleared."""
    (x, y), (x_test, y_test) = mnist
    options = dict(epochs=1, batch_size=64, decay_every=1, decay_factor=0.3, progress=False)
    baseline, _ = nd.train(nd.architectures.papernot_mnist(seed=0), (x[:8000], y[:8000]),
                           **options)
    _, student = nd.defensive_distillation(nd.architectures.papernot_mnist,
                                           (x[:8000], y[:8000]), 100, **options)
    fast = {**FAST, "square": {"queries": 1000}}
    clear = nd.metrics.masking_report(baseline, x_test[:60], y_test[:60], options=fast)
    flagged = nd.metrics.masking_report(student, x_test[:60], y_test[:60], options=fast)
    assert not clear.masked, clear.table()
    assert {"loss-scale sensitivity", "zero or non-finite gradients"} <= set(flagged.flagged)
    assert flagged.evaluation.robust_accuracy[2] <= 0.1        # APGD-DLR sees through it
