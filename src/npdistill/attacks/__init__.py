"""Adversarial attacks: each a function returning an AttackResult."""
from .apgd import apgd, dlr_loss
from .cw import cw_l0, cw_l2, cw_linf
from .fgsm import bim, fgsm, gradient_attack, loss_gradient, pgd, tgsm
from .jsma import jsma, jsma_all_targets
from .result import AttackResult
from .square import square
from .targets import random_targets

__all__ = ["AttackResult", "apgd", "bim", "cw_l0", "cw_l2", "cw_linf", "dlr_loss", "fgsm",
           "gradient_attack", "jsma", "jsma_all_targets", "loss_gradient", "pgd",
           "random_targets", "square", "tgsm"]
