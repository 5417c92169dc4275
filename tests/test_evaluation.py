"""nd.evaluate: robust accuracy per ε, worst case over the attacks. Its record is what the
attacks called directly give; a saturated net (a distilled one deployed at T = 1) keeps
FGSM, PGD and APGD-CE at clean accuracy while APGD-DLR and Square break it, and the worst
case sees through that; the table, JSON and figure say what was measured; bad input is
refused by name."""
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

import npdistill as nd
from npdistill.attacks import apgd, fgsm, pgd, square
from tests.attacks.test_attacks import saturated

FAST = [("fgsm", {}), ("pgd", {"steps": 20}), ("apgd-ce", {"steps": 20}),
        ("apgd-dlr", {"steps": 20}), ("square", {"queries": 300})]
EPS = (0.0, 0.1, 0.2, 0.3)


@pytest.fixture(scope="module")
def evaluated(toy):
    model, x, y, _ = toy
    hot = saturated(model, 1e4)
    return {"plain": nd.evaluate(model, x, y, attacks=FAST, eps=EPS),
            "saturated": nd.evaluate(hot, x, y, attacks=FAST, eps=EPS)}


def test_its_record_is_what_the_attacks_give_called_directly(toy, evaluated):
    model, x, y, _ = toy
    hot = saturated(model, 1e4)
    ev = evaluated["saturated"]
    assert ev.attacks == ("FGSM", "PGD-CE", "APGD-CE", "APGD-DLR", "Square")
    assert ev.correct.all() and ev.broken.shape == (4, 5, len(x))
    direct = [lambda e: fgsm(hot, x, y, eps=e), lambda e: pgd(hot, x, y, eps=e, steps=20),
              lambda e: apgd(hot, x, y, eps=e, steps=20, loss="ce"),
              lambda e: apgd(hot, x, y, eps=e, steps=20),
              lambda e: square(hot, x, y, eps=e, queries=300)]
    for e, eps in enumerate(EPS[1:], 1):
        for a, attack in enumerate(direct):
            broken = hot.predict(attack(eps).x_adv) != y
            np.testing.assert_array_equal(ev.broken[e, a], broken, f"{ev.attacks[a]} {eps}")
    assert not ev.broken[0].any()                               # eps = 0: nothing attacked
    np.testing.assert_array_equal(ev.robust, ~ev.broken.any(axis=1))
    np.testing.assert_allclose(ev.robust_accuracy, 1 - ev.broken.any(axis=1).mean(axis=1))
    assert (ev.robust_accuracy <= ev.attack_accuracy.min(axis=1)).all()


def test_the_worst_case_sees_through_the_masking(evaluated):
    hot, plain = evaluated["saturated"], evaluated["plain"]
    masked = hot.attack_accuracy[-1, :3]                        # FGSM, PGD-CE, APGD-CE
    assert (masked == 1.0).all(), masked
    assert hot.attack_accuracy[-1, 3] <= 0.3 and hot.attack_accuracy[-1, 4] <= 0.4
    assert hot.robust_accuracy[-1] <= 0.2
    assert hot.robust_accuracy[-1] <= plain.robust_accuracy[-1] + 0.1   # bought nothing
    assert plain.attack_accuracy[-1, 1] < 0.5                   # PGD works on the plain net


def test_images_misclassified_clean_are_not_robust_and_not_attacked(toy):
    model, x, y, _ = toy
    wrong = y.copy()
    wrong[:5] = (y[:5] + 1) % 3
    ev = nd.evaluate(model, x, wrong, attacks=["fgsm"], eps=(0, 0.3))
    assert not ev.correct[:5].any() and ev.correct[5:].all()
    assert ev.clean_accuracy == pytest.approx(35 / 40)
    assert not ev.broken[:, :, :5].any() and not ev.robust[:, :5].any()
    assert ev.robust_accuracy[0] == ev.clean_accuracy
    assert ev.success_rate[1, 0] == pytest.approx(ev.broken[1, 0].sum() / 35)


def test_the_pieces_do_not_change_a_deterministic_attack(toy):
    model, x, y, _ = toy
    whole = nd.evaluate(model, x, y, attacks=["fgsm"], eps=(0.2, 0.3), chunk=100)
    pieces = nd.evaluate(model, x, y, attacks=["fgsm"], eps=(0.2, 0.3), chunk=7)
    np.testing.assert_array_equal(whole.broken, pieces.broken)
    assert whole.broken.any() and not whole.broken.all()


def test_the_table_json_and_figure_say_what_was_measured(evaluated, tmp_path):
    ev = evaluated["saturated"]
    table = ev.table().splitlines()
    assert table[0] == ("| ε (L∞) | clean | FGSM | PGD-CE | APGD-CE | APGD-DLR | Square | "
                        "worst case |")
    last = table[2 + len(EPS) - 1].split(" | ")
    assert last[0] == "| 0.3" and last[2] == "100.0%"
    assert last[-1] == f"**{100 * ev.robust_accuracy[-1]:.1f}%** |"
    doc = json.loads(ev.to_json(tmp_path / "evaluation.json"))
    assert json.loads((tmp_path / "evaluation.json").read_text()) == doc
    assert doc["robust_accuracy"] == ev.robust_accuracy.tolist() and doc["norm"] == "inf"
    back = nd.Evaluation.from_json(ev.to_json())
    np.testing.assert_array_equal(back.broken, ev.broken)
    assert back.table() == ev.table()
    fig = ev.plot(tmp_path / "robust.png")
    assert isinstance(fig, Figure) and (tmp_path / "robust.png").stat().st_size > 10_000
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels[1:] == [*ev.attacks, "worst case (no attack breaks it)"]
    worst = fig.axes[0].get_lines()[-1]
    np.testing.assert_allclose(worst.get_ydata(), 100 * ev.robust_accuracy)


