"""Figures, as matplotlib ``Figure`` objects.

Every function here builds its figure with ``matplotlib.figure.Figure`` and returns it:
nothing selects a backend or touches pyplot's state, so importing this in a notebook
leaves its inline backend as it was, and a returned figure shows as the value of a cell
(or with ``display(fig)``; ``fig.savefig`` saves it anywhere). Where ``path=`` is given the
figure is also written there, atomically (the format from the suffix).

- An attack on one model: ``examples(model, x, result)``, ``gradients(model, x, T=...)``.
- An evaluation (``npdistill.evaluate``): ``robust_accuracy(evaluation)``.
- The reproductions: from their results dicts (``reproduction_figures``,
  ``defense_figures``, ``emnist_figures`` and the single figures they save).
- Teaching (docs/teaching.md, the tutorials): each draws what the function of the same
  name in ``npdistill.teaching`` computes.
"""
from .attacks import examples, gradients
from .evaluation import robust_accuracy
from .defenses import defense_accuracy_vs_eps, defense_detection, defense_figures, defense_transfer
from .emnist import class_histograms, emnist_figures, labelled_examples
from .reproduction import (accuracy_vs_temperature, adversarial_examples, gradient_amplitudes,
                           reproduction_figures, seed_spread, success_vs_temperature)
from .teaching import counter_attacks, fgsm_sign_zero, logit_scale, tgsm_vs_fgsm, zero_gradients

__all__ = ["accuracy_vs_temperature", "adversarial_examples", "class_histograms",
           "counter_attacks", "defense_accuracy_vs_eps", "defense_detection", "defense_figures",
           "defense_transfer", "emnist_figures", "examples", "fgsm_sign_zero",
           "gradient_amplitudes", "gradients", "labelled_examples", "logit_scale",
           "reproduction_figures", "robust_accuracy", "seed_spread", "success_vs_temperature", "tgsm_vs_fgsm",
           "zero_gradients"]
