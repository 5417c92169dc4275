"""Defensive distillation beside the defenses it is compared with, on MNIST.

After Ross & Doshi-Velez (2018), "Improving the Adversarial Robustness and
Interpretability of Deep Neural Networks by Regularizing their Input
Gradients" (figures 2 and 3): an undefended net, a net distilled at T = 50,
an adversarially trained net (FGSM) and an input-gradient-regularized net,
attacked with FGSM and TGSM over a range of eps, and the transfer of each
model's adversarial examples to the others. And after Wang et al. (2019),
"Adversarial Sample Detection for Deep Neural Network through Model Mutation
Testing": the mutation detector's rates and AUC against FGSM, JSMA and CW
examples of the undefended net.

``reproduce_defenses(out_dir)`` trains (or reloads from ``out_dir/models``)
the four nets and writes results.json, results.md and PNG figures.
"""
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import attacks, kernels, metrics
from ._checks import check_output_dir
from .defenses.adversarial_training import adversarial_training
from .defenses.distillation import defensive_distillation
from .defenses.gradient_regularization import gradient_regularization
from .defenses.mutation_detection import MutationDetector
from .nn import architectures
from .runs import (Runner, RunProgress, inner, load_data, percent, remove_stale, say,
                   write_results)
from .train import data_checksum, train

MODELS = ("undefended", "distilled", "adversarial", "gradient_regularized")
LABELS = {"undefended": "undefended", "distilled": "distilled (T = 50)",
          "adversarial": "adversarially trained (FGSM)",
          "gradient_regularized": "input-gradient regularized"}

# Wang et al. 2019, MNIST, NAI operator: AUC of the label-change rate
PAPER_DETECTION_AUC = {"fgsm": 0.965, "jsma": 0.994, "cw": 0.958}


@dataclass(frozen=True)
class DefenseSettings:
    """What the comparison trains and measures, and on how much."""
    epochs: int = 3
    train_limit: int | None = None       # None: the whole training split
    seed: int = 0
    temperature: float = 50.0            # the distilled net's, as Ross & Doshi-Velez
    adversarial_eps: float = 0.3         # FGSM adversarial training
    adversarial_ratio: float = 0.5       # half of every batch adversarial
    gradient_lambda: float = 0.1         # weight of mean ||dCE/dx||^2 (0.3+ diverged at lr 0.1)
    epsilons: tuple = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    attack_images: int = 1000            # FGSM / TGSM accuracy curves and transfer
    transfer_eps: float = 0.2
    detector_operator: str = "NAI"
    detector_rate: float = 0.01
    detector_mutants: int = 200          # the SPRT's limit per input, and the LCR's mutants
    detector_images: int = 500           # clean calibration and clean false-positive sets each
    jsma_images: int = 100
    cw_images: int = 100
    cw_iterations: int = 1000
    cw_c: float | None = None            # the first c; None: the reference's 1e-3, 9 steps

    def training_key(self):
        return {"epochs": self.epochs, "train_limit": self.train_limit, "seed": self.seed,
                "temperature": self.temperature, "adversarial_eps": self.adversarial_eps,
                "adversarial_ratio": self.adversarial_ratio,
                "gradient_lambda": self.gradient_lambda}


QUICK_DEFENSES = DefenseSettings(epochs=2, train_limit=3000, epsilons=(0.0, 0.1, 0.2, 0.3),
                                 attack_images=200, detector_mutants=50, detector_images=150,
                                 jsma_images=8, cw_images=8, cw_iterations=100, cw_c=1.0)


