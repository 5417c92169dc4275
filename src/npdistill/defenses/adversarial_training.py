"""Adversarial training: train on adversarial examples of the model being trained.

FGSM training (Goodfellow et al., 2015, "Explaining and Harnessing Adversarial
Examples") and PGD training (Madry et al., 2018, "Towards Deep Learning Models
Resistant to Adversarial Attacks"). In every batch a fraction ``ratio`` of the
samples, drawn at random, is replaced by its adversarial example against the
current weights (Kurakin et al., 2017's batch mixing; ``ratio`` = 1 - alpha of
Goodfellow et al.'s alpha J(x) + (1 - alpha) J(x_adv), in expectation; ``ratio``
= 1 is Madry et al.'s pure min-max training). The examples are made in
inference mode (no dropout), with the true labels.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import check_choice, check_positive, check_probability
from ..attacks.fgsm import norm_key, fgsm, pgd
from ..nn.model import Sequential
from ..train import train
from ..typing import Images, Labels, Norm

ATTACKS = ("fgsm", "pgd")


class AdversarialExamples:
    """The ``batch_transform`` hook of ``train`` for adversarial training.

    attack : "fgsm" or "pgd"
    eps : budget (L-inf by default); ratio : fraction of each batch replaced, in [0, 1]
    steps, step_size : PGD's (default 7 steps of 2.5 * eps / steps, random start)
    norm : "inf" or 2; T : temperature of the attack's loss (default 1)
    """

    def __init__(self, attack="fgsm", eps=0.3, ratio=0.5, *, steps=7, step_size=None, norm="inf",
                 T=1.0, clip=(0.0, 1.0)):
        check_choice(attack, "attack", ATTACKS)
        check_positive(eps, "eps")
        check_probability(ratio, "ratio")
        check_positive(steps, "steps", integer=True)
        check_positive(T, "temperature T")
        self.attack, self.eps, self.ratio = attack, float(eps), float(ratio)
        self.steps, self.step_size = int(steps), step_size
        self.norm, self.T, self.clip = norm_key(norm), float(T), tuple(clip)

    def config(self):
        config = {"defense": "adversarial_training", "attack": self.attack, "eps": self.eps,
                  "ratio": self.ratio, "norm": self.norm, "T": self.T}
        if self.attack == "pgd":
            config.update(steps=self.steps, step_size=self.step_size)
        return config

    def __call__(self, model, x, y, rng):
        count = int(round(self.ratio * len(x)))
        if count == 0:
            return x, y
        rows = np.sort(rng.choice(len(x), count, replace=False))
        labels = y[rows] if y.ndim == 1 else y[rows].argmax(axis=1)
        options = dict(eps=self.eps, norm=self.norm, T=self.T, clip=self.clip, progress=False)
        if self.attack == "fgsm":
            result = fgsm(model, x[rows], labels, **options)
        else:
            result = pgd(model, x[rows], labels, steps=self.steps, step_size=self.step_size,
                         seed=int(rng.integers(2**63)), **options)
        mixed = x.copy()
        mixed[rows] = result.x_adv
        return mixed, y


def adversarial_training(model: Sequential, data: tuple[Images, Labels], *, attack: str = "fgsm",
                         eps: float = 0.3, ratio: float = 0.5, steps: int = 7,
                         step_size: float | None = None, norm: Norm = "inf",
                         attack_T: float = 1.0,
                         **train_options: Any) -> tuple[Sequential, dict[str, list]]:
    """Train ``model`` on batches where a fraction ``ratio`` is adversarial.

    ``train_options`` go to ``train`` (epochs, lr, seed, validation, progress ...).
    Returns (model, history); the metadata records the defense.
    """
    hook = AdversarialExamples(attack, eps, ratio, steps=steps, step_size=step_size, norm=norm,
                               T=attack_T)
    model, history = train(model, data, batch_transform=hook, **train_options)
    model.metadata["defense"] = {"name": "adversarial_training", **hook.config()}
    return model, history