def test_l2_takes_every_default_attack_and_any_attack_function(toy):
    model, x, y, _ = toy

    def nothing(model, x, y, *, eps, norm, clip, progress):
        assert norm == 2
        return nd.attacks.AttackResult.from_examples(x, x.copy(), np.zeros(len(x), bool),
                                                     np.zeros(len(x)))
    ev = nd.evaluate(model, x[:10], y[:10], attacks=[("fgsm", {}), ("no-op", nothing, {})],
                     eps=(1.0, 3.0), norm=2)
    assert ev.norm == "2" and ev.attacks == ("FGSM", "no-op")
    assert not ev.broken[:, 1].any() and ev.broken[1, 0].any()
    default = nd.evaluate(model, x[:4], y[:4], eps=(4.0,), norm=2, attacks=None)
    assert default.attacks == ("FGSM", "PGD-CE", "APGD-CE", "APGD-DLR", "Square")
    square = nd.attacks.square(model, x[:4], y[:4], eps=4.0, norm=2)
    assert square.success.any()
    np.testing.assert_array_equal(default.broken[0, 4], square.success)

    def linf_only(model, x, y, *, eps, clip, progress):
        return nothing(model, x, y, eps=eps, norm=2, clip=clip, progress=progress)
    with pytest.raises(ValueError, match="attack 'mine' is L-inf only, but norm='2'"):
        nd.evaluate(model, x[:10], y[:10], attacks=[("mine", linf_only, {})], norm=2)


def test_an_attack_leaving_its_budget_is_an_error_not_a_success(toy):
    model, x, y, _ = toy

    def too_far(model, x, y, *, eps, clip, progress):
        x_adv = np.clip(x + 2 * eps, *clip).astype(x.dtype)
        return nd.attacks.AttackResult.from_examples(x, x_adv, np.ones(len(x), bool),
                                                     np.ones(len(x)))
    with pytest.raises(ValueError, match="attack 'far' returned examples outside its budget"):
        nd.evaluate(model, x, y, attacks=[("far", too_far, {})], eps=(0.1,))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(eps=(0.1, 0.1)), ValueError, r"eps must be increasing, got \[0.1, 0.1\]"),
    (dict(eps=(0.3, 0.1)), ValueError, "eps must be increasing"),
    (dict(eps=(-0.1, 0.1)), ValueError, r"eps\[0\] must be non-negative"),
    (dict(eps=()), ValueError, "eps must be one budget or a list"),
    (dict(attacks=["fgsm", "deepfool"]), ValueError, "unknown attack 'deepfool': expected one"),
    (dict(attacks="fgsm"), TypeError, "attacks must be a non-empty list"),
    (dict(attacks=["fgsm", "fgsm"]), ValueError, "distinct labels"),
    (dict(attacks=[("pgd", {"eps": 0.1})]), ValueError, "evaluate sets 'eps' itself"),
    (dict(attacks=[("pgd", 3)]), TypeError, "options of attack 'PGD-CE' must be a dict"),
    (dict(norm=1), ValueError, "norm must be 'inf' or 2"),
    (dict(chunk=0), ValueError, "chunk must be positive"),
    (dict(seed=-1), ValueError, "seed must be a non-negative integer"),
])
def test_bad_arguments_are_refused_by_name(toy, kwargs, error, match):
    model, x, y, _ = toy
    with pytest.raises(error, match=match):
        nd.evaluate(model, x, y, **kwargs)


def test_bad_images_and_labels_are_refused(toy):
    model, x, y, _ = toy
    with pytest.raises(ValueError, match="x must lie in the clip box"):
        nd.evaluate(model, x * 3, y, attacks=["fgsm"])
    with pytest.raises(ValueError, match="y"):
        nd.evaluate(model, x, y[:-1], attacks=["fgsm"])


def test_a_cache_folder_makes_an_evaluation_resumable(toy, tmp_path, capsys):
    model, x, y, _ = toy
    attacks = ["fgsm", ("pgd", {"steps": 5})]
    first = nd.evaluate(model, x, y, attacks=attacks, eps=(0.2, 0.3), cache=tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["FGSM.json", "PGD-CE.json"]
    (tmp_path / "c" / "PGD-CE.json").unlink()                # as if stopped during PGD
    again = nd.evaluate(model, x, y, attacks=attacks, eps=(0.2, 0.3), cache=tmp_path / "c")
    assert "reusing" in capsys.readouterr().err
    np.testing.assert_array_equal(again.broken, first.broken)
    # another setting, or another model, is attacked again, not read back
    calls = []
    nd.evaluate(model, x, y, attacks=[("fgsm", {"T": 2.0})], eps=(0.2, 0.3),
                cache=tmp_path / "c", progress=calls.append)
    assert calls                                     # the attack ran: progress events came
    (tmp_path / "c" / "PGD-CE.json").write_text("{not json")
    third = nd.evaluate(model, x, y, attacks=attacks, eps=(0.2, 0.3), cache=tmp_path / "c")
    assert "is damaged" in capsys.readouterr().err
    assert (tmp_path / "c" / "PGD-CE.json.damaged").is_file()
    np.testing.assert_array_equal(third.broken, first.broken)