def train_defended_models(settings, data, out_dir, progress=True, runner=None):
    """{name: model} for MODELS, saved in out_dir/models and reused with the same settings;
    ``runner`` (runs.Runner) trains them here or on Dask workers, side by side."""
    runner = Runner(progress) if runner is None else runner
    (x_train, y_train), (x_test, y_test) = data
    key = {**settings.training_key(), "data": data_checksum(x_train, y_train), "recipe": 2}
    folder = Path(out_dir) / "models"
    options = dict(epochs=settings.epochs, seed=settings.seed, validation=(x_test, y_test),
                   progress=runner.worker_progress)
    net = lambda: architectures.papernot_mnist(seed=settings.seed)      # noqa: E731
    T = float(settings.temperature)
    builders = {
        "undefended": lambda: train(net(), (x_train, y_train), **options)[0],
        # the distillation reproduction's recipe: distill's default (the logits layer's
        # learning rate x T ** 2) at the net's own learning rate (see reproduce.py)
        "distilled": lambda: defensive_distillation(
            architectures.papernot_mnist, (x_train, y_train), T, **options)[1],
        "adversarial": lambda: adversarial_training(
            net(), (x_train, y_train), attack="fgsm", eps=settings.adversarial_eps,
            ratio=settings.adversarial_ratio, **options)[0],
        "gradient_regularized": lambda: gradient_regularization(
            net(), (x_train, y_train), lam=settings.gradient_lambda, **options)[0],
    }
    handles = {}
    for name in MODELS:
        say(progress, f"model: {LABELS[name]}")
        handles[name] = runner.model(folder / f"{name}.npz", key, builders[name])
    return {name: runner.value(handle) for name, handle in handles.items()}


def accuracy_curves(models, x, y, epsilons, target, progress=True):
    """{model: {"fgsm": [accuracy per eps], "tgsm": [...]}}: accuracy on the true labels."""
    curves = {}
    for name, model in models.items():
        say(progress, f"FGSM / TGSM on {LABELS[name]}, eps {list(epsilons)}")
        rows = {"fgsm": [], "tgsm": [], "tgsm_target_hit": []}
        for eps in epsilons:
            if eps == 0:
                clean = metrics.accuracy(model, x, y)
                rows["fgsm"].append(clean)
                rows["tgsm"].append(clean)
                rows["tgsm_target_hit"].append(float((model.predict(x) == target).mean()))
                continue
            fgsm = attacks.fgsm(model, x, y, eps=eps, progress=False)
            tgsm = attacks.tgsm(model, x, target=target, eps=eps, progress=False)
            rows["fgsm"].append(metrics.accuracy(model, fgsm.x_adv, y))
            rows["tgsm"].append(metrics.accuracy(model, tgsm.x_adv, y))
            rows["tgsm_target_hit"].append(tgsm.success_rate)
        curves[name] = rows
    return curves


def transfer_matrix(models, x, y, eps, progress=True):
    """accuracy[source][target]: the target model's accuracy on the source model's FGSM examples."""
    say(progress, f"transfer of FGSM eps={eps} examples between the {len(models)} models")
    examples = {name: attacks.fgsm(model, x, y, eps=eps, progress=False).x_adv
                for name, model in models.items()}
    return {source: {target: metrics.accuracy(model, examples[source], y)
                     for target, model in models.items()} for source in models}


