"""Figures: built as Figure objects without touching matplotlib's backend, for any
attack's result; the teaching numbers and their figures on a net and a saturated copy."""
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import npdistill as nd


def test_importing_and_plotting_leave_the_backend_as_the_user_set_it(tmp_path):
    code = ("import matplotlib; matplotlib.use('svg'); import numpy as np; "
            "import npdistill as nd, npdistill.plots; "
            "numbers = {'baseline': {'median_fgsm_gradient_norm': 1.0, "
            "'median_tgsm_gradient_norm': 2.0}}; "
            f"nd.plots.tgsm_vs_fgsm(numbers, r'{tmp_path / 'f.png'}'); "
            "print(matplotlib.get_backend())")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    assert child.stdout.strip() == "svg"
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


ATTACKS = {
    "fgsm": lambda m, x, y, t: nd.attacks.fgsm(m, x, y, eps=0.3),
    "tgsm": lambda m, x, y, t: nd.attacks.tgsm(m, x, target=t, eps=0.3),
    "bim": lambda m, x, y, t: nd.attacks.bim(m, x, y, eps=0.3, steps=3),
    "pgd": lambda m, x, y, t: nd.attacks.pgd(m, x, y, eps=0.3, steps=3, seed=0),
    "jsma": lambda m, x, y, t: nd.attacks.jsma(m, x, target=t),
    "cw_l0": lambda m, x, y, t: nd.attacks.cw_l0(m, x, target=t, max_iterations=20),
    "cw_l2": lambda m, x, y, t: nd.attacks.cw_l2(m, x, target=t, max_iterations=30,
                                                 binary_search_steps=2),
    "cw_linf": lambda m, x, y, t: nd.attacks.cw_linf(m, x, target=t, max_iterations=20),
    "apgd": lambda m, x, y, t: nd.attacks.apgd(m, x, y, eps=0.3, steps=10),
    "square": lambda m, x, y, t: nd.attacks.square(m, x, target=t, eps=0.3, queries=50),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_examples_draws_any_attacks_result(toy, tmp_path, name):
    model, x, y, target = toy
    x, y, target = x[:5], y[:5], target[:5]
    result = ATTACKS[name](model, x, y, target)
    fig = nd.plots.examples(model, x, result, n=4, path=tmp_path / "e.png")
    assert isinstance(fig, Figure) and (tmp_path / "e.png").stat().st_size > 1000
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3 * 4                                  # clean, adversarial, delta
    adversarial = [ax for ax in panels if ax.get_subplotspec().rowspan.start == 1]
    predicted = model.predict(result.x_adv[:4])
    for i, ax in enumerate(adversarial):
        assert ax.get_title().startswith(f"class {predicted[i]}")
        red = ax.title.get_color() == "C3"
        assert red == bool(result.success[i])
        assert ("target" in ax.get_title()) == (result.target is not None)


def test_examples_refuses_what_is_not_an_attack_of_x(toy):
    model, x, y, _ = toy
    result = nd.attacks.fgsm(model, x[:4], y[:4], eps=0.1)
    with pytest.raises(TypeError, match="result must be an AttackResult .* got ndarray"):
        nd.plots.examples(model, x[:4], result.x_adv)
    with pytest.raises(ValueError, match="give the x the attack was run on"):
        nd.plots.examples(model, x[:5], result)


def _saturated(model, scale=1e4):
    """A copy whose logits are ``scale`` times larger: its float32 softmax saturates, as
    a net distilled at a high temperature and deployed at T = 1 does."""
    hot = model.copy()
    last = hot.logits_layer
    hot.set_params({k: v * np.float32(scale) if k.startswith(f"{last}.") else v
                    for k, v in hot.params.items()})
    hot.metadata["training_temperature"] = scale
    return hot


def test_gradients_counts_the_exact_zeros_the_loss_gradient_has(toy):
    model, x, y, _ = toy
    hot = _saturated(model)
    for m, T in ((model, 1.0), (hot, 1.0), (hot, 1e4)):
        fig = nd.plots.gradients(m, x, y, T=T, n=3)
        g = nd.attacks.loss_gradient(m, x[:3], y[:3], T=T)
        titles = [ax.get_title() for ax in fig.axes if "non-zero" in ax.get_title()]
        assert [int(t.split()[0]) for t in titles] == [np.count_nonzero(gi) for gi in g]
    assert np.count_nonzero(nd.attacks.loss_gradient(hot, x[:3], y[:3])) == 0
    assert np.count_nonzero(nd.attacks.loss_gradient(hot, x[:3], y[:3], T=1e4)) > 0


def test_teaching_numbers_show_the_masking_and_their_figures_draw_them(toy, tmp_path):
    model, x, y, _ = toy
    models = {"baseline": model, "10000": _saturated(model)}
    scale = nd.teaching.logit_scale(models, x)
    assert scale["10000"]["median_logit_gap"] == pytest.approx(
        1e4 * scale["baseline"]["median_logit_gap"], rel=1e-3)
    assert scale["10000"]["saturated_share"] == 1.0 > scale["baseline"]["saturated_share"]
    zeros = nd.teaching.zero_gradients(models, x, y)
    assert zeros["10000"]["fgsm_zero_fraction"] == 1.0 > zeros["baseline"]["fgsm_zero_fraction"]
    assert zeros["10000"]["cw_zero_fraction"] == zeros["baseline"]["cw_zero_fraction"]
    norms = nd.teaching.tgsm_vs_fgsm(models, x, y)
    assert norms["10000"]["median_fgsm_gradient_norm"] == 0.0
    assert norms["10000"]["median_tgsm_gradient_norm"] > norms["baseline"][
        "median_tgsm_gradient_norm"]
    example = nd.teaching.fgsm_sign_zero(models, x, y)
    hot = example["rows"]["10000"]
    assert hot["nonzero"] == hot["moved"] == 0 and np.array_equal(hot["clean"], hot["adversarial"])
    counters = nd.teaching.counter_attacks(models, x[:6], y[:6], jsma_images=3, cw_images=2,
                                           cw_iterations=20, progress=False)
    assert counters["images"] == {"fgsm": 6, "jsma": 3, "cw": 2}
    assert counters["success"]["10000"]["FGSM at T = 1"] == 0.0
    for name, numbers in (("logit_scale", scale), ("zero_gradients", zeros),
                          ("tgsm_vs_fgsm", norms), ("fgsm_sign_zero", example),
                          ("counter_attacks", counters)):
        assert isinstance(getattr(nd.plots, name)(numbers, tmp_path / f"{name}.png"), Figure)
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_an_amplitude_that_is_zero_even_in_float64_is_said_not_left_blank():
    numbers = {name: {"fgsm_zero_fraction": 0.5, "jsma_zero_fraction": 0.5,
                      "cw_zero_fraction": 0.0, "median_amplitude_float64": amplitude}
               for name, amplitude in (("baseline", 1e-3), ("20", 1e-200), ("100", 0.0))}
    fig = nd.plots.zero_gradients(numbers)
    notes = [t for t in fig.axes[1].texts if "even in float64" in t.get_text()]
    assert len(notes) == 1 and notes[0].get_position()[0] == 2
    # several nets at 0 side by side: one note each, none running into the next
    numbers.update({name: dict(numbers["100"]) for name in ("30", "40", "50")})
    fig = nd.plots.zero_gradients(numbers)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [t.get_window_extent(renderer) for t in fig.axes[1].texts
             if "even in float64" in t.get_text()]
    assert len(boxes) == 4 and all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))


def test_model_tick_labels_do_not_run_into_each_other():
    names = ["baseline", "1", "2", "5", "10", "20", "30", "40", "50", "100"]
    numbers = {n: {"median_fgsm_gradient_norm": 1.0, "median_tgsm_gradient_norm": 1.0}
               for n in names}
    fig = nd.plots.tgsm_vs_fgsm(numbers)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    labels = fig.axes[0].get_xticklabels()
    assert labels[0].get_text() == "no distillation" and labels[1].get_text() == "T = 1"
    # slanted and anchored at their right ends, at their ticks: each ends before the next
    ends = [label.get_window_extent(renderer).x1 for label in labels]
    assert all(a < b for a, b in zip(ends, ends[1:]))
    first, second = (label.get_window_extent(renderer) for label in labels[:2])
    assert first.x1 <= second.x0 + 0.5 * second.width