def detection(model, settings, test, rng_seed, progress=True):
    """The mutation detector against FGSM, JSMA and CW L2 examples of ``model``."""
    x_test, y_test = test
    rng = np.random.default_rng(rng_seed)
    order = rng.permutation(len(x_test))
    k = settings.detector_images
    screen, calibration, clean = order[:k], order[k:2 * k], order[2 * k:3 * k]
    pool = order[3 * k:]
    detector = MutationDetector(model, (x_test[screen], y_test[screen]),
                                operator=settings.detector_operator, rate=settings.detector_rate,
                                max_mutants=settings.detector_mutants, seed=settings.seed,
                                progress=inner(progress))
    say(progress, f"mutation detector: calibrating on {k} clean images")
    threshold = detector.calibrate(x_test[calibration])
    clean_lcr = detector.label_change_rate(x_test[clean])
    clean_detection = detector.detect(x_test[clean])
    out = {"operator": settings.detector_operator, "rate": settings.detector_rate,
           "max_mutants": settings.detector_mutants, "threshold": threshold,
           "mutants_rejected": detector.rejected,
           "clean": {"images": k, "false_positive_rate": clean_detection.rate,
                     "mean_lcr": float(clean_lcr.mean()),
                     "mean_mutants_used": float(clean_detection.mutants_used.mean())}}
    pick = pool[:settings.attack_images]
    jsma_pick, cw_pick = pool[:settings.jsma_images], pool[:settings.cw_images]
    say(progress, "mutation detector: attacking (FGSM, JSMA, CW L2)")
    made = {
        "fgsm": attacks.fgsm(model, x_test[pick], y_test[pick], eps=0.3, progress=False),
        "jsma": attacks.jsma(model, x_test[jsma_pick],
                             target=attacks.random_targets(y_test[jsma_pick], 10, rng),
                             progress=False),
        "cw": attacks.cw_l2(model, x_test[cw_pick], target=attacks.random_targets(
            y_test[cw_pick], 10, rng), max_iterations=settings.cw_iterations,
            **({} if settings.cw_c is None else {"c": settings.cw_c, "binary_search_steps": 3}),
            progress=inner(progress)),
    }
    for name, result in made.items():
        x_adv = result.x_adv[result.success]
        row = {"attacked": len(result.success), "successful": int(result.success.sum())}
        if len(x_adv):
            found = detector.detect(x_adv)
            lcr = detector.label_change_rate(x_adv)
            row.update(detection_rate=found.rate, mean_lcr=float(lcr.mean()),
                       mean_mutants_used=float(found.mutants_used.mean()),
                       auc=metrics.roc_auc(clean_lcr, lcr))
        out[name] = row
    return out


def reproduce_defenses(out_dir, settings=DefenseSettings(), data_path=None, progress=True,
                       download=False, client=None, heal=True):
    """Train or reload the four nets, measure, write results.json, results.md and figures.

    ``data_path``, ``download``, ``progress``, ``client`` and ``heal`` as in ``reproduce``
    (on Dask the four nets train side by side; the measures run here).
    """
    from . import plots

    began = time.perf_counter()
    out_dir = check_output_dir(out_dir, "out_dir")
    progress = RunProgress(progress, len(MODELS) + 3)      # the nets; curves, transfer, detection
    (x_train, y_train), (x_test, y_test) = load_data(data_path, settings.train_limit, download)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(progress, out_dir, out_dir / "models")
    say(progress, f"defenses: {len(x_train):,} training images, {len(x_test):,} test images")
    models = train_defended_models(settings, ((x_train, y_train), (x_test, y_test)), out_dir,
                                   progress, Runner(progress, client, heal))
    rng = np.random.default_rng(settings.seed + 3000)
    pick = rng.choice(len(x_test), min(settings.attack_images, len(x_test)), replace=False)
    x, y = x_test[pick], y_test[pick]
    target = attacks.random_targets(y, 10, rng)
    measured = {}
    for what, measure in (
            ("curves", lambda: accuracy_curves(models, x, y, settings.epsilons, target, progress)),
            ("transfer", lambda: transfer_matrix(models, x, y, settings.transfer_eps, progress)),
            ("detection", lambda: detection(models["undefended"], settings, (x_test, y_test),
                                            settings.seed + 4000, progress))):
        measured[what] = measure()
        progress.task_done(what)
    results = {
        "settings": {**asdict(settings), "train_images": len(x_train), "test_images": len(x_test)},
        "accuracy": {name: metrics.accuracy(model, x_test, y_test) for name, model in models.items()},
        **measured,
        "paper_detection_auc": PAPER_DETECTION_AUC,
        "labels": LABELS,
        "environment": kernels.environment(),
    }
    results["seconds"] = time.perf_counter() - began
    return write_results(out_dir, results, markdown_table(results),
                         lambda: plots.defense_figures(results, out_dir), progress)


def markdown_table(results):
    s, curves = results["settings"], results["curves"]
    eps = s["epsilons"]
    lines = [
        "# Defenses compared on MNIST",
        "",
        f"Training split: **{s['train_images']:,} images**, {s['epochs']} epochs per net, the "
        f"papers' MNIST architecture. Distilled at T = {s['temperature']:g} (deployed at 1); "
        f"adversarial training: FGSM eps = {s['adversarial_eps']}, {s['adversarial_ratio']:.0%} "
        f"of each batch; input-gradient regularization: lambda = {s['gradient_lambda']} on the "
        f"mean squared L2 norm of dCE/dx. Attacks on {s['attack_images']} test images "
        f"(TGSM: one random target per image).",
        "",
        "Accuracy (%) on the true labels under FGSM, by eps:",
        "",
        "| model | " + " | ".join(f"{e:g}" for e in eps) + " |",
        "|---|" + "---|" * len(eps),
    ]
    for name, row in curves.items():
        lines.append(f"| {results['labels'][name]} | "
                     + " | ".join(f"{100 * a:.1f}" for a in row["fgsm"]) + " |")
    lines += ["", "Accuracy (%) on the true labels under TGSM, by eps (target hit rate in "
              "brackets):", "", "| model | " + " | ".join(f"{e:g}" for e in eps) + " |",
              "|---|" + "---|" * len(eps)]
    for name, row in curves.items():
        lines.append(f"| {results['labels'][name]} | " + " | ".join(
            f"{100 * a:.1f} ({100 * h:.0f})" for a, h in zip(row["tgsm"], row["tgsm_target_hit"]))
            + " |")
    names = list(results["transfer"])
    lines += ["", f"Transfer: accuracy (%) of the column's model on the row model's FGSM "
              f"eps = {s['transfer_eps']} examples (the diagonal is white-box):", "",
              "| examples from \\ evaluated on | " + " | ".join(results["labels"][n] for n in names)
              + " |", "|---|" + "---|" * len(names)]
    for source in names:
        lines.append(f"| {results['labels'][source]} | " + " | ".join(
            f"{100 * results['transfer'][source][t]:.1f}" for t in names) + " |")
    d = results["detection"]
    lines += ["", f"Mutation-testing detection on the undefended net (Wang et al. 2019): "
              f"operator {d['operator']}, rate {d['rate']}, at most {d['max_mutants']} mutants "
              f"per input, threshold {d['threshold']:.3f} (the 95% quantile of clean "
              f"label-change rates), alpha = beta = 0.05:", "",
              "| inputs | successful examples | detected | mean LCR | mean mutants used | AUC "
              "(paper, NAI) |", "|---|---|---|---|---|---|",
              f"| clean | {d['clean']['images']} | {percent(d['clean']['false_positive_rate'], 1)} "
              f"(false positives) | {d['clean']['mean_lcr']:.3f} | "
              f"{d['clean']['mean_mutants_used']:.1f} | - |"]
    for name in ("fgsm", "jsma", "cw"):
        row = d[name]
        label = {"fgsm": "FGSM eps = 0.3", "jsma": "JSMA", "cw": "CW L2"}[name]
        if "auc" not in row:
            lines.append(f"| {label} | 0 of {row['attacked']} | - | - | - | - |")
            continue
        lines.append(f"| {label} | {row['successful']} of {row['attacked']} | "
                     f"{percent(row['detection_rate'], 1)} | {row['mean_lcr']:.3f} | "
                     f"{row['mean_mutants_used']:.1f} | {row['auc']:.3f} "
                     f"({results['paper_detection_auc'][name]}) |")
    lines += ["", "Clean test accuracy: " + ", ".join(
        f"{results['labels'][n]} {percent(a, 1)}" for n, a in results["accuracy"].items()) + ".",
        "", f"Wall time: {results['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def defense_settings_from(quick=False, **overrides):
    base = QUICK_DEFENSES if quick else DefenseSettings()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
